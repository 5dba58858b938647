//! Lip sync: a flash + beep source (a full-frame white flash and a 1 kHz beep,
//! both 100 ms every 2 s, at the same source time) published with ffmpeg
//! (H.264 + AAC 48 kHz, so audio goes through the AAC→Opus transcoder); in
//! Chromium, flash onsets are taken at their expected display time
//! (requestVideoFrameCallback) and beep onsets at their output time (WebAudio
//! on the received track, mapped with getOutputTimestamp), i.e. what a viewer
//! would perceive. The median audio-minus-video offset must be within ±80 ms.

mod common;
mod rig;

use anyhow::{bail, Context, Result};
use common::{ChildGuard, Chromium};
use rig::{Mode, Rig, HTTP, RTMP};
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

const MAX_OFFSET_MS: f64 = 80.0;
/// Flash/beep pairs to collect (one every 2 s): the first ~12 s of playback,
/// what a viewer who just opened the stream sees.
const PAIRS: usize = 6;

/// ffmpeg: black 320x240@30 with a white frame for 100 ms every 2 s, and a
/// 1 kHz sine gated to the same windows (10 ms audio frames so the gate opens
/// exactly on the 2 s boundaries).
fn flash_beep_args(url: &str) -> Vec<String> {
    let video = "color=black:s=320x240:r=30,drawbox=x=0:y=0:w=iw:h=ih:color=white:t=fill:enable='lt(mod(t,2),0.1)'";
    let audio = "sine=frequency=1000:sample_rate=48000:samples_per_frame=480,volume='if(lt(mod(t,2),0.1),1,0)':eval=frame";
    [
        "-hide_banner", "-loglevel", "error", "-nostdin",
        "-re", "-f", "lavfi", "-i", video,
        "-re", "-f", "lavfi", "-i", audio,
        "-c:v", "libx264", "-profile:v", "baseline", "-tune", "zerolatency", "-g", "60", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-ar", "48000",
        "-f", "flv", url,
    ]
    .map(String::from)
    .to_vec()
}

/// Injected once the player shows video. Records flash onsets (first bright
/// frame after a dark one, at rVFC `expectedDisplayTime`) and beep onsets (first
/// sample above the threshold after ≥ 0.5 s of quiet, found in an AudioWorklet
/// and mapped from AudioContext time to performance.now() time at the output
/// with getOutputTimestamp). Both timelines are performance.now() milliseconds.
const DETECTOR: &str = r#"(async () => {
  const m = window.__sync = { flashes: [], beeps: [], info: {} };
  const video = document.getElementById('video');
  const canvas = document.createElement('canvas');
  canvas.width = 32; canvas.height = 24;
  const g = canvas.getContext('2d', { willReadFrequently: true });
  let bright = true; // an onset needs a dark frame first (we may start mid-flash)
  const onFrame = (now, meta) => {
    g.drawImage(video, 0, 0, 32, 24);
    const d = g.getImageData(0, 0, 32, 24).data;
    let sum = 0;
    for (let i = 0; i < d.length; i += 4) sum += 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2];
    const luma = sum / (d.length / 4);
    const isBright = luma > 128;
    if (isBright && !bright) {
      m.flashes.push({ t: meta.expectedDisplayTime, presented: meta.presentationTime, received: meta.receiveTime, now, luma, rtp: meta.rtpTimestamp });
    }
    bright = isBright;
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);

  const track = window.rts.pc.getReceivers().map((r) => r.track).find((t) => t.kind === 'audio');
  if (!track) throw new Error('no audio track');
  const ctx = new AudioContext({ latencyHint: 'interactive' });
  const worklet = `class Onset extends AudioWorkletProcessor {
    constructor() { super(); this.quiet = 0; }
    process(inputs) {
      const ch = inputs[0] && inputs[0][0];
      if (!ch) return true;
      for (let i = 0; i < ch.length; i++) {
        if (Math.abs(ch[i]) > 0.03) {
          if (this.quiet > 0.5 * sampleRate) this.port.postMessage(currentTime + i / sampleRate);
          this.quiet = 0;
        } else {
          this.quiet++;
        }
      }
      return true;
    }
  }
  registerProcessor('onset', Onset);`;
  await ctx.audioWorklet.addModule(URL.createObjectURL(new Blob([worklet], { type: 'application/javascript' })));
  const node = new AudioWorkletNode(ctx, 'onset');
  ctx.createMediaStreamSource(new MediaStream([track])).connect(node);
  // Pulled through a muted path so the graph renders it; the <audio> element plays the track.
  const mute = ctx.createGain();
  mute.gain.value = 0;
  node.connect(mute).connect(ctx.destination);
  node.port.onmessage = (e) => {
    const ts = ctx.getOutputTimestamp();
    const t = ts.performanceTime + (e.data - ts.contextTime) * 1000;
    m.beeps.push({ t, ctxTime: e.data, outputLatency: ctx.outputLatency, now: performance.now() });
  };
  // Jitter-buffer delay per kind over each second (getStats deltas), for the report.
  m.jb = [];
  let last = {};
  setInterval(async () => {
    const row = { t: Math.round(performance.now()) };
    (await window.rts.pc.getStats()).forEach((s) => {
      if (s.type !== 'inbound-rtp') return;
      const p = last[s.kind] || { d: 0, n: 0, td: 0 };
      const n = s.jitterBufferEmittedCount - p.n;
      row[s.kind] = n > 0 ? Math.round(1000 * (s.jitterBufferDelay - p.d) / n) : null;
      row[s.kind + 'Target'] = n > 0 ? Math.round(1000 * ((s.jitterBufferTargetDelay || 0) - p.td) / n) : null;
      last[s.kind] = { d: s.jitterBufferDelay, n: s.jitterBufferEmittedCount, td: s.jitterBufferTargetDelay || 0 };
    });
    m.jb.push(row);
  }, 1000);
  await ctx.resume();
  m.info = { state: ctx.state, sampleRate: ctx.sampleRate, baseLatency: ctx.baseLatency, outputLatency: ctx.outputLatency };
  return m.info;
})()"#;

/// Mean jitter-buffer delay per kind from getStats (ms), for the report.
const JITTER_BUFFERS: &str = r#"(async () => {
  const out = {};
  (await window.rts.pc.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp' && s.jitterBufferEmittedCount) {
      out[s.kind] = 1000 * s.jitterBufferDelay / s.jitterBufferEmittedCount;
    }
  });
  return out;
})()"#;

fn times(v: &Value) -> Vec<f64> {
    v.as_array().map(|a| a.iter().filter_map(|o| o["t"].as_f64()).collect()).unwrap_or_default()
}

// Not met yet: audio is 77-120 ms late over the first ~17 s (see the issue-4
// note). With the transcoder already warm the audio jitter buffer sits at its
// ~60 ms target and the offset is still ~110 ms: Chrome accepts our sender
// reports for both tracks (remote-outbound-rtp reportsSent grows) but keeps
// the video jitter buffer at ~5 ms, i.e. it applies no sync delay to video.
// Kept asserting the real target; run with
// `cargo test --test media_sync -- --ignored --nocapture`.
#[test]
#[ignore = "A/V offset target (±80 ms) not met yet: 77-120 ms measured; see issue 4"]
fn audio_video_offset_is_within_80ms() -> Result<()> {
    let rig = Rig::start(Mode::Serve, "")?;
    // AudioWorklet needs a secure context; the rig serves plain HTTP on the netns address.
    let mut chrome = Chromium::launch_with(&[&format!("--unsafely-treat-insecure-origin-as-secure={HTTP}")])?;
    let mut cmd = Command::new("ffmpeg");
    cmd.args(flash_beep_args(&format!("{RTMP}/live/sync")));
    let publisher = ChildGuard::spawn(&mut cmd)?;
    rig.wait_live("live", "sync", Duration::from_secs(20))?;
    rig.play_in(&mut chrome, "live", "sync", "", 1)?;
    let info = chrome.eval(DETECTOR).with_context(|| format!("detector; console: {:?}", chrome.console()))?;
    println!("audio context: {info}");

    let enough = format!("window.__sync.flashes.length >= {n} && window.__sync.beeps.length >= {n}", n = PAIRS + 1);
    if let Err(e) = chrome.wait_for(&enough, Duration::from_secs(30)) {
        let m = chrome.eval("JSON.stringify(window.__sync)").unwrap_or(Value::Null);
        bail!(
            "not enough flashes/beeps: {e:#}\ndetector: {m}\nconsole: {:?}\nffmpeg: {}\nserver logs:\n{}",
            chrome.console(),
            publisher.logs().lines().join("\n"),
            rig.logs()
        );
    }
    let m = chrome.eval("window.__sync")?;
    let jb = chrome.eval(JITTER_BUFFERS)?;
    let flashes = times(&m["flashes"]);
    let beeps = times(&m["beeps"]);

    // Pair each flash with the nearest beep; the source repeats every 2 s, so
    // anything within ±700 ms belongs to the same event.
    let mut offsets = Vec::new();
    for &f in &flashes {
        if let Some(&b) = beeps.iter().min_by(|a, b| (*a - f).abs().total_cmp(&(*b - f).abs())) {
            if (b - f).abs() < 700.0 {
                offsets.push(b - f);
            }
        }
    }
    println!("flash onsets (ms, performance.now): {:.1?}", flashes);
    println!("beep onsets  (ms, performance.now): {:.1?}", beeps);
    println!("mean jitter-buffer delay (ms): {jb}");
    let per_second = |kind: &str| Value::Array(m["jb"].as_array().map(|a| a.iter().map(|r| r[kind].clone()).collect()).unwrap_or_default());
    println!("jitter-buffer delay each second (ms): audio {}", per_second("audio"));
    println!("                                      video {}", per_second("video"));
    println!("A/V offsets, audio minus video (ms; + = audio late): {:.1?}", offsets);
    assert!(offsets.len() >= 4, "only {} flash/beep pairs matched: flashes {flashes:?}, beeps {beeps:?}", offsets.len());
    let mut sorted = offsets.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let median = sorted[sorted.len() / 2];
    println!("A/V offset: median {median:.1} ms over {} pairs (min {:.1}, max {:.1}); target within ±{MAX_OFFSET_MS} ms", sorted.len(), sorted[0], sorted[sorted.len() - 1]);
    assert!(median.abs() <= MAX_OFFSET_MS, "A/V offset median {median:.1} ms is outside ±{MAX_OFFSET_MS} ms: {offsets:?}");
    Ok(())
}
