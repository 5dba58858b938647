//! `rts-dirsim`: the cluster directory's traffic of many nodes, without
//! media, against one real Redis (issue 14). Each simulated node does what
//! a real node's directory thread does (`Directory::heartbeat` with its
//! streams every period) and lookups do what `Cluster::want` does for a
//! first viewer of a stream the node lacks (`Directory::holders`, then
//! `Directory::nodes` of the holders), with the same client code, so what
//! Redis spends here is what a cluster of that size would make it spend.
//!
//! The run: every node registers once, the measured phase runs the
//! schedule for `--duration` seconds with Redis' `INFO` read on either
//! side, then the heartbeats stop and the expiry check makes sure the
//! entries vanish after the TTL.

pub mod expiry;
pub mod layout;
pub mod options;
pub mod redis_info;
pub mod stats;
pub mod worker;

use layout::Layout;
use options::Options;
use rts_control::cluster::directory::Directory;
use serde::Serialize;
use stats::Percentiles;
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant};
use worker::{Counts, Plan, SimNode};

#[derive(Debug, Clone, Serialize)]
pub struct Setup {
    pub nodes: usize,
    pub streams: usize,
    pub pulled_streams: usize,
    pub pullers: usize,
    pub heartbeat_ms: u64,
    pub ttl_ms: u64,
    pub lookups_per_s: u64,
    pub duration_s: u64,
    pub threads: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Heartbeats {
    pub registrations: u64,
    pub registration_failed: u64,
    pub registration_s: f64,
    /// Successful heartbeats of the measured phase.
    pub done: u64,
    pub failed: u64,
    pub late: u64,
    pub latency: Percentiles,
    /// How long after its due time each heartbeat started.
    pub lag: Percentiles,
    pub max_gap_ms: u64,
    pub rate_per_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Lookups {
    /// Lookups that answered (with or without the expected holders).
    pub done: u64,
    pub failed: u64,
    pub missing_expected_holder: u64,
    pub latency: Percentiles,
    pub lag: Percentiles,
    pub holders_per_lookup: f64,
    pub rate_per_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RedisFigures {
    pub before: redis_info::Snapshot,
    pub after_registration: redis_info::Snapshot,
    pub after: redis_info::Snapshot,
    /// Over the measured phase.
    pub load: redis_info::Load,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub setup: Setup,
    /// Wall time of the measured phase (the schedule's duration, longer if
    /// the workers fell behind).
    pub wall_s: f64,
    /// CPU time of this process over the measured phase (the simulated
    /// clients), in cores.
    pub client_cpu_share: f64,
    pub heartbeats: Heartbeats,
    pub lookups: Lookups,
    pub redis: RedisFigures,
    pub expiry: expiry::Expiry,
    /// No failed heartbeat or lookup, no lookup missing a holder, no node
    /// gap above the TTL, every entry gone after it.
    pub passed: bool,
}

/// CPU seconds (user + system) this process has used.
fn process_cpu_s() -> f64 {
    // SAFETY: rusage is plain integers, all-zero is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage only writes the struct it is given.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn total(counts: &[Counts], f: fn(&Counts) -> u64) -> u64 {
    counts.iter().map(f).sum()
}

/// Runs the simulation `o` describes.
pub fn run(o: &Options) -> anyhow::Result<Report> {
    o.validate()?;
    let threads = o.thread_count();
    let layout = Layout { nodes: o.nodes, streams: o.streams, pulled: o.pulled_streams(), pullers: o.pullers };
    let timeout = Duration::from_millis(o.timeout_ms);
    let before = redis_info::read(&o.redis)?;

    // Nodes partitioned over the workers (node n to worker n mod threads,
    // so each worker's heartbeats spread over the whole period).
    let mut plans: Vec<Plan> = (0..threads)
        .map(|w| Plan {
            worker: w,
            workers: threads,
            nodes: Vec::new(),
            layout,
            heartbeat: Duration::from_millis(o.heartbeat_ms),
            duration: Duration::from_secs(o.duration),
            lookup_rate: o.lookups,
            seed: o.seed,
        })
        .collect();
    for (n, streams) in layout.holdings().into_iter().enumerate() {
        let entry = layout.entry(n, o.shards, streams.len());
        plans[n % threads].nodes.push(SimNode { index: n, entry, streams });
    }

    // Two rendezvous: all registered (then INFO and the common start),
    // and the start published.
    let barrier = Arc::new(Barrier::new(threads + 1));
    let start: Arc<OnceLock<Instant>> = Arc::new(OnceLock::new());
    let registration_began = Instant::now();
    let handles: Vec<_> = plans
        .into_iter()
        .map(|plan| {
            let (barrier, start, url, ttl) = (barrier.clone(), start.clone(), o.redis.clone(), o.ttl_ms);
            std::thread::spawn(move || -> Counts {
                let mut counts = Counts::default();
                let mut last_ok = vec![None; plan.nodes.len()];
                let dir = Directory::new(&url, ttl, timeout);
                if let Ok(dir) = &dir {
                    worker::register(dir, &plan, &mut counts, &mut last_ok);
                } else {
                    counts.registration_failed += plan.nodes.len() as u64;
                }
                barrier.wait();
                barrier.wait();
                if let (Ok(dir), Some(&at)) = (&dir, start.get()) {
                    worker::run(dir, &plan, at, &mut counts, &mut last_ok);
                }
                counts
            })
        })
        .collect();
    barrier.wait();
    let registration_s = registration_began.elapsed().as_secs_f64();
    let after_registration = redis_info::read(&o.redis);
    let cpu0 = process_cpu_s();
    let _ = start.set(Instant::now());
    barrier.wait();
    let mut counts: Vec<Counts> = handles.into_iter().map(|h| h.join().unwrap_or_default()).collect();
    let wall = start.get().map_or(0.0, |s| s.elapsed().as_secs_f64()).max(1e-9);
    let client_cpu_share = (process_cpu_s() - cpu0) / wall;
    let after = redis_info::read(&o.redis)?;
    let after_registration = after_registration?;

    let last_write_ms = counts.iter().map(|c| c.last_write_ms).max().unwrap_or(0);
    let lookups_ok = total(&counts, |c| c.lookups_ok);
    let heartbeats = Heartbeats {
        registrations: total(&counts, |c| c.registrations),
        registration_failed: total(&counts, |c| c.registration_failed),
        registration_s,
        done: total(&counts, |c| c.heartbeats_ok),
        failed: total(&counts, |c| c.heartbeats_failed),
        late: total(&counts, |c| c.heartbeats_late),
        latency: worker::merged(&mut counts, |c| &mut c.heartbeat_latency),
        lag: worker::merged(&mut counts, |c| &mut c.heartbeat_lag),
        max_gap_ms: counts.iter().map(|c| c.heartbeat_max_gap_ms).max().unwrap_or(0),
        rate_per_s: 0.0,
    };
    let lookups = Lookups {
        done: lookups_ok,
        failed: total(&counts, |c| c.lookups_failed),
        missing_expected_holder: total(&counts, |c| c.lookups_missing),
        latency: worker::merged(&mut counts, |c| &mut c.lookup_latency),
        lag: worker::merged(&mut counts, |c| &mut c.lookup_lag),
        holders_per_lookup: total(&counts, |c| c.holders_seen) as f64 / lookups_ok.max(1) as f64,
        rate_per_s: lookups_ok as f64 / wall,
    };
    let heartbeats = Heartbeats { rate_per_s: heartbeats.done as f64 / wall, ..heartbeats };
    let load = redis_info::load(&after_registration, &after, wall);
    let expiry = expiry::check(&o.redis, o.ttl_ms, timeout, &layout, o.expiry_sample, last_write_ms)?;
    let passed = heartbeats.registration_failed == 0
        && heartbeats.failed == 0
        && heartbeats.max_gap_ms < o.ttl_ms
        && lookups.failed == 0
        && lookups.missing_expected_holder == 0
        && expiry.passed;
    Ok(Report {
        setup: Setup {
            nodes: o.nodes,
            streams: o.streams,
            pulled_streams: layout.pulled,
            pullers: layout.pullers.min(o.nodes.saturating_sub(1)),
            heartbeat_ms: o.heartbeat_ms,
            ttl_ms: o.ttl_ms,
            lookups_per_s: o.lookups,
            duration_s: o.duration,
            threads,
        },
        wall_s: wall,
        client_cpu_share,
        heartbeats,
        lookups,
        redis: RedisFigures { before, after_registration, after, load },
        expiry,
        passed,
    })
}

impl Report {
    /// A few lines for a person.
    pub fn summary(&self) -> String {
        let (s, h, l, r, e) = (&self.setup, &self.heartbeats, &self.lookups, &self.redis, &self.expiry);
        let p = |x: &Percentiles| format!("p50 {} / p99 {} / max {} µs", x.p50_us, x.p99_us, x.max_us);
        format!(
            "setup: {} nodes, {} streams ({}), heartbeat {} ms, TTL {} ms, {} lookups/s, {} s, {} threads\n\
             registration: {} heartbeats ({} failed) in {:.2} s\n\
             heartbeats: {} done, {} failed, {} late (> 1/10 period), {:.1}/s; latency {}; lag {}; longest gap of a node {} ms\n\
             lookups: {} done, {} failed, {} missing the expected holder, {:.1}/s, {:.2} holders each; latency {}; lag {}\n\
             wall {:.2} s; simulator CPU {:.2} cores\n\
             redis: CPU {:.1} % of one core, {:.0} commands/s ({} commands); used_memory {} -> {} bytes; keys {} ({})\n\
             expiry {} ms after the last write: {} of {} sampled streams with holders, {} stream keys left, {} node entries, {} node keys, {} alive nodes, {} errors: {}\n\
             {}",
            s.nodes, s.streams, if s.pulled_streams == 0 { "none pulled".to_string() } else { format!("{} also pulled by {} nodes each", s.pulled_streams, s.pullers) }, s.heartbeat_ms, s.ttl_ms, s.lookups_per_s, s.duration_s, s.threads,
            h.registrations, h.registration_failed, h.registration_s,
            h.done, h.failed, h.late, h.rate_per_s, p(&h.latency), p(&h.lag), h.max_gap_ms,
            l.done, l.failed, l.missing_expected_holder, l.rate_per_s, l.holders_per_lookup, p(&l.latency), p(&l.lag),
            self.wall_s, self.client_cpu_share,
            r.load.cpu_share_of_one_core * 100.0, r.load.commands_per_s, r.load.commands, r.before.used_memory, r.after.used_memory, r.after.keys, r.after.keyspace,
            e.checked_after_ms, e.streams_with_holders, e.sampled_streams, e.stream_keys_left, e.node_entries_left, e.node_keys_left, e.alive_nodes_left, e.errors,
            if e.passed { "entries gone" } else { "ENTRIES LEFT" },
            if self.passed { "PASSED" } else { "FAILED" },
        )
    }
}
