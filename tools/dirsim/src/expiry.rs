//! After the heartbeats stop: every entry must be gone within the TTL with
//! nobody cleaning up (decision 022's promise for a dead node). Checked as
//! a node would see it (`holders`, `nodes`, `alive_nodes` answer nothing)
//! and as Redis has it (the keys no longer exist, so a dead cluster leaves
//! no memory behind).

use crate::layout::{node_id, stream_key, Layout};
use rts_control::cluster::directory::{self, Directory};
use rts_control::cluster::unix_ms;
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Expiry {
    /// How long after the last heartbeat write the check ran, ms.
    pub checked_after_ms: u64,
    pub sampled_streams: usize,
    /// Sampled streams for which `holders` still answered someone.
    pub streams_with_holders: usize,
    /// Sampled stream keys still in Redis.
    pub stream_keys_left: u64,
    /// Node entries `nodes` still returned (all nodes asked).
    pub node_entries_left: usize,
    /// Node hashes still in Redis (all nodes).
    pub node_keys_left: u64,
    /// Nodes `alive_nodes` still listed.
    pub alive_nodes_left: usize,
    /// Directory errors during the check.
    pub errors: u64,
    pub passed: bool,
}

/// Waits until `last_write_ms` + TTL + a margin, then checks `sample`
/// streams spread over the layout and every node.
pub fn check(url: &str, ttl_ms: u64, timeout: Duration, layout: &Layout, sample: usize, last_write_ms: u64) -> anyhow::Result<Expiry> {
    // The margin covers the clock read before the write reaching Redis.
    let at = last_write_ms + ttl_ms + 250;
    let now = unix_ms();
    if at > now {
        std::thread::sleep(Duration::from_millis(at - now));
    }
    let dir = Directory::new(url, ttl_ms, timeout)?;
    let client = redis::Client::open(url)?;
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(2))?;
    let mut e = Expiry { checked_after_ms: unix_ms().saturating_sub(last_write_ms), ..Default::default() };
    let sample = sample.min(layout.streams);
    let picks: Vec<usize> = (0..sample).map(|k| k * layout.streams / sample.max(1)).collect();
    e.sampled_streams = picks.len();
    for &i in &picks {
        match dir.holders(&stream_key(i), unix_ms()) {
            Ok(h) if !h.is_empty() => e.streams_with_holders += 1,
            Ok(_) => {}
            Err(_) => e.errors += 1,
        }
    }
    let ids: Vec<String> = (0..layout.nodes).map(node_id).collect();
    match dir.nodes(&ids) {
        Ok(n) => e.node_entries_left = n.len(),
        Err(_) => e.errors += 1,
    }
    match dir.alive_nodes(unix_ms()) {
        Ok(n) => e.alive_nodes_left = n.len(),
        Err(_) => e.errors += 1,
    }
    // EXISTS counts the keys still there (an expired key counts 0 even
    // before Redis' active expiry has freed it; it frees it on access).
    let mut exists = |keys: Vec<String>| -> u64 {
        keys.chunks(1000)
            .map(|c| redis::cmd("EXISTS").arg(c).query::<u64>(&mut conn).unwrap_or_else(|_| {
                e.errors += 1;
                0
            }))
            .sum()
    };
    e.stream_keys_left = exists(picks.iter().map(|&i| directory::stream_key(&stream_key(i))).collect());
    e.node_keys_left = exists(ids.iter().map(|id| directory::node_key(id)).collect());
    e.passed = e.errors == 0 && e.streams_with_holders == 0 && e.stream_keys_left == 0 && e.node_entries_left == 0 && e.node_keys_left == 0 && e.alive_nodes_left == 0;
    Ok(e)
}
