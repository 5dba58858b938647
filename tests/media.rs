//! Media every player can take: AAC is transcoded to Opus, B-frames are
//! re-encoded to constrained baseline, a resolution change mid-stream keeps
//! playing. Real ffmpeg publishers, headless Chromium players.

mod common;
mod rig;

use anyhow::{Context, Result};
use common::{PublishOpts, Publisher};
use rig::{Mode, Rig, RTMP};
use serde_json::Value;
use std::time::Duration;

fn stats(c: &mut common::Chromium) -> Result<Value> {
    c.eval("window.rts.stats()")
}

/// Plays `path` until 60 video frames and 2 s of audio arrived, then checks
/// audio keeps flowing with little concealment.
fn play_av(rig: &Rig, path: &str) -> Result<(common::Chromium, Value)> {
    let (app, stream) = path.split_once('/').context("app/stream")?;
    let mut c = rig.play(app, stream, "", 60)?;
    c.wait_for("(await window.rts.stats()).totalSamplesReceived >= 96000", Duration::from_secs(20))
        .with_context(|| format!("no audio samples; server logs:\n{}", rig.logs()))?;
    let s1 = stats(&mut c)?;
    let target = s1["totalSamplesReceived"].as_u64().unwrap_or(0) + 96000;
    c.wait_for(&format!("(await window.rts.stats()).totalSamplesReceived >= {target}"), Duration::from_secs(20))?;
    let s2 = stats(&mut c)?;
    let received = s2["totalSamplesReceived"].as_f64().unwrap_or(0.0) - s1["totalSamplesReceived"].as_f64().unwrap_or(0.0);
    let concealed = s2["concealedSamples"].as_f64().unwrap_or(0.0) - s1["concealedSamples"].as_f64().unwrap_or(0.0);
    let share = concealed / received.max(1.0);
    println!("{path}: {} frames decoded, audio samples +{received}, concealed share {:.1} %", s2["framesDecoded"], share * 100.0);
    assert!(share < 0.2, "too much concealment: {share}");
    Ok((c, s2))
}

fn stream_stats(rig: &Rig, app: &str, stream: &str) -> Result<Value> {
    Ok(rig.stream(app, stream)?.map(|s| s["stats"].clone()).unwrap_or_default())
}

#[test]
fn baseline_with_aac_48k_plays_audio_and_video() -> Result<()> {
    let rig = Rig::start(Mode::Serve, "")?;
    let _p = Publisher::start(&format!("{RTMP}/live/aac48"), &PublishOpts::default())?;
    rig.wait_live("live", "aac48", Duration::from_secs(20))?;
    let (_c, _) = play_av(&rig, "live/aac48")?;
    let st = stream_stats(&rig, "live", "aac48")?;
    println!("AAC->Opus added delay: p50 {} us, p99 {} us", st["audio_transcode_us_p50"], st["audio_transcode_us_p99"]);
    assert_eq!(st["b_frames"], false);
    Ok(())
}

#[test]
fn high_profile_b_frames_with_aac_44k_is_reencoded() -> Result<()> {
    let rig = Rig::start(Mode::Serve, "")?;
    let opts = PublishOpts { profile: "high".into(), bframes: Some(3), extra_args: vec!["-ar".into(), "44100".into()], ..Default::default() };
    let _p = Publisher::start(&format!("{RTMP}/live/bf"), &opts)?;
    rig.wait_live("live", "bf", Duration::from_secs(20))?;
    let (_c, _) = play_av(&rig, "live/bf")?;
    let st = stream_stats(&rig, "live", "bf")?;
    println!(
        "B-frame re-encode added delay: p50 {} us, p99 {} us; AAC 44.1k->Opus: p50 {} us",
        st["video_transcode_us_p50"], st["video_transcode_us_p99"], st["audio_transcode_us_p50"]
    );
    assert_eq!(st["b_frames"], true, "B-frames detected: {st}");
    assert!(rig.logs().contains("transcoder started"), "{}", rig.logs());
    Ok(())
}

#[test]
fn high_profile_without_b_frames_passes_through() -> Result<()> {
    let rig = Rig::start(Mode::Serve, "")?;
    let opts = PublishOpts { profile: "high".into(), bframes: Some(0), audio: false, ..Default::default() };
    let _p = Publisher::start(&format!("{RTMP}/live/hi"), &opts)?;
    rig.wait_live("live", "hi", Duration::from_secs(20))?;
    let _c = rig.play("live", "hi", "", 60)?;
    let st = stream_stats(&rig, "live", "hi")?;
    assert_eq!(st["b_frames"], false);
    assert!(!rig.logs().contains("transcoder started"), "no transcoding for a B-frame-free stream");
    Ok(())
}
