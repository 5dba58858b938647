//! One WebRTC viewer as the shard sees it: ICE-lite credentials, the
//! selected 5-tuple, and (once DTLS finished in control) the SRTP contexts
//! and per-track header rewriting.

use super::stream::Kind;
use super::streams::StreamId;
use bytes::Bytes;
use rts_srtp::{Profile, SrtpContext};
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

pub struct Session {
    pub id: u64,
    pub local_ufrag: String,
    pub local_pwd: String,
    pub remote_ufrag: String,
    /// The stream it asked for (or switched to): "app", "stream".
    pub app: String,
    pub stream_name: String,
    /// That stream, once the session plays.
    pub stream: Option<StreamId>,
    /// SSRCs announced in this viewer's SDP answer (those of the stream it
    /// first asked for); kept across channel switches.
    pub video_ssrc: u32,
    pub audio_ssrc: u32,
    /// Selected candidate pair: the viewer's address and our local address
    /// the checks arrived at (replies leave from it).
    pub peer: Option<SocketAddr>,
    pub local_ip: Option<IpAddr>,
    pub media: Option<Media>,
    /// Where control said the stream is published (replicate from there).
    pub home_hint: Option<usize>,
    pub created: Instant,
    pub last_consent: Instant,
    /// Its join number (`Core::joins`) when it last joined a stream's
    /// viewers: deliveries that started before do not include it.
    pub joined: u64,
    /// UDP payload bytes from and to the viewer besides media (STUN, DTLS,
    /// RTCP in; STUN and DTLS out): with `Media::bytes_out`, its traffic.
    pub udp_in: u64,
    pub udp_out: u64,
}

impl Session {
    /// UDP payload bytes received from and sent to the viewer so far.
    pub fn traffic(&self) -> (u64, u64) {
        (self.udp_in, self.udp_out + self.media.as_ref().map_or(0, |m| m.bytes_out))
    }
}

/// Present once the session plays: per-viewer SRTP state, negotiated PTs
/// and the catch-up queue (GOP cache replay, paced; video only: audio is
/// never replayed, see `fanout::fan_out`).
pub struct Media {
    pub tx: SrtpContext,
    pub rx: SrtpContext,
    pub profile: Profile,
    pub video: TrackOut,
    pub audio: TrackOut,
    pub pending: VecDeque<Bytes>,
    /// SRTP/SRTCP bytes sent: media, retransmissions, sender reports.
    pub bytes_out: u64,
    pub packets_out: u64,
    pub started_at: Instant,
    /// No video has gone to this viewer yet: the first that does gives its
    /// first-frame time (from `started_at`, `rts_first_frame_seconds`).
    pub awaiting_first_video: bool,
    /// When this viewer's next RTCP sender reports are due.
    pub next_sr: Instant,
    /// Until then sender reports go out at the young interval (a start or
    /// a switch: the receiver's lip sync learns the new mapping).
    pub sr_young_until: Instant,
    /// Loss repair: RTX, RTT, budget, resend queue, counters.
    pub repair: super::repair::Repair,
    /// After a switch to a stream whose audio was not flowing yet (a
    /// transcoder starting): the stream left, whose audio still goes to
    /// this viewer until the new stream's first audio packet, and until
    /// when at most. The audio track is re-based then, not at the switch
    /// (`Core::end_audio_tail`), so the viewer's audio goes on without a
    /// gap instead of concealing one.
    pub audio_tail: Option<(super::streams::StreamId, Instant)>,
}

impl Media {
    /// Queues a GOP replay (`gop`: cached video packets, keyframe first)
    /// for this viewer; its time span is squeezed (see `Squeeze`).
    pub fn queue_replay(&mut self, gop: &[Bytes]) {
        if let Some(edge) = gop.last().filter(|p| p.len() >= 12).map(|p| u32::from_be_bytes([p[4], p[5], p[6], p[7]])) {
            self.video.replay_from(edge);
        }
        self.pending.extend(gop.iter().cloned());
    }

    pub fn track(&mut self, kind: Kind) -> &mut TrackOut {
        match kind {
            Kind::Video => &mut self.video,
            Kind::Audio => &mut self.audio,
        }
    }
}

/// How one outgoing track's RTP header is rewritten for this viewer. All
/// viewers of a stream share the packet bytes; this per-viewer state makes
/// each viewer's sequence and timestamps continuous across channel switches
/// (a different stream's sequence space) at the cost of a 12-byte rewrite
/// that the SRTP copy needs anyway. It also maps a sequence number the
/// viewer reports lost back to the shared packet (NACK), within the current
/// source only.
pub struct TrackOut {
    pub pt: Option<u8>,
    pub ssrc: u32,
    /// Payload type of RED (RFC 2198) when this viewer negotiated it (audio).
    pub red_pt: Option<u8>,
    /// Header extension id of the playout-delay extension, when this viewer
    /// negotiated it (video only): then every packet carries it, so all of
    /// a frame's packets stay one size for GSO.
    playout_delay_id: Option<u8>,
    /// RTP time units to advance on a re-base (one frame).
    step: u32,
    seq_offset: u16,
    ts_offset: u32,
    last_seq: u16,
    last_ts: u32,
    /// This viewer's first sequence number from the current source: older
    /// ones belong to a previous stream (before a switch).
    epoch_start: u16,
    started: bool,
    rebase: bool,
    /// Source timestamp of the newest packet of a GOP replay queued for this
    /// viewer (`replay_from`): the start (or re-base) it is for squeezes the
    /// replay's time span into one frame interval (see [`Squeeze`]).
    live_edge: Option<u32>,
    /// For the pending re-base of a track without a replay (audio): the
    /// offset that keeps the timeline going at the wall clock's pace across
    /// a switch (`TrackOut::rebase_with`).
    rebase_offset: Option<u32>,
    /// RTP units per millisecond (90 video, 48 audio).
    rate: u32,
    /// This viewer's RTP time of a packet sent on time at an instant: its
    /// timeline against the shard's clock, which every switch keeps (see
    /// `rebase_with`). None until the first switch.
    anchor: Option<(Instant, u32)>,
    /// The pending re-base's new stream had no send clock yet (a replica
    /// not fed yet): its first packet is taken as on time (`rewrite`).
    unclocked: bool,
    squeeze: Option<Squeeze>,
    /// The playout-delay `min` this viewer's packets carried, as (first
    /// sequence number, value) changes, newest at `playout_logged - 1`
    /// (mod the ring): a retransmission on the media SSRC repeats its SRTP
    /// index, so it must repeat the original bytes, value included.
    playout_log: [(u16, u16); PLAYOUT_LOG],
    playout_logged: usize,
}

/// A GOP replay's timestamps squeezed: source times `from..to` (the cached
/// keyframe up to the newest cached frame) go out as `base..base + span`,
/// linearly, and `to` on as `ts + ts_offset` (= `base + span` at `to`);
/// `span` is one frame for a new viewer, and after a switch reaches where
/// the two streams' clocks put the live edge. A receiver plays frames at
/// their RTP time, so a replay sent with its real spacing would put the
/// viewer a GOP's age (up to the GOP length) behind live for good, and
/// after a switch it would first play out whatever the previous stream
/// left in its buffer: squeezed, the replay is decoded at once and the
/// viewer stays at live, with audio and video on one timeline. A pure
/// function of the source time, so a retransmission repeats the timestamp
/// it first went out with.
#[derive(Debug, Clone, Copy)]
struct Squeeze {
    from: u32,
    to: u32,
    base: u32,
    /// Out times the replay spans: one frame for a new viewer; after a
    /// switch, up to where the clocks put the live edge.
    span: u32,
}

/// Where the clocks may put a switch's live edge, in RTP units after the
/// last frame sent: the replay before it needs one distinct time per
/// frame (at least 1/1000 of its source span, so frames 1,000 units or
/// more apart stay distinct), and clocks that put the edge further than
/// this after the last frame sent (or before it) are a stale clock anchor
/// (a publisher that stalled), not time that passed.
const EDGE_MAX_AHEAD: u32 = 18_000; // 200 ms at 90 kHz

/// How fast a viewer's timeline anchor follows the stream it watches when
/// their clocks part (ms per second since the anchor was set): a
/// publisher's clock against the shard's, 1,000 ppm, ten times what
/// encoders' crystals are specified to. Ten switches 2 s apart move the
/// anchor by at most 20 ms, whatever each clock reading was off by.
pub const ANCHOR_DRIFT_MS_PER_S: f64 = 1.0;
/// Beyond this (ms) the stream's clock is taken over at once: its timeline
/// moved (a stalled publisher whose timestamps went on where they were),
/// and the receiver re-fits its mapping to it after a few seconds anyway.
pub const ANCHOR_RESYNC_MS: f64 = 150.0;

/// A squeeze is forgotten this far (RTP units, 10 s of video) past its end,
/// long after any retransmission of the replay, before timestamps wrap back
/// into its window.
const SQUEEZE_FORGET: u32 = 900_000;

/// Playout-delay changes remembered per viewer. The value changes a few
/// times in a viewer's first 16 s (lip-sync start target fading, 10 ms
/// steps) and when loss starts or ends, so 16 changes cover the history.
const PLAYOUT_LOG: usize = 16;
/// A log entry is repeated after this many packets without a change, so
/// sequence-number distances within the log never wrap.
const PLAYOUT_LOG_REFRESH: u16 = 16_384;

impl TrackOut {
    pub fn new(pt: Option<u8>, ssrc: u32, kind: Kind) -> TrackOut {
        let (step, rate) = match kind {
            Kind::Video => (3000, 90), // 33 ms at 90 kHz
            Kind::Audio => (960, 48),  // 20 ms at 48 kHz
        };
        TrackOut {
            pt,
            ssrc,
            red_pt: None,
            playout_delay_id: None,
            step,
            seq_offset: 0,
            ts_offset: 0,
            last_seq: 0,
            last_ts: 0,
            epoch_start: 0,
            started: false,
            rebase: false,
            live_edge: None,
            rebase_offset: None,
            rate,
            anchor: None,
            unclocked: false,
            squeeze: None,
            playout_log: [(0, 0); PLAYOUT_LOG],
            playout_logged: 0,
        }
    }

    /// Video packets carry the playout-delay extension under header
    /// extension `id` (None: not negotiated).
    pub fn with_playout_delay(mut self, id: Option<u8>) -> TrackOut {
        self.playout_delay_id = id;
        self
    }

    /// Audio goes out as RED with payload type `pt` (None: plain Opus).
    pub fn with_red(mut self, pt: Option<u8>) -> TrackOut {
        self.red_pt = pt.filter(|_| self.pt.is_some());
        self
    }

    pub fn has_playout_delay(&self) -> bool {
        self.playout_delay_id.is_some()
    }

    /// The next packet comes from another sequence space (channel switch).
    pub fn rebase_next(&mut self) {
        self.rebase = true;
        self.live_edge = None;
        self.rebase_offset = None;
        self.unclocked = false;
    }

    /// For a pending re-base (a switch) at `now`: `old_now`/`new_now` are
    /// the source times the old and the new stream send now if on time
    /// (`Stream::send_rtp_at`; None: that stream has no clock). The new
    /// stream's on-time packets go where this viewer's timeline has them
    /// now, so the receiver's RTP-to-arrival mapping stays where it was. A
    /// re-base without a replay then goes on with the time that passed, not
    /// one frame: audio of the new stream that arrives after a gap (its
    /// transcoder starting, say) is on time for the receiver's jitter
    /// buffer instead of late by the gap, which would grow that buffer with
    /// every switch. Where that would not move time forward, one frame
    /// after the last. A replay's live edge goes where it puts it (see
    /// `rewrite`).
    ///
    /// The viewer's timeline is its anchor (fixed at its first switch from
    /// the stream it joined), not the old stream's clock read again at each
    /// switch: libwebrtc fits its RTP-to-arrival mapping over the whole
    /// session and barely moves it later, while each clock reading is off
    /// by the old stream's recent lateness, and re-reading it at every
    /// switch summed those errors: Chrome's video wait grew from 30 to
    /// 280 ms over ten switches between a passthrough and a relayed,
    /// re-encoded room (issue 18). The anchor follows the old stream's
    /// clock only at a publisher clock's drift rate
    /// ([`ANCHOR_DRIFT_MS_PER_S`]), or all the way when the two part by
    /// more than [`ANCHOR_RESYNC_MS`] (the stream stalled and its timeline
    /// fell behind: the receiver re-fits its mapping to that).
    pub fn rebase_with(&mut self, now: Instant, old_now: Option<u32>, new_now: Option<u32>) {
        if !(self.rebase && self.started) {
            return;
        }
        let rate = f64::from(self.rate);
        let observed = old_now.map(|t| self.map_ts(t));
        let predicted = self.timeline_at(now).zip(self.anchor.map(|(at, _)| at));
        let viewer_now = match (predicted, observed) {
            (Some((p, at)), Some(o)) => {
                let apart_ms = f64::from(o.wrapping_sub(p) as i32) / rate;
                let allowed_ms = now.saturating_duration_since(at).as_secs_f64() * ANCHOR_DRIFT_MS_PER_S;
                if apart_ms.abs() > ANCHOR_RESYNC_MS {
                    o
                } else {
                    p.wrapping_add((apart_ms.clamp(-allowed_ms, allowed_ms) * rate).round() as i32 as u32)
                }
            }
            (Some((p, _)), None) => p,
            (None, Some(o)) => o,
            (None, None) => return,
        };
        self.anchor = Some((now, viewer_now));
        match new_now {
            Some(new) => {
                self.rebase_offset = Some(viewer_now.wrapping_sub(new));
                self.unclocked = false;
            }
            None => self.unclocked = true,
        }
    }

    /// This viewer's RTP time of a packet sent on time at `now`, by its
    /// anchor (None before its first switch).
    fn timeline_at(&self, now: Instant) -> Option<u32> {
        let (at, ts) = self.anchor?;
        let us = now.saturating_duration_since(at).as_micros() as u64;
        Some(ts.wrapping_add((us * u64::from(self.rate) / 1000) as u32))
    }

    /// A GOP replay whose newest packet has source timestamp `live_edge` is
    /// queued: the start or re-base it leads squeezes its time span.
    pub fn replay_from(&mut self, live_edge: u32) {
        if !self.started || self.rebase {
            self.live_edge = Some(live_edge);
        }
    }

    /// This viewer's RTP time for a shared-stream RTP time (for SRs).
    pub fn map_ts(&self, ts: u32) -> u32 {
        ts.wrapping_add(self.ts_offset)
    }

    pub fn started(&self) -> bool {
        self.started
    }

    /// Nothing of the current source has gone out yet: a new viewer, or one
    /// that switched and waits for the new stream's GOP.
    pub fn awaiting_source(&self) -> bool {
        !self.started || self.rebase
    }

    /// The shared-stream sequence number of the packet this viewer got as
    /// `seq`, if it came from the current source and was sent: None for
    /// packets from before a switch (another stream's numbers), not sent
    /// yet, or while a switch is pending.
    pub fn source_seq(&self, seq: u16) -> Option<u16> {
        if !self.started || self.rebase {
            return None;
        }
        let from_start = seq.wrapping_sub(self.epoch_start);
        let sent = self.last_seq.wrapping_sub(self.epoch_start);
        (from_start <= sent).then(|| seq.wrapping_sub(self.seq_offset))
    }

    /// The sequence number this viewer got the shared packet `source` as,
    /// if it was sent from the current source.
    pub fn viewer_seq(&self, source: u16) -> Option<u16> {
        let seq = source.wrapping_add(self.seq_offset);
        (self.source_seq(seq) == Some(source)).then_some(seq)
    }

    /// The viewer's sequence number of the latest packet sent.
    pub fn last_seq(&self) -> u16 {
        self.last_seq
    }

    /// Whether this viewer takes this track (as RED when `red`): what
    /// [`TrackOut::rewrite`] needs to write a header at all.
    pub fn negotiated(&self, red: bool) -> bool {
        self.out_pt(red).is_some()
    }

    /// The payload type this viewer's packets of this track carry (RED's
    /// when `red`); None: not negotiated.
    fn out_pt(&self, red: bool) -> Option<u8> {
        if red {
            self.red_pt
        } else {
            self.pt
        }
    }

    /// Length of the headers [`TrackOut::rewrite`] and
    /// [`TrackOut::resend_header`] write for this viewer.
    pub fn header_len(&self) -> usize {
        if self.playout_delay_id.is_some() {
            RTP_HEADER_MAX
        } else {
            12
        }
    }

    /// Writes this viewer's header for shared packet header `src` into `out`
    /// and returns its length: 12 bytes, or 20 with the playout-delay
    /// extension (`playout_min`, 10 ms units). `red`: the payload is RED.
    /// Returns None when the viewer did not negotiate this track (or RED).
    pub fn rewrite(&mut self, src: &[u8], out: &mut [u8; RTP_HEADER_MAX], playout_min: u16, red: bool, now: Instant) -> Option<usize> {
        let pt = self.out_pt(red)?;
        if src.len() < 12 {
            return None;
        }
        let seq = u16::from_be_bytes([src[2], src[3]]);
        let ts = u32::from_be_bytes([src[4], src[5], src[6], src[7]]);
        let rebased = self.rebase || !self.started;
        if rebased {
            // A new viewer keeps the source's numbers (its live frames keep
            // their times; a replay before them is squeezed into the frame
            // interval before the newest). A re-based one goes on one packet
            // after its last: a replay right after its last frame, squeezed
            // up to where the clocks put the newest replayed frame (the new
            // stream's live edge; one frame after the last frame sent when
            // there are no clocks); without a replay the first frame where
            // the clocks put it, or a frame later.
            let replay_to = self.live_edge.take().filter(|&to| to.wrapping_sub(ts) as i32 > self.step as i32);
            let base = if self.started {
                self.seq_offset = self.last_seq.wrapping_add(1).wrapping_sub(seq);
                self.last_ts.wrapping_add(if replay_to.is_some() { 1 } else { self.step })
            } else {
                replay_to.map_or(ts, |to| to.wrapping_sub(self.step))
            };
            // A new stream without a clock at the switch: its first packet
            // (a replay's newest frame) is taken as sent on time now.
            let unclocked = std::mem::take(&mut self.unclocked);
            let on_time = replay_to.unwrap_or(ts);
            let clock = self
                .rebase_offset
                .take()
                .or_else(|| self.timeline_at(now).filter(|_| unclocked).map(|v| v.wrapping_sub(on_time)))
                .filter(|_| self.started);
            // A switch's live edge goes where the clocks put it (the time
            // that passed since the last frame sent), so the receiver's
            // RTP-to-arrival mapping stays where it was: one frame on
            // every time (the first version) put the new stream's frames
            // a frame early by that mapping at each switch, and Chrome's
            // video delay grew with every switch (81 to 161 ms over ten).
            // Where that place is not far enough after the last frame sent
            // for the replay's distinct times (the new stream's newest
            // frame arrived before the old one's last), the squeeze runs on
            // past the edge, over the live frames that follow, to where the
            // clocks leave room: later frames still get exactly the clocks'
            // time, so no switch moves the timeline on by more than the time
            // that passed.
            let (to, span) = match (replay_to, clock) {
                (Some(to), Some(off)) => {
                    let min = to.wrapping_sub(ts) / 1000 + 1;
                    let ahead = to.wrapping_add(off).wrapping_sub(base);
                    if (min..=EDGE_MAX_AHEAD).contains(&ahead) {
                        (Some(to), ahead)
                    } else if min.wrapping_sub(ahead) <= EDGE_MAX_AHEAD {
                        (Some(to.wrapping_add(min.wrapping_sub(ahead))), min)
                    } else {
                        // Clocks 200 ms or more off either way (a stale
                        // anchor): one frame on, as without clocks.
                        (Some(to), self.step)
                    }
                }
                (to, _) => (to, self.step),
            };
            let replay_to = to;
            self.squeeze = replay_to.map(|to| Squeeze { from: ts, to, base, span });
            let clock = clock.filter(|&off| replay_to.is_none() && ts.wrapping_add(off).wrapping_sub(self.last_ts) as i32 >= self.step as i32);
            self.ts_offset = match (replay_to, clock) {
                (Some(to), _) => base.wrapping_add(span).wrapping_sub(to),
                (None, Some(off)) => off,
                (None, None) => base.wrapping_sub(ts),
            };
        } else if self.squeeze.is_some_and(|q| ts.wrapping_sub(q.to) as i32 > SQUEEZE_FORGET as i32) {
            self.squeeze = None;
        }
        self.rebase = false;
        let n = self.write(src, pt, self.ssrc, out, playout_min);
        self.last_seq = seq.wrapping_add(self.seq_offset);
        self.last_ts = self.out_ts(ts);
        if rebased {
            self.epoch_start = self.last_seq;
        }
        self.started = true;
        if self.playout_delay_id.is_some() {
            self.log_playout(playout_min.min(crate::lipsync::PLAYOUT_DELAY_MAX_UNITS));
        }
        Some(n)
    }

    fn log_playout(&mut self, min: u16) {
        let newest = self.playout_logged.checked_sub(1).map(|i| self.playout_log[i % PLAYOUT_LOG]);
        let fresh = newest.is_some_and(|(from, v)| v == min && self.last_seq.wrapping_sub(from) < PLAYOUT_LOG_REFRESH);
        if !fresh {
            self.playout_log[self.playout_logged % PLAYOUT_LOG] = (self.last_seq, min);
            self.playout_logged += 1;
        }
    }

    /// The playout-delay `min` that this viewer's packet `seq` carried;
    /// None when it is older than the log (or not sent).
    fn playout_sent(&self, seq: u16) -> Option<u16> {
        let back = |s: u16| self.last_seq.wrapping_sub(s);
        if back(seq) >= 0x8000 {
            return None; // not sent yet
        }
        let kept = self.playout_logged.min(PLAYOUT_LOG);
        (1..=kept).map(|i| self.playout_log[(self.playout_logged - i) % PLAYOUT_LOG]).find(|&(from, _)| back(seq) <= back(from)).map(|(_, v)| v)
    }

    /// Whether packet `seq` (this viewer's number) can be sent again
    /// byte for byte by [`TrackOut::resend_header`] without RTX.
    pub fn can_repeat(&self, seq: u16) -> bool {
        self.playout_delay_id.is_none() || self.playout_sent(seq).is_some()
    }

    /// The header of a retransmission of this viewer's packet `seq`, which
    /// the shared packet with header `src` must be (checked: a switch since
    /// the NACK changed the mapping, None). `rtx`: (payload type, SSRC) of
    /// RTX, whose packets are new and carry today's `playout_min`; without
    /// it the original header again, byte for byte (None when that cannot
    /// be reproduced).
    pub fn resend_header(&self, seq: u16, src: &[u8], rtx: Option<(u8, u32)>, out: &mut [u8; RTP_HEADER_MAX], playout_min: u16) -> Option<usize> {
        if src.len() < 12 || self.source_seq(seq) != Some(u16::from_be_bytes([src[2], src[3]])) {
            return None;
        }
        match rtx {
            Some((pt, ssrc)) => Some(self.write(src, pt, ssrc, out, playout_min)),
            None => {
                let min = if self.playout_delay_id.is_some() { self.playout_sent(seq)? } else { 0 };
                Some(self.write(src, self.pt?, self.ssrc, out, min))
            }
        }
    }

    /// This viewer's timestamp for source timestamp `ts`.
    fn out_ts(&self, ts: u32) -> u32 {
        match self.squeeze {
            Some(q) if (ts.wrapping_sub(q.from) as i32) >= 0 && (ts.wrapping_sub(q.to) as i32) < 0 => {
                let span = u64::from(q.to.wrapping_sub(q.from));
                let at = u64::from(ts.wrapping_sub(q.from));
                q.base.wrapping_add((at * u64::from(q.span) / span) as u32)
            }
            _ => ts.wrapping_add(self.ts_offset),
        }
    }

    fn write(&self, src: &[u8], pt: u8, ssrc: u32, out: &mut [u8; RTP_HEADER_MAX], playout_min: u16) -> usize {
        let seq = u16::from_be_bytes([src[2], src[3]]).wrapping_add(self.seq_offset);
        let ts = self.out_ts(u32::from_be_bytes([src[4], src[5], src[6], src[7]]));
        out[0] = 0x80; // V=2, no padding/CSRC: the packetizers emit none
        out[1] = (src[1] & 0x80) | (pt & 0x7f);
        out[2..4].copy_from_slice(&seq.to_be_bytes());
        out[4..8].copy_from_slice(&ts.to_be_bytes());
        out[8..12].copy_from_slice(&ssrc.to_be_bytes());
        let Some(id) = self.playout_delay_id else { return 12 };
        // RFC 8285 one-byte form: 0xBEDE, length 1 word, then one element
        // (id, len-1 = 2) holding 12-bit min and max in 10 ms units.
        let max = crate::lipsync::PLAYOUT_DELAY_MAX_UNITS;
        let min = playout_min.min(max); // min > max is an invalid extension
        out[0] |= 0x10;
        out[12..16].copy_from_slice(&[0xbe, 0xde, 0x00, 0x01]);
        out[16] = (id << 4) | 2;
        out[17] = (min >> 4) as u8;
        out[18] = (((min & 0xf) << 4) | (max >> 8)) as u8;
        out[19] = max as u8;
        RTP_HEADER_MAX
    }
}

/// Longest header [`TrackOut::rewrite`] writes: 12 fixed bytes plus the
/// 8-byte playout-delay extension block.
pub const RTP_HEADER_MAX: usize = 20;

impl Session {
    pub fn is_playing(&self) -> bool {
        self.media.is_some() && self.peer.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn hdr(marker: bool, seq: u16, ts: u32, ssrc: u32) -> [u8; 12] {
        let mut h = [0u8; 12];
        rts_rtp::write_rtp_header(&mut h, marker, 96, seq, ts, ssrc);
        h
    }

    /// Sends source frames (one packet each, numbered from `seq`) and
    /// returns the timestamps the viewer got.
    fn send_frames(t: &mut TrackOut, seq: u16, times: &[u32]) -> Vec<u32> {
        send_frames_at(t, seq, times, Instant::now())
    }

    fn send_frames_at(t: &mut TrackOut, seq: u16, times: &[u32], now: Instant) -> Vec<u32> {
        let mut out = [0u8; RTP_HEADER_MAX];
        times
            .iter()
            .enumerate()
            .map(|(i, &ts)| {
                t.rewrite(&hdr(true, seq.wrapping_add(i as u16), ts, 1), &mut out, 0, false, now);
                rts_rtp::RtpHeader::parse(&out[..12]).unwrap().timestamp
            })
            .collect()
    }

    #[test]
    fn a_replay_is_squeezed_into_one_frame_before_live() {
        // A new viewer: the GOP (2 s, 30 fps, source times 100_000..280_000)
        // goes out within the frame interval before the newest cached
        // frame, which keeps its time, as do the live frames after it: the
        // receiver decodes the replay at once instead of playing it out at
        // its real pace, 2 s behind live.
        let mut t = TrackOut::new(Some(96), 7, Kind::Video);
        let gop: Vec<u32> = (0..61).map(|i| 100_000 + 3000 * i).collect();
        t.replay_from(*gop.last().unwrap());
        let got = send_frames(&mut t, 10, &gop);
        assert_eq!(got[0], 277_000, "the keyframe one frame before the newest");
        assert_eq!(got[60], 280_000, "the newest cached frame keeps its time");
        assert!(got.windows(2).all(|w| w[1] > w[0]), "still one distinct, rising time per frame: {got:?}");
        assert_eq!(send_frames(&mut t, 71, &[283_000, 286_000]), vec![283_000, 286_000], "live keeps its times");
        // A retransmission of a replayed packet repeats the time it went out with.
        let mut again = [0u8; RTP_HEADER_MAX];
        t.resend_header(30, &hdr(true, 30, gop[20], 1), None, &mut again, 0).unwrap();
        assert_eq!(rts_rtp::RtpHeader::parse(&again[..12]).unwrap().timestamp, got[20]);

        // A switch with no clocks to place it by (a stream without an
        // anchor yet): the new stream's GOP (another clock) goes on right
        // after the last frame sent, squeezed into one frame interval; its
        // newest frame (the live edge) a frame after the last frame sent,
        // and live from there at the real pace.
        t.rebase_next();
        let gop2: Vec<u32> = (0..31).map(|i| 9_000_000 + 3600 * i).collect(); // 25 fps
        t.replay_from(*gop2.last().unwrap());
        let got2 = send_frames(&mut t, 5000, &gop2);
        assert_eq!(got2[0], 286_001);
        assert_eq!(got2[30], 289_001);
        assert!(got2.windows(2).all(|w| w[1] > w[0]));
        assert_eq!(send_frames(&mut t, 5031, &[9_111_600]), vec![292_601]);
        // Long after the replay the squeeze is forgotten, and source times
        // that come back into its window (a wrap) are not squeezed.
        let later = 9_108_000u32.wrapping_add(SQUEEZE_FORGET + 3600);
        assert_eq!(send_frames(&mut t, 5032, &[later]), vec![later.wrapping_sub(9_108_000).wrapping_add(289_001)]);
        assert!(t.squeeze.is_none());
    }

    #[test]
    fn audio_goes_on_at_the_wall_clocks_pace_across_a_switch() {
        // The viewer got the old stream's audio up to 48_960; by the clocks,
        // old 49_920 is new 7_000_000 now. The new stream's first packet
        // comes 100 ms of audio later (its transcoder starting): it goes out
        // 100 ms on, not 20 ms, so the receiver does not take it as late.
        let mut a = TrackOut::new(Some(111), 8, Kind::Audio);
        send_frames(&mut a, 1, &[48_000, 48_960]);
        a.rebase_next();
        a.rebase_with(Instant::now(), Some(49_920), Some(7_000_000));
        assert_eq!(send_frames(&mut a, 3, &[7_004_800, 7_005_760]), vec![54_720, 55_680]);
        // Where the clocks would not move time on by a frame, one frame after
        // the last.
        a.rebase_next();
        a.rebase_with(Instant::now(), Some(55_680), Some(9_000_000));
        assert_eq!(send_frames(&mut a, 5, &[8_999_000]), vec![56_640]);
        // A new rebase forgets an offset it did not use.
        a.rebase_next();
        assert_eq!(send_frames(&mut a, 6, &[100]), vec![57_600]);
    }

    #[test]
    fn switches_keep_the_viewers_timeline_whatever_each_clock_reading_is_off_by() {
        // Audio at 48 kHz. The viewer joined one stream and got 48_000 and
        // 48_960 (a new viewer keeps the source's times).
        let t0 = Instant::now();
        let secs = |s: u64| t0 + Duration::from_secs(s);
        let mut a = TrackOut::new(Some(111), 8, Kind::Audio);
        send_frames_at(&mut a, 1, &[48_000, 48_960], t0);
        // Switch 1 at t0: by the clocks the old stream's 49_920 and the new
        // stream's 7_000_000 are on time now. This fixes the viewer's
        // timeline: 49_920 at t0, 48 units per ms.
        a.rebase_next();
        a.rebase_with(t0, Some(49_920), Some(7_000_000));
        assert_eq!(send_frames_at(&mut a, 3, &[7_000_000], t0), vec![49_920]);
        // Switch 2, 2 s later: the timeline has 49_920 + 96_000 = 145_920
        // on time now. The old stream's clock reads 40 ms (1_920 units)
        // later than that (its lateness estimate moved): the new stream's
        // on-time packet goes at 145_920 plus the 2 ms (96 units) a
        // publisher's clock may drift in 2 s, not 40 ms later.
        a.rebase_next();
        a.rebase_with(secs(2), Some(7_000_000 + 96_000 + 1_920), Some(9_000_000));
        assert_eq!(send_frames_at(&mut a, 5, &[9_000_000], secs(2)), vec![146_016]);
        // Switch 3, another 40 ms reading error the same way: still 2 ms
        // at most (re-reading the old clock at each switch summed the
        // errors: 80 ms by now, 245_760).
        a.rebase_next();
        a.rebase_with(secs(4), Some(9_000_000 + 96_000 + 1_920), Some(11_000_000));
        assert_eq!(send_frames_at(&mut a, 7, &[11_000_000], secs(4)), vec![242_112]);
        // A reading 300 ms off is the old stream's timeline having moved
        // (a stalled publisher): the viewer follows it.
        a.rebase_next();
        a.rebase_with(secs(6), Some(11_000_000 + 96_000 + 14_400), Some(13_000_000));
        assert_eq!(send_frames_at(&mut a, 9, &[13_000_000], secs(6)), vec![352_512]);
        // A new stream without a clock yet (a replica not fed yet): its
        // first packet, 100 ms after the switch, is taken as on time then.
        a.rebase_next();
        a.rebase_with(secs(8), None, None);
        let first = send_frames_at(&mut a, 11, &[5_000, 5_960], secs(8) + Duration::from_millis(100));
        assert_eq!(first, vec![352_512 + 96_000 + 4_800, 352_512 + 96_000 + 4_800 + 960]);
        // Without an anchor (no switch yet) and no clocks: one packet on.
        let mut b = TrackOut::new(Some(111), 8, Kind::Audio);
        send_frames_at(&mut b, 1, &[48_000], t0);
        b.rebase_next();
        b.rebase_with(t0, None, None);
        assert_eq!(send_frames_at(&mut b, 2, &[7_000], secs(1)), vec![48_960]);
    }

    #[test]
    fn a_switch_replay_ends_where_the_clocks_put_the_live_edge() {
        // The viewer's last frame went out at 300_000. The new stream's GOP
        // (25 fps, source 9_000_000..9_108_000) has its newest frame 20 ms
        // (1_800 units) of the old stream's time after that frame: the
        // replay goes right after the last frame and the edge 1_800 on,
        // where the receiver's RTP-to-arrival mapping expects it.
        let switch = |old_now: u32, new_now: u32| {
            let mut t = TrackOut::new(Some(96), 7, Kind::Video);
            send_frames(&mut t, 1, &[297_000, 300_000]);
            t.rebase_next();
            let gop: Vec<u32> = (0..31).map(|i| 9_000_000 + 3600 * i).collect();
            t.replay_from(*gop.last().unwrap());
            t.rebase_with(Instant::now(), Some(old_now), Some(new_now));
            let mut got = send_frames(&mut t, 3, &gop);
            got.extend(send_frames(&mut t, 34, &[9_111_600]));
            got
        };
        let got = switch(300_000, 9_108_000 - 1_800);
        assert_eq!((got[0], got[30], got[31]), (300_001, 301_800, 305_400));
        assert!(got.windows(2).all(|w| w[1] > w[0]), "one distinct, rising time per frame: {got:?}");
        // The new edge arrived 10 ms before the old stream's last frame (by
        // the clocks at 299_100): the squeeze runs on past it to where the
        // clocks leave room for distinct times (109 units: 108_000 / 1000
        // + 1), so the edge goes at 300_001 + 108_000 * 109 / 109_010 =
        // 300_108 and the next live frame exactly where the clocks put it,
        // 299_100 + 3_600, not a frame after a clamped edge.
        let early = switch(300_000, 9_108_000 + 900);
        assert_eq!((early[0], early[30], early[31]), (300_001, 300_108, 302_700));
        assert!(early.windows(2).all(|w| w[1] > w[0]), "{early:?}");
        // Clocks 300 ms off either way are a stale anchor: one frame on, as
        // without clocks.
        assert_eq!(switch(300_000, 9_108_000 - 27_000)[30], 303_001);
        assert_eq!(switch(300_000, 9_108_000 + 27_000)[30], 303_001);
    }

    #[test]
    fn a_short_replay_or_none_is_not_squeezed() {
        // Just the keyframe cached (one frame): nothing to squeeze, the
        // source times stay (a new viewer) or go on one frame later (switch).
        let mut t = TrackOut::new(Some(96), 7, Kind::Video);
        t.replay_from(50_000);
        assert_eq!(send_frames(&mut t, 1, &[50_000, 53_000]), vec![50_000, 53_000]);
        t.rebase_next();
        assert_eq!(send_frames(&mut t, 100, &[1_000_000]), vec![56_000], "no replay: the live frame one frame on");
        assert!(t.squeeze.is_none());
        // A replay queued while the track neither starts nor re-bases
        // changes nothing.
        t.replay_from(2_000_000);
        assert_eq!(send_frames(&mut t, 101, &[1_003_000]), vec![59_000]);
    }

    #[test]
    fn rewrite_patches_pt_ssrc_and_keeps_marker() {
        let mut t = TrackOut::new(Some(102), 0xAABB, Kind::Video);
        let mut out = [0u8; RTP_HEADER_MAX];
        assert_eq!(t.rewrite(&hdr(true, 10, 9000, 1), &mut out, 5, false, Instant::now()), Some(12));
        let h = rts_rtp::RtpHeader::parse(&out[..12]).unwrap();
        assert_eq!((h.marker, h.payload_type, h.sequence, h.timestamp, h.ssrc), (true, 102, 10, 9000, 0xAABB));
        let mut none = TrackOut::new(None, 1, Kind::Audio);
        assert_eq!(none.rewrite(&hdr(false, 1, 1, 1), &mut out, 5, false, Instant::now()), None);
    }

    #[test]
    fn switch_keeps_sequence_and_time_continuous() {
        let mut t = TrackOut::new(Some(96), 7, Kind::Video);
        let mut out = [0u8; RTP_HEADER_MAX];
        t.rewrite(&hdr(false, 65534, 100, 1), &mut out, 1, false, Instant::now());
        t.rewrite(&hdr(true, 65535, 100, 1), &mut out, 1, false, Instant::now());
        t.rebase_next();
        // The new stream is somewhere else entirely in its own spaces.
        t.rewrite(&hdr(false, 1234, 5_000_000, 2), &mut out, 1, false, Instant::now());
        let h = rts_rtp::RtpHeader::parse(&out[..12]).unwrap();
        assert_eq!((h.sequence, h.timestamp, h.ssrc), (0, 3100, 7));
        t.rewrite(&hdr(true, 1235, 5_003_000, 2), &mut out, 1, false, Instant::now());
        let h = rts_rtp::RtpHeader::parse(&out[..12]).unwrap();
        assert_eq!((h.sequence, h.timestamp), (1, 6100));
    }

    #[test]
    fn playout_delay_extension_block() {
        let mut t = TrackOut::new(Some(106), 0xAABB, Kind::Video).with_playout_delay(Some(5));
        let mut out = [0u8; RTP_HEADER_MAX];
        assert_eq!(t.rewrite(&hdr(true, 10, 9000, 1), &mut out, 0x123, false, Instant::now()), Some(20));
        let h = rts_rtp::RtpHeader::parse(&out).unwrap();
        assert_eq!((h.header_len, h.marker, h.payload_type, h.sequence, h.ssrc), (20, true, 106, 10, 0xAABB));
        // One-byte form, one element: id 5, 3 bytes of 12-bit min 0x123 and max 1000 (0x3e8).
        assert_eq!(out[12..], [0xbe, 0xde, 0, 1, 0x52, 0x12, 0x33, 0xe8]);
        // ...which the players' reader (rts_rtp::hdrext) decodes back.
        let read = rts_rtp::hdrext::one_byte_extension(&out, &h, 5).and_then(rts_rtp::hdrext::PlayoutDelay::parse);
        assert_eq!(read, Some(rts_rtp::hdrext::PlayoutDelay { min: 0x123, max: 1000 }));
        // An out-of-range min is clamped to max (min > max is invalid).
        t.rewrite(&hdr(false, 11, 9000, 1), &mut out, 0xffff, false, Instant::now());
        assert_eq!(out[16..], [0x52, 0x3e, 0x83, 0xe8]);
    }

    #[test]
    fn lost_sequence_numbers_map_back_within_the_current_source_only() {
        let mut t = TrackOut::new(Some(96), 7, Kind::Video);
        let mut out = [0u8; RTP_HEADER_MAX];
        assert_eq!(t.source_seq(0), None, "nothing sent yet");
        for s in 100..110u16 {
            t.rewrite(&hdr(false, s, 0, 1), &mut out, 1, false, Instant::now());
        }
        assert_eq!(t.source_seq(105), Some(105));
        assert_eq!(t.source_seq(99), None, "before the first packet");
        assert_eq!(t.source_seq(110), None, "not sent yet");
        t.rebase_next();
        assert_eq!(t.source_seq(105), None, "a switch is pending: the old numbers mean nothing now");
        // The new source starts at 7000: viewer seq 110 carries it.
        for s in 7000..7005u16 {
            t.rewrite(&hdr(false, s, 90_000, 2), &mut out, 1, false, Instant::now());
        }
        assert_eq!(t.source_seq(110), Some(7000));
        assert_eq!(t.source_seq(114), Some(7004));
        assert_eq!(t.source_seq(109), None, "the previous stream's packet is never mis-mapped");
        assert_eq!(t.source_seq(115), None);
        // Across the 16-bit wrap.
        let mut w = TrackOut::new(Some(96), 7, Kind::Video);
        for s in [65534u16, 65535, 0, 1] {
            w.rewrite(&hdr(false, s, 0, 1), &mut out, 1, false, Instant::now());
        }
        assert_eq!((w.source_seq(65535), w.source_seq(1), w.source_seq(2)), (Some(65535), Some(1), None));
    }

    #[test]
    fn resend_header_repeats_the_sent_header_without_changing_state() {
        let mut t = TrackOut::new(Some(96), 7, Kind::Video).with_playout_delay(Some(3));
        let mut sent = [0u8; RTP_HEADER_MAX];
        t.rewrite(&hdr(false, 50, 1000, 1), &mut sent, 4, false, Instant::now());
        t.rebase_next();
        t.rewrite(&hdr(true, 900, 777_000, 2), &mut sent, 4, false, Instant::now());
        let mut again = [0u8; RTP_HEADER_MAX];
        assert_eq!(t.resend_header(51, &hdr(true, 900, 777_000, 2), None, &mut again, 9), Some(20));
        assert_eq!(again, sent, "a retransmission on the media SSRC is byte-identical");
        assert_eq!(t.resend_header(51, &hdr(true, 900, 777_000, 2), Some((97, 9)), &mut again, 9), Some(20));
        let h = rts_rtp::RtpHeader::parse(&again).unwrap();
        assert_eq!((h.payload_type, h.ssrc, h.sequence), (97, 9, 51));
        assert_eq!(playout_min(&again), 9, "RTX is a new packet: today's value");
        assert_eq!(t.last_seq(), 51, "state untouched");
        assert_eq!(t.resend_header(50, &hdr(false, 50, 1000, 1), None, &mut again, 4), None, "the previous stream's packet");
        assert_eq!(t.resend_header(51, &hdr(true, 901, 777_000, 2), None, &mut again, 4), None, "not the packet the viewer got as 51");
    }

    /// `min` of the playout-delay block written by `TrackOut::write`.
    fn playout_min(h: &[u8; RTP_HEADER_MAX]) -> u16 {
        assert_eq!(h[12..16], [0xbe, 0xde, 0x00, 0x01]);
        (u16::from(h[17]) << 4) | u16::from(h[18] >> 4)
    }

    #[test]
    fn a_repeat_carries_the_playout_value_its_original_carried() {
        let mut t = TrackOut::new(Some(96), 7, Kind::Video).with_playout_delay(Some(3));
        let mut sent = Vec::new();
        for (src, min) in (100u16..110).map(|s| (s, 4)).chain((110..120).map(|s| (s, 20))).chain((120..130).map(|s| (s, 8))) {
            let mut out = [0u8; RTP_HEADER_MAX];
            t.rewrite(&hdr(false, src, 9000, 1), &mut out, min, false, Instant::now());
            sent.push(out);
        }
        let mut again = [0u8; RTP_HEADER_MAX];
        for (i, src) in (100u16..130).enumerate() {
            assert!(t.can_repeat(src), "{src}");
            assert_eq!(t.resend_header(src, &hdr(false, src, 9000, 1), None, &mut again, 30), Some(20));
            assert_eq!(again, sent[i], "packet {src} again, byte for byte");
        }
        assert_eq!((playout_min(&sent[5]), playout_min(&sent[15]), playout_min(&sent[25])), (4, 20, 8));
        assert!(!t.can_repeat(130), "not sent yet");
    }

    #[test]
    fn the_playout_log_forgets_the_oldest_changes_and_survives_the_wrap() {
        let mut t = TrackOut::new(Some(96), 7, Kind::Video).with_playout_delay(Some(3));
        let mut out = [0u8; RTP_HEADER_MAX];
        // 20 changes, one every 10 packets: the log keeps the last 16.
        for s in 0u16..200 {
            t.rewrite(&hdr(false, s, 0, 1), &mut out, 1 + s / 10, false, Instant::now());
        }
        assert!(!t.can_repeat(39), "the 4th change's packets are forgotten");
        assert!(t.can_repeat(40) && t.can_repeat(199));
        t.resend_header(45, &hdr(false, 45, 0, 1), None, &mut out, 1);
        assert_eq!(playout_min(&out), 5);
        // 70,000 packets without a change (the sequence number wraps).
        for s in 200u32..70_200 {
            t.rewrite(&hdr(false, s as u16, 0, 1), &mut out, 77, false, Instant::now());
        }
        let recent = 70_199u32 as u16;
        assert!(t.can_repeat(recent) && t.can_repeat(recent.wrapping_sub(8_000)));
        t.resend_header(recent.wrapping_sub(8_000), &hdr(false, recent.wrapping_sub(8_000), 0, 1), None, &mut out, 1);
        assert_eq!(playout_min(&out), 77);
        // Without the extension every packet can be repeated.
        let plain = TrackOut::new(Some(96), 7, Kind::Video);
        assert!(plain.can_repeat(5));
    }

    #[test]
    fn red_uses_its_own_payload_type_when_negotiated() {
        let mut t = TrackOut::new(Some(111), 5, Kind::Audio).with_red(Some(63));
        let mut out = [0u8; RTP_HEADER_MAX];
        assert_eq!(t.rewrite(&hdr(true, 1, 960, 1), &mut out, 1, true, Instant::now()), Some(12));
        assert_eq!(rts_rtp::RtpHeader::parse(&out[..12]).unwrap().payload_type, 63);
        let mut plain = TrackOut::new(Some(111), 5, Kind::Audio);
        assert_eq!(plain.rewrite(&hdr(true, 1, 960, 1), &mut out, 1, true, Instant::now()), None, "no RED without negotiation");
    }
}
