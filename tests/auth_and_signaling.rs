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

/// MD5 hex of `text` from coreutils `md5sum`: an implementation that shares
/// nothing with the server's.
fn md5sum(text: &str) -> Result<String> {
    use std::io::Write;
    let mut child = std::process::Command::new("md5sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("run md5sum")?;
    child.stdin.take().context("md5sum stdin")?.write_all(text.as_bytes())?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(out.status.success(), "md5sum failed");
    let hex = String::from_utf8(out.stdout)?.split_whitespace().next().unwrap_or_default().to_string();
    anyhow::ensure!(hex.len() == 32, "md5sum printed {hex:?}");
    Ok(hex)
}

/// An `auth_key` built from the documented recipe (README, DESIGN.md §3:
/// `{timestamp}-{rand}-{uid}-md5("{path}-{timestamp}-{rand}-{uid}-{key}")`)
/// with `md5sum`, not with the server's `sign_path` or `rts sign`.
fn independent_key(path: &str, key: &str, ts: u64) -> Result<String> {
    let (rand, uid) = ("0123456789abcdef", "0");
    let md5 = md5sum(&format!("{path}-{ts}-{rand}-{uid}-{key}"))?;
    Ok(format!("{ts}-{rand}-{uid}-{md5}"))
}

/// A token whose timestamp is far older than validity_s (correctly signed,
/// so the server must say `expired`, not `bad_signature`).
fn expired_key(path: &str, key: &str) -> Result<String> {
    independent_key(path, key, rts_common::config::unix_now() - 7200)
}

/// `rts sign`'s token for `path` must be the documented recipe: recompute
/// its md5 from its own fields with `md5sum`.
fn assert_cli_token_matches_recipe(token: &str, path: &str, key: &str) -> Result<()> {
    let mut f = token.split('-');
    let (Some(ts), Some(rand), Some(uid), Some(md5), None) = (f.next(), f.next(), f.next(), f.next(), f.next()) else {
        anyhow::bail!("rts sign printed a malformed token {token:?}");
    };
    assert_eq!(md5, md5sum(&format!("{path}-{ts}-{rand}-{uid}-{key}"))?, "rts sign's md5 for {path} in {token}");
    Ok(())
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
        ("expired", format!("{RTMP}/live/a?auth_key={}", expired_key("/live/a", INGEST_KEY)?), "expired"),
    ] {
        let from = rig.servers[0].logs().len();
        let mut p = common::Publisher::start(&url, &common::PublishOpts { audio: false, ..Default::default() })?;
        let line = rig.servers[0].wait_for_log_since(from, "RTMP publish refused", Duration::from_secs(20))?;
        assert!(line.contains(expect), "{what}: expected reason {expect} in {line}");
        let status = p.wait_exit(Duration::from_secs(20))?;
        assert!(!status.success(), "{what}: ffmpeg must fail when the publish is refused");
    }

    // --- A publish signed outside rts (md5sum, the documented recipe) goes live.
    let ingest = independent_key("/live/a", INGEST_KEY, rts_common::config::unix_now())?;
    let _publisher = common::Publisher::start(
        &format!("{RTMP}/live/a?auth_key={ingest}"),
        &common::PublishOpts { audio: false, ..Default::default() },
    )?;
    rig.wait_live("live", "a", Duration::from_secs(20))?;

    // --- Play: unsigned / wrong / expired -> 403 with a JSON reason, on every shape.
    let signed = auth_key_of(&sign(&format!("{HTTP}/live/a"), PLAY_KEY)?);
    assert_cli_token_matches_recipe(&signed, "/live/a", PLAY_KEY)?;
    let good = independent_key("/live/a", PLAY_KEY, rts_common::config::unix_now())?;
    let wrong = auth_key_of(&sign(&format!("{HTTP}/live/a"), "nope")?);
    let expired = expired_key("/live/a", PLAY_KEY)?;
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

    // --- `rts sign`'s token opens a WHEP session...
    let (st, body, loc) = post(&format!("{HTTP}/whep/live/a?auth_key={signed}"), "application/sdp", OFFER)?;
    assert_eq!(st, 201, "WHEP with rts sign's token: {body}");
    ureq::delete(&format!("{HTTP}{}", loc.context("Location header")?)).call()?;
    // ...and a browser plays with the independently signed one through the
    // RTS signaling shape.
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

/// Streaming domains (issue 19, point 2, keys only): the keys of the
/// domain a client names (RTMP tcUrl, HTTP Host, the RTS stream URL), an
/// unknown domain refused, RTS signaling switched off per domain.
#[test]
fn domains_pick_their_keys() -> Result<()> {
    let toml = "[auth]\nvalidity_s = 600\n\
        [[domain]]\nname = \"a.example.com\"\ningest_key = \"ia\"\nplay_key = \"pa\"\n\
        [[domain]]\nname = \"b.example.com\"\ningest_key = \"ib\"\nplay_key = \"pb\"\nrts = false\n";
    let rig = Rig::start(Mode::Serve, toml)?;
    let now = rts_common::config::unix_now();
    let opts = |tc: &str| common::PublishOpts { audio: false, extra_args: vec!["-rtmp_tcurl".into(), tc.into()], ..Default::default() };
    // B's key on a connection to A: refused.
    let from = rig.servers[0].logs().len();
    let mut refused = common::Publisher::start(&format!("{RTMP}/live/d?auth_key={}", independent_key("/live/d", "ib", now)?), &opts("rtmp://a.example.com/live"))?;
    rig.servers[0].wait_for_log_since(from, "RTMP publish refused", Duration::from_secs(20))?;
    assert!(!refused.wait_exit(Duration::from_secs(20))?.success());
    // A's key on A: live.
    let _a = common::Publisher::start(&format!("{RTMP}/live/d?auth_key={}", independent_key("/live/d", "ia", now)?), &opts("rtmp://a.example.com/live"))?;
    rig.wait_live("live", "d", Duration::from_secs(20))?;

    let whep = |host: &str, key: &str| -> Result<u16> {
        let url = format!("{HTTP}/whep/live/d?auth_key={}", independent_key("/live/d", key, now)?);
        Ok(match ureq::post(&url).set("Content-Type", "application/sdp").set("Host", host).timeout(Duration::from_secs(10)).send_string(OFFER) {
            Ok(r) => {
                if let Some(loc) = r.header("Location") {
                    let _ = ureq::delete(&format!("{HTTP}{loc}")).call();
                }
                r.status()
            }
            Err(ureq::Error::Status(code, _)) => code,
            Err(e) => return Err(e.into()),
        })
    };
    assert_eq!(whep("a.example.com", "pa")?, 201);
    assert_eq!(whep("a.example.com:8080", "pb")?, 403, "B's play key on A");
    assert_eq!(whep("b.example.com", "pb")?, 201);
    assert_eq!(whep("c.example.com", "pa")?, 404, "unknown domain");
    // The RTS shape names its domain in streamurl; B has RTS off.
    for (domain, key, expect) in [("a.example.com", "pa", 200), ("b.example.com", "pb", 404)] {
        let q = format!("?auth_key={}", independent_key("/live/d", key, now)?);
        let body = json!({"version": "2", "sdk_version": "test", "streamurl": format!("artc://{domain}/live/d{q}"), "jsep": {"type": "offer", "sdp": OFFER}});
        let (st, text, _) = post(&format!("{HTTP}/live/d{q}"), "application/json", &body.to_string())?;
        assert_eq!(st, expect, "RTS on {domain}: {text}");
    }
    Ok(())
}

/// `rts sign` without `--key` signs with the key of the URL's domain from
/// the config (issue 19, point 3): ingest for rtmp://, play otherwise or
/// as `--for` says; an unknown domain is an error.
#[test]
fn rts_sign_takes_the_domains_key_from_the_config() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("rts-sign-{}-{:x}", std::process::id(), rand::random::<u32>()));
    std::fs::create_dir_all(&dir)?;
    let cfg = dir.join("rts.toml");
    std::fs::write(&cfg, "[auth]\nplay_key = \"default-play\"\n[[domain]]\nname = \"a.example.com\"\ningest_key = \"ia\"\nplay_key = \"pa\"\n[[domain]]\nname = \"b.example.com\"\naliases = [\"b2.example.com\"]\nplay_key = \"pb\"\n")?;
    let run = |args: &[&str]| -> Result<(bool, String, String)> {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rts")).arg("--config").arg(&cfg).arg("sign").args(args).output()?;
        Ok((out.status.success(), String::from_utf8(out.stdout)?.trim().to_string(), String::from_utf8_lossy(&out.stderr).into_owned()))
    };
    // (arguments, the key, the path the token is over: the URL's own)
    for (args, key, path) in [
        (vec!["rtmp://a.example.com/live/s"], "ia", "/live/s"),
        (vec!["--for", "play", "rtmp://A.example.com:1935/live/s"], "pa", "/live/s"),
        (vec!["http://b2.example.com:8088/live/s.flv"], "pb", "/live/s.flv"),
        (vec!["artc://10.0.0.1/live/s"], "default-play", "/live/s"),
    ] {
        let (ok, url, err) = run(&args)?;
        assert!(ok, "{args:?}: {err}");
        assert_cli_token_matches_recipe(&auth_key_of(&url), path, key)?;
    }
    let (ok, _, err) = run(&["rtmp://c.example.com/live/s"])?;
    assert!(!ok && err.contains("c.example.com is not a configured domain"), "{err}");
    let (ok, _, err) = run(&["rtmp://b.example.com/live/s"])?;
    assert!(!ok && err.contains("no ingest key"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
