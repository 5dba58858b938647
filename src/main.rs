//! `rts`: one binary, five subcommands.
//! - `serve`: the dataplane in this process plus a supervised control child.
//! - `dataplane` / `control`: each process on its own (e.g. systemd units).
//! - `sign`: print a signed (Alibaba type A) URL.
//! - `defaults`: print the embedded defaults as a commented rts.toml.

use clap::{Parser, Subcommand};
use rts_common::config::Config;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(name = "rts", version, about = "Real-time streaming edge server: RTMP in, WebRTC out")]
struct Cli {
    /// Path to rts.toml (every key has a default; no file needed).
    #[arg(short, long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start the dataplane and a supervised control process.
    Serve,
    /// Run only the dataplane (shards, RTMP, UDP media).
    Dataplane,
    /// Run only control (HTTP signaling, DTLS); attaches to a running dataplane.
    Control,
    /// Print the embedded defaults as a commented rts.toml.
    Defaults,
    /// Print a signed URL (Alibaba type A auth_key).
    Sign {
        /// e.g. rtmp://host/live/stream or artc://host/live/stream
        url: String,
        /// The ingest or play key configured on the server. Without it the
        /// key comes from --config: the URL host's [[domain]] (or [auth]).
        #[arg(long)]
        key: Option<String>,
        /// With the key from --config: sign for publishing or playing
        /// (default: ingest for rtmp:// URLs, play for the others).
        #[arg(long = "for", value_enum)]
        purpose: Option<Purpose>,
        /// Seconds the URL should stay valid from now (default: the server's validity_s).
        #[arg(long)]
        ttl: Option<u64>,
        /// The server's validity_s (to compute the timestamp for --ttl);
        /// default: the domain's from --config, else 1800.
        #[arg(long)]
        validity: Option<u64>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Purpose {
    Ingest,
    Play,
}

/// `rts sign`: the key and validity from the arguments or the config.
fn sign(cli: &Cli, url: &str, key: Option<&str>, purpose: Option<Purpose>, ttl: Option<u64>, validity: Option<u64>) -> Result<String, String> {
    let (key, config_validity) = match key {
        Some(k) => (k.to_string(), 1800),
        None => {
            let cfg = Config::load(cli.config.as_deref()).map_err(|e| e.to_string())?;
            let host = rts_common::config::host_of(url);
            let host = host.as_str();
            let ingest = purpose.map_or(url.starts_with("rtmp://"), |p| p == Purpose::Ingest);
            let auth = if ingest { cfg.ingest_auth_for(host) } else { cfg.play_auth_for(host) };
            let auth = auth.ok_or_else(|| format!("{host} is not a configured domain"))?;
            let key = auth.key.ok_or_else(|| format!("no {} key for {}: auth is off there", if ingest { "ingest" } else { "play" }, if host.is_empty() { "this URL" } else { host }))?;
            (key, auth.validity_s)
        }
    };
    let ts = rts_common::auth::timestamp_for_ttl(rts_common::config::unix_now(), ttl, validity.unwrap_or(config_validity));
    rts_common::auth::sign_url(url, &key, ts, None).map_err(|e| e.to_string())
}

static STOP: AtomicBool = AtomicBool::new(false);
static HUP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: i32) {
    STOP.store(true, Ordering::SeqCst);
}

extern "C" fn on_hup(_: i32) {
    HUP.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() {
    // SAFETY: the handlers only store to atomics (async-signal-safe).
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGHUP, on_hup as *const () as libc::sighandler_t);
    }
}

type LogHandle = tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>;
/// The log filter, replaceable on a reload.
static LOG: std::sync::OnceLock<LogHandle> = std::sync::OnceLock::new();

fn init_logging(cfg: &Config) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cfg.log.level));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let _ = LOG.set(handle);
    let registry = tracing_subscriber::registry().with(filter);
    let _ = if cfg.log.format == "json" {
        // One object per line: time, level, target, message and fields.
        registry.with(tracing_subscriber::fmt::layer().json().flatten_event(true)).try_init()
    } else {
        registry.with(tracing_subscriber::fmt::layer().with_target(false)).try_init()
    };
}

/// `[log] level` after a reload (RUST_LOG, when set, keeps precedence).
fn set_log_level(level: &str) -> Result<(), String> {
    if std::env::var_os("RUST_LOG").is_some() {
        return Err("RUST_LOG is set and takes precedence".into());
    }
    let filter = tracing_subscriber::EnvFilter::try_new(level).map_err(|e| e.to_string())?;
    LOG.get().ok_or("no log filter")?.reload(filter).map_err(|e| e.to_string())
}

/// SIGHUP in the dataplane process: its own log level from the file (the
/// shards' keys come from control, which gets the signal too).
fn reload_dataplane_log(config: Option<&std::path::Path>) {
    match Config::load(config) {
        Ok(c) => {
            if let Err(e) = set_log_level(&c.log.level) {
                tracing::info!(error = %e, "log level kept");
            }
        }
        Err(e) => tracing::error!(error = %e, "reload: the configuration does not load; unchanged"),
    }
}

fn main() {
    let cli = Cli::parse();
    if let Cmd::Defaults = &cli.cmd {
        print!("{}", rts_common::config::defaults_toml());
        return;
    }
    if let Cmd::Sign { url, key, purpose, ttl, validity } = &cli.cmd {
        match sign(&cli, url, key.as_deref(), *purpose, *ttl, *validity) {
            Ok(u) => println!("{u}"),
            Err(e) => {
                eprintln!("rts sign: {e}");
                std::process::exit(2);
            }
        }
        return;
    }
    let cfg = match Config::load(cli.config.as_deref()) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("rts: {e}");
            std::process::exit(2);
        }
    };
    init_logging(&cfg);
    let code = match cli.cmd {
        Cmd::Serve => serve(cfg, cli.config.as_deref()),
        Cmd::Dataplane => dataplane_only(cfg, cli.config.as_deref()),
        Cmd::Control => match rts_control::run(cfg, cli.config.clone(), Box::new(set_log_level)) {
            Ok(()) => 0,
            Err(e) => {
                tracing::error!(error = %e, "control exited");
                1
            }
        },
        Cmd::Sign { .. } | Cmd::Defaults => 0,
    };
    std::process::exit(code);
}

fn start_dataplane(cfg: Arc<Config>) -> Option<rts_dataplane::Dataplane> {
    install_signal_handlers();
    match rts_dataplane::Dataplane::start(cfg) {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::error!(error = %e, "dataplane failed to start");
            None
        }
    }
}

fn dataplane_only(cfg: Arc<Config>, config: Option<&std::path::Path>) -> i32 {
    let cfg_drain_s = cfg.ops.drain_s;
    let Some(dp) = start_dataplane(cfg) else { return 1 };
    while !STOP.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
        if HUP.swap(false, Ordering::SeqCst) {
            reload_dataplane_log(config);
        }
    }
    let drain_s = Config::load(config).map(|c| c.ops.drain_s).unwrap_or(cfg_drain_s);
    drain(&dp, None, drain_s);
    dp.stop();
    dp.join();
    0
}

/// Graceful drain: the shards take no new clients, control (`control_pid`,
/// SIGUSR1) no new viewers; waits until the clients left or `drain_s`
/// passed, or a second SIGTERM/SIGINT.
fn drain(dp: &rts_dataplane::Dataplane, control_pid: Option<u32>, drain_s: u64) {
    dp.drain();
    if let Some(pid) = control_pid {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid as i32, libc::SIGUSR1) };
    }
    STOP.store(false, Ordering::SeqCst);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(drain_s);
    tracing::info!(drain_s, clients = dp.clients(), "draining: no new publishers or viewers");
    while Instant::now() < deadline && !STOP.load(Ordering::SeqCst) {
        // The shards' counts are a turn old: give them one.
        std::thread::sleep(Duration::from_millis(100));
        if dp.clients() == 0 {
            break;
        }
    }
    tracing::info!(after_ms = started.elapsed().as_millis() as u64, clients = dp.clients(), "drain over; stopping");
}

fn spawn_control(config: Option<&std::path::Path>) -> std::io::Result<Child> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    cmd.arg("control");
    cmd.spawn()
}

/// Dataplane in-process, control as a child restarted whenever it exits
/// (with backoff), so a control crash never touches media.
fn serve(cfg: Arc<Config>, config: Option<&std::path::Path>) -> i32 {
    let cfg_drain_s = cfg.ops.drain_s;
    let Some(dp) = start_dataplane(cfg) else { return 1 };
    tracing::info!(shards = dp.shards.len(), "dataplane running; starting control");
    let mut backoff = Duration::from_millis(200);
    let mut child: Option<Child> = None;
    let mut started = Instant::now();
    let mut next_start = Instant::now();
    while !STOP.load(Ordering::SeqCst) {
        match child.as_mut().map(|c| c.try_wait()) {
            None => {
                if Instant::now() >= next_start {
                    match spawn_control(config) {
                        Ok(c) => {
                            tracing::info!(pid = c.id(), "control started");
                            child = Some(c);
                            started = Instant::now();
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "cannot start control");
                            next_start = Instant::now() + backoff;
                        }
                    }
                }
            }
            Some(Ok(Some(status))) => {
                // A control that ran a while gets a quick restart; one that
                // keeps dying backs off up to 5 s.
                backoff = if started.elapsed() > Duration::from_secs(10) {
                    Duration::from_millis(200)
                } else {
                    (backoff * 2).min(Duration::from_secs(5))
                };
                tracing::warn!(%status, restart_in_ms = backoff.as_millis() as u64, "control exited; restarting");
                child = None;
                next_start = Instant::now() + backoff;
            }
            Some(Ok(None)) => {
                if HUP.swap(false, Ordering::SeqCst) {
                    // Control reloads (and tells the shards); this process
                    // only has its log level to change.
                    if let Some(c) = &child {
                        // SAFETY: sending SIGHUP to our own child.
                        unsafe { libc::kill(c.id() as i32, libc::SIGHUP) };
                    }
                    reload_dataplane_log(config);
                }
            }
            Some(Err(e)) => {
                tracing::error!(error = %e, "waiting for control");
                child = None;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // SIGTERM/SIGINT: a graceful drain first (a second signal cuts it short).
    let drain_s = Config::load(config).map(|c| c.ops.drain_s).unwrap_or(cfg_drain_s);
    drain(&dp, child.as_ref().map(|c| c.id()), drain_s);
    if let Some(mut c) = child {
        // SAFETY: sending SIGTERM to our own child.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline && matches!(c.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
    dp.stop();
    dp.join();
    0
}
