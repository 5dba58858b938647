//! One worker thread: a share of the nodes and of the lookups, on its own
//! [`Directory`] connection, as one node's directory thread and signaling
//! pool use theirs.
//!
//! Pacing is a schedule, not a loop that spins: every heartbeat and lookup
//! has a due time fixed in advance (node `n` at `n/nodes` of a period,
//! then every period; lookup `m` at `m/rate`), the worker sleeps until the
//! earliest one and runs it, and a worker that falls behind runs what is
//! due at once without skipping anything. So the counts are exact (a test
//! can derive them from the options) and falling behind shows as lag and
//! as a longer wall time, i.e. a lower achieved rate.

use crate::layout::{stream_key, Layout};
use crate::stats::Percentiles;
use rand::{rngs::StdRng, Rng, SeedableRng};
use rts_control::cluster::directory::{Directory, Holder, NodeEntry};
use rts_control::cluster::unix_ms;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// A node simulated by this worker.
pub struct SimNode {
    /// Its index in the layout (sets its place in the period).
    pub index: usize,
    pub entry: NodeEntry,
    pub streams: Vec<(String, Holder)>,
}

/// What a worker is given.
pub struct Plan {
    /// This worker's number and the number of workers: it runs lookups
    /// `m` with `m mod workers == worker`.
    pub worker: usize,
    pub workers: usize,
    pub nodes: Vec<SimNode>,
    pub layout: Layout,
    pub heartbeat: Duration,
    pub duration: Duration,
    /// Lookups per second over all workers.
    pub lookup_rate: u64,
    pub seed: u64,
}

/// What a worker counted. Latencies and lags in microseconds.
#[derive(Debug, Default)]
pub struct Counts {
    pub registrations: u64,
    pub registration_failed: u64,
    pub heartbeats_ok: u64,
    pub heartbeats_failed: u64,
    /// Heartbeats that started later than a tenth of a period after their
    /// due time.
    pub heartbeats_late: u64,
    pub heartbeat_latency: Vec<u64>,
    pub heartbeat_lag: Vec<u64>,
    /// Longest time between two successful heartbeats of one node (its
    /// entries expire if this exceeds the TTL), ms.
    pub heartbeat_max_gap_ms: u64,
    pub lookups_ok: u64,
    pub lookups_failed: u64,
    /// Lookups that answered but lacked one of the stream's expected
    /// holders, or the ingest node's entry.
    pub lookups_missing: u64,
    pub lookup_latency: Vec<u64>,
    pub lookup_lag: Vec<u64>,
    /// Holders returned over all successful lookups.
    pub holders_seen: u64,
    /// Unix ms of this worker's last heartbeat write (expiry counts from it).
    pub last_write_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// Heartbeat of the worker's `nodes[i]`.
    Heartbeat(usize),
    Lookup,
}

fn micros(d: Duration) -> u64 {
    d.as_micros().min(u128::from(u64::MAX)) as u64
}

/// Registers every node of the plan once (their first heartbeat), so the
/// measured phase starts with a full directory as a running cluster has.
pub fn register(dir: &Directory, plan: &Plan, counts: &mut Counts, last_ok: &mut [Option<Instant>]) {
    for (i, n) in plan.nodes.iter().enumerate() {
        let now_ms = unix_ms();
        match dir.heartbeat(&n.entry, &n.streams, now_ms) {
            Ok(()) => {
                counts.registrations += 1;
                counts.last_write_ms = counts.last_write_ms.max(now_ms);
                last_ok[i] = Some(Instant::now());
            }
            Err(_) => counts.registration_failed += 1,
        }
    }
}

/// Runs the plan's schedule from `start` for its duration.
pub fn run(dir: &Directory, plan: &Plan, start: Instant, counts: &mut Counts, last_ok: &mut [Option<Instant>]) {
    let period = plan.heartbeat.as_nanos();
    let end = plan.duration.as_nanos();
    let total_nodes = plan.layout.nodes as u128;
    let late = plan.heartbeat / 10;
    let mut rng = StdRng::seed_from_u64(plan.seed.wrapping_add(plan.worker as u64));
    // (due in ns after start, event); the heap gives the earliest.
    let mut queue: BinaryHeap<Reverse<(u128, Event)>> = BinaryHeap::new();
    for (i, n) in plan.nodes.iter().enumerate() {
        let due = n.index as u128 * period / total_nodes;
        if due < end {
            queue.push(Reverse((due, Event::Heartbeat(i))));
        }
    }
    let lookup_due = |m: u128| m * 1_000_000_000 / u128::from(plan.lookup_rate.max(1));
    let mut next_lookup = plan.worker as u128;
    if plan.lookup_rate > 0 && lookup_due(next_lookup) < end {
        queue.push(Reverse((lookup_due(next_lookup), Event::Lookup)));
    }
    while let Some(Reverse((due_ns, event))) = queue.pop() {
        let due = start + Duration::from_nanos(due_ns as u64);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let began = Instant::now();
        let lag = began.saturating_duration_since(due);
        match event {
            Event::Heartbeat(i) => {
                let n = &plan.nodes[i];
                let now_ms = unix_ms();
                let r = dir.heartbeat(&n.entry, &n.streams, now_ms);
                let done = Instant::now();
                counts.heartbeat_latency.push(micros(done - began));
                counts.heartbeat_lag.push(micros(lag));
                if lag > late {
                    counts.heartbeats_late += 1;
                }
                match r {
                    Ok(()) => {
                        counts.heartbeats_ok += 1;
                        counts.last_write_ms = counts.last_write_ms.max(now_ms);
                        if let Some(prev) = last_ok[i] {
                            counts.heartbeat_max_gap_ms = counts.heartbeat_max_gap_ms.max((done - prev).as_millis() as u64);
                        }
                        last_ok[i] = Some(done);
                    }
                    Err(_) => counts.heartbeats_failed += 1,
                }
                if due_ns + period < end {
                    queue.push(Reverse((due_ns + period, Event::Heartbeat(i))));
                }
            }
            Event::Lookup => {
                let stream = rng.gen_range(0..plan.layout.streams.max(1));
                let r = lookup(dir, &stream_key(stream), &plan.layout.expected(stream));
                counts.lookup_latency.push(micros(began.elapsed()));
                counts.lookup_lag.push(micros(lag));
                match r {
                    Ok((holders, true)) => {
                        counts.lookups_ok += 1;
                        counts.holders_seen += holders;
                    }
                    Ok((holders, false)) => {
                        counts.lookups_ok += 1;
                        counts.lookups_missing += 1;
                        counts.holders_seen += holders;
                    }
                    Err(_) => counts.lookups_failed += 1,
                }
                next_lookup += plan.workers as u128;
                if lookup_due(next_lookup) < end {
                    queue.push(Reverse((lookup_due(next_lookup), Event::Lookup)));
                }
            }
        }
    }
}

/// A lookup as `Cluster::want` makes it: the stream's live holders, then
/// the entries of those nodes. Returns the holders found and whether every
/// expected holder and the ingest node's entry were among them.
fn lookup(dir: &Directory, key: &str, expected: &[Holder]) -> Result<(u64, bool), rts_control::cluster::directory::DirError> {
    let holders = dir.holders(key, unix_ms())?;
    let ids: Vec<String> = holders.iter().map(|h| h.node.clone()).collect();
    let nodes = dir.nodes(&ids)?;
    let found: std::collections::HashSet<String> = holders.iter().map(Holder::member).collect();
    let all_holders = expected.iter().all(|e| found.contains(&e.member()));
    let origin_entry = expected.first().is_some_and(|e| nodes.iter().any(|n| n.id == e.node));
    Ok((holders.len() as u64, all_holders && origin_entry))
}

/// Percentiles of a worker set's samples, merged.
pub fn merged(all: &mut [Counts], pick: impl Fn(&mut Counts) -> &mut Vec<u64>) -> Percentiles {
    let mut v: Vec<u64> = Vec::new();
    for c in all.iter_mut() {
        v.append(pick(c));
    }
    Percentiles::of(&mut v)
}
