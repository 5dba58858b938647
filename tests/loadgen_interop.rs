//! `rts-loadgen` against a second, independent WebRTC implementation (issue 5,
//! "done when" 4): a WHEP sender built on Python's aiortc
//! (tests/interop/aiortc_whep_server.py) in a network namespace. aiortc is a
//! full ICE agent (it checks the loadgen too and runs consent freshness), it is
//! the DTLS client (`a=setup:active`) and lists several fingerprints, so this
//! proves the loadgen's ICE/DTLS/SRTP/H.264 handling does not rest on rts's
//! quirks.
//!
//! Needs python3 with aiortc (scripts/install-test-deps.sh installs it); the
//! test is skipped, with the reason printed, only when aiortc can neither be
//! imported nor installed with pip.

mod common;

use anyhow::{bail, Result};
use common::{enter_fresh_netns, ChildGuard, SERVER_IP};
use rts_loadgen::{run, Options};
use std::process::Command;
use std::time::{Duration, Instant};

const PORT: u16 = 8090;

fn aiortc_importable() -> bool {
    Command::new("python3").args(["-c", "import aiortc"]).output().is_ok_and(|o| o.status.success())
}

/// aiortc importable, installing it with pip if needed (before entering the
/// namespace: pip needs the network). `Err(reason)` when neither works.
fn ensure_aiortc() -> std::result::Result<(), String> {
    if aiortc_importable() {
        return Ok(());
    }
    let pip = Command::new("python3").args(["-m", "pip", "install", "--quiet", "aiortc"]).output();
    match pip {
        Ok(o) if o.status.success() && aiortc_importable() => Ok(()),
        Ok(o) => Err(format!("`import aiortc` fails and `pip install aiortc` failed: {}", String::from_utf8_lossy(&o.stderr).trim())),
        Err(e) => Err(format!("`import aiortc` fails and pip could not run: {e}")),
    }
}

#[test]
fn loadgen_interoperates_with_aiortc() -> Result<()> {
    if let Err(reason) = ensure_aiortc() {
        println!("SKIPPED loadgen_interoperates_with_aiortc: {reason}");
        return Ok(());
    }
    let _ns = enter_fresh_netns()?;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/aiortc_whep_server.py");
    let server = ChildGuard::spawn(Command::new("python3").args([
        script,
        "--host",
        &SERVER_IP.to_string(),
        "--port",
        &PORT.to_string(),
        "--verbose",
    ]))?;
    let end = Instant::now() + Duration::from_secs(30);
    while !server.logs().lines().iter().any(|l| l.contains("aiortc-whep listening")) {
        if Instant::now() > end || server.logs().closed() {
            bail!("aiortc WHEP server did not start:\n{}", server.logs().tail(40));
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    let mut o = Options::new(&format!("http://{SERVER_IP}:{PORT}/whep/live/interop"));
    o.viewers = 3;
    o.ramp = 10.0;
    o.duration = 6.0;
    o.verify_share = 1.0;
    o.quiet = true;
    let t0 = Instant::now();
    let r = run(&o)?;
    assert!(t0.elapsed() <= o.deadline() + Duration::from_secs(3), "run overran its deadline");
    println!("{}", r.summary_table());
    let json = serde_json::to_value(&r)?;
    let ctx = || format!("{json:#}\naiortc log:\n{}", server.logs().tail(40));
    assert_eq!(r.viewers_connected, 3, "{}", ctx());
    assert_eq!(r.viewers_failed, 0, "{}", ctx());
    assert_eq!(r.verified_viewers, 3, "{}", ctx());
    assert!(r.frames_decoded > 0, "{}", ctx());
    assert_eq!(r.srtp_auth_failures, 0, "{}", ctx());
    assert!(r.loss_ratio < 0.01, "{}", ctx());
    assert!(r.first_frame_ms.is_some(), "{}", ctx());
    // aiortc is not ICE-lite: it checked the viewers, and they answered.
    assert!(r.peer_checks_answered >= 3, "{}", ctx());
    assert!(!r.hit_deadline, "{}", ctx());
    Ok(())
}
