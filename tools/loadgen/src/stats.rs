//! Viewer-experience accounting that needs no sockets: sequence continuity,
//! stalls, inter-frame jitter and percentiles. Time is always passed in.

use serde::Serialize;
use std::time::{Duration, Instant};

/// Bits of sequence history kept for duplicate detection.
const WINDOW: u64 = 1024;
/// Extended sequence numbers start here so that reordering before the first
/// packet cannot go below zero.
const EXT_BASE: u64 = 1 << 32;

/// RTP sequence accounting for one SSRC, with 16-bit wrap handled by
/// extending the sequence number relative to the highest seen.
#[derive(Debug, Clone)]
pub struct SeqTracker {
    first: u64,
    max: u64,
    started: bool,
    seen: [u64; (WINDOW / 64) as usize],
    /// Distinct packets received (duplicates excluded).
    pub received: u64,
    /// Packets that arrived twice (within the history window).
    pub duplicates: u64,
    /// Packets that arrived after a higher sequence number.
    pub reordered: u64,
    /// Packets older than the history window (already counted lost).
    pub too_old: u64,
}

impl Default for SeqTracker {
    fn default() -> Self {
        SeqTracker { first: 0, max: 0, started: false, seen: [0; (WINDOW / 64) as usize], received: 0, duplicates: 0, reordered: 0, too_old: 0 }
    }
}

impl SeqTracker {
    /// Records one packet's sequence number.
    pub fn push(&mut self, seq: u16) {
        if !self.started {
            self.started = true;
            self.first = EXT_BASE + u64::from(seq);
            self.max = self.first;
            self.mark(self.max);
            self.received = 1;
            return;
        }
        let delta = i64::from(seq.wrapping_sub(self.max as u16) as i16);
        let ext = self.max.saturating_add_signed(delta);
        if ext > self.max {
            if ext - self.max >= WINDOW {
                self.seen = [0; (WINDOW / 64) as usize];
            } else {
                for e in self.max + 1..ext {
                    self.clear(e);
                }
            }
            self.max = ext;
            self.mark(ext);
            self.received += 1;
        } else if self.max - ext >= WINDOW || ext < self.first {
            self.too_old += 1;
        } else if self.is_marked(ext) {
            self.duplicates += 1;
        } else {
            self.mark(ext);
            self.received += 1;
            self.reordered += 1;
        }
    }

    /// Packets expected from the first to the highest sequence number.
    pub fn expected(&self) -> u64 {
        if self.started { self.max - self.first + 1 } else { 0 }
    }

    /// Expected but never received.
    pub fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.received)
    }

    /// RTCP "extended highest sequence number received" (cycles << 16 | seq).
    pub fn extended_highest(&self) -> u32 {
        (self.max - EXT_BASE) as u32
    }

    fn bit(e: u64) -> (usize, u64) {
        let i = e % WINDOW;
        ((i / 64) as usize, 1 << (i % 64))
    }
    fn mark(&mut self, e: u64) {
        let (w, b) = Self::bit(e);
        self.seen[w] |= b;
    }
    fn clear(&mut self, e: u64) {
        let (w, b) = Self::bit(e);
        self.seen[w] &= !b;
    }
    fn is_marked(&self, e: u64) -> bool {
        let (w, b) = Self::bit(e);
        self.seen[w] & b != 0
    }
}

/// A stall is a gap of more than `threshold` between complete frames; its
/// duration is the whole gap (the time the picture stood still).
#[derive(Debug, Clone)]
pub struct StallDetector {
    threshold: Duration,
    last: Option<Instant>,
    /// Stalls seen.
    pub count: u64,
    /// Sum of stall durations.
    pub total: Duration,
}

impl StallDetector {
    /// `threshold` is 200 ms in the load generator.
    pub fn new(threshold: Duration) -> Self {
        StallDetector { threshold, last: None, count: 0, total: Duration::ZERO }
    }

    /// A complete frame arrived at `now`. Time going backwards is ignored.
    pub fn on_frame(&mut self, now: Instant) {
        if let Some(last) = self.last {
            if now < last {
                return;
            }
            self.close_gap(now - last);
        }
        self.last = Some(now);
    }

    /// The session ends at `now`: a gap still open counts as a stall.
    pub fn finish(&mut self, now: Instant) {
        if let Some(last) = self.last.take() {
            self.close_gap(now.saturating_duration_since(last));
        }
    }

    fn close_gap(&mut self, gap: Duration) {
        if gap > self.threshold {
            self.count += 1;
            self.total += gap;
        }
    }
}

/// Inter-frame arrival jitter: how far the arrival interval between two
/// complete frames differs from their RTP timestamp interval.
#[derive(Debug, Clone, Default)]
pub struct FrameJitter {
    last: Option<(Instant, u32)>,
}

impl FrameJitter {
    /// A complete frame with RTP timestamp `ts` (`clock_hz`) arrived at `now`;
    /// returns the jitter sample in ms, if there was a previous frame.
    pub fn on_frame(&mut self, now: Instant, ts: u32, clock_hz: u32) -> Option<f64> {
        let sample = self.last.and_then(|(t0, ts0)| {
            let arrival = now.checked_duration_since(t0)?.as_secs_f64() * 1000.0;
            let media = f64::from(ts.wrapping_sub(ts0) as i32) * 1000.0 / f64::from(clock_hz.max(1));
            Some((arrival - media).abs())
        });
        self.last = Some((now, ts));
        sample
    }
}

/// p50/p95/p99 of a sample set, in the sample's unit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
}

/// Nearest-rank percentiles (sorts `samples`); `None` for an empty set.
pub fn percentiles(samples: &mut [f64]) -> Option<Percentiles> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_by(f64::total_cmp);
    let rank = |p: f64| {
        let r = (p / 100.0 * samples.len() as f64).ceil() as usize;
        samples[r.clamp(1, samples.len()) - 1]
    };
    Some(Percentiles { p50: rank(50.0), p95: rank(95.0), p99: rank(99.0) })
}

/// The median (the lower one of an even count), `None` when empty.
pub fn median(samples: &mut [f64]) -> Option<f64> {
    percentiles(samples).map(|p| p.p50)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_counted_across_wrap() {
        let mut t = SeqTracker::default();
        for s in [65530u16, 65531, 65533, 65534, 65535, 0, 1, 3] {
            t.push(s);
        }
        // 65530..=3 is 10 packets; 65532 and 2 are missing.
        assert_eq!(t.expected(), 10);
        assert_eq!(t.received, 8);
        assert_eq!(t.lost(), 2);
        assert_eq!(t.extended_highest(), (1 << 16) | 3);
    }

    #[test]
    fn reorder_and_duplicate() {
        let mut t = SeqTracker::default();
        for s in [10u16, 12, 11, 12, 13, 11] {
            t.push(s);
        }
        assert_eq!((t.received, t.lost(), t.reordered, t.duplicates), (4, 0, 1, 2));
        // A late packet that fills a gap is no longer lost.
        t.push(20);
        assert_eq!(t.lost(), 6);
        t.push(15);
        assert_eq!((t.lost(), t.reordered), (5, 2));
    }

    #[test]
    fn big_jump_and_too_old() {
        let mut t = SeqTracker::default();
        t.push(0);
        t.push(3000);
        assert_eq!(t.lost(), 2999);
        t.push(1000); // more than the window behind
        assert_eq!(t.too_old, 1);
        assert_eq!(t.received, 2);
    }

    #[test]
    fn stalls_with_synthetic_time() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut s = StallDetector::new(Duration::from_millis(200));
        for n in [0, 33, 66, 100, 400, 433, 633, 634] {
            s.on_frame(ms(n));
        }
        // 100 -> 400 is a 300 ms stall; 433 -> 633 is exactly 200 ms: not a stall.
        assert_eq!((s.count, s.total), (1, Duration::from_millis(300)));
        s.on_frame(ms(500)); // backwards: ignored
        s.finish(ms(1000)); // 634 -> 1000 still frozen at the end
        assert_eq!((s.count, s.total), (2, Duration::from_millis(666)));
    }

    #[test]
    fn jitter_compares_arrival_to_rtp_time() {
        let t0 = Instant::now();
        let mut j = FrameJitter::default();
        assert_eq!(j.on_frame(t0, 0, 90_000), None);
        let s = j.on_frame(t0 + Duration::from_millis(43), 2970, 90_000).unwrap();
        assert!((s - 10.0).abs() < 1e-9, "{s}"); // 2970 ticks = 33 ms, arrived 43 ms later
        let s = j.on_frame(t0 + Duration::from_millis(43 + 33), 5940, 90_000).unwrap();
        assert!(s < 1e-9, "{s}");
    }

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let p = percentiles(&mut v).unwrap();
        assert_eq!((p.p50, p.p95, p.p99), (50.0, 95.0, 99.0));
        assert_eq!(percentiles(&mut [7.0]).unwrap().p99, 7.0);
        assert!(percentiles(&mut []).is_none());
    }
}
