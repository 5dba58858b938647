//! Control's side of the rings: session bookkeeping, the DTLS server
//! handshakes, and the view of the dataplane (streams, stats) that the HTTP
//! API serves.
//!
//! A dedicated thread pumps `shard_to_ctl` rings and runs DTLS timers; HTTP
//! handlers call into the same [`Engine`] to register sessions. Nothing here
//! is on the media path: a dead control stops only signaling.

use rts_common::config::Config;
use rts_common::ipc::{self, ControlToShard, ShardStats, ShardToControl, StreamStats, ViewerStats};
use rts_common::shm::{Consumer, Producer, ShmRegion};
use rts_dtls::{DtlsContext, DtlsEndpoint, DtlsEvent};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A session control is handshaking (or has handed to a shard).
struct CtlSession {
    app: String,
    stream: String,
    dtls: DtlsEndpoint,
    /// sha-256 fingerprint the viewer put in its offer; the DTLS peer
    /// certificate must match it.
    remote_fingerprint: Option<String>,
    media: MediaParams,
    created: Instant,
    connected: bool,
    peer: Option<SocketAddr>,
}

/// What the answer negotiated, for the shard's `StartMedia`.
#[derive(Debug, Clone, Copy, Default)]
pub struct MediaParams {
    pub video_pt: Option<u8>,
    pub audio_pt: Option<u8>,
    pub video_playout_delay_id: Option<u8>,
    /// RTX payload type and SSRC, when the viewer offered RTX.
    pub video_rtx: Option<(u8, u32)>,
    pub video_nack: bool,
    pub audio_red_pt: Option<u8>,
}

#[derive(Default, Clone, serde::Serialize)]
pub struct StreamView {
    pub app: String,
    pub stream: String,
    pub shard: u32,
    pub publishing: bool,
    pub stats: Option<StreamStats>,
}

#[derive(Default, Clone, Copy, serde::Serialize)]
pub struct ControlCounters {
    pub sessions_created: u64,
    pub dtls_connected: u64,
    pub dtls_failed: u64,
    pub fingerprint_mismatch: u64,
    pub ring_full: u64,
    pub undecodable: u64,
    pub unknown_session: u64,
    pub publish_refused: u64,
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<u64, CtlSession>,
    streams: BTreeMap<String, StreamView>,
    shard_stats: Vec<Option<ShardStats>>,
    counters: ControlCounters,
    /// Failures by kind/reason ("play:expired"), for /metrics.
    auth_failures: BTreeMap<String, u64>,
    /// Sessions placed on each shard since its last stats report.
    assigned: Vec<u64>,
    /// Channel switches waiting for their shard's answer.
    switches: HashMap<u64, std::sync::mpsc::Sender<Result<(), String>>>,
    /// Latest receiver feedback and repair figures per playing session.
    viewer_stats: HashMap<u64, ViewerStats>,
}

pub struct Engine {
    pub cfg: Arc<Config>,
    pub fingerprint: String,
    dtls_ctx: DtlsContext,
    producers: Mutex<Vec<Producer>>,
    inner: Mutex<Inner>,
    shards: usize,
    stop: AtomicBool,
}

pub struct NewSession {
    pub session: u64,
    pub app: String,
    pub stream: String,
    pub local_ufrag: String,
    pub local_pwd: String,
    pub remote_ufrag: String,
    pub remote_fingerprint: Option<String>,
    pub media: MediaParams,
    pub home_shard: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("dataplane ring to shard {0} is full")]
    RingFull(usize),
    #[error("no shard {0}")]
    NoShard(usize),
    #[error("dtls: {0}")]
    Dtls(String),
}

impl Engine {
    /// Attaches to the dataplane's shared memory, retrying until it exists.
    pub fn attach(cfg: Arc<Config>, wait: Duration) -> anyhow::Result<(Arc<Engine>, Vec<Consumer>, ShmRegion)> {
        let deadline = Instant::now() + wait;
        let region = loop {
            match ShmRegion::attach(&cfg.dataplane.shm_path) {
                Ok(r) => break r,
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!(error = %e, "waiting for the dataplane's shared memory");
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => anyhow::bail!("attaching {}: {e}", cfg.dataplane.shm_path.display()),
            }
        };
        let shards = region.shards();
        let mut producers = Vec::with_capacity(shards);
        let mut consumers = Vec::with_capacity(shards);
        for i in 0..shards {
            let (p, c) = region.control_endpoints(i).ok_or_else(|| anyhow::anyhow!("ring endpoints for shard {i}"))?;
            producers.push(p);
            consumers.push(c);
        }
        let cert = rts_dtls::DtlsCert::generate().map_err(|e| anyhow::anyhow!("certificate: {e}"))?;
        let fingerprint = cert.fingerprint_sha256();
        let dtls_ctx = DtlsContext::new(&cert, rts_dtls::Role::Server).map_err(|e| anyhow::anyhow!("dtls context: {e}"))?;
        tracing::info!(shards, dataplane_pid = region.dataplane_pid(), generation = region.generation(), %fingerprint,
            "attached to dataplane");
        let engine = Arc::new(Engine {
            cfg,
            fingerprint,
            dtls_ctx,
            producers: Mutex::new(producers),
            inner: Mutex::new(Inner { shard_stats: vec![None; shards], assigned: vec![0; shards], ..Default::default() }),
            shards,
            stop: AtomicBool::new(false),
        });
        // Resynchronise: a restarted control learns live streams from the shards.
        for i in 0..shards {
            let _ = engine.push(i, &ControlToShard::Snapshot);
        }
        Ok((engine, consumers, region))
    }

    /// The shared state; a panic elsewhere while it was held leaves it
    /// usable (bookkeeping only, no invariants span the lock).
    fn state(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn shard_count(&self) -> usize {
        self.shards
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    fn push(&self, shard: usize, msg: &ControlToShard) -> Result<(), EngineError> {
        let bytes = ipc::encode(msg);
        let mut p = self.producers.lock().unwrap_or_else(|e| e.into_inner());
        let prod = p.get_mut(shard).ok_or(EngineError::NoShard(shard))?;
        prod.try_push(&bytes).map_err(|_| EngineError::RingFull(shard))
    }

    /// Home shard of a live stream, if one publishes it.
    pub fn stream_shard(&self, app: &str, stream: &str) -> Option<usize> {
        let inner = self.state();
        inner.streams.get(&format!("{app}/{stream}")).filter(|s| s.publishing).map(|s| s.shard as usize)
    }

    /// Picks the shard for a new viewer of `app/stream`: the stream's home
    /// shard unless it is busier than the least loaded shard by more than
    /// `spread_after` viewers (then the least loaded, which replicates the
    /// stream). Returns (shard, home shard if live).
    pub fn place(&self, app: &str, stream: &str) -> (usize, Option<usize>) {
        let home = self.stream_shard(app, stream);
        let mut inner = self.state();
        let loads: Vec<u64> = (0..self.shards)
            .map(|i| inner.shard_stats[i].as_ref().map_or(0, |s| s.counters.sessions) + inner.assigned[i])
            .collect();
        let (least, least_load) = loads.iter().copied().enumerate().min_by_key(|&(i, l)| (l, i)).unwrap_or((0, 0));
        let spread = self.cfg.dataplane.spread_after;
        let shard = match home {
            Some(h) if loads.get(h).is_some_and(|&l| l <= least_load + spread) => h,
            Some(_) => least,
            // Not live yet: viewers of one stream meet on one shard.
            None => (ipc::stream_ssrc(app, stream, 0) as usize) % self.shards.max(1),
        };
        if let Some(a) = inner.assigned.get_mut(shard) {
            *a += 1;
        }
        (shard, home)
    }

    pub fn count_auth_failure(&self, kind: &str, reason: &str) {
        let mut inner = self.state();
        *inner.auth_failures.entry(format!("{kind}:{reason}")).or_default() += 1;
    }

    /// Registers a session with control's DTLS server and with its shard.
    pub fn add_session(&self, s: NewSession) -> Result<(), EngineError> {
        let shard = ipc::session_shard(s.session);
        let dtls = DtlsEndpoint::new(&self.dtls_ctx).map_err(|e| EngineError::Dtls(e.to_string()))?;
        {
            let mut inner = self.state();
            inner.counters.sessions_created += 1;
            inner.sessions.insert(
                s.session,
                CtlSession {
                    app: s.app.clone(),
                    stream: s.stream.clone(),
                    dtls,
                    remote_fingerprint: s.remote_fingerprint,
                    media: s.media,
                    created: Instant::now(),
                    connected: false,
                    peer: None,
                },
            );
        }
        let msg = ControlToShard::AddSession {
            session: s.session,
            local_ufrag: s.local_ufrag,
            local_pwd: s.local_pwd,
            remote_ufrag: s.remote_ufrag,
            app: s.app,
            stream: s.stream,
            home_shard: s.home_shard.map(|h| h as u32),
        };
        if let Err(e) = self.push(shard, &msg) {
            self.forget(s.session);
            return Err(e);
        }
        Ok(())
    }

    /// Ends a session wherever it is (works for sessions a previous control
    /// instance created: the shard is encoded in the id).
    pub fn remove_session(&self, session: u64, reason: &str) -> Result<(), EngineError> {
        self.forget(session);
        self.push(ipc::session_shard(session), &ControlToShard::RemoveSession { session, reason: reason.to_string() })
    }

    fn forget(&self, session: u64) {
        self.state().sessions.remove(&session);
    }

    /// Moves a playing session to another stream without new ICE/DTLS.
    /// Blocks (briefly) for the shard's answer; call from a blocking context.
    pub fn switch_stream(&self, session: u64, app: &str, stream: &str) -> Result<(), String> {
        let shard = ipc::session_shard(session);
        if shard >= self.shards {
            return Err("no such session".into());
        }
        let Some(home) = self.stream_shard(app, stream) else {
            return Err("stream is not live".into());
        };
        let (tx, rx) = std::sync::mpsc::channel();
        self.state().switches.insert(session, tx);
        let msg = ControlToShard::SwitchStream { session, app: app.to_string(), stream: stream.to_string(), home_shard: Some(home as u32) };
        if let Err(e) = self.push(shard, &msg) {
            self.state().switches.remove(&session);
            return Err(e.to_string());
        }
        let r = rx.recv_timeout(Duration::from_secs(2)).unwrap_or_else(|_| Err("shard did not answer".into()));
        self.state().switches.remove(&session);
        r
    }

    /// Receiver feedback and repair figures of the playing sessions.
    pub fn viewer_stats(&self) -> Vec<ViewerStats> {
        let mut v: Vec<ViewerStats> = self.state().viewer_stats.values().copied().collect();
        v.sort_by_key(|s| s.session);
        v
    }

    pub fn streams(&self) -> Vec<StreamView> {
        self.state().streams.values().cloned().collect()
    }

    pub fn shard_stats(&self) -> Vec<ShardStats> {
        self.state().shard_stats.iter().flatten().cloned().collect()
    }

    pub fn counters(&self) -> (ControlCounters, BTreeMap<String, u64>, usize) {
        let inner = self.state();
        (inner.counters, inner.auth_failures.clone(), inner.sessions.len())
    }

    /// The ring pump: runs on its own thread until `stop()`.
    pub fn pump(self: Arc<Self>, mut consumers: Vec<Consumer>) {
        let mut next_timer = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            let mut busy = false;
            for (shard, c) in consumers.iter_mut().enumerate() {
                for _ in 0..1024 {
                    let Some(msg) = c.pop_with(|b| ipc::decode::<ShardToControl>(b)) else { break };
                    busy = true;
                    match msg {
                        Ok(m) => self.on_shard_message(shard, m),
                        Err(_) => self.state().counters.undecodable += 1,
                    }
                }
            }
            let now = Instant::now();
            if now >= next_timer {
                self.on_timers(now);
                next_timer = now + Duration::from_millis(10);
            }
            if !busy {
                if let Some(c) = consumers.first() {
                    c.wait(Duration::from_millis(1));
                }
            }
        }
    }

    fn on_shard_message(&self, shard: usize, msg: ShardToControl) {
        match msg {
            ShardToControl::DtlsFromPeer { session, peer, data } => self.on_dtls(session, peer, &data),
            ShardToControl::IceConnected { session, peer } => {
                let mut inner = self.state();
                if let Some(s) = inner.sessions.get_mut(&session) {
                    s.peer = Some(peer);
                }
                tracing::debug!(session = format_args!("{session:016x}"), %peer, "ICE connected");
            }
            ShardToControl::SessionClosed { session, reason } => {
                tracing::debug!(session = format_args!("{session:016x}"), %reason, "session closed by shard");
                self.forget(session);
                self.state().viewer_stats.remove(&session);
            }
            ShardToControl::ViewerStats(list) => {
                let mut inner = self.state();
                for v in list {
                    inner.viewer_stats.insert(v.session, v);
                }
            }
            ShardToControl::SwitchDone { session, ok, reason, .. } => {
                let inner = self.state();
                if let Some(tx) = inner.switches.get(&session) {
                    let _ = tx.send(if ok { Ok(()) } else { Err(reason) });
                }
            }
            ShardToControl::StreamStarted { app, stream } => {
                {
                    let mut inner = self.state();
                    let v = inner.streams.entry(format!("{app}/{stream}")).or_default();
                    v.app = app.clone();
                    v.stream = stream.clone();
                    v.shard = shard as u32;
                    v.publishing = true;
                }
                // Shards holding viewers that wait for this stream replicate it.
                for other in (0..self.shards).filter(|&o| o != shard) {
                    let msg = ControlToShard::StreamHome { app: app.clone(), stream: stream.clone(), shard: shard as u32 };
                    if self.push(other, &msg).is_err() {
                        self.state().counters.ring_full += 1;
                    }
                }
            }
            ShardToControl::StreamEnded { app, stream } => {
                let mut inner = self.state();
                if let Some(v) = inner.streams.get_mut(&format!("{app}/{stream}")) {
                    v.publishing = false;
                }
            }
            ShardToControl::PublishRefused { app, stream, reason } => {
                tracing::warn!(%app, %stream, %reason, "publish refused by shard");
                let mut inner = self.state();
                inner.counters.publish_refused += 1;
                let r = reason.split(':').nth(1).map(str::trim).unwrap_or(&reason).to_string();
                *inner.auth_failures.entry(format!("publish:{r}")).or_default() += 1;
            }
            ShardToControl::Stats(s) => {
                let mut inner = self.state();
                if let Some(slot) = inner.shard_stats.get_mut(shard) {
                    *slot = Some(s);
                }
                if let Some(a) = inner.assigned.get_mut(shard) {
                    *a = 0;
                }
            }
            ShardToControl::StreamStats(s) => {
                let mut inner = self.state();
                let key = format!("{}/{}", s.app, s.stream);
                let v = inner.streams.entry(key).or_default();
                v.app = s.app.clone();
                v.stream = s.stream.clone();
                if s.publishing {
                    v.shard = s.shard;
                }
                v.publishing = s.publishing || (v.publishing && v.shard != s.shard);
                v.stats = Some(s);
            }
        }
    }

    fn on_dtls(&self, session: u64, peer: SocketAddr, data: &[u8]) {
        let now = Instant::now();
        let mut out = Vec::new();
        let mut start = None;
        let mut fail = None;
        {
            let mut inner = self.state();
            let Some(s) = inner.sessions.get_mut(&session) else {
                // e.g. a session created by a previous control instance.
                inner.counters.unknown_session += 1;
                return;
            };
            s.peer.get_or_insert(peer);
            if let Err(e) = s.dtls.handle_datagram(data, now) {
                tracing::debug!(session = format_args!("{session:016x}"), error = %e, "DTLS record rejected");
            }
            while let Some(d) = s.dtls.poll_datagram() {
                out.push(d);
            }
            while let Some(ev) = s.dtls.poll_event() {
                match ev {
                    DtlsEvent::Connected(export) if !s.connected => {
                        let expected = s.remote_fingerprint.as_deref().map(str::to_ascii_uppercase);
                        if expected.as_deref() != Some(export.peer_fingerprint_sha256.to_ascii_uppercase().as_str()) {
                            fail = Some("DTLS certificate does not match the offer's fingerprint".to_string());
                            continue;
                        }
                        s.connected = true;
                        start = Some((export, s.media, format!("{}/{}", s.app, s.stream)));
                    }
                    DtlsEvent::Connected(_) => {}
                    DtlsEvent::Closed => fail = Some("DTLS close_notify".to_string()),
                    DtlsEvent::Failed(e) => fail = Some(format!("DTLS failed: {e}")),
                }
            }
            if start.is_some() {
                inner.counters.dtls_connected += 1;
            }
            if let Some(f) = &fail {
                if f.contains("fingerprint") {
                    inner.counters.fingerprint_mismatch += 1;
                } else if f.starts_with("DTLS failed") {
                    inner.counters.dtls_failed += 1;
                }
            }
        }
        let shard = ipc::session_shard(session);
        for data in out {
            if self.push(shard, &ControlToShard::DtlsToPeer { session, data }).is_err() {
                self.state().counters.ring_full += 1;
            }
        }
        if let Some((export, media, key)) = start {
            let Some(profile) = rts_srtp::Profile::from_dtls_id(export.profile_id) else {
                let _ = self.remove_session(session, "unsupported SRTP profile");
                return;
            };
            // We are the DTLS server: local = server write keys.
            match rts_srtp::KeyingMaterial::from_exported(profile, &export.material, true) {
                Ok(k) => {
                    tracing::info!(session = format_args!("{session:016x}"), stream = %key, %peer, ?profile, "DTLS connected; media starts");
                    let msg = ControlToShard::StartMedia {
                        session,
                        srtp_profile: export.profile_id,
                        local_key: k.local_key,
                        local_salt: k.local_salt,
                        remote_key: k.remote_key,
                        remote_salt: k.remote_salt,
                        video_pt: media.video_pt,
                        audio_pt: media.audio_pt,
                        video_playout_delay_id: media.video_playout_delay_id,
                        video_rtx: media.video_rtx,
                        video_nack: media.video_nack,
                        audio_red_pt: media.audio_red_pt,
                    };
                    if self.push(shard, &msg).is_err() {
                        self.state().counters.ring_full += 1;
                    }
                }
                Err(e) => fail = Some(format!("SRTP keys: {e}")),
            }
        }
        if let Some(reason) = fail {
            tracing::info!(session = format_args!("{session:016x}"), %reason, "session ends");
            let _ = self.remove_session(session, &reason);
        }
    }

    fn on_timers(&self, now: Instant) {
        let mut sends = Vec::new();
        let mut expired = Vec::new();
        {
            let mut inner = self.state();
            for (&id, s) in inner.sessions.iter_mut() {
                if !s.connected && now.duration_since(s.created) > Duration::from_secs(30) {
                    expired.push(id);
                    continue;
                }
                if s.dtls.poll_timeout().is_some_and(|t| t <= now) {
                    let _ = s.dtls.handle_timeout(now);
                    while let Some(d) = s.dtls.poll_datagram() {
                        sends.push((id, d));
                    }
                }
            }
            for id in &expired {
                inner.sessions.remove(id);
            }
        }
        for (session, data) in sends {
            let _ = self.push(ipc::session_shard(session), &ControlToShard::DtlsToPeer { session, data });
        }
    }
}
