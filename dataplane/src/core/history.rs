//! The retransmission history of one track of a stream on this shard: the
//! shared packets (`Bytes`, the same ones every viewer was sent) by their
//! stream sequence number, for a bounded time and a bounded count. One
//! history serves every viewer of the stream on the shard; a viewer's lost
//! sequence number is mapped back to the stream's by its header rewrite
//! state (`TrackOut::source_seq`).

use bytes::Bytes;
use std::time::{Duration, Instant};

/// Video kept for retransmission: Chrome asks again every RTT for up to 10
/// tries (about a second at 100 ms), and a viewer's GOP replay sends
/// packets that were delivered up to a GOP earlier (the GOP cache itself
/// is searched too); 3 s covers both at any bitrate up to the slot count
/// (8,192 packets: ~26 Mbit/s for 3 s).
pub const VIDEO_AGE: Duration = Duration::from_millis(3_000);
pub const VIDEO_SLOTS: usize = 8_192;
/// Audio: 1 s (50 packets of 20 ms) in 256 slots.
pub const AUDIO_AGE: Duration = Duration::from_millis(1_000);
pub const AUDIO_SLOTS: usize = 256;

#[derive(Default)]
struct Entry {
    seq: u16,
    at: Option<Instant>,
    packet: Option<Bytes>,
}

pub struct History {
    /// Indexed by sequence number modulo the (power of two) slot count.
    slots: Box<[Entry]>,
    max_age: Duration,
    /// The oldest sequence number that may still hold a packet, and the
    /// next one to be recorded: packets are dropped from the tail once
    /// older than `max_age`, so memory follows time, not the slot count.
    tail: u16,
    head: u16,
    started: bool,
}

impl History {
    /// `slots` is rounded up to a power of two (at most 32,768, half the
    /// sequence space, so a slot never holds an ambiguous number).
    pub fn new(slots: usize, max_age: Duration) -> History {
        let n = slots.clamp(2, 1 << 15).next_power_of_two();
        History { slots: (0..n).map(|_| Entry::default()).collect(), max_age, tail: 0, head: 0, started: false }
    }

    pub fn video() -> History {
        History::new(VIDEO_SLOTS, VIDEO_AGE)
    }

    pub fn audio() -> History {
        History::new(AUDIO_SLOTS, AUDIO_AGE)
    }

    fn slot(&self, seq: u16) -> usize {
        seq as usize & (self.slots.len() - 1)
    }

    /// Keeps `packet` (an RTP packet: its sequence number is read from it),
    /// sent at `now`.
    pub fn record(&mut self, packet: &Bytes, now: Instant) {
        if packet.len() < 12 {
            return;
        }
        let seq = u16::from_be_bytes([packet[2], packet[3]]);
        if !self.started || seq.wrapping_sub(self.head) >= 1 << 15 {
            // First packet, or a jump backwards (new source): start over.
            self.clear();
            self.started = true;
            self.tail = seq;
        } else if seq.wrapping_sub(self.tail) as usize >= self.slots.len() {
            // The window moves on: numbers that fall out of it are gone.
            self.tail = seq.wrapping_sub(self.slots.len() as u16 - 1);
        }
        let i = self.slot(seq);
        self.slots[i] = Entry { seq, at: Some(now), packet: Some(packet.clone()) };
        self.head = seq.wrapping_add(1);
        self.expire(now);
    }

    /// Drops packets older than the age bound from the tail.
    fn expire(&mut self, now: Instant) {
        while self.tail != self.head {
            let i = self.slot(self.tail);
            let e = &mut self.slots[i];
            if e.seq == self.tail && e.at.is_some_and(|at| now.saturating_duration_since(at) <= self.max_age) {
                break;
            }
            if e.seq == self.tail {
                e.packet = None;
            }
            self.tail = self.tail.wrapping_add(1);
        }
    }

    /// The packet with stream sequence number `seq`, if still kept at `now`.
    pub fn get(&self, seq: u16, now: Instant) -> Option<&Bytes> {
        let e = &self.slots[self.slot(seq)];
        if e.seq != seq || e.at.is_none_or(|at| now.saturating_duration_since(at) > self.max_age) {
            return None;
        }
        e.packet.as_ref()
    }

    /// Up to `max` packets recorded at or after `since`, walking back from
    /// the one before `before`, newest first: (sequence number, packet).
    pub fn recent_before(&self, before: u16, since: Instant, max: usize) -> impl Iterator<Item = (u16, &Bytes)> + '_ {
        // Packets from `tail` up to `before`, when `before` is within the window.
        let within = self.started && before.wrapping_sub(self.tail) <= self.head.wrapping_sub(self.tail);
        let span = if within { before.wrapping_sub(self.tail) as usize } else { 0 };
        (1..=span.min(max)).map_while(move |back| {
            let seq = before.wrapping_sub(back as u16);
            let e = &self.slots[self.slot(seq)];
            match (&e.packet, e.at) {
                (Some(p), Some(at)) if e.seq == seq && at >= since => Some((seq, p)),
                _ => None,
            }
        })
    }

    /// Packets held now (for tests and stats).
    pub fn len(&self) -> usize {
        self.slots.iter().filter(|e| e.packet.is_some()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn clear(&mut self) {
        for e in self.slots.iter_mut() {
            *e = Entry::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(seq: u16) -> Bytes {
        let mut p = vec![0u8; 20];
        rts_rtp::write_rtp_header(&mut p, false, 96, seq, 0, 1);
        p[12] = seq as u8;
        Bytes::from(p)
    }

    #[test]
    fn keeps_packets_by_sequence_until_too_old() {
        let t0 = Instant::now();
        let mut h = History::new(8, Duration::from_millis(100));
        for (i, s) in (65530u16..=65535).chain(0..2).enumerate() {
            h.record(&pkt(s), t0 + Duration::from_millis(10 * i as u64));
        }
        let now = t0 + Duration::from_millis(75);
        assert_eq!(h.get(65530, now).map(|p| p[12]), Some(250), "across the wrap");
        assert_eq!(h.get(1, now).map(|p| p[12]), Some(1));
        assert_eq!(h.get(2, now), None, "not sent");
        assert_eq!(h.get(65529, now), None);
        // 101 ms after it was sent, a packet is gone.
        assert_eq!(h.get(65530, t0 + Duration::from_millis(101)), None);
        assert!(h.get(65531, t0 + Duration::from_millis(101)).is_some());
    }

    #[test]
    fn recent_packets_before_a_number_newest_first() {
        let t0 = Instant::now();
        let mut h = History::new(64, Duration::from_secs(3));
        // 65530..=65535, 0..=3 sent 10 ms apart (across the wrap).
        for (i, s) in (65530u16..=65535).chain(0..4).enumerate() {
            h.record(&pkt(s), t0 + Duration::from_millis(10 * i as u64));
        }
        let seqs = |before: u16, since_ms: u64, max: usize| -> Vec<u16> {
            h.recent_before(before, t0 + Duration::from_millis(since_ms), max).map(|(s, _)| s).collect()
        };
        assert_eq!(seqs(2, 40, 10), [1, 0, 65535, 65534], "sent at 70, 60, 50, 40 ms");
        assert_eq!(seqs(2, 0, 3), [1, 0, 65535], "at most `max`");
        assert_eq!(seqs(4, 85, 10), [3], "the newest packet");
        assert_eq!(seqs(65530, 0, 10), Vec::<u16>::new(), "nothing before the first");
        assert_eq!(seqs(9, 0, 10), Vec::<u16>::new(), "a number not reached yet");
        assert_eq!(seqs(2, 0, 10), [1, 0, 65535, 65534, 65533, 65532, 65531, 65530]);
    }

    #[test]
    fn bounded_in_packets_and_memory_follows_time() {
        let t0 = Instant::now();
        let mut h = History::new(16, Duration::from_secs(10));
        for s in 0..40u16 {
            h.record(&pkt(s), t0);
        }
        assert_eq!(h.len(), 16);
        assert!(h.get(23, t0).is_none(), "overwritten by 39");
        assert!(h.get(24, t0).is_some());
        // Long after: the next record releases everything that expired.
        let later = t0 + Duration::from_secs(11);
        h.record(&pkt(40), later);
        assert_eq!(h.len(), 1, "expired packets are released, not just hidden");
        // A jump back (a new source) starts over.
        h.record(&pkt(5), later);
        assert_eq!((h.len(), h.get(40, later).is_some(), h.get(5, later).is_some()), (1, false, true));
    }
}
