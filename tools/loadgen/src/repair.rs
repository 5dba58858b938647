//! Loss repair as a browser's receiver does it, sans-IO (time is passed in):
//! a NACK requester after libwebrtc's `NackRequester` (simplified), a
//! reorder buffer in front of the H.264 depacketizer, RTX unwrapping
//! (RFC 4588), RED audio (RFC 2198) accounting, and the seeded packet
//! dropper behind `--drop-pct`.
//!
//! Sequence numbers are extended to 64 bits relative to the highest one
//! seen, so 16-bit wraps need no special cases.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// A missing packet is NACKed again this often. libwebrtc uses the RTT
/// when it has one; a receive-only peer has none and keeps 100 ms.
pub const NACK_INTERVAL: Duration = Duration::from_millis(100);
/// NACKs per missing packet before it is given up (libwebrtc: 10).
pub const MAX_NACK_TRIES: u8 = 10;
/// A missing packet older than this is given up.
pub const MAX_NACK_AGE: Duration = Duration::from_secs(1);
/// A forward jump larger than this is a restart, not loss (libwebrtc keeps
/// at most 1000 missing packets and then asks for a keyframe instead).
pub const MAX_MISSING: u64 = 1000;
/// Held packets at most; past it the oldest gap is given up.
const MAX_HELD: usize = 2000;
/// Recently recovered sequence numbers remembered, so that a second copy
/// of a retransmission still counts as one.
const RECENT_RECOVERED: usize = 512;

/// Where extended sequence numbers start (so a packet before the first
/// cannot go below zero).
const EXT_BASE: u64 = 1 << 32;

/// What a packet's sequence number meant to the requester.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// The next or a later number (any numbers skipped are now missing).
    New,
    /// A number that was missing: the loss is repaired.
    Recovered,
    /// A number that was recovered before (another copy of a retransmission).
    RepeatedRecovery,
    /// Seen before, given up, or from before the first packet.
    Stale,
}

#[derive(Debug, Clone, Copy)]
struct Missing {
    since: Instant,
    last_sent: Option<Instant>,
    tries: u8,
}

/// Counters of one requester.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NackStats {
    /// Sequence numbers NACKed (first tries and retries).
    pub nacks_sent: u64,
    /// Missing packets that arrived later.
    pub recovered: u64,
    /// Of `recovered`, those NACKed more than once first (the first
    /// answer was lost, or late): each waited at least a retry interval.
    pub recovered_after_retry: u64,
    /// Missing packets given up (too many tries, too old, or a restart).
    pub unrecovered: u64,
}

/// Tracks the missing sequence numbers of one SSRC and decides when to
/// NACK them: at once when a gap shows, then every [`NACK_INTERVAL`] up to
/// [`MAX_NACK_TRIES`] times or until [`MAX_NACK_AGE`], then gives up.
/// Disabled (`--no-nack`), it never NACKs and gives every gap up at once.
#[derive(Debug, Clone)]
pub struct NackRequester {
    enabled: bool,
    interval: Duration,
    highest: Option<u64>,
    missing: BTreeMap<u64, Missing>,
    recent: VecDeque<u64>,
    /// Something was given up since the last [`take_keyframe_wanted`](Self::take_keyframe_wanted).
    keyframe_wanted: bool,
    /// Counters.
    pub stats: NackStats,
}

impl NackRequester {
    /// A requester that NACKs when `enabled`.
    pub fn new(enabled: bool) -> Self {
        NackRequester {
            enabled,
            interval: NACK_INTERVAL,
            highest: None,
            missing: BTreeMap::new(),
            recent: VecDeque::new(),
            keyframe_wanted: false,
            stats: NackStats::default(),
        }
    }

    /// Extends `seq` against the highest number seen (the first packet
    /// defines the start).
    pub fn extend(&self, seq: u16) -> u64 {
        match self.highest {
            Some(h) => h.saturating_add_signed(i64::from(seq.wrapping_sub(h as u16) as i16)),
            None => EXT_BASE + u64::from(seq),
        }
    }

    /// A packet with `seq` arrived at `now`; returns its extended number and
    /// what it meant.
    pub fn on_packet(&mut self, now: Instant, seq: u16) -> (u64, Arrival) {
        let ext = self.extend(seq);
        let Some(highest) = self.highest else {
            self.highest = Some(ext);
            return (ext, Arrival::New);
        };
        if ext > highest {
            let gap = ext - highest - 1;
            if gap > MAX_MISSING {
                // A restart or a long outage: repairing it is hopeless.
                self.give_up_all();
            } else if gap > 0 {
                if self.enabled {
                    for e in highest + 1..ext {
                        self.missing.insert(e, Missing { since: now, last_sent: None, tries: 0 });
                    }
                    self.trim();
                } else {
                    self.stats.unrecovered += gap;
                }
            }
            self.highest = Some(ext);
            return (ext, Arrival::New);
        }
        if let Some(m) = self.missing.remove(&ext) {
            self.stats.recovered += 1;
            self.stats.recovered_after_retry += u64::from(m.tries > 1);
            if self.recent.len() == RECENT_RECOVERED {
                self.recent.pop_front();
            }
            self.recent.push_back(ext);
            return (ext, Arrival::Recovered);
        }
        if self.recent.contains(&ext) {
            return (ext, Arrival::RepeatedRecovery);
        }
        (ext, Arrival::Stale)
    }

    /// Whether extended number `ext` is missing and still being asked for.
    pub fn is_missing(&self, ext: u64) -> bool {
        self.missing.contains_key(&ext)
    }

    /// Packets missing and not given up.
    pub fn outstanding(&self) -> usize {
        self.missing.len()
    }

    /// Gives up what is due and appends to `out` the sequence numbers to
    /// NACK now.
    pub fn poll(&mut self, now: Instant, out: &mut Vec<u16>) {
        if self.missing.is_empty() {
            return;
        }
        let interval = self.interval;
        let mut given_up = 0;
        self.missing.retain(|&ext, m| {
            let retry_at = m.last_sent.map(|t| t + interval);
            let last_answered = m.tries >= MAX_NACK_TRIES && retry_at.is_some_and(|t| now >= t);
            if last_answered || now >= m.since + MAX_NACK_AGE {
                given_up += 1;
                return false;
            }
            if m.tries < MAX_NACK_TRIES && retry_at.is_none_or(|t| now >= t) {
                m.tries += 1;
                m.last_sent = Some(now);
                out.push(ext as u16);
            }
            true
        });
        self.stats.nacks_sent += out.len() as u64;
        if given_up > 0 {
            self.stats.unrecovered += given_up;
            self.keyframe_wanted = true;
        }
    }

    /// The next time [`poll`](Self::poll) has work (a retry or a give-up).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.missing
            .values()
            .map(|m| {
                let give_up = m.since + MAX_NACK_AGE;
                match m.last_sent {
                    None => m.since,
                    Some(t) => give_up.min(t + self.interval),
                }
            })
            .min()
    }

    /// Whether a packet was given up since the last call (the decoder
    /// would need a keyframe).
    pub fn take_keyframe_wanted(&mut self) -> bool {
        std::mem::take(&mut self.keyframe_wanted)
    }

    /// When the oldest missing packet went missing.
    pub fn oldest_missing_since(&self) -> Option<Instant> {
        self.missing.first_key_value().map(|(_, m)| m.since)
    }

    /// Gives up every missing number below `ext` (a keyframe made them
    /// unnecessary).
    pub fn give_up_before(&mut self, ext: u64) {
        let keep = self.missing.split_off(&ext);
        self.stats.unrecovered += self.missing.len() as u64;
        self.missing = keep;
    }

    fn give_up_all(&mut self) {
        if !self.missing.is_empty() {
            self.stats.unrecovered += self.missing.len() as u64;
            self.missing.clear();
            self.keyframe_wanted = true;
        }
    }

    /// Keeps at most [`MAX_MISSING`] entries, giving up the oldest.
    fn trim(&mut self) {
        while self.missing.len() as u64 > MAX_MISSING {
            self.missing.pop_first();
            self.stats.unrecovered += 1;
            self.keyframe_wanted = true;
        }
    }
}

/// A video packet held for in-order release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// RTP sequence number (the original one for a retransmission).
    pub seq: u16,
    /// RTP timestamp.
    pub timestamp: u32,
    /// Marker bit.
    pub marker: bool,
    /// RTP payload.
    pub payload: Vec<u8>,
}

/// Releases packets in sequence order: a missing packet is waited for
/// while its NACK is alive, then skipped (the depacketizer then sees the
/// gap). Arrivals in order with nothing held pass straight through
/// ([`is_next`](Self::is_next)).
#[derive(Debug, Default)]
pub struct ReorderBuffer {
    next: Option<u64>,
    held: BTreeMap<u64, Held>,
}

/// What to do with an arriving packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Next in order and nothing held: release it now (no copy).
    Now,
    /// Hold it ([`ReorderBuffer::hold`]).
    Hold,
    /// Already released or skipped: drop it.
    Late,
}

impl ReorderBuffer {
    /// An empty buffer; the first packet sets the starting point.
    pub fn new() -> Self {
        Self::default()
    }

    /// Where a packet with extended number `ext` goes. After [`Slot::Now`]
    /// the caller must release it (the buffer moves past it).
    pub fn place(&mut self, ext: u64) -> Slot {
        let next = *self.next.get_or_insert(ext);
        if ext < next {
            Slot::Late
        } else if ext == next && self.held.is_empty() {
            self.next = Some(ext + 1);
            Slot::Now
        } else if self.held.contains_key(&ext) {
            Slot::Late
        } else {
            Slot::Hold
        }
    }

    /// Holds a packet [`place`](Self::place) said to hold.
    pub fn hold(&mut self, ext: u64, p: Held) {
        self.held.insert(ext, p);
    }

    /// Packets held.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Nothing held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Next packet to release, with its extended number: the next in order
    /// if held; a number that is not held and no longer `missing` (given
    /// up) is skipped. `None` while the next one is still awaited, or
    /// nothing is held. Past [`MAX_HELD`] packets the wait is abandoned.
    pub fn pop(&mut self, missing: impl Fn(u64) -> bool) -> Option<(u64, Held)> {
        let mut next = self.next?;
        let (&first, _) = self.held.first_key_value()?;
        while next < first {
            if missing(next) && self.held.len() < MAX_HELD {
                self.next = Some(next);
                return None;
            }
            next += 1;
        }
        self.next = Some(next + 1);
        self.held.remove(&next).map(|p| (next, p))
    }

    /// The first held keyframe whose packets are all held (from its first
    /// packet through the marker), if any lies after a gap: what a decoder
    /// could restart from. `starts_keyframe` tells from a payload.
    pub fn held_keyframe(&self, starts_keyframe: impl Fn(&[u8]) -> bool) -> Option<u64> {
        let next = self.next?;
        let mut run_start: Option<u64> = None;
        let mut prev: Option<u64> = None;
        for (&ext, p) in &self.held {
            if prev.is_none_or(|q| q + 1 != ext) {
                run_start = None; // a hole: a frame in progress is broken
            }
            if run_start.is_none() && starts_keyframe(&p.payload) && ext > next {
                run_start = Some(ext);
            }
            if p.marker {
                if let Some(s) = run_start {
                    return Some(s);
                }
            }
            prev = Some(ext);
        }
        None
    }
}

/// Whether an H.264 RTP payload begins a keyframe: an SPS, PPS or IDR NAL
/// unit, alone or first in a STAP-A, or the start of a fragmented IDR.
pub fn starts_keyframe(payload: &[u8]) -> bool {
    use rts_rtp::h264::{NAL_FU_A, NAL_IDR, NAL_PPS, NAL_SPS, NAL_STAP_A};
    let key = |t: u8| t == NAL_SPS || t == NAL_PPS || t == NAL_IDR;
    match payload.first().map(|b| b & 0x1f) {
        Some(NAL_STAP_A) => payload.get(3).is_some_and(|b| key(b & 0x1f)),
        Some(NAL_FU_A) => payload.get(1).is_some_and(|h| h & 0x80 != 0 && h & 0x1f == NAL_IDR),
        Some(t) => key(t),
        None => false,
    }
}

/// An RTX payload (RFC 4588): the original sequence number, then the
/// original payload. `None` when too short.
pub fn unwrap_rtx(payload: &[u8]) -> Option<(u16, &[u8])> {
    let (osn, rest) = payload.split_first_chunk::<2>()?;
    Some((u16::from_be_bytes(*osn), rest))
}

/// Audio frames recovered from RED (RFC 2198) redundancy: a redundant
/// block whose timestamp no primary block carried (its packet was lost)
/// counts once.
#[derive(Debug, Default)]
pub struct RedAudio {
    first: Option<u32>,
    /// Timestamps seen as a primary block or recovered, most recent last.
    seen: VecDeque<u32>,
    /// Frames recovered from a redundant block.
    pub recovered: u64,
}

/// Timestamps remembered (a second of 20 ms frames and more).
const RED_WINDOW: usize = 128;

impl RedAudio {
    /// A RED packet with RTP timestamp `ts` arrived; returns the primary
    /// block's data (`None` when the payload is not RED-shaped). Only
    /// blocks of `opus_pt` count.
    pub fn on_packet<'a>(&mut self, ts: u32, payload: &'a [u8], opus_pt: u8) -> Option<&'a [u8]> {
        let blocks = rts_rtp::red::parse(payload).ok()?;
        let (primary, redundant) = blocks.split_last()?;
        let first = *self.first.get_or_insert(ts);
        for b in redundant.iter().filter(|b| b.pt == opus_pt && !b.data.is_empty()) {
            let t = ts.wrapping_sub(u32::from(b.ts_offset));
            // Only frames after the first one this viewer got can have been lost.
            let after_start = (t.wrapping_sub(first) as i32) > 0;
            if after_start && !self.seen.contains(&t) {
                self.recovered += 1;
                self.remember(t);
            }
        }
        if !self.seen.contains(&ts) {
            self.remember(ts);
        }
        Some(primary.data)
    }

    fn remember(&mut self, ts: u32) {
        if self.seen.len() == RED_WINDOW {
            self.seen.pop_front();
        }
        self.seen.push_back(ts);
    }
}

/// `--drop-pct`: drops a seeded pseudo-random share of packets, the same
/// pattern for the same seed (SplitMix64, so it does not depend on the
/// `rand` crate's algorithms).
#[derive(Debug, Clone)]
pub struct Dropper {
    state: u64,
    /// Threshold in 1/2^32: drop when the next 32 random bits are below it.
    threshold: u64,
}

impl Dropper {
    /// Drops `pct` percent (0..=100) of packets; `None` for 0.
    pub fn new(pct: f64, seed: u64) -> Option<Dropper> {
        (pct > 0.0).then(|| Dropper {
            state: seed,
            threshold: ((pct.clamp(0.0, 100.0) / 100.0) * (1u64 << 32) as f64) as u64,
        })
    }

    /// Whether to drop the next packet.
    pub fn drop_next(&mut self) -> bool {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 32) < self.threshold
    }
}

/// The seed of viewer `index`'s dropper in a run seeded with `seed`.
pub fn viewer_seed(seed: u64, index: u64) -> u64 {
    seed ^ index.wrapping_add(1).wrapping_mul(0xd1b5_4a32_d192_ed03)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    fn poll(r: &mut NackRequester, now: Instant) -> Vec<u16> {
        let mut v = Vec::new();
        r.poll(now, &mut v);
        v
    }

    #[test]
    fn gap_is_nacked_at_once_then_every_100_ms() {
        let t0 = Instant::now();
        let mut r = NackRequester::new(true);
        for s in [10u16, 11, 14] {
            assert_eq!(r.on_packet(t0, s).1, Arrival::New);
        }
        assert_eq!(r.outstanding(), 2);
        assert_eq!(r.poll_timeout(), Some(t0), "due at once");
        assert_eq!(poll(&mut r, t0), [12, 13]);
        assert_eq!(poll(&mut r, ms(t0, 50)), [] as [u16; 0], "not within the interval");
        assert_eq!(r.poll_timeout(), Some(ms(t0, 100)));
        assert_eq!(poll(&mut r, ms(t0, 100)), [12, 13]);
        assert_eq!(r.stats.nacks_sent, 4);
        // 12 comes back: it is recovered and no longer asked for; 13 still is.
        assert_eq!(r.on_packet(ms(t0, 120), 12).1, Arrival::Recovered);
        assert_eq!(r.on_packet(ms(t0, 121), 12).1, Arrival::RepeatedRecovery, "second copy");
        assert_eq!(poll(&mut r, ms(t0, 200)), [13]);
        assert_eq!((r.stats.recovered, r.stats.nacks_sent, r.outstanding()), (1, 5, 1));
        assert_eq!(r.stats.recovered_after_retry, 1, "12 was asked for twice");
        assert_eq!(r.on_packet(ms(t0, 210), 11).1, Arrival::Stale);
        // 15 is missing, asked for once and back: recovered at the first try.
        r.on_packet(ms(t0, 220), 16);
        assert_eq!(poll(&mut r, ms(t0, 220)), [15]);
        assert_eq!(r.on_packet(ms(t0, 225), 15).1, Arrival::Recovered);
        assert_eq!((r.stats.recovered, r.stats.recovered_after_retry), (2, 1));
    }

    #[test]
    fn gives_up_after_ten_tries_or_one_second() {
        let t0 = Instant::now();
        let mut r = NackRequester::new(true);
        r.on_packet(t0, 1);
        r.on_packet(t0, 3);
        let mut sent = 0;
        for k in 0..10 {
            let got = poll(&mut r, ms(t0, 100 * k));
            assert_eq!(got, [2], "try {k}");
            sent += 1;
        }
        assert_eq!((r.stats.nacks_sent, sent), (10, 10));
        assert!(!r.take_keyframe_wanted());
        assert!(r.poll_timeout().unwrap() <= ms(t0, 1000));
        assert_eq!(poll(&mut r, ms(t0, 999)), [] as [u16; 0], "no eleventh try");
        assert_eq!(r.outstanding(), 1);
        assert_eq!(poll(&mut r, ms(t0, 1000)), [] as [u16; 0]);
        assert_eq!((r.outstanding(), r.stats.unrecovered), (0, 1), "given up");
        assert!(r.take_keyframe_wanted());
        assert_eq!(r.on_packet(ms(t0, 1100), 2).1, Arrival::Stale, "too late to count");

        // Polled rarely (a slow RTT): the 1 s age limit ends it after fewer tries.
        let mut r = NackRequester::new(true);
        r.on_packet(t0, 1);
        r.on_packet(t0, 3);
        assert_eq!(poll(&mut r, t0), [2]);
        assert_eq!(poll(&mut r, ms(t0, 600)), [2]);
        assert_eq!(poll(&mut r, ms(t0, 1000)), [] as [u16; 0]);
        assert_eq!((r.stats.nacks_sent, r.stats.unrecovered), (2, 1));
    }

    #[test]
    fn wrap_restart_and_disabled() {
        let t0 = Instant::now();
        let mut r = NackRequester::new(true);
        r.on_packet(t0, 65534);
        r.on_packet(t0, 1);
        assert_eq!(poll(&mut r, t0), [65535, 0]);
        assert_eq!(r.on_packet(t0, 0).1, Arrival::Recovered);
        // A jump of more than MAX_MISSING is a restart: everything is given up, nothing NACKed.
        r.on_packet(t0, 5000);
        assert_eq!((r.outstanding(), r.stats.unrecovered), (0, 1));
        assert!(poll(&mut r, t0).is_empty());

        // --no-nack: gaps are counted as given up at once, nothing is asked for.
        let mut r = NackRequester::new(false);
        r.on_packet(t0, 1);
        r.on_packet(t0, 4);
        assert_eq!((r.outstanding(), r.stats.unrecovered), (0, 2));
        assert!(poll(&mut r, t0).is_empty());
        assert_eq!(r.on_packet(t0, 2).1, Arrival::Stale);
    }

    fn held(seq: u16, ts: u32, marker: bool, payload: &[u8]) -> Held {
        Held { seq, timestamp: ts, marker, payload: payload.to_vec() }
    }

    /// Drives requester + buffer + depacketizer the way a verified viewer does.
    struct Video {
        nack: NackRequester,
        buf: ReorderBuffer,
        depack: rts_rtp::h264::H264Depacketizer,
        frames: Vec<(u32, bool, Instant)>,
        stalls: crate::stats::StallDetector,
        restart_at: Option<u64>,
    }

    impl Video {
        fn new(nack: bool) -> Self {
            Video {
                nack: NackRequester::new(nack),
                buf: ReorderBuffer::new(),
                depack: Default::default(),
                frames: Vec::new(),
                stalls: crate::stats::StallDetector::new(Duration::from_millis(200)),
                restart_at: None,
            }
        }
        fn release(&mut self, now: Instant, p: &Held) {
            let h = rts_rtp::RtpHeader { sequence: p.seq, timestamp: p.timestamp, marker: p.marker, ..Default::default() };
            let mut f = self.depack.push(&h, &p.payload);
            while let Some(fr) = f {
                if fr.complete {
                    self.stalls.on_frame(now);
                }
                self.frames.push((fr.timestamp, fr.complete, now));
                f = self.depack.poll_frame();
            }
        }
        fn drain(&mut self, now: Instant) {
            loop {
                let nack = &self.nack;
                let Some((ext, p)) = self.buf.pop(|e| nack.is_missing(e)) else { break };
                if self.restart_at == Some(ext) {
                    self.depack = Default::default(); // what a viewer does: restart at the keyframe
                }
                self.release(now, &p);
            }
        }
        fn arrive(&mut self, now: Instant, p: Held) {
            let (ext, _) = self.nack.on_packet(now, p.seq);
            match self.buf.place(ext) {
                Slot::Now => self.release(now, &p),
                Slot::Hold => self.buf.hold(ext, p),
                Slot::Late => {}
            }
            self.drain(now);
        }
        fn tick(&mut self, now: Instant) -> Vec<u16> {
            let v = poll(&mut self.nack, now);
            self.drain(now);
            v
        }
    }

    // A frame of two FU-A packets (start, end) and one single-NAL frame.
    const FU_START: [u8; 3] = [0x7c, 0x81, 0xaa];
    const FU_END: [u8; 3] = [0x7c, 0x41, 0xbb];
    const SLICE: [u8; 2] = [0x41, 0xcc];

    #[test]
    fn repaired_packet_completes_the_frame() {
        let t0 = Instant::now();
        let mut v = Video::new(true);
        v.arrive(t0, held(1, 0, true, &SLICE));
        // Frame 2 = packets 2 (lost) and 3; frame 3 = packet 4.
        v.arrive(ms(t0, 33), held(3, 3000, true, &FU_END));
        v.arrive(ms(t0, 66), held(4, 6000, true, &SLICE));
        assert_eq!(v.frames.len(), 1, "frames after the gap wait");
        assert_eq!(v.tick(ms(t0, 66)), [2]);
        assert_eq!(v.buf.len(), 2);
        // The retransmission arrives 20 ms after the NACK.
        v.arrive(ms(t0, 86), held(2, 3000, false, &FU_START));
        let got: Vec<(u32, bool)> = v.frames.iter().map(|f| (f.0, f.1)).collect();
        assert_eq!(got, [(0, true), (3000, true), (6000, true)], "all complete, in order");
        assert!(v.buf.is_empty());
        assert_eq!((v.nack.stats.recovered, v.nack.stats.unrecovered), (1, 0));
        assert_eq!(v.stalls.count, 0);
    }

    #[test]
    fn given_up_gap_is_one_incomplete_frame_then_no_stall() {
        let t0 = Instant::now();
        let mut v = Video::new(true);
        v.arrive(t0, held(1, 0, true, &SLICE));
        v.arrive(ms(t0, 33), held(3, 3000, true, &FU_END)); // 2 never comes
        assert_eq!(v.tick(ms(t0, 33)), [2]);
        let mut seq = 4u16;
        // Frames keep arriving every 33 ms, each held behind the gap; the clock ticks every ms.
        let mut t = 34;
        while t <= 1100 {
            if t % 33 == 0 {
                v.arrive(ms(t0, t), held(seq, u32::from(seq) * 3000, true, &SLICE));
                seq += 1;
            }
            v.tick(ms(t0, t));
            t += 1;
        }
        assert_eq!((v.nack.stats.nacks_sent, v.nack.stats.unrecovered), (10, 1));
        let incomplete: Vec<u32> = v.frames.iter().filter(|f| !f.1).map(|f| f.0).collect();
        assert_eq!(incomplete, [3000], "only the frame that lost a packet");
        // The held frames came out together at the give-up (33 + 1000 ms), then live again.
        let at_give_up = v.frames.iter().filter(|f| f.2 == ms(t0, 1033)).count();
        assert_eq!(at_give_up, 1 + 30, "frame 3000 and the 30 held behind it");
        assert!(v.buf.is_empty());
        let before = v.stalls.count;
        for _ in 0..10 {
            t += 33;
            v.arrive(ms(t0, t), held(seq, u32::from(seq) * 3000, true, &SLICE));
            seq += 1;
            v.tick(ms(t0, t));
        }
        assert_eq!(v.stalls.count, before, "no stall once the gap is given up");

        // Without NACK the gap is skipped at once: no wait, one incomplete frame.
        let mut v = Video::new(false);
        v.arrive(t0, held(1, 0, true, &SLICE));
        v.arrive(ms(t0, 33), held(3, 3000, true, &FU_END));
        v.arrive(ms(t0, 66), held(4, 6000, true, &SLICE));
        let got: Vec<(u32, bool)> = v.frames.iter().map(|f| (f.0, f.1)).collect();
        assert_eq!(got, [(0, true), (3000, false), (6000, true)]);
        assert!(v.tick(ms(t0, 100)).is_empty());
    }

    #[test]
    fn complete_keyframe_ends_the_wait_for_what_lies_before_it() {
        let t0 = Instant::now();
        let mut v = Video::new(true);
        v.arrive(t0, held(1, 0, true, &SLICE));
        v.arrive(t0, held(3, 3000, true, &SLICE)); // 2 lost
        assert_eq!(v.buf.held_keyframe(starts_keyframe), None);
        // 4 lost, then a keyframe in two packets: IDR FU-A start + end.
        v.arrive(t0, held(5, 6000, false, &[0x7c, 0x85, 1]));
        assert_eq!(v.buf.held_keyframe(starts_keyframe), None, "not complete yet");
        v.arrive(t0, held(6, 6000, true, &[0x7c, 0x45, 2]));
        let k = v.buf.held_keyframe(starts_keyframe).unwrap();
        assert_eq!(k as u16, 5);
        assert_eq!(v.nack.oldest_missing_since(), Some(t0));
        v.nack.give_up_before(k);
        v.restart_at = Some(k);
        v.drain(t0);
        // The frame between the gaps is released (incomplete), the keyframe whole.
        assert_eq!(v.frames.iter().map(|f| (f.0, f.1)).collect::<Vec<_>>(), [(0, true), (3000, false), (6000, true)]);
        assert_eq!((v.nack.outstanding(), v.nack.stats.unrecovered), (0, 2));
        assert!(v.buf.is_empty());
    }

    #[test]
    fn keyframe_starts() {
        assert!(starts_keyframe(&[0x67, 0x42])); // SPS
        assert!(starts_keyframe(&[0x65, 0x88])); // IDR
        assert!(starts_keyframe(&[0x78, 0x00, 0x05, 0x67])); // STAP-A with SPS first
        assert!(starts_keyframe(&[0x7c, 0x85])); // FU-A start of IDR
        assert!(!starts_keyframe(&[0x7c, 0x45])); // FU-A end of IDR
        assert!(!starts_keyframe(&[0x41, 0x9a])); // P slice
        assert!(!starts_keyframe(&[]));
    }

    #[test]
    fn rtx_unwrap() {
        assert_eq!(unwrap_rtx(&[0x12, 0x34, 0x41, 0x9a]), Some((0x1234, &[0x41, 0x9a][..])));
        assert_eq!(unwrap_rtx(&[0xff, 0xff]), Some((0xffff, &[][..])));
        assert_eq!(unwrap_rtx(&[1]), None);
    }

    #[test]
    fn red_primary_and_recovery() {
        let mut red = RedAudio::default();
        let mut p = Vec::new();
        // First packet (ts 960*10) carries two frames from before we joined: not recoveries.
        rts_rtp::red::write(111, b"f10", &[(1920, b"f8"), (960, b"f9")], &mut p);
        assert_eq!(red.on_packet(9600, &p, 111), Some(&b"f10"[..]));
        p.clear();
        rts_rtp::red::write(111, b"f11", &[(1920, b"f9"), (960, b"f10")], &mut p);
        assert_eq!(red.on_packet(10560, &p, 111), Some(&b"f11"[..]));
        assert_eq!(red.recovered, 0);
        // Packets 12 and 13 are lost; 14 carries 12 and 13 as redundancy.
        p.clear();
        rts_rtp::red::write(111, b"f14", &[(1920, b"f12"), (960, b"f13")], &mut p);
        assert_eq!(red.on_packet(13440, &p, 111), Some(&b"f14"[..]));
        assert_eq!(red.recovered, 2);
        // 15 repeats 13 (already recovered) and 14: nothing new.
        p.clear();
        rts_rtp::red::write(111, b"f15", &[(1920, b"f13"), (960, b"f14")], &mut p);
        red.on_packet(14400, &p, 111);
        assert_eq!(red.recovered, 2);
        // Blocks of another payload type do not count; garbage is not RED.
        p.clear();
        rts_rtp::red::write(0, b"x", &[(960, b"y")], &mut p);
        red.on_packet(20000, &p, 111);
        assert_eq!(red.recovered, 2);
        assert_eq!(red.on_packet(1, &[0x80], 111), None);
    }

    #[test]
    fn drop_pct_is_deterministic_per_seed() {
        let pattern = |seed| {
            let mut d = Dropper::new(5.0, seed).unwrap();
            (0..100_000).map(|_| d.drop_next()).collect::<Vec<_>>()
        };
        let a = pattern(viewer_seed(1, 0));
        assert_eq!(a, pattern(viewer_seed(1, 0)), "same seed, same drops");
        let b = pattern(viewer_seed(1, 1));
        assert_ne!(a, b, "viewers differ");
        for p in [&a, &b] {
            let n = p.iter().filter(|x| **x).count();
            assert!((4_700..5_300).contains(&n), "{n} of 100000 at 5 %");
        }
        assert!(Dropper::new(0.0, 1).is_none());
        let mut all = Dropper::new(100.0, 7).unwrap();
        assert!((0..1000).all(|_| all.drop_next()));
    }
}
