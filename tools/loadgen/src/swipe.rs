//! Swipe mode (`--switch-every S --switch-streams a,b,c`): each viewer
//! moves its session to the next stream of a list every S seconds with
//! rts's channel switch (`POST {WHEP resource}/switch?stream=app/stream`),
//! and verified viewers time each switch to the new stream's first
//! complete frame. Sans-IO: the schedule and the bookkeeping take `now`;
//! the worker sends the request from an HTTP thread and hands the answer
//! back.
//!
//! Which frame is the new stream's: rts applies a switch on the viewer's
//! shard before it answers the HTTP request, and the first packet it then
//! sends that viewer is the new stream's GOP cache: a keyframe (a STAP-A
//! with SPS/PPS, then the IDR). Sequence numbers and timestamps stay
//! continuous, so nothing in the headers marks the seam, and the keyframe
//! often arrives before the answer. The switch's frame is therefore the
//! first complete keyframe whose first packet arrived after the request
//! was sent: keyframes complete while the request is in flight are kept
//! (up to [`KEPT_KEYFRAMES`]) and matched against its send time once the
//! answer comes. An old-stream keyframe already on its way when the
//! request left (between sending and the shard applying it: a few ms
//! against a GOP of seconds) is taken for the new one, which makes that
//! sample too short, never too long.

use std::time::{Duration, Instant};

/// Keyframes remembered while a switch request is in flight.
pub const KEPT_KEYFRAMES: usize = 4;

/// One entry of `--switch-streams`: `app/stream` or `stream` (in the
/// URL's app), optionally followed by `?query` (e.g. the `auth_key` that
/// the new stream's play auth needs), passed on as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchTarget {
    pub app: String,
    pub stream: String,
    /// Without the `?`; may be empty.
    pub query: String,
}

impl SwitchTarget {
    /// Parses the entries of `--switch-streams`; `default_app` is the URL's.
    pub fn parse_list(list: &[String], default_app: &str) -> Result<Vec<SwitchTarget>, String> {
        let mut out = Vec::with_capacity(list.len());
        for entry in list {
            let e = entry.trim();
            let (path, query) = e.split_once('?').unwrap_or((e, ""));
            let (app, stream) = match path.split_once('/') {
                Some((a, s)) => (a, s),
                None => (default_app, path),
            };
            let ok = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b));
            if !ok(app) || !ok(stream) || query.bytes().any(|b| b.is_ascii_whitespace() || b == b'#') {
                return Err(format!("--switch-streams entry {entry:?}: expected app/stream or stream (letters, digits, -_.~), optionally ?query"));
            }
            out.push(SwitchTarget { app: app.into(), stream: stream.into(), query: query.into() });
        }
        Ok(out)
    }

    /// The switch request for the WHEP resource `location` (absolute URL).
    pub fn url(&self, location: &str) -> String {
        let q = if self.query.is_empty() { String::new() } else { format!("&{}", self.query) };
        format!("{}/switch?stream={}/{}{q}", location.trim_end_matches('/'), self.app, self.stream)
    }
}

/// A viewer's swipe settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwipeConfig {
    /// Streams in the list.
    pub targets: usize,
    /// The list index of the stream the viewer starts on (the URL's), if listed.
    pub start: Option<usize>,
    /// This viewer's place in the rotation (its index in the run).
    pub offset: usize,
    /// Time between switches.
    pub every: Duration,
    /// A switch with no frame of the new stream within this counts as `no_frame`.
    pub timeout: Duration,
    /// Time switches to the first frame (verified viewers); others only switch.
    pub measure_frames: bool,
}

/// How a switch request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwitchOutcome {
    /// 2xx: the session now plays the target.
    Ok,
    /// Answered with this error status (409: target not live).
    Refused(u16),
    /// No answer: timeout, connection refused or reset.
    Failed,
}

/// Per-viewer switch counts and samples, merged into the run's tally.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SwitchStats {
    /// Requests sent.
    pub sent: u64,
    /// Answered 2xx.
    pub ok: u64,
    /// Answered with an error status.
    pub refused: u64,
    /// Not answered (timeout, connection error).
    pub failed: u64,
    /// OK switches of verified viewers that ended in a frame or in `no_frame`
    /// (one still waiting at the end of the run, within its timeout, is left out).
    pub timed: u64,
    /// Of `timed`, those without a complete keyframe of the new stream
    /// within the timeout (or before the next switch).
    pub no_frame: u64,
    /// ms from sending the request to its 2xx answer.
    pub http_ms: Vec<f64>,
    /// ms from sending the request to the new stream's first complete frame.
    pub frame_ms: Vec<f64>,
}

impl SwitchStats {
    /// Adds `o` into `self`.
    pub fn merge(&mut self, mut o: SwitchStats) {
        self.sent += o.sent;
        self.ok += o.ok;
        self.refused += o.refused;
        self.failed += o.failed;
        self.timed += o.timed;
        self.no_frame += o.no_frame;
        self.http_ms.append(&mut o.http_ms);
        self.frame_ms.append(&mut o.frame_ms);
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    /// Waiting for the next due time.
    Idle,
    /// The request is out (handed to an HTTP thread at `asked`); complete
    /// keyframes since then as (first packet, completion), oldest first.
    InFlight { target: usize, keyframes: [Option<(Instant, Instant)>; KEPT_KEYFRAMES] },
    /// Answered OK; the new stream's first keyframe must start after `sent`.
    AwaitingFrame { sent: Instant, deadline: Instant },
}

/// One viewer's swipe: when to switch, where to, and what came of it.
#[derive(Debug, Clone)]
pub struct Swiper {
    cfg: SwipeConfig,
    /// Switches scheduled so far (the k of the next one is `step + 1`).
    step: usize,
    /// The stream the viewer plays (list index; None: the URL's, unlisted).
    current: Option<usize>,
    due: Option<Instant>,
    state: State,
    /// When the last switch's frame completed (latency samples wait after it).
    last_frame: Option<Instant>,
    pub stats: SwitchStats,
}

impl Swiper {
    pub fn new(cfg: SwipeConfig) -> Swiper {
        Swiper { current: cfg.start, cfg, step: 0, due: None, state: State::Idle, last_frame: None, stats: SwitchStats::default() }
    }

    /// The session plays from `now`: the first switch is due one period later.
    pub fn start(&mut self, now: Instant) {
        self.due = Some(now + self.cfg.every);
    }

    /// The stream the viewer plays, as a list index (None: the URL's stream, unlisted).
    pub fn current(&self) -> Option<usize> {
        self.current
    }

    /// A request is out or a switch's frame is awaited.
    pub fn pending(&self) -> bool {
        self.state != State::Idle
    }

    /// Next time [`handle_timeout`](Self::handle_timeout) or
    /// [`poll_switch`](Self::poll_switch) has work (None while a request is
    /// out: its answer comes first).
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Idle => self.due,
            State::InFlight { .. } => None,
            State::AwaitingFrame { deadline, .. } => Some(self.due.map_or(deadline, |d| d.min(deadline))),
        }
    }

    /// A switch's frame that did not come within the timeout.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let State::AwaitingFrame { deadline, .. } = self.state {
            if now >= deadline {
                self.no_frame();
            }
        }
    }

    /// The target (list index) of a switch due at `now`, if one is; the
    /// caller sends the request and reports back with
    /// [`on_answer`](Self::on_answer). Step k (1, 2, ...) goes to
    /// `(offset + k) mod n`, so at every step the viewers are spread over
    /// the list; a step whose target is the stream already playing is
    /// skipped (the URL's stream, or after a refused switch). A step that
    /// comes while the previous switch's frame is still awaited ends that
    /// wait as `no_frame`; while a request is out, it waits for the answer.
    pub fn poll_switch(&mut self, now: Instant) -> Option<usize> {
        let due = self.due?;
        if now < due || self.cfg.targets == 0 || matches!(self.state, State::InFlight { .. }) {
            return None;
        }
        if let State::AwaitingFrame { .. } = self.state {
            self.no_frame();
        }
        self.step += 1;
        // On the period's grid, unless a slow answer made us miss a step.
        let next = due + self.cfg.every;
        self.due = Some(if next > now { next } else { now + self.cfg.every });
        let target = (self.cfg.offset + self.step) % self.cfg.targets;
        if Some(target) == self.current {
            return None;
        }
        self.stats.sent += 1;
        self.state = State::InFlight { target, keyframes: [None; KEPT_KEYFRAMES] };
        Some(target)
    }

    /// A complete keyframe: its first packet arrived at `start`, its last
    /// at `done`.
    pub fn on_keyframe(&mut self, start: Instant, done: Instant) {
        match &mut self.state {
            State::InFlight { keyframes, .. } => {
                if let Some(free) = keyframes.iter_mut().find(|k| k.is_none()) {
                    *free = Some((start, done));
                } else {
                    // Full: forget the oldest (the one that matters is the first after sending).
                    keyframes.rotate_left(1);
                    keyframes[KEPT_KEYFRAMES - 1] = Some((start, done));
                }
            }
            State::AwaitingFrame { sent, .. } if start >= *sent => {
                let sent = *sent;
                self.frame(sent, done);
            }
            _ => {}
        }
    }

    /// The request sent at `sent` was answered (or given up) at `answered`.
    pub fn on_answer(&mut self, sent: Instant, answered: Instant, outcome: SwitchOutcome) {
        let State::InFlight { target, keyframes } = self.state else { return };
        self.state = State::Idle;
        match outcome {
            SwitchOutcome::Ok => {
                self.stats.ok += 1;
                self.stats.http_ms.push(ms(answered.saturating_duration_since(sent)));
                self.current = Some(target);
                if !self.cfg.measure_frames {
                    return;
                }
                if let Some((_, done)) = keyframes.iter().flatten().find(|(start, _)| *start >= sent) {
                    return self.frame(sent, *done);
                }
                self.state = State::AwaitingFrame { sent, deadline: sent + self.cfg.timeout };
            }
            SwitchOutcome::Refused(_) => self.stats.refused += 1,
            SwitchOutcome::Failed => self.stats.failed += 1,
        }
    }

    /// Whether a frame completing at `now` is live media of a settled
    /// stream for latency samples: no switch pending, and `warmup` past the
    /// last switch's frame (the GOP-cache replay's stamps give the cache's
    /// age, not a delay).
    pub fn settled(&self, now: Instant, warmup: Duration) -> bool {
        !self.pending() && self.last_frame.is_none_or(|t| now >= t + warmup)
    }

    /// The run ends: a wait past its timeout counts as `no_frame`; one
    /// still within it is left out of `timed`.
    pub fn finish(&mut self, now: Instant) {
        self.handle_timeout(now);
    }

    fn frame(&mut self, sent: Instant, done: Instant) {
        self.stats.timed += 1;
        self.stats.frame_ms.push(ms(done.saturating_duration_since(sent)));
        self.last_frame = Some(done);
        self.state = State::Idle;
    }

    fn no_frame(&mut self) {
        self.stats.timed += 1;
        self.stats.no_frame += 1;
        self.state = State::Idle;
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(offset: usize, start: Option<usize>, measure_frames: bool) -> SwipeConfig {
        SwipeConfig { targets: 3, start, offset, every: Duration::from_secs(5), timeout: Duration::from_secs(3), measure_frames }
    }

    /// Drives one viewer for `steps` periods with every switch answered OK
    /// at once; returns the targets requested, in order (None: skipped).
    fn targets(offset: usize, start: Option<usize>, steps: u64) -> Vec<Option<usize>> {
        let t0 = Instant::now();
        let mut s = Swiper::new(cfg(offset, start, false));
        s.start(t0);
        (1..=steps)
            .map(|k| {
                let now = t0 + Duration::from_secs(5 * k);
                assert_eq!(s.poll_timeout(), Some(now), "one period after the last");
                assert_eq!(s.poll_switch(now - Duration::from_millis(1)), None, "not due yet");
                let t = s.poll_switch(now);
                if t.is_some() {
                    s.on_answer(now, now, SwitchOutcome::Ok);
                }
                t
            })
            .collect()
    }

    #[test]
    fn round_robin_from_a_per_viewer_offset() {
        // Everyone starts on list entry 0 (the URL's stream). At each step
        // the viewers are spread over the three streams: viewer 2's first
        // target is the stream it plays, so it skips that step.
        assert_eq!(targets(0, Some(0), 5), [Some(1), Some(2), Some(0), Some(1), Some(2)]);
        assert_eq!(targets(1, Some(0), 5), [Some(2), Some(0), Some(1), Some(2), Some(0)]);
        assert_eq!(targets(2, Some(0), 5), [None, Some(1), Some(2), Some(0), Some(1)]);
        // Offsets wrap; an unlisted starting stream skips nothing.
        assert_eq!(targets(5, None, 3), [Some(0), Some(1), Some(2)]);
        // One stream in the list: one switch to it, then nothing to do.
        let t0 = Instant::now();
        let mut s = Swiper::new(SwipeConfig { targets: 1, ..cfg(0, None, false) });
        s.start(t0);
        assert_eq!(s.poll_switch(t0 + Duration::from_secs(5)), Some(0));
        s.on_answer(t0, t0, SwitchOutcome::Ok);
        assert_eq!(s.poll_switch(t0 + Duration::from_secs(10)), None);
        assert_eq!(s.stats.sent, 1);
    }

    #[test]
    fn a_slow_answer_delays_the_next_step_without_piling_up() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut s = Swiper::new(cfg(0, Some(0), false));
        s.start(t0);
        assert_eq!(s.poll_switch(at(5_000)), Some(1));
        assert_eq!(s.poll_timeout(), None, "a request is out");
        assert_eq!(s.poll_switch(at(10_000)), None, "the next step waits for the answer");
        s.on_answer(at(5_000), at(12_000), SwitchOutcome::Failed);
        // Step 2 was due at 10 s: it goes now, and step 3 stays on the grid.
        assert_eq!(s.poll_switch(at(12_000)), Some(2));
        s.on_answer(at(12_000), at(12_010), SwitchOutcome::Refused(409));
        assert_eq!(s.current(), Some(0), "refused and failed switches leave the viewer where it was");
        assert_eq!(s.poll_timeout(), Some(at(15_000)));
        // Step 3's target is list entry 0, still playing: skipped.
        assert_eq!(s.poll_switch(at(15_000)), None);
        assert_eq!(s.poll_timeout(), Some(at(20_000)));
        // Answered after a whole period: the missed step is not made up.
        assert_eq!(s.poll_switch(at(20_000)), Some(1));
        s.on_answer(at(20_000), at(31_000), SwitchOutcome::Failed);
        assert_eq!(s.poll_switch(at(31_000)), Some(2), "step 5 (due at 25 s), once; step 6 (30 s) is dropped");
        assert_eq!(s.poll_timeout(), None);
        s.on_answer(at(31_000), at(31_004), SwitchOutcome::Ok);
        assert_eq!(s.poll_timeout(), Some(at(36_000)), "a period after the late step");
        assert_eq!(s.current(), Some(2));
        let st = &s.stats;
        assert_eq!((st.sent, st.ok, st.refused, st.failed, st.timed), (4, 1, 1, 2, 0));
        assert_eq!(st.http_ms, [4.0], "HTTP time of answered OK switches only");
    }

    /// The new stream's keyframe arrives before the answer (rts applies the
    /// switch first); an old-stream keyframe that started before the request
    /// was sent does not count.
    #[test]
    fn frame_time_from_a_keyframe_that_beat_the_answer() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut s = Swiper::new(cfg(0, Some(0), true));
        s.start(t0);
        assert_eq!(s.poll_switch(at(5_000)), Some(1));
        // The HTTP thread sends at 5,002 ms. An old keyframe (started at
        // 4,990) completes at 5,003; the new one starts at 5,006.
        s.on_keyframe(at(4_990), at(5_003));
        s.on_keyframe(at(5_006), at(5_020));
        assert!(!s.settled(at(5_021), Duration::from_secs(1)), "a switch is pending");
        s.on_answer(at(5_002), at(5_012), SwitchOutcome::Ok);
        assert_eq!(s.stats.frame_ms, [18.0]);
        assert_eq!(s.stats.http_ms, [10.0]);
        assert!(!s.pending());
        assert!(!s.settled(at(5_500), Duration::from_secs(1)), "the GOP-cache replay follows the keyframe");
        assert!(s.settled(at(6_020), Duration::from_secs(1)));
    }

    #[test]
    fn frame_time_from_a_keyframe_after_the_answer() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut s = Swiper::new(cfg(1, Some(0), true));
        s.start(t0);
        assert_eq!(s.poll_switch(at(5_000)), Some(2));
        s.on_answer(at(5_001), at(5_009), SwitchOutcome::Ok);
        assert!(s.pending());
        assert_eq!(s.poll_timeout(), Some(at(8_001)), "the frame timeout, before the next step");
        s.on_keyframe(at(5_040), at(5_055));
        assert_eq!((s.stats.timed, s.stats.no_frame, s.stats.frame_ms.clone()), (1, 0, vec![54.0]));
        s.on_keyframe(at(7_000), at(7_010));
        assert_eq!(s.stats.frame_ms.len(), 1, "later keyframes are no switch's");
    }

    #[test]
    fn no_frame_within_the_timeout_or_before_the_next_step() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut s = Swiper::new(cfg(0, Some(0), true));
        s.start(t0);
        assert_eq!(s.poll_switch(at(5_000)), Some(1));
        s.on_answer(at(5_000), at(5_010), SwitchOutcome::Ok);
        s.handle_timeout(at(7_999));
        assert!(s.pending());
        s.handle_timeout(at(8_000));
        assert!(!s.pending());
        s.on_keyframe(at(8_100), at(8_120));
        assert_eq!((s.stats.timed, s.stats.no_frame), (1, 1), "a frame after the timeout does not count");

        // A timeout longer than the period: the next step ends the wait.
        let mut s = Swiper::new(SwipeConfig { timeout: Duration::from_secs(9), ..cfg(0, Some(0), true) });
        s.start(t0);
        assert_eq!(s.poll_switch(at(5_000)), Some(1));
        s.on_answer(at(5_000), at(5_010), SwitchOutcome::Ok);
        assert_eq!(s.poll_timeout(), Some(at(10_000)));
        assert_eq!(s.poll_switch(at(10_000)), Some(2));
        assert_eq!((s.stats.timed, s.stats.no_frame), (1, 1));

        // The run ends during a wait: counted once past the timeout, else left out.
        s.on_answer(at(10_000), at(10_010), SwitchOutcome::Ok);
        s.finish(at(11_000));
        assert_eq!((s.stats.sent, s.stats.ok, s.stats.timed, s.stats.no_frame), (2, 2, 1, 1));
        s.finish(at(19_000));
        assert_eq!((s.stats.timed, s.stats.no_frame), (2, 2));
    }

    #[test]
    fn light_viewers_switch_without_timing_frames() {
        let t0 = Instant::now();
        let mut s = Swiper::new(cfg(0, Some(0), false));
        s.start(t0);
        let due = t0 + Duration::from_secs(5);
        assert_eq!(s.poll_switch(due), Some(1));
        s.on_answer(due, due + Duration::from_millis(3), SwitchOutcome::Ok);
        assert!(!s.pending(), "nothing to wait for");
        s.finish(due + Duration::from_secs(10));
        assert_eq!((s.stats.ok, s.stats.timed, s.stats.no_frame), (1, 0, 0));
    }

    #[test]
    fn many_keyframes_in_flight_keep_the_newest() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut s = Swiper::new(cfg(0, Some(0), true));
        s.start(t0);
        assert_eq!(s.poll_switch(at(5_000)), Some(1));
        for k in 0..6 {
            s.on_keyframe(at(5_000 + 10 * k), at(5_005 + 10 * k));
        }
        // Sent at 5,035: the first keyframe starting after it (5,040) still kept.
        s.on_answer(at(5_035), at(5_100), SwitchOutcome::Ok);
        assert_eq!(s.stats.frame_ms, [10.0]);
    }

    #[test]
    fn targets_and_urls() {
        let list: Vec<String> = ["a", "other/b", "c?auth_key=1-2-3-x"].iter().map(|s| s.to_string()).collect();
        let t = SwitchTarget::parse_list(&list, "live").unwrap();
        assert_eq!((t[0].app.as_str(), t[0].stream.as_str()), ("live", "a"));
        assert_eq!((t[1].app.as_str(), t[1].stream.as_str()), ("other", "b"));
        assert_eq!(t[0].url("http://h:8080/whep/session/ab12"), "http://h:8080/whep/session/ab12/switch?stream=live/a");
        assert_eq!(t[2].url("http://h/whep/session/1/"), "http://h/whep/session/1/switch?stream=live/c&auth_key=1-2-3-x");
        for bad in ["", "a/", "/b", "a b", "a/b/c", "x&y"] {
            assert!(SwitchTarget::parse_list(&[bad.to_string()], "live").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn stats_merge() {
        let mut a = SwitchStats { sent: 2, ok: 1, refused: 1, http_ms: vec![3.0], ..Default::default() };
        a.merge(SwitchStats { sent: 1, ok: 1, timed: 1, no_frame: 1, http_ms: vec![4.0], ..Default::default() });
        assert_eq!((a.sent, a.ok, a.refused, a.timed, a.no_frame, a.http_ms.len()), (3, 2, 1, 1, 1, 2));
    }
}
