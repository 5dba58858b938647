//! Instant start: the time from DTLS connected to the first decoded video frame
//! with a 2 s GOP, with the GOP cache on and off, side by side. With the cache a
//! new viewer gets the latest keyframe at once; without it the viewer waits for
//! the next keyframe (about half a GOP on average).

mod common;
mod rig;

use anyhow::{Context, Result};
use common::{Chromium, PublishOpts, Publisher};
use rig::{Mode, Rig, RTMP};
use std::time::Duration;

/// Fresh page loads per setting.
const LOADS: usize = 5;

/// Starts a server with `[webrtc] gop_cache = {on}`, publishes a 2 s GOP
/// (g=60 at 30 fps) and plays it `LOADS` times in one Chromium; returns the
/// player's `firstFrameMs` of each load.
///
/// `nack = false` in both runs: with repair on, a PLI is answered by
/// replaying the GOP cache whatever `gop_cache` says (a viewer without the
/// cache gets nothing before the next keyframe, so Chromium has no reason to
/// send one, but the comparison should not depend on that).
fn measure(gop_cache: bool) -> Result<Vec<f64>> {
    // Rig::start opens the config with a [webrtc] table; these keys land in it.
    let rig = Rig::start(Mode::Serve, &format!("gop_cache = {gop_cache}\nnack = false\n"))?;
    let mut chrome = Chromium::launch()?;
    let opts = PublishOpts { audio: false, gop: 60, ..Default::default() };
    let _p = Publisher::start(&format!("{RTMP}/live/ff"), &opts)?;
    rig.wait_live("live", "ff", Duration::from_secs(20))?;
    let mut samples = Vec::new();
    for i in 0..LOADS {
        // Back-to-back loads would phase-lock to the GOP (each one ends just after a
        // keyframe); a random pause samples the GOP phase uniformly. Not a sync wait.
        std::thread::sleep(Duration::from_millis(rand::random::<u64>() % 2000));
        rig.play_in(&mut chrome, "live", "ff", "", 1)?;
        let v = chrome.eval("(async () => (await window.rts.stats()).firstFrameMs)()")?;
        let ms = v.as_f64().with_context(|| format!("firstFrameMs is {v}"))?;
        println!("gop_cache={gop_cache}: load {i}: first frame {ms:.1} ms after DTLS connected");
        samples.push(ms);
        // End the session cleanly (WHEP DELETE) before the next page load.
        chrome.eval("window.rts.stop()")?;
    }
    Ok(samples)
}

fn p50_max(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2], v[v.len() - 1])
}

#[test]
fn first_frame_gop_cache_on_vs_off() -> Result<()> {
    let on = measure(true)?;
    let off = measure(false)?;
    println!("first frame, gop_cache=on:  {on:.1?} ms");
    println!("first frame, gop_cache=off: {off:.1?} ms");
    let (on_p50, on_max) = p50_max(on);
    let (off_p50, off_max) = p50_max(off);
    println!("first frame after DTLS (2 s GOP), {LOADS} loads each: gop_cache=on p50 {on_p50:.1} ms max {on_max:.1} ms; gop_cache=off p50 {off_p50:.1} ms max {off_max:.1} ms");
    assert!(on_p50 < 150.0, "GOP cache: median first frame {on_p50:.1} ms, target < 150 ms");
    assert!(on_p50 < off_p50, "GOP cache on ({on_p50:.1} ms) is not faster than off ({off_p50:.1} ms)");
    Ok(())
}
