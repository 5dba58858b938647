//! Command-line options. Defaults are the full size (1,000 nodes,
//! 100,000 streams, one heartbeat per node per second, 5,000 lookups/s,
//! 30 s) and the `[cluster]` defaults of a real node (1 s heartbeat, 3 s
//! TTL, 500 ms Redis timeout), so a bare run measures the shipped settings.

use clap::Parser;
use std::path::PathBuf;

/// Runs the Redis directory traffic of many rts nodes (heartbeats with
/// their streams, lookups as a node getting its first viewer of a stream
/// makes them) without media, against one real Redis, and reports what it
/// costs Redis. Use a Redis of its own: it writes `rts:*` keys.
#[derive(Parser, Debug, Clone)]
#[command(name = "rts-dirsim", version)]
pub struct Options {
    /// The Redis to load (`redis://host:port`).
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    pub redis: String,
    /// Simulated nodes.
    #[arg(long, default_value_t = 1000)]
    pub nodes: usize,
    /// Streams, spread evenly over the nodes (stream i ingested at node
    /// i mod nodes, hop 0).
    #[arg(long, default_value_t = 100_000)]
    pub streams: usize,
    /// Share of the streams also pulled by one other node (hop 1).
    #[arg(long, default_value_t = 0.0)]
    pub pulled_share: f64,
    /// Nodes pulling each pulled stream (capped at nodes − 1).
    #[arg(long, default_value_t = 1)]
    pub pullers: usize,
    /// Heartbeat period of every node (`[cluster] heartbeat_ms`).
    #[arg(long, default_value_t = 1000)]
    pub heartbeat_ms: u64,
    /// Expiry of the directory entries (`[cluster] ttl_ms`).
    #[arg(long, default_value_t = 3000)]
    pub ttl_ms: u64,
    /// Lookups per second, over all threads (random streams).
    #[arg(long, default_value_t = 5000)]
    pub lookups: u64,
    /// Length of the measured phase, seconds.
    #[arg(long, default_value_t = 30)]
    pub duration: u64,
    /// Worker threads, each with its own directory connection (default:
    /// the machine's cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Redis timeout of every operation, ms (a real node's is 500).
    #[arg(long, default_value_t = 500)]
    pub timeout_ms: u64,
    /// Busy figures per node entry (one per shard, as a node reports them).
    #[arg(long, default_value_t = 4)]
    pub shards: usize,
    /// Streams whose entries are checked to be gone after the TTL.
    #[arg(long, default_value_t = 1000)]
    pub expiry_sample: usize,
    /// Seed of the lookups' stream choice.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Also write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

impl Options {
    /// Threads to run, never more than there are nodes.
    pub fn thread_count(&self) -> usize {
        let t = self.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        t.clamp(1, self.nodes.max(1))
    }

    /// Streams also pulled by a second node: the first this many.
    pub fn pulled_streams(&self) -> usize {
        ((self.streams as f64) * self.pulled_share).round() as usize
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.nodes >= 1, "--nodes must be at least 1");
        anyhow::ensure!(self.heartbeat_ms > 0, "--heartbeat-ms must be above 0");
        anyhow::ensure!(self.ttl_ms > self.heartbeat_ms, "--ttl-ms must be above --heartbeat-ms (as [cluster] requires)");
        anyhow::ensure!((0.0..=1.0).contains(&self.pulled_share), "--pulled-share must be within 0..1");
        anyhow::ensure!(self.pulled_streams() == 0 || self.nodes >= 2, "pulled streams need at least 2 nodes");
        anyhow::ensure!(self.duration > 0, "--duration must be above 0");
        Ok(())
    }
}
