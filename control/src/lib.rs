//! The rts control process: HTTP signaling, SDP, DTLS handshakes, auth,
//! stats and the admin API. It attaches to the dataplane's shared-memory
//! rings and can be restarted at any time without cutting media.

pub mod billing;
pub mod cluster;
pub mod hooks;
pub mod limits;
pub mod reload;
pub mod engine;
mod handshake;
pub mod http;
pub mod player;
pub mod ice;
pub mod metrics;
pub mod signaling;
pub mod stream_totals;

use rts_common::config::Config;
use std::sync::Arc;
use std::time::Duration;

/// Changes the process's log level (`[log] level` syntax) on a reload.
pub type LogLevelSetter = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// Set by the SIGHUP handler; the reload thread does the work.
static HUP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_hup(_: i32) {
    HUP.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Set by SIGUSR1: `rts serve` drains (see `Engine::set_draining`).
static DRAIN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_usr1(_: i32) {
    DRAIN.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Runs control until the HTTP server fails or the dataplane goes away.
/// `config` is the file reloads read again (SIGHUP, `POST /api/v1/reload`).
pub fn run(cfg: Arc<Config>, config: Option<std::path::PathBuf>, log_level: LogLevelSetter) -> anyhow::Result<()> {
    let (engine, consumers, region) = engine::Engine::attach(cfg.clone(), Duration::from_secs(30))?;
    engine.set_reload_source(config, log_level);
    engine.set_dataplane_pid(region.dataplane_pid());
    // SAFETY: the handlers only store to atomics (async-signal-safe).
    unsafe {
        libc::signal(libc::SIGHUP, on_hup as *const () as libc::sighandler_t);
        libc::signal(libc::SIGUSR1, on_usr1 as *const () as libc::sighandler_t);
    }
    let hup_engine = engine.clone();
    std::thread::Builder::new().name("rts-ctl-reload".into()).spawn(move || {
        while !hup_engine.stopped() {
            std::thread::sleep(Duration::from_millis(100));
            if DRAIN.swap(false, std::sync::atomic::Ordering::SeqCst) {
                hup_engine.set_draining();
            }
            if HUP.swap(false, std::sync::atomic::Ordering::SeqCst) {
                if let Err(e) = hup_engine.reload() {
                    tracing::error!(error = %e, "reload failed; the configuration is unchanged");
                }
            }
        }
    })?;
    let dataplane_pid = region.dataplane_pid();
    let pump_engine = engine.clone();
    let pump = std::thread::Builder::new().name("rts-ctl-pump".into()).spawn(move || pump_engine.pump(consumers))?;
    if let Some(c) = cluster::Cluster::new(&cfg)? {
        tracing::info!(node = %c.node_id, "cluster mode");
        engine.set_cluster(c.clone());
        let e = engine.clone();
        std::thread::Builder::new().name("rts-cluster".into()).spawn(move || c.run(e))?;
    }

    let admin_engine = engine.clone();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let result = rt.block_on(async {
        let app = http::router(engine.clone());
        // Plain HTTP (unless off) and HTTPS (when a certificate is
        // configured) serve the same routes.
        let plain = if cfg.http.enabled {
            let l = rts_common::net::tcp_listener(cfg.http.listen, "HTTP")
                .and_then(tokio::net::TcpListener::from_std)
                .map_err(|e| anyhow::anyhow!("binding HTTP {}: {e}", cfg.http.listen))?;
            let server = axum::serve(l, app.clone().into_make_service_with_connect_info::<std::net::SocketAddr>());
            Some(tokio::spawn(async move { server.await.map_err(|e| anyhow::anyhow!("HTTP server: {e}")) }))
        } else {
            None
        };
        let https = if cfg.https.enabled() {
            Some(start_https(&cfg, app.clone())?)
        } else {
            None
        };
        // The admin listener is not needed for media or signaling: a
        // failure to bind it is logged, not fatal.
        match rts_common::net::tcp_listener(cfg.admin.listen, "admin").and_then(tokio::net::TcpListener::from_std) {
            Ok(l) => {
                if cfg.admin.token.is_empty() && !cfg.admin.listen.ip().is_loopback() {
                    tracing::warn!(admin = %cfg.admin.listen, "admin listener on a non-loopback address without [admin] token");
                }
                tracing::info!(admin = %cfg.admin.listen, "admin listening");
                tokio::spawn(async move {
                    if let Err(e) = axum::serve(l, http::admin_router(admin_engine)).await {
                        tracing::error!(error = %e, "admin server failed");
                    }
                });
            }
            Err(e) => tracing::error!(admin = %cfg.admin.listen, error = %e, "cannot bind the admin listener; running without it"),
        }
        // Logged once every listener (the admin one too) is bound: tests and
        // supervisors take this line as "ready".
        tracing::info!(http = ?cfg.http.enabled.then_some(cfg.http.listen), https = ?cfg.https.enabled().then_some(cfg.https.listen),
            candidate_ip = %cfg.candidate_ip(), pid = std::process::id(), "control listening");
        // If the dataplane process dies, its rings are dead: exit so the
        // supervisor (rts serve or systemd) starts a fresh pair.
        let watchdog = async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                // SAFETY: kill with signal 0 only checks that the pid exists.
                if dataplane_pid != 0 && unsafe { libc::kill(dataplane_pid as i32, 0) } != 0 {
                    return;
                }
            }
        };
        let serving = async move {
            let failed = |r: Result<anyhow::Result<()>, tokio::task::JoinError>| r.unwrap_or_else(|e| Err(anyhow::anyhow!("server task: {e}")));
            match (plain, https) {
                (Some(p), Some(h)) => tokio::select! { r = p => failed(r), r = h => failed(r) },
                (Some(p), None) => failed(p.await),
                (None, Some(h)) => failed(h.await),
                (None, None) => Err(anyhow::anyhow!("no HTTP or HTTPS listener")),
            }
        };
        tokio::select! {
            r = serving => r,
            _ = watchdog => Err(anyhow::anyhow!("dataplane (pid {dataplane_pid}) is gone")),
        }
    });
    engine.stop();
    let _ = pump.join();
    drop(region);
    result
}

/// The HTTPS listener: certificates loaded (a bad file fails the start),
/// their files checked for changes every `reload_check_s`.
fn start_https(cfg: &Config, app: axum::Router) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
    let mut store = rts_common::tls::CertStore::load(&cfg.https).map_err(|e| anyhow::anyhow!("HTTPS certificate: {e}"))?;
    let server_config = rts_common::tls::server_config(store.resolver()).map_err(|e| anyhow::anyhow!("HTTPS: {e}"))?;
    let listener = rts_common::net::tcp_listener(cfg.https.listen, "HTTPS").map_err(|e| anyhow::anyhow!("binding HTTPS {}: {e}", cfg.https.listen))?;
    let server = axum_server::from_tcp_rustls(listener, axum_server::tls_rustls::RustlsConfig::from_config(server_config))?;
    let every = cfg.https.reload_check_s;
    if every > 0 {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(every)).await;
                store.reload_changed();
            }
        });
    }
    Ok(tokio::spawn(async move { server.serve(app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await.map_err(|e| anyhow::anyhow!("HTTPS server: {e}")) }))
}
