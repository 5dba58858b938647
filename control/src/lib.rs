//! The rts control process: HTTP signaling, SDP, DTLS handshakes, auth,
//! stats and the admin API. It attaches to the dataplane's shared-memory
//! rings and can be restarted at any time without cutting media.

pub mod billing;
pub mod engine;
mod handshake;
pub mod http;
pub mod ice;
pub mod signaling;
pub mod stream_totals;

use rts_common::config::Config;
use std::sync::Arc;
use std::time::Duration;

/// Runs control until the HTTP server fails or the dataplane goes away.
pub fn run(cfg: Arc<Config>) -> anyhow::Result<()> {
    let (engine, consumers, region) = engine::Engine::attach(cfg.clone(), Duration::from_secs(30))?;
    let dataplane_pid = region.dataplane_pid();
    let pump_engine = engine.clone();
    let pump = std::thread::Builder::new().name("rts-ctl-pump".into()).spawn(move || pump_engine.pump(consumers))?;

    let admin_engine = engine.clone();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let result = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(cfg.http.listen)
            .await
            .map_err(|e| anyhow::anyhow!("binding HTTP {}: {e}", cfg.http.listen))?;
        tracing::info!(http = %cfg.http.listen, candidate_ip = %cfg.candidate_ip(), pid = std::process::id(), "control listening");
        let app = http::router(engine.clone());
        let server = axum::serve(listener, app);
        // The admin listener is not needed for media or signaling: a
        // failure to bind it is logged, not fatal.
        match tokio::net::TcpListener::bind(cfg.admin.listen).await {
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
        tokio::select! {
            r = server => r.map_err(|e| anyhow::anyhow!("HTTP server: {e}")),
            _ = watchdog => Err(anyhow::anyhow!("dataplane (pid {dataplane_pid}) is gone")),
        }
    });
    engine.stop();
    let _ = pump.join();
    drop(region);
    result
}
