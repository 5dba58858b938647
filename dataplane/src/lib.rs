//! The rts dataplane: N shards, each a thread pinned to a core with its own
//! io_uring loop, RTMP listener, UDP media port, streams and viewers
//! (DESIGN.md §2). Control talks to it only through the shared-memory rings.

pub mod batch;
pub mod core;
pub mod flv_gop;
pub mod hls;
pub mod latency;
pub mod lipsync;
pub mod load;
pub mod media_request;
pub mod pacer;
pub mod recv_ring;
pub mod relay;
pub mod send_clock;
pub mod shard;
pub mod sockaddr;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod transcode;
pub mod udp;
pub mod uring;
pub mod video_hold;

use rts_common::config::Config;
use rts_common::shm::{RingConfig, ShmRegion};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

/// What a shard reports once its sockets are bound.
#[derive(Debug, Clone)]
pub struct ShardInfo {
    pub id: usize,
    pub core: Option<usize>,
    pub pinned: bool,
    pub udp_port: u16,
    pub gso: bool,
}

pub struct Dataplane {
    pub shards: Vec<ShardInfo>,
    threads: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    /// Set by [`Dataplane::drain`]: the shards take no new clients.
    draining: Arc<AtomicBool>,
    /// Clients each shard holds (viewers of every kind, publishers, pulls),
    /// as of its last turn.
    clients: Arc<Vec<std::sync::atomic::AtomicU64>>,
    // Keeps the mapping alive for the shards' ring endpoints.
    _region: ShmRegion,
}

impl Dataplane {
    /// Creates the shared-memory region, starts every shard and returns once
    /// all of them have bound their sockets (or the first error).
    pub fn start(cfg: Arc<Config>) -> anyhow::Result<Dataplane> {
        let shards = cfg.shard_count();
        let region = ShmRegion::create(
            &cfg.dataplane.shm_path,
            &RingConfig { shards, slots: cfg.dataplane.ring_slots, slot_size: cfg.dataplane.ring_slot_size },
        )
        .map_err(|e| anyhow::anyhow!("creating shared memory {}: {e}", cfg.dataplane.shm_path.display()))?;
        let cores: Vec<usize> = if cfg.dataplane.cores.is_empty() {
            core_affinity::get_core_ids().unwrap_or_default().into_iter().map(|c| c.id).collect()
        } else {
            cfg.dataplane.cores.clone()
        };
        let stop = Arc::new(AtomicBool::new(false));
        let draining = Arc::new(AtomicBool::new(false));
        let clients: Arc<Vec<std::sync::atomic::AtomicU64>> = Arc::new((0..shards).map(|_| Default::default()).collect());
        let tls = media_tls(&cfg, stop.clone())?;
        let mesh = relay::RelayMesh::new(shards)?;
        let (ready_tx, ready_rx) = mpsc::channel::<Result<ShardInfo, String>>();
        let mut threads = Vec::with_capacity(shards);
        for id in 0..shards {
            let (to_ctl, from_ctl) =
                region.dataplane_endpoints(id).ok_or_else(|| anyhow::anyhow!("ring endpoints for shard {id} unavailable"))?;
            let core = if cores.is_empty() { None } else { Some(cores[id % cores.len()]) };
            let cfg = cfg.clone();
            let stop = stop.clone();
            let ready = ready_tx.clone();
            let mesh = mesh.clone();
            let tls = tls.clone();
            let (draining, clients) = (draining.clone(), clients.clone());
            let t = std::thread::Builder::new().name(format!("rts-shard-{id}")).spawn(move || {
                // Build the shard on its own thread after pinning, so its
                // memory is first touched on its own core.
                let pinned = core.is_some_and(|c| core_affinity::set_for_current(core_affinity::CoreId { id: c }));
                let init = shard::ShardInit { id, core, pinned, cfg, to_ctl, from_ctl, stop, mesh, tls, draining, clients };
                let shard = match shard::Shard::new(init) {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = ready.send(Err(format!("shard {id}: {e}")));
                        return;
                    }
                };
                let info = ShardInfo { id, core, pinned, udp_port: shard.udp_port(), gso: shard.gso() };
                let _ = ready.send(Ok(info));
                if let Err(e) = shard.run() {
                    tracing::error!(shard = id, error = %e, "shard loop failed");
                }
            })?;
            threads.push(t);
        }
        drop(ready_tx);
        let mut infos = Vec::with_capacity(shards);
        for _ in 0..shards {
            match ready_rx.recv() {
                Ok(Ok(info)) => {
                    tracing::info!(shard = info.id, core = ?info.core, pinned = info.pinned, udp_port = info.udp_port,
                        gso = info.gso, rtmp = %cfg.rtmp.listen, "shard ready");
                    infos.push(info);
                }
                Ok(Err(e)) => {
                    stop.store(true, Ordering::Relaxed);
                    anyhow::bail!(e);
                }
                Err(_) => {
                    stop.store(true, Ordering::Relaxed);
                    anyhow::bail!("a shard thread died during start-up");
                }
            }
        }
        infos.sort_by_key(|i| i.id);
        Ok(Dataplane { shards: infos, threads, stop, draining, clients, _region: region })
    }

    /// Graceful drain: from now on the shards refuse new publishers and
    /// media viewers (control refuses or redirects new WebRTC viewers);
    /// those already here carry on.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Clients the shards hold now (viewers, publishers, pulls).
    pub fn clients(&self) -> u64 {
        self.clients.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Blocks until every shard thread has exited.
    pub fn join(mut self) {
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// TLS for the shards' media listener when certificates are configured: the
/// same files as control's HTTPS, polled for changes by a thread of its own
/// (the shards share the resolver, read once per handshake).
fn media_tls(cfg: &Config, stop: Arc<AtomicBool>) -> anyhow::Result<Option<Arc<rustls::ServerConfig>>> {
    if !cfg.https.enabled() {
        return Ok(None);
    }
    let mut store = rts_common::tls::CertStore::load(&cfg.https).map_err(|e| anyhow::anyhow!("media HTTPS certificate: {e}"))?;
    let server = rts_common::tls::server_config(store.resolver()).map_err(|e| anyhow::anyhow!("media HTTPS: {e}"))?;
    // HTTP/1.1 only: the media listener speaks nothing else.
    let mut server = Arc::unwrap_or_clone(server);
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    let every = cfg.https.reload_check_s;
    if every > 0 {
        std::thread::Builder::new().name("rts-tls-reload".into()).spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..every * 10 {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                store.reload_changed();
            }
        })?;
    }
    tracing::info!(media_https = %cfg.https.media_listen, "media listener over TLS");
    Ok(Some(Arc::new(server)))
}
