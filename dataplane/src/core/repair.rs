//! Loss repair for one viewer: NACKed packets are answered from the
//! stream's shared history (history.rs), as RTX (RFC 4588: own SSRC and
//! sequence space, the original sequence number first in the payload) when
//! the viewer negotiated it, else on the media SSRC. The rules that keep a
//! NACK storm from hurting anyone, each counted when it bites:
//! - a packet is not resent to a viewer again within the viewer's RTT
//!   (measured from its receiver reports, LSR/DLSR);
//! - at most [`MAX_RESENDS`] resends of one packet to one viewer;
//! - a per-viewer byte budget: [`BUDGET_SHARE`] of the stream's rate, with a
//!   burst allowance of at least one keyframe, so one lost keyframe can
//!   always be repaired at once.
//!
//! A PLI/FIR restarts the viewer from the GOP cache (RTMP cannot be asked
//! for a keyframe), at most once per [`GOP_RESTART_EVERY`].

use bytes::Bytes;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::stream::Kind;

/// Resends of one packet to one viewer.
pub const MAX_RESENDS: u8 = 3;
/// The retransmission budget as a share of the stream's rate.
pub const BUDGET_SHARE: f64 = 0.3;
/// RTT assumed until a receiver report measured one (libwebrtc's default).
pub const DEFAULT_RTT: Duration = Duration::from_millis(100);
/// Shortest interval between two GOP restarts of one viewer.
pub const GOP_RESTART_EVERY: Duration = Duration::from_secs(1);
/// Recently resent packets remembered per viewer (a slot per sequence
/// number modulo this; a collision forgets an older record, which can only
/// allow a resend, never block one wrongly).
const RESENT_SLOTS: usize = 128;

/// The RTX stream a viewer negotiated for video.
#[derive(Debug, Clone, Copy)]
pub struct Rtx {
    pub pt: u8,
    pub ssrc: u32,
    /// Next RTX sequence number.
    pub seq: u16,
}

/// One retransmission waiting for the batch.
pub struct Resend {
    pub kind: Kind,
    pub packet: Bytes,
}

/// Per-viewer counters, reported to control.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RepairStats {
    /// Sequence numbers the viewer reported lost (NACK).
    pub nacked: u64,
    /// Retransmissions sent, and their bytes.
    pub resent: u64,
    pub resent_bytes: u64,
    /// Not resent: asked again within the RTT.
    pub suppressed_rtt: u64,
    /// Not resent: already resent `MAX_RESENDS` times.
    pub over_max_resends: u64,
    /// Not resent: over the byte budget.
    pub over_budget: u64,
    /// Not resent: no longer (or never) in the history.
    pub not_in_history: u64,
    /// Ignored: a sequence number from before a channel switch, or one not
    /// sent to this viewer.
    pub stale: u64,
    /// Ignored: no retransmission possible (no RTX, and the media header
    /// could not be repeated byte for byte).
    pub unrepairable: u64,
    /// PLI/FIR received, GOP restarts done, and those refused by the rate limit.
    pub plis: u64,
    pub gop_restarts: u64,
    pub restarts_limited: u64,
}

pub struct Repair {
    pub rtx: Option<Rtx>,
    /// Answer NACKs at all (`[webrtc] nack`).
    pub enabled: bool,
    pub rtt: Option<Duration>,
    /// Last fraction lost the viewer reported for video (1/256).
    pub fraction_lost: u8,
    pub cumulative_lost: i32,
    /// (stream sequence number, resends, when) of recent resends.
    resent: Box<[(u16, u8, Option<Instant>)]>,
    tokens: f64,
    refilled: Option<Instant>,
    pub last_restart: Option<Instant>,
    pub queue: VecDeque<Resend>,
    pub stats: RepairStats,
}

/// Why a NACKed packet is not resent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    WithinRtt,
    MaxResends,
    Budget,
}

impl Repair {
    pub fn new(enabled: bool, rtx: Option<Rtx>) -> Repair {
        Repair {
            rtx,
            enabled,
            rtt: None,
            fraction_lost: 0,
            cumulative_lost: 0,
            resent: vec![(0, 0, None); RESENT_SLOTS].into_boxed_slice(),
            tokens: 0.0,
            refilled: None,
            last_restart: None,
            queue: VecDeque::new(),
            stats: RepairStats::default(),
        }
    }

    pub fn rtt_or_default(&self) -> Duration {
        self.rtt.unwrap_or(DEFAULT_RTT)
    }

    /// A receiver report measured `rtt`: smoothed (1/4 weight per sample).
    pub fn on_rtt(&mut self, rtt: Duration) {
        self.rtt = Some(match self.rtt {
            Some(old) => (old * 3 + rtt) / 4,
            None => rtt,
        });
    }

    /// Whether the packet `seq` (stream numbering) of `len` bytes may be
    /// resent at `now` under the rules; if so it is charged. `rate` and
    /// `burst` are the budget in bytes/s and bytes.
    pub fn admit(&mut self, seq: u16, len: usize, now: Instant, rate: f64, burst: f64) -> Result<(), Refusal> {
        let slot = seq as usize % RESENT_SLOTS;
        let (count, last) = match self.resent[slot] {
            (s, c, at) if s == seq => (c, at),
            _ => (0, None),
        };
        if last.is_some_and(|at| now.saturating_duration_since(at) < self.rtt_or_default()) {
            return Err(Refusal::WithinRtt);
        }
        if count >= MAX_RESENDS {
            return Err(Refusal::MaxResends);
        }
        let since = self.refilled.map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        let full = self.refilled.is_none();
        self.refilled = Some(now);
        self.tokens = if full { burst } else { (self.tokens + rate * since.as_secs_f64()).min(burst) };
        if self.tokens < len as f64 {
            return Err(Refusal::Budget);
        }
        self.tokens -= len as f64;
        self.resent[slot] = (seq, count + 1, Some(now));
        Ok(())
    }

    /// Counts a refusal.
    pub fn refused(&mut self, r: Refusal) {
        match r {
            Refusal::WithinRtt => self.stats.suppressed_rtt += 1,
            Refusal::MaxResends => self.stats.over_max_resends += 1,
            Refusal::Budget => self.stats.over_budget += 1,
        }
    }

    /// Whether a GOP restart is allowed at `now` (and records it).
    pub fn restart_allowed(&mut self, now: Instant) -> bool {
        if self.last_restart.is_some_and(|t| now.saturating_duration_since(t) < GOP_RESTART_EVERY) {
            self.stats.restarts_limited += 1;
            return false;
        }
        self.last_restart = Some(now);
        self.stats.gop_restarts += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn rtt_suppression_and_max_resends() {
        let t0 = Instant::now();
        let mut r = Repair::new(true, None);
        r.on_rtt(ms(40));
        let admit = |r: &mut Repair, at: u64| r.admit(7, 1_000, t0 + ms(at), 1e9, 1e9);
        assert_eq!(admit(&mut r, 0), Ok(()));
        assert_eq!(admit(&mut r, 39), Err(Refusal::WithinRtt), "asked again within the RTT");
        assert_eq!(admit(&mut r, 40), Ok(()));
        assert_eq!(admit(&mut r, 100), Ok(()));
        assert_eq!(admit(&mut r, 200), Err(Refusal::MaxResends), "three resends of one packet at most");
        // Another packet is independent.
        assert_eq!(r.admit(8, 1_000, t0 + ms(200), 1e9, 1e9), Ok(()));
        // Without a measured RTT, the default applies.
        let mut d = Repair::new(true, None);
        assert_eq!(d.admit(1, 10, t0, 1e9, 1e9), Ok(()));
        assert_eq!(d.admit(1, 10, t0 + DEFAULT_RTT - ms(1), 1e9, 1e9), Err(Refusal::WithinRtt));
    }

    #[test]
    fn budget_has_a_keyframe_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut r = Repair::new(true, None);
        // 60 kB/s budget, 50 kB burst (a keyframe).
        let (rate, burst) = (60_000.0, 50_000.0);
        let sent = (0..60u16).filter(|&s| r.admit(s, 1_000, t0, rate, burst).is_ok()).count();
        assert_eq!(sent, 50, "the burst: one keyframe's worth at once");
        assert_eq!(r.admit(100, 1_000, t0, rate, burst), Err(Refusal::Budget));
        // 100 ms later: 6 kB more.
        let later = t0 + ms(100);
        let sent = (200..220u16).filter(|&s| r.admit(s, 1_000, later, rate, burst).is_ok()).count();
        assert_eq!(sent, 6);
        // Idle for long: back to the burst, not beyond.
        let much_later = t0 + Duration::from_secs(60);
        let sent = (300..400u16).filter(|&s| r.admit(s, 1_000, much_later, rate, burst).is_ok()).count();
        assert_eq!(sent, 50);
    }

    #[test]
    fn rtt_is_smoothed_and_restarts_are_rate_limited() {
        let t0 = Instant::now();
        let mut r = Repair::new(true, None);
        r.on_rtt(ms(100));
        r.on_rtt(ms(20));
        assert_eq!(r.rtt, Some(ms(80)));
        assert!(r.restart_allowed(t0));
        assert!(!r.restart_allowed(t0 + ms(999)));
        assert!(r.restart_allowed(t0 + ms(1_000)));
        assert_eq!((r.stats.gop_restarts, r.stats.restarts_limited), (2, 1));
    }
}
