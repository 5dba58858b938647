//! Operating a running server (issue 15): configuration reload without
//! cutting anyone.

mod common;
mod rig;

use anyhow::{Context, Result};
use rig::{Mode, Rig, HTTP};
use std::io::{Read, Write};
use std::time::Duration;

/// A Chrome offer (H.264, Opus, a data channel), recvonly: the server answers it.
const OFFER: &str = include_str!("../proto/sdp/tests/fixtures/chrome_av_datachannel_recvonly.sdp");

fn signed(path: &str, key: &str) -> String {
    rts_common::auth::sign_path(path, key, rts_common::config::unix_now(), "r", "0")
}

fn viewers(url: &str, n: u64, secs: f64) -> std::thread::JoinHandle<Result<rts_loadgen::Report, rts_loadgen::Error>> {
    let mut o = rts_loadgen::Options::new(url);
    o.viewers = n;
    o.ramp = 20.0;
    o.duration = secs;
    o.verify_share = 1.0;
    o.quiet = true;
    std::thread::spawn(move || rts_loadgen::run(&o))
}

fn report(h: std::thread::JoinHandle<Result<rts_loadgen::Report, rts_loadgen::Error>>) -> Result<rts_loadgen::Report> {
    h.join().map_err(|_| anyhow::anyhow!("loadgen panicked"))?.map_err(|e| anyhow::anyhow!("loadgen: {e}"))
}

/// The status line of an HTTP-FLV request on the media listener.
fn flv_status(path: &str) -> Result<String> {
    let mut s = std::net::TcpStream::connect("10.200.0.1:8088")?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 10.200.0.1\r\n\r\n")?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or("").to_string())
}

/// SIGHUP with a new play key (and a listener change): the viewer playing
/// goes on, a new viewer needs the new key (signaling in control, HTTP-FLV
/// in the shards), the listener change is reported as needing a restart.
/// Then the same through `POST /api/v1/reload`, rotating the ingest key.
#[test]
fn reload_changes_keys_without_cutting_anyone() -> Result<()> {
    let mut rig = Rig::start(Mode::Serve, "[auth]\nplay_key = \"k1\"\ningest_key = \"i1\"\n")?;
    let _p = common::Publisher::start(&format!("{}/live/s?auth_key={}", rig::RTMP, signed("/live/s", "i1")), &common::PublishOpts { audio: false, ..Default::default() })?;
    rig.wait_live("live", "s", Duration::from_secs(20))?;
    let playing = viewers(&format!("{HTTP}/whep/live/s?auth_key={}", signed("/live/s", "k1")), 1, 12.0);
    std::thread::sleep(Duration::from_secs(3));

    let text = std::fs::read_to_string(&rig.config)?;
    std::fs::write(&rig.config, text.replace("\"k1\"", "\"k2\"").replacen("[auth]", "[rtmp]\nlisten = \"0.0.0.0:1936\"\n[auth]", 1))?;
    let from = rig.server().logs().len();
    // SAFETY: signalling the server process this test started.
    unsafe { libc::kill(rig.server().pid() as i32, libc::SIGHUP) };
    // Control's line (each shard logs "configuration reloaded" too, without
    // the sections, and may come first).
    let line = rig.server().wait_for_log_since(from, "restart_needed", Duration::from_secs(5))?;
    assert!(line.contains("configuration reloaded") && line.contains("rtmp.listen") && line.contains("auth"), "{line}");
    std::thread::sleep(Duration::from_millis(300)); // the shards apply it from their rings

    let old = rts_loadgen::run(&rts_loadgen::Options { viewers: 1, duration: 2.0, quiet: true, ..rts_loadgen::Options::new(&format!("{HTTP}/whep/live/s?auth_key={}", signed("/live/s", "k1"))) })
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!((old.viewers_connected, old.failures.get("http_4xx").copied()), (0, Some(1)), "the old key is refused");
    let new = report(viewers(&format!("{HTTP}/whep/live/s?auth_key={}", signed("/live/s", "k2")), 1, 3.0))?;
    assert_eq!(new.viewers_connected, 1, "the new key plays");
    assert!(new.frames_decoded > 0);
    assert_eq!(flv_status(&format!("/live/s.flv?auth_key={}", signed("/live/s", "k1")))?, "HTTP/1.1 403 Forbidden", "the shards have the new key");
    assert_eq!(flv_status(&format!("/live/s.flv?auth_key={}", signed("/live/s", "k2")))?, "HTTP/1.1 200 OK");

    let r = report(playing)?;
    let j = serde_json::to_value(&r)?;
    assert_eq!((r.viewers_connected, r.viewers_failed), (1, 0), "{j:#}");
    assert!(r.loss_ratio < 0.001 && r.stall_count == 0, "the viewer admitted before the reload played on: {j:#}");

    // The admin route: rotate the ingest key, keeping the old one as
    // secondary; a bad file is refused and changes nothing.
    let text = std::fs::read_to_string(&rig.config)?;
    std::fs::write(&rig.config, text.replace("ingest_key = \"i1\"", "ingest_key = \"i2\"\ningest_key_secondary = \"i1\""))?;
    let body = ureq::post("http://127.0.0.1:8081/api/v1/reload").call()?.into_string()?;
    let v: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(v["reload"]["applied"], serde_json::json!(["auth"]), "{v}");
    assert_eq!(v["reload"]["restart_needed"], serde_json::json!(["rtmp.listen"]), "still different from the running listener: {v}");
    std::fs::write(&rig.config, "[auth\nbroken")?;
    match ureq::post("http://127.0.0.1:8081/api/v1/reload").call() {
        Err(ureq::Error::Status(400, resp)) => assert!(resp.into_string()?.contains("configuration refused")),
        other => anyhow::bail!("a broken file must be refused: {other:?}"),
    }
    std::fs::write(&rig.config, text.replace("ingest_key = \"i1\"", "ingest_key = \"i2\"\ningest_key_secondary = \"i1\""))?;
    for (key, stream) in [("i1", "t"), ("i2", "u")] {
        let _pub = common::Publisher::start(&format!("{}/live/{stream}?auth_key={}", rig::RTMP, signed(&format!("/live/{stream}"), key)), &common::PublishOpts { audio: false, ..Default::default() })?;
        rig.wait_live("live", stream, Duration::from_secs(20)).with_context(|| format!("publish with {key} after the rotation"))?;
    }
    Ok(())
}

/// SIGTERM under load: 500 viewers keep playing through the drain; new
/// viewers (WebRTC, HTTP-FLV) and publishers are refused; the server exits
/// 0 once `drain_s` is over.
#[test]
fn drain_keeps_the_viewers_and_refuses_new_ones() -> Result<()> {
    let mut rig = Rig::start(Mode::Serve, "[ops]\ndrain_s = 9\n")?;
    let _p = rig.publish("live/s")?;
    rig.wait_live("live", "s", Duration::from_secs(20))?;
    let mut o = rts_loadgen::Options::new(&format!("{HTTP}/whep/live/s"));
    o.viewers = 500;
    o.ramp = 250.0;
    o.duration = 10.0;
    o.verify_share = 0.02;
    o.quiet = true;
    let load = std::thread::spawn(move || rts_loadgen::run(&o));
    std::thread::sleep(Duration::from_secs(4));

    // SAFETY: signalling the server process this test started.
    unsafe { libc::kill(rig.server().pid() as i32, libc::SIGTERM) };
    let sent = std::time::Instant::now();
    rig.server().wait_for_log("draining: new viewers are refused", Duration::from_secs(3))?;
    let late = rts_loadgen::run(&rts_loadgen::Options { viewers: 1, duration: 1.5, quiet: true, ..rts_loadgen::Options::new(&format!("{HTTP}/whep/live/s")) })
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!((late.viewers_connected, late.failures.get("http_5xx").copied()), (0, Some(1)), "a new viewer is refused with 503");
    match ureq::post(&format!("{HTTP}/whep/live/s")).set("Content-Type", "application/sdp").send_string(OFFER) {
        Err(ureq::Error::Status(503, resp)) => {
            assert_eq!(resp.header("Retry-After"), Some("5"));
            assert!(resp.into_string()?.contains("server draining"));
        }
        other => anyhow::bail!("expected 503, got {other:?}"),
    }
    let mut s = std::net::TcpStream::connect("10.200.0.1:8088")?;
    write!(s, "GET /live/s.flv HTTP/1.1\r\nHost: 10.200.0.1\r\n\r\n")?;
    let mut head = String::new();
    s.read_to_string(&mut head)?;
    assert!(head.starts_with("HTTP/1.1 503") && head.contains("Retry-After: 5\r\n"), "{head}");
    let mut refused = rig.publish("live/new")?;
    let status = refused.wait_exit(Duration::from_secs(10))?;
    assert!(!status.success(), "a new publisher is refused");

    let r = load.join().map_err(|_| anyhow::anyhow!("loadgen panicked"))?.map_err(|e| anyhow::anyhow!("{e}"))?;
    let j = serde_json::to_value(&r)?;
    assert_eq!((r.viewers_connected, r.viewers_failed, r.sessions_closed_by_server), (500, 0, 0), "{j:#}");
    // A drain that cut or held up the viewers shows as closed sessions,
    // loss or stalls adding up to seconds; one 205 ms stall in 100 verified
    // viewer-seconds (0.2 %, no loss) was the 2-core CI box running 500
    // viewers, the load generator and x264 at once.
    assert!(r.loss_ratio < 0.001 && r.stall_ratio < 0.005, "the viewers played through the drain: {j:#}");
    // The publisher is still connected: the server waits out drain_s.
    let status = rig.server().wait_exit(Duration::from_secs(20))?;
    let took = sent.elapsed();
    assert!(status.success(), "exit status {status}");
    assert!(took >= Duration::from_millis(8500) && took < Duration::from_secs(14), "exited {took:?} after SIGTERM (drain_s 9)");
    Ok(())
}

fn admin_sessions() -> Result<Vec<serde_json::Value>> {
    let v: serde_json::Value = serde_json::from_str(&ureq::get("http://127.0.0.1:8081/api/v1/sessions").call()?.into_string()?)?;
    Ok(v["sessions"].as_array().context("sessions")?.clone())
}

/// The admin listing shows every client with its address and bytes; a cut
/// closes a WebRTC viewer (its WHEP resource is gone), an HTTP-FLV viewer
/// and the publisher.
#[test]
fn admin_lists_and_cuts_viewers_and_the_publisher() -> Result<()> {
    let mut rig = Rig::start(Mode::Serve, "")?;
    let mut publisher = rig.publish("live/s")?;
    rig.wait_live("live", "s", Duration::from_secs(20))?;
    let watching = viewers(&format!("{HTTP}/whep/live/s"), 1, 12.0);
    let mut flv = std::net::TcpStream::connect("10.200.0.1:8088")?;
    write!(flv, "GET /live/s.flv HTTP/1.1\r\nHost: 10.200.0.1\r\n\r\n")?;
    let mut buf = vec![0u8; 1 << 16];
    flv.set_read_timeout(Some(Duration::from_secs(5)))?;
    let _ = flv.read(&mut buf)?;
    std::thread::sleep(Duration::from_secs(3));

    let rows = admin_sessions()?;
    let of = |p: &str| rows.iter().filter(|r| r["protocol"] == p).cloned().collect::<Vec<_>>();
    let (webrtc, flvs, publishers) = (of("webrtc"), of("flv"), of("publish"));
    assert_eq!((webrtc.len(), flvs.len(), publishers.len()), (1, 1, 1), "{rows:#?}");
    assert!(webrtc[0]["client"].as_str().is_some_and(|c| c.starts_with("10.200.0.")), "{rows:#?}");
    assert!(webrtc[0]["bytes_out"].as_u64().unwrap_or(0) > 10_000 && webrtc[0]["rtt_ms"].is_number(), "{rows:#?}");
    assert!(flvs[0]["bytes_out"].as_u64().unwrap_or(0) > 10_000 && flvs[0]["client"].is_string(), "{rows:#?}");
    assert!(publishers[0]["bytes_in"].as_u64().unwrap_or(0) > 10_000, "{rows:#?}");
    assert!(ureq::get(&format!("{HTTP}/api/v1/sessions")).call()?.into_string()?.contains("\"sessions\""), "the public listing stays");
    metrics_after_playing(&rig)?;

    // Cut the WebRTC viewer: gone from the listing, its resource 404.
    let id = webrtc[0]["session"].as_str().context("id")?.to_string();
    let cut = ureq::post(&format!("http://127.0.0.1:8081/api/v1/sessions/{id}/cut")).call()?;
    assert_eq!(cut.status(), 200);
    match ureq::delete(&format!("{HTTP}/whep/session/{id}")).call() {
        Err(ureq::Error::Status(404, _)) => {}
        other => anyhow::bail!("the cut session's WHEP resource must be gone: {other:?}"),
    }
    assert!(admin_sessions()?.iter().all(|r| r["session"] != id.as_str()));
    let r = report(watching)?;
    assert!(r.frames_decoded > 0 && r.frames_decoded < 30 * 11, "the viewer stopped getting frames at the cut: {}", r.frames_decoded);

    // Cut the FLV viewer: its connection ends.
    let id = flvs[0]["session"].as_str().context("id")?;
    assert_eq!(ureq::post(&format!("http://127.0.0.1:8081/api/v1/sessions/{id}/cut")).call()?.status(), 200);
    let end = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match flv.read(&mut buf) {
            Ok(0) => break,
            Ok(_) if std::time::Instant::now() < end => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            other => anyhow::bail!("the FLV connection did not end: {other:?}"),
        }
    }
    match ureq::post("http://127.0.0.1:8081/api/v1/sessions/0000deadbeef0000/cut").call() {
        Err(ureq::Error::Status(404, _)) => {}
        other => anyhow::bail!("an unknown session is a 404: {other:?}"),
    }

    // Cut the publisher: its connection closes, the stream ends.
    assert_eq!(ureq::post("http://127.0.0.1:8081/api/v1/streams/live/s/cut").call()?.status(), 200);
    let status = publisher.wait_exit(Duration::from_secs(10))?;
    assert!(!status.success(), "ffmpeg lost its connection");
    assert!(rig.stream("live", "s")?.is_none_or(|s| s["publishing"] == false));
    let _ = rig.server();
    Ok(())
}

/// A sample's value in Prometheus text: the first line of `name` whose
/// labels include all of `labels` (`k="v"` as written).
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines().filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' '])).find(|l| labels.iter().all(|kv| l.contains(kv)))?.rsplit(' ').next()?.parse().ok()
}

/// `/metrics` after a WebRTC viewer and an HTTP-FLV viewer of live/s
/// played (issue 15 point 8): first frames per protocol, server-added
/// latency, DTLS handshakes, and the shard counters as before. The shards
/// report once a second: polled for a few seconds.
fn metrics_after_playing(rig: &Rig) -> Result<()> {
    let stream = ["app=\"live\"", "stream=\"s\""];
    let end = std::time::Instant::now() + Duration::from_secs(6);
    let text = loop {
        let text = rig.admin("/metrics")?;
        let ok = sample(&text, "rts_first_frame_seconds_count", &[&stream[..], &["protocol=\"webrtc\""]].concat()).is_some_and(|v| v >= 1.0)
            && sample(&text, "rts_first_frame_seconds_count", &[&stream[..], &["protocol=\"flv\""]].concat()).is_some_and(|v| v >= 1.0)
            && sample(&text, "rts_server_latency_seconds_count", &stream).is_some_and(|v| v > 100.0)
            && sample(&text, "rts_dtls_handshake_seconds_count", &["result=\"ok\""]).is_some_and(|v| v >= 1.0);
        if ok || std::time::Instant::now() > end {
            break text;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let public = ureq::get(&format!("{HTTP}/metrics")).call()?;
    assert!(public.content_type().starts_with("text/plain"), "{}", public.content_type());
    let public = public.into_string()?;
    for (name, labels) in [
        ("rts_first_frame_seconds_count", &[&stream[..], &["protocol=\"webrtc\""]].concat()),
        ("rts_first_frame_seconds_count", &[&stream[..], &["protocol=\"flv\""]].concat()),
        ("rts_dtls_handshake_seconds_count", &vec!["result=\"ok\""]),
    ] {
        assert!(sample(&text, name, labels).is_some_and(|v| v >= 1.0), "{name}{labels:?} >= 1 in:\n{text}");
    }
    let latency = sample(&text, "rts_server_latency_seconds_count", &stream).unwrap_or(0.0);
    assert!(latency > 100.0, "server-added latency samples of live/s: {latency}\n{text}");
    assert_eq!(sample(&text, "rts_server_latency_seconds_bucket", &[&stream[..], &["le=\"+Inf\""]].concat()), Some(latency), "+Inf bucket == count");
    for family in ["rts_server_latency_seconds", "rts_first_frame_seconds", "rts_dtls_handshake_seconds"] {
        assert!(text.contains(&format!("# TYPE {family} histogram\n")), "{family}");
        assert!(public.contains(&format!("# TYPE {family} histogram\n")), "{family} on the public listener too");
    }
    // Every shard counter of before is still there, for shard 0.
    for counter in [
        "udp_datagrams_in", "udp_datagrams_out", "udp_bytes_out", "udp_sends", "udp_messages", "udp_send_errors", "gso_fallbacks",
        "udp_recv_rearmed", "udp_recv_truncated", "stun_ok", "stun_rejected", "unknown_dropped", "ring_full_dropped", "ctl_backlogged",
        "relay_dropped", "relay_retried", "rtmp_errors", "nacks_in", "nacked", "resent", "resent_bytes", "keyframe_guard", "resend_refused",
        "plis_in", "gop_restarts", "red_packets", "rtmp_publish_refused", "http_requests", "http_refused", "flv_bytes_out",
        "rtmp_play_bytes_out", "rtmp_play_refused", "flv_skips", "flv_slow_closed",
    ] {
        let name = format!("rts_shard_{counter}_total");
        assert!(text.contains(&format!("# TYPE {name} counter\n")) && sample(&text, &name, &["shard=\"0\""]).is_some(), "{name} in:\n{text}");
    }
    // Summed over the shards (the viewers may be on any).
    let total = |name: &str| text.lines().filter(|l| l.starts_with(&format!("{name}{{"))).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum::<f64>();
    assert!(total("rts_shard_udp_datagrams_out_total") > 0.0 && total("rts_shard_flv_viewers") >= 1.0, "{text}");
    assert!(sample(&text, "rts_stream_bytes_out_total", &stream).is_some_and(|v| v > 0.0));
    assert!(text.contains("# TYPE rts_usage_bytes_out_total counter\n") && !public.contains("rts_usage_"), "traffic families on the admin listener only");
    Ok(())
}

/// Hooks set by a reload: `on_publish` / `on_play` allow and refuse
/// (RTMP publish, WebRTC and HTTP-FLV play) with the body SRS operators
/// expect; notices on unpublish and stop; a hung hook server refuses new
/// clients after its timeout (fail closed) while a viewer already playing
/// does not notice, and lets them in with `fail_open`.
#[test]
fn hooks_allow_refuse_and_survive_a_hung_hook_server() -> Result<()> {
    let mut rig = Rig::start(Mode::Serve, "")?;
    let hook = common::TestHttpServer::start("10.200.0.1:0".parse()?, |req| {
        let body: serde_json::Value = serde_json::from_str(&req.body_text()).unwrap_or_default();
        if body["stream"] == "no" {
            common::HttpResponse::new(403, "application/json", "{\"code\":403}")
        } else {
            common::HttpResponse::new(200, "application/json", "{\"code\":0}")
        }
    })?;
    // A server that takes connections and never answers.
    let hung = std::net::TcpListener::bind("10.200.0.1:0")?;
    let hung_addr = hung.local_addr()?;
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in hung.incoming().flatten() {
            held.push(c);
        }
    });
    let set_hooks = |rig: &Rig, url: &str, fail_open: bool| -> Result<serde_json::Value> {
        let base = std::fs::read_to_string(&rig.config)?;
        let base = base.split("\n[hooks]").next().unwrap_or(&base).to_string();
        let hooks = format!("\n[hooks]\non_publish = \"{url}/publish\"\non_unpublish = \"{url}/unpublish\"\non_play = \"{url}/play\"\non_stop = \"{url}/stop\"\ntimeout_ms = 500\nfail_open = {fail_open}\n");
        std::fs::write(&rig.config, base + &hooks)?;
        Ok(serde_json::from_str(&ureq::post("http://127.0.0.1:8081/api/v1/reload").call()?.into_string()?)?)
    };
    let v = set_hooks(&rig, &hook.url(""), false)?;
    assert_eq!(v["reload"]["applied"], serde_json::json!(["hooks"]), "{v}");
    std::thread::sleep(Duration::from_millis(300));

    let _ok = rig.publish("live/ok")?;
    rig.wait_live("live", "ok", Duration::from_secs(20))?;
    let mut refused = rig.publish("live/no")?;
    assert!(!refused.wait_exit(Duration::from_secs(10))?.success(), "on_publish refused live/no");
    let publishes: Vec<serde_json::Value> = hook.requests().iter().filter(|r| r.path() == "/publish").map(|r| serde_json::from_str(&r.body_text()).unwrap_or_default()).collect();
    let ok = publishes.iter().find(|b| b["stream"] == "ok").context("on_publish for live/ok")?;
    assert_eq!((ok["action"].as_str(), ok["app"].as_str(), ok["vhost"].as_str(), ok["protocol"].as_str()), (Some("on_publish"), Some("live"), Some("__defaultVhost__"), Some("publish")), "{ok}");
    assert!(ok["ip"].as_str().is_some_and(|ip| ip.starts_with("10.200.0.")), "{ok}");

    // Play: WebRTC and HTTP-FLV, allowed and refused.
    let watching = viewers(&format!("{HTTP}/whep/live/ok"), 1, 10.0);
    match ureq::post(&format!("{HTTP}/whep/live/no")).set("Content-Type", "application/sdp").send_string(OFFER) {
        Err(ureq::Error::Status(403, resp)) => assert!(resp.into_string()?.contains("hook answered 403")),
        other => anyhow::bail!("on_play must refuse live/no: {other:?}"),
    }
    assert_eq!(flv_status("/live/ok.flv")?, "HTTP/1.1 200 OK");
    assert_eq!(flv_status("/live/no.flv")?, "HTTP/1.1 403 Forbidden");
    let plays: Vec<serde_json::Value> = hook.requests().iter().filter(|r| r.path() == "/play").map(|r| serde_json::from_str(&r.body_text()).unwrap_or_default()).collect();
    assert!(plays.iter().any(|b| b["protocol"] == "webrtc" && b["stream"] == "ok" && b["ip"].as_str().is_some_and(|ip| !ip.is_empty())), "{plays:?}");
    assert!(plays.iter().any(|b| b["protocol"] == "flv" && b["stream"] == "no"), "{plays:?}");
    std::thread::sleep(Duration::from_secs(1));
    let stops: Vec<serde_json::Value> = hook.requests().iter().filter(|r| r.path() == "/stop").map(|r| serde_json::from_str(&r.body_text()).unwrap_or_default()).collect();
    assert!(stops.iter().any(|b| b["protocol"] == "flv" && b["stream"] == "ok"), "on_stop for the FLV viewer that left: {stops:?}");

    // The hook server hangs: new clients wait out the timeout and are
    // refused (fail closed); the viewer playing is not held up.
    set_hooks(&rig, &format!("http://{hung_addr}"), false)?;
    std::thread::sleep(Duration::from_millis(300));
    let t0 = std::time::Instant::now();
    assert_eq!(flv_status("/live/ok.flv")?, "HTTP/1.1 403 Forbidden");
    let waited = t0.elapsed();
    assert!(waited >= Duration::from_millis(500) && waited < Duration::from_secs(3), "refused after the hook's timeout: {waited:?}");
    let mut late = rig.publish("live/late")?;
    assert!(!late.wait_exit(Duration::from_secs(10))?.success(), "fail closed: the publish is refused");
    set_hooks(&rig, &format!("http://{hung_addr}"), true)?;
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(flv_status("/live/ok.flv")?, "HTTP/1.1 200 OK", "fail open");
    let r = report(watching)?;
    let j = serde_json::to_value(&r)?;
    assert_eq!(r.viewers_connected, 1, "{j:#}");
    assert!(r.loss_ratio < 0.001 && r.stall_count == 0, "a hung hook server held up nobody playing: {j:#}");
    let _ = rig.server();
    Ok(())
}

/// A TCP connection to `to` from the flooder's address.
fn connect_from(from: &str, to: &str) -> std::io::Result<std::net::TcpStream> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    s.bind(&from.parse::<std::net::SocketAddr>().map_err(std::io::Error::other)?.into())?;
    s.connect_timeout(&to.parse::<std::net::SocketAddr>().map_err(std::io::Error::other)?.into(), Duration::from_secs(2))?;
    Ok(s.into())
}

/// Resident memory of a process and its children (kB).
fn rss_kb(pid: u32) -> u64 {
    let own = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = own.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0u64);
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    kb + children.split_whitespace().filter_map(|c| c.parse().ok()).map(rss_kb).sum::<u64>()
}

/// Floods from one address (10.200.0.3) while a viewer (another address)
/// plays: signaling requests (rate and sessions per address), STUN with
/// unknown credentials at the media port, RTMP connections that never
/// speak. The flood is refused and counted, the viewer keeps >= 99 % of
/// its frames, and the server's memory stays within 64 MB of where it was.
#[test]
fn floods_from_one_address_do_not_hurt_a_viewer() -> Result<()> {
    let mut rig = Rig::start(Mode::Serve, "[limits]\nsignaling_per_ip_per_s = 50\nsessions_per_ip = 20\nconns_per_ip = 50\nrtmp_handshake_s = 3\nhttp_idle_s = 3\n")?;
    common::netns::run_ip(&["addr", "add", "10.200.0.3/24", "dev", "rtsv1"])?;
    let _p = common::Publisher::start(&format!("{}/live/s", rig::RTMP), &common::PublishOpts { audio: false, ..Default::default() })?;
    rig.wait_live("live", "s", Duration::from_secs(20))?;
    let watching = viewers(&format!("{HTTP}/whep/live/s"), 1, 14.0);
    std::thread::sleep(Duration::from_secs(2));
    let pid = rig.server().pid();
    let rss_before = rss_kb(pid);
    let flood_until = std::time::Instant::now() + Duration::from_secs(8);

    let signaling = std::thread::spawn(move || {
        let mut statuses: std::collections::BTreeMap<String, u64> = Default::default();
        while std::time::Instant::now() < flood_until {
            let Ok(mut s) = connect_from("10.200.0.3:0", "10.200.0.1:8080") else { continue };
            let req = format!("POST /whep/live/s HTTP/1.1\r\nHost: x\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{OFFER}", OFFER.len());
            let _ = s.write_all(req.as_bytes());
            let mut head = [0u8; 12];
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let status = match s.read_exact(&mut head) {
                Ok(()) => String::from_utf8_lossy(&head[9..12]).to_string(),
                Err(_) => "none".into(),
            };
            *statuses.entry(status).or_default() += 1;
        }
        statuses
    });
    let stun = std::thread::spawn(move || -> Result<u64> {
        let sock = std::net::UdpSocket::bind("10.200.0.3:0")?;
        let mut buf = [0u8; 200];
        let mut sent = 0u64;
        let mut i = 0u64;
        while std::time::Instant::now() < flood_until {
            i += 1;
            let tid: [u8; 12] = rand::random();
            let user = format!("nobody{i}:flood");
            let req = rts_stun::BindingRequest { transaction_id: tid, username: &user, priority: 1, controlling: Some(i), use_candidate: true };
            let n = rts_stun::write_binding_request(&req, b"wrong-password-of-the-flood", &mut buf)?;
            for port in [8000, 8001] {
                if sock.send_to(&buf[..n], ("10.200.0.1", port)).is_ok() {
                    sent += 1;
                }
            }
            if i.is_multiple_of(64) {
                std::thread::sleep(Duration::from_millis(2)); // ~60k datagrams/s: the flooder shares the box
            }
        }
        Ok(sent)
    });
    // RTMP connections that never speak: at most conns_per_ip per shard
    // stay, and not past rtmp_handshake_s.
    let mut silent = Vec::new();
    for _ in 0..300 {
        if let Ok(s) = connect_from("10.200.0.3:0", "10.200.0.1:1935") {
            silent.push(s);
        }
    }
    std::thread::sleep(Duration::from_secs(5));
    let still_open = silent
        .iter()
        .filter(|s| {
            let _ = s.set_read_timeout(Some(Duration::from_millis(10)));
            let mut b = [0u8; 1];
            let mut r: &std::net::TcpStream = s;
            matches!(r.read(&mut b), Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut)
        })
        .count();
    assert_eq!(still_open, 0, "silent RTMP connections are closed within rtmp_handshake_s");

    let statuses = signaling.join().map_err(|_| anyhow::anyhow!("flood thread"))?;
    let sent = stun.join().map_err(|_| anyhow::anyhow!("stun thread"))??;
    let rss_after = rss_kb(pid);
    println!("signaling flood: {statuses:?}; STUN datagrams: {sent}; RSS {rss_before} -> {rss_after} kB");
    let created = statuses.get("201").copied().unwrap_or(0);
    assert!(created <= 20, "at most sessions_per_ip sessions for the flooder: {statuses:?}");
    assert!(statuses.get("429").copied().unwrap_or(0) > 100, "the rest refused with 429: {statuses:?}");
    let limited = rig.api()?["control"]["counters"]["rate_limited"].as_u64().unwrap_or(0);
    assert!(limited > 100, "most by the request rate, before any work: {limited}");
    assert!(sent > 100_000, "the STUN flood ran: {sent}");
    assert!(rig.shard_counter("conns_refused_per_ip")? + rig.shard_counter("slow_clients_closed")? >= 300, "every silent connection refused or closed");
    assert!(rss_after < rss_before + 64 * 1024, "memory {rss_before} -> {rss_after} kB");

    let r = report(watching)?;
    let j = serde_json::to_value(&r)?;
    let first_s = r.first_frame_ms.as_ref().map_or(1000.0, |p| p.p50) / 1000.0;
    let expected = 30.0 * (14.0 - first_s);
    assert!(r.frames_decoded as f64 >= 0.99 * expected, "the viewer decoded {} of ~{expected:.0} frames: {j:#}", r.frames_decoded);
    assert!(r.stall_count == 0, "{j:#}");
    Ok(())
}

/// `[log] format = "json"`: every line the server writes is one JSON
/// object; the access log has the signaling request with the key hidden.
#[test]
fn json_logs_and_the_access_log() -> Result<()> {
    let mut rig = Rig::start(Mode::Serve, "[log]\nformat = \"json\"\n")?;
    let _p = rig.publish("live/s")?;
    rig.wait_live("live", "s", Duration::from_secs(20))?;
    let r = ureq::post(&format!("{HTTP}/whep/live/s?auth_key=secret-key-value")).set("Content-Type", "application/sdp").send_string(OFFER)?;
    assert_eq!(r.status(), 201);
    let line = rig.server().wait_for_log("\"path\":\"/whep/live/s", Duration::from_secs(5))?;
    let v: serde_json::Value = serde_json::from_str(&line).with_context(|| format!("not JSON: {line}"))?;
    assert_eq!((v["method"].as_str(), v["status"].as_u64()), (Some("POST"), Some(201)), "{v}");
    assert_eq!(v["path"], "/whep/live/s?auth_key=***", "{v}");
    assert!(v["client"].as_str().is_some_and(|c| c.contains("10.200.0.")), "{v}");
    let lines = rig.server().logs().lines();
    assert!(lines.len() > 5);
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l).with_context(|| format!("a log line that is not JSON: {l}"))?;
        assert!(v["timestamp"].is_string() && v["level"].is_string(), "{l}");
    }
    assert!(lines.iter().all(|l| !l.contains("secret-key-value")), "the key never reaches the log");
    Ok(())
}
