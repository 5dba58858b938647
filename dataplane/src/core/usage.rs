//! Traffic records for billing (`[billing]`, DESIGN.md §2 "traffic
//! records"): every session (WebRTC viewer, RTMP player, HTTP-FLV viewer,
//! publisher) has a meter of the payload bytes it sent and received (UDP
//! for WebRTC, TCP for the rest). Every `interval_s`, aligned to the Unix
//! clock, each meter with new bytes is cut into an interim record; a
//! channel switch cuts one for the stream left; the end of a session cuts
//! its final record. A session's records add up to its total.
//!
//! Records wait here, numbered, until control says they are on disk
//! (`UsageWritten`); unacknowledged ones are sent again every
//! [`RESEND_AFTER`] and at once when a restarted control asks for a
//! snapshot. So a control that is down or killed loses no traffic: the
//! meters keep counting and the records wait. Past [`MAX_PENDING`] waiting
//! records, interim cuts are put off (the meters keep the bytes; the next
//! cut takes them all), so memory stays bounded and nothing is lost.
//!
//! Totals per domain/app/stream/protocol (cut records plus what the open
//! meters hold) go to control every second for `/metrics`; they only grow,
//! and a key forgotten while idle comes back under a new `gen`.
//!
//! Pure bookkeeping: time is the Unix clock in µs, given by the caller.

use rts_common::ipc::{ShardToControl, UsageKey, UsageRecord, UsageTotal, USAGE_MESSAGE_BYTES};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;

/// An unacknowledged record is sent again after this long (µs).
pub const RESEND_AFTER_US: u64 = 5_000_000;
/// Records waiting for control beyond which interim cuts are put off.
pub const MAX_PENDING: usize = 100_000;
/// Records sent (new or again) per [`UsageBook::poll_messages`] call.
pub const SEND_PER_POLL: usize = 2_048;
/// A key without open meters is forgotten after this long idle (µs).
pub const KEY_IDLE_US: u64 = 600_000_000;

pub struct UsageBook {
    on: bool,
    interval_us: u64,
    shard: u32,
    boot: u64,
    next_seq: u64,
    next_gen: u64,
    next_cut_us: u64,
    meters: HashMap<u64, Meter>,
    totals: HashMap<UsageKey, KeyTotal>,
    /// Records not yet acknowledged, by number, with when they were last sent.
    pending: BTreeMap<u64, (UsageRecord, Option<u64>)>,
    /// Numbers of pending records never sent (or to send again at once).
    unsent: VecDeque<u64>,
    /// Interim cuts put off because too many records were waiting.
    pub deferred_cuts: u64,
}

struct Meter {
    /// What the bytes are billed to; None until the connection publishes
    /// or plays (the bytes of one that never does are not billed).
    key: Option<UsageKey>,
    client: Option<SocketAddr>,
    session_start_us: u64,
    /// Start of the interval the next record covers.
    from_us: u64,
    total_in: u64,
    total_out: u64,
    billed_in: u64,
    billed_out: u64,
    records: u32,
}

struct KeyTotal {
    gen: u64,
    bytes_in: u64,
    bytes_out: u64,
    open: u32,
    idle_since_us: u64,
}

impl UsageBook {
    /// `interval_s`: None = billing off (nothing is metered). `boot`: this
    /// dataplane run (Unix µs at its start), part of every record's id.
    pub fn new(interval_s: Option<u32>, shard: u32, boot: u64) -> UsageBook {
        let interval_us = interval_s.map_or(0, |s| s.max(1) as u64 * 1_000_000);
        UsageBook {
            on: interval_s.is_some(),
            interval_us,
            shard,
            boot,
            next_seq: 1,
            next_gen: 1,
            next_cut_us: if interval_us > 0 { next_boundary(boot, interval_us) } else { u64::MAX },
            meters: HashMap::new(),
            totals: HashMap::new(),
            pending: BTreeMap::new(),
            unsent: VecDeque::new(),
            deferred_cuts: 0,
        }
    }

    pub fn is_on(&self) -> bool {
        self.on
    }

    /// A reload changed `interval_s`: the next cut is the new interval's
    /// next boundary after `now_us` (billing stays on or off as it started).
    pub fn set_interval(&mut self, interval_s: u32, now_us: u64) {
        if !self.on {
            return;
        }
        self.interval_us = u64::from(interval_s.max(1)) * 1_000_000;
        self.next_cut_us = next_boundary(now_us, self.interval_us);
    }

    pub fn boot(&self) -> u64 {
        self.boot
    }

    /// Records waiting for control.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    pub fn meters(&self) -> usize {
        self.meters.len()
    }

    /// A session starts at `now_us`.
    pub fn open(&mut self, session: u64, key: Option<UsageKey>, client: Option<SocketAddr>, now_us: u64) {
        if !self.on || self.meters.contains_key(&session) {
            return;
        }
        if let Some(k) = &key {
            self.key_opened(k);
        }
        let m = Meter { key, client, session_start_us: now_us, from_us: now_us, total_in: 0, total_out: 0, billed_in: 0, billed_out: 0, records: 0 };
        self.meters.insert(session, m);
    }

    /// The domain the session's bytes are billed to now.
    pub fn domain(&self, session: u64) -> String {
        self.meters.get(&session).and_then(|m| m.key.as_ref()).map(|k| k.domain.clone()).unwrap_or_default()
    }

    pub fn set_client(&mut self, session: u64, client: SocketAddr) {
        if let Some(m) = self.meters.get_mut(&session) {
            m.client = Some(client);
        }
    }

    /// Bytes a session received (`bytes_in`) and sent (`bytes_out`) since
    /// the last call.
    pub fn add(&mut self, session: u64, bytes_in: u64, bytes_out: u64) {
        if let Some(m) = self.meters.get_mut(&session) {
            m.total_in += bytes_in;
            m.total_out += bytes_out;
        }
    }

    /// A session's byte counts so far, for owners that keep their own
    /// (WebRTC sessions). Counts never go back.
    pub fn set_totals(&mut self, session: u64, total_in: u64, total_out: u64) {
        if let Some(m) = self.meters.get_mut(&session) {
            m.total_in = m.total_in.max(total_in);
            m.total_out = m.total_out.max(total_out);
        }
    }

    /// The session's bytes are billed to `key` from `now_us` on; the bytes
    /// so far go to the key it had (an interim record), or, when it had
    /// none, to this one.
    pub fn set_key(&mut self, session: u64, key: UsageKey, now_us: u64) {
        let Some(old) = self.meters.get(&session).map(|m| m.key.clone()) else { return };
        if old.as_ref() == Some(&key) {
            return;
        }
        if let Some(old) = old {
            self.cut(session, now_us, false, true);
            self.key_closed(&old, now_us);
        }
        self.key_opened(&key);
        if let Some(m) = self.meters.get_mut(&session) {
            m.key = Some(key);
        }
    }

    /// The session ended at `now_us`: its final record.
    pub fn close(&mut self, session: u64, now_us: u64) {
        if !self.meters.contains_key(&session) {
            return;
        }
        self.cut(session, now_us, true, true);
        if let Some(m) = self.meters.remove(&session) {
            if let Some(k) = m.key {
                self.key_closed(&k, now_us);
            }
        }
    }

    /// Whether the interval boundary has passed: call [`UsageBook::cut_all`].
    pub fn cut_due(&self, now_us: u64) -> bool {
        now_us >= self.next_cut_us
    }

    /// Interim records for every session with new bytes.
    pub fn cut_all(&mut self, now_us: u64) {
        if self.interval_us > 0 {
            self.next_cut_us = next_boundary(now_us, self.interval_us);
        }
        let ids: Vec<u64> = self.meters.keys().copied().collect();
        for id in ids {
            self.cut(id, now_us, false, false);
        }
    }

    /// Cuts the session's record up to `now_us`. Interim records with no
    /// bytes are not made; a final one is when the session had records
    /// before (it marks the end). `must`: a key change or the end, never
    /// put off.
    fn cut(&mut self, session: u64, now_us: u64, last: bool, must: bool) {
        if !must && self.pending.len() >= MAX_PENDING {
            self.deferred_cuts += 1;
            return;
        }
        let Some(m) = self.meters.get_mut(&session) else { return };
        let Some(key) = m.key.clone() else { return };
        let (bytes_in, bytes_out) = (m.total_in - m.billed_in, m.total_out - m.billed_out);
        if bytes_in == 0 && bytes_out == 0 && !(last && m.records > 0) {
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let record = UsageRecord {
            boot: self.boot,
            shard: self.shard,
            seq,
            key: key.clone(),
            session,
            client: m.client,
            session_start_us: m.session_start_us,
            start_us: m.from_us,
            end_us: now_us.max(m.from_us),
            last,
            bytes_in,
            bytes_out,
        };
        m.billed_in = m.total_in;
        m.billed_out = m.total_out;
        m.from_us = record.end_us;
        m.records += 1;
        if let Some(t) = self.totals.get_mut(&key) {
            t.bytes_in += bytes_in;
            t.bytes_out += bytes_out;
        }
        self.pending.insert(seq, (record, None));
        self.unsent.push_back(seq);
    }

    fn key_opened(&mut self, key: &UsageKey) {
        let gen = &mut self.next_gen;
        let t = self.totals.entry(key.clone()).or_insert_with(|| {
            *gen += 1;
            KeyTotal { gen: *gen - 1, bytes_in: 0, bytes_out: 0, open: 0, idle_since_us: 0 }
        });
        t.open += 1;
    }

    fn key_closed(&mut self, key: &UsageKey, now_us: u64) {
        if let Some(t) = self.totals.get_mut(key) {
            t.open = t.open.saturating_sub(1);
            if t.open == 0 {
                t.idle_since_us = now_us;
            }
        }
    }

    /// Control wrote these records (of dataplane run `boot`).
    pub fn written(&mut self, boot: u64, seqs: &[u64]) {
        if boot != self.boot {
            return;
        }
        for s in seqs {
            self.pending.remove(s);
        }
    }

    /// A (re)started control: everything waiting goes again now.
    pub fn resend_all(&mut self) {
        self.unsent.clear();
        for (&seq, (_, sent)) in self.pending.iter_mut() {
            *sent = None;
            self.unsent.push_back(seq);
        }
    }

    /// `Usage` messages for records never sent and records unacknowledged
    /// for [`RESEND_AFTER_US`], at most [`SEND_PER_POLL`] records.
    pub fn poll_messages(&mut self, now_us: u64, out: &mut VecDeque<ShardToControl>) {
        let mut batch: Vec<UsageRecord> = Vec::new();
        let mut size = 0;
        let mut budget = SEND_PER_POLL;
        let mut flush = |batch: &mut Vec<UsageRecord>, size: &mut usize| {
            if !batch.is_empty() {
                out.push_back(ShardToControl::Usage(std::mem::take(batch)));
            }
            *size = 0;
        };
        let mut take = |r: &mut (UsageRecord, Option<u64>), batch: &mut Vec<UsageRecord>, size: &mut usize| {
            let n = r.0.encoded_max();
            if *size + n > USAGE_MESSAGE_BYTES {
                flush(batch, size);
            }
            *size += n;
            batch.push(r.0.clone());
            r.1 = Some(now_us);
        };
        while budget > 0 {
            let Some(seq) = self.unsent.pop_front() else { break };
            if let Some(r) = self.pending.get_mut(&seq) {
                take(r, &mut batch, &mut size);
                budget -= 1;
            }
        }
        if budget > 0 {
            for r in self.pending.values_mut() {
                if budget == 0 {
                    break;
                }
                if r.1.is_some_and(|t| now_us.saturating_sub(t) >= RESEND_AFTER_US) {
                    take(r, &mut batch, &mut size);
                    budget -= 1;
                }
            }
        }
        if !batch.is_empty() {
            out.push_back(ShardToControl::Usage(batch));
        }
    }

    /// Per-key totals (cut records plus the open meters' uncut bytes), in
    /// `UsageTotals` chunks; keys idle for [`KEY_IDLE_US`] are forgotten.
    pub fn totals_messages(&mut self, now_us: u64, out: &mut VecDeque<ShardToControl>) {
        self.totals.retain(|_, t| t.open > 0 || now_us.saturating_sub(t.idle_since_us) < KEY_IDLE_US);
        let mut live: HashMap<&UsageKey, (u64, u64)> = HashMap::new();
        for m in self.meters.values() {
            if let Some(k) = &m.key {
                let e = live.entry(k).or_default();
                e.0 += m.total_in - m.billed_in;
                e.1 += m.total_out - m.billed_out;
            }
        }
        let mut chunk = Vec::new();
        let mut size = 0;
        for (k, t) in &self.totals {
            let (li, lo) = live.get(k).copied().unwrap_or_default();
            let n = k.encoded_max() + 30;
            if size + n > USAGE_MESSAGE_BYTES {
                out.push_back(ShardToControl::UsageTotals(std::mem::take(&mut chunk)));
                size = 0;
            }
            size += n;
            chunk.push(UsageTotal { key: k.clone(), gen: t.gen, bytes_in: t.bytes_in + li, bytes_out: t.bytes_out + lo });
        }
        if !chunk.is_empty() {
            out.push_back(ShardToControl::UsageTotals(chunk));
        }
    }
}

/// The first multiple of `interval_us` after `now_us`.
fn next_boundary(now_us: u64, interval_us: u64) -> u64 {
    (now_us / interval_us + 1) * interval_us
}

#[cfg(test)]
mod tests {
    use super::*;
    use rts_common::ipc::Protocol;

    const S: u64 = 1_000_000;
    /// 2026-12-07 00:00:10 UTC.
    const T0: u64 = 1_796_601_610 * S;

    fn key(stream: &str, p: Protocol) -> UsageKey {
        UsageKey::new("example.com", "live", stream, p)
    }

    fn records(out: &mut VecDeque<ShardToControl>) -> Vec<UsageRecord> {
        let mut v = Vec::new();
        while let Some(m) = out.pop_front() {
            if let ShardToControl::Usage(r) = m {
                v.extend(r);
            }
        }
        v
    }

    fn drain(b: &mut UsageBook, now: u64) -> Vec<UsageRecord> {
        let mut out = VecDeque::new();
        b.poll_messages(now, &mut out);
        records(&mut out)
    }

    #[test]
    fn interim_records_at_aligned_boundaries_add_up_to_the_session() {
        let mut b = UsageBook::new(Some(60), 3, T0);
        let client: SocketAddr = "10.0.0.9:5000".parse().unwrap();
        b.open(7, Some(key("s", Protocol::Flv)), Some(client), T0);
        b.add(7, 100, 1_000);
        // T0 is 10 s into a minute: the first boundary is 50 s later.
        assert!(!b.cut_due(T0 + 49 * S));
        assert!(b.cut_due(T0 + 50 * S));
        b.cut_all(T0 + 50 * S);
        b.add(7, 0, 2_000);
        assert!(!b.cut_due(T0 + 109 * S));
        b.cut_all(T0 + 110 * S);
        // Nothing new: no record.
        b.cut_all(T0 + 170 * S);
        b.add(7, 5, 500);
        b.close(7, T0 + 200 * S);
        let r = drain(&mut b, T0 + 200 * S);
        let got: Vec<_> = r.iter().map(|r| (r.start_us - T0, r.end_us - T0, r.last, r.bytes_in, r.bytes_out)).collect();
        assert_eq!(got, vec![(0, 50 * S, false, 100, 1_000), (50 * S, 110 * S, false, 0, 2_000), (110 * S, 200 * S, true, 5, 500)]);
        assert!(r.iter().all(|r| r.session == 7 && r.client == Some(client) && r.shard == 3 && r.boot == T0 && r.session_start_us == T0));
        assert_eq!(r.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(b.meters(), 0);
    }

    #[test]
    fn unacknowledged_records_go_again_until_written() {
        let mut b = UsageBook::new(Some(10), 0, T0);
        b.open(1, Some(key("s", Protocol::Webrtc)), None, T0);
        b.set_totals(1, 10, 1_000);
        b.close(1, T0 + S);
        assert_eq!(drain(&mut b, T0 + S).len(), 1);
        // Sent, not acknowledged: not again before RESEND_AFTER.
        assert!(drain(&mut b, T0 + S + RESEND_AFTER_US - 1).is_empty());
        let again = drain(&mut b, T0 + S + RESEND_AFTER_US);
        assert_eq!(again.len(), 1);
        // A restarted control gets it at once.
        b.resend_all();
        assert_eq!(drain(&mut b, T0 + S + RESEND_AFTER_US + 1).len(), 1);
        // An acknowledgement of another dataplane run changes nothing.
        b.written(T0 + 1, &[again[0].seq]);
        assert_eq!(b.pending(), 1);
        b.written(T0, &[again[0].seq]);
        assert_eq!(b.pending(), 0);
        assert!(drain(&mut b, T0 + 60 * S).is_empty());
    }

    #[test]
    fn a_key_change_cuts_the_old_key_and_unkeyed_bytes_go_to_the_first_key() {
        let mut b = UsageBook::new(Some(60), 0, T0);
        // An RTMP connection: handshake bytes before it plays.
        b.open(5, None, None, T0);
        b.add(5, 3_000, 3_100);
        b.set_key(5, key("a", Protocol::Rtmp), T0 + S);
        b.add(5, 10, 4_000);
        // A WebRTC-like switch: the bytes so far go to "a".
        b.set_key(5, key("b", Protocol::Rtmp), T0 + 2 * S);
        b.add(5, 1, 700);
        b.close(5, T0 + 3 * S);
        let r = drain(&mut b, T0 + 3 * S);
        let got: Vec<_> = r.iter().map(|r| (r.key.stream.as_str(), r.start_us - T0, r.last, r.bytes_in, r.bytes_out)).collect();
        assert_eq!(got, vec![("a", 0, false, 3_010, 7_100), ("b", 2 * S, true, 1, 700)]);
        // A connection that never plays or publishes is not billed.
        b.open(6, None, None, T0);
        b.add(6, 500, 500);
        b.close(6, T0 + 4 * S);
        assert!(drain(&mut b, T0 + 4 * S).is_empty());
    }

    #[test]
    fn totals_grow_with_open_meters_and_only_grow() {
        let mut b = UsageBook::new(Some(1), 0, T0);
        let totals = |b: &mut UsageBook, now: u64| {
            let mut out = VecDeque::new();
            b.totals_messages(now, &mut out);
            let mut v: Vec<(String, u64, u64)> = Vec::new();
            for m in out {
                if let ShardToControl::UsageTotals(t) = m {
                    v.extend(t.into_iter().map(|t| (t.key.stream, t.gen, t.bytes_out)));
                }
            }
            v.sort();
            v
        };
        b.open(1, Some(key("s", Protocol::Flv)), None, T0);
        b.open(2, Some(key("s", Protocol::Flv)), None, T0);
        b.add(1, 0, 100);
        b.add(2, 0, 50);
        assert_eq!(totals(&mut b, T0), vec![("s".into(), 1, 150)]);
        b.cut_all(T0 + S);
        b.add(1, 0, 10);
        assert_eq!(totals(&mut b, T0 + S), vec![("s".into(), 1, 160)]);
        b.close(1, T0 + 2 * S);
        b.close(2, T0 + 2 * S);
        assert_eq!(totals(&mut b, T0 + 2 * S), vec![("s".into(), 1, 160)]);
        // Idle past KEY_IDLE_US: forgotten; back under a new generation.
        assert!(totals(&mut b, T0 + 2 * S + KEY_IDLE_US).is_empty());
        b.open(3, Some(key("s", Protocol::Flv)), None, T0);
        b.add(3, 0, 7);
        assert_eq!(totals(&mut b, T0 + 3 * S + KEY_IDLE_US), vec![("s".into(), 2, 7)]);
    }

    #[test]
    fn too_many_waiting_records_put_interims_off_without_losing_bytes() {
        let mut b = UsageBook::new(Some(1), 0, T0);
        for s in 0..MAX_PENDING as u64 {
            b.open(s, Some(key("s", Protocol::Flv)), None, T0);
            b.add(s, 0, 1);
        }
        b.cut_all(T0 + S);
        assert_eq!(b.pending(), MAX_PENDING);
        b.add(0, 0, 9);
        b.cut_all(T0 + 2 * S);
        assert_eq!((b.pending(), b.deferred_cuts), (MAX_PENDING, MAX_PENDING as u64));
        // Control catches up; the next cut takes what was put off.
        let all: Vec<u64> = (1..=MAX_PENDING as u64).collect();
        b.written(T0, &all);
        b.add(0, 0, 1);
        b.cut_all(T0 + 3 * S);
        let r = drain(&mut b, T0 + 3 * S);
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].start_us - T0, r[0].bytes_out), (S, 10));
    }

    #[test]
    fn messages_stay_under_the_slot_budget() {
        let mut b = UsageBook::new(Some(1), 0, T0);
        let long = "x".repeat(300);
        for s in 0..50 {
            b.open(s, Some(UsageKey::new(&long, &long, &format!("{long}{s}"), Protocol::Webrtc)), Some("[::1]:1".parse().unwrap()), T0);
            b.add(s, 1, 1);
        }
        b.cut_all(T0 + S);
        let mut out = VecDeque::new();
        b.poll_messages(T0 + S, &mut out);
        b.totals_messages(T0 + S, &mut out);
        let mut n = 0;
        for m in &out {
            let len = rts_common::ipc::encode(m).len();
            assert!(len <= USAGE_MESSAGE_BYTES, "{len}");
            if let ShardToControl::Usage(r) = m {
                n += r.len();
            }
        }
        assert_eq!(n, 50);
    }
}
