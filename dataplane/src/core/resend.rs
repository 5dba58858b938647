//! Retransmissions on their way out (the rules that admit them are in
//! repair.rs). A viewer's answers to its NACKs are *held* for its next
//! delivery (`[webrtc] resend_hold_ms`, at most that long) and then leave
//! at the head of the same GSO message as the delivery's packets: one
//! `sendmmsg` message per viewer instead of two. At 1,000 viewers and 5 %
//! loss, answers sent on their own were one message in four; the send
//! path's cost of answering 5 % was × 1.11 of its loss-free cost that way
//! and is × 1.03 held (fan-out bench, docs/decisions/027). A hold that ends with no
//! delivery (a stalled stream, or a gap between frames longer than the
//! hold) sends them in a round of their own, as without a hold. A viewer
//! too far away for a held answer to beat its next request gets its
//! answers at once (`ResendLists::hold_for`).
//!
//! UDP GSO requires every segment of a message but the last to have one
//! size. An RTX packet is its original plus the 2-byte original sequence
//! number, so it is 2 bytes longer than the full-size packets of the frame
//! it joins; shorter packets are brought up to the message's segment size
//! with RTP padding (RFC 3550 §5.1, at most 255 bytes). Only packets whose
//! SRTP index is never protected again can be padded: RTX packets (each
//! numbered afresh) and, for a viewer with RTX, fresh video (its
//! retransmissions are RTX). A plain retransmission repeats its original
//! byte for byte (AES-GCM under a reused index must see the same
//! plaintext), so it joins only when it already has the segment's size.

use super::repair::{Resend, RETRY_ALLOWANCE};
use super::session::{Media, RTP_HEADER_MAX};
use super::stream::Kind;
use super::transmit::Work;
use crate::batch::GsoBatch;
use rts_common::ipc::ShardCounters;
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Room left for jitter between a held answer's arrival and the
/// receiver's next request for it.
pub const HOLD_MARGIN: Duration = Duration::from_millis(20);

/// Largest RTP padding (its count is one byte).
pub const MAX_PAD: usize = 255;

/// Largest original payload a retransmission carries.
const MAX_RESEND_PAYLOAD: usize = 1_500;

/// Viewers with retransmissions queued.
#[derive(Default)]
pub(super) struct ResendLists {
    /// Viewers whose queues go out in the current resend round
    /// (`Work::Resends`).
    pub list: Vec<usize>,
    /// Viewers whose queues wait for their next delivery, with the time the
    /// hold ends (in order: the hold is one duration).
    pub held: VecDeque<(Instant, usize)>,
    /// How long a queue may wait for a delivery (0: answers leave at once).
    pub hold: Duration,
}

impl ResendLists {
    /// Viewer `idx`, whose repair queue (in `media`) was just filled: holds
    /// the queue for the viewer's next delivery, or (no hold configured)
    /// puts the viewer on the resend round, queueing a round when none is
    /// under way (a round walks the list to its end, so a viewer added
    /// later is served).
    pub fn queue(&mut self, work: &mut VecDeque<Work>, media: &mut Media, idx: usize, now: Instant) {
        let hold = self.hold_for(media);
        if hold.is_zero() {
            self.send_now(work, idx, now);
        } else if media.repair.held_until.is_none() {
            let until = now + hold;
            media.repair.held_until = Some(until);
            self.held.push_back((until, idx));
        }
    }

    /// How long this viewer's answers may wait: the configured hold, but
    /// short enough that a held answer still arrives before the receiver
    /// asks again (libwebrtc asks again after [`RETRY_ALLOWANCE`] while it
    /// has no RTT of its own, as a receive-only peer): at most that less
    /// the viewer's RTT (the default until its reports measure one) and
    /// [`HOLD_MARGIN`]. A viewer 80 ms or more away gets its answers at
    /// once.
    pub fn hold_for(&self, media: &Media) -> Duration {
        self.hold.min(RETRY_ALLOWANCE.saturating_sub(media.repair.rtt_or_default() + HOLD_MARGIN))
    }

    /// Puts viewer `idx` on the resend round now.
    pub fn send_now(&mut self, work: &mut VecDeque<Work>, idx: usize, now: Instant) {
        if self.list.is_empty() {
            work.push_back(Work::Resends { now, next: 0 });
        }
        if !self.list.contains(&idx) {
            self.list.push(idx);
        }
    }

    /// When the next hold ends.
    pub fn next_release(&self) -> Option<Instant> {
        self.held.front().map(|&(at, _)| at)
    }

    /// Session `idx` is gone: it leaves both lists (blanked, not removed:
    /// a round may be half-way through the list).
    pub fn forget(&mut self, idx: usize) {
        for v in self.list.iter_mut().chain(self.held.iter_mut().map(|(_, v)| v)).filter(|v| **v == idx) {
            *v = usize::MAX;
        }
    }
}

impl super::Core {
    /// Holds that ended by `now` without a delivery: those viewers' queues
    /// go out in a resend round of their own.
    pub(super) fn release_held_resends(&mut self, now: Instant) {
        while let Some(&(at, idx)) = self.resend.held.front() {
            if at > now {
                break;
            }
            self.resend.held.pop_front();
            let Some(m) = self.sessions.get_mut(idx).and_then(|s| s.media.as_mut()) else { continue };
            // A later hold of the same viewer has its own entry.
            if m.repair.held_until.is_some_and(|until| until <= now) {
                m.repair.held_until = None;
                if !m.repair.queue.is_empty() {
                    self.resend.send_now(&mut self.work, idx, now);
                }
            }
        }
    }
}

/// Retransmissions written by one call, for the shard's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResentTally {
    pub packets: u64,
    pub bytes: u64,
    /// Of `packets`, sent unasked ahead of a keyframe.
    pub guard: u64,
}

impl ResentTally {
    pub fn add(&mut self, other: ResentTally) {
        self.packets += other.packets;
        self.bytes += other.bytes;
        self.guard += other.guard;
    }

    /// Adds these to the shard's counters.
    pub(super) fn credit_to(self, counters: &mut ShardCounters) {
        counters.resent += self.packets;
        counters.resent_bytes += self.bytes;
        counters.keyframe_guard += self.guard;
    }
}

/// The batch has no room left: send it and call again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchFull;

/// How one retransmission went.
enum Resent {
    Sent(usize),
    Skipped,
    Full,
}

/// Whether this viewer's packets of `kind` are resent as RTX (video, when
/// it negotiated RTX). Then both its fresh packets of that kind and their
/// RTX copies may carry RTP padding: no SRTP index is protected twice (see
/// the module docs).
pub fn resent_as_rtx(media: &Media, kind: Kind) -> bool {
    kind == Kind::Video && media.repair.rtx.is_some()
}

/// The protected size of retransmission `r` to this viewer, unpadded.
fn resend_len(media: &Media, r: &Resend) -> usize {
    let osn = if resent_as_rtx(media, r.kind) { 2 } else { 0 };
    let t = if r.kind == Kind::Video { &media.video } else { &media.audio };
    t.header_len() + r.packet.len().saturating_sub(12) + osn + media.profile.rtp_overhead()
}

/// Writes the viewer's queued retransmissions into `batch` as the head of
/// a message that a delivery's first packet (of protected size
/// `first_len`) will continue; returns that message's segment size (the
/// delivery pads its packets up to it where it can), or None when no such
/// message was opened. Retransmissions that cannot take the segment's size go
/// first, in a message of their own. `Err`: the batch filled (what did not
/// fit stays queued): send it and call again.
#[allow(clippy::too_many_arguments)]
pub fn resends_ahead(
    media: &mut Media,
    peer: SocketAddr,
    local: Option<IpAddr>,
    first_len: usize,
    playout_min: u16,
    batch: &mut GsoBatch,
    tally: &mut ResentTally,
) -> Result<Option<usize>, BatchFull> {
    media.repair.held_until = None;
    if media.repair.queue.is_empty() {
        return Ok(None);
    }
    let segment = media.repair.queue.iter().map(|r| resend_len(media, r)).fold(first_len, usize::max);
    let joins = |m: &Media, r: &Resend| {
        let short = segment - resend_len(m, r);
        short == 0 || (short <= MAX_PAD && resent_as_rtx(m, r.kind))
    };
    // Those that cannot join go first (the queue is rotated, in order).
    let mut alone = false;
    for _ in 0..media.repair.queue.len() {
        let Some(r) = media.repair.queue.pop_front() else { break };
        if joins(media, &r) {
            media.repair.queue.push_back(r);
            continue;
        }
        alone = true;
        if !write_one(media, r, 0, playout_min, peer, local, batch, tally) {
            return Err(BatchFull);
        }
    }
    if alone {
        batch.end_message(peer, local);
    }
    let joined = !media.repair.queue.is_empty();
    while let Some(r) = media.repair.queue.pop_front() {
        if !write_one(media, r, segment, playout_min, peer, local, batch, tally) {
            return Err(BatchFull);
        }
    }
    Ok(joined.then_some(segment))
}

/// Writes the viewer's queued retransmissions into `batch` as messages of
/// their own (a resend round, or a hold that ended without a delivery);
/// false when the batch filled first (the rest stays queued).
pub fn send_queue(media: &mut Media, peer: SocketAddr, local: Option<IpAddr>, playout_min: u16, batch: &mut GsoBatch, tally: &mut ResentTally) -> bool {
    media.repair.held_until = None;
    while let Some(r) = media.repair.queue.pop_front() {
        if !write_one(media, r, 0, playout_min, peer, local, batch, tally) {
            return false;
        }
    }
    batch.end_message(peer, local);
    true
}

/// Writes `r` (padded up to `pad_to` when shorter) and counts it; false
/// when the batch is full (`r` goes back to the front of the queue).
#[allow(clippy::too_many_arguments)]
fn write_one(
    media: &mut Media,
    r: Resend,
    pad_to: usize,
    playout_min: u16,
    peer: SocketAddr,
    local: Option<IpAddr>,
    batch: &mut GsoBatch,
    tally: &mut ResentTally,
) -> bool {
    match resend(media, &r, pad_to, playout_min, peer, local, batch) {
        Resent::Sent(n) => {
            count(media, &r, n, tally);
            true
        }
        Resent::Skipped => true,
        Resent::Full => {
            media.repair.queue.push_front(r);
            false
        }
    }
}

/// Counts a retransmission sent.
fn count(media: &mut Media, r: &Resend, n: usize, tally: &mut ResentTally) {
    media.repair.stats.resent += 1;
    media.repair.stats.resent_bytes += n as u64;
    media.bytes_out += n as u64;
    tally.packets += 1;
    tally.bytes += n as u64;
    if r.guard {
        media.repair.stats.keyframe_guard += 1;
        tally.guard += 1;
    }
}

/// Protects one retransmission into the batch: as RTX (own SSRC and
/// sequence number, OSN first in the payload) when the viewer has RTX,
/// else the original packet again, byte for byte. An RTX packet shorter
/// than `pad_to` is padded up to it (by at most [`MAX_PAD`]).
fn resend(media: &mut Media, r: &Resend, pad_to: usize, playout_min: u16, peer: SocketAddr, local: Option<IpAddr>, batch: &mut GsoBatch) -> Resent {
    let p = &r.packet;
    if p.len() < 12 || p.len() - 12 > MAX_RESEND_PAYLOAD {
        return Resent::Skipped;
    }
    let (src, payload) = (&p[..12], &p[12..]);
    let overhead = media.profile.rtp_overhead();
    let mut header = [0u8; RTP_HEADER_MAX];
    let rtx = media.repair.rtx.filter(|_| resent_as_rtx(media, r.kind));
    let Some(hlen) = media.track(r.kind).resend_header(r.seq, src, rtx.map(|x| (x.pt, x.ssrc)), &mut header, playout_min) else {
        media.repair.stats.stale += 1;
        return Resent::Skipped;
    };
    // RTX: the original sequence number leads the payload.
    let osn = [header[2], header[3]];
    let lead: &[u8] = match rtx {
        Some(rtx) => {
            header[2..4].copy_from_slice(&rtx.seq.to_be_bytes());
            &osn
        }
        None => &[],
    };
    let unpadded = hlen + lead.len() + payload.len() + overhead;
    let pad = match pad_to.checked_sub(unpadded) {
        Some(short) if rtx.is_some() && (1..=MAX_PAD).contains(&short) => short,
        _ => 0,
    };
    if pad > 0 {
        header[0] |= 0x20;
    }
    let len = unpadded + pad;
    if !batch.fits(len) {
        batch.end_message(peer, local);
        if !batch.fits(len) {
            return Resent::Full;
        }
    }
    match media.tx.protect_rtp_padded(&header[..hlen], lead, payload, pad as u8, batch.spare(len)) {
        Ok(n) => {
            batch.commit(n);
            if let Some(x) = media.repair.rtx.as_mut().filter(|_| rtx.is_some()) {
                x.seq = x.seq.wrapping_add(1);
            }
            Resent::Sent(n)
        }
        Err(_) => Resent::Skipped,
    }
}
