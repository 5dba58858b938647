//! `rts-impair`: the command-line face of [`rts_impair::relay`].
#![deny(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use rts_impair::relay::{Relay, RelayConfig, RelayStats};
use rts_impair::ImpairConfig;

/// UDP impairment relay: clients send to --listen, traffic is forwarded to --upstream with
/// loss, bursts, delay, jitter, reordering, duplication and a rate cap applied.
#[derive(Parser, Debug)]
#[command(name = "rts-impair", version)]
struct Cli {
    /// Address clients send to.
    #[arg(long, default_value = "0.0.0.0:9000")]
    listen: SocketAddr,
    /// The real server.
    #[arg(long)]
    upstream: SocketAddr,
    /// Random loss, percent.
    #[arg(long)]
    loss: Option<String>,
    /// Gilbert–Elliott burst loss `p,r[,good_loss,bad_loss]`, percent.
    #[arg(long)]
    burst: Option<String>,
    /// Outages `packets,every_ms`: every interval, that many datagrams in a row are lost.
    #[arg(long = "drop-run")]
    drop_run: Option<String>,
    /// Fixed one-way delay, ms.
    #[arg(long = "delay-ms")]
    delay_ms: Option<String>,
    /// Jitter amplitude, ms (uniform ±J, or σ with --jitter-dist normal).
    #[arg(long = "jitter-ms")]
    jitter_ms: Option<String>,
    /// Jitter distribution: uniform or normal.
    #[arg(long = "jitter-dist")]
    jitter_dist: Option<String>,
    /// Probability (percent) of holding a packet back by --reorder-gap-ms.
    #[arg(long)]
    reorder: Option<String>,
    /// Extra delay of a reordered packet, ms.
    #[arg(long = "reorder-gap-ms", default_value = "20")]
    reorder_gap_ms: String,
    /// Duplication, percent.
    #[arg(long)]
    dup: Option<String>,
    /// Bandwidth cap, kbit/s.
    #[arg(long = "rate-kbps")]
    rate_kbps: Option<String>,
    /// Rate-limiter queue, in ms of the cap (tail drop beyond it).
    #[arg(long = "queue-ms")]
    queue_ms: Option<String>,
    /// Which direction the flags above impair: down (server → client), up or both.
    #[arg(long = "apply-to", default_value = "down")]
    apply_to: String,
    /// Full spec for client → server, replaces the flags for that direction,
    /// e.g. "loss=1 delay-ms=10".
    #[arg(long)]
    up: Option<String>,
    /// Full spec for server → client, replaces the flags for that direction.
    #[arg(long)]
    down: Option<String>,
    /// Seed for every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Forget a client after this many idle seconds.
    #[arg(long = "idle-timeout-s", default_value_t = 60)]
    idle_timeout_s: u64,
    /// Write counters as JSON here every 5 s and on exit.
    #[arg(long = "stats-json")]
    stats_json: Option<PathBuf>,
}

impl Cli {
    fn flag_config(&self) -> anyhow::Result<ImpairConfig> {
        let mut cfg = ImpairConfig::default();
        let flags = [
            ("loss", &self.loss),
            ("burst", &self.burst),
            ("drop-run", &self.drop_run),
            ("delay-ms", &self.delay_ms),
            ("jitter-ms", &self.jitter_ms),
            ("jitter", &self.jitter_dist),
            ("reorder", &self.reorder),
            ("reorder-gap-ms", &Some(self.reorder_gap_ms.clone())),
            ("dup", &self.dup),
            ("rate-kbps", &self.rate_kbps),
            ("queue-ms", &self.queue_ms),
        ];
        for (key, value) in flags {
            if let Some(v) = value {
                cfg.set(key, v)?;
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// Installs SIGINT/SIGTERM handlers that only set [`STOP`] (async-signal-safe).
#[allow(unsafe_code)]
fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only performs an atomic store, which is async-signal-safe, and
        // `signal` is called before any other thread exists.
        unsafe {
            libc::signal(
                sig,
                on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            );
        }
    }
}

fn report(stats: &RelayStats, json: Option<&PathBuf>) {
    let line = |name: &str, m: &rts_impair::ModelStats| {
        eprintln!(
            "  {name}: in {} ({} B) delivered {} dropped {} (random {} burst {} run {} queue {}) dup {} reordered {}",
            m.packets, m.bytes, m.delivered, m.dropped(), m.dropped_random, m.dropped_burst,
            m.dropped_run, m.dropped_queue, m.duplicated, m.reordered
        )
    };
    eprintln!(
        "rts-impair: clients {} active {} rejected {} sent {} send_errors {}",
        stats.clients_total,
        stats.clients_active,
        stats.rejected_clients,
        stats.sent,
        stats.send_errors
    );
    line("up  ", &stats.up);
    line("down", &stats.down);
    if let Some(path) = json {
        let write = serde_json::to_vec_pretty(stats)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(path, bytes));
        if let Err(e) = write {
            eprintln!("rts-impair: cannot write {}: {e}", path.display());
        }
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let flags = cli.flag_config()?;
    let (mut up, mut down) = match cli.apply_to.as_str() {
        "down" => (ImpairConfig::default(), flags),
        "up" => (flags, ImpairConfig::default()),
        "both" => (flags, flags),
        other => anyhow::bail!("--apply-to must be down, up or both, got {other:?}"),
    };
    if let Some(spec) = &cli.up {
        up = ImpairConfig::from_spec(spec).context("--up")?;
    }
    if let Some(spec) = &cli.down {
        down = ImpairConfig::from_spec(spec).context("--down")?;
    }
    let mut cfg = RelayConfig::new(cli.listen, cli.upstream);
    cfg.up = up;
    cfg.down = down;
    cfg.seed = cli.seed;
    cfg.idle_timeout = Duration::from_secs(cli.idle_timeout_s.max(1));

    install_signal_handlers();
    let mut relay = Relay::bind(cfg).with_context(|| format!("binding {}", cli.listen))?;
    eprintln!(
        "rts-impair: {} -> {} (up: {up:?}; down: {down:?})",
        relay.local_addr()?,
        cli.upstream
    );
    let json = cli.stats_json.as_ref();
    let stats = relay.run(&STOP, Duration::from_secs(5), |s| report(s, json))?;
    report(&stats, json);
    Ok(())
}
