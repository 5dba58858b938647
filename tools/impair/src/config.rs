//! Impairment settings for one direction of one link.

use std::time::Duration;

use crate::ImpairError;

/// Shape of the jitter added to the fixed delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JitterDist {
    /// Uniform in `[-jitter, +jitter]`.
    #[default]
    Uniform,
    /// Normal with standard deviation `jitter`, clipped at ±3σ so the bound is still known.
    Normal,
}

/// Gilbert–Elliott two-state burst-loss channel (per packet transitions).
///
/// Mean burst (bad-state sojourn) length is `1/r` packets and the stationary probability of
/// the bad state is `p / (p + r)`; with `k = 0, h = 1` every bad-state packet is lost and no
/// good-state packet is, which is the "simple Gilbert" model most papers quote.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GilbertElliott {
    /// P(good → bad) per packet.
    pub p: f64,
    /// P(bad → good) per packet.
    pub r: f64,
    /// P(delivery | good); loss in the good state is `1 - h`.
    pub h: f64,
    /// P(delivery | bad); loss in the bad state is `1 - k`.
    pub k: f64,
}

impl GilbertElliott {
    /// The simple Gilbert model: lose everything in bad, nothing in good.
    pub fn simple(p: f64, r: f64) -> Self {
        Self {
            p,
            r,
            h: 1.0,
            k: 0.0,
        }
    }
}

/// Deterministic outages: every `every`, the next `packets` datagrams are all lost (a burst
/// of exactly that length, e.g. a handover or a microwave oven). The first run starts
/// `every` after the first datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DropRun {
    /// Consecutive datagrams lost per run.
    pub packets: u32,
    /// Interval between the starts of two runs.
    pub every: Duration,
}

/// Bandwidth cap: a token bucket in bytes/s feeding a byte-limited FIFO (tail drop).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained rate in bytes per second.
    pub bytes_per_sec: u64,
    /// Bucket depth in bytes (a packet larger than this is still sent, as if the bucket were
    /// one packet deep), so bytes sent in any window `w` ≤ `burst_bytes + rate·w`.
    pub burst_bytes: u64,
    /// Bytes that may wait for tokens; a packet that would exceed it is tail-dropped.
    pub queue_bytes: u64,
}

impl RateLimit {
    /// A cap of `kbps` kbit/s with a one-MTU bucket and 100 ms of queue, like a shaped
    /// access link.
    pub fn from_kbps(kbps: u64) -> Self {
        let bytes_per_sec = kbps * 1000 / 8;
        Self {
            bytes_per_sec,
            burst_bytes: 1500,
            queue_bytes: (bytes_per_sec / 10).max(3000),
        }
    }
}

/// Everything applied to one direction. `Default` is a perfect link (pass-through).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ImpairConfig {
    /// Independent random loss probability in `[0, 1]`.
    pub loss: f64,
    /// Optional burst loss, applied in addition to `loss`.
    pub burst: Option<GilbertElliott>,
    /// Optional deterministic outages, applied in addition to `loss` and `burst`.
    pub drop_run: Option<DropRun>,
    /// Fixed one-way delay.
    pub delay: Duration,
    /// Jitter amplitude (see [`JitterDist`]); the total delay is clamped at zero.
    pub jitter: Duration,
    /// Jitter distribution.
    pub jitter_dist: JitterDist,
    /// Probability that a packet is held back by an extra `reorder_gap`, so later packets
    /// overtake it even without jitter.
    pub reorder: f64,
    /// Extra delay of a reordered packet.
    pub reorder_gap: Duration,
    /// Probability that a delivered packet is delivered twice (independent delay each).
    pub duplicate: f64,
    /// Optional bandwidth cap.
    pub rate: Option<RateLimit>,
}

impl ImpairConfig {
    /// Rejects probabilities outside `[0, 1]` and a zero rate, which would hold packets forever.
    pub fn validate(&self) -> Result<(), ImpairError> {
        let mut probs = vec![
            ("loss", self.loss),
            ("reorder", self.reorder),
            ("dup", self.duplicate),
        ];
        if let Some(ge) = self.burst {
            probs.extend([
                ("burst p", ge.p),
                ("burst r", ge.r),
                ("burst h", ge.h),
                ("burst k", ge.k),
            ]);
        }
        for (name, p) in probs {
            if !(0.0..=1.0).contains(&p) {
                return Err(ImpairError::Config(format!(
                    "{name} must be in [0, 1], got {p}"
                )));
            }
        }
        if let Some(rate) = self.rate {
            if rate.bytes_per_sec == 0 {
                return Err(ImpairError::Config("rate must be > 0".into()));
            }
        }
        if self.drop_run.is_some_and(|d| d.every.is_zero()) {
            return Err(ImpairError::Config("drop-run interval must be > 0".into()));
        }
        Ok(())
    }

    /// True when the config changes nothing (used to skip the model on a clean direction).
    pub fn is_transparent(&self) -> bool {
        *self
            == Self {
                jitter_dist: self.jitter_dist,
                reorder_gap: self.reorder_gap,
                ..Self::default()
            }
    }
}

impl ImpairConfig {
    /// Parses a whitespace-separated `key=value` spec, the form of `--up`/`--down`:
    /// `loss=5 burst=1,25 drop-run=60,5000 delay-ms=20 jitter-ms=10 jitter=normal reorder=1
    /// reorder-gap-ms=20 dup=1 rate-kbps=3000 queue-ms=100`. Percentages are in percent;
    /// `burst` is `p,r[,good_loss,bad_loss]` in percent (defaults: 0 and 100, the simple
    /// Gilbert model); `drop-run` is `packets,every_ms`.
    pub fn from_spec(spec: &str) -> Result<Self, ImpairError> {
        let mut cfg = Self::default();
        for item in spec.split_whitespace() {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| ImpairError::Config(format!("expected key=value, got {item:?}")))?;
            cfg.set(key, value)?;
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Sets one option by its CLI name (without `--`); shared by the flags and the spec form.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ImpairError> {
        let bad = || ImpairError::Config(format!("bad value for {key}: {value:?}"));
        let num = |v: &str| v.trim().parse::<f64>().map_err(|_| bad());
        let pct = |v: &str| num(v).map(|x| x / 100.0);
        let ms = |v: &str| {
            let x = num(v)?;
            if x.is_finite() && x >= 0.0 {
                Ok(Duration::from_secs_f64(x / 1000.0))
            } else {
                Err(bad())
            }
        };
        match key {
            "loss" => self.loss = pct(value)?,
            "burst" => {
                let parts = value.split(',').map(pct).collect::<Result<Vec<_>, _>>()?;
                let ge = match parts[..] {
                    [p, r] => GilbertElliott::simple(p, r),
                    [p, r, good, bad_] => GilbertElliott {
                        p,
                        r,
                        h: 1.0 - good,
                        k: 1.0 - bad_,
                    },
                    _ => return Err(bad()),
                };
                self.burst = Some(ge);
            }
            "drop-run" => {
                let (n, every) = value.split_once(',').ok_or_else(bad)?;
                let packets = n.trim().parse::<u32>().map_err(|_| bad())?;
                self.drop_run = Some(DropRun { packets, every: ms(every)? });
            }
            "delay-ms" => self.delay = ms(value)?,
            "jitter-ms" => self.jitter = ms(value)?,
            "jitter" => {
                self.jitter_dist = match value {
                    "uniform" => JitterDist::Uniform,
                    "normal" => JitterDist::Normal,
                    _ => return Err(bad()),
                }
            }
            "reorder" => self.reorder = pct(value)?,
            "reorder-gap-ms" => self.reorder_gap = ms(value)?,
            "dup" => self.duplicate = pct(value)?,
            "rate-kbps" => {
                let kbps = value.trim().parse::<u64>().map_err(|_| bad())?;
                self.rate = Some(RateLimit::from_kbps(kbps));
            }
            "queue-ms" => {
                let q = ms(value)?;
                let rate = self
                    .rate
                    .as_mut()
                    .ok_or_else(|| ImpairError::Config("queue-ms needs rate-kbps first".into()))?;
                rate.queue_bytes = ((q.as_secs_f64() * rate.bytes_per_sec as f64) as u64).max(1500);
            }
            _ => return Err(ImpairError::Config(format!("unknown option {key:?}"))),
        }
        Ok(())
    }
}
