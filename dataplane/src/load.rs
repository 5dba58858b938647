//! How busy the shard's core is, and the capacity trade-off it switches:
//! above a busy share the shard pairs audio (two Opus packets per GSO send,
//! half the audio sends for up to 20 ms more audio delay), below it (with
//! hysteresis) it sends every Opus packet at once. Audio is 50 of a viewer's
//! 80 sends per second, and per-send kernel cost dominates the fan-out, so
//! pairing is worth ~20 % more viewers on a saturated core
//! (benches/fanout.rs); at light load it would only cost latency.

use std::time::{Duration, Instant};

/// The window the busy share is measured over.
const WINDOW: Duration = Duration::from_secs(1);
/// Pairing turns off again only this far below the threshold, so a shard
/// near it does not flip every window.
const HYSTERESIS: f64 = 0.15;

/// Busy share of the shard loop (time not parked in `io_uring_enter`) and
/// the pairing decision derived from it.
#[derive(Debug)]
pub struct LoadGovernor {
    /// Pair above this busy share; `None`: never by load.
    threshold: Option<f64>,
    window_start: Instant,
    idle: Duration,
    busy: f64,
    pairing: bool,
}

impl LoadGovernor {
    /// `threshold` in (0, 1): the busy share above which audio is paired;
    /// anything else disables load-driven pairing.
    pub fn new(threshold: f64, now: Instant) -> LoadGovernor {
        let threshold = (threshold > 0.0 && threshold < 1.0).then_some(threshold);
        LoadGovernor { threshold, window_start: now, idle: Duration::ZERO, busy: 0.0, pairing: false }
    }

    /// Time the loop spent waiting for events.
    pub fn add_idle(&mut self, d: Duration) {
        self.idle += d;
    }

    /// Closes the window once it is [`WINDOW`] old: updates the busy share
    /// and the pairing decision.
    pub fn tick(&mut self, now: Instant) {
        let elapsed = now.duration_since(self.window_start);
        if elapsed < WINDOW {
            return;
        }
        self.busy = (1.0 - self.idle.as_secs_f64() / elapsed.as_secs_f64()).clamp(0.0, 1.0);
        self.window_start = now;
        self.idle = Duration::ZERO;
        if let Some(t) = self.threshold {
            if self.busy > t {
                self.pairing = true;
            } else if self.busy < t - HYSTERESIS {
                self.pairing = false;
            }
        }
    }

    /// Busy share of the last full window, 0..=1.
    pub fn busy(&self) -> f64 {
        self.busy
    }

    /// Whether load asks for paired audio now.
    pub fn pair_audio(&self) -> bool {
        self.pairing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(g: &mut LoadGovernor, t: &mut Instant, idle_ms: u64) {
        g.add_idle(Duration::from_millis(idle_ms));
        *t += WINDOW;
        g.tick(*t);
    }

    #[test]
    fn pairs_above_threshold_with_hysteresis() {
        let mut t = Instant::now();
        let mut g = LoadGovernor::new(0.75, t);
        window(&mut g, &mut t, 500);
        assert!((g.busy() - 0.5).abs() < 1e-9);
        assert!(!g.pair_audio());
        window(&mut g, &mut t, 100); // 90 % busy
        assert!(g.pair_audio());
        window(&mut g, &mut t, 300); // 70 %: inside the hysteresis band
        assert!(g.pair_audio());
        window(&mut g, &mut t, 450); // 55 %: below 75 - 15
        assert!(!g.pair_audio());
    }

    #[test]
    fn no_decision_before_a_full_window_and_disabled_threshold() {
        let mut t = Instant::now();
        let mut g = LoadGovernor::new(0.75, t);
        t += Duration::from_millis(500);
        g.tick(t);
        assert_eq!(g.busy(), 0.0, "half a window: no figure yet");
        let mut off = LoadGovernor::new(0.0, t);
        window(&mut off, &mut t, 0); // 100 % busy
        assert_eq!(off.busy(), 1.0);
        assert!(!off.pair_audio(), "threshold 0 disables load pairing");
    }
}
