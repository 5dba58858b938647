//! `rts-loadgen` against a second, independent WebRTC implementation (issue 5,
//! "done when" 4): a WHEP sender built on Python's aiortc
//! (tests/interop/aiortc_whep_server.py) in a network namespace. aiortc is a
//! full ICE agent (it checks the loadgen too and runs consent freshness), it is
//! the DTLS client (`a=setup:active`) and lists several fingerprints, so this
//! proves the loadgen's ICE/DTLS/SRTP/H.264 handling does not rest on rts's
//! quirks.
//!
//! Needs python3 with aiortc, which scripts/install-test-deps.sh installs:
//! without it the test fails (and says how to install it) rather than pass
//! without having checked anything.

mod common;

use anyhow::{bail, Result};
use common::{enter_fresh_netns, ChildGuard, SERVER_IP};
use rts_loadgen::{run, Options};
use std::process::Command;
use std::time::{Duration, Instant};

const PORT: u16 = 8090;

/// `Err(reason)` unless python3 can import aiortc.
fn aiortc_importable() -> std::result::Result<(), String> {
    match Command::new("python3").args(["-c", "import aiortc"]).output() {
        Ok(o) if o.status.success() => Ok(()),
        // The last line of the traceback: "ModuleNotFoundError: ...".
        Ok(o) => Err(String::from_utf8_lossy(&o.stderr).trim().lines().last().unwrap_or("failed").to_string()),
        Err(e) => Err(format!("python3 could not run: {e}")),
    }
}

#[test]
fn loadgen_interoperates_with_aiortc() -> Result<()> {
    if let Err(reason) = aiortc_importable() {
        bail!(
            "this test needs python3 with aiortc, which the test set-up installs: run \
             `sh scripts/install-test-deps.sh` (or `python3 -m pip install aiortc`) and run it again.\n\
             `python3 -c 'import aiortc'` says: {reason}"
        );
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
