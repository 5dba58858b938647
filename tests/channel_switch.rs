//! Instant start and channel switching: a viewer's first frame comes from
//! the GOP cache (no wait for the next keyframe), and an existing session
//! moves to another stream without new ICE/DTLS.

mod common;
mod rig;

use anyhow::{Context, Result};
use common::{PublishOpts, Publisher};
use rig::{Mode, Rig, RTMP};
use std::time::Duration;

/// Publishes `path` at `size` with a 2 s GOP (60 frames at 30 fps).
fn publish(path: &str, size: &str) -> Result<Publisher> {
    let opts = PublishOpts { audio: false, gop: 60, extra_args: vec!["-vf".into(), format!("scale={size}")], ..Default::default() };
    Publisher::start(&format!("{RTMP}/{path}"), &opts)
}

#[test]
fn first_frame_and_channel_switch_are_fast() -> Result<()> {
    // One shard here; tests/replication.rs covers switching across shards.
    let rig = Rig::start(Mode::Serve, "[dataplane]\nshards = 1\n")?;
    let _a = publish("live/a", "640:360")?;
    let _b = publish("live/b", "320:240")?;
    rig.wait_live("live", "a", Duration::from_secs(20))?;
    rig.wait_live("live", "b", Duration::from_secs(20))?;

    let mut chrome = rig.play("live", "a", "", 10)?;
    let first = chrome.eval("(async () => (await window.rts.stats()).firstFrameMs)()")?;
    let first_ms = first.as_f64().context("firstFrameMs")?;
    println!("first frame after DTLS connected (2 s GOP, GOP cache): {first_ms:.1} ms (waiting for the next keyframe would average ~1000 ms)");
    assert!(first_ms < 1000.0, "first frame took {first_ms} ms: the GOP cache is not used");

    let mut samples = Vec::new();
    for (target, width) in [("live/b", 320), ("live/a", 640), ("live/b", 320)] {
        let r = chrome.eval(&format!("window.rts.switchTo('{target}', {width})"))?;
        let ms = r["firstFrameMs"].as_f64().context("firstFrameMs")?;
        println!("switch to {target}: HTTP {:.1} ms, first frame of the new stream {ms:.1} ms after the call", r["httpMs"].as_f64().unwrap_or(-1.0));
        samples.push(ms);
    }
    // Still the same peer connection: one DTLS transport, connected.
    let pcs = chrome.eval("window.rts.pc.connectionState")?;
    assert_eq!(pcs, "connected");
    let before = chrome.eval("(async () => (await window.rts.stats()).framesDecoded)()")?.as_u64().unwrap_or(0);
    chrome.wait_for(&format!("(await window.rts.stats()).framesDecoded >= {}", before + 30), Duration::from_secs(10))?;
    samples.sort_by(|a, b| a.total_cmp(b));
    println!("channel switch to first decoded frame: median {:.1} ms, max {:.1} ms", samples[1], samples[2]);
    assert!(samples[2] < 2000.0, "a switch must not wait for a keyframe interval: {samples:?}");
    Ok(())
}
