//! How much later than video a stream's audio leaves this shard, and the
//! playout-delay hint that tells a receiver about it.
//!
//! Transcoded audio leaves 18-63 ms behind its video (the publisher's
//! interleaving, AAC decode, Opus encode, the pacer), and both tracks'
//! sender reports map stream time to
//! the wall clock at the video's send time. A receiver's lip sync (Chrome's
//! `StreamSynchronization`) closes that gap by delaying video, but it only
//! starts after two sender reports per track and then moves ~half the
//! remaining gap per second, so the first seconds play video early
//! (docs/decisions/008). The shard holds the publisher's video for most of
//! that lag itself (video_hold.rs, decision 029), and video packets carry
//! the playout-delay RTP header extension with `min` = the lag the hold
//! leaves: the receiver holds video that long from the first frame, which
//! its own sync would reach anyway.
//!
//! The receiver's own audio path adds more at the start: libwebrtc's NetEq
//! (Chrome, Firefox, Safari) starts with an 80 ms target and shrinks it to
//! what the arrival jitter needs (~30-40 ms with paced audio) over the first
//! seconds, while video plays at once. So for a viewer's first seconds the
//! hint adds [`START_ALLOWANCE_MS`], fading over [`START_FADE`] to
//! [`SETTLED_ALLOWANCE_MS`], the least a libwebrtc receiver ever holds audio
//! beyond video. Video starts with the audio, and the receiver's own sync
//! only has to add what its jitter buffers need on top. Measured with
//! Chrome in tests/media_sync.rs (docs/decisions/010).
//!
//! Lateness of a packet = its send instant minus the instant the stream's
//! clock anchor (latest video frame: stream time, arrival) maps its RTP
//! time to. Both tracks are measured, so a replica shard (whose anchor
//! comes from the home shard) sees relay delay on both and only their
//! difference counts. Sans-IO: time is an input.

use std::time::{Duration, Instant};

/// Weight of a new sample in the moving averages (~30 samples: about half a
/// second of audio, a second of video frames).
const ALPHA: f64 = 1.0 / 32.0;
/// A sample this far from the average restarts it (publisher clock jump or
/// reconnect: the anchor moved under us).
const RESTART_MS: f64 = 1_000.0;
/// The published hint moves only when the lag moves this far from it, so a
/// lag near a 10 ms step does not flip the receiver's target every frame.
const HYSTERESIS_MS: f64 = 7.0;
/// Bounds of the hint's `min`, in the extension's 10 ms units: never 0 (min
/// 0 with a max set puts Chrome in its low-latency rendering mode), never
/// more than 200 ms whatever a broken measurement says.
const MIN_UNITS: u16 = 1;
const MAX_UNITS: u16 = 20;
/// Extra `min` for a viewer that just started: NetEq's start target...
pub const START_ALLOWANCE_MS: u32 = 80;
/// ...held this long...
pub const START_HOLD: Duration = Duration::from_secs(4);
/// ...then fading linearly over this long, slowly enough that the
/// receiver's sync (steps every ~1-3 s, 30 ms dead band) keeps up...
pub const START_FADE: Duration = Duration::from_secs(12);
/// ...to what stays for good while the stream has audio: NetEq holds at
/// least one 20 ms packet, and the audio device buffers at least 10 ms,
/// beyond the point where the matching video frame would show. Less than
/// any receiver's sync settles on (~40-45 ms above the server's lag with
/// Chrome here), so sync still adds the rest and never has to delay audio;
/// fading to 0 instead left sync to cover those 30 ms from inside its dead
/// band, and the offset drifted to 60-70 ms on the way (decision 010).
pub const SETTLED_ALLOWANCE_MS: u32 = 30;
/// The hint's `max`: 10 s, Chrome's default maximum, so only `min` changes
/// the receiver's behaviour.
pub const PLAYOUT_DELAY_MAX_UNITS: u16 = 1000;

#[derive(Debug, Default)]
pub struct AvLag {
    audio_ms: Option<f64>,
    video_ms: Option<f64>,
    /// How long this shard holds video for its audio now (ms,
    /// video_hold.rs): the receiver is told only the rest of the lag.
    hold_ms: f64,
    /// Published `min`, in 10 ms units (0 until both tracks were measured).
    units: u16,
}

/// The stream's clock anchor: (arrival of the latest video frame, its stream ms).
pub type Anchor = Option<(Instant, i64)>;

impl AvLag {
    /// A delivery of `kind`'s packet with RTP time `rtp_ts` at `now`;
    /// `held`: how long this shard held it (video_hold.rs), counted as
    /// earlier, so the lag is the publisher's and transcoder's whatever the
    /// hold (the anchor is set when held video is let go).
    pub fn on_sent(&mut self, video: bool, rtp_ts: u32, anchor: Anchor, now: Instant, held: Duration) {
        let Some((at, ms)) = anchor else { return };
        // RTP units per ms; the packet's stream ms is unwrapped next to the
        // anchor's (valid for ±6 h of difference at 90 kHz).
        let rate = if video { 90 } else { 48 };
        let anchor_ts = (ms.max(0) as u64).wrapping_mul(rate) as u32;
        let since_anchor_ms = f64::from(rtp_ts.wrapping_sub(anchor_ts) as i32) / rate as f64;
        let elapsed_ms = now.saturating_duration_since(at).as_secs_f64() * 1000.0;
        let late = elapsed_ms - since_anchor_ms - held.as_secs_f64() * 1000.0;
        let avg = if video {
            &mut self.video_ms
        } else {
            &mut self.audio_ms
        };
        *avg = Some(match *avg {
            Some(a) if (late - a).abs() < RESTART_MS => a + ALPHA * (late - a),
            _ => late,
        });
        self.update();
    }

    /// Audio minus video lateness (ms), once both were measured, before
    /// any hold of video.
    pub fn lag_ms(&self) -> Option<f64> {
        Some(self.audio_ms? - self.video_ms?)
    }

    /// Video is held `ms` now: the hint covers the lag less that.
    pub fn set_video_hold(&mut self, ms: f64) {
        if ms != self.hold_ms {
            self.hold_ms = ms;
            self.update();
        }
    }

    /// The measured lag less the video hold as the extension's `min`, in
    /// 10 ms units (at least `MIN_UNITS`, also while unmeasured).
    pub fn playout_delay_min(&self) -> u16 {
        self.units.max(MIN_UNITS)
    }

    /// `min` for viewers past their start: the lag plus, with audio, the
    /// settled allowance.
    pub fn settled_min(&self) -> u16 {
        self.playout_delay_min() + allowance_units(self.lag_ms().is_some(), Duration::MAX)
    }

    /// The hint at `now`, to be specialised per viewer.
    pub fn hint(&self, now: Instant) -> PlayoutHint {
        PlayoutHint {
            units: self.playout_delay_min(),
            has_audio: self.lag_ms().is_some(),
            now,
        }
    }

    fn update(&mut self) {
        let Some(lag) = self.lag_ms().map(|l| l - self.hold_ms) else { return };
        let published = f64::from(self.units) * 10.0;
        if self.units != 0 && (lag - published).abs() < HYSTERESIS_MS {
            return;
        }
        self.units = ((lag / 10.0).round().max(0.0) as u16).clamp(MIN_UNITS, MAX_UNITS);
    }
}

/// One stream's playout-delay hint at one instant.
#[derive(Debug, Clone, Copy)]
pub struct PlayoutHint {
    units: u16,
    has_audio: bool,
    now: Instant,
}

impl PlayoutHint {
    /// `min` (10 ms units) for a viewer whose media started at `started`:
    /// the stream's lag plus the allowance at the viewer's age.
    pub fn min_units(&self, started: Instant) -> u16 {
        self.units + allowance_units(self.has_audio, self.now.saturating_duration_since(started))
    }
}

/// The allowance for the receiver's audio path (10 ms units) at a viewer's
/// `age`: the start allowance, held, then fading to the settled one. None
/// while the stream is not known to have audio: a video-only stream has
/// nothing to wait for.
fn allowance_units(has_audio: bool, age: Duration) -> u16 {
    if !has_audio {
        return 0;
    }
    let fading = age.saturating_sub(START_HOLD);
    let left = START_FADE.saturating_sub(fading).as_secs_f64() / START_FADE.as_secs_f64();
    let settled = f64::from(SETTLED_ALLOWANCE_MS);
    let extra = settled + left * (f64::from(START_ALLOWANCE_MS) - settled);
    (extra / 10.0).round() as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Video frames every 33 ms leave at their anchor; audio every 20 ms
    /// leaves `audio_late` ms after its media time.
    fn run(lag: &mut AvLag, t0: Instant, start_ms: i64, secs: u64, audio_late: u64) -> Instant {
        let mut now = t0;
        let mut anchor = None;
        for step in 0..secs * 1000 {
            now = t0 + Duration::from_millis(step);
            let ms = start_ms + step as i64;
            if step.is_multiple_of(33) {
                anchor = Some((now, ms));
                lag.on_sent(true, (ms as u64 * 90) as u32, anchor, now, Duration::ZERO);
            }
            if step >= audio_late && (step - audio_late).is_multiple_of(20) {
                let media = ms - audio_late as i64;
                lag.on_sent(false, (media as u64 * 48) as u32, anchor, now, Duration::ZERO);
            }
        }
        now
    }

    #[test]
    fn measures_audio_lag_behind_video() {
        let mut l = AvLag::default();
        assert_eq!(l.playout_delay_min(), MIN_UNITS);
        let t0 = Instant::now();
        run(&mut l, t0, 5_000, 3, 45);
        let lag = l.lag_ms().unwrap();
        assert!((lag - 45.0).abs() < 2.0, "{lag}");
        assert_eq!(l.playout_delay_min(), 5); // 45 ms rounds to 50
    }

    #[test]
    fn held_video_keeps_the_lag_and_the_hint_covers_the_rest() {
        // Audio leaves 50 ms after its media time; video is held 30 ms and
        // sets the anchor when it is let go (as Stream::on_video does).
        let (mut l, t0, hold) = (AvLag::default(), Instant::now(), 30u64);
        l.set_video_hold(hold as f64);
        let mut anchor = None;
        for step in 0..3_000u64 {
            let now = t0 + Duration::from_millis(step);
            if step >= hold && (step - hold).is_multiple_of(33) {
                let ms = (step - hold) as i64;
                anchor = Some((now, ms));
                l.on_sent(true, (ms as u64 * 90) as u32, anchor, now, Duration::from_millis(hold));
            }
            if step >= 50 && (step - 50).is_multiple_of(20) {
                l.on_sent(false, ((step - 50) * 48) as u32, anchor, now, Duration::ZERO);
            }
        }
        let lag = l.lag_ms().unwrap();
        assert!((lag - 50.0).abs() < 2.0, "the publisher's lag whatever the hold: {lag}");
        // The receiver is told the 20 ms the hold leaves.
        assert_eq!(l.playout_delay_min(), 2);
        // Released all the way: back to the whole lag.
        l.set_video_hold(0.0);
        assert_eq!(l.playout_delay_min(), 5);
    }

    #[test]
    fn survives_rtp_wrap_and_restarts_after_an_outlier() {
        let mut l = AvLag::default();
        let t0 = Instant::now();
        // Stream ms whose 90 kHz RTP time wraps during the run.
        let wrap_ms = (1u64 << 32) / 90;
        let now = run(&mut l, t0, wrap_ms as i64 - 1_000, 3, 62);
        assert_eq!(l.playout_delay_min(), 6);
        // An audio packet an hour off the anchor (a stale transcoder output
        // across a publisher restart) restarts the average instead of
        // dragging it for seconds; the next normal one restarts it back.
        let anchor = Some((now, wrap_ms as i64 + 2_000));
        l.on_sent(false, ((wrap_ms + 3_600_000) * 48) as u32, anchor, now, Duration::ZERO);
        assert_eq!(l.playout_delay_min(), MIN_UNITS);
        let media = wrap_ms + 2_000 - 62;
        l.on_sent(false, (media * 48) as u32, anchor, now, Duration::ZERO);
        assert_eq!(l.playout_delay_min(), 6);
    }

    #[test]
    fn hysteresis_and_bounds() {
        let mut l = AvLag::default();
        let t0 = Instant::now();
        let now = run(&mut l, t0, 0, 2, 50);
        assert_eq!(l.playout_delay_min(), 5);
        // 54 ms is within the hysteresis of the published 50.
        let now = run(&mut l, now, 10_000, 2, 54);
        assert_eq!(l.playout_delay_min(), 5);
        // Audio ahead of video: the hint stays at its floor, never 0.
        let now = run(&mut l, now, 20_000, 2, 0);
        assert_eq!(l.playout_delay_min(), MIN_UNITS);
        // A huge lag is capped.
        run(&mut l, now, 30_000, 3, 900);
        assert_eq!(l.playout_delay_min(), MAX_UNITS);
    }

    #[test]
    fn start_allowance_fades_out() {
        let mut l = AvLag::default();
        let t0 = Instant::now();
        let now = run(&mut l, t0, 0, 2, 30);
        let hint = l.hint(now);
        let at = |age_ms: u64| hint.min_units(now - Duration::from_millis(age_ms));
        assert_eq!(at(0), 3 + 8);
        assert_eq!(at(4_000), 3 + 8);
        assert_eq!(at(10_000), 3 + 6); // 30 + half of 50 = 55 ms
        assert_eq!(at(16_000), 3 + 3);
        assert_eq!(at(60_000), 3 + 3);
        assert_eq!(l.settled_min(), 3 + 3);
        // A viewer "started" after `now` (clock order across calls) gets the full allowance.
        assert_eq!(hint.min_units(now + Duration::from_millis(5)), 3 + 8);

        // Video only (or audio not measured yet): nothing to wait for.
        let mut video_only = AvLag::default();
        video_only.on_sent(true, 90_000, Some((now, 1_000)), now, Duration::ZERO);
        assert_eq!(video_only.hint(now).min_units(now), MIN_UNITS);
        assert_eq!(video_only.settled_min(), MIN_UNITS);
    }
}
