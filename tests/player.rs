//! The web player (control/assets/player.html, player.js) and the swipe feed
//! (feed.html) in headless Chromium against a real `rts`:
//!
//! - the latency figure the page shows agrees with an independent measure
//!   taken in the same browser: the publisher's wall-clock SEI stamp of the
//!   frame on screen (read from the encoded frame by an RTCRtpScriptTransform
//!   on the receiver) against that frame's display time (rVFC);
//! - the page recovers by itself, on the same `<video>` element: across a
//!   control restart, after the viewer's UDP to the media port is dropped
//!   for 5 s (nftables in the test's network namespace), and across a restart
//!   of the whole server (a new session);
//! - with UDP to the media port dropped from the start, it falls back to
//!   LL-HLS (hls.js served by rts) and says so;
//! - the feed moves between three rooms on one PeerConnection (keys, wheel),
//!   each switch under 200 ms from the request to the new room's first frame
//!   on screen, with signed URLs carried to signaling and to each switch;
//!   refusals are shown in words with the server's reason;
//! - pages and assets carry their cache headers and revalidate by ETag.
//!
//! `scripts/screenshots.sh` runs the ignored `screenshots` test below.

mod common;
mod rig;

use anyhow::{bail, Context, Result};
use common::{nft, Chromium, PublishOpts, Publisher, ServerProcess};
use rig::{Mode, Rig, HTTP, RTMP};
use std::time::{Duration, Instant};

/// The page's latency figure vs the SEI measure (the issue's bound).
const MAX_LATENCY_DISAGREEMENT_MS: f64 = 50.0;
/// Feed switch, request to the new room's first frame on screen (the issue's
/// bound; video-only rooms, as tests/channel_switch.rs: with sound Chrome holds
/// the first video frame for its audio path, see README "Instant start").
const MAX_FEED_SWITCH_MS: f64 = 200.0;
/// Back to playing after the viewer's UDP comes back: Chrome notices the
/// outage after ~2.5 s without packets, the page gives ICE 2 s to heal, then
/// reconnects with back-off (0, 0.5, 1 s ...); one ICE+DTLS round and the GOP
/// cache after the unblock take well under a second on a LAN.
const MAX_RECOVERY_AFTER_UNBLOCK_MS: f64 = 4_000.0;
/// Navigation to LL-HLS frames with UDP dropped: the 5 s connect timeout,
/// then hls.js's first segment parts.
const MAX_FALLBACK_MS: f64 = 15_000.0;

// ---------------------------------------------------------------------------
// helpers

fn eval_f64(c: &mut Chromium, js: &str) -> Result<f64> {
    let v = c.eval(js)?;
    v.as_f64().with_context(|| format!("{js} gave {v}"))
}

fn page_state(c: &mut Chromium) -> String {
    c.eval("JSON.stringify({state: window.rts && window.rts.state, error: window.rts && window.rts.error, message: window.rts && window.rts.message})")
        .map(|v| v.to_string())
        .unwrap_or_else(|e| format!("{e:#}"))
}

/// Drops all UDP to and from the WebRTC media ports (8000 + shard): the
/// viewer's ICE checks and the server's media. TCP (HTTP, RTMP) is untouched.
fn block_media_udp() -> Result<()> {
    nft("table inet rts_player_test {\n chain out {\n  type filter hook output priority 0; policy accept;\n  udp dport 8000-8015 drop\n  udp sport 8000-8015 drop\n }\n}\n")
}

fn unblock_media_udp() -> Result<()> {
    nft("delete table inet rts_player_test\n")
}

/// Frame-gap probe on the page's `<video>`: the longest time between two
/// presented frames since it was installed, and the element's identity.
const GAP_PROBE: &str = r#"(() => {
  const video = document.getElementById('video');
  video.dataset.probe = 'original';
  const m = { last: null, maxGap: 0, frames: 0 };
  window.gapProbe = m;
  const onFrame = (now) => {
    if (m.last !== null) m.maxGap = Math.max(m.maxGap, now - m.last);
    m.last = now; m.frames++;
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
  return true;
})()"#;

/// Waits until the page presents a new frame again and returns the ms that
/// took; then checks that it goes on playing (15 more frames).
fn wait_frames_flow(c: &mut Chromium, timeout: Duration) -> Result<f64> {
    let t0 = Instant::now();
    let before = eval_f64(c, "window.gapProbe.frames")?;
    c.wait_for(&format!("window.gapProbe.frames > {before} && window.rts.state === 'playing'"), timeout)
        .with_context(|| format!("page did not play again: {}", page_state(c)))?;
    let first = t0.elapsed().as_secs_f64() * 1000.0;
    c.wait_for(&format!("window.gapProbe.frames >= {} && window.rts.state === 'playing'", before + 16.0), Duration::from_secs(5))
        .with_context(|| format!("page does not go on playing: {}", page_state(c)))?;
    Ok(first)
}

// ---------------------------------------------------------------------------
// latency

/// The independent measure: an RTCRtpScriptTransform on the video receiver
/// reads the publisher's SEI (tools/publish/src/sei.rs: user_data_unregistered,
/// UUID `rts\0SEITIMESTAMP`, UNIX µs big-endian) from each encoded frame, keyed
/// by RTP timestamp; rVFC gives the display time of the frame with that RTP
/// timestamp. Latency = display time (UNIX ms) − SEI stamp.
const SEI_PROBE: &str = r#"(() => {
  const WORKER = `
    const UUID = [0x72,0x74,0x73,0x00,0x53,0x45,0x49,0x54,0x49,0x4d,0x45,0x53,0x54,0x41,0x4d,0x50];
    function stamp(d) {
      for (let i = 0; i + 4 < d.length; i++) {
        if (d[i] !== 0 || d[i + 1] !== 0 || d[i + 2] !== 1 || (d[i + 3] & 0x1f) !== 6) continue;
        // The SEI NAL's RBSP, emulation prevention removed.
        const r = []; let zeros = 0;
        for (let j = i + 4; j < d.length && r.length < 40; j++) {
          const b = d[j];
          if (zeros >= 2 && b === 3) { zeros = 0; continue; }
          r.push(b); zeros = b === 0 ? zeros + 1 : 0;
        }
        if (r[0] !== 5 || r[1] !== 24) continue;
        if (!UUID.every((u, k) => r[2 + k] === u)) continue;
        let us = 0;
        for (let k = 0; k < 8; k++) us = us * 256 + r[18 + k];
        return us;
      }
      return null;
    }
    let seen = 0;
    function pipe(readable, writable) {
      readable.pipeThrough(new TransformStream({ transform(frame, ctl) {
        try {
          const d = new Uint8Array(frame.data);
          const us = stamp(d);
          seen++;
          if (us !== null) postMessage({ rtp: frame.getMetadata().rtpTimestamp, us });
          else if (seen % 30 === 1) postMessage({ miss: seen, head: Array.from(d.slice(0, 48)) });
        } catch (e) { postMessage({ miss: -1, error: String(e) }); }
        ctl.enqueue(frame);
      } })).pipeTo(writable);
    }
    onmessage = (e) => pipe(e.data.readable, e.data.writable);
    onrtctransform = (ev) => pipe(ev.transformer.readable, ev.transformer.writable);`;
  // Installed before the page's script runs (Page.addScriptToEvaluateOnNewDocument):
  // every PeerConnection the page makes gets the transform on its video receiver
  // when the track arrives, before any media flows.
  const stamps = new Map();
  const m = { samples: [], stamped: 0, read: 0, miss: null, lastRtp: null, transforms: 0, workers: [] };
  window.seiProbe = m;
  const Original = window.RTCPeerConnection;
  window.RTCPeerConnection = function (config, ...rest) {
    // Chrome's encoded streams (the receiver holds its frames for the transform).
    const pc = new Original(Object.assign({}, config, { encodedInsertableStreams: true }), ...rest);
    pc.addEventListener('track', (ev) => {
      if (ev.track.kind !== 'video') return;
      const worker = new Worker(URL.createObjectURL(new Blob([WORKER], { type: 'text/javascript' })));
      // Held, or the collector may end the worker and the frames piped through it.
      m.workers.push(worker);
      worker.onmessage = (e) => {
        if (e.data.miss) { m.miss = e.data; return; }
        m.read++;
        stamps.set(e.data.rtp, e.data.us);
        if (stamps.size > 900) stamps.delete(stamps.keys().next().value);
      };
      if (ev.receiver.createEncodedStreams) {
        const { readable, writable } = ev.receiver.createEncodedStreams();
        worker.postMessage({ readable, writable }, [readable, writable]);
      } else {
        ev.receiver.transform = new RTCRtpScriptTransform(worker, {});
      }
      m.transforms++;
    });
    return pc;
  };
  window.RTCPeerConnection.prototype = Original.prototype;
  m.watch = () => {
  const video = document.getElementById('video');
  const onFrame = (now, meta) => {
    const us = stamps.get(meta.rtpTimestamp);
    m.lastRtp = meta.rtpTimestamp;
    if (us !== undefined) {
      m.stamped++;
      m.samples.push([meta.expectedDisplayTime, performance.timeOrigin + meta.expectedDisplayTime - us / 1000]);
      if (m.samples.length > 600) m.samples.shift();
    }
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
  };
  // Median over the last `ms` of display time, as the page's figure is.
  m.median = (ms) => {
    const since = performance.now() - ms;
    const v = m.samples.filter((s) => s[0] >= since).map((s) => s[1]).sort((a, b) => a - b);
    return v.length ? { median: v[Math.floor(v.length / 2)], n: v.length } : null;
  };
  return true;
})()"#;

fn sei_publisher(path: &str, secs: f64) -> std::thread::JoinHandle<Result<rts_publish::publisher::Summary, rts_publish::PublishError>> {
    let o = rts_publish::publisher::Options {
        url: format!("{RTMP}/{path}"),
        width: 640,
        height: 360,
        fps: 30,
        gop: 60,
        bitrate: "1M".into(),
        duration: Some(secs),
        ffmpeg: "ffmpeg".into(),
        sei_every: 1,
        preset: "ultrafast".into(),
    };
    std::thread::spawn(move || rts_publish::publisher::run(&o))
}

#[test]
fn latency_figure_agrees_with_the_publishers_sei_stamps() -> Result<()> {
    let rig = Rig::start(Mode::Serve, "[dataplane]\nshards = 1\n")?;
    let _publisher = sei_publisher("live/lat", 45.0);
    rig.wait_live("live", "lat", Duration::from_secs(20))?;
    let mut c = Chromium::launch()?;
    c.call("Page.addScriptToEvaluateOnNewDocument", serde_json::json!({ "source": SEI_PROBE }))?;
    rig.play_in(&mut c, "live", "lat", "", 30)?;
    c.eval("window.seiProbe.watch(), true")?;
    // Let the jitter buffer settle and the probe fill its window.
    if let Err(e) = c.wait_for("window.seiProbe.stamped >= 90", Duration::from_secs(15)) {
        let probe = c.eval("JSON.stringify({ stamped: window.seiProbe.stamped, read: window.seiProbe.read, miss: window.seiProbe.miss, lastRtp: window.seiProbe.lastRtp, transforms: window.seiProbe.transforms })");
        bail!("no SEI stamps read from the frames on screen: {e:#}; probe {probe:?}; page {}", page_state(&mut c));
    }
    let mut diffs = Vec::new();
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(500));
        let s = c.eval("(async () => { const s = await window.rts.stats(); return { page: s.latencyMs, source: s.latencySource, sei: window.seiProbe.median(1000) }; })()")?;
        let Some(page) = s["page"].as_f64() else {
            let dbg = c.eval("(async () => { let v = null; (await window.rts.pc.getStats()).forEach((x) => { if (x.type === 'inbound-rtp' && x.kind === 'video') v = x; }); const meta = await new Promise((r) => document.getElementById('video').requestVideoFrameCallback((n, m) => r(m))); return { v, meta: Object.assign({}, meta) }; })()");
            bail!("the page shows no latency figure: {s}; {dbg:?}");
        };
        let sei = s["sei"]["median"].as_f64().with_context(|| format!("no SEI samples in the last second: {s}"))?;
        println!("latency: page {page:.1} ms ({}), SEI stamp to display {sei:.1} ms over {} frames, difference {:+.1} ms", s["source"], s["sei"]["n"], page - sei);
        assert!(sei > 0.0 && sei < 1000.0, "SEI-measured latency {sei:.1} ms: not sub-second on a LAN");
        diffs.push(page - sei);
    }
    let worst = diffs.iter().fold(0.0f64, |m, d| m.max(d.abs()));
    println!("latency figure vs SEI measure: worst difference {worst:.1} ms over {} samples (bound {MAX_LATENCY_DISAGREEMENT_MS} ms)", diffs.len());
    assert!(worst < MAX_LATENCY_DISAGREEMENT_MS, "the page's latency figure is off the SEI measure by up to {worst:.1} ms: {diffs:?}");
    // And the overlay shows it.
    let shown = c.eval("document.getElementById('latency').textContent")?;
    assert!(shown.as_str().is_some_and(|t| t.ends_with(" ms")), "overlay latency text {shown}");
    Ok(())
}

// ---------------------------------------------------------------------------
// recovery

#[test]
fn player_recovers_from_restarts_and_a_udp_outage() -> Result<()> {
    let mut rig = Rig::start(Mode::Split, "[dataplane]\nshards = 1\n")?;
    let _p = rig.publish("live/rec")?;
    rig.wait_live("live", "rec", Duration::from_secs(20))?;
    let mut c = rig.play("live", "rec", "", 20)?;
    c.eval(GAP_PROBE)?;

    // 1. Control restart: media does not pass through control, the session lives
    //    on in its shard; the page must keep playing (or reconnect by itself).
    rig.servers[1].kill();
    std::thread::sleep(Duration::from_secs(2));
    let t0 = Instant::now();
    rig.start_control()?;
    let restart_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let flow_ms = wait_frames_flow(&mut c, Duration::from_secs(15))?;
    let gap = eval_f64(&mut c, "window.gapProbe.maxGap")?;
    let reconnects = c.eval("window.rts.reconnects")?;
    println!("control restart: control back after {restart_ms:.0} ms; page playing {flow_ms:.0} ms later; longest frame gap {gap:.0} ms; reconnects {reconnects}");
    assert!(gap < 3_000.0, "control restart froze the picture for {gap:.0} ms");
    // Signaling works again through the new control: a second viewer plays.
    let _second = rig.play("live", "rec", "", 10)?;

    // 2. The viewer's UDP dropped for 5 s: Chrome's ICE goes "disconnected"; the
    //    page waits for it to heal, then reconnects with back-off on the same element.
    c.eval("window.gapProbe.maxGap = 0")?;
    block_media_udp()?;
    let blocked = Instant::now();
    c.wait_for("window.rts.state !== 'playing'", Duration::from_secs(8)).with_context(|| format!("the page did not notice the outage: {}", page_state(&mut c)))?;
    let noticed_ms = blocked.elapsed().as_secs_f64() * 1000.0;
    std::thread::sleep(Duration::from_secs(5).saturating_sub(blocked.elapsed()));
    unblock_media_udp()?;
    let back_ms = wait_frames_flow(&mut c, Duration::from_secs(20))?;
    let s = c.eval("(async () => ({ reconnects: window.rts.reconnects, element: document.getElementById('video').dataset.probe, pc: window.rts.pc.connectionState, stats: await window.rts.stats() }))()")?;
    println!(
        "UDP blocked 5 s: page noticed after {noticed_ms:.0} ms (state left 'playing'); playing again {back_ms:.0} ms after the unblock; reconnects {}; {}",
        s["reconnects"], s["stats"]
    );
    assert!(back_ms < MAX_RECOVERY_AFTER_UNBLOCK_MS, "playing again only {back_ms:.0} ms after UDP came back (bound {MAX_RECOVERY_AFTER_UNBLOCK_MS} ms)");
    assert!(s["reconnects"].as_u64() >= Some(1), "the page did not reconnect: {s}");
    assert_eq!(s["element"], "original", "the page must keep its <video> element");
    assert_eq!(s["pc"], "connected", "{s}");

    // 3. The whole server restarts (dataplane and control): the session is gone
    //    and signaling is refused while it is down; the page retries with back-off
    //    and plays a new session once the server and the stream are back.
    let reconnects_before = c.eval("window.rts.reconnects")?.as_u64().unwrap_or(0);
    drop(_p);
    rig.servers[1].kill();
    rig.servers[0].kill();
    std::thread::sleep(Duration::from_secs(2));
    let cfg = rig.config.to_str().context("utf-8 path")?.to_string();
    let d = ServerProcess::start(&["--config", &cfg, "dataplane"], &[("RUST_LOG", "info")])?;
    d.wait_for_log("shard ready", Duration::from_secs(20))?;
    rig.servers[0] = d;
    rig.start_control()?;
    let up = Instant::now();
    let _p = rig.publish("live/rec")?;
    rig.wait_live("live", "rec", Duration::from_secs(20))?;
    let live_ms = up.elapsed().as_secs_f64() * 1000.0;
    wait_frames_flow(&mut c, Duration::from_secs(30))?;
    let back_ms = up.elapsed().as_secs_f64() * 1000.0;
    let s = c.eval("({ reconnects: window.rts.reconnects, element: document.getElementById('video').dataset.probe, state: window.rts.state })")?;
    println!("server restart: stream live again {live_ms:.0} ms after control was back, page playing {back_ms:.0} ms after; {s}");
    assert!(s["reconnects"].as_u64() > Some(reconnects_before), "no reconnect after the server restart: {s}");
    assert_eq!(s["element"], "original", "the page must keep its <video> element");
    // Back-off: attempts 0, 0.5, 1, 2, 4 s apart; the stream is live within ~1 s.
    assert!(back_ms < 10_000.0, "playing again only {back_ms:.0} ms after the server was back");
    Ok(())
}

#[test]
fn player_falls_back_to_ll_hls_when_udp_is_blocked() -> Result<()> {
    let rig = Rig::start(Mode::Serve, "[dataplane]\nshards = 1\n")?;
    // What Chromium's MSE decodes: H.264 Main, no B-frames, AAC (as tests/hls.rs).
    let opts = PublishOpts { audio: true, profile: "main".into(), gop: 30, size: "640x360".into(), ..Default::default() };
    let _p = Publisher::start(&format!("{RTMP}/live/fb"), &opts)?;
    rig.wait_live("live", "fb", Duration::from_secs(20))?;
    std::thread::sleep(Duration::from_millis(1500)); // a few HLS parts
    block_media_udp()?;
    let mut c = Chromium::launch()?;
    let t0 = Instant::now();
    c.navigate(&format!("{HTTP}/play/live/fb"))?;
    c.wait_for("window.rts.protocol === 'hls' && (await window.rts.stats()).framesDecoded >= 10 && window.rts.state === 'playing'", Duration::from_secs(30))
        .with_context(|| format!("no LL-HLS fallback: {}; console {:?}", page_state(&mut c), c.console()))?;
    let fallback_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let s = c.eval("(async () => ({ stats: await window.rts.stats(), message: document.getElementById('message').textContent, hls: !!window.rts.hls }))()")?;
    println!("UDP to the media port dropped: LL-HLS frames on screen {fallback_ms:.0} ms after navigation; {s}");
    assert!(fallback_ms < MAX_FALLBACK_MS, "fallback took {fallback_ms:.0} ms (bound {MAX_FALLBACK_MS} ms)");
    assert_eq!(s["stats"]["protocol"], "hls", "{s}");
    assert!(s["stats"]["fallback"].as_str().is_some_and(|r| r.contains("UDP")), "the page must say why: {s}");
    assert!(s["message"].as_str().is_some_and(|m| m.contains("LL-HLS")), "the page must say it fell back: {s}");
    assert_eq!(s["stats"]["frameWidth"], 640, "{s}");
    Ok(())
}

// ---------------------------------------------------------------------------
// feed, auth, headers

const INGEST_KEY: &str = "ingest-secret";
const PLAY_KEY: &str = "play-secret";

fn key(path: &str, secret: &str, age_s: u64) -> String {
    rts_common::auth::sign_path(path, secret, rts_common::config::unix_now() - age_s, "r", "0")
}

fn publish_signed(path: &str, size: &str) -> Result<Publisher> {
    let opts = PublishOpts { audio: false, gop: 60, size: size.into(), ..Default::default() };
    Publisher::start(&format!("{RTMP}/{path}?auth_key={}", key(&format!("/{path}"), INGEST_KEY, 0)), &opts)
}

fn get(url: &str, if_none_match: Option<&str>) -> Result<(u16, String, String, String, String)> {
    let mut req = ureq::get(url).timeout(Duration::from_secs(5));
    if let Some(t) = if_none_match {
        req = req.set("If-None-Match", t);
    }
    let resp = match req.call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => return Err(e.into()),
    };
    let h = |n: &str| resp.header(n).unwrap_or("").to_string();
    let (status, ct, cc, etag) = (resp.status(), h("content-type"), h("cache-control"), h("etag"));
    Ok((status, ct, cc, etag, resp.into_string()?))
}

#[test]
fn feed_switches_rooms_fast_on_one_session_with_signed_urls() -> Result<()> {
    let toml = format!("[auth]\ningest_key = \"{INGEST_KEY}\"\nplay_key = \"{PLAY_KEY}\"\nvalidity_s = 600\n[dataplane]\nshards = 1\n");
    let rig = Rig::start(Mode::Serve, &toml)?;
    let rooms = [("live/f1", 640u64), ("live/f2", 320), ("live/f3", 480)];
    let sizes = ["640x360", "320x240", "480x270"];
    let _pubs = rooms.iter().zip(sizes).map(|((p, _), s)| publish_signed(p, s)).collect::<Result<Vec<_>>>()?;
    for (p, _) in rooms {
        let (a, s) = p.split_once('/').context("app/stream")?;
        rig.wait_live(a, s, Duration::from_secs(20))?;
    }

    // Headers: pages and player.js revalidate by ETag; hls.js is cached.
    for path in ["/play/live/f1", "/feed", "/player.js", "/player/hls.min.js"] {
        let (status, ct, cc, etag, body) = get(&format!("{HTTP}{path}"), None)?;
        assert_eq!(status, 200, "{path}");
        assert!(!body.contains("__MEDIA_PORT__"), "{path}: ports not substituted");
        let want_ct = if path.ends_with(".js") { "text/javascript" } else { "text/html" };
        assert!(ct.starts_with(want_ct), "{path}: content-type {ct}");
        let want_cc = if path == "/player/hls.min.js" { "public, max-age=86400" } else { "no-cache" };
        assert_eq!(cc, want_cc, "{path}");
        assert!(etag.starts_with('"'), "{path}: ETag {etag:?}");
        let (status, _, cc, etag2, body) = get(&format!("{HTTP}{path}"), Some(&etag))?;
        assert_eq!((status, body.len(), etag2.as_str(), cc.as_str()), (304, 0, etag.as_str(), want_cc), "{path}: revalidation");
    }

    // Each room's own key, carried to signaling and to each switch.
    let entry = |p: &str| format!("{p}%3Fauth_key%3D{}", key(&format!("/{p}"), PLAY_KEY, 0));
    let list = rooms.iter().map(|(p, _)| entry(p)).collect::<Vec<_>>().join(",");
    let mut c = Chromium::launch()?;
    c.navigate(&format!("{HTTP}/feed?streams={list}"))?;
    c.wait_for("window.rts && window.rts.state === 'playing' && (await window.rts.stats()).framesDecoded >= 30", Duration::from_secs(30))
        .with_context(|| format!("feed does not play: {}; {:?}", page_state(&mut c), c.console()))?;
    c.eval("window.firstPc = window.rts.pc; true")?;

    // Three switches: arrow key, wheel, arrow key (f1 -> f2 -> f3 -> f1).
    let gestures = [
        "document.dispatchEvent(new KeyboardEvent('keydown', { key: 'ArrowDown' }))",
        "document.dispatchEvent(new WheelEvent('wheel', { deltaY: 120 }))",
        "document.dispatchEvent(new KeyboardEvent('keydown', { key: 'ArrowDown' }))",
    ];
    let mut times = Vec::new();
    for (n, gesture) in gestures.iter().enumerate() {
        std::thread::sleep(Duration::from_millis(1500)); // watch the room a moment
        c.eval(gesture)?;
        let r = c.wait_for(&format!("window.feed.switches.length >= {} && window.feed.switches[{n}]", n + 1), Duration::from_secs(10))?;
        let (target, width) = rooms[(n + 1) % rooms.len()];
        let ms = r["firstFrameMs"].as_f64().with_context(|| format!("switch {n}: {r}"))?;
        println!("feed switch {} to {target}: first new frame {ms:.1} ms after the request (HTTP {:.1} ms), {}x{}", n + 1, r["httpMs"].as_f64().unwrap_or(-1.0), r["width"], r["height"]);
        assert_eq!(r["stream"], target, "{r}");
        assert_eq!(r["width"], width, "the first frame after the switch is not {target}'s: {r}");
        assert!(ms < MAX_FEED_SWITCH_MS, "switch to {target}: {ms:.1} ms to the first new frame (bound {MAX_FEED_SWITCH_MS} ms)");
        times.push(ms);
    }
    let shown = c.eval("document.getElementById('last').textContent")?;
    assert!(shown.as_str().is_some_and(|t| t.ends_with(" ms")), "the feed shows the switch time: {shown}");
    // One session: the same PeerConnection, one WHEP POST, nothing preloaded.
    let one = c.eval("(() => ({ same: window.firstPc === window.rts.pc, state: window.rts.pc.connectionState, posts: performance.getEntriesByType('resource').filter((e) => e.name.includes('/whep/live/')).length, pcs: window.feed.switches.length }))()")?;
    assert_eq!(one["same"], true, "{one}");
    assert_eq!(one["state"], "connected", "{one}");
    assert_eq!(one["posts"], 1, "one WHEP session for the whole feed: {one}");
    println!("feed: 3 switches {times:?} ms on one PeerConnection");

    // A switch with the wrong room's key is refused with the server's reason and
    // leaves the viewer where it was.
    let refused = c.eval("window.rts.switchTo('live/f2', { authKey: 'nope' }).then(() => 'switched', (e) => ({ status: e.status, reason: e.reason, words: rtsPlayer.describe(e) }))")?;
    assert_eq!(refused["status"], 403, "{refused}");
    assert_eq!(refused["reason"], "malformed", "{refused}");
    assert_eq!(c.eval("window.rts.stream")?, "f1");

    // The player page with an expired key: refused, in words, with the reason.
    let mut p = Chromium::launch()?;
    p.navigate(&format!("{HTTP}/play/live/f1?auth_key={}", key("/live/f1", PLAY_KEY, 7200)))?;
    let e = p.wait_for("window.rts.state === 'error' && { error: window.rts.error, message: document.getElementById('message').textContent, reason: window.rts.reason }", Duration::from_secs(15))?;
    println!("expired key on the player page: {e}");
    assert!(e["error"].as_str().is_some_and(|s| s.contains("403")), "{e}");
    assert_eq!(e["reason"], "expired", "{e}");
    assert!(e["message"].as_str().is_some_and(|s| s.contains("expired")), "{e}");
    // And with a valid key it plays.
    rig.play_in(&mut p, "live", "f2", &format!("auth_key={}", key("/live/f2", PLAY_KEY, 0)), 10)?;
    Ok(())
}

// ---------------------------------------------------------------------------
// screenshots (by hand: scripts/screenshots.sh)

fn screenshot(c: &mut Chromium, file: &std::path::Path) -> Result<()> {
    use base64::Engine as _;
    let r = c.call("Page.captureScreenshot", serde_json::json!({ "format": "png" }))?;
    let data = r["data"].as_str().context("no screenshot data")?;
    std::fs::write(file, base64::engine::general_purpose::STANDARD.decode(data)?)?;
    println!("wrote {}", file.display());
    Ok(())
}

#[test]
#[ignore = "writes docs/screenshots/*.png; run by scripts/screenshots.sh"]
fn screenshots() -> Result<()> {
    let dir = std::path::PathBuf::from(std::env::var("SCREENSHOT_DIR").unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/docs/screenshots").into()));
    std::fs::create_dir_all(&dir)?;
    let rig = Rig::start(Mode::Serve, "[dataplane]\nshards = 1\n")?;
    let _lat = sei_publisher("live/shop", 60.0);
    let rooms = [("live/room1", "1280x720"), ("live/room2", "960x540"), ("live/room3", "640x360")];
    let _pubs = rooms
        .iter()
        .map(|(p, s)| Publisher::start(&format!("{RTMP}/{p}"), &PublishOpts { audio: true, gop: 60, size: (*s).into(), ..Default::default() }))
        .collect::<Result<Vec<_>>>()?;
    rig.wait_live("live", "shop", Duration::from_secs(20))?;
    for (p, _) in rooms {
        let (a, s) = p.split_once('/').context("app/stream")?;
        rig.wait_live(a, s, Duration::from_secs(20))?;
    }
    let mut c = Chromium::launch_with(&["--window-size=1280,720"])?;
    c.call("Emulation.setDeviceMetricsOverride", serde_json::json!({ "width": 1280, "height": 720, "deviceScaleFactor": 1, "mobile": false }))?;
    rig.play_in(&mut c, "live", "shop", "", 30)?;
    std::thread::sleep(Duration::from_secs(4)); // figures filled in
    screenshot(&mut c, &dir.join("player.png"))?;

    let mut f = Chromium::launch()?;
    f.call("Emulation.setDeviceMetricsOverride", serde_json::json!({ "width": 430, "height": 860, "deviceScaleFactor": 1, "mobile": true }))?;
    f.navigate(&format!("{HTTP}/feed?streams=live/room1,live/room2,live/room3"))?;
    f.wait_for("window.rts && window.rts.state === 'playing' && (await window.rts.stats()).framesDecoded >= 30", Duration::from_secs(30))?;
    f.eval("window.feed.next()")?;
    std::thread::sleep(Duration::from_millis(600));
    f.eval("window.feed.next()")?;
    std::thread::sleep(Duration::from_secs(2));
    screenshot(&mut f, &dir.join("feed.png"))?;
    Ok(())
}
