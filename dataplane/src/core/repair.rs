//! Loss repair for one viewer: NACKed packets are answered from the
//! stream's shared history (history.rs), as RTX (RFC 4588: own SSRC and
//! sequence space, the original sequence number first in the payload) when
//! the viewer negotiated it, else on the media SSRC. The rules that keep a
//! NACK storm from hurting anyone, each counted when it bites:
//! - a packet is not resent to a viewer again within the viewer's RTT
//!   (measured from its receiver reports, LSR/DLSR; 3/4 of it, because a
//!   receiver that asks again every RTT has its retry arrive one RTT after
//!   our resend, give or take jitter, and that retry is the one to answer);
//! - at most [`MAX_RESENDS`] resends of one packet to one viewer; a packet
//!   asked for again after a resend evidently crosses a lossy link, so the
//!   later resends go out as two copies each (with 10 % loss a packet is
//!   then lost for good with probability 0.1 × 0.1 × 0.01 × 0.01 instead of
//!   0.1⁴), and a viewer that asks beyond the maximum gets a GOP restart
//!   (below) instead of waiting for the next keyframe;
//! - the first resend of a packet named by a NACK that names at most
//!   [`ISOLATED_MAX`] (isolated loss, not a burst) goes out as
//!   [`SPARE_COPIES`] copies while the budget left after them covers the
//!   stream's reserve (its keyframe, and half the burst): a receiver
//!   without an RTT of its own asks again only 100 ms later, so a lost
//!   answer costs that wait with the link's loss squared instead of its
//!   loss (decision 030, `[webrtc] double_first_resend`);
//! - a per-viewer byte budget: it earns [`BUDGET_SHARE`] of every byte the
//!   viewer is sent (live or its GOP replay) and holds at most a burst of
//!   at least one keyframe (and half a second of the stream), so one lost
//!   keyframe can always be repaired at once.
//!
//! A viewer that loses packets gets more playout delay (`min` of the
//! playout-delay extension, on top of the lip-sync hint): two RTTs plus
//! [`RETRY_ALLOWANCE`], what a frame needs when its retransmission was
//! lost too and had to be asked for again (the first resend's round trip,
//! libwebrtc's 100 ms before it asks again when it has no RTT of its own,
//! as a receive-only peer, and the second resend's round trip). It goes
//! back to 0 after [`LOSS_QUIET`] without loss.
//!
//! A PLI/FIR restarts the viewer from the GOP cache (RTMP cannot be asked
//! for a keyframe), at most once per [`GOP_RESTART_EVERY`].

use bytes::Bytes;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::stream::Kind;

/// Resends of one packet to one viewer.
pub const MAX_RESENDS: u8 = 3;
/// Copies of a second or later resend.
pub const REPEAT_COPIES: usize = 2;
/// Copies of a first resend of an isolated loss (see the module docs).
pub const SPARE_COPIES: usize = 2;
/// A NACK naming at most this many packets reports isolated loss.
pub const ISOLATED_MAX: usize = 4;
/// The retransmission budget as a share of what the viewer is sent.
pub const BUDGET_SHARE: f64 = 0.3;
/// Budget a viewer starts with (a dozen full packets).
pub const START_BUDGET: f64 = 16_384.0;
/// RTT assumed until a receiver report measured one (libwebrtc's default).
pub const DEFAULT_RTT: Duration = Duration::from_millis(100);
/// Shortest interval between two GOP restarts of one viewer.
pub const GOP_RESTART_EVERY: Duration = Duration::from_secs(1);
/// Extra playout delay for a lossy viewer beyond its RTT: one more NACK
/// round at libwebrtc's default interval.
pub const RETRY_ALLOWANCE: Duration = Duration::from_millis(100);
/// Most extra playout delay for loss.
pub const MAX_LOSS_ALLOWANCE: Duration = Duration::from_millis(400);
/// Loss-free time after which the extra playout delay is dropped.
pub const LOSS_QUIET: Duration = Duration::from_secs(10);
/// A receiver report's fraction lost (1/256) from which a viewer counts as lossy.
const LOSSY_FRACTION: u8 = 2;

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
    /// The viewer's sequence number of the packet (checked against the
    /// mapping again when sent: a switch may come in between).
    pub seq: u16,
    pub packet: Bytes,
    /// Sent unasked ahead of a keyframe (`Core::guard_keyframe`).
    pub guard: bool,
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
    /// First resends that went out as [`SPARE_COPIES`] copies (isolated loss).
    pub doubled_resends: u64,
    /// Of `resent`, the packets sent again unasked just before a keyframe
    /// (see `Core::guard_keyframe`).
    pub keyframe_guard: u64,
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
    /// Retransmission budget left, in bytes.
    tokens: f64,
    pub last_restart: Option<Instant>,
    /// When the viewer last showed loss (a NACK, or a lossy report).
    last_loss: Option<Instant>,
    /// Extra playout delay for loss, in 10 ms units (see module docs).
    allowance_units: u16,
    pub queue: VecDeque<Resend>,
    /// When the hold on `queue` ends (resend.rs); None: not held.
    pub held_until: Option<Instant>,
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
            tokens: START_BUDGET,
            last_restart: None,
            last_loss: None,
            allowance_units: 0,
            queue: VecDeque::new(),
            held_until: None,
            stats: RepairStats::default(),
        }
    }

    pub fn rtt_or_default(&self) -> Duration {
        self.rtt.unwrap_or(DEFAULT_RTT)
    }

    /// The viewer showed loss at `now` (NACK, or `fraction_lost` in a
    /// report): it gets the loss allowance.
    pub fn on_loss(&mut self, now: Instant, fraction_lost: Option<u8>) {
        if fraction_lost.is_some_and(|f| f < LOSSY_FRACTION) {
            return;
        }
        self.last_loss = Some(now);
        let d = (self.rtt_or_default() * 2 + RETRY_ALLOWANCE).min(MAX_LOSS_ALLOWANCE);
        self.allowance_units = (d.as_millis() / 10) as u16;
    }

    /// Drops the loss allowance after a quiet period (housekeeping).
    pub fn on_tick(&mut self, now: Instant) {
        if self.last_loss.is_some_and(|t| now.saturating_duration_since(t) >= LOSS_QUIET) {
            self.last_loss = None;
            self.allowance_units = 0;
        }
    }

    /// Whether the viewer showed loss within [`LOSS_QUIET`] before `now`.
    pub fn is_lossy(&self, now: Instant) -> bool {
        self.last_loss.is_some_and(|t| now.saturating_duration_since(t) < LOSS_QUIET)
    }

    /// Stream sequence numbers resent to this viewer at or after `since`.
    pub fn resent_since(&self, since: Instant) -> impl Iterator<Item = u16> + '_ {
        self.resent.iter().filter(move |(_, _, at)| at.is_some_and(|t| t >= since)).map(|(seq, _, _)| *seq)
    }

    /// Extra playout-delay `min` for loss, in 10 ms units.
    pub fn allowance_units(&self) -> u16 {
        self.allowance_units
    }

    /// A receiver report measured `rtt`: smoothed (1/4 weight per sample).
    pub fn on_rtt(&mut self, rtt: Duration) {
        self.rtt = Some(match self.rtt {
            Some(old) => (old * 3 + rtt) / 4,
            None => rtt,
        });
    }

    /// The viewer was sent `bytes` of media: it earns budget.
    pub fn credit(&mut self, bytes: u64) {
        self.tokens += bytes as f64 * BUDGET_SHARE;
    }

    /// Whether the packet `seq` (stream numbering) of `len` bytes may be
    /// resent at `now` under the rules, and in how many copies; what is
    /// admitted is charged. The budget holds at most `burst` bytes.
    pub fn admit(&mut self, seq: u16, len: usize, now: Instant, burst: f64) -> Result<usize, Refusal> {
        self.admit_with(seq, len, now, burst, true, None)
    }

    /// [`Repair::admit`] for a packet named by a NACK that names few
    /// (isolated loss, not a burst): its first resend goes out as
    /// [`SPARE_COPIES`] copies while the budget left after them is at
    /// least `reserve` (`Stream::repair_reserve`).
    pub fn admit_isolated(&mut self, seq: u16, len: usize, now: Instant, burst: f64, reserve: f64) -> Result<usize, Refusal> {
        self.admit_with(seq, len, now, burst, true, Some(reserve))
    }

    /// [`Repair::admit`] for a resend nobody asked for (the keyframe
    /// guard): a copy of a packet whose resend is still in flight is what
    /// the guard is for, so the RTT rule does not apply (the others do).
    pub fn admit_unasked(&mut self, seq: u16, len: usize, now: Instant, burst: f64) -> Result<usize, Refusal> {
        self.admit_with(seq, len, now, burst, false, None)
    }

    /// `spare`: the reserve a second copy of a first resend must leave
    /// (None: one copy).
    fn admit_with(&mut self, seq: u16, len: usize, now: Instant, burst: f64, rtt_rule: bool, spare: Option<f64>) -> Result<usize, Refusal> {
        let slot = seq as usize % RESENT_SLOTS;
        let (count, last) = match self.resent[slot] {
            (s, c, at) if s == seq => (c, at),
            _ => (0, None),
        };
        if rtt_rule && last.is_some_and(|at| now.saturating_duration_since(at) < self.rtt_or_default() * 3 / 4) {
            return Err(Refusal::WithinRtt);
        }
        if count >= MAX_RESENDS {
            return Err(Refusal::MaxResends);
        }
        self.tokens = self.tokens.min(burst);
        if self.tokens < len as f64 {
            return Err(Refusal::Budget);
        }
        let want = match count {
            0 if spare.is_some_and(|reserve| self.tokens - (SPARE_COPIES * len) as f64 >= reserve) => SPARE_COPIES,
            0 => 1,
            _ => REPEAT_COPIES,
        };
        let copies = want.min((self.tokens / len.max(1) as f64) as usize);
        if count == 0 && copies > 1 {
            self.stats.doubled_resends += 1;
        }
        self.tokens -= (len * copies) as f64;
        self.resent[slot] = (seq, count + 1, Some(now));
        Ok(copies)
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
    use crate::testkit::ms;


    #[test]
    fn rtt_suppression_and_max_resends() {
        let t0 = Instant::now();
        let mut r = Repair::new(true, None);
        r.on_rtt(ms(40));
        r.credit(1 << 30);
        let admit = |r: &mut Repair, at: u64| r.admit(7, 1_000, t0 + ms(at), 1e9);
        assert_eq!(admit(&mut r, 0), Ok(1));
        assert_eq!(admit(&mut r, 29), Err(Refusal::WithinRtt), "asked again within (3/4 of) the RTT");
        assert_eq!(admit(&mut r, 30), Ok(2), "asked again: two copies");
        assert_eq!(admit(&mut r, 100), Ok(2));
        assert_eq!(admit(&mut r, 200), Err(Refusal::MaxResends), "three resends of one packet at most");
        // Another packet is independent.
        assert_eq!(r.admit(8, 1_000, t0 + ms(200), 1e9), Ok(1));
        // Without a measured RTT, the default applies.
        let mut d = Repair::new(true, None);
        assert_eq!(d.admit(1, 10, t0, 1e9), Ok(1));
        assert_eq!(d.admit(1, 10, t0 + ms(74), 1e9), Err(Refusal::WithinRtt));
        assert_eq!(d.admit(1, 10, t0 + ms(75), 1e9), Ok(2), "a browser's 100 ms retry, a little early, is answered");
    }

    #[test]
    fn an_isolated_first_resend_is_doubled_while_the_reserve_is_left() {
        let t0 = Instant::now();
        let mut r = Repair::new(true, None);
        r.credit(1 << 30);
        let (burst, reserve) = (10_000.0, 5_000.0);
        // 10,000 -> 8,000 -> 6,000: both at least the reserve.
        assert_eq!(r.admit_isolated(1, 1_000, t0, burst, reserve), Ok(2));
        assert_eq!(r.admit_isolated(2, 1_000, t0, burst, reserve), Ok(2));
        // Two copies would leave 4,000: one copy.
        assert_eq!(r.admit_isolated(3, 1_000, t0, burst, reserve), Ok(1));
        assert_eq!(r.stats.doubled_resends, 2);
        // A repeat is two copies whatever the reserve (budget left: 5,000).
        assert_eq!(r.admit_isolated(1, 1_000, t0 + ms(100), burst, reserve), Ok(2));
        assert_eq!(r.stats.doubled_resends, 2, "a repeat is not a doubled first resend");
        // Not isolated, or unasked: one copy.
        let mut r = Repair::new(true, None);
        r.credit(1 << 30);
        assert_eq!(r.admit(1, 1_000, t0, burst), Ok(1));
        assert_eq!(r.admit_unasked(2, 1_000, t0, burst), Ok(1));
        assert_eq!(r.stats.doubled_resends, 0);
    }

    #[test]
    fn budget_is_earned_by_what_the_viewer_is_sent_and_capped_at_the_burst() {
        let t0 = Instant::now();
        let mut r = Repair::new(true, None);
        let burst = 50_000.0;
        // Copies are charged, and fewer are sent when the budget is short.
        let mut c = Repair::new(true, None);
        c.credit(1 << 30);
        assert_eq!(c.admit(1, 1_000, t0, 1e9), Ok(1));
        c.tokens = 1_500.0;
        assert_eq!(c.admit(1, 1_000, t0 + ms(200), 1e9), Ok(1), "budget for one copy only");
        // The start budget: 16 packets of 1,000 bytes.
        let sent = (0..60u16).filter(|&s| r.admit(s, 1_000, t0, burst).is_ok()).count();
        assert_eq!(sent, 16);
        assert_eq!(r.admit(100, 1_000, t0, burst), Err(Refusal::Budget));
        // 20 kB sent to the viewer earn 6 kB.
        r.credit(20_000);
        let sent = (200..220u16).filter(|&s| r.admit(s, 1_000, t0, burst).is_ok()).count();
        assert_eq!(sent, 6);
        // A long GOP replay earns a lot, but only the burst can be spent at once.
        r.credit(10_000_000);
        let sent = (300..400u16).filter(|&s| r.admit(s, 1_000, t0, burst).is_ok()).count();
        assert_eq!(sent, 50);
    }

    #[test]
    fn loss_buys_playout_delay_until_a_quiet_period() {
        let t0 = Instant::now();
        let mut r = Repair::new(true, None);
        assert_eq!(r.allowance_units(), 0);
        r.on_loss(t0, Some(1)); // 0.4 %: not lossy
        assert_eq!(r.allowance_units(), 0);
        r.on_loss(t0, None); // a NACK
        assert_eq!(r.allowance_units(), 30, "2 x default RTT 100 ms + 100 ms");
        r.on_rtt(ms(40));
        r.on_loss(t0 + ms(500), Some(13));
        assert_eq!(r.allowance_units(), 18, "2 x RTT 40 ms + 100 ms");
        r.on_tick(t0 + ms(10_400));
        assert_eq!(r.allowance_units(), 18, "loss 9.9 s ago");
        r.on_tick(t0 + ms(10_500));
        assert_eq!(r.allowance_units(), 0);
        r.on_rtt(Duration::from_secs(2));
        r.on_rtt(Duration::from_secs(2));
        r.on_loss(t0, None);
        assert_eq!(r.allowance_units(), 40, "capped");
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
