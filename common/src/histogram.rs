//! Fixed-bucket histograms for `/metrics` (decision 025): a shard counts
//! samples into one of these per stream and reports it in its
//! `StreamStats`; control counts DTLS handshakes into its own; control
//! exports them as Prometheus histograms (`_bucket{le}`, `_sum`, `_count`).
//!
//! Recording is an array increment found by a search over 11 bounds: no
//! allocation, no float, nothing that can panic, so it is fine on the
//! per-frame path. The counts only grow (saturating), so a report is the
//! histogram since the stream (or the process) started on that shard.
//!
//! Each family has its own bounds (µs, each one a bucket's inclusive upper
//! edge, `le`); the last slot of `counts` counts samples above the last
//! bound (the `+Inf` bucket). Shards and control are built from the same
//! source and check [`crate::ipc::IPC_VERSION`], so both read the bounds
//! from these constants.

use serde::{Deserialize, Serialize};

/// Finite bucket bounds per histogram.
pub const BOUNDS: usize = 11;

/// Server-added latency (RTMP frame in -> last viewer's packet handed to
/// the kernel): the target is < 1 ms p99 idle and one frame interval
/// (33 ms) at full load (DESIGN.md §4).
pub const SERVER_LATENCY_BOUNDS_US: [u32; BOUNDS] = [100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000];

/// A viewer's first video frame after its media can flow: small from the
/// GOP cache (target < 150 ms after DTLS), seconds when it waited for a
/// publisher or a keyframe.
pub const FIRST_FRAME_BOUNDS_US: [u32; BOUNDS] =
    [5_000, 10_000, 25_000, 50_000, 100_000, 150_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000];

/// DTLS handshake, first record to done: a few round trips plus the
/// ECDHE and certificate work; retransmissions (1 s timers) show as seconds.
pub const DTLS_HANDSHAKE_BOUNDS_US: [u32; BOUNDS] =
    [5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000];

/// Delay the transcoder adds (input frame -> output ready): AAC -> Opus
/// is ~30 ms (target < 60 ms), the B-frame re-encode ~60 ms.
pub const TRANSCODE_BOUNDS_US: [u32; BOUNDS] = [1_000, 2_500, 5_000, 10_000, 20_000, 40_000, 60_000, 100_000, 250_000, 500_000, 1_000_000];

/// Bucket counts (not cumulative: `counts[i]` holds the samples in
/// `(bounds[i-1], bounds[i]]`, `counts[BOUNDS]` those above the last bound)
/// and the sum of the samples in µs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Histogram {
    pub counts: [u64; BOUNDS + 1],
    pub sum_us: u64,
}

impl Histogram {
    /// Counts one sample of `us` microseconds against `bounds`.
    #[inline]
    pub fn record(&mut self, bounds: &[u32; BOUNDS], us: u32) {
        // The first bound >= us; BOUNDS (the +Inf slot) when none is.
        let i = bounds.partition_point(|&b| b < us);
        if let Some(c) = self.counts.get_mut(i) {
            *c = c.saturating_add(1);
        }
        self.sum_us = self.sum_us.saturating_add(u64::from(us));
    }

    /// Samples counted.
    pub fn count(&self) -> u64 {
        self.counts.iter().fold(0u64, |a, &c| a.saturating_add(c))
    }

    /// Adds `other`'s counts (two histograms over the same bounds).
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a = a.saturating_add(*b);
        }
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
    }
}

/// Microseconds from `from` to `now` (0 if `now` is earlier), capped at
/// `u32::MAX`: the unit every latency sample and histogram here takes.
pub fn micros_since(from: std::time::Instant, now: std::time::Instant) -> u32 {
    now.saturating_duration_since(from).as_micros().min(u32::MAX as u128) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_land_in_the_bucket_of_their_inclusive_upper_bound() {
        let mut h = Histogram::default();
        // Bounds 100, 250, 500, 1000, 2500, ... 250000 µs.
        for us in [0, 100, 101, 250, 999, 1_000, 1_001, 250_000, 250_001, u32::MAX] {
            h.record(&SERVER_LATENCY_BOUNDS_US, us);
        }
        // 0 and 100 -> le 100; 101, 250 -> le 250; 999, 1000 -> le 1000;
        // 1001 -> le 2500; 250000 -> le 250000; 250001 and u32::MAX -> +Inf.
        assert_eq!(h.counts, [2, 2, 0, 2, 1, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(h.count(), 10);
        assert_eq!(h.sum_us, 100 + 101 + 250 + 999 + 1_000 + 1_001 + 250_000 + 250_001 + 4_294_967_295);
    }

    #[test]
    fn counts_saturate_and_merge() {
        let mut h = Histogram { counts: [u64::MAX; BOUNDS + 1], sum_us: u64::MAX - 1 };
        h.record(&TRANSCODE_BOUNDS_US, 30_000);
        assert_eq!(h.counts[5], u64::MAX, "never wraps to 0");
        assert_eq!(h.sum_us, u64::MAX);
        assert_eq!(h.count(), u64::MAX);

        let mut a = Histogram::default();
        let mut b = Histogram::default();
        a.record(&FIRST_FRAME_BOUNDS_US, 40_000); // le 50 ms
        b.record(&FIRST_FRAME_BOUNDS_US, 40_000);
        b.record(&FIRST_FRAME_BOUNDS_US, 6_000_000); // +Inf
        a.merge(&b);
        assert_eq!(a.counts, [0, 0, 0, 3 - 1, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!((a.count(), a.sum_us), (3, 6_080_000));
    }

    #[test]
    fn bounds_increase() {
        for b in [SERVER_LATENCY_BOUNDS_US, FIRST_FRAME_BOUNDS_US, DTLS_HANDSHAKE_BOUNDS_US, TRANSCODE_BOUNDS_US] {
            assert!(b.windows(2).all(|w| w[0] < w[1]), "{b:?}");
        }
    }
}
