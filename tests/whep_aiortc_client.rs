//! An independent WebRTC viewer plays from rts over WHEP (issue 17, defect 1):
//! aiortc (tests/interop/aiortc_whep_client.py) sends its own default offer,
//! which lists sha-256, sha-384 and sha-512 fingerprints (RFC 8122 §5), and
//! must get a 201 and decode video. rts checks aiortc's DTLS certificate
//! against the sha-512 fingerprint (the strongest it supports): a wrong
//! sha-512 line fails the handshake even next to a right sha-256 one.
//!
//! Needs python3 with aiortc (scripts/install-test-deps.sh installs it); the
//! tests fail when aiortc is missing.

mod common;
mod rig;

use anyhow::{ensure, Context, Result};
use common::{ChildGuard, PEER_IP};
use rig::{Mode, Rig, HTTP};
use std::process::{Command, ExitStatus};
use std::time::Duration;

/// Runs the aiortc viewer against `live/{stream}` until it decoded 30
/// frames or `timeout_s` passed; returns its exit status and output lines.
fn aiortc_viewer(stream: &str, timeout_s: &str, extra: &[&str]) -> Result<(ExitStatus, Vec<String>)> {
    let ok = Command::new("python3").args(["-c", "import aiortc"]).output().is_ok_and(|o| o.status.success());
    ensure!(ok, "python3 cannot import aiortc: run scripts/install-test-deps.sh");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/aiortc_whep_client.py");
    let url = format!("{HTTP}/whep/live/{stream}");
    let host = PEER_IP.to_string();
    let mut args = vec![script, "--url", &url, "--host", &host, "--frames", "30", "--timeout", timeout_s];
    args.extend_from_slice(extra);
    let mut client = ChildGuard::spawn(Command::new("python3").args(&args))?;
    let status = client.wait_exit(Duration::from_secs(60))?;
    Ok((status, client.logs().lines()))
}

fn line(lines: &[String], prefix: &str) -> Option<String> {
    lines.iter().find_map(|l| l.strip_prefix(prefix).map(str::to_string))
}

#[test]
fn aiortc_with_several_fingerprints_plays() -> Result<()> {
    let rig = Rig::start(Mode::Serve, "")?;
    let _publisher = rig.publish("live/aio")?;
    rig.wait_live("live", "aio", Duration::from_secs(20))?;
    let (status, lines) = aiortc_viewer("aio", "30", &[])?;
    let ctx = || format!("aiortc client:\n{}\nserver:\n{}", lines.join("\n"), rig.logs());

    // The offer is the multi-fingerprint one this test is about.
    assert_eq!(line(&lines, "offer fingerprints: ").as_deref(), Some("sha-256 sha-384 sha-512"), "{}", ctx());
    assert_eq!(line(&lines, "answer: ").as_deref(), Some("201"), "{}", ctx());
    let frames: u64 = line(&lines, "frames decoded: ").context("no frame count")?.parse()?;
    assert!(frames >= 30, "{frames} frames decoded\n{}", ctx());
    assert!(status.success(), "{}", ctx());
    // The DTLS check ran against the sha-512 fingerprint and passed.
    let connected = rig.servers[0].logs().lines().into_iter().find(|l| l.contains("DTLS connected")).context("no DTLS connected log")?;
    assert!(connected.contains("sha-512"), "{connected}");
    let counters = &rig.api()?["control"]["counters"];
    assert_eq!(counters["fingerprint_mismatch"], 0, "{}", ctx());
    assert!(counters["dtls_connected"].as_u64() >= Some(1), "{}", ctx());
    Ok(())
}

#[test]
fn a_wrong_sha512_fingerprint_fails_dtls_next_to_a_right_sha256() -> Result<()> {
    let rig = Rig::start(Mode::Serve, "")?;
    let _publisher = rig.publish("live/bad")?;
    rig.wait_live("live", "bad", Duration::from_secs(20))?;
    let (status, lines) = aiortc_viewer("bad", "5", &["--corrupt", "sha-512"])?;
    let ctx = || format!("aiortc client:\n{}\nserver:\n{}", lines.join("\n"), rig.logs());

    assert_eq!(line(&lines, "answer: ").as_deref(), Some("201"), "the offer is usable: {}", ctx());
    assert_eq!(line(&lines, "frames decoded: ").as_deref(), Some("0"), "{}", ctx());
    assert!(!status.success(), "{}", ctx());
    rig.servers[0].wait_for_log("does not match the offer's sha-512 fingerprint", Duration::from_secs(5))?;
    let counters = &rig.api()?["control"]["counters"];
    assert!(counters["fingerprint_mismatch"].as_u64() >= Some(1), "{}", ctx());
    assert_eq!(counters["dtls_connected"], 0, "{}", ctx());
    Ok(())
}
