//! `rts-loadgen` against the real server (RTMP in from ffmpeg, WebRTC out
//! through the dataplane), and against bad servers that must produce
//! categorised failures, never a hang.
//!
//! Needs `rts-loadgen = { path = "tools/loadgen" }` in the root
//! `[dev-dependencies]`.

mod common;
mod rig;

use anyhow::Result;
use common::{HttpResponse, TestHttpServer};
use rig::{Mode, Rig, HTTP};
use rts_loadgen::{run, Options, Report};
use std::time::{Duration, Instant};

fn opts(url: &str, viewers: u64, duration: f64) -> Options {
    let mut o = Options::new(url);
    o.viewers = viewers;
    o.ramp = 20.0;
    o.duration = duration;
    o.quiet = true;
    o
}

/// Runs and checks that `run` returned by its own deadline.
fn run_within_deadline(o: &Options) -> Result<Report> {
    let t0 = Instant::now();
    let r = run(o)?;
    let took = t0.elapsed();
    assert!(took <= o.deadline() + Duration::from_secs(3), "run took {took:?}, deadline {:?}", o.deadline());
    Ok(r)
}

/// 20 real viewers (5 verified) for 8 s: all connect, media flows, frames complete.
#[test]
fn loadgen_holds_twenty_viewers() -> Result<()> {
    let rig = Rig::start(Mode::Serve, "")?;
    let _publisher = rig.publish("live/lg")?;
    rig.wait_live("live", "lg", Duration::from_secs(20))?;
    let mut o = opts(&format!("{HTTP}/whep/live/lg"), 20, 8.0);
    o.verify_share = 0.25;
    let r = run_within_deadline(&o)?;
    println!("{}", r.summary_table());
    let json = serde_json::to_value(&r)?;
    assert_eq!(r.viewers_connected, 20, "report: {json:#}\nlogs:\n{}", rig.logs());
    assert_eq!(r.viewers_failed, 0, "{json:#}");
    assert_eq!(r.verified_viewers, 5);
    assert!(r.frames_decoded > 0, "{json:#}");
    assert!(r.loss_ratio < 0.01, "{json:#}");
    assert!(r.first_frame_ms.is_some(), "{json:#}");
    assert!(r.kbps_per_viewer > 10.0, "{json:#}");
    assert!(r.server_latency_us.is_some(), "rts target reports server-added delay: {json:#}");
    // Our offer carries the playout-delay extension like Chrome's: the video
    // comes back with it on every packet, SRTP-authenticated. This stream has
    // no audio, so the hint stays at its 10 ms floor (no lip sync to wait for).
    assert!(r.playout_delay_packets > 0, "no video packet carried the playout-delay extension: {json:#}");
    let pd = r.playout_delay_min_ms.expect("playout-delay samples");
    assert_eq!((pd.p50, pd.p99), (10.0, 10.0), "{json:#}");
    assert!(!r.hit_deadline);
    Ok(())
}

/// The RTS JSON and SRS shapes reach the same server.
#[test]
fn loadgen_rts_and_srs_signaling() -> Result<()> {
    let rig = Rig::start(Mode::Serve, "")?;
    let _publisher = rig.publish("live/lg2")?;
    rig.wait_live("live", "lg2", Duration::from_secs(20))?;
    for s in [rts_loadgen::Signaling::Rts, rts_loadgen::Signaling::Srs] {
        let mut o = opts(&format!("{HTTP}/whep/live/lg2"), 2, 3.0);
        o.signaling = s;
        let r = run_within_deadline(&o)?;
        assert_eq!((r.viewers_connected, r.viewers_failed), (2, 0), "{s:?}: {:#}", serde_json::to_value(&r)?);
        assert!(r.frames_decoded > 0, "{s:?}");
    }
    Ok(())
}

/// Nothing listening, 404, 503, garbage SDP, and a valid answer whose
/// candidate never answers STUN: every viewer fails in its category, fast.
#[test]
fn loadgen_bad_servers_fail_by_category() -> Result<()> {
    let answer_to_nowhere = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=ice-lite\r\na=group:BUNDLE 0\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 102\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=ice-ufrag:srv\r\na=ice-pwd:serverpassword0123456789\r\n\
a=fingerprint:sha-256 AB:CD:01\r\na=setup:passive\r\na=sendonly\r\na=rtcp-mux\r\na=rtpmap:102 H264/90000\r\n\
a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n";
    let http = TestHttpServer::start("127.0.0.1:0".parse()?, move |req| match req.path() {
        "/whep/live/notfound" => HttpResponse::not_found(),
        "/whep/live/broken" => HttpResponse::new(503, "text/plain", "overloaded"),
        "/whep/live/garbage" => HttpResponse::new(201, "application/sdp", "this is not SDP \u{1}\u{2}"),
        "/whep/live/nowhere" => HttpResponse::new(201, "application/sdp", answer_to_nowhere),
        _ => HttpResponse::not_found(),
    })?;
    let cases = [
        ("http://127.0.0.1:1/whep/live/s".to_string(), "connect_error"),
        (http.url("/whep/live/notfound"), "http_4xx"),
        (http.url("/whep/live/broken"), "http_5xx"),
        (http.url("/whep/live/garbage"), "bad_sdp"),
        (http.url("/whep/live/nowhere"), "ice_timeout"),
    ];
    for (url, category) in cases {
        let mut o = opts(&url, 3, 30.0);
        o.connect_timeout = 2.0;
        o.ice_timeout = 1.0;
        let t0 = Instant::now();
        let r = run_within_deadline(&o)?;
        let json = serde_json::to_value(&r)?;
        assert_eq!(json["failures"][category], 3, "{url}: {json:#}");
        assert_eq!((r.viewers_failed, r.viewers_connected), (3, 0), "{url}");
        // All viewers failed: the run ends without waiting out the 30 s hold.
        assert!(t0.elapsed() < Duration::from_secs(10), "{url}: took {:?}", t0.elapsed());
    }
    Ok(())
}

/// An HTTP server that accepts and never answers: the signaling timeout fires.
#[test]
fn loadgen_silent_server_times_out() -> Result<()> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}/whep/live/s", listener.local_addr()?);
    let mut o = opts(&url, 2, 30.0);
    o.connect_timeout = 1.0;
    let r = run_within_deadline(&o)?;
    assert_eq!(serde_json::to_value(&r)?["failures"]["signaling_timeout"], 2, "{:#}", serde_json::to_value(&r)?);
    drop(listener);
    Ok(())
}
