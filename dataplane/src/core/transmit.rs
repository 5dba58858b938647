//! The core's UDP output: work that produces datagrams (fan-out of live
//! packets, paced GOP-cache replays, sender reports) runs inside
//! [`Core::poll_transmit`] into one GSO batch until it is full; the shell
//! sends the batch and polls again, and the work resumes where it stopped.
//! Small one-off datagrams (STUN, DTLS) go into the batch at once.

use super::fanout::{send_items, FanOut, Step};
use super::resend::{send_queue, ResentTally};
use super::session::Session;
use super::stream::Kind;
use super::streams::StreamTable;
use super::Core;
use crate::batch::{GsoBatch, Transmit};
use rts_common::histogram::micros_since;
use rts_common::ipc::{Protocol, ShardCounters};
use slab::Slab;
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Paced replay rate of a GOP cache to one new viewer: a 2 s GOP at
/// 2 Mbit/s (~450 packets) reaches live in ~90 ms.
pub(super) const CATCHUP_PACKETS_PER_S: u64 = 5_000;
/// How often a catch-up step runs while viewers catch up.
pub(super) const CATCHUP_STEP: Duration = Duration::from_millis(1);
/// Largest catch-up share of one viewer per step (after a long pause).
const CATCHUP_MAX_STEP: usize = 256;
/// Room for one SRTCP sender report (SR + SDES + SRTCP trailer).
const SR_ROOM: usize = 128;

/// A unit of transmit work, run in order.
pub(super) enum Work {
    FanOut(FanOut),
    /// One pacing step of the GOP-cache replays: each catching-up viewer
    /// gets up to `budget` packets.
    Catchup { budget: usize, next: usize, sent_to_next: usize, now: Instant },
    /// RTCP sender reports to the viewers in `Core::sr_due[next..]`.
    SenderReports { now: Instant, ntp: u64, next: usize },
    /// Retransmissions queued for the viewers in `Core::resend.list[next..]`.
    Resends { now: Instant, next: usize },
}

/// A list walker's result (true: done) as a delivery's step.
fn step(done: bool) -> Step {
    if done {
        Step::Done
    } else {
        Step::BatchFull
    }
}

/// A datagram that did not fit the batch when it was made (rare: only when
/// the shell handles input without draining transmits first).
struct Datagram {
    dst: SocketAddr,
    src: Option<IpAddr>,
    data: Vec<u8>,
}

/// The batch being filled, and one-off datagrams waiting for room in it.
pub(super) struct Outbox {
    pub batch: GsoBatch,
    overflow: VecDeque<Datagram>,
    /// Datagrams that had to wait in `overflow`, and work that could not
    /// make progress into an empty batch (dropped).
    pub overflowed: u64,
}

impl Outbox {
    pub fn new() -> Outbox {
        Outbox { batch: GsoBatch::for_shard(), overflow: VecDeque::new(), overflowed: 0 }
    }

    /// Sends one datagram that `write` makes (at most `max` bytes; None:
    /// nothing to send) from `src` to `dst`.
    /// Returns the bytes of the datagram (0 when `write` made none).
    pub fn send_with(&mut self, dst: SocketAddr, src: Option<IpAddr>, max: usize, write: impl Fn(&mut [u8]) -> Option<usize>) -> usize {
        let mut written = 0;
        let mut counted = |out: &mut [u8]| {
            let n = write(out);
            written = n.unwrap_or(0).min(max);
            n
        };
        if self.overflow.is_empty() && self.batch.datagram(dst, src, max, &mut counted) {
            return written;
        }
        let mut data = vec![0u8; max];
        match write(&mut data) {
            Some(n) => {
                data.truncate(n);
                self.overflowed += 1;
                self.overflow.push_back(Datagram { dst, src, data });
                n.min(max)
            }
            None => 0,
        }
    }

    /// Nothing waits: no datagram in the batch or behind it.
    fn is_empty(&self) -> bool {
        self.batch.is_empty() && self.overflow.is_empty()
    }

    /// Moves waiting datagrams into the batch; false when it filled first.
    fn flush_overflow(&mut self) -> bool {
        while let Some(d) = self.overflow.front() {
            let n = d.data.len();
            if !self.batch.datagram(d.dst, d.src, n, |b| {
                b[..n].copy_from_slice(&d.data);
                Some(n)
            }) {
                return false;
            }
            self.overflow.pop_front();
        }
        true
    }
}

/// A batch of messages ready to send: hand [`Transmits::iter`] to the send
/// layer; dropping this empties the batch for the next poll.
pub struct Transmits<'a> {
    batch: &'a mut GsoBatch,
}

impl Transmits<'_> {
    pub fn iter(&self) -> impl Iterator<Item = Transmit<'_>> + '_ {
        self.batch.transmits()
    }

    pub fn messages(&self) -> usize {
        self.batch.messages()
    }
}

impl Drop for Transmits<'_> {
    fn drop(&mut self) {
        self.batch.clear();
    }
}

impl Core {
    /// The next batch of datagrams to send, or None when nothing is left.
    pub fn poll_transmit(&mut self) -> Option<Transmits<'_>> {
        self.fill_batch();
        if self.out.batch.is_empty() {
            return None;
        }
        Some(Transmits { batch: &mut self.out.batch })
    }

    /// Whether transmit work is left: the shell polls again before it
    /// waits for input.
    pub fn transmit_pending(&self) -> bool {
        !self.work.is_empty() || !self.out.is_empty()
    }

    fn fill_batch(&mut self) {
        if !self.out.flush_overflow() {
            return;
        }
        let now = self.now;
        while let Some(work) = self.work.front_mut() {
            let step = match work {
                Work::FanOut(f) => {
                    let first_frames = self.streams.get_mut(f.stream).and_then(|s| s.first_frame_hist(Protocol::Webrtc));
                    f.run(&mut self.sessions, &mut self.out.batch, now, first_frames)
                }
                Work::Catchup { budget, next, sent_to_next, now } => {
                    let parts = Parts { list: &self.catchup, sessions: &mut self.sessions, streams: &mut self.streams, batch: &mut self.out.batch };
                    step(run_catchup(parts, *budget, next, sent_to_next, *now, &mut self.counters))
                }
                Work::SenderReports { now, ntp, next } => {
                    let parts = Parts { list: &self.sr_due, sessions: &mut self.sessions, streams: &mut self.streams, batch: &mut self.out.batch };
                    step(run_sender_reports(parts, *now, *ntp, next))
                }
                Work::Resends { now, next } => {
                    let parts = Parts { list: &self.resend.list, sessions: &mut self.sessions, streams: &mut self.streams, batch: &mut self.out.batch };
                    step(run_resends(parts, *now, next, &mut self.counters))
                }
            };
            match step {
                Step::Done => {}
                Step::TurnOver => {
                    self.pass_turn();
                    continue;
                }
                Step::BatchFull if self.out.batch.is_empty() => {
                    // No progress into an empty batch: never spin on it.
                    self.out.overflowed += 1;
                    self.work.pop_front();
                    continue;
                }
                Step::BatchFull => return,
            }
            match self.work.pop_front() {
                Some(Work::FanOut(f)) => {
                    if let Some(s) = self.streams.get_mut(f.stream) {
                        s.add_bytes_out(f.bytes);
                    }
                    f.resent.credit_to(&mut self.counters);
                    if let Some(at) = f.received {
                        if self.delivered.len() < MAX_DELIVERED {
                            self.delivered.push((f.stream, at));
                        }
                    }
                }
                Some(Work::Catchup { .. }) => self.catchup_done(),
                Some(Work::Resends { .. }) => self.resend.list.clear(),
                _ => {}
            }
        }
    }

    /// The delivery at the front used its turn: it goes behind the work
    /// queued after it, up to the next delivery of its own stream (whose
    /// packets must follow its own), so a keyframe to thousands of viewers
    /// does not hold other streams' frames until it is done.
    fn pass_turn(&mut self) {
        let Some(Work::FanOut(front)) = self.work.front() else { return };
        let stream = front.stream;
        let to = self.work.iter().skip(1).position(|w| matches!(w, Work::FanOut(f) if f.stream == stream)).map_or(self.work.len(), |i| i + 1);
        if to > 1 {
            if let Some(f) = self.work.pop_front() {
                self.work.insert(to - 1, f);
            }
        }
    }

    /// Whether a unit of work like `probe` is queued (or in progress).
    pub(super) fn work_queued(&self, probe: fn(&Work) -> bool) -> bool {
        self.work.iter().any(probe)
    }

    /// Queues one catch-up step at `now`: a budget for the time since the
    /// last step at [`CATCHUP_PACKETS_PER_S`].
    pub(super) fn queue_catchup(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last_catchup);
        self.last_catchup = now;
        let budget = ((elapsed.as_micros() as u64 * CATCHUP_PACKETS_PER_S) / 1_000_000).clamp(1, CATCHUP_MAX_STEP as u64) as usize;
        self.work.push_back(Work::Catchup { budget, next: 0, sent_to_next: 0, now });
    }

    /// After a step: viewers that finished (or left) stop catching up.
    fn catchup_done(&mut self) {
        let sessions = &self.sessions;
        self.catchup.retain(|&v| sessions.get(v).is_some_and(|s| s.media.as_ref().is_none_or(|m| !m.pending.is_empty())));
    }

    /// Starts a viewer's GOP-cache replay (its `pending` queue is filled).
    pub(super) fn start_catchup(&mut self, idx: usize) {
        let pending = self.sessions.get(idx).and_then(|s| s.media.as_ref()).is_some_and(|m| !m.pending.is_empty());
        if pending && !self.catchup.contains(&idx) {
            self.catchup.push(idx);
        }
    }
}

/// Frames fanned out between two parks whose latency is kept (bounds the
/// list if the shell never parks).
const MAX_DELIVERED: usize = 4096;

/// The fields a transmit round uses, borrowed apart from the rest of the
/// core: the viewers it serves (`list`), and what it needs of them.
struct Parts<'a> {
    list: &'a [usize],
    sessions: &'a mut Slab<Session>,
    streams: &'a mut StreamTable,
    batch: &'a mut GsoBatch,
}

/// Sender reports to `list[next..]` at `now` (NTP time `ntp`); false when
/// the batch filled (`next` says where to resume).
fn run_sender_reports(p: Parts<'_>, now: Instant, ntp: u64, next: &mut usize) -> bool {
    while let Some(&v) = p.list.get(*next) {
        if !p.batch.room_for(2, 2 * SR_ROOM) {
            return false;
        }
        *next += 1;
        let Some(sess) = p.sessions.get_mut(v) else { continue };
        let (Some(peer), local) = (sess.peer, sess.local_ip) else { continue };
        let Some(stream) = sess.stream.and_then(|id| p.streams.get(id)) else { continue };
        let Some(media) = sess.media.as_mut() else { continue };
        let Some(ms) = stream.stream_ms_at(now) else { continue };
        let ms = ms.max(0) as u64;
        for (kind, rtp) in [(Kind::Video, ms.wrapping_mul(90) as u32), (Kind::Audio, ms.wrapping_mul(48) as u32)] {
            // The audio still comes from the stream left (an audio tail):
            // the new stream's mapping would not fit it.
            if kind == Kind::Audio && media.audio_tail.is_some() {
                continue;
            }
            let t = media.track(kind);
            if !t.started() {
                continue;
            }
            let (ssrc, ts) = (t.ssrc, t.map_ts(rtp));
            let (packets, octets) = stream.sent_counts(kind);
            let mut sr = [0u8; SR_ROOM];
            let Ok(n) = rts_rtp::rtcp::write_sender_report(&mut sr, ssrc, ntp, ts, packets as u32, octets as u32, "rts") else {
                continue;
            };
            let tx = &mut media.tx;
            let mut sent = 0;
            p.batch.datagram(peer, local, SR_ROOM, |out| {
                let r = tx.protect_rtcp(&sr[..n], out).ok();
                sent = r.unwrap_or(0);
                r
            });
            media.bytes_out += sent as u64;
        }
    }
    true
}

/// Retransmissions to `list[next..]`; false when the batch filled (the
/// packet that did not fit stays queued).
fn run_resends(p: Parts<'_>, now: Instant, next: &mut usize, counters: &mut ShardCounters) -> bool {
    while let Some(&idx) = p.list.get(*next) {
        let Some(sess) = p.sessions.get_mut(idx) else {
            *next += 1;
            continue;
        };
        let (Some(peer), local) = (sess.peer, sess.local_ip) else {
            *next += 1;
            continue;
        };
        let stream = sess.stream.and_then(|id| p.streams.get(id));
        let Some(media) = sess.media.as_mut() else {
            *next += 1;
            continue;
        };
        let hint = stream.map_or_else(|| crate::lipsync::AvLag::default().hint(now), |s| s.av_hint(now));
        let playout_min = hint.min_units(media.started_at) + media.repair.allowance_units();
        let mut tally = ResentTally::default();
        let sent_all = send_queue(media, peer, local, playout_min, p.batch, &mut tally);
        tally.credit_to(counters);
        if !sent_all {
            return false;
        }
        *next += 1;
    }
    true
}

/// One catch-up step from viewer `next` on; false when the batch filled
/// (`next` and `sent_to_next` say where to resume).
fn run_catchup(p: Parts<'_>, budget: usize, next: &mut usize, sent_to_next: &mut usize, now: Instant, counters: &mut ShardCounters) -> bool {
    while let Some(&idx) = p.list.get(*next) {
        let Some(sess) = p.sessions.get_mut(idx) else {
            *next += 1;
            *sent_to_next = 0;
            continue;
        };
        let (Some(peer), local) = (sess.peer, sess.local_ip) else {
            *next += 1;
            *sent_to_next = 0;
            continue;
        };
        let stream = sess.stream.and_then(|id| p.streams.get_mut(id));
        let Some(media) = sess.media.as_mut() else {
            *next += 1;
            *sent_to_next = 0;
            continue;
        };
        let hint = stream.as_ref().map_or_else(|| crate::lipsync::AvLag::default().hint(now), |s| s.av_hint(now));
        let n = budget.saturating_sub(*sent_to_next).min(media.pending.len());
        // Take the queue out so the viewer's state can be borrowed with it.
        let mut pending = std::mem::take(&mut media.pending);
        let slice = &pending.make_contiguous()[..n];
        let sent = send_items(media, peer, local, Kind::Video, slice, None, hint, p.batch, now);
        pending.drain(..sent.packets);
        media.pending = pending;
        sent.resent.credit_to(counters);
        if let Some(s) = stream {
            s.add_bytes_out(sent.bytes);
            if sent.first_video {
                s.record_first_frame(Protocol::Webrtc, micros_since(media.started_at, now));
            }
        }
        *sent_to_next += sent.packets;
        if sent.full {
            return false;
        }
        *next += 1;
        *sent_to_next = 0;
    }
    true
}
