//! The sans-IO impairment model: `(now, datagram length) → Decision`.
//!
//! Stages, in the order a real access link applies them: loss (random, then Gilbert–Elliott)
//! → bandwidth cap (token bucket + FIFO, tail drop) → propagation delay with jitter and
//! explicit reordering → duplication. Time is always passed in, so the same seed and the same
//! input times give the same decisions, in tests and in the relay alike.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::{ImpairConfig, JitterDist};
use crate::rng::Rng;
use crate::ImpairError;

/// Why a datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Independent random loss.
    Random,
    /// Gilbert–Elliott burst loss.
    Burst,
    /// A deterministic outage (`drop-run`).
    Run,
    /// The rate limiter's queue was full (tail drop).
    Queue,
}

/// What to do with one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Discard it.
    Drop(DropReason),
    /// Deliver it at `at`, and a second copy at `duplicate_at` if set.
    Deliver {
        /// Delivery time of the original.
        at: Instant,
        /// Delivery time of the duplicate, if the packet is duplicated.
        duplicate_at: Option<Instant>,
    },
}

/// Counters of one model; `Copy` so the relay can snapshot them cheaply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ModelStats {
    /// Datagrams offered.
    pub packets: u64,
    /// Bytes offered.
    pub bytes: u64,
    /// Datagrams delivered (originals, not counting duplicates).
    pub delivered: u64,
    /// Dropped by random loss.
    pub dropped_random: u64,
    /// Dropped by burst loss.
    pub dropped_burst: u64,
    /// Dropped by deterministic outages.
    pub dropped_run: u64,
    /// Tail-dropped by the rate limiter.
    pub dropped_queue: u64,
    /// Extra copies scheduled.
    pub duplicated: u64,
    /// Packets held back by the explicit reorder probability.
    pub reordered: u64,
}

impl ModelStats {
    /// All drops together.
    pub fn dropped(&self) -> u64 {
        self.dropped_random + self.dropped_burst + self.dropped_run + self.dropped_queue
    }

    /// Adds another model's counters (for totals over many clients).
    pub fn add(&mut self, o: &ModelStats) {
        self.packets += o.packets;
        self.bytes += o.bytes;
        self.delivered += o.delivered;
        self.dropped_random += o.dropped_random;
        self.dropped_burst += o.dropped_burst;
        self.dropped_run += o.dropped_run;
        self.dropped_queue += o.dropped_queue;
        self.duplicated += o.duplicated;
        self.reordered += o.reordered;
    }
}

/// One direction of one impaired link. Seeded and deterministic.
#[derive(Debug, Clone)]
pub struct Model {
    cfg: ImpairConfig,
    rng: Rng,
    /// Gilbert–Elliott state: true while in the bad state.
    bad: bool,
    /// Token-bucket virtual time: the instant at which the bucket would be full again
    /// (GCRA form: no timers, only arithmetic on arrival times).
    full_at: Option<Instant>,
    /// Outages: when the next one starts, and datagrams left in the current one.
    next_run: Option<Instant>,
    run_left: u32,
    stats: ModelStats,
}

impl Model {
    /// Builds a model; the seed fixes every random choice it will make.
    pub fn new(cfg: ImpairConfig, seed: u64) -> Result<Self, ImpairError> {
        cfg.validate()?;
        Ok(Self {
            cfg,
            rng: Rng::new(seed),
            bad: false,
            full_at: None,
            next_run: None,
            run_left: 0,
            stats: ModelStats::default(),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &ImpairConfig {
        &self.cfg
    }

    /// Counters so far.
    pub fn stats(&self) -> ModelStats {
        self.stats
    }

    /// Whether a deterministic outage takes this datagram.
    fn in_run(&mut self, now: Instant) -> bool {
        let Some(run) = self.cfg.drop_run else { return false };
        let next = *self.next_run.get_or_insert(now + run.every);
        if now >= next {
            self.run_left = run.packets;
            // The next outage starts `every` after this one (later if traffic paused).
            let mut n = next + run.every;
            while n <= now {
                n += run.every;
            }
            self.next_run = Some(n);
        }
        if self.run_left > 0 {
            self.run_left -= 1;
            return true;
        }
        false
    }

    /// Decides the fate of a datagram of `len` bytes arriving at `now`. Arrival times should
    /// not go backwards; if they do, the rate limiter treats the packet as arriving at the
    /// latest time seen (it never schedules into the past).
    pub fn on_datagram(&mut self, now: Instant, len: usize) -> Decision {
        self.stats.packets += 1;
        self.stats.bytes += len as u64;

        if self.rng.chance(self.cfg.loss) {
            self.stats.dropped_random += 1;
            return Decision::Drop(DropReason::Random);
        }
        if self.burst_lost() {
            self.stats.dropped_burst += 1;
            return Decision::Drop(DropReason::Burst);
        }
        if self.in_run(now) {
            self.stats.dropped_run += 1;
            return Decision::Drop(DropReason::Run);
        }
        let Some(sent) = self.shape(now, len as u64) else {
            self.stats.dropped_queue += 1;
            return Decision::Drop(DropReason::Queue);
        };

        let mut at = sent + self.propagation();
        if self.rng.chance(self.cfg.reorder) {
            self.stats.reordered += 1;
            at += self.cfg.reorder_gap;
        }
        let duplicate_at = if self.rng.chance(self.cfg.duplicate) {
            self.stats.duplicated += 1;
            Some(sent + self.propagation())
        } else {
            None
        };
        self.stats.delivered += 1;
        Decision::Deliver { at, duplicate_at }
    }

    /// Steps the Gilbert–Elliott chain once and draws the loss for the new state.
    fn burst_lost(&mut self) -> bool {
        let Some(ge) = self.cfg.burst else {
            return false;
        };
        self.bad = if self.bad {
            !self.rng.chance(ge.r)
        } else {
            self.rng.chance(ge.p)
        };
        let deliver = if self.bad { ge.k } else { ge.h };
        !self.rng.chance(deliver)
    }

    /// Token bucket with a FIFO in front: returns when the packet leaves the bucket, or
    /// `None` when the bytes already waiting plus this packet exceed the queue limit.
    fn shape(&mut self, now: Instant, len: u64) -> Option<Instant> {
        let Some(rate) = self.cfg.rate else {
            return Some(now);
        };
        let per_byte =
            |bytes: u64| Duration::from_secs_f64(bytes as f64 / rate.bytes_per_sec as f64);
        let full_at = self.full_at.map_or(now, |f| f.max(now));
        // The bucket is `deficit = (full_at - now)·rate` bytes short of full; the packet may go
        // once the deficit is ≤ depth - len, i.e. at `full_at - (depth - len)/rate`.
        let depth = rate.burst_bytes.max(len);
        let slack = per_byte(depth - len);
        let wait = full_at.saturating_duration_since(now).saturating_sub(slack);
        // Bytes queued ahead of us ≈ wait·rate; tail-drop if this packet would overflow.
        let queued = (wait.as_secs_f64() * rate.bytes_per_sec as f64) as u64;
        if queued + len > rate.queue_bytes.max(len) && !wait.is_zero() {
            return None;
        }
        let sent = now + wait;
        self.full_at = Some(full_at.max(sent) + per_byte(len));
        Some(sent)
    }

    /// Fixed delay plus one jitter draw, clamped at zero.
    fn propagation(&mut self) -> Duration {
        let j = self.cfg.jitter.as_secs_f64();
        if j == 0.0 {
            return self.cfg.delay;
        }
        let offset = match self.cfg.jitter_dist {
            JitterDist::Uniform => (self.rng.unit() * 2.0 - 1.0) * j,
            JitterDist::Normal => (self.rng.normal() * j).clamp(-3.0 * j, 3.0 * j),
        };
        Duration::from_secs_f64((self.cfg.delay.as_secs_f64() + offset).max(0.0))
    }
}
