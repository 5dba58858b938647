//! Instant start and channel switching: a viewer's first frame comes from
//! the GOP cache (no wait for the next keyframe), and an existing session
//! moves to another stream without new ICE/DTLS, on its own shard or across
//! shards; a switch to a stream that is not live is refused (409) and leaves
//! the viewer where it was.

mod common;
mod rig;

use anyhow::{bail, Context, Result};
use common::{Chromium, PublishOpts, Publisher};
use rig::{frames_decoded, Mode, Rig, RTMP};
use serde_json::Value;
use std::time::{Duration, Instant};

/// First decoded frame after DTLS connected: DESIGN.md §4's target is
/// < 150 ms with the GOP cache (typically 1-20 ms here, up to ~230 ms with
/// the 2-core box at load 8); 400 ms for a busy CI VM. Waiting for the next
/// keyframe of the 2 s GOP would average ~1 s.
const MAX_FIRST_FRAME_MS: f64 = 400.0;
/// The switch request's HTTP round trip (control asks the viewer's shard
/// over the ring and waits for its answer; it gives up after 2 s). No bound
/// is documented for it alone: it is part of the switch-to-first-frame time
/// below and measures 5-40 ms here (up to load 8 on 2 cores), so 100 ms
/// leaves a busy VM room and still catches a switch that waits on a keyframe
/// or for the shard's answer to time out.
const MAX_SWITCH_HTTP_MS: f64 = 100.0;
/// Switch call -> first decoded frame of the new stream: decision 010
/// measured median 52-114 ms (video-only, this test) and a max of 143 ms;
/// about 2.5x and 4x that for a busy CI VM. A switch that waited for the next
/// keyframe of the 2 s GOP would average ~1 s and rarely pass both.
const MAX_SWITCH_MEDIAN_MS: f64 = 300.0;
const MAX_SWITCH_MS: f64 = 600.0;

/// Publishes `path` at `size` with a 2 s GOP (60 frames at 30 fps).
fn publish(path: &str, size: &str) -> Result<Publisher> {
    let opts = PublishOpts { audio: false, gop: 60, extra_args: vec!["-vf".into(), format!("scale={size}")], ..Default::default() };
    Publisher::start(&format!("{RTMP}/{path}"), &opts)
}

/// The player's first-frame time after DTLS connected, checked against its bound.
fn check_first_frame(chrome: &mut Chromium) -> Result<()> {
    let first = chrome.eval("(async () => (await window.rts.stats()).firstFrameMs)()")?;
    let first_ms = first.as_f64().with_context(|| format!("firstFrameMs is {first}"))?;
    println!("first frame after DTLS connected (2 s GOP, GOP cache): {first_ms:.1} ms (waiting for the next keyframe would average ~1000 ms)");
    assert!(first_ms < MAX_FIRST_FRAME_MS, "first frame took {first_ms:.1} ms (bound {MAX_FIRST_FRAME_MS} ms): the GOP cache is not used");
    Ok(())
}

/// Switches the player to `target` (whose frames are `width` pixels wide) and
/// returns ms from the call to the first decoded frame of `target`; the HTTP
/// time must be reported and within its bound.
fn switch_to(chrome: &mut Chromium, target: &str, width: u32) -> Result<f64> {
    let r = chrome.eval(&format!("window.rts.switchTo('{target}', {width})"))?;
    let http = r["httpMs"].as_f64().with_context(|| format!("switchTo did not report httpMs: {r}"))?;
    let ms = r["firstFrameMs"].as_f64().with_context(|| format!("switchTo did not report firstFrameMs: {r}"))?;
    println!("switch to {target}: HTTP {http:.1} ms, first frame of the new stream {ms:.1} ms after the call");
    assert!(http < MAX_SWITCH_HTTP_MS, "switch to {target}: HTTP answer after {http:.1} ms, bound {MAX_SWITCH_HTTP_MS} ms");
    Ok(ms)
}

/// Median and max of the switch times, checked against their bounds.
fn check_switch_times(mut samples: Vec<f64>) {
    samples.sort_by(|a, b| a.total_cmp(b));
    // The lower middle for an even count.
    let (median, max) = (samples[(samples.len() - 1) / 2], samples[samples.len() - 1]);
    println!("channel switch to first decoded frame: median {median:.1} ms, max {max:.1} ms");
    assert!(median < MAX_SWITCH_MEDIAN_MS, "median switch {median:.1} ms > {MAX_SWITCH_MEDIAN_MS} ms (a switch must start from the GOP cache): {samples:?}");
    assert!(max < MAX_SWITCH_MS, "slowest switch {max:.1} ms > {MAX_SWITCH_MS} ms: {samples:?}");
}

/// The session's shard: the top 16 bits of the session id in the WHEP
/// resource URL (`.../whep/session/{id:016x}`).
fn session_shard(chrome: &mut Chromium) -> Result<u64> {
    let resource = chrome.eval("window.rts.resource")?;
    let id = resource.as_str().and_then(|r| r.rsplit('/').next()).with_context(|| format!("WHEP resource is {resource}"))?;
    Ok(u64::from_str_radix(id, 16).with_context(|| format!("session id {id:?}"))? >> 48)
}

/// Still the same peer connection, and it keeps decoding `width`-wide frames.
fn keeps_playing(chrome: &mut Chromium, width: u32) -> Result<()> {
    assert_eq!(chrome.eval("window.rts.pc.connectionState")?, "connected");
    let before = frames_decoded(chrome)?;
    chrome.wait_for(&format!("(await window.rts.stats()).framesDecoded >= {}", before + 30), Duration::from_secs(10))?;
    let w = chrome.eval("(async () => (await window.rts.stats()).frameWidth)()")?;
    assert_eq!(w, width, "frame width after the switch");
    Ok(())
}

#[test]
fn first_frame_and_channel_switch_are_fast() -> Result<()> {
    // One shard here; `channel_switch_across_shards` below switches between shards.
    let rig = Rig::start(Mode::Serve, "[dataplane]\nshards = 1\n")?;
    let _a = publish("live/a", "640:360")?;
    let _b = publish("live/b", "320:240")?;
    rig.wait_live("live", "a", Duration::from_secs(20))?;
    rig.wait_live("live", "b", Duration::from_secs(20))?;

    let mut chrome = rig.play("live", "a", "", 10)?;
    check_first_frame(&mut chrome)?;

    let mut samples = Vec::new();
    for (target, width) in [("live/b", 320), ("live/a", 640), ("live/b", 320)] {
        samples.push(switch_to(&mut chrome, target, width)?);
    }
    keeps_playing(&mut chrome, 320)?;
    check_switch_times(samples);
    Ok(())
}

/// A viewer on one shard switches to a stream published on the other: its
/// shard replicates the target from the target's home shard, and back.
#[test]
fn channel_switch_across_shards() -> Result<()> {
    let rig = Rig::start(Mode::Serve, "[dataplane]\nshards = 2\n")?;
    let _a = publish("live/xa", "640:360")?;
    let home_a = rig.wait_live("live", "xa", Duration::from_secs(20))?["shard"].as_u64().context("no shard for live/xa")?;
    // SO_REUSEPORT spreads RTMP connections over the shards by their
    // addresses: publish again (a new source port) until live/xb's home is
    // the other shard (each try lands there with probability 1/2).
    let mut landed = None;
    for _ in 0..12 {
        let p = publish("live/xb", "320:240")?;
        let home = rig.wait_live("live", "xb", Duration::from_secs(20))?["shard"].as_u64().context("no shard for live/xb")?;
        if home != home_a {
            landed = Some((p, home));
            break;
        }
        drop(p);
        let end = Instant::now() + Duration::from_secs(10);
        while rig.stream("live", "xb")?.is_some_and(|s| s["publishing"] == true) {
            if Instant::now() > end {
                bail!("live/xb still live 10 s after its publisher was killed; logs:\n{}", rig.logs());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let Some((_b, home_b)) = landed else { bail!("live/xb landed on shard {home_a} (live/xa's) in 12 publishes") };

    // The viewer of live/xa is placed on live/xa's home shard.
    let mut chrome = rig.play("live", "xa", "", 10)?;
    check_first_frame(&mut chrome)?;
    assert_eq!(session_shard(&mut chrome)?, home_a, "the viewer plays on live/xa's home shard");

    let from = rig.servers[0].logs().len();
    let to_b = switch_to(&mut chrome, "live/xb", 320)?;
    let line = rig.servers[0].wait_for_log_since(from, "replicating stream to shard", Duration::from_secs(5))?;
    assert!(line.contains("live/xb"), "shard {home_b} replicates live/xb to the viewer's shard {home_a}: {line}");
    // The cross-shard switch on its own (two samples make no median): it
    // must start from the GOP cache the home shard sends with the
    // replication, as a switch on one shard starts from the local one.
    assert!(
        to_b < MAX_SWITCH_MEDIAN_MS,
        "switch to live/xb on shard {home_b} from shard {home_a}: first frame after {to_b:.1} ms, bound {MAX_SWITCH_MEDIAN_MS} ms (waiting for a keyframe?)"
    );
    keeps_playing(&mut chrome, 320)?;
    // The session stayed on its shard: still the same resource.
    assert_eq!(session_shard(&mut chrome)?, home_a);

    // And back to the stream homed on the viewer's own shard.
    let to_a = switch_to(&mut chrome, "live/xa", 640)?;
    keeps_playing(&mut chrome, 640)?;
    check_switch_times(vec![to_b, to_a]);
    Ok(())
}

/// `409` when the target is not live (README); the viewer keeps its stream.
#[test]
fn switch_to_a_stream_that_is_not_live_is_refused() -> Result<()> {
    let rig = Rig::start(Mode::Serve, "[dataplane]\nshards = 1\n")?;
    let _a = publish("live/n", "640:360")?;
    rig.wait_live("live", "n", Duration::from_secs(20))?;
    let mut chrome = rig.play("live", "n", "", 10)?;
    let resource = chrome.eval("window.rts.resource")?;
    let resource = resource.as_str().with_context(|| format!("WHEP resource is {resource}"))?.to_string();

    let url = format!("{resource}/switch?stream=live/nobody");
    let (status, body) = match ureq::post(&url).timeout(Duration::from_secs(10)).call() {
        Ok(r) => (r.status(), r.into_string()?),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string()?),
        Err(e) => return Err(e.into()),
    };
    assert_eq!(status, 409, "switch to a stream nobody publishes: {body}");
    let json: Value = serde_json::from_str(&body).with_context(|| format!("409 body is not JSON: {body}"))?;
    assert_eq!(json["code"], 409, "{body}");
    assert!(json["error"].as_str().is_some_and(|e| e.contains("not live")), "{body}");

    // A name no stream can have (over 128 characters): 400, before it
    // reaches the shard (its ring message would not fit a ring slot).
    let url = format!("{resource}/switch?stream=live/{}", "x".repeat(5_000));
    let status = match ureq::post(&url).timeout(Duration::from_secs(10)).call() {
        Ok(r) => r.status(),
        Err(ureq::Error::Status(code, _)) => code,
        Err(e) => return Err(e.into()),
    };
    assert_eq!(status, 400, "switch to a 5,000-character stream name");

    // Refused, so nothing changed: same session, same stream, still playing.
    keeps_playing(&mut chrome, 640)?;
    Ok(())
}
