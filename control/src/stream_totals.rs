//! One stream's figures across the shards that carry it. A stream lives on
//! its home shard (the publisher's) and on every shard that replicates it
//! for its own viewers; each reports its own counters every second. Control
//! used to keep whichever report came last, so a replicated stream showed
//! one shard's bytes (undercounting) and its total went back and forth.
//!
//! Here each shard's report is kept apart, and the byte totals are
//! accumulated from each shard's increments: a shard whose counter starts
//! over (its replica was dropped and made again) adds its new count instead
//! of taking the total back, so the totals never decrease while control
//! runs. After a control restart they start from the shards' current
//! counters. Time is an input.

use rts_common::ipc::StreamStats;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A shard that has not reported a stream for this long no longer carries
/// it (a dropped replica): its viewers stop counting.
pub const REPORT_STALE: Duration = Duration::from_secs(3);

#[derive(Debug, Default, Clone)]
pub struct StreamTotals {
    shards: BTreeMap<u32, ShardReport>,
    bytes_in: u64,
    bytes_out: u64,
}

#[derive(Debug, Clone)]
struct ShardReport {
    stats: StreamStats,
    at: Instant,
}

impl StreamTotals {
    /// Shard `stats.shard` reported the stream at `now`.
    pub fn on_report(&mut self, stats: StreamStats, now: Instant) {
        let (last_in, last_out) = self.shards.get(&stats.shard).map_or((0, 0), |r| (r.stats.bytes_in, r.stats.bytes_out));
        self.bytes_in += increment(last_in, stats.bytes_in);
        self.bytes_out += increment(last_out, stats.bytes_out);
        self.shards.insert(stats.shard, ShardReport { stats, at: now });
    }

    /// Bytes received from the publisher, over all shards and time.
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in
    }

    /// Bytes sent to viewers, over all shards and time.
    pub fn bytes_out(&self) -> u64 {
        self.bytes_out
    }

    /// The current reports (shards that reported within [`REPORT_STALE`]).
    pub fn current(&self, now: Instant) -> impl Iterator<Item = &StreamStats> {
        self.current_reports(now).map(|r| &r.stats)
    }

    fn current_reports(&self, now: Instant) -> impl Iterator<Item = &ShardReport> {
        self.shards.values().filter(move |r| now.saturating_duration_since(r.at) < REPORT_STALE)
    }

    /// Viewers on all shards now.
    pub fn viewers(&self, now: Instant) -> u32 {
        self.current(now).map(|s| s.viewers).sum()
    }

    /// The report of the shard the stream is published on, else the newest.
    pub fn home(&self, now: Instant) -> Option<&StreamStats> {
        self.current_reports(now).max_by_key(|r| (r.stats.publishing, r.at)).map(|r| &r.stats)
    }
}

/// What a counter that went from `last` to `now` added; a counter that
/// went down started over from 0.
fn increment(last: u64, now: u64) -> u64 {
    if now >= last {
        now - last
    } else {
        now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(shard: u32, publishing: bool, viewers: u32, bytes_in: u64, bytes_out: u64) -> StreamStats {
        StreamStats { shard, app: "live".into(), stream: "s".into(), publishing, viewers, bytes_in, bytes_out, ..Default::default() }
    }

    #[test]
    fn shards_add_up_and_totals_never_go_back() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let mut t = StreamTotals::default();
        // Home shard 0 (publisher, 2 viewers), replica on shard 1 (3 viewers).
        t.on_report(report(0, true, 2, 1_000, 5_000), s(0));
        t.on_report(report(1, false, 3, 0, 7_000), s(0));
        assert_eq!((t.bytes_in(), t.bytes_out(), t.viewers(s(0))), (1_000, 12_000, 5));
        // The old code kept the last report: 7_000 out, 3 viewers.
        t.on_report(report(0, true, 2, 2_000, 6_000), s(1));
        t.on_report(report(1, false, 3, 0, 9_500), s(1));
        assert_eq!((t.bytes_in(), t.bytes_out()), (2_000, 15_500));
        // Shard 1's replica was dropped and made again: its counter starts
        // over at 400; the total goes on from 15_500, not back.
        t.on_report(report(1, false, 1, 0, 400), s(2));
        assert_eq!(t.bytes_out(), 15_900);
        assert_eq!(t.viewers(s(2)), 3);
        assert_eq!(t.home(s(2)).map(|h| h.shard), Some(0), "the publisher's shard");
        // Shard 1 stops reporting (replica gone): its viewers stop counting
        // after 3 s, its bytes stay in the total.
        t.on_report(report(0, true, 2, 2_500, 6_100), s(5));
        assert_eq!(t.viewers(s(5)), 2);
        assert_eq!(t.bytes_out(), 16_000);
        assert_eq!(t.current(s(5)).count(), 1);
        // No publisher anywhere: the newest report stands in.
        let mut r = StreamTotals::default();
        r.on_report(report(2, false, 1, 0, 10), s(0));
        r.on_report(report(3, false, 1, 0, 10), s(1));
        assert_eq!(r.home(s(1)).map(|h| h.shard), Some(3));
    }
}
