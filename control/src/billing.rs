//! Traffic records on disk (`[billing]`), and the per-key totals.
//!
//! The shards cut usage records and resend each until control says it is
//! written (`UsageWritten`, see dataplane/src/core/usage.rs). Here a writer
//! thread appends them as JSON lines to hourly files under `[billing] path`
//! (`usage-YYYYMMDDTHH.jsonl`, the UTC hour the record's interval ended),
//! syncs the files, and only then acknowledges: a control killed at any
//! point loses no record. A record whose acknowledgement died with a killed
//! control comes again; the ids in the files of the last
//! [`DEDUP_HOURS`] hours are remembered (read back at start), so it is not
//! written twice. Every write is whole lines: a failed write is cut back to
//! where it started, and a half line left by a crash is cut off at start.
//!
//! [`UsageTotals`] sums the shards' per-key counts (domain/app/stream/
//! protocol) for the admin `/metrics`: from each shard's increments, so
//! they never decrease while control runs.

use crate::engine::Engine;
use rts_common::ipc::{ControlToShard, UsageKey, UsageRecord, UsageTotal};
use std::collections::{BTreeMap, HashMap};
use std::fs::OpenOptions;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Weak;

/// Hours of files whose record ids are remembered against duplicates.
pub const DEDUP_HOURS: u64 = 3;
/// Sequence numbers per `UsageWritten` message (fits the smallest slot).
const ACKS_PER_MESSAGE: usize = 128;

/// A record's id in the files: dataplane run, shard, number.
pub fn record_id(r: &UsageRecord) -> String {
    format!("{:x}-{}-{}", r.boot, r.shard, r.seq)
}

/// RFC 3339 UTC time of a Unix time in µs (to the ms).
pub fn rfc3339(us: u64) -> String {
    rts_common::config::utc_iso8601(us / 1000)
}

/// The file of the hour `unix_s` falls in.
pub fn file_name(unix_s: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(unix_s as i64).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let f = time::macros::format_description!("usage-[year][month][day]T[hour].jsonl");
    t.format(&f).unwrap_or_default()
}

/// One record as its JSON line (with the newline).
pub fn record_line(r: &UsageRecord) -> String {
    let v = serde_json::json!({
        "id": record_id(r),
        "kind": if r.last { "final" } else { "interim" },
        "domain": r.key.domain,
        "app": r.key.app,
        "stream": r.key.stream,
        "protocol": r.key.protocol.map_or("", |p| p.as_str()),
        "session": format!("{:016x}", r.session),
        "client": r.client.map(|c| c.to_string()),
        "session_start": rfc3339(r.session_start_us),
        "start": rfc3339(r.start_us),
        "end": rfc3339(r.end_us),
        "bytes_out": r.bytes_out,
        "bytes_in": r.bytes_in,
        "shard": r.shard,
    });
    let mut line = v.to_string();
    line.push('\n');
    line
}

/// The hourly files.
pub struct UsageLog {
    dir: PathBuf,
    /// Ids written in the last hours, with their hour.
    seen: HashMap<String, u64>,
    newest_hour: u64,
}

/// What one [`UsageLog::write`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Written {
    pub lines: usize,
    pub duplicates: usize,
}

impl UsageLog {
    /// Opens (creates) `dir`; files of the last [`DEDUP_HOURS`] hours
    /// before `now_s` get a half last line cut off and their ids read.
    pub fn open(dir: &Path, now_s: u64) -> io::Result<UsageLog> {
        std::fs::create_dir_all(dir)?;
        let mut log = UsageLog { dir: dir.to_path_buf(), seen: HashMap::new(), newest_hour: now_s / 3600 };
        for hour in (now_s / 3600).saturating_sub(DEDUP_HOURS)..=now_s / 3600 + 1 {
            let path = dir.join(file_name(hour * 3600));
            if let Ok(ids) = repair_and_read_ids(&path) {
                for id in ids {
                    log.seen.insert(id, hour);
                }
            }
        }
        Ok(log)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends the records not written before, as whole lines, and syncs
    /// the files. Err: nothing of the failed file was kept (the caller
    /// does not acknowledge; the shard sends them again).
    pub fn write(&mut self, records: &[UsageRecord]) -> io::Result<Written> {
        let mut by_file: BTreeMap<u64, (String, Vec<String>)> = BTreeMap::new();
        let mut w = Written::default();
        // A record can come twice in one batch: the copy a shard sent while
        // control was down waits in the ring, and a restarted control's
        // snapshot request sends it again at once.
        let mut in_batch = std::collections::HashSet::new();
        for r in records {
            let id = record_id(r);
            if self.seen.contains_key(&id) || !in_batch.insert(id.clone()) {
                w.duplicates += 1;
                continue;
            }
            let hour = r.end_us / 3_600_000_000;
            let e = by_file.entry(hour).or_default();
            e.0.push_str(&record_line(r));
            e.1.push(id);
        }
        for (hour, (text, ids)) in by_file {
            let path = self.dir.join(file_name(hour * 3600));
            append_whole(&path, text.as_bytes())?;
            w.lines += ids.len();
            for id in ids {
                self.seen.insert(id, hour);
            }
            if hour > self.newest_hour {
                self.newest_hour = hour;
                let keep = hour.saturating_sub(DEDUP_HOURS);
                self.seen.retain(|_, h| *h >= keep);
            }
        }
        Ok(w)
    }
}

/// Appends `data` and syncs; on failure the file is cut back to where it was.
fn append_whole(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new().create(true).append(true).open(path)?;
    let len = f.metadata()?.len();
    if let Err(e) = f.write_all(data).and_then(|()| f.sync_data()) {
        let _ = f.set_len(len);
        return Err(e);
    }
    Ok(())
}

/// Cuts a half last line off `path` (a crash mid-write) and returns the
/// ids of its records.
fn repair_and_read_ids(path: &Path) -> io::Result<Vec<String>> {
    let mut f = OpenOptions::new().read(true).write(true).open(path)?;
    let mut text = Vec::new();
    f.read_to_end(&mut text)?;
    let whole = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if whole < text.len() {
        tracing::warn!(path = %path.display(), cut = text.len() - whole, "usage file ended in a half line; cut off");
        f.set_len(whole as u64)?;
        f.seek(SeekFrom::End(0))?;
        f.sync_data()?;
    }
    #[derive(serde::Deserialize)]
    struct Id {
        id: String,
    }
    Ok(text[..whole].split(|&b| b == b'\n').filter_map(|l| serde_json::from_slice::<Id>(l).ok()).map(|r| r.id).collect())
}

/// The writer thread's end of the channel: records from a shard.
pub struct Billing {
    tx: mpsc::Sender<(usize, Vec<UsageRecord>)>,
}

impl Billing {
    /// Starts the writer thread on `dir`; it acknowledges through `engine`.
    pub fn start(dir: &Path, engine: Weak<Engine>) -> io::Result<Billing> {
        let mut log = UsageLog::open(dir, rts_common::config::unix_now())?;
        tracing::info!(path = %dir.display(), remembered = log.seen.len(), "usage records");
        let (tx, rx) = mpsc::channel::<(usize, Vec<UsageRecord>)>();
        std::thread::Builder::new().name("rts-billing".into()).spawn(move || {
            let mut failing = false;
            while let Ok(first) = rx.recv() {
                // Everything waiting goes in one write and one sync per file.
                let mut batch = vec![first];
                while let Ok(more) = rx.try_recv() {
                    batch.push(more);
                }
                let records: Vec<UsageRecord> = batch.iter().flat_map(|(_, r)| r.iter().cloned()).collect();
                match log.write(&records) {
                    Ok(w) => {
                        if failing {
                            tracing::info!("usage records are written again");
                            failing = false;
                        }
                        if w.duplicates > 0 {
                            tracing::info!(duplicates = w.duplicates, "usage records written before (acknowledged again)");
                        }
                    }
                    Err(e) => {
                        if !failing {
                            tracing::error!(path = %log.dir().display(), error = %e, "writing usage records failed; the shards keep them and send them again");
                        }
                        failing = true;
                        continue;
                    }
                }
                let Some(engine) = engine.upgrade() else { return };
                let mut acks: BTreeMap<(usize, u64), Vec<u64>> = BTreeMap::new();
                for (shard, rs) in &batch {
                    for r in rs {
                        acks.entry((*shard, r.boot)).or_default().push(r.seq);
                    }
                }
                for ((shard, boot), seqs) in acks {
                    for chunk in seqs.chunks(ACKS_PER_MESSAGE) {
                        // A full backlog: the shard sends them again and
                        // they are acknowledged then (as duplicates).
                        let _ = engine.send(shard, ControlToShard::UsageWritten { boot, seqs: chunk.to_vec() });
                    }
                }
            }
        })?;
        Ok(Billing { tx })
    }

    pub fn submit(&self, shard: usize, records: Vec<UsageRecord>) {
        let _ = self.tx.send((shard, records));
    }
}

/// The shards' traffic per key, summed from each shard's increments.
#[derive(Debug, Default)]
pub struct UsageTotals {
    /// Each shard's last report per key: (gen, bytes_in, bytes_out).
    last: HashMap<(u32, UsageKey), (u64, u64, u64)>,
    totals: BTreeMap<UsageKey, (u64, u64)>,
}

impl UsageTotals {
    pub fn on_report(&mut self, shard: u32, report: Vec<UsageTotal>) {
        for t in report {
            let at = (shard, t.key.clone());
            let (add_in, add_out, last) = match self.last.get(&at) {
                Some(&(gen, li, lo)) if gen == t.gen => (t.bytes_in.saturating_sub(li), t.bytes_out.saturating_sub(lo), (gen, li.max(t.bytes_in), lo.max(t.bytes_out))),
                // New to control (it started after the shard), or the
                // shard forgot the key and counts anew: all of it adds.
                _ => (t.bytes_in, t.bytes_out, (t.gen, t.bytes_in, t.bytes_out)),
            };
            self.last.insert(at, last);
            let tot = self.totals.entry(t.key).or_default();
            tot.0 += add_in;
            tot.1 += add_out;
        }
    }

    /// (bytes_in, bytes_out) per key.
    pub fn totals(&self) -> &BTreeMap<UsageKey, (u64, u64)> {
        &self.totals
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rts_common::ipc::Protocol;

    const H: u64 = 3_600_000_000;
    /// 2026-12-07 01:00:00 UTC, in µs.
    const T: u64 = 1_796_605_200 * 1_000_000;

    fn rec(seq: u64, end_us: u64) -> UsageRecord {
        UsageRecord {
            boot: 0xabc,
            shard: 1,
            seq,
            key: UsageKey::new("example.com", "live", "s", Protocol::Flv),
            session: 0x0001_0000_0000_0007,
            client: Some("10.0.0.2:5000".parse().unwrap()),
            session_start_us: T - 1,
            start_us: end_us - 1_000_000,
            end_us,
            last: false,
            bytes_in: 10,
            bytes_out: 1000 + seq,
        }
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("rts-billing-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn times_and_names_are_utc() {
        // Independent: `date -u -d @1796605200` is Mon Dec 7 01:00:00 UTC 2026.
        assert_eq!(rfc3339(T + 123_456), "2026-12-07T01:00:00.123Z");
        assert_eq!(file_name(T / 1_000_000 + 3599), "usage-20261207T01.jsonl");
        let line = record_line(&UsageRecord { last: true, ..rec(5, T + 2 * H) });
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["id"], "abc-1-5");
        assert_eq!(v["kind"], "final");
        assert_eq!(v["protocol"], "flv");
        assert_eq!(v["session"], "0001000000000007");
        assert_eq!(v["client"], "10.0.0.2:5000");
        assert_eq!(v["end"], "2026-12-07T03:00:00.000Z");
        assert_eq!(v["bytes_out"], 1005);
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
    }

    #[test]
    fn records_go_to_the_file_of_their_hour_once() {
        let dir = tmp("hours");
        let mut log = UsageLog::open(&dir, T / 1_000_000).unwrap();
        let w = log.write(&[rec(1, T + 10), rec(2, T + H + 10), rec(3, T + 20)]).unwrap();
        assert_eq!(w, Written { lines: 3, duplicates: 0 });
        // Sent again (its acknowledgement was lost): not written twice.
        assert_eq!(log.write(&[rec(2, T + H + 10)]).unwrap(), Written { lines: 0, duplicates: 1 });
        // Twice in one batch (the ring's copy and the snapshot's): once.
        assert_eq!(log.write(&[rec(5, T + 30), rec(5, T + 30)]).unwrap(), Written { lines: 1, duplicates: 1 });
        let read = |h: u64| std::fs::read_to_string(dir.join(file_name(T / 1_000_000 + h * 3600))).unwrap();
        assert_eq!(read(0).lines().count(), 3);
        assert_eq!(read(1).lines().count(), 1);
        // A new control (after a kill) remembers what is on disk.
        drop(log);
        let mut log = UsageLog::open(&dir, T / 1_000_000 + 3600).unwrap();
        assert_eq!(log.write(&[rec(1, T + 10), rec(2, T + H + 10), rec(4, T + H + 20)]).unwrap(), Written { lines: 1, duplicates: 2 });
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_half_line_from_a_crash_is_cut_off_at_start() {
        let dir = tmp("half");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(file_name(T / 1_000_000));
        let whole = record_line(&rec(1, T + 10));
        std::fs::write(&path, format!("{whole}{{\"id\":\"abc-1-2\",\"kind\":\"inter")).unwrap();
        let mut log = UsageLog::open(&dir, T / 1_000_000).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), whole);
        // The cut record was not remembered: it is written when it comes again.
        assert_eq!(log.write(&[rec(1, T + 10), rec(2, T + 20)]).unwrap(), Written { lines: 1, duplicates: 1 });
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.lines().all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failed_write_leaves_no_part_of_it() {
        let dir = tmp("fail");
        let mut log = UsageLog::open(&dir, T / 1_000_000).unwrap();
        log.write(&[rec(1, T + 10)]).unwrap();
        // The hour's file cannot be opened for append: a directory in its place.
        std::fs::create_dir_all(dir.join(file_name(T / 1_000_000 + 3600))).unwrap();
        assert!(log.write(&[rec(2, T + H + 10)]).is_err());
        // Not remembered as written: it is written when it comes again.
        std::fs::remove_dir(dir.join(file_name(T / 1_000_000 + 3600))).unwrap();
        assert_eq!(log.write(&[rec(2, T + H + 10)]).unwrap().lines, 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn totals_add_each_shards_increments() {
        let k = UsageKey::new("d", "live", "s", Protocol::Webrtc);
        let t = |gen, i, o| UsageTotal { key: k.clone(), gen, bytes_in: i, bytes_out: o };
        let mut u = UsageTotals::default();
        u.on_report(0, vec![t(1, 10, 100)]);
        u.on_report(1, vec![t(1, 1, 50)]);
        assert_eq!(u.totals()[&k], (11, 150));
        u.on_report(0, vec![t(1, 10, 130)]);
        assert_eq!(u.totals()[&k], (11, 180));
        // Shard 1 forgot the key and counts anew: its new count adds.
        u.on_report(1, vec![t(2, 0, 20)]);
        assert_eq!(u.totals()[&k], (11, 200));
        // A report out of order (lower, same generation) adds nothing.
        u.on_report(0, vec![t(1, 10, 120)]);
        assert_eq!(u.totals()[&k], (11, 200));
        u.on_report(0, vec![t(1, 10, 140)]);
        assert_eq!(u.totals()[&k], (11, 210));
    }
}
