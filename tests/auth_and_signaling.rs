//! Signed URLs (Alibaba type A) for RTMP publish and WebRTC play, and the
//! HTTP contract of the signaling endpoints (WHEP, RTS JSON, SRS).

mod common;
mod rig;

use anyhow::{Context, Result};
use rig::{Mode, Rig, HTTP, RTMP};
use serde_json::{json, Value};
use std::time::Duration;

const OFFER: &str = include_str!("../proto/sdp/tests/fixtures/chrome_av_datachannel_recvonly.sdp");
const INGEST_KEY: &str = "ingest-secret";
const PLAY_KEY: &str = "play-secret";

fn keys_toml() -> String {
    format!("[auth]\ningest_key = \"{INGEST_KEY}\"\nplay_key = \"{PLAY_KEY}\"\nvalidity_s = 600\n")
}

/// `rts sign URL --key K`, the real CLI.
fn sign(url: &str, key: &str) -> Result<String> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rts")).args(["sign", url, "--key", key]).output()?;
    anyhow::ensure!(out.status.success(), "rts sign failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

fn auth_key_of(url: &str) -> String {
    url.split("auth_key=").nth(1).unwrap_or_default().to_string()
}

/// A token whose timestamp is far older than validity_s.
fn expired_key(path: &str, key: &str) -> String {
    let ts = rts_common::config::unix_now() - 7200;
    rts_common::auth::sign_path(path, key, ts, "0123456789abcdef", "0")
}

/// (status, body) for any response, 4xx/5xx included.
fn post(url: &str, content_type: &str, body: &str) -> Result<(u16, String, Option<String>)> {
    match ureq::post(url).set("Content-Type", content_type).timeout(Duration::from_secs(10)).send_string(body) {
        Ok(r) => {
            let loc = r.header("Location").map(str::to_string);
            Ok((r.status(), r.into_string()?, loc))
        }
        Err(ureq::Error::Status(code, r)) => Ok((code, r.into_string()?, None)),
        Err(e) => Err(e.into()),
    }
}

fn reason(body: &str) -> String {
    serde_json::from_str::<Value>(body).ok().and_then(|v| v["reason"].as_str().map(str::to_string)).unwrap_or_default()
}

#[test]
fn signed_urls_gate_publish_and_play() -> Result<()> {
    let rig = Rig::start(Mode::Serve, &keys_toml())?;

    // --- RTMP publish: unsigned, wrong key and expired are refused.
    for (what, url, expect) in [
        ("unsigned", format!("{RTMP}/live/a"), "missing"),
        ("wrong key", sign(&format!("{RTMP}/live/a"), "not-the-key")?, "bad_signature"),
        ("expired", format!("{RTMP}/live/a?auth_key={}", expired_key("/live/a", INGEST_KEY)), "expired"),
    ] {
        let from = rig.servers[0].logs().len();
        let mut p = common::Publisher::start(&url, &common::PublishOpts { audio: false, ..Default::default() })?;
        let line = rig.servers[0].wait_for_log_since(from, "RTMP publish refused", Duration::from_secs(20))?;
        assert!(line.contains(expect), "{what}: expected reason {expect} in {line}");
        let status = p.wait_exit(Duration::from_secs(20))?;
        assert!(!status.success(), "{what}: ffmpeg must fail when the publish is refused");
    }

    // --- A signed publish goes live.
    let _publisher = common::Publisher::start(
        &sign(&format!("{RTMP}/live/a"), INGEST_KEY)?,
        &common::PublishOpts { audio: false, ..Default::default() },
    )?;
    rig.wait_live("live", "a", Duration::from_secs(20))?;

    // --- Play: unsigned / wrong / expired -> 403 with a JSON reason, on every shape.
    let good = auth_key_of(&sign(&format!("{HTTP}/live/a"), PLAY_KEY)?);
    let wrong = auth_key_of(&sign(&format!("{HTTP}/live/a"), "nope")?);
    let expired = expired_key("/live/a", PLAY_KEY);
    for (key, expect) in [(None, "missing"), (Some(&wrong), "bad_signature"), (Some(&expired), "expired")] {
        let q = key.map(|k| format!("?auth_key={k}")).unwrap_or_default();
        let (st, body, _) = post(&format!("{HTTP}/whep/live/a{q}"), "application/sdp", OFFER)?;
        assert_eq!((st, reason(&body).as_str()), (403, expect), "WHEP {body}");
        let rts_body = json!({"version": "2", "sdk_version": "test", "streamurl": format!("artc://10.200.0.1/live/a{q}"),
            "jsep": {"type": "offer", "sdp": OFFER}});
        let (st, body, _) = post(&format!("{HTTP}/live/a{q}"), "application/json", &rts_body.to_string())?;
        assert_eq!((st, reason(&body).as_str()), (403, expect), "RTS {body}");
        let srs_body = json!({"api": "x", "streamurl": format!("webrtc://10.200.0.1/live/a{q}"), "sdp": OFFER});
        let (st, body, _) = post(&format!("{HTTP}/rtc/v1/play/"), "application/json", &srs_body.to_string())?;
        assert_eq!((st, reason(&body).as_str()), (403, expect), "SRS {body}");
    }
    let metrics = ureq::get(&format!("{HTTP}/metrics")).call()?.into_string()?;
    assert!(metrics.contains("rts_auth_failures_total{kind=\"play\",reason=\"expired\"} 3"), "{metrics}");

    // --- A browser plays the signed stream through the RTS signaling shape.
    let _viewer = rig.play("live", "a", &format!("signaling=rts&auth_key={good}"), 60)?;
    Ok(())
}

/// The WHEP resource contract without a browser: 201 + Location + SDP
/// answer; DELETE ends the session on its shard; bad requests are 4xx.
#[test]
fn whep_http_contract() -> Result<()> {
    let rig = Rig::start(Mode::Serve, "")?;
    let (st, answer, loc) = post(&format!("{HTTP}/whep/live/x"), "application/sdp", OFFER)?;
    assert_eq!(st, 201, "{answer}");
    let loc = loc.context("Location header")?;
    assert!(loc.starts_with("/whep/session/"), "{loc}");
    for needle in ["a=ice-lite", "a=setup:passive", "a=fingerprint:sha-256 ", "10.200.0.1 800", "typ host", "a=group:BUNDLE"] {
        assert!(answer.contains(needle), "answer lacks {needle}:\n{answer}");
    }
    let parsed = rts_sdp::SessionDescription::parse(&answer)?;
    assert_eq!(parsed.media.len(), 3, "one answer m-line per offer m-line");
    assert_eq!(parsed.media[2].port, 0, "data channel rejected");

    let from = rig.servers[0].logs().len();
    let r = ureq::delete(&format!("{HTTP}{loc}")).call()?;
    assert_eq!(r.status(), 200);
    rig.servers[0].wait_for_log_since(from, "WHEP DELETE", Duration::from_secs(10))?;

    let (st, _, _) = post(&format!("{HTTP}/whep/live/x"), "text/plain", OFFER)?;
    assert_eq!(st, 415);
    let (st, body, _) = post(&format!("{HTTP}/whep/live/x"), "application/sdp", "v=0\r\nthis is not sdp")?;
    assert_eq!(st, 400, "{body}");
    let vp8_only = include_str!("../proto/sdp/tests/fixtures/vp8_only.sdp");
    let (st, body, _) = post(&format!("{HTTP}/whep/live/x"), "application/sdp", vp8_only)?;
    assert_eq!(st, 406, "{body}");
    let (st, _, _) = post(&format!("{HTTP}/live/x"), "application/json", "{not json")?;
    assert_eq!(st, 400);
    let (st, _, _) = post(&format!("{HTTP}/rtc/v1/play/"), "application/json", "{\"streamurl\": \"webrtc://h/only\", \"sdp\": \"\"}")?;
    assert_eq!(st, 400);
    // Over the 64 KiB offer limit, but small enough to sit in the socket
    // buffer: the server answers 413 without reading it, and a bigger body
    // would make the client fail with a broken pipe before seeing the 413.
    let big = "a".repeat(100 * 1024);
    let (st, _, _) = post(&format!("{HTTP}/whep/live/x"), "application/sdp", &big)?;
    assert_eq!(st, 413);
    match ureq::delete(&format!("{HTTP}/whep/session/zzzz")).call() {
        Err(ureq::Error::Status(404, _)) => {}
        other => panic!("unknown session must be 404, got {other:?}"),
    }
    Ok(())
}
