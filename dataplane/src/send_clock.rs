//! When a stream sends the packet of a given media time: the earliest
//! send instant of its recent packets, per kind (video frames, audio
//! packets), as a clock. A channel switch re-bases a viewer's timestamps by
//! two streams' clocks (`TrackOut::rebase_with`), so the new stream's
//! packets reach the receiver where its jitter buffers expect the old
//! stream's next ones.
//!
//! Why the earliest and not the latest or an average: publishers deliver
//! frames late and in bursts (a 720p keyframe, an encoder under load), and
//! transcoded audio leaves a varying 20-45 ms after its media time. The
//! latest frame's arrival (the stream's clock anchor) puts "now" too early
//! whenever that frame came late, by up to its lateness, differently at
//! every switch; an average moves with every burst. The earliest send over
//! the last 1-2 s is what both jitter buffers (NetEq's delay estimate,
//! libwebrtc's frame timing) measure other packets against. Sans-IO: time
//! is an input.

use std::time::{Duration, Instant};

/// The minimum is taken over the current bucket and the one before it, so
/// it follows a publisher whose clock drifts or whose delay changes within
/// 1-2 s.
const BUCKET: Duration = Duration::from_secs(1);
/// A sample this far from the clock is a timestamp jump (publisher restart,
/// a replica re-homed): start over from it.
const JUMP_MS: f64 = 2_000.0;
/// The reference is moved up to the newest sample this often, so timestamp
/// differences stay far from the 32-bit wrap (13 h at 90 kHz).
const REBASE_AFTER: Duration = Duration::from_secs(600);

#[derive(Debug, Clone)]
pub struct SendClock {
    /// RTP units per millisecond (90 video, 48 audio).
    rate: f64,
    /// (instant, RTP time) all samples are measured against.
    reference: Option<(Instant, u32)>,
    /// Send instant minus media time (ms) relative to the reference:
    /// minimum of the current bucket and of the previous one.
    cur: f64,
    prev: f64,
    bucket_start: Option<Instant>,
}

impl SendClock {
    pub fn new(rate_per_ms: u32) -> SendClock {
        SendClock { rate: f64::from(rate_per_ms), reference: None, cur: 0.0, prev: 0.0, bucket_start: None }
    }

    /// A packet with RTP time `ts` left at `now`.
    pub fn on_sent(&mut self, ts: u32, now: Instant) {
        let Some((t0, ts0)) = self.reference else {
            self.restart(ts, now);
            return;
        };
        let late = self.late_ms(ts, now, t0, ts0);
        if (late - self.estimate()).abs() > JUMP_MS {
            self.restart(ts, now);
            return;
        }
        let bucket_start = *self.bucket_start.get_or_insert(now);
        if now.saturating_duration_since(bucket_start) >= BUCKET {
            self.prev = self.cur;
            self.cur = late;
            self.bucket_start = Some(now);
        } else {
            self.cur = self.cur.min(late);
        }
        if now.saturating_duration_since(t0) >= REBASE_AFTER {
            // The same clock measured from this sample: shift the minima.
            self.reference = Some((now, ts));
            self.cur -= late;
            self.prev -= late;
        }
    }

    /// The RTP time of the packet this stream sends at `now` if it is on
    /// time (none sent yet: None).
    pub fn rtp_at(&self, now: Instant) -> Option<u32> {
        let (t0, ts0) = self.reference?;
        let media_ms = ms_between(t0, now) - self.estimate();
        Some(ts0.wrapping_add((media_ms * self.rate).round() as i64 as u32))
    }

    fn estimate(&self) -> f64 {
        self.cur.min(self.prev)
    }

    fn late_ms(&self, ts: u32, now: Instant, t0: Instant, ts0: u32) -> f64 {
        ms_between(t0, now) - f64::from(ts.wrapping_sub(ts0) as i32) / self.rate
    }

    fn restart(&mut self, ts: u32, now: Instant) {
        self.reference = Some((now, ts));
        self.cur = 0.0;
        self.prev = 0.0;
        self.bucket_start = Some(now);
    }
}

/// Milliseconds from `a` to `b`, negative when `b` is earlier.
fn ms_between(a: Instant, b: Instant) -> f64 {
    if b >= a {
        b.duration_since(a).as_secs_f64() * 1000.0
    } else {
        -(a.duration_since(b).as_secs_f64() * 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_clock_follows_the_earliest_recent_send() {
        // Video frames every 33 ms of media time (2970 units); most leave
        // on time, every fourth 40 ms late (a burst): the clock reads the
        // on-time ones, whatever the latest frame did.
        let t0 = Instant::now();
        let mut c = SendClock::new(90);
        assert_eq!(c.rtp_at(t0), None);
        for i in 0..30u64 {
            let late = if i % 4 == 3 { 40 } else { 0 };
            c.on_sent(1_000_000 + 2_970 * i as u32, t0 + ms(33 * i + late));
        }
        // The last frame (i = 29, media 86_130 units on) left 33 * 29 ms
        // after the first, on time; 10 ms later the clock reads 10 ms on.
        assert_eq!(c.rtp_at(t0 + ms(33 * 29 + 10)), Some(1_000_000 + 2_970 * 29 + 900));
        // A late frame last does not move it.
        c.on_sent(1_000_000 + 2_970 * 31, t0 + ms(33 * 31 + 40));
        assert_eq!(c.rtp_at(t0 + ms(33 * 31 + 40)), Some(1_000_000 + 2_970 * 31 + 40 * 90));
    }

    #[test]
    fn the_minimum_follows_a_delay_that_grows_within_two_seconds() {
        // Audio every 20 ms (960 units), on time for 1.5 s, then 30 ms late
        // for good: after two buckets the clock reads 30 ms later.
        let t0 = Instant::now();
        let mut c = SendClock::new(48);
        for i in 0..400u64 {
            let late = if i < 75 { 0 } else { 30 };
            c.on_sent(960 * i as u32, t0 + ms(20 * i + late));
        }
        let now = t0 + ms(20 * 399 + 30);
        assert_eq!(c.rtp_at(now), Some(960 * 399));
    }

    #[test]
    fn a_timestamp_jump_starts_over_and_wraps_are_fine() {
        let t0 = Instant::now();
        let mut c = SendClock::new(90);
        c.on_sent(u32::MAX - 1_000, t0);
        c.on_sent((u32::MAX - 1_000).wrapping_add(2_970), t0 + ms(33));
        // Across the 32-bit wrap.
        c.on_sent((u32::MAX - 1_000).wrapping_add(5_940), t0 + ms(66));
        assert_eq!(c.rtp_at(t0 + ms(70)), Some((u32::MAX - 1_000).wrapping_add(70 * 90)));
        // The publisher restarted elsewhere in time: the clock follows it
        // at once.
        c.on_sent(500_000_000, t0 + ms(100));
        assert_eq!(c.rtp_at(t0 + ms(110)), Some(500_000_900));
    }

    #[test]
    fn a_long_run_moves_its_reference_without_moving_the_clock() {
        let t0 = Instant::now();
        let mut c = SendClock::new(48);
        let mut last = t0;
        for i in 0..(31 * 60 * 50u64) {
            // 31 minutes of 20 ms packets, every one 5 ms late but the
            // first of each second.
            last = t0 + ms(20 * i + if i % 50 == 0 { 0 } else { 5 });
            c.on_sent((960 * i) as u32, last);
        }
        assert!(c.reference.is_some_and(|(t, _)| t > t0 + Duration::from_secs(1200)), "moved up twice");
        let n = 31 * 60 * 50 - 1;
        assert_eq!(c.rtp_at(last), Some((960 * n) as u32 + 5 * 48));
    }
}
