//! Swiping between live rooms that have sound (issue 18): two rooms that
//! differ in everything a room can (resolution, H.264 profile, frame rate,
//! AAC sample rate, GOP of 3 s), one Chromium PeerConnection switching
//! between them ten times with `POST {resource}/switch`.
//!
//! Per switch:
//! - time from the call to the first frame of the new room on screen
//!   (`requestVideoFrameCallback`, the rooms differ in width), median and
//!   max bounded;
//! - audio keeps playing: over the 1.6 s after the call, no run of
//!   concealment (inbound-rtp `concealedSamples` growing) of 100 ms or more;
//! - lip sync of the new room within 1 s: Chrome's playout offset
//!   (`estimatedPlayoutTimestamp` of video minus audio from one getStats()
//!   snapshot) at the last sample before 1 s, less the render delay of the
//!   frames shown then (rVFC display time minus the time the receiver
//!   handed the frame on): tests/media_sync.rs's perceived offset.
//!
//! And over the session, the average time a video frame waited in Chrome's
//! jitter buffer. Before the replays were squeezed (session.rs `Squeeze`),
//! every GOP replay (the join's, each switch's) went out at its real pace
//! and Chromium played it out at that pace: the video fell a GOP's age
//! further behind live with each, a switch waited for the previous room's
//! buffered frames to play out (55-1,035 ms here, 1.2-2 s in the issue), and
//! frames waited 430-610 ms on average. A switch that put the new room one
//! frame after the last frame sent (whatever time had passed) grew Chrome's
//! video delay with every switch, and a room left without viewers stopped
//! its transcoder (concealment on the way back, a re-encoder restart):
//! switches now go on by both rooms' send clocks and transcoders linger
//! (decision 015). Re-reading the old room's clock at every switch summed
//! its readings' errors (Chrome's video wait grew from 30 to 280 ms over
//! ten switches across shards): each viewer's timeline is now anchored at
//! its first switch, replicas linger like transcoders and bring their
//! home's send clocks, and sender reports follow a switch as they follow a
//! start (decision 026). With that, 29 of 30 switches on one shard (three
//! runs) and 79 of 80 across shards (eight runs) took < 200 ms. What was
//! left was Chrome holding video for its audio (lip sync), which a switch
//! has to play out before the new room shows: the shard now holds video
//! for as long as its transcoded audio leaves later (decision 029). The
//! bounds are the issue's: every switch < 200 ms and every offset within
//! ±80 ms, measured once the viewer is past its start phase
//! ([`wait_lip_sync_settled`], docs/performance.md). Each switch also
//! prints each room's A/V lag and video hold, and Chrome's per-frame jitter-buffer
//! wait, target and jitter estimate, decode time, dropped frames, and
//! NetEq's target and audio wait over its first 700 ms (`probe`), which
//! is how the growth above and the lip-sync hold were found.

mod common;
mod rig;

use anyhow::{Context, Result};
use common::{Chromium, PublishOpts, Publisher};
use rig::{Mode, Rig, RTMP};
use serde_json::Value;
use std::time::Duration;

/// The rooms' publishers use x264's `veryfast` preset (OBS's default): at
/// its default preset ffmpeg does not keep real time at 720p on a 2-core
/// machine beside Chromium and the server, and its late, bursty frames are
/// then most of what a switch measures (decision 015). The rooms are
/// encoded before the test and published without re-encoding
/// ([`prerender`]), so no x264 runs beside Chromium at all.
const PRESET: &str = "veryfast";

/// Seconds of each room pre-rendered and published in a loop (a multiple of
/// every room's GOP), or `RTS_SWIPE_LIVE_ENCODE=1` for x264 encoding live
/// on this machine.
fn prerender() -> Option<u32> {
    (std::env::var("RTS_SWIPE_LIVE_ENCODE").as_deref() != Ok("1")).then_some(24)
}
/// The issue's bound. From a viewer past its start phase, with a cold
/// re-encoded room placed at the live pace (decision 034), ten runs of
/// both tests in the debug build (what CI runs): 200 of 200 switches
/// < 200 ms, max 199 ms (a session's last switch across shards, as
/// Chrome's video target crept up over the session), p95 128 ms; the first
/// switch to the cold room 109-145 ms. Before decision 034, ten debug
/// runs: max 184 ms (a session's first return from the cold room,
/// 73-184 ms; 29-77 ms after). Switching 5 s after the join (decisions 031 and 032, 16 runs of both
/// tests): mean 73 ms, p99 159 ms, one of 320 switches at 208 ms (the
/// first to the cold re-encoded room). Decision 029, 12 / 11
/// runs: same shard median 71-115 ms, max 114-172 ms; across shards median
/// 55-118 ms, max 112-160 ms. Without the hold, four runs: same shard
/// median 114-123 ms, max 131-162 ms; across shards median 108 ms, max
/// 145-152 ms (the two runs that passed the A/V bound). Decision 026,
/// pre-rendered rooms: same shard (three runs)
/// median 108-112 ms, max 133-207 ms; across shards (eight runs) median
/// 94-113 ms, max 137-210 ms. Before it: across shards median 116-172, max
/// 170-327 ms (two of four runs failed). Decision 015 (live-encoded rooms):
/// median 61-140 ms, max 119-251 ms. Without the squeeze (decision 014):
/// median 446 ms, max 1,375 ms.
const MAX_SWITCH_MS: f64 = 200.0;
/// The median of a session's ten: 48-78 ms over the same 20 sessions.
const MAX_SWITCH_MEDIAN_MS: f64 = 120.0;
/// 100 ms of audio at 48 kHz (Opus: Chrome counts samples at 48 kHz).
const MAX_CONCEALED_RUN_SAMPLES: f64 = 4800.0;
/// The issue's bound. From a viewer past its start phase, the 100
/// switches above: −34 … +59 ms (before decision 034, 300 switches in
/// release and debug builds: −59 … +47 ms). Switching 5 s after the join
/// (decisions 031 and 032, 16 runs): −113 … +57 ms, the four outside
/// ±80 ms all at the first return from the cold re-encoded room, which
/// stepped by −23 … −53 ms in 11 of 12 later runs (docs/performance.md).
/// Decision 029: −32 …
/// +68 ms over 230 switches (23 runs), one later run +84; without its
/// hold, −47 … +81 ms over four runs.
/// Decision 015: -77..+74 ms over three runs (the earliest send for video
/// too: up to +184, one run drifting over its ten switches; the commit
/// before: -183..+80; without the squeeze: -712..+1,122 ms).
const MAX_AV_OFFSET_MS: f64 = 80.0;
/// The viewer counts as settled after its join once its A/V playout offset
/// stays within this for 2 s...
const SETTLED_OFFSET_MS: u32 = 60;
/// ...which it must within this long.
const MAX_SETTLE_S: u32 = 40;
/// Average jitter-buffer wait of a video frame over the session: 79-141 ms
/// with decision 015 (111-149 ms the commit before), 539 ms without the
/// squeeze.
const MAX_JITTER_BUFFER_MS: f64 = 250.0;
/// Per switch, a frame's jitter-buffer wait beyond Chrome's target
/// 800-1,500 ms after the call: −15 … +41 ms over 80 switches with decision
/// 029. Over 300-700 ms: −40 … +86 ms over 70 switches with decision 026,
/// up to ~180 ms by a session's tenth switch before it.
/// One CI run had a single switch at 120 ms (its others −26 … +29 ms), so
/// one switch may go to 200 ms; a timeline that drifts moves most of a
/// session's switches, which the median bound catches.
const MAX_EXCESS_WAIT_MS: f64 = 200.0;
/// The same at the median of a session's ten switches: −4 … +25 ms over
/// ten runs here (that CI run: 18 ms over its first six).
const MAX_MEDIAN_EXCESS_WAIT_MS: f64 = 60.0;

/// One switch: the call's result plus what the page sampled every ~25 ms
/// for 1.6 s: [ms since the call, video width, concealedSamples,
/// video − audio estimatedPlayoutTimestamp or null].
fn switch_to(chrome: &mut Chromium, target: &str, width: u32) -> Result<Value> {
    let js = format!(
        r#"(async () => {{
      const pc = window.rts.pc; const log = [];
      const t0 = performance.now();
      // Render delay per frame (tests/media_sync.rs's method): when the
      // video receiver handed each frame on (its synchronization source,
      // polled faster than the frame rate) and when rVFC expects it on
      // screen. Chrome's video playout estimate runs from the hand-over.
      const vrx = pc.getReceivers().find(r => r.track.kind === 'video');
      const handed = new Map(); const frames = []; let watching = true;
      const poll = setInterval(() => {{
        const s = vrx.getSynchronizationSources()[0];
        if (s && !handed.has(s.rtpTimestamp)) handed.set(s.rtpTimestamp, s.timestamp - performance.timeOrigin);
      }}, 5);
      const video = document.getElementById('video');
      const onFrame = (now, meta) => {{
        const h = handed.get(meta.rtpTimestamp);
        frames.push([meta.expectedDisplayTime - t0, h === undefined ? null : meta.expectedDisplayTime - h]);
        if (watching) video.requestVideoFrameCallback(onFrame);
      }};
      video.requestVideoFrameCallback(onFrame);
      const p = window.rts.switchTo('{target}', {width});
      while (performance.now() - t0 < 1600) {{
        const rep = await pc.getStats();
        let v = null, a = null;
        rep.forEach(s => {{
          if (s.type === 'inbound-rtp' && s.kind === 'video') v = s;
          if (s.type === 'inbound-rtp' && s.kind === 'audio') a = s;
        }});
        const offset = (v && a && v.estimatedPlayoutTimestamp && a.estimatedPlayoutTimestamp)
          ? v.estimatedPlayoutTimestamp - a.estimatedPlayoutTimestamp : null;
        log.push([performance.now() - t0, v ? v.frameWidth : 0, a ? a.concealedSamples : 0, offset,
          v ? [v.jitterBufferDelay, v.jitterBufferTargetDelay, v.jitterBufferEmittedCount, v.totalDecodeTime, v.framesDecoded, v.framesDropped, v.jitterBufferMinimumDelay] : null,
          a ? [a.jitterBufferDelay, a.jitterBufferTargetDelay, a.jitterBufferEmittedCount] : null]);
        await new Promise(r => setTimeout(r, 25));
      }}
      watching = false; clearInterval(poll);
      const r = await p; r.log = log; r.frames = frames; return r;
    }})()"#
    );
    chrome.eval(&js)
}

/// Waits until the viewer is past its start phase and its lip sync has
/// settled: Chrome's playout offset within ±[`SETTLED_OFFSET_MS`] for 2 s
/// in a row, no earlier than the end of the playout-delay hint's start
/// allowance ([`start_phase`]) and at most [`MAX_SETTLE_S`] after the join.
/// The switches are measured from there, so the offset after each is the
/// switch's own.
///
/// For its first 16 s a viewer's video carries a playout-delay `min` that
/// holds video 80 ms beyond the audio's lag for 4 s and then fades to
/// 30 ms (decision 010), and Chrome's lip sync follows it in ~10 ms steps:
/// sampled every 250 ms, the offset went from about −40 to +20 ms over the
/// first 20 s in two runs, still moving at 16 s. A switch in that phase
/// carries the movement with it. Switching from 5 s after the join (the
/// earlier version of this wait), the session's first return from the cold
/// re-encoded room moved the offset by −23 … −53 ms in 11 of 12 runs, to
/// −84 and −96 ms in two of them (room C re-encoded on the other shard);
/// switching from 15-20 s it moved by −17 … +17 ms in five runs. From
/// 16 s, no switch went outside −59 … +47 ms over 15 runs of both tests
/// before decision 034, nor outside −34 … +59 ms over ten after it.
fn wait_lip_sync_settled(chrome: &mut Chromium) -> Result<f64> {
    let r = chrome.eval(&format!(
        r#"(async () => {{
      const pc = window.rts.pc; const t0 = performance.now(); let inside = 0, last = null;
      while (performance.now() - t0 < {max_ms}) {{
        const rep = await pc.getStats(); let v = null, a = null;
        rep.forEach(s => {{ if (s.type === 'inbound-rtp' && s.kind === 'video') v = s; if (s.type === 'inbound-rtp' && s.kind === 'audio') a = s; }});
        last = (v && a && v.estimatedPlayoutTimestamp && a.estimatedPlayoutTimestamp) ? v.estimatedPlayoutTimestamp - a.estimatedPlayoutTimestamp : null;
        inside = (last !== null && Math.abs(last) <= {bound}) ? inside + 1 : 0;
        if (inside >= 8 && performance.now() - t0 >= {min_ms}) return {{ settled: true, ms: performance.now() - t0, offset: last }};
        await new Promise(r => setTimeout(r, 250));
      }}
      return {{ settled: false, ms: performance.now() - t0, offset: last }};
    }})()"#,
        max_ms = MAX_SETTLE_S * 1000,
        min_ms = start_phase().as_millis(),
        bound = SETTLED_OFFSET_MS
    ))?;
    println!("lip sync after the join: {r}");
    anyhow::ensure!(r["settled"] == true, "the viewer's A/V playout offset did not settle within ±{SETTLED_OFFSET_MS} ms in {MAX_SETTLE_S} s: {r}");
    Ok(r["ms"].as_f64().unwrap_or(0.0))
}

/// How long a viewer's video carries the playout-delay start allowance
/// (decision 010): held, then fading.
fn start_phase() -> Duration {
    rts_dataplane::lipsync::START_HOLD + rts_dataplane::lipsync::START_FADE
}

/// A log line without its terminal colour codes.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut escape = false;
    for c in line.chars() {
        match (escape, c) {
            (false, '\x1b') => escape = true,
            (false, c) => out.push(c),
            (true, 'm') => escape = false,
            (true, _) => {}
        }
    }
    out
}

/// Checks one switch's samples; returns its switch time, A/V offset and
/// how long its frames waited beyond Chrome's target.
fn check_switch(r: &Value, target: &str) -> Result<(f64, f64, f64)> {
    let ms = r["firstFrameMs"].as_f64().with_context(|| format!("switch to {target}: {r}"))?;
    let log = r["log"].as_array().context("no samples")?;
    let sample = |row: &Value, i: usize| row[i].as_f64();
    // Longest concealment run: concealedSamples rising over consecutive
    // samples (~25 ms apart), in samples.
    let (mut run, mut worst, mut prev) = (0.0f64, 0.0f64, None::<f64>);
    for row in log {
        let c = sample(row, 2).unwrap_or(0.0);
        match prev {
            Some(p) if c > p => run += c - p,
            _ => run = 0.0,
        }
        worst = worst.max(run);
        prev = Some(c);
    }
    // Chrome's playout offset at the last sample before 1 s, less the
    // render delay of the frames shown around it (their median within
    // ±150 ms): the offset the viewer perceives, tests/media_sync.rs's
    // measure (+ = audio late).
    let at_1s = log.iter().rfind(|row| sample(row, 0).is_some_and(|t| t <= 1000.0) && sample(row, 3).is_some());
    let playout = at_1s.and_then(|row| sample(row, 3));
    let render = at_1s.and_then(|row| sample(row, 0)).and_then(|t| {
        let mut near: Vec<f64> = r["frames"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| f[0].as_f64().is_some_and(|d| (d - t).abs() <= 150.0))
            .filter_map(|f| f[1].as_f64())
            .collect();
        near.sort_by(|a, b| a.total_cmp(b));
        near.get(near.len() / 2).copied()
    });
    let offset = playout.zip(render).map(|(p, d)| p - d);
    // The old room's playout offset as the call went out: a switch that
    // keeps the viewer's timeline keeps this offset (the new room's is
    // flat from ~400 ms on), so an offset outside the bound that was
    // already there before the switch is the session's, not the switch's.
    let before = log.iter().find_map(|row| sample(row, 3));
    // Chrome's video delay around the switch: per-frame jitter-buffer wait
    // and target, and decode time, between consecutive samples.
    let probe: Vec<String> = log
        .windows(2)
        .filter(|w| sample(&w[1], 0).is_some_and(|t| t <= 700.0))
        .filter_map(|w| {
            let (v0, v1) = (&w[0][4], &w[1][4]);
            let d = |i: usize| v1[i].as_f64().unwrap_or(0.0) - v0[i].as_f64().unwrap_or(0.0);
            let (a0, a1) = (&w[0][5], &w[1][5]);
            let da = |i: usize| a1[i].as_f64().unwrap_or(0.0) - a0[i].as_f64().unwrap_or(0.0);
            (d(2) > 0.0).then(|| {
                format!(
                    "{:.0}:w{}/t{:.0}/j{:.0}/dec{:.0}/drop{:.0}/a{:.0}/aw{:.0}",
                    sample(&w[1], 0).unwrap_or(0.0),
                    (1000.0 * d(0) / d(2)).round(),
                    1000.0 * d(1) / d(2),
                    1000.0 * d(6) / d(2),
                    1000.0 * d(3) / d(4).max(1.0),
                    d(5),
                    if da(2) > 0.0 { 1000.0 * da(1) / da(2) } else { f64::NAN },
                    if da(2) > 0.0 { 1000.0 * da(0) / da(2) } else { f64::NAN }
                )
            })
        })
        .collect();
    println!("  probe {target}: {}", probe.join(" "));
    // Where the switch put the new room on the viewer's timeline: how much
    // longer than Chrome's own target its frames waited, 800-1,500 ms after
    // the call, past the replay and its decoding (a 720p room's replay
    // keeps Chrome's decoder busy for 300-400 ms here, and the frames
    // behind it wait on the decoder, not on their place). Frames placed
    // early by the receiver's RTP-to-arrival mapping wait that much more,
    // for as long as the viewer stays; re-reading the old room's clock at
    // every switch summed those errors (up to ~180 ms by the tenth switch;
    // decision 026).
    let excess: Vec<f64> = log
        .windows(2)
        .filter(|w| sample(&w[1], 0).is_some_and(|t| (800.0..=1500.0).contains(&t)))
        .filter_map(|w| {
            let d = |i: usize| w[1][4][i].as_f64().unwrap_or(0.0) - w[0][4][i].as_f64().unwrap_or(0.0);
            (d(2) > 0.0).then(|| 1000.0 * (d(0) - d(1)) / d(2))
        })
        .collect();
    anyhow::ensure!(!excess.is_empty(), "switch to {target}: no video frame left Chrome's jitter buffer 800-1,500 ms after the switch: {log:?}");
    let excess = excess.iter().sum::<f64>() / excess.len() as f64;
    println!("  frames waited {excess:.0} ms beyond Chrome's target 800-1,500 ms after the call");
    // Errors, not panics: the caller adds the server's log.
    anyhow::ensure!(excess < MAX_EXCESS_WAIT_MS, "switch to {target}: frames waited {excess:.0} ms beyond Chrome's target (bound {MAX_EXCESS_WAIT_MS} ms): placed early on the viewer's timeline; {log:?}");
    println!(
        "switch to {target}: first frame {ms:.0} ms (HTTP {:.0} ms), longest concealment run {:.0} ms, A/V offset at 1 s {} (playout {} less render delay {}; playout {} before the switch)",
        r["httpMs"].as_f64().unwrap_or(f64::NAN),
        worst / 48.0,
        offset.map_or("none".into(), |o| format!("{o:+.0} ms")),
        playout.map_or("none".into(), |o| format!("{o:+.0}")),
        render.map_or("none".into(), |o| format!("{o:.0}")),
        before.map_or("none".into(), |o| format!("{o:+.0}"))
    );
    anyhow::ensure!(worst < MAX_CONCEALED_RUN_SAMPLES, "switch to {target}: audio concealed for {:.0} ms in a row: {log:?}", worst / 48.0);
    let offset = offset.with_context(|| format!("switch to {target}: no A/V playout offset within 1 s, or no frame's render delay around it: {log:?} {}", r["frames"]))?;
    anyhow::ensure!(offset.abs() <= MAX_AV_OFFSET_MS, "switch to {target}: A/V offset {offset:+.0} ms 1 s after the switch: {log:?}");
    Ok((ms, offset, excess))
}

/// Switches `chrome` ten times between `a` and `b` (widths `wa`, `wb`),
/// starting on `a`, checks each, and checks the times and Chrome's
/// jitter-buffer wait over the session.
fn swipe(rig: &Rig, chrome: &mut Chromium, (a, wa): (&str, u32), (b, wb): (&str, u32)) -> Result<()> {
    let (mut times, mut offsets, mut excesses) = (Vec::new(), Vec::new(), Vec::new());
    // Before the first switch the other room has no transcoded audio (no
    // lag of its own): its hold starts from the shard's (decision 029).
    for room in [a, b] {
        let (app, name) = room.split_once('/').context("app/stream")?;
        if let Some(s) = rig.stream(app, name)? {
            println!("before the first switch: {room}: audio leaves {} ms after video, video held {} ms", s["stats"]["av_lag_ms"], s["stats"]["video_hold_ms"]);
        }
    }
    for i in 0..10 {
        let (target, width) = if i % 2 == 0 { (b, wb) } else { (a, wa) };
        let r = switch_to(chrome, target, width)?;
        // The shard's A/V skew estimate for the switch (send_clock.rs).
        let logs = rig.logs();
        let line = strip_ansi(logs.lines().rfind(|l| l.contains("channel switch")).unwrap_or(""));
        let skew = line.split("skew_ms=").nth(1).and_then(|s| s.split_whitespace().next()).unwrap_or("-").to_string();
        println!("switch {i}: the shard's A/V skew estimate {skew} ms");
        // Each room's A/V lag and how much of it its video waits at the
        // shard (decision 029).
        for room in [a, b] {
            let (app, name) = room.split_once('/').context("app/stream")?;
            if let Some(s) = rig.stream(app, name)? {
                println!("  {room}: audio leaves {} ms after video, video held {} ms", s["stats"]["av_lag_ms"], s["stats"]["video_hold_ms"]);
            }
        }
        let (ms, offset, excess) = check_switch(&r, target).with_context(|| format!("server logs:\n{}", rig.logs()))?;
        excesses.push(excess);
        times.push(ms);
        offsets.push(offset);
    }
    let (lo, hi) = offsets.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &o: &f64| (lo.min(o), hi.max(o)));
    println!("A/V offsets 1 s after the switches: {lo:+.0} … {hi:+.0} ms");
    let mut sorted = times.clone();
    sorted.sort_by(|x, y| x.total_cmp(y));
    let (median, max) = (sorted[(sorted.len() - 1) / 2], sorted[sorted.len() - 1]);
    let jb = chrome.eval(
        "(async () => { let d = null; (await window.rts.pc.getStats()).forEach(s => { \
           if (s.type === 'inbound-rtp' && s.kind === 'video') d = 1000 * s.jitterBufferDelay / s.jitterBufferEmittedCount; }); return d; })()",
    )?;
    let jb = jb.as_f64().with_context(|| format!("no video jitter buffer stats: {jb}"))?;
    println!("switch to first frame: median {median:.0} ms, max {max:.0} ms over {times:?}; video frames waited {jb:.0} ms on average in the jitter buffer");
    anyhow::ensure!(
        median < MAX_SWITCH_MEDIAN_MS && max < MAX_SWITCH_MS,
        "switch times {times:?}: median {median:.0} ms (bound {MAX_SWITCH_MEDIAN_MS}), max {max:.0} ms (bound {MAX_SWITCH_MS}); server logs:\n{}",
        rig.logs()
    );
    excesses.sort_by(|x, y| x.total_cmp(y));
    let median_excess = excesses[(excesses.len() - 1) / 2];
    anyhow::ensure!(
        median_excess < MAX_MEDIAN_EXCESS_WAIT_MS,
        "frames waited {median_excess:.0} ms beyond Chrome's target at the median switch (bound {MAX_MEDIAN_EXCESS_WAIT_MS} ms; all: {excesses:?}): the viewer's timeline drifted; server logs:\n{}",
        rig.logs()
    );
    assert!(jb < MAX_JITTER_BUFFER_MS, "video frames waited {jb:.0} ms on average in Chrome's jitter buffer (bound {MAX_JITTER_BUFFER_MS} ms): GOP replays played out at their real pace?");
    Ok(())
}

/// The same across shards, to a room whose video is re-encoded (B-frames,
/// high profile): the viewer's shard replicates the other room, whose
/// re-encoder runs while the replica subscribes.
///
/// The first switch to room C subscribes its replica across shards; the
/// snapshot brings the home's send clocks, so even that switch is re-based
/// like a warm one (decision 026). It was out of CI while its A/V offset
/// stepped and its switches slowed over a session (one run in five or
/// more); the 16 runs recorded since the snapshot's clocks all passed. It
/// prints the shard's A/V skew estimate for each switch (send_clock.rs).
#[test]
fn switches_across_shards_to_a_reencoded_room() -> Result<()> {
    let rig = Rig::start(Mode::Serve, "[dataplane]\nshards = 2\n")?;
    let a = PublishOpts { profile: "main".into(), gop: 90, size: "1280x720".into(), extra_args: vec!["-ar".into(), "44100".into(), "-preset".into(), PRESET.into()], prerender_s: prerender(), ..Default::default() };
    let _pa = Publisher::start(&format!("{RTMP}/live/roomA"), &a)?;
    let home_a = rig.wait_live("live", "roomA", Duration::from_secs(20))?["shard"].as_u64().context("no shard for roomA")?;
    // Room C: 640x360 high profile with B-frames (re-encoded for WebRTC),
    // AAC 48 kHz, 3 s GOP. SO_REUSEPORT spreads publishers by address:
    // publish again until it lands on the other shard.
    let c = PublishOpts { profile: "high".into(), bframes: Some(3), gop: 90, size: "640x360".into(), extra_args: vec!["-preset".into(), PRESET.into()], prerender_s: prerender(), ..Default::default() };
    let mut landed = None;
    for _ in 0..12 {
        let p = Publisher::start(&format!("{RTMP}/live/roomC"), &c)?;
        let home = rig.wait_live("live", "roomC", Duration::from_secs(20))?["shard"].as_u64().context("no shard for roomC")?;
        if home != home_a {
            landed = Some(p);
            break;
        }
        drop(p);
        let end = std::time::Instant::now() + Duration::from_secs(10);
        while rig.stream("live", "roomC")?.is_some_and(|s| s["publishing"] == true) {
            anyhow::ensure!(std::time::Instant::now() < end, "roomC still live after its publisher was killed");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let _pc = landed.with_context(|| format!("roomC landed on roomA's shard {home_a} in 12 publishes"))?;
    let mut chrome = rig.play("live", "roomA", "", 30)?;
    wait_lip_sync_settled(&mut chrome)?;
    swipe(&rig, &mut chrome, ("live/roomA", 1280), ("live/roomC", 640))?;
    assert!(rig.logs().contains("replicating stream to shard"), "roomC replicated to the viewer's shard");
    let st = rig.stream("live", "roomC")?.context("roomC")?;
    assert_eq!(st["stats"]["b_frames"], true, "roomC is re-encoded: {st}");
    Ok(())
}

#[test]
fn ten_switches_between_rooms_with_sound() -> Result<()> {
    let rig = Rig::start(Mode::Serve, "")?;
    // Room A: 1280x720 main, 30 fps, AAC 44.1 kHz, 3 s GOP.
    let a = PublishOpts { profile: "main".into(), gop: 90, size: "1280x720".into(), extra_args: vec!["-ar".into(), "44100".into(), "-preset".into(), PRESET.into()], prerender_s: prerender(), ..Default::default() };
    // Room B: 640x360 baseline, 25 fps, AAC 48 kHz, 4 s GOP.
    let b = PublishOpts { profile: "baseline".into(), gop: 100, size: "640x360".into(), extra_args: vec!["-r".into(), "25".into(), "-preset".into(), PRESET.into()], prerender_s: prerender(), ..Default::default() };
    let _pa = Publisher::start(&format!("{RTMP}/live/roomA"), &a)?;
    let _pb = Publisher::start(&format!("{RTMP}/live/roomB"), &b)?;
    rig.wait_live("live", "roomA", Duration::from_secs(20))?;
    rig.wait_live("live", "roomB", Duration::from_secs(20))?;
    let mut c = rig.play("live", "roomA", "", 30)?;
    wait_lip_sync_settled(&mut c)?;
    swipe(&rig, &mut c, ("live/roomA", 1280), ("live/roomB", 640))?;
    Ok(())
}
