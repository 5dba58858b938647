//! RTMP in (real ffmpeg), WebRTC out (real headless Chromium), through the
//! real dataplane and control processes, inside a private network namespace.

mod common;
mod rig;

use anyhow::{bail, Context, Result};
use rig::{frames_decoded, Mode, Rig, HTTP};
use std::time::Duration;

/// Server-added delay (RTMP frame in -> last viewer packet out) must stay
/// under these. The targets (DESIGN.md §4) are < 1 ms p99 idle and, for a
/// loaded shard, p99 <= one frame interval; this is a debug build sharing two
/// cores with x264 and Chromium (decision 001 measured p50 ~0.5 ms, p99 ~7 ms
/// there, the keyframe burst), so the median gets 2x the idle target and the
/// p99 one frame interval at 30 fps.
const MAX_LATENCY_P50_US: u64 = 2_000;
const MAX_LATENCY_P99_US: u64 = 33_333;
/// First decoded frame after DTLS connected: DESIGN.md §4's target is
/// < 150 ms with the GOP cache (typically 1-20 ms here, up to ~230 ms with
/// the 2-core box at load 8); 400 ms for a busy CI VM. Waiting for the next
/// keyframe instead would take up to the 2 s GOP (tests/first_frame.rs
/// compares the two over several loads).
const MAX_FIRST_FRAME_MS: f64 = 400.0;

/// WHEP: ≥ 60 frames decoded, the server-added latency and the first frame
/// time within their bounds.
#[test]
fn whep_plays_rtmp_stream_and_reports_latency() -> Result<()> {
    let rig = Rig::start(Mode::Serve, "")?;
    let _publisher = rig.publish("live/s")?;
    rig.wait_live("live", "s", Duration::from_secs(20))?;
    let mut chrome = rig.play("live", "s", "signaling=whep", 60)?;
    let frames = frames_decoded(&mut chrome)?;
    assert!(frames >= 60, "framesDecoded = {frames}");

    // Server-added latency (RTMP frame in -> last viewer packet out), as the
    // shard measured it; stats reach control once a second. Enough frames for
    // a p99 to mean something.
    let end = std::time::Instant::now() + Duration::from_secs(10);
    let stats = loop {
        let s = rig.stream("live", "s")?.unwrap_or_default();
        if s["stats"]["latency_samples"].as_u64().unwrap_or(0) >= 30 {
            break s["stats"].clone();
        }
        assert!(std::time::Instant::now() < end, "fewer than 30 latency samples reported: {s}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let us = |k: &str| stats[k].as_u64().with_context(|| format!("{k} missing: {stats}"));
    let (p50, p99, max) = (us("latency_us_p50")?, us("latency_us_p99")?, us("latency_us_max")?);
    println!("server-added latency (RTMP frame in -> last SRTP packet out): p50 {p50} us, p99 {p99} us, max {max} us over {} frames", stats["latency_samples"]);
    assert!(p50 > 0, "a zero median means nothing was measured: {stats}");
    assert!(p50 <= MAX_LATENCY_P50_US, "server-added latency p50 {p50} us > {MAX_LATENCY_P50_US} us: {stats}");
    assert!(p99 <= MAX_LATENCY_P99_US, "server-added latency p99 {p99} us > {MAX_LATENCY_P99_US} us: {stats}");
    assert_eq!(stats["viewers"], 1);
    assert!(stats["bytes_out"].as_u64().unwrap_or(0) > 0, "per-stream traffic is counted: {stats}");
    // Default: the shards' fds are io_uring fixed files, and UDP comes in
    // through the multishot receive.
    let api = rig.api()?;
    let shards = api["shards"].as_array().cloned().unwrap_or_default();
    assert!(!shards.is_empty(), "no shard stats: {api}");
    for shard in &shards {
        assert_eq!(shard["uring_fixed_files"], true, "fixed files registered by default: {shard}");
        assert_eq!(shard["udp_multishot"], true, "multishot receive by default: {shard}");
        assert_eq!(shard["udp_read_at_turns"], true, "viewer datagrams read at the shard's turns by default: {shard}");
    }

    let first_frame = chrome.eval("(async () => (await window.rts.stats()).firstFrameMs)()")?;
    let first_frame = first_frame.as_f64().with_context(|| format!("firstFrameMs is {first_frame}"))?;
    println!("first frame after DTLS connected: {first_frame:.1} ms");
    assert!(first_frame < MAX_FIRST_FRAME_MS, "first frame {first_frame:.1} ms after DTLS connected, bound {MAX_FIRST_FRAME_MS} ms");

    // The player's stop() closes the peer connection: DTLS close_notify
    // ends the session on the shard (the RTS teardown).
    let from = rig.servers[0].logs().len();
    chrome.eval("window.rts.stop()")?;
    rig.servers[0].wait_for_log_since(from, "session removed", Duration::from_secs(10))?;
    Ok(())
}

/// The same path through the Alibaba RTS signaling shape and the SRS shape.
#[test]
fn rts_and_srs_signaling_play() -> Result<()> {
    let rig = Rig::start(Mode::Serve, "")?;
    let _publisher = rig.publish("live/rts1")?;
    rig.wait_live("live", "rts1", Duration::from_secs(20))?;
    let _a = rig.play("live", "rts1", "signaling=rts", 60)?;
    let _b = rig.play("live", "rts1", "signaling=srs", 60)?;
    Ok(())
}

/// Killing control (SIGKILL) while a viewer plays does not stop its media;
/// a restarted control serves new viewers.
#[test]
fn control_crash_does_not_cut_media() -> Result<()> {
    let mut rig = Rig::start(Mode::Split, "")?;
    let _publisher = rig.publish("live/c")?;
    rig.wait_live("live", "c", Duration::from_secs(20))?;
    let mut viewer = rig.play("live", "c", "", 30)?;

    rig.servers[1].kill();
    assert!(ureq::get(&format!("{HTTP}/api/v1/streams")).timeout(Duration::from_secs(2)).call().is_err(), "control is really gone");
    let before = frames_decoded(&mut viewer)?;
    // 60 more frames = 2 s of video delivered with no control process at all.
    viewer.wait_for(&format!("(await window.rts.stats()).framesDecoded >= {}", before + 60), Duration::from_secs(20))?;
    assert!(rig.servers[0].is_running(), "dataplane survived");

    rig.start_control()?;
    let _second = rig.play("live", "c", "", 30)?;
    let after = frames_decoded(&mut viewer)?;
    assert!(after >= before + 60);
    Ok(())
}

/// `rts serve` restarts a control process that dies, and media keeps flowing.
#[test]
fn serve_restarts_control() -> Result<()> {
    let mut rig = Rig::start(Mode::Serve, "")?;
    let _publisher = rig.publish("live/sv")?;
    rig.wait_live("live", "sv", Duration::from_secs(20))?;
    let mut viewer = rig.play("live", "sv", "", 30)?;
    let api = rig.api()?;
    let control_pid = api["control"]["pid"].as_u64().expect("control pid") as i32;
    let from = rig.server().logs().len();
    // SAFETY: killing the control child we just looked up.
    unsafe { libc::kill(control_pid, libc::SIGKILL) };
    rig.server().wait_for_log_since(from, "control exited; restarting", Duration::from_secs(10))?;
    rig.server().wait_for_log_since(from, "control listening", Duration::from_secs(20))?;
    let new_pid = rig.api()?["control"]["pid"].as_u64().unwrap_or(0) as i32;
    assert_ne!(new_pid, control_pid);
    let before = frames_decoded(&mut viewer)?;
    viewer.wait_for(&format!("(await window.rts.stats()).framesDecoded >= {}", before + 30), Duration::from_secs(20))?;
    let _second = rig.play("live", "sv", "", 30)?;
    Ok(())
}

/// Without io_uring file registration (`uring_register = false`, as when a
/// kernel refuses it) the shard's SQEs use plain fds, and without the
/// multishot receive (`udp_multishot = false`, as on kernels before 6.0)
/// UDP comes through one-shot recvmsg; it plays the same.
#[test]
fn plays_with_uring_registration_off() -> Result<()> {
    let rig = Rig::start(Mode::Serve, "[dataplane]\nuring_register = false\nudp_multishot = false\n")?;
    let _publisher = rig.publish("live/noreg")?;
    rig.wait_live("live", "noreg", Duration::from_secs(20))?;
    // `play` fails unless 60 frames are decoded.
    let _chrome = rig.play("live", "noreg", "", 60)?;
    let api = rig.api()?;
    let shards = api["shards"].as_array().cloned().unwrap_or_default();
    assert!(!shards.is_empty(), "no shard stats: {api}");
    for shard in &shards {
        assert_eq!(shard["uring_fixed_files"], false, "registration must be off: {shard}");
        assert_eq!(shard["udp_multishot"], false, "multishot receive must be off: {shard}");
        assert_eq!(shard["udp_read_at_turns"], false, "no UDP ring without the multishot receive: {shard}");
    }
    Ok(())
}

/// The one-datagram-per-sendmsg fallback (no UDP GSO) delivers the same
/// media: forced off by config, as on a kernel or device without GSO. The
/// same run has viewer datagrams waking the shard (`udp_read_at_turns =
/// false`, as on kernels before 6.1): the multishot receive on the main
/// ring.
#[test]
fn plays_with_gso_forced_off_and_datagrams_waking_the_shard() -> Result<()> {
    let rig = Rig::start(Mode::Serve, "[dataplane]\ndisable_gso = true\nudp_read_at_turns = false\n")?;
    let _publisher = rig.publish("live/nogso")?;
    rig.wait_live("live", "nogso", Duration::from_secs(20))?;
    let _chrome = rig.play("live", "nogso", "", 60)?;
    // Shards report their counters to control once a second: wait for a
    // report that includes the media the viewer decoded.
    let sum = |api: &serde_json::Value, key: &str| -> u64 { api["shards"].as_array().into_iter().flatten().map(|s| s["counters"][key].as_u64().unwrap_or(0)).sum() };
    let end = std::time::Instant::now() + Duration::from_secs(10);
    let api = loop {
        let api = rig.api()?;
        if sum(&api, "udp_datagrams_out") >= 60 {
            break api;
        }
        assert!(std::time::Instant::now() < end, "no media counted by the shards: {api}");
        std::thread::sleep(Duration::from_millis(100));
    };
    for shard in api["shards"].as_array().into_iter().flatten() {
        assert_eq!(shard["gso"], false, "GSO must be off: {shard}");
        assert_eq!((&shard["udp_multishot"], &shard["udp_read_at_turns"]), (&true.into(), &false.into()), "multishot on the main ring: {shard}");
    }
    let (sends, messages, datagrams) = (sum(&api, "udp_sends"), sum(&api, "udp_messages"), sum(&api, "udp_datagrams_out"));
    assert_eq!(messages, datagrams, "without GSO every datagram is its own message");
    assert!(sends < messages, "a frame's datagrams still share sendmmsg calls: {sends} calls, {messages} messages");
    Ok(())
}

/// IPv6 (issue 15): one dual-stack server on the defaults (`[::]`
/// listeners, one UDP socket per shard for both families) with a host
/// candidate per family. An RTMP publisher over IPv6; loadgen viewers over
/// IPv4 (they take the IPv4 candidate); then, with IPv4 UDP to the media
/// ports dropped (nftables), Chromium loads the page over IPv6 and plays
/// through the IPv6 candidate, loadgen viewers with `--ipv6` play, and an
/// HTTP-FLV viewer over IPv6. The admin
/// listing shows the IPv6 clients by their IPv6 addresses and the IPv4
/// ones as plain IPv4 (not v4-mapped).
#[test]
fn plays_over_ipv6_with_a_candidate_per_family() -> Result<()> {
    use std::io::{Read, Write};
    let rig = Rig::start(Mode::Serve, "candidate_ip6 = \"fd00:200::1\"\n")?;
    let _publisher = common::Publisher::start("rtmp://[fd00:200::1]:1935/live/v6", &common::PublishOpts { audio: false, ..Default::default() })?;
    rig.wait_live("live", "v6", Duration::from_secs(20))?;
    let offer = include_str!("../proto/sdp/tests/fixtures/chrome_av_datachannel_recvonly.sdp");
    let answer = ureq::post(&format!("{HTTP}/whep/live/v6")).set("Content-Type", "application/sdp").send_string(offer)?.into_string()?;
    // The port is the shard's (8000 + shard), the same for both families.
    let cands: Vec<&str> = answer.lines().filter(|l| l.starts_with("a=candidate:")).collect();
    assert!(cands.len() >= 2, "{answer}");
    let port = cands[0].split(' ').nth(5).context("candidate port")?;
    assert_eq!(cands[..2], [format!("a=candidate:1 1 udp 2130706431 10.200.0.1 {port} typ host"), format!("a=candidate:2 1 udp 2130706175 fd00:200::1 {port} typ host")], "{answer}");

    let mut o = rts_loadgen::Options::new(&format!("{HTTP}/whep/live/v6"));
    o.viewers = 2;
    o.duration = 5.0;
    o.verify_share = 1.0;
    o.quiet = true;
    let r = rts_loadgen::run(&o).map_err(|e| anyhow::anyhow!("loadgen: {e}"))?;
    assert!(r.viewers_connected == 2 && r.frames_decoded >= 2 * 75 && r.loss_ratio < 0.01, "IPv4 viewers: {}", serde_json::to_string(&r)?);

    common::nft("table inet rts_ipv6_test {\n chain out {\n  type filter hook output priority 0; policy accept;\n  ip daddr 10.200.0.1 udp dport 8000-8015 drop\n }\n}\n")?;
    let mut chrome = common::Chromium::launch()?;
    chrome.navigate("http://[fd00:200::1]:8080/play/live/v6?signaling=whep")?;
    let pred = "window.rts && (await window.rts.stats()).framesDecoded >= 60";
    if let Err(e) = chrome.wait_for(pred, Duration::from_secs(30)) {
        bail!("no 60 frames over IPv6: {e:#}; console: {:?}\nserver logs:\n{}", chrome.console(), rig.logs());
    }
    let mut flv = std::net::TcpStream::connect("[fd00:200::1]:8088")?;
    write!(flv, "GET /live/v6.flv HTTP/1.1\r\nHost: [fd00:200::1]:8088\r\n\r\n")?;
    flv.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut head = vec![0u8; 4096];
    let n = flv.read(&mut head)?;
    let text = String::from_utf8_lossy(&head[..n]).to_string();
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    std::thread::sleep(Duration::from_secs(2));

    let sessions: serde_json::Value = serde_json::from_str(&rig.admin("/api/v1/sessions")?)?;
    let rows = sessions["sessions"].as_array().cloned().unwrap_or_default();
    let client = |protocol: &str, prefix: &str| rows.iter().any(|r| r["protocol"] == protocol && r["client"].as_str().is_some_and(|c| c.starts_with(prefix)));
    assert!(client("webrtc", "[fd00:200::"), "Chromium's session over IPv6: {rows:#?}");
    assert!(client("flv", "[fd00:200::"), "the HTTP-FLV viewer over IPv6: {rows:#?}");
    assert!(client("publish", "[fd00:200::"), "the publisher over IPv6: {rows:#?}");
    assert!(rows.iter().all(|r| !r["client"].as_str().unwrap_or("").contains("::ffff:")), "IPv4 clients are never v4-mapped: {rows:#?}");
    assert!(frames_decoded(&mut chrome)? >= 60);
    // Loadgen viewers over IPv6 too (`--ipv6`): the fan-out's GSO sends to
    // IPv6 destinations from the same socket.
    o.ipv6 = true;
    o.duration = 4.0;
    let r = rts_loadgen::run(&o).map_err(|e| anyhow::anyhow!("loadgen --ipv6: {e}"))?;
    assert!(r.viewers_connected == 2 && r.frames_decoded >= 2 * 60 && r.loss_ratio < 0.01, "IPv6 viewers: {}", serde_json::to_string(&r)?);
    common::nft("delete table inet rts_ipv6_test\n")?;
    Ok(())
}
