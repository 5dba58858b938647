//! When a stream sends the packet of a given media time, per kind (video
//! frames, audio packets), as a clock. A channel switch re-bases a viewer's
//! timestamps by two streams' clocks (`TrackOut::rebase_with`), so the new
//! stream's packets reach the receiver where its jitter buffers expect the
//! old stream's next ones.
//!
//! Not the latest frame's arrival (the stream's clock anchor): publishers
//! deliver frames late and in bursts (a 720p keyframe, an encoder under
//! load), and that reads "now" early by however late the latest frame
//! came, differently at every switch. What each receiver buffer measures
//! against instead:
//! - audio ([`Follow::Earliest`]): NetEq measures each packet's delay
//!   against the fastest packet of its recent window, so the clock is the
//!   earliest send of the last 1-2 s;
//! - video ([`Follow::Average`]): libwebrtc's frame timing fits the frames'
//!   arrivals, late and early ones alike, so the clock is a moving average.
//!   With the earliest send for video too, a switch between a bursty room
//!   (a re-encoder's output) and a steady one put one room's frames late
//!   and the other's early; Chrome gives late frames more delay than it
//!   takes back from early ones, and the A/V offset drifted by up to
//!   180 ms over ten switches (decision 015).
//!
//! Sans-IO: time is an input.

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

/// Which send instant the clock follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    /// The earliest of the last 1-2 s (audio: NetEq measures each packet's
    /// delay against the fastest one of its recent window).
    Earliest,
    /// A moving average (video: libwebrtc's frame timing fits the frames'
    /// arrivals, late and early alike).
    Average,
}

/// Weight of a new sample in [`Follow::Average`] (~16 frames).
const AVERAGE_WEIGHT: f64 = 1.0 / 16.0;

#[derive(Debug, Clone)]
pub struct SendClock {
    follow: Follow,
    /// RTP units per millisecond (90 video, 48 audio).
    rate: f64,
    /// (instant, RTP time) all samples are measured against.
    reference: Option<(Instant, u32)>,
    /// Send instant minus media time (ms) relative to the reference:
    /// Earliest, the minimum of the current bucket (`cur`) and of the
    /// previous one (`prev`); Average, the moving average (`cur`).
    cur: f64,
    prev: f64,
    bucket_start: Option<Instant>,
}

impl SendClock {
    pub fn new(rate_per_ms: u32, follow: Follow) -> SendClock {
        SendClock { follow, rate: f64::from(rate_per_ms), reference: None, cur: 0.0, prev: 0.0, bucket_start: None }
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
        match self.follow {
            Follow::Average => self.cur += AVERAGE_WEIGHT * (late - self.cur),
            Follow::Earliest => {
                let bucket_start = *self.bucket_start.get_or_insert(now);
                if now.saturating_duration_since(bucket_start) >= BUCKET {
                    self.prev = self.cur;
                    self.cur = late;
                    self.bucket_start = Some(now);
                } else {
                    self.cur = self.cur.min(late);
                }
            }
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

    /// Whether it has a sample yet.
    pub fn is_set(&self) -> bool {
        self.reference.is_some()
    }

    fn estimate(&self) -> f64 {
        match self.follow {
            Follow::Average => self.cur,
            Follow::Earliest => self.cur.min(self.prev),
        }
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

/// A switch re-bases each track by the two streams' send clocks; the new
/// stream's sender reports then map both tracks by its clock anchor
/// (stream time). The receiver's A/V relation moves, at the first new
/// report, by how much the two streams' send lags differ between video and
/// audio: (old video lag − new video lag) − (old audio lag − new audio
/// lag), where a track's lag is its stream time at `now` less its send
/// clock's media time. `old`/`new` are the (video 90 kHz, audio 48 kHz)
/// send clocks at `now`, `old_ms`/`new_ms` the stream times at `now`. A
/// re-encoded stream's video lags hundreds of ms behind its audio; a
/// passthrough one's does not. Positive: video ahead after the first report.
/// Logged with each switch (issue 18: an A/V step some 800 ms after a
/// switch, not explained yet).
pub fn switch_skew_ms(old: (u32, u32), new: (u32, u32), old_ms: i64, new_ms: i64) -> f64 {
    let lag = |clock: u32, ms: i64, rate: f64| f64::from((ms.wrapping_mul(rate as i64) as u32).wrapping_sub(clock) as i32) / rate;
    let video = lag(old.0, old_ms, 90.0) - lag(new.0, new_ms, 90.0);
    let audio = lag(old.1, old_ms, 48.0) - lag(new.1, new_ms, 48.0);
    video - audio
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
mod skew_tests {
    use super::*;

    #[test]
    fn a_switch_from_a_reencoded_room_skews_by_its_video_lag() {
        // Old (re-encoded) room at stream time 10 000 ms: video sends media
        // of 9 750 ms, audio of 9 960. New room at 50 000: video 49 990,
        // audio 49 960.
        let skew = switch_skew_ms((9_750 * 90, 9_960 * 48), (49_990 * 90, 49_960 * 48), 10_000, 50_000);
        assert!((skew - 240.0).abs() < 0.01, "{skew}");
        // Back again: the other way.
        let back = switch_skew_ms((49_990 * 90, 49_960 * 48), (9_750 * 90, 9_960 * 48), 50_000, 10_000);
        assert!((back + 240.0).abs() < 0.01, "{back}");
        // 14 hours in: stream time × 90 is past 2^32, the RTP clocks wrapped.
        let (om, nm) = (50_000_000i64, 10_000i64);
        let v = |ms: i64| (ms as u32).wrapping_mul(90);
        let a = |ms: i64| (ms as u32).wrapping_mul(48);
        let wrapped = switch_skew_ms((v(om - 250), a(om - 40)), (v(nm - 10), a(nm - 40)), om, nm);
        assert!((wrapped - 240.0).abs() < 0.01, "{wrapped}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::ms;


    #[test]
    fn the_clock_follows_the_earliest_recent_send() {
        // Video frames every 33 ms of media time (2970 units); most leave
        // on time, every fourth 40 ms late (a burst): the clock reads the
        // on-time ones, whatever the latest frame did.
        let t0 = Instant::now();
        let mut c = SendClock::new(90, Follow::Earliest);
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
    fn the_average_follows_late_and_early_frames_alike() {
        // Frames alternately on time and 20 ms late: the average clock
        // reads ~10 ms late, the earliest one on time.
        let t0 = Instant::now();
        let mut avg = SendClock::new(90, Follow::Average);
        let mut min = SendClock::new(90, Follow::Earliest);
        for i in 0..200u64 {
            let at = t0 + ms(33 * i + if i % 2 == 1 { 20 } else { 0 });
            avg.on_sent(2_970 * i as u32, at);
            min.on_sent(2_970 * i as u32, at);
        }
        let now = t0 + ms(33 * 200);
        let on_time = 2_970 * 200;
        let read = |c: &SendClock| f64::from(c.rtp_at(now).unwrap().wrapping_sub(on_time) as i32) / 90.0;
        assert!((read(&avg) + 10.0).abs() < 1.0, "average: {} ms", read(&avg));
        assert_eq!(read(&min), 0.0);
    }

    #[test]
    fn the_minimum_follows_a_delay_that_grows_within_two_seconds() {
        // Audio every 20 ms (960 units), on time for 1.5 s, then 30 ms late
        // for good: after two buckets the clock reads 30 ms later.
        let t0 = Instant::now();
        let mut c = SendClock::new(48, Follow::Earliest);
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
        let mut c = SendClock::new(90, Follow::Earliest);
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
        let mut c = SendClock::new(48, Follow::Earliest);
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
