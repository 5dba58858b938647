//! ffmpeg's tools as independent clients of the standard outputs.

use super::Result;
use anyhow::{bail, Context};
use serde_json::Value;
use std::process::{Command, Output};

/// Runs `program` with `args` (at most 30 s); its output, or an error with
/// its stderr when it fails.
pub fn run_tool(program: &str, args: &[&str]) -> Result<Output> {
    let out = Command::new("timeout").arg("30").arg(program).args(args).output().with_context(|| format!("{program}: run scripts/install-test-deps.sh"))?;
    if !out.status.success() {
        bail!("{program} {args:?}: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    Ok(out)
}

/// ffprobe reads 2 s of `url`: H.264 High with B-frames and AAC, as the
/// tests' publishers send them.
pub fn assert_high_with_b_frames_and_aac(url: &str) -> Result<()> {
    let probe = run_tool("ffprobe", &["-v", "error", "-read_intervals", "%+2", "-show_entries", "stream=codec_type,codec_name,profile,has_b_frames", "-of", "json", url])?;
    let probe: Value = serde_json::from_slice(&probe.stdout)?;
    let streams = probe["streams"].as_array().context("no streams")?;
    let video = streams.iter().find(|s| s["codec_type"] == "video").context("no video stream")?;
    let audio = streams.iter().find(|s| s["codec_type"] == "audio").context("no audio stream")?;
    assert_eq!((video["codec_name"].as_str(), video["profile"].as_str()), (Some("h264"), Some("High")), "{video}");
    assert!(video["has_b_frames"].as_u64().unwrap_or(0) > 0, "B-frames stay: {video}");
    assert_eq!(audio["codec_name"], "aac", "{audio}");
    Ok(())
}
