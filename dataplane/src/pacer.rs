//! Even pacing of transcoded audio. The transcoder's Opus packets come out
//! in bursts: publishers interleave audio with video in FLV (ffmpeg and OBS
//! hold audio until the next video frame), and 21.3 ms AAC frames become
//! 20 ms Opus frames. A receiver's jitter buffer (NetEq) sizes itself to
//! that arrival jitter, ~60-70 ms measured in Chrome (docs/decisions/008),
//! which is audio latency and the head start Chrome's lip sync must undo.
//! The pacer releases each packet at its media time plus the lateness of
//! the latest recent packet, so packets leave 20 ms apart: early packets
//! wait a little, late ones go at once, and nothing waits more than
//! [`MAX_HOLD`]. Sans-IO: time is an input.

use bytes::Bytes;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Longest a packet is held. Publishers' audio comes with a lateness that
/// spreads over ~50 ms: ffmpeg with 25 fps video hands AAC over in pairs
/// 40 ms apart, and cutting 21.3 / 23.2 ms AAC frames into 20 ms Opus
/// frames adds up to a frame more (48-60 ms over each 2 s, measured with
/// `tests/swipe_audio.rs`'s rooms).
pub const MAX_HOLD: Duration = Duration::from_millis(60);
/// A packet this much earlier than the target lateness is a timestamp jump
/// forward (a publisher restarting, a gap in its audio), not jitter: the
/// pacer follows it at once. Under it an early packet waits at most
/// [`MAX_HOLD`] and the target stays: resetting the target on jitter (40 ms
/// before, then the threshold too) released early packets at once and
/// left output bursts of three packets and 40-50 ms gaps, the jitter the
/// pacer is there to remove.
const JUMP: Duration = Duration::from_millis(150);
/// The target lateness decays this fast when packets come earlier again,
/// so one late burst does not keep audio late for good.
const DECAY_PER_S: f64 = 0.010;

#[derive(Debug, Default)]
pub struct AudioPacer {
    /// Media clock origin: the first packet's RTP timestamp and arrival.
    origin: Option<(u32, Instant)>,
    /// Current lateness target (s) relative to the origin mapping.
    target: f64,
    last: Option<Instant>,
    queue: VecDeque<(Instant, Bytes)>,
}

impl AudioPacer {
    pub fn new() -> AudioPacer {
        AudioPacer::default()
    }

    /// Queues a packet (48 kHz RTP timestamp) that arrived at `now`.
    pub fn push(&mut self, packet: Bytes, rtp_ts: u32, now: Instant) {
        let (ts0, t0) = *self.origin.get_or_insert((rtp_ts, now));
        // Media time since the origin; a jump backwards (publisher restart)
        // shows up as a negative value and re-bases below.
        let media = f64::from(rtp_ts.wrapping_sub(ts0) as i32) / 48_000.0;
        let late = now.duration_since(t0).as_secs_f64() - media;
        if let Some(last) = self.last {
            let dt = now.duration_since(last).as_secs_f64();
            self.target -= DECAY_PER_S * dt;
        }
        self.last = Some(now);
        if late > self.target {
            self.target = late;
        }
        let hold = self.target - late;
        let due = if hold > JUMP.as_secs_f64() {
            // Came far earlier than the mapping says (timestamp jump
            // forward): follow it at once instead of holding.
            self.target = late;
            now
        } else {
            now + Duration::from_secs_f64(hold.clamp(0.0, MAX_HOLD.as_secs_f64()))
        };
        // Keep release order = arrival order even if `due` went backwards.
        let due = self.queue.back().map_or(due, |(d, _)| due.max(*d));
        self.queue.push_back((due, packet));
    }

    /// The next packet due at `now`, if any.
    pub fn pop_due(&mut self, now: Instant) -> Option<Bytes> {
        if self.queue.front().is_some_and(|(d, _)| *d <= now) {
            return self.queue.pop_front().map(|(_, p)| p);
        }
        None
    }

    /// When the next queued packet is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.queue.front().map(|(d, _)| *d)
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::ms;


    /// Releases everything due up to `until` in 1 ms steps; returns the
    /// release times (ms since `t0`) of each packet in order.
    fn run(p: &mut AudioPacer, t0: Instant, arrivals: &[(u64, u32)]) -> Vec<u64> {
        let mut out = Vec::new();
        let mut next = 0;
        for t in 0..2_000u64 {
            let now = t0 + ms(t);
            while next < arrivals.len() && arrivals[next].0 == t {
                p.push(Bytes::from_static(b"x"), arrivals[next].1, now);
                next += 1;
            }
            while p.pop_due(now).is_some() {
                out.push(t);
            }
        }
        out
    }

    #[test]
    fn bursts_leave_twenty_ms_apart() {
        // Packets every 20 ms of media time, arriving in pairs every 40 ms
        // (the second of each pair on time, the first 20 ms late).
        let t0 = Instant::now();
        let arrivals: Vec<(u64, u32)> = (0..20u32).map(|i| (100 + u64::from(i / 2) * 40 + 20, i * 960)).collect();
        let mut p = AudioPacer::new();
        let out = run(&mut p, t0, &arrivals);
        assert_eq!(out.len(), 20);
        // After the first pair the spacing is the media spacing.
        let gaps: Vec<u64> = out.windows(2).skip(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.iter().all(|&g| (19..=21).contains(&g)), "gaps {gaps:?}");
        // No packet waited longer than MAX_HOLD.
        for (i, &t) in out.iter().enumerate() {
            assert!(t - arrivals[i].0 <= MAX_HOLD.as_millis() as u64);
        }
    }

    #[test]
    fn a_publishers_interleaving_jitter_leaves_twenty_ms_apart() {
        // Lateness (ms) of 80 consecutive Opus packets as they came out of
        // the transcoder, recorded in the shard: tests/swipe_audio.rs's
        // room B (ffmpeg, 25 fps video, AAC 48 kHz), in pairs and threes
        // 40-50 ms apart, spread over 51 ms.
        const LATE: [u64; 80] = [
            17, 51, 31, 11, 25, 5, 34, 14, 33, 15, 16, 35, 15, 36, 16, 37, 17, 47, 28, 8, 28, 8, 29, 9, 31, 11, 11, 32, 12, 43, 23, 43, 23, 44, 24, 4, 25, 5, 26, 6, 27, 7,
            17, 38, 18, 39, 19, 39, 19, 40, 20, 0, 31, 11, 32, 12, 33, 13, 13, 34, 14, 35, 16, 45, 25, 46, 26, 6, 27, 7, 28, 8, 28, 8, 8, 39, 19, 40, 20, 41,
        ];
        let t0 = Instant::now();
        let arrivals: Vec<(u64, u32)> = LATE.iter().zip(0u32..).map(|(&l, i)| (100 + 20 * u64::from(i) + l, i * 960)).collect();
        let mut p = AudioPacer::new();
        let out = run(&mut p, t0, &arrivals);
        assert_eq!(out.len(), 80);
        // From the latest of them (the second) on, packets leave 20 ms apart
        // (the target's decay takes 0.2 ms a step). Once the target has
        // decayed 12 ms, a packet 45 ms late is later than it and goes at
        // once: one gap of 25 ms.
        let gaps: Vec<u64> = out.windows(2).skip(1).map(|w| w[1] - w[0]).collect();
        let off = gaps.iter().filter(|g| !(19..=21).contains(*g)).count();
        assert!(off <= 1 && gaps.iter().all(|&g| (19..=25).contains(&g)), "gaps {gaps:?}");
        for (i, &t) in out.iter().enumerate() {
            assert!(t >= arrivals[i].0 && t - arrivals[i].0 <= MAX_HOLD.as_millis() as u64, "packet {i} held {} ms", t - arrivals[i].0);
        }
    }

    #[test]
    fn packets_early_short_of_a_jump_wait_max_hold_and_keep_the_target() {
        // The publisher stalls 100 ms: packets 10-14 come together, then it
        // goes on on time. The target stays at the stall's lateness, so the
        // on-time packets after it wait MAX_HOLD each and leave 20 ms
        // apart; released at once (resetting the target), they would step
        // the receiver's arrival delay down by the stall.
        let t0 = Instant::now();
        let on_time = |i: u32| (10 + u64::from(i) * 20, i * 960);
        let arrivals: Vec<(u64, u32)> = (0..40u32).map(|i| if (10..15).contains(&i) { (310, i * 960) } else { on_time(i) }).collect();
        let mut p = AudioPacer::new();
        let out = run(&mut p, t0, &arrivals);
        assert_eq!(out.len(), 40);
        for i in 15..40 {
            assert_eq!(out[i] - arrivals[i].0, MAX_HOLD.as_millis() as u64, "packet {i}");
        }
    }

    #[test]
    fn on_time_packets_are_not_delayed() {
        let t0 = Instant::now();
        let arrivals: Vec<(u64, u32)> = (0..30u32).map(|i| (50 + u64::from(i) * 20, i * 960)).collect();
        let mut p = AudioPacer::new();
        let out = run(&mut p, t0, &arrivals);
        let delays: Vec<u64> = out.iter().zip(&arrivals).map(|(t, a)| t - a.0).collect();
        assert!(delays.iter().all(|&d| d == 0), "delays {delays:?}");
    }

    #[test]
    fn timestamp_jumps_do_not_stall() {
        // Media time jumps 10 s forward (publisher restart): packets keep
        // flowing without a 10 s hold, in order.
        let t0 = Instant::now();
        let mut arrivals: Vec<(u64, u32)> = (0..10u32).map(|i| (10 + u64::from(i) * 20, i * 960)).collect();
        arrivals.extend((0..10u32).map(|i| (210 + u64::from(i) * 20, 480_000 + i * 960)));
        let mut p = AudioPacer::new();
        let out = run(&mut p, t0, &arrivals);
        assert_eq!(out.len(), 20);
        assert!(out.windows(2).all(|w| w[0] <= w[1]));
        assert!(out[10] - arrivals[10].0 <= MAX_HOLD.as_millis() as u64);
        assert!(p.is_empty());
    }
}
