//! Video waits at the shard for its audio (decision 029).
//!
//! A stream's transcoded audio leaves the shard later than its video
//! (`AvLag`: the publisher's interleaving, AAC decode and Opus framing, the
//! audio pacer; ~50 ms with ffmpeg publishing here). A receiver's lip sync
//! then holds video that much longer in its own jitter buffer, and a
//! channel switch waits for that buffer to play out: the new room's first
//! frame goes on screen after the frames of the old room the receiver
//! still holds. Held here instead, the old room's frames not yet sent are
//! simply not sent after a switch, and the receiver's video delay shrinks by
//! the hold. A viewer's A/V latency stays what its audio makes it.
//!
//! The hold follows the stream's measured lag (clamped to
//! [`MAX_HOLD_MS`]), by at most [`STEP_MS`] per video tag so the receiver
//! sees no jump in frame arrival. Tags keep their order: one that arrives
//! while earlier ones wait goes after them. Sans-IO: time is an input.

use bytes::Bytes;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Most video is held: beyond it the lag is not the publisher's audio
/// path (a stalled transcoder) and the receiver's sync covers the rest.
pub const MAX_HOLD_MS: f64 = 150.0;
/// Most the hold moves per video tag (ms): 30 ms per second at 30 fps, a
/// frame-to-frame change a receiver's jitter estimate does not notice.
pub const STEP_MS: f64 = 1.0;
/// Where the hold of a room with AAC starts before its audio was ever
/// transcoded, when no other room on the shard has measured a lag (ms):
/// transcoded audio left 18-63 ms after its video in the rooms measured
/// here (decision 029); the measurement corrects it within a second.
pub const DEFAULT_LAG_MS: f64 = 40.0;
/// The hold stays put while within this of the lag (ms), so a lag that
/// wobbles by a few ms does not move video's timing with it.
const DEADBAND_MS: f64 = 3.0;

#[derive(Debug)]
struct HeldTag {
    due: Instant,
    arrived: Instant,
    timestamp_ms: u32,
    data: Bytes,
}

#[derive(Debug, Default)]
pub struct VideoHold {
    enabled: bool,
    hold_ms: f64,
    queue: VecDeque<HeldTag>,
}

impl VideoHold {
    /// `enabled`: false passes every tag through at once.
    pub fn new(enabled: bool) -> VideoHold {
        VideoHold { enabled, ..VideoHold::default() }
    }

    pub fn set_enabled(&mut self, enabled: bool) {
        self.enabled = enabled;
    }

    /// The current hold (ms).
    pub fn hold_ms(&self) -> f64 {
        self.hold_ms
    }

    /// Moves the hold one step toward `lag_ms` (None: no audio measured,
    /// toward 0).
    pub fn follow(&mut self, lag_ms: Option<f64>) {
        let target = if self.enabled { lag_ms.unwrap_or(0.0).clamp(0.0, MAX_HOLD_MS) } else { 0.0 };
        let apart = target - self.hold_ms;
        if apart.abs() > DEADBAND_MS || (target == 0.0 && self.hold_ms > 0.0) {
            self.hold_ms = (self.hold_ms + apart.clamp(-STEP_MS, STEP_MS)).max(0.0);
        }
    }

    /// A video tag arrived at `now`: back at once when nothing is held (no
    /// hold, nothing queued), else queued until the hold has passed.
    pub fn push(&mut self, timestamp_ms: u32, data: Bytes, now: Instant) -> Option<(u32, Bytes)> {
        if self.queue.is_empty() && (!self.enabled || self.hold_ms < 0.5) {
            return Some((timestamp_ms, data));
        }
        let due = now + Duration::from_secs_f64(self.hold_ms / 1000.0);
        // Order is kept when the hold shrank since the last tag.
        let due = self.queue.back().map_or(due, |last| due.max(last.due));
        self.queue.push_back(HeldTag { due, arrived: now, timestamp_ms, data });
        None
    }

    /// The next tag due at `now`, with how long it was held.
    pub fn pop_due(&mut self, now: Instant) -> Option<(u32, Bytes, Duration)> {
        if self.queue.front().is_none_or(|t| t.due > now) {
            return None;
        }
        let t = self.queue.pop_front()?;
        Some((t.timestamp_ms, t.data, now.saturating_duration_since(t.arrived)))
    }

    /// When the next held tag is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.queue.front().map(|t| t.due)
    }

    /// Drops what is held (the publisher left).
    pub fn clear(&mut self) {
        self.queue.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(i: u8) -> Bytes {
        Bytes::from(vec![i; 4])
    }

    #[test]
    fn without_a_lag_tags_pass_at_once() {
        let t0 = Instant::now();
        let mut h = VideoHold::new(true);
        h.follow(None);
        assert_eq!(h.push(0, tag(1), t0), Some((0, tag(1))));
        assert_eq!(h.next_due(), None);
        // Disabled: a measured lag moves nothing.
        let mut off = VideoHold::new(false);
        for _ in 0..100 {
            off.follow(Some(50.0));
        }
        assert_eq!(off.hold_ms(), 0.0);
        assert_eq!(off.push(7, tag(2), t0), Some((7, tag(2))));
    }

    #[test]
    fn the_hold_walks_to_the_lag_a_millisecond_a_tag() {
        let mut h = VideoHold::new(true);
        h.follow(Some(50.0));
        assert_eq!(h.hold_ms(), 1.0);
        for _ in 0..10 {
            h.follow(Some(50.0));
        }
        assert_eq!(h.hold_ms(), 11.0);
        for _ in 0..100 {
            h.follow(Some(50.0));
        }
        // Within the dead band of the lag, and it stays there while the lag
        // wobbles inside it.
        assert!((47.0..=50.0).contains(&h.hold_ms()), "{}", h.hold_ms());
        let settled = h.hold_ms();
        h.follow(Some(settled + 2.5));
        h.follow(Some(settled - 2.5));
        assert_eq!(h.hold_ms(), settled);
        // Clamped: a lag of a stalled transcoder holds at most MAX_HOLD_MS.
        for _ in 0..1000 {
            h.follow(Some(900.0));
        }
        let top = h.hold_ms();
        assert!((MAX_HOLD_MS - 3.0..=MAX_HOLD_MS).contains(&top), "{top}");
        // Audio gone: back to 0, a step a tag, and all the way.
        h.follow(None);
        assert_eq!(h.hold_ms(), top - 1.0);
        for _ in 0..200 {
            h.follow(None);
        }
        assert_eq!(h.hold_ms(), 0.0);
        // A lag below 0 (a re-encoded stream's video is the late one).
        h.follow(Some(-200.0));
        assert_eq!(h.hold_ms(), 0.0);
    }

    #[test]
    fn tags_wait_the_hold_and_keep_their_order() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut h = VideoHold::new(true);
        for _ in 0..40 {
            h.follow(Some(40.0));
        }
        let hold = h.hold_ms();
        assert!((37.0..=40.0).contains(&hold), "{hold}");
        assert_eq!(h.push(0, tag(0), t0), None);
        assert_eq!(h.push(33, tag(1), ms(33)), None);
        // Not before the hold has passed.
        assert_eq!(h.pop_due(ms(36)), None);
        assert_eq!(h.next_due(), Some(t0 + Duration::from_secs_f64(hold / 1000.0)));
        let (ts, data, held) = h.pop_due(ms(41)).expect("due");
        assert_eq!((ts, data, held), (0, tag(0), Duration::from_millis(41)));
        assert_eq!(h.pop_due(ms(41)), None);
        // The hold drops to 0 (audio gone) while a tag waits: the next tag
        // still goes after it.
        for _ in 0..60 {
            h.follow(None);
        }
        assert_eq!(h.hold_ms(), 0.0);
        assert_eq!(h.push(66, tag(2), ms(66)), None, "queued behind the waiting tag");
        let due_33 = ms(33) + Duration::from_secs_f64(hold / 1000.0);
        assert_eq!(h.pop_due(due_33 - Duration::from_millis(1)).map(|t| t.0), None);
        assert_eq!(h.pop_due(due_33).map(|t| t.0), Some(33));
        assert_eq!(h.pop_due(due_33).map(|t| t.0), Some(66));
        assert_eq!(h.next_due(), None);
        // Nothing held now: straight through again.
        assert_eq!(h.push(99, tag(3), ms(99)), Some((99, tag(3))));
    }

    #[test]
    fn clear_drops_what_waits() {
        let t0 = Instant::now();
        let mut h = VideoHold::new(true);
        for _ in 0..20 {
            h.follow(Some(20.0));
        }
        assert_eq!(h.push(0, tag(0), t0), None);
        h.clear();
        assert_eq!(h.next_due(), None);
        assert_eq!(h.pop_due(t0 + Duration::from_secs(1)), None);
    }
}
