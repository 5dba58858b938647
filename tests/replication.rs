//! Cross-shard replication: viewers spread over shards receive a stream
//! published on another shard; viewers waiting before the publisher arrives
//! get it wherever it lands.

mod common;
mod rig;

use anyhow::Result;
use rig::{frames_decoded, Mode, Rig};
use std::time::{Duration, Instant};

fn viewers_per_shard(rig: &Rig) -> Result<Vec<u64>> {
    let api = rig.api()?;
    Ok(api["shards"].as_array().map(|a| a.iter().map(|s| s["counters"]["viewers"].as_u64().unwrap_or(0)).collect()).unwrap_or_default())
}

#[test]
fn viewers_on_both_shards_play_one_stream() -> Result<()> {
    // spread_after = 0: every new viewer goes to the least loaded shard.
    let rig = Rig::start(Mode::Serve, "[dataplane]\nshards = 2\nspread_after = 0\n")?;
    let _publisher = rig.publish("live/r")?;
    rig.wait_live("live", "r", Duration::from_secs(20))?;
    let mut a = rig.play("live", "r", "", 60)?;
    // Let the first viewer show up in the shard stats before placing the next
    // (placement reads them); if it never does, that is a failure too.
    let end = Instant::now() + Duration::from_secs(5);
    while viewers_per_shard(&rig)?.iter().sum::<u64>() < 1 {
        assert!(Instant::now() < end, "the first viewer is not in the shard stats after 5 s: {:?}", viewers_per_shard(&rig)?);
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut b = rig.play("live", "r", "", 60)?;
    let end = Instant::now() + Duration::from_secs(5);
    let per_shard = loop {
        let v = viewers_per_shard(&rig)?;
        if v.iter().sum::<u64>() >= 2 || Instant::now() > end {
            break v;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    println!("viewers per shard: {per_shard:?}");
    assert_eq!(per_shard, vec![1, 1], "one viewer per shard");
    let logs = rig.logs();
    assert!(logs.contains("replicating stream to shard"), "the second shard replicates the stream:\n{logs}");
    // Both keep playing.
    for c in [&mut a, &mut b] {
        let n = frames_decoded(c)?;
        c.wait_for(&format!("(await window.rts.stats()).framesDecoded >= {}", n + 30), Duration::from_secs(10))?;
    }
    // The stream's figures add up over both shards (control used to keep
    // whichever shard reported last: one viewer, one shard's bytes).
    let st = rig.stream("live", "r")?.ok_or_else(|| anyhow::anyhow!("live/r not in the API"))?;
    let shards = st["per_shard"].as_array().cloned().unwrap_or_default();
    assert_eq!(shards.len(), 2, "both shards report the stream: {st}");
    assert_eq!(st["viewers"], 2, "viewers over both shards: {st}");
    let per: Vec<u64> = shards.iter().map(|s| s["bytes_out"].as_u64().unwrap_or(0)).collect();
    assert!(per.iter().all(|&b| b > 0), "both shards sent to their viewer: {per:?}");
    assert_eq!(st["bytes_out"].as_u64(), Some(per.iter().sum()), "bytes out over both shards: {st}");
    Ok(())
}

#[test]
fn viewer_waiting_before_publish_gets_the_stream() -> Result<()> {
    let rig = Rig::start(Mode::Serve, "[dataplane]\nshards = 2\n")?;
    // The viewer connects first; its shard is chosen before the stream exists.
    let mut chrome = common::Chromium::launch()?;
    chrome.navigate(&format!("{}/play/live/early", rig::HTTP))?;
    chrome.wait_for("window.rts && window.rts.pc && window.rts.pc.connectionState === 'connected'", Duration::from_secs(20))?;
    let _publisher = rig.publish("live/early")?;
    // Wherever the publish lands (SO_REUSEPORT picks), the viewer gets it.
    chrome.wait_for("(await window.rts.stats()).framesDecoded >= 30", Duration::from_secs(30))?;
    Ok(())
}
