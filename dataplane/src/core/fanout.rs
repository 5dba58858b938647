//! The per-viewer hot path: rewrite the shared packet's header for this
//! viewer, SRTP-protect it into the GSO batch. This is the only work done
//! per viewer per packet (DESIGN.md §2); it is public so the benchmarks in
//! `benches/` measure exactly the shipped code.
//!
//! A [`FanOut`] is one delivery (a frame, or one or two Opus packets) on
//! its way to every viewer of a stream. It runs inside `Core::poll_transmit`
//! until the batch is full or its turn is over ([`TURN_PACKETS`]), and
//! resumes where it stopped (viewer and packet) once the shell has sent the
//! batch or the other streams' deliveries have had their turn.

use super::resend::{resends_ahead, resent_as_rtx, BatchFull, ResentTally, MAX_PAD};
use super::session::{Media, Session, RTP_HEADER_MAX};
use super::stream::{Kind, SHARED_AUDIO_PT};
use super::streams::StreamId;
use crate::batch::GsoBatch;
use crate::lipsync::PlayoutHint;
use bytes::Bytes;
use rts_common::histogram::{micros_since, Histogram, FIRST_FRAME_BOUNDS_US};
use slab::Slab;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

/// Largest RED payload patched on the stack for a viewer whose Opus payload
/// type differs from the shared one.
const MAX_AUDIO_PAYLOAD: usize = 1_500;

/// How far one [`send_items`] call got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// Packets taken from the front of the input (sent, or skipped because
    /// the viewer did not negotiate the track or the packet was malformed).
    pub packets: usize,
    /// Bytes of the input protected into the batch.
    pub bytes: u64,
    /// The batch filled up before the input was consumed: send it, then
    /// call again with the rest.
    pub full: bool,
    /// This call sent the viewer's first video: the caller records its
    /// first-frame time (`Media::started_at` to now).
    pub first_video: bool,
    /// The viewer's queued retransmissions that went out ahead of the
    /// input, in its first message (resend.rs).
    pub resent: ResentTally,
}

/// Protects `packets` of `kind` for one viewer into `batch` as GSO messages.
/// Each shared packet is copied once into the batch (SRTP output differs
/// per viewer) with this viewer's header rewritten; `hint` is the stream's
/// playout-delay hint, for viewers whose video carries the extension.
/// `red`, for audio, holds the same packets as RED (one per packet), sent
/// instead to a viewer that negotiated it. The viewer's queued
/// retransmissions go first, in the same message (resend.rs). Stops early
/// (`full`) when the batch has no room; the messages it finished are
/// closed, so the caller can send the batch and resume.
#[allow(clippy::too_many_arguments)]
pub fn send_items(
    media: &mut Media,
    peer: SocketAddr,
    local: Option<IpAddr>,
    kind: Kind,
    packets: &[Bytes],
    red: Option<&[Bytes]>,
    hint: PlayoutHint,
    batch: &mut GsoBatch,
    now: Instant,
) -> Sent {
    let overhead = media.profile.rtp_overhead();
    let playout_min = hint.min_units(media.started_at) + media.repair.allowance_units();
    let red = red.filter(|r| r.len() == packets.len() && kind == Kind::Audio && media.audio.red_pt.is_some());
    // A viewer numbering Opus differently gets the RED block headers patched.
    let red_block_pt = media.audio.pt.filter(|&pt| red.is_some() && pt != SHARED_AUDIO_PT);
    let mut sent = Sent { packets: 0, bytes: 0, full: false, first_video: false, resent: ResentTally::default() };
    // The segment size of the message the retransmissions opened: packets
    // shorter than it are padded up to it while that message is open.
    let mut pad_to = 0;
    if !media.repair.queue.is_empty() && media.track(kind).negotiated(red.is_some()) {
        let first = red.map_or(packets.first(), |r| r.first()).map_or(0, |p| p.len());
        let first_len = if first >= 12 { media.track(kind).header_len() + first - 12 + overhead } else { 0 };
        match resends_ahead(media, peer, local, first_len, playout_min, batch, &mut sent.resent) {
            Ok(segment) => pad_to = segment.unwrap_or(0),
            Err(BatchFull) => {
                sent.full = true;
                return sent;
            }
        }
    }
    let may_pad = resent_as_rtx(media, kind);
    for (i, p) in packets.iter().enumerate() {
        let p = red.map_or(p, |r| &r[i]);
        if p.len() < 12 {
            sent.packets += 1;
            continue;
        }
        let mut header = [0u8; RTP_HEADER_MAX];
        let Some(hlen) = media.track(kind).rewrite(&p[..12], &mut header, playout_min, red.is_some(), now) else {
            sent.packets = packets.len(); // track not negotiated: nothing of it goes out
            break;
        };
        let unpadded = hlen + p.len() - 12 + overhead;
        // Padded only inside the retransmissions' message, and never the
        // delivery's last packet (a message may end with a shorter one).
        let mut pad = match pad_to.checked_sub(unpadded) {
            Some(short) if may_pad && i + 1 < packets.len() && short <= MAX_PAD => short,
            _ => 0,
        };
        if !batch.fits(unpadded + pad) {
            batch.end_message(peer, local);
            pad_to = 0;
            pad = 0;
            if !batch.fits(unpadded) {
                // The header rewrite advanced the track's state for a packet
                // that is not sent yet: it is rewritten again on resume with
                // the same result (same source header), so nothing is lost.
                sent.full = true;
                break;
            }
        }
        if pad > 0 {
            header[0] |= 0x20;
        }
        let len = unpadded + pad;
        let out = batch.spare(len);
        let protected = match red_block_pt {
            Some(pt) => {
                let mut payload = [0u8; MAX_AUDIO_PAYLOAD];
                let body = &p[12..];
                match payload.get_mut(..body.len()) {
                    Some(dst) => {
                        dst.copy_from_slice(body);
                        let _ = rts_rtp::red::set_block_pt(dst, pt);
                        media.tx.protect_rtp(&header[..hlen], dst, out)
                    }
                    None => Err(rts_srtp::Error::Truncated),
                }
            }
            None if pad == 0 => media.tx.protect_rtp(&header[..hlen], &p[12..], out),
            None => media.tx.protect_rtp_padded(&header[..hlen], &[], &p[12..], pad as u8, out),
        };
        if let Ok(n) = protected {
            batch.commit(n);
            sent.bytes += n as u64;
            media.packets_out += 1;
        }
        if len != pad_to {
            pad_to = 0; // a shorter packet ended the message
        }
        sent.packets += 1;
    }
    batch.end_message(peer, local);
    // One test per call (a frame), not per packet.
    if kind == Kind::Video && sent.bytes > 0 && media.awaiting_first_video {
        media.awaiting_first_video = false;
        sent.first_video = true;
    }
    media.bytes_out += sent.bytes;
    media.repair.credit(sent.bytes);
    sent
}

/// Packets one delivery sends before a delivery of another stream queued
/// behind it gets a turn (`Core::fill_batch`): a keyframe to 2,000 viewers
/// is ~70,000 packets and tens of ms on one core, and other streams'
/// frames should not wait for all of it. ~0.5 ms of sending.
pub const TURN_PACKETS: usize = 512;

/// How far one [`FanOut::run`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Every viewer has the packets.
    Done,
    /// The batch is full: send it and run again.
    BatchFull,
    /// [`TURN_PACKETS`] went out since the turn began: another stream's
    /// delivery may go first (run again to go on).
    TurnOver,
}

/// One delivery of a stream's new live packets to all its local viewers,
/// in progress.
pub struct FanOut {
    pub stream: StreamId,
    pub kind: Kind,
    pub packets: Arc<[Bytes]>,
    /// Video: the frame is a keyframe. A viewer with nothing of its stream
    /// yet and no replay queued (no GOP cache, `gop_cache = false`) starts
    /// on a keyframe: frames before it could not be decoded.
    pub keyframe: bool,
    /// Audio: the same packets as RED, for viewers that negotiated it.
    pub red: Option<Arc<[Bytes]>>,
    pub hint: PlayoutHint,
    /// When the source frame reached the shard (RTMP frames only): its
    /// server-added latency is measured when the delivery completes.
    pub received: Option<Instant>,
    /// The stream's viewers when the delivery started. The shell handles
    /// input between batches, so the stream's own list may change meanwhile
    /// (a viewer leaves, joins or switches): walking this snapshot keeps
    /// every viewer's place, and `joined_before` skips a session that
    /// joined since (a reused slab index, or a switch back to this stream:
    /// its GOP-cache replay already holds this frame).
    viewers: Arc<Vec<usize>>,
    joined_before: u64,
    /// Audio of a stream to the sessions that left it and still get its
    /// audio (`Media::audio_tail`), not to its viewers.
    tail: bool,
    /// Where in the viewer list this delivery starts: a different place
    /// each time, so no viewer is always served last (at 2,000 viewers a
    /// keyframe takes tens of ms to go out).
    start: usize,
    /// Viewers served so far and, for the next one, the next packet.
    viewer: usize,
    packet: usize,
    /// Packets sent in the current turn.
    turn: usize,
    pub bytes: u64,
    /// Retransmissions that went out ahead of this delivery's packets.
    pub resent: ResentTally,
}

impl FanOut {
    /// A delivery to `viewers` starting at viewer `start` (modulo the
    /// list's length); sessions that joined the stream as join number
    /// `joined_before` or later are not part of it.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        stream: StreamId,
        kind: Kind,
        packets: Arc<[Bytes]>,
        red: Option<Arc<[Bytes]>>,
        hint: PlayoutHint,
        received: Option<Instant>,
        viewers: Arc<Vec<usize>>,
        joined_before: u64,
        start: usize,
    ) -> FanOut {
        FanOut { stream, kind, packets, keyframe: false, red, hint, received, viewers, joined_before, tail: false, start, viewer: 0, packet: 0, turn: 0, bytes: 0, resent: ResentTally::default() }
    }

    /// Audio of stream `stream` to the sessions in `tail` that left it and
    /// still get its audio until their new stream's comes.
    pub fn audio_tail(stream: StreamId, packets: Arc<[Bytes]>, hint: PlayoutHint, tail: Arc<Vec<usize>>) -> FanOut {
        let mut f = FanOut::new(stream, Kind::Audio, packets, None, hint, None, tail, u64::MAX, 0);
        f.tail = true;
        f
    }

    /// Continues the delivery until every viewer has it, the batch is
    /// full, or its turn is over. A viewer still replaying its GOP cache
    /// gets new video queued behind the cache, in order; audio is never
    /// replayed and goes out live at once, so the receiver's audio jitter
    /// buffer does not start with a backlog. A viewer's first video is
    /// timed at `now` into `first_frames` (the stream's WebRTC histogram:
    /// a fixed array, nothing allocated).
    pub fn run(&mut self, sessions: &mut Slab<Session>, batch: &mut GsoBatch, now: Instant, mut first_frames: Option<&mut Histogram>) -> Step {
        let n = self.viewers.len();
        while self.viewer < n {
            if self.turn >= TURN_PACKETS {
                self.turn = 0;
                return Step::TurnOver;
            }
            let v = self.viewers[(self.start + self.viewer) % n];
            let ours = |s: &Session| match self.tail {
                false => s.stream == Some(self.stream) && s.joined < self.joined_before,
                true => s.media.as_ref().and_then(|m| m.audio_tail).is_some_and(|(t, _)| t == self.stream),
            };
            let Some(sess) = sessions.get_mut(v).filter(|s| ours(s)) else {
                self.next_viewer();
                continue;
            };
            let (Some(peer), local) = (sess.peer, sess.local_ip) else {
                self.next_viewer();
                continue;
            };
            let Some(media) = sess.media.as_mut() else {
                self.next_viewer();
                continue;
            };
            if self.kind == Kind::Video && !media.pending.is_empty() {
                media.pending.extend(self.packets.iter().cloned());
                self.next_viewer();
                continue;
            }
            if self.kind == Kind::Video && !self.keyframe && media.video.awaiting_source() {
                self.next_viewer();
                continue;
            }
            let red = self.red.as_deref().map(|r| &r[self.packet..]);
            let sent = send_items(media, peer, local, self.kind, &self.packets[self.packet..], red, self.hint, batch, now);
            self.bytes += sent.bytes;
            self.resent.add(sent.resent);
            if let (true, Some(h)) = (sent.first_video, first_frames.as_deref_mut()) {
                h.record(&FIRST_FRAME_BOUNDS_US, micros_since(media.started_at, now));
            }
            self.packet += sent.packets;
            self.turn += sent.packets;
            if sent.full {
                return Step::BatchFull;
            }
            self.next_viewer();
        }
        Step::Done
    }

    /// Marks a video delivery as a keyframe (see [`FanOut::keyframe`]).
    pub fn with_keyframe(mut self, keyframe: bool) -> FanOut {
        self.keyframe = keyframe;
        self
    }

    fn next_viewer(&mut self) {
        self.viewer += 1;
        self.packet = 0;
    }
}
