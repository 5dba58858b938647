//! Mid-stream resolution change within one RTMP session: rts-publish sends a
//! 640x360 segment then a 320x240 one as a single continuous publish (a new AVC
//! sequence header where the SPS/PPS change); a Chromium viewer keeps decoding
//! across the change and presents the new size after at most a short freeze.

mod common;
mod rig;

use anyhow::{bail, ensure, Context, Result};
use common::{ChildGuard, Chromium};
use rig::{Mode, Rig, RTMP};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Segment lengths in frames at 30 fps. The first is long enough for the viewer
/// to connect and decode a good number of 640x360 frames before the change on a
/// loaded 2-core box; the second long enough for 60+ frames at 320x240.
const SEG1_FRAMES: u32 = 150;
const SEG2_FRAMES: u32 = 120;
/// Longest allowed gap between two presented frames across the change.
const MAX_FREEZE_MS: f64 = 500.0;

/// The rts-publish binary next to the rts binary under test, built on demand
/// (same target directory and profile) when missing.
fn rts_publish_bin() -> Result<PathBuf> {
    let rts = Path::new(env!("CARGO_BIN_EXE_rts"));
    let profile_dir = rts.parent().context("rts binary directory")?;
    let bin = profile_dir.join("rts-publish");
    if bin.exists() {
        return Ok(bin);
    }
    let target_dir = profile_dir.parent().context("target directory")?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-p", "rts-publish"])
        .env("CARGO_TARGET_DIR", target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            cmd.arg("--release");
        }
        Some(other) => {
            cmd.args(["--profile", other]);
        }
    }
    let out = cmd.output().context("cargo build -p rts-publish")?;
    ensure!(out.status.success(), "cargo build -p rts-publish failed:\n{}", String::from_utf8_lossy(&out.stderr));
    ensure!(bin.exists(), "{} missing after cargo build", bin.display());
    Ok(bin)
}

/// Encodes `frames` of testsrc2 at `size` into raw Annex B H.264 (baseline,
/// 1 s GOP, access unit delimiters for rts-publish's splitter).
fn encode_segment(out: &Path, size: &str, frames: u32) -> Result<()> {
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size={size}:rate=30"))
        .args(["-frames:v", &frames.to_string()])
        .args(["-c:v", "libx264", "-profile:v", "baseline", "-tune", "zerolatency", "-pix_fmt", "yuv420p"])
        .args(["-g", "30", "-x264-params", "aud=1", "-f", "h264"])
        .arg(out)
        .status()
        .context("run ffmpeg")?;
    ensure!(status.success(), "ffmpeg encoding {size} failed: {status}");
    Ok(())
}

/// Records every presented frame (rVFC: time, width, height) and, every 100 ms,
/// the decoder's counters from getStats.
const RECORDER: &str = r#"(() => {
  const v = document.getElementById('video');
  window.__frames = [];
  window.__stats = [];
  const cb = (now, m) => { window.__frames.push([now, m.width, m.height]); v.requestVideoFrameCallback(cb); };
  v.requestVideoFrameCallback(cb);
  setInterval(async () => {
    const s = await window.rts.stats();
    window.__stats.push([performance.now(), s.framesDecoded, s.frameWidth, s.frameHeight]);
  }, 100);
  return true;
})()"#;

/// Log lines without terminal colour codes.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            chars.by_ref().find(|&c| c == 'm');
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn resolution_change_mid_stream_keeps_playing() -> Result<()> {
    let publish_bin = rts_publish_bin()?;
    let rig = Rig::start(Mode::Serve, "")?;
    let dir = rig.dir.join("segments");
    std::fs::create_dir_all(&dir)?;
    encode_segment(&dir.join("seg1.h264"), "640x360", SEG1_FRAMES)?;
    encode_segment(&dir.join("seg2.h264"), "320x240", SEG2_FRAMES)?;
    let script = dir.join("two_segments.sh");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/two_segments.sh"), &script)?;
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;

    // The browser starts before the publish so the 640x360 segment is not spent
    // waiting for Chromium.
    let mut chrome = Chromium::launch()?;
    let mut cmd = Command::new(&publish_bin);
    cmd.arg("--url").arg(format!("{RTMP}/live/res")).arg("--ffmpeg").arg(&script);
    let publisher = ChildGuard::spawn(&mut cmd)?;
    rig.wait_live("live", "res", Duration::from_secs(20))?;
    chrome.navigate(&format!("{}/play/live/res", rig::HTTP))?;
    chrome.eval(RECORDER)?;

    // 60 frames presented at 320x240, and a getStats sample taken after the
    // 60th: the counters below then include all of them (the stats poll runs
    // every 100 ms, so without the second part the last sample could trail the
    // presented frames by a few and miss the +60 check by one).
    let done = "(() => { const s = window.__frames.filter((f) => f[1] === 320); const st = window.__stats; \
                return s.length >= 60 && st.length > 0 && st[st.length - 1][0] > s[59][0]; })()";
    if let Err(e) = chrome.wait_for(done, Duration::from_secs(25)) {
        let widths = chrome.eval("JSON.stringify(window.__frames.map((f) => f[1]))").unwrap_or(Value::Null);
        bail!(
            "no 60 frames at 320x240: {e:#}\nwidths seen: {widths}\npublisher: {}\nserver logs:\n{}",
            publisher.logs().lines().join("\n"),
            rig.logs()
        );
    }
    let frames = triples(&chrome.eval("window.__frames")?).context("frames")?;
    let stats = triples(&chrome.eval("window.__stats")?).context("stats")?;

    let big = frames.iter().filter(|f| (f.1, f.2) == (640, 360)).count();
    let small = frames.iter().filter(|f| (f.1, f.2) == (320, 240)).count();
    let other: Vec<_> = frames.iter().filter(|f| f.1 != 640 && f.1 != 320).collect();
    let last_big = frames.iter().rposition(|f| f.1 == 640).context("no 640x360 frame presented")?;
    let first_small = frames.iter().position(|f| f.1 == 320).context("no 320x240 frame presented")?;
    let freeze = frames[first_small].0 - frames[last_big].0;
    let max_gap = frames.windows(2).map(|w| w[1].0 - w[0].0).fold(0.0, f64::max);
    // Decoder counters from getStats around the change.
    let t_change = frames[first_small].0;
    let before = stats.iter().rev().find(|s| s.0 < frames[last_big].0 && s.2 == 640).copied();
    let after = *stats.last().context("no stats samples")?;
    println!(
        "resolution change 640x360 -> 320x240: {big} frames presented at 640x360, {small} at 320x240, {} other; \
         freeze across the change {freeze:.0} ms (longest gap between presented frames {max_gap:.0} ms)",
        other.len()
    );
    println!(
        "framesDecoded before the change {:?} (width {:?}), at the end {} (width {}), {:.0} ms after the first 320x240 frame",
        before.map(|s| s.1),
        before.map(|s| s.2),
        after.1,
        after.2,
        after.0 - t_change
    );
    let changed = rig.logs().lines().filter(|l| l.contains("AVC sequence header")).map(strip_ansi).collect::<Vec<_>>();
    println!("server: {}", changed.join("\n        "));

    ensure!(big >= 15, "only {big} frames at 640x360 before the change");
    ensure!(other.is_empty(), "frames of unexpected size: {other:?}");
    ensure!(last_big < first_small, "640x360 frames presented after the change: last at {last_big}, first 320 at {first_small}");
    let before = before.context("no getStats sample at 640 before the change")?;
    ensure!(after.2 == 320, "getStats frameWidth at the end is {}, not 320", after.2);
    ensure!(after.1 >= before.1 + 60, "framesDecoded did not keep increasing: {} before, {} after", before.1, after.1);
    // Decoding never stalled: every 100 ms sample after the first decoded
    // frame shows framesDecoded moving within 500 ms.
    let decoding: Vec<_> = stats.iter().filter(|s| s.1 > 0).collect();
    for w in decoding.windows(6) {
        ensure!(w[5].1 > w[0].1, "framesDecoded stuck at {} for {:.0} ms", w[0].1, w[5].0 - w[0].0);
    }
    ensure!(freeze <= MAX_FREEZE_MS, "freeze of {freeze:.0} ms across the resolution change (max {MAX_FREEZE_MS} ms)");
    Ok(())
}

/// A page's `[[time_ms, a, b], ...]` record as tuples.
fn triples(v: &serde_json::Value) -> Option<Vec<(f64, u64, u64)>> {
    let rows = v.as_array()?;
    Some(rows.iter().map(|r| (r[0].as_f64().unwrap_or(0.0), r[1].as_u64().unwrap_or(0), r[2].as_u64().unwrap_or(0))).collect())
}
