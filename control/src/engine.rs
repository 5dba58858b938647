//! Control's side of the rings: session bookkeeping, the DTLS server
//! handshakes, and the view of the dataplane (streams, stats) that the HTTP
//! API serves.
//!
//! A dedicated thread pumps `shard_to_ctl` rings and runs DTLS timers; HTTP
//! handlers call into the same [`Engine`] to register sessions. Nothing here
//! is on the media path: a dead control stops only signaling.

use rts_common::config::Config;
use rts_common::histogram::{Histogram, DTLS_HANDSHAKE_BOUNDS_US};
use rts_common::ipc::{self, ControlToShard, Request, SessionEntry, ShardStats, ShardToControl, StreamStats, ViewerStats};
use rts_common::shm::{Consumer, Producer, ShmRegion};
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::AtomicU64;
use crate::handshake::Job;
use crate::stream_totals::StreamTotals;
use rts_dtls::{DtlsContext, DtlsEndpoint};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A session control is handshaking (or has handed to a shard). Its DTLS
/// endpoint lives on a handshake worker (handshake.rs).
struct CtlSession {
    /// Request id of its `AddSession` (0 when adopted from a shard after a
    /// control restart: its handshake finished under the previous control).
    add_req: u64,
    created: Instant,
    connected: bool,
    peer: Option<SocketAddr>,
    /// ICE state for WHEP PATCH; `None` for a session adopted from a shard
    /// after a control restart (its credentials died with that control).
    ice: Option<SessionIce>,
    /// The stream it plays (`app/stream`, the server's names; empty for a
    /// session adopted from a shard).
    key: String,
    /// The address its signaling came from (`[limits] sessions_per_ip`).
    client_ip: Option<std::net::IpAddr>,
}

/// A session's current ICE credentials and entity-tag (RFC 9725 §4.3.1:
/// one strong tag per ICE session, new with every restart), and what the
/// server's SDP fragment repeats from the answer.
#[derive(Debug, Clone)]
pub struct SessionIce {
    /// The opaque part of the `ETag` (no quotes).
    pub etag: String,
    pub local_ufrag: String,
    pub local_pwd: String,
    pub remote_ufrag: String,
    pub remote_pwd: String,
    pub fragment: rts_sdp::IceFragment,
}

/// Why an ICE restart was not applied. The session keeps its current ICE
/// state (RFC 9725 §4.3.5), except after `Unavailable` for a shard that did
/// not answer in time (see [`Engine::restart_ice`]).
#[derive(Debug, thiserror::Error)]
pub enum RestartError {
    #[error("no such session")]
    NoSession,
    #[error("If-Match does not match the session's current entity-tag")]
    PreconditionFailed,
    #[error("this session's ICE state was lost in a control restart; start a new session")]
    NoIceState,
    #[error("{0}")]
    Unavailable(String),
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

/// A stream as `/api/v1/streams` shows it: where it is published, the home
/// shard's figures (`stats`), and its viewers and bytes over every shard
/// that carries it (`per_shard`: each one's latest report).
#[derive(Default, Clone, serde::Serialize)]
pub struct StreamView {
    /// The streaming domain (`[[domain]]` name; empty: the default domain).
    pub domain: String,
    pub app: String,
    pub stream: String,
    pub shard: u32,
    pub publishing: bool,
    pub stats: Option<StreamStats>,
    pub viewers: u32,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub per_shard: Vec<StreamStats>,
}

/// What control keeps per stream: where it is published and its reports.
#[derive(Default, Clone)]
struct StreamEntry {
    app: String,
    stream: String,
    shard: u32,
    publishing: bool,
    totals: StreamTotals,
}

#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct ControlCounters {
    pub sessions_created: u64,
    pub dtls_connected: u64,
    pub dtls_failed: u64,
    pub fingerprint_mismatch: u64,
    /// Droppable messages (DTLS records) lost on a full ring.
    pub ring_full: u64,
    /// State-changing messages that waited in a shard's backlog for ring space.
    pub ring_backlogged: u64,
    /// Messages refused because they can never fit a ring slot (queued,
    /// one would hold every later message to that shard for good).
    pub ring_too_large: u64,
    /// Requests acknowledged by the shards.
    pub acks: u64,
    /// Reconciliation with the shards' session lists: sessions control
    /// forgot (the shard no longer had them), adopted (the shard had them
    /// playing after a control restart), and removed (the shard had them
    /// mid-handshake, which a restarted control cannot finish).
    pub reconciled_forgotten: u64,
    pub reconciled_adopted: u64,
    pub reconciled_removed: u64,
    pub undecodable: u64,
    pub unknown_session: u64,
    pub publish_refused: u64,
    /// Signaling requests refused for `[limits] signaling_per_ip_per_s`.
    pub rate_limited: u64,
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<u64, CtlSession>,
    streams: BTreeMap<String, StreamEntry>,
    shard_stats: Vec<Option<ShardStats>>,
    counters: ControlCounters,
    /// Failures by kind/reason ("play:expired"), for /metrics.
    auth_failures: BTreeMap<String, u64>,
    /// Sessions placed on each shard since its last stats report.
    assigned: Vec<u64>,
    /// Channel switches waiting for their shard's answer.
    switches: HashMap<u64, std::sync::mpsc::Sender<Result<(), String>>>,
    /// ICE restarts waiting for their shard's answer, by (session, new local ufrag).
    restarts: HashMap<(u64, String), std::sync::mpsc::Sender<bool>>,
    /// Latest receiver feedback and repair figures per playing session.
    viewer_stats: HashMap<u64, ViewerStats>,
    /// Requests not acknowledged yet: id -> (shard, sent).
    inflight: HashMap<u64, (usize, Instant)>,
    /// Session lists being received, per shard: (snapshot request, entries).
    listing: HashMap<usize, (u64, Vec<SessionEntry>)>,
    /// Sessions control removed, with the id of their `RemoveSession`, until
    /// a later snapshot shows the shard applied it (not re-adopted meanwhile).
    removed: HashMap<u64, u64>,
    /// Traffic per domain/app/stream/protocol, over the shards.
    usage: crate::billing::UsageTotals,
    /// WebRTC sessions cut by the admin API (their WHEP resources answer
    /// 404), the latest `CUT_REMEMBERED`.
    cut: std::collections::VecDeque<u64>,
    /// Usage records came without `[billing]` here (logged once).
    usage_unwritable: bool,
    /// DTLS handshake times (`rts_dtls_handshake_seconds`): completed, failed.
    dtls_handshakes: [Histogram; 2],
}

/// One shard's ring from control, and the state-changing messages waiting
/// for room in it (in order: once one waits, later ones queue behind it).
struct ShardLink {
    producer: Producer,
    backlog: VecDeque<Vec<u8>>,
}

/// Most messages a shard's backlog holds; beyond it callers get
/// `RingFull` (back-pressure: signaling answers 503 and the client tries
/// again). Small on purpose: what waits here dies with a crashed control,
/// and a shard drains its ring at 256 messages per millisecond.
const MAX_BACKLOG: usize = 1_024;
/// Encoded domains per `Reload` part: a part stays under the smallest ring
/// slot (2 KiB) with its keys, hook URLs (up to 256 bytes each) and header.
const RELOAD_PART_BYTES: usize = 800;

fn postcard_len(d: &rts_common::config::DomainConfig) -> usize {
    ipc::encode(&ControlToShard::Reload { generation: 0, part: 0, parts: 0, auth: Default::default(), domains: vec![d.clone()], billing_interval_s: None, hooks: Default::default() }).len()
}

/// (domain, app, stream) of a session's stream key (`app/stream`, the
/// server's names: a domain's app is `{domain}/{app}`, decision 021).
fn key_names(key: &str) -> (&str, &str, &str) {
    let (app, stream) = key.rsplit_once('/').unwrap_or(("", ""));
    let (domain, app) = rts_common::config::split_stream_app(app);
    (domain, app, stream)
}

/// WebRTC sessions cut by the admin API that control remembers as cut.
const CUT_REMEMBERED: usize = 10_000;
/// How long an admin operation waits for the shards' answers.
const ADMIN_WAIT: Duration = Duration::from_secs(2);

/// One client in the admin listing.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClientRow {
    pub session: String,
    pub protocol: &'static str,
    pub domain: String,
    pub app: String,
    pub stream: String,
    pub client: Option<SocketAddr>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// WebRTC only (receiver reports).
    pub rtt_ms: Option<u32>,
    pub fraction_lost: Option<f64>,
    pub cumulative_lost: Option<i32>,
    pub shard: usize,
}

/// How often control asks every shard for its sessions to reconcile.
const RECONCILE_EVERY: Duration = Duration::from_secs(10);

pub struct Engine {
    /// The configuration; `reload` replaces it (what can change live).
    cfg: std::sync::RwLock<Arc<Config>>,
    pub fingerprint: String,
    dtls_ctx: DtlsContext,
    handshakes: crate::handshake::PoolSlot,
    links: Vec<Mutex<ShardLink>>,
    next_req: AtomicU64,
    inner: Mutex<Inner>,
    /// Held while an ICE restart updates control's state and queues its
    /// message, so restarts reach the shard in the order control applied
    /// them and the last one wins on both sides.
    restart_order: Mutex<()>,
    shards: usize,
    stop: AtomicBool,
    /// The usage record writer (`[billing]`).
    billing: std::sync::OnceLock<crate::billing::Billing>,
    /// Cluster mode (`[cluster]`).
    cluster: std::sync::OnceLock<Arc<crate::cluster::Cluster>>,
    /// Where the configuration is read from on a reload (None: the
    /// embedded defaults, nothing to reload), and how the log level changes.
    reload_from: std::sync::OnceLock<(Option<std::path::PathBuf>, crate::LogLevelSetter)>,
    /// Reloads done (each one's generation), serialized.
    reloads: Mutex<u64>,
    /// Graceful drain: signaling takes no new viewers (redirects them in a
    /// cluster).
    draining: AtomicBool,
    /// Where the shards' answers to the admin operation in progress go
    /// (`Clients`, `CutDone`); one operation at a time (`admin_op`).
    admin_answers: Mutex<Option<std::sync::mpsc::Sender<ShardToControl>>>,
    admin_op: Mutex<()>,
    /// HTTP callbacks (`[hooks]`).
    pub hooks: crate::hooks::Hooks,
    /// Signaling requests per client address (`[limits]`).
    pub signaling_limit: crate::limits::RateLimiter,
    /// Itself, for the threads that make hook calls.
    me: std::sync::OnceLock<std::sync::Weak<Engine>>,
    /// The dataplane process (`rts serve`'s supervisor or `rts dataplane`),
    /// which a drain asked on the admin listener is sent to (SIGTERM).
    dataplane_pid: std::sync::atomic::AtomicU32,
}

pub struct NewSession {
    pub session: u64,
    pub app: String,
    pub stream: String,
    /// The domain the viewer asked for (traffic records).
    pub domain: String,
    pub local_ufrag: String,
    pub local_pwd: String,
    pub remote_ufrag: String,
    /// The offer's fingerprints the peer's DTLS certificate must match.
    pub remote_fingerprint: Option<crate::ice::RemoteFingerprints>,
    pub media: MediaParams,
    pub home_shard: Option<usize>,
    /// The address its signaling came from.
    pub client_ip: Option<std::net::IpAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("dataplane ring to shard {0} is full")]
    RingFull(usize),
    #[error("message of {1} bytes does not fit a ring slot of shard {0}")]
    TooLarge(usize, usize),
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
        let mut links = Vec::with_capacity(shards);
        let mut consumers = Vec::with_capacity(shards);
        for i in 0..shards {
            let (p, c) = region.control_endpoints(i).ok_or_else(|| anyhow::anyhow!("ring endpoints for shard {i}"))?;
            links.push(Mutex::new(ShardLink { producer: p, backlog: VecDeque::new() }));
            consumers.push(c);
        }
        let cert = rts_dtls::DtlsCert::generate().map_err(|e| anyhow::anyhow!("certificate: {e}"))?;
        let fingerprint = cert.fingerprint_sha256();
        let dtls_ctx = DtlsContext::new(&cert, rts_dtls::Role::Server).map_err(|e| anyhow::anyhow!("dtls context: {e}"))?;
        tracing::info!(shards, dataplane_pid = region.dataplane_pid(), generation = region.generation(), %fingerprint,
            "attached to dataplane");
        let engine = Arc::new(Engine {
            cfg: std::sync::RwLock::new(cfg.clone()),
            fingerprint,
            dtls_ctx,
            handshakes: Default::default(),
            links,
            next_req: AtomicU64::new(1),
            inner: Mutex::new(Inner { shard_stats: vec![None; shards], assigned: vec![0; shards], ..Default::default() }),
            restart_order: Mutex::new(()),
            shards,
            stop: AtomicBool::new(false),
            billing: std::sync::OnceLock::new(),
            cluster: std::sync::OnceLock::new(),
            reload_from: std::sync::OnceLock::new(),
            reloads: Mutex::new(0),
            draining: AtomicBool::new(false),
            admin_answers: Mutex::new(None),
            admin_op: Mutex::new(()),
            hooks: Default::default(),
            signaling_limit: Default::default(),
            me: std::sync::OnceLock::new(),
            dataplane_pid: std::sync::atomic::AtomicU32::new(0),
        });
        let _ = engine.me.set(Arc::downgrade(&engine));
        if let Some(b) = &engine.cfg().billing {
            let billing = crate::billing::Billing::start(&b.path, Arc::downgrade(&engine))
                .map_err(|e| anyhow::anyhow!("usage records in {}: {e}", b.path.display()))?;
            let _ = engine.billing.set(billing);
        }
        let workers = crate::handshake::worker_count(engine.cfg().control.dtls_workers);
        let pool = crate::handshake::Pool::start(workers, Arc::downgrade(&engine))?;
        tracing::info!(workers = pool.workers(), "DTLS handshake workers");
        let _ = engine.handshakes.set(pool);
        // Resynchronise: a restarted control learns live streams and
        // sessions from the shards.
        engine.reconcile_all();
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

    fn link(&self, shard: usize) -> Result<std::sync::MutexGuard<'_, ShardLink>, EngineError> {
        let l = self.links.get(shard).ok_or(EngineError::NoShard(shard))?;
        Ok(l.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn next_id(&self) -> u64 {
        self.next_req.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends `msg` to `shard`; returns its request id (0 for messages that
    /// change no state). State-changing messages are never dropped: when
    /// the ring is full they wait in the shard's backlog (in order), which
    /// the pump flushes; only a backlog at its limit refuses them
    /// (`RingFull`, back-pressure). DTLS records are dropped on a full ring
    /// (counted): the peer retransmits.
    pub fn send(&self, shard: usize, msg: ControlToShard) -> Result<u64, EngineError> {
        let id = if msg.changes_state() { self.next_id() } else { 0 };
        self.send_as(shard, id, msg).map(|()| id)
    }

    fn send_as(&self, shard: usize, id: u64, msg: ControlToShard) -> Result<(), EngineError> {
        let bytes = ipc::encode(&Request { id, msg });
        if id != 0 {
            // Before the push: the ack may come back before this returns.
            self.state().inflight.insert(id, (shard, Instant::now()));
        }
        let outcome = {
            let mut l = self.link(shard)?;
            if bytes.len() > l.producer.max_message_len() {
                // Never fits: queued, it would hold the backlog for good.
                Err(EngineError::TooLarge(shard, bytes.len()))
            } else if l.backlog.is_empty() && l.producer.try_push(&bytes).is_ok() {
                Ok(false)
            } else if id == 0 || l.backlog.len() >= MAX_BACKLOG {
                // A DTLS record is dropped (the peer resends it); a full
                // backlog pushes back on the caller.
                Err(EngineError::RingFull(shard))
            } else {
                l.backlog.push_back(bytes);
                Ok(true)
            }
        };
        let mut inner = self.state();
        match outcome {
            Ok(backlogged) => {
                if backlogged {
                    inner.counters.ring_backlogged += 1;
                }
                Ok(())
            }
            Err(e) => {
                inner.inflight.remove(&id);
                match e {
                    EngineError::TooLarge(..) => inner.counters.ring_too_large += 1,
                    _ => inner.counters.ring_full += 1,
                }
                Err(e)
            }
        }
    }

    /// Moves waiting messages into the rings as room appears (pump).
    fn flush_backlogs(&self) {
        for l in &self.links {
            let mut l = l.lock().unwrap_or_else(|e| e.into_inner());
            let ShardLink { producer, backlog } = &mut *l;
            while let Some(front) = backlog.front() {
                if producer.try_push(front).is_err() {
                    break;
                }
                backlog.pop_front();
            }
        }
    }

    /// Messages waiting in the shards' backlogs (all shards).
    pub fn backlog_len(&self) -> usize {
        self.links.iter().map(|l| l.lock().unwrap_or_else(|e| e.into_inner()).backlog.len()).sum()
    }

    /// Requests sent but not acknowledged yet, and the age of the oldest.
    pub fn inflight(&self) -> (usize, Option<Duration>) {
        let inner = self.state();
        let oldest = inner.inflight.values().map(|(_, at)| at.elapsed()).max();
        (inner.inflight.len(), oldest)
    }

    /// Asks every shard for its sessions; the answers reconcile control's
    /// table with the shards' (see `reconcile`).
    pub fn reconcile_all(&self) {
        for i in 0..self.shards {
            let _ = self.send(i, ControlToShard::Snapshot);
        }
    }

    /// Whether a reconciliation with `shard` is waiting for its session list.
    pub fn reconciling(&self) -> bool {
        !self.state().listing.is_empty()
    }

    /// The sessions control knows, sorted (for tests and the admin API).
    pub fn session_ids(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.state().sessions.keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// The configuration now (a reload may replace it).
    pub fn cfg(&self) -> Arc<Config> {
        self.cfg.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn set_cfg(&self, cfg: Arc<Config>) {
        *self.cfg.write().unwrap_or_else(|e| e.into_inner()) = cfg;
    }

    /// Starts a graceful drain here (SIGUSR1 from the supervisor, a shard
    /// that reports one, or the admin route).
    pub fn set_draining(&self) {
        if !self.draining.swap(true, Ordering::SeqCst) {
            tracing::info!("draining: new viewers are refused or redirected");
        }
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub fn set_dataplane_pid(&self, pid: u32) {
        self.dataplane_pid.store(pid, Ordering::Relaxed);
    }

    /// `POST /api/v1/drain`: drains here and asks the dataplane process to
    /// drain and exit (as SIGTERM would).
    pub fn drain_server(&self) -> Result<(), String> {
        self.set_draining();
        let pid = self.dataplane_pid.load(Ordering::Relaxed);
        if pid == 0 {
            return Err("the dataplane's pid is unknown".into());
        }
        // SAFETY: plain syscall; the pid is the dataplane's, from its shm region.
        if unsafe { libc::kill(pid as i32, libc::SIGTERM) } != 0 {
            return Err(format!("SIGTERM to the dataplane (pid {pid}): {}", std::io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Sends `msgs` (shard, message) and collects the shards' answers until
    /// `done` says so or `ADMIN_WAIT` passed. One admin operation at a time.
    fn admin_round(&self, msgs: Vec<(usize, ControlToShard)>, mut done: impl FnMut(&ShardToControl) -> bool) -> Result<Vec<ShardToControl>, String> {
        let _one = self.admin_op.lock().unwrap_or_else(|e| e.into_inner());
        let (tx, rx) = std::sync::mpsc::channel();
        *self.admin_answers.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        let mut sent = 0;
        for (shard, msg) in msgs {
            match self.send(shard, msg) {
                Ok(_) => sent += 1,
                Err(e) => tracing::warn!(shard, error = %e, "admin request not sent"),
            }
        }
        let deadline = Instant::now() + ADMIN_WAIT;
        let mut got = Vec::new();
        let result = loop {
            if sent == 0 {
                break Err("no shard could be asked".to_string());
            }
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(m) => {
                    let finished = done(&m);
                    got.push(m);
                    if finished {
                        break Ok(());
                    }
                }
                Err(_) => break Err("the shards did not answer in time".to_string()),
            }
        };
        *self.admin_answers.lock().unwrap_or_else(|e| e.into_inner()) = None;
        result.map(|()| got)
    }

    /// Every client of the server: WebRTC sessions (control's, with their
    /// receiver feedback) and the shards' TCP clients.
    pub fn clients(&self) -> Result<Vec<ClientRow>, String> {
        let req = self.next_id();
        let msgs = (0..self.shards).map(|s| (s, ControlToShard::ListClients { req })).collect();
        let mut lasts = 0;
        let shards = self.shards;
        let answers = self.admin_round(msgs, |m| {
            if let ShardToControl::Clients { req: r, last: true, .. } = m {
                if *r == req {
                    lasts += 1;
                }
            }
            lasts == shards
        })?;
        let mut rows = Vec::new();
        {
            let inner = self.state();
            for (&id, s) in &inner.sessions {
                let (domain, plain, stream) = key_names(&s.key);
                let v = inner.viewer_stats.get(&id);
                rows.push(ClientRow {
                    session: format!("{id:016x}"),
                    protocol: "webrtc",
                    domain: domain.into(),
                    app: plain.into(),
                    stream: stream.into(),
                    client: s.peer,
                    bytes_in: 0,
                    bytes_out: v.map_or(0, |v| v.bytes_out),
                    rtt_ms: v.and_then(|v| v.rtt_ms),
                    fraction_lost: v.map(|v| f64::from(v.fraction_lost) / 256.0),
                    cumulative_lost: v.map(|v| v.cumulative_lost),
                    shard: ipc::session_shard(id),
                });
            }
        }
        for m in answers {
            let ShardToControl::Clients { req: r, clients, .. } = m else { continue };
            if r != req {
                continue;
            }
            for c in clients {
                let (domain, plain) = rts_common::config::split_stream_app(&c.app);
                rows.push(ClientRow {
                    session: format!("{:016x}", c.session),
                    protocol: c.protocol.as_str(),
                    domain: domain.into(),
                    app: plain.into(),
                    stream: c.stream.clone(),
                    client: c.peer,
                    bytes_in: c.bytes_in,
                    bytes_out: c.bytes_out,
                    rtt_ms: None,
                    fraction_lost: None,
                    cumulative_lost: None,
                    shard: ipc::session_shard(c.session),
                });
            }
        }
        rows.sort_by(|a, b| a.session.cmp(&b.session));
        Ok(rows)
    }

    /// Cuts a client by session id: a WebRTC session (removed from its
    /// shard, its WHEP resource gone) or a shard's TCP client. Ok(false):
    /// no such client.
    pub fn cut(&self, session: u64) -> Result<bool, String> {
        let shard = ipc::session_shard(session);
        if shard >= self.shards {
            return Ok(false);
        }
        if self.state().sessions.contains_key(&session) {
            self.remove_session(session, "cut by admin").map_err(|e| e.to_string())?;
            let mut inner = self.state();
            inner.cut.push_back(session);
            if inner.cut.len() > CUT_REMEMBERED {
                inner.cut.pop_front();
            }
            tracing::info!(session = format_args!("{session:016x}"), "WebRTC session cut by admin");
            return Ok(true);
        }
        let answers = self.admin_round(vec![(shard, ControlToShard::Cut { session })], |m| matches!(m, ShardToControl::CutDone { session: s, .. } if *s == session))?;
        Ok(answers.iter().any(|m| matches!(m, ShardToControl::CutDone { found: true, .. })))
    }

    /// Whether the admin API cut this WebRTC session.
    pub fn was_cut(&self, session: u64) -> bool {
        self.state().cut.contains(&session)
    }

    /// Cuts the source of app/stream (the server's names) on whatever shard
    /// has it. Ok(false): nobody publishes it here.
    pub fn cut_publisher(&self, app: &str, stream: &str) -> Result<bool, String> {
        let msgs = (0..self.shards).map(|s| (s, ControlToShard::CutPublisher { app: app.into(), stream: stream.into() })).collect();
        let shards = self.shards;
        let mut answered = 0;
        let answers = self.admin_round(msgs, |m| {
            if matches!(m, ShardToControl::CutDone { session: 0, .. }) {
                answered += 1;
            }
            answered == shards
        })?;
        Ok(answers.iter().any(|m| matches!(m, ShardToControl::CutDone { found: true, .. })))
    }

    /// Where reloads read the configuration, and the log level setter.
    pub fn set_reload_source(&self, path: Option<std::path::PathBuf>, log_level: crate::LogLevelSetter) {
        let _ = self.reload_from.set((path, log_level));
    }

    /// Reads the configuration file again and applies what can change
    /// live (`reload.rs`): control's copy, the shards' keys and billing
    /// interval (over the control channel), the log level. A file that does
    /// not parse or validate changes nothing.
    pub fn reload(&self) -> Result<crate::reload::ReloadReport, String> {
        let mut generation = self.reloads.lock().unwrap_or_else(|e| e.into_inner());
        let Some((path, set_level)) = self.reload_from.get() else { return Err("reload is not set up".into()) };
        let new = Config::load(path.as_deref()).map_err(|e| e.to_string())?;
        let old = self.cfg();
        let (run, applied, restart_needed) = crate::reload::plan(&old, &new).map_err(|e| e.to_string())?;
        *generation += 1;
        let generation = *generation;
        let run = Arc::new(run);
        self.set_cfg(run.clone());
        if applied.iter().any(|a| a == "log.level") {
            if let Err(e) = set_level(&run.log.level) {
                tracing::warn!(error = %e, "log level not changed");
            }
        }
        // The keys in parts that fit a ring slot (any number of domains).
        let billing_interval_s = run.billing.as_ref().map(|b| b.interval_s);
        let mut parts: Vec<Vec<rts_common::config::DomainConfig>> = vec![Vec::new()];
        let mut size = 0;
        for d in &run.domains {
            let n = postcard_len(d);
            if size + n > RELOAD_PART_BYTES && !parts.last().is_some_and(|p| p.is_empty()) {
                parts.push(Vec::new());
                size = 0;
            }
            size += n;
            if let Some(p) = parts.last_mut() {
                p.push(d.clone());
            }
        }
        let count = parts.len() as u32;
        for shard in 0..self.shards {
            for (i, domains) in parts.iter().enumerate() {
                let msg = ControlToShard::Reload { generation, part: i as u32, parts: count, auth: run.auth.clone(), domains: domains.clone(), billing_interval_s, hooks: run.hooks.clone() };
                if let Err(e) = self.send(shard, msg) {
                    tracing::warn!(shard, error = %e, "reload not sent to a shard");
                }
            }
        }
        tracing::info!(generation, ?applied, ?restart_needed, "configuration reloaded");
        Ok(crate::reload::ReloadReport { generation, applied, restart_needed })
    }

    /// Turns cluster mode on (once, at start).
    pub fn set_cluster(&self, c: Arc<crate::cluster::Cluster>) {
        let _ = self.cluster.set(c);
    }

    pub fn cluster(&self) -> Option<&Arc<crate::cluster::Cluster>> {
        self.cluster.get()
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// WebRTC sessions whose signaling came from `ip`.
    pub fn sessions_from(&self, ip: std::net::IpAddr) -> usize {
        self.state().sessions.values().filter(|s| s.client_ip == Some(ip)).count()
    }

    /// Viewers on this node: WebRTC sessions (counted as soon as signaling
    /// creates them) and the shards' HTTP-FLV viewers and RTMP players.
    pub fn viewer_count(&self) -> u64 {
        let inner = self.state();
        let tcp: u64 = inner.shard_stats.iter().flatten().map(|s| s.counters.flv_viewers + s.counters.rtmp_players).sum();
        inner.sessions.len() as u64 + tcp
    }

    /// Streams with a source on this node (a publisher or a pull), by the
    /// server's names.
    pub fn published_streams(&self) -> Vec<(String, String)> {
        self.state().streams.values().filter(|s| s.publishing).map(|s| (s.app.clone(), s.stream.clone())).collect()
    }

    /// Viewers per stream key (`app/stream`, the server's names): WebRTC
    /// sessions control holds and the shards' latest per-stream counts.
    pub fn viewers_by_stream(&self) -> HashMap<String, u64> {
        let now = Instant::now();
        let inner = self.state();
        let mut out: HashMap<String, u64> = HashMap::new();
        for s in inner.sessions.values() {
            *out.entry(s.key.clone()).or_default() += 1;
        }
        for (key, e) in &inner.streams {
            *out.entry(key.clone()).or_default() += u64::from(e.totals.viewers(now));
        }
        out
    }

    /// The shard a stream's viewers meet on before it is live.
    pub fn meeting_shard(&self, app: &str, stream: &str) -> usize {
        crate::cluster::meeting_shard(app, stream, self.shards)
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
        let spread = self.cfg().dataplane.spread_after;
        let shard = match home {
            Some(h) if loads.get(h).is_some_and(|&l| l <= least_load + spread) => h,
            Some(_) => least,
            // Not live yet: viewers of one stream meet on one shard.
            None => self.meeting_shard(app, stream),
        };
        if let Some(a) = inner.assigned.get_mut(shard) {
            *a += 1;
        }
        (shard, home)
    }

    pub fn count_rate_limited(&self) {
        self.state().counters.rate_limited += 1;
    }

    pub fn count_auth_failure(&self, kind: &str, reason: &str) {
        let mut inner = self.state();
        *inner.auth_failures.entry(format!("{kind}:{reason}")).or_default() += 1;
    }

    /// Registers a session with control's DTLS server and with its shard.
    pub fn add_session(&self, s: NewSession) -> Result<(), EngineError> {
        let shard = ipc::session_shard(s.session);
        let dtls = DtlsEndpoint::new(&self.dtls_ctx).map_err(|e| EngineError::Dtls(e.to_string()))?;
        let id = self.next_id();
        {
            let mut inner = self.state();
            inner.counters.sessions_created += 1;
            inner.sessions.insert(s.session, CtlSession { add_req: id, created: Instant::now(), connected: false, peer: None, ice: None, key: format!("{}/{}", s.app, s.stream), client_ip: s.client_ip });
        }
        self.submit(Job::Add {
            session: s.session,
            dtls: Box::new(dtls),
            fingerprint: s.remote_fingerprint,
            media: s.media,
            key: format!("{}/{}", s.app, s.stream),
        });
        let msg = ControlToShard::AddSession {
            session: s.session,
            local_ufrag: s.local_ufrag,
            local_pwd: s.local_pwd,
            remote_ufrag: s.remote_ufrag,
            app: s.app,
            stream: s.stream,
            home_shard: s.home_shard.map(|h| h as u32),
            domain: s.domain,
        };
        if let Err(e) = self.send_as(shard, id, msg) {
            self.forget(s.session);
            return Err(e);
        }
        Ok(())
    }

    /// Ends a session wherever it is (works for sessions a previous control
    /// instance created: the shard is encoded in the id).
    pub fn remove_session(&self, session: u64, reason: &str) -> Result<(), EngineError> {
        self.forget(session);
        let id = self.next_id();
        self.state().removed.insert(session, id);
        self.send_as(ipc::session_shard(session), id, ControlToShard::RemoveSession { session, reason: reason.to_string() })
    }

    fn forget(&self, session: u64) {
        let gone = self.state().sessions.remove(&session);
        if let Some(s) = gone.filter(|s| s.connected && !s.key.is_empty()) {
            let (domain, app, stream) = key_names(&s.key);
            let call = rts_common::ipc::HookCall {
                action: "on_stop".into(),
                session,
                protocol: rts_common::ipc::Protocol::Webrtc,
                client: s.peer,
                domain: domain.into(),
                app: app.into(),
                stream: stream.into(),
                param: String::new(),
            };
            self.call_hook(None, 0, call);
        }
        self.submit(Job::Remove { session });
    }

    /// Makes the hook call on a thread of its own; a decision (`req` != 0)
    /// goes back to `shard` as `HookVerdict`.
    fn call_hook(&self, shard: Option<usize>, req: u64, call: rts_common::ipc::HookCall) {
        let cfg = self.cfg();
        if cfg.hooks.url(&call.action).is_empty() && req == 0 {
            return;
        }
        let Some(me) = self.me.get().and_then(|w| w.upgrade()) else { return };
        let spawned = std::thread::Builder::new().name("rts-hook".into()).spawn(move || {
            let verdict = me.hooks.decide(&cfg.hooks, &call, &cfg.node_id());
            if let (Some(shard), true) = (shard, req != 0) {
                let (allow, reason) = match verdict {
                    crate::hooks::Verdict::Allow => (true, String::new()),
                    crate::hooks::Verdict::Refuse(r) | crate::hooks::Verdict::Failed(r) => (false, r),
                };
                let _ = me.send(shard, ControlToShard::HookVerdict { req, allow, reason });
            }
        });
        if let Err(e) = spawned {
            // The shard's own timeout applies the policy.
            tracing::warn!(error = %e, "cannot start a hook call");
        }
    }

    fn submit(&self, job: Job) {
        if let Some(p) = self.handshakes.get() {
            p.submit(job);
        }
    }

    /// A handshake worker got a DTLS record for a session it does not have.
    pub(crate) fn count_unknown_session(&self) {
        self.state().counters.unknown_session += 1;
    }

    /// A handshake worker finished `session`'s handshake.
    /// `took_us`: from the peer's first record (None: no record came).
    pub(crate) fn on_handshake_done(&self, session: u64, took_us: Option<u32>) {
        let mut inner = self.state();
        inner.counters.dtls_connected += 1;
        if let Some(us) = took_us {
            inner.dtls_handshakes[0].record(&DTLS_HANDSHAKE_BOUNDS_US, us);
        }
        if let Some(s) = inner.sessions.get_mut(&session) {
            s.connected = true;
        }
    }

    /// A handshake ended the session for `reason`.
    /// `took_us`: how long the handshake ran before it failed (None: it
    /// had completed, or no record came).
    pub(crate) fn count_dtls_failure(&self, reason: &str, took_us: Option<u32>) {
        let mut inner = self.state();
        if let Some(us) = took_us {
            inner.dtls_handshakes[1].record(&DTLS_HANDSHAKE_BOUNDS_US, us);
        }
        if reason.contains("fingerprint") {
            inner.counters.fingerprint_mismatch += 1;
        } else if reason.starts_with("DTLS failed") {
            inner.counters.dtls_failed += 1;
        }
    }

    /// Records the ICE state of a session `add_session` registered.
    pub fn set_ice(&self, session: u64, ice: SessionIce) {
        if let Some(s) = self.state().sessions.get_mut(&session) {
            s.ice = Some(ice);
        }
    }

    /// `None` when control does not know the session; `Some(None)` when it
    /// does but has no ICE state for it (adopted after a control restart).
    pub fn session_ice(&self, session: u64) -> Option<Option<SessionIce>> {
        self.state().sessions.get(&session).map(|s| s.ice.clone())
    }

    /// ICE restart (WHEP PATCH, RFC 9725 §4.3.5): when `if_match` holds for
    /// the session's current entity-tag, gives it new local credentials and
    /// tag, takes `remote_ufrag` / `remote_pwd` as the viewer's, and waits
    /// (briefly; call from a blocking context) until its shard accepts
    /// checks with the new credentials. Returns the new state.
    ///
    /// Control's state changes before the shard's (under `restart_order`, so
    /// overlapping restarts reach the shard in the same order); if the shard
    /// does not answer in time the restart may still apply there, which the
    /// viewer sees as failing checks and answers with another restart.
    pub fn restart_ice(&self, session: u64, if_match: &crate::ice::IfMatch, remote_ufrag: String, remote_pwd: String) -> Result<SessionIce, RestartError> {
        let shard = ipc::session_shard(session);
        if shard >= self.shards {
            return Err(RestartError::NoSession);
        }
        let (local_ufrag, local_pwd, etag) = crate::ice::new_ice_session();
        let key = (session, local_ufrag.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        let new = {
            let _order = self.restart_order.lock().unwrap_or_else(|e| e.into_inner());
            let (previous, new) = {
                let mut inner = self.state();
                let s = inner.sessions.get_mut(&session).ok_or(RestartError::NoSession)?;
                let current = s.ice.as_ref().map(|i| i.etag.as_str());
                if !if_match.holds(current) {
                    return Err(RestartError::PreconditionFailed);
                }
                let previous = s.ice.clone().ok_or(RestartError::NoIceState)?;
                let new = SessionIce { etag, local_ufrag: local_ufrag.clone(), local_pwd: local_pwd.clone(), remote_ufrag: remote_ufrag.clone(), remote_pwd, fragment: previous.fragment.clone() };
                s.ice = Some(new.clone());
                inner.restarts.insert(key.clone(), tx);
                (previous, new)
            };
            let msg = ControlToShard::IceRestart { session, local_ufrag, local_pwd, remote_ufrag };
            if let Err(e) = self.send(shard, msg) {
                // Not queued: the shard keeps the old credentials, so does control.
                let mut inner = self.state();
                inner.restarts.remove(&key);
                if let Some(s) = inner.sessions.get_mut(&session) {
                    s.ice = Some(previous);
                }
                return Err(RestartError::Unavailable(e.to_string()));
            }
            new
        };
        let answer = rx.recv_timeout(Duration::from_secs(2));
        self.state().restarts.remove(&key);
        match answer {
            Ok(true) => Ok(new),
            // The shard no longer has the session (its SessionClosed is on the way).
            Ok(false) => Err(RestartError::NoSession),
            Err(_) => Err(RestartError::Unavailable("shard did not answer the ICE restart".into())),
        }
    }

    /// Moves a playing session to another stream without new ICE/DTLS.
    /// Blocks (briefly) for the shard's answer; call from a blocking context.
    pub fn switch_stream(&self, session: u64, app: &str, stream: &str) -> Result<(), String> {
        let shard = ipc::session_shard(session);
        if shard >= self.shards {
            return Err("no such session".into());
        }
        if let Some(c) = self.cluster() {
            // A stream another node has: pulled here first (briefly waited for).
            let pulling = c.want(self, app, stream).map_err(|e| e.to_string())?;
            let wait = if pulling { self.cfg().cluster.as_ref().map_or(0, |c| c.pull_timeout_ms) } else { 0 };
            let until = Instant::now() + Duration::from_millis(wait);
            while self.stream_shard(app, stream).is_none() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let Some(home) = self.stream_shard(app, stream) else {
            return Err("stream is not live".into());
        };
        let (tx, rx) = std::sync::mpsc::channel();
        self.state().switches.insert(session, tx);
        let msg = ControlToShard::SwitchStream { session, app: app.to_string(), stream: stream.to_string(), home_shard: Some(home as u32) };
        if let Err(e) = self.send(shard, msg) {
            self.state().switches.remove(&session);
            return Err(e.to_string());
        }
        let r = rx.recv_timeout(Duration::from_secs(2)).unwrap_or_else(|_| Err("shard did not answer".into()));
        let mut inner = self.state();
        inner.switches.remove(&session);
        if r.is_ok() {
            if let Some(s) = inner.sessions.get_mut(&session) {
                s.key = format!("{app}/{stream}");
            }
        }
        r
    }

    /// Receiver feedback and repair figures of the playing sessions.
    pub fn viewer_stats(&self) -> Vec<ViewerStats> {
        let mut v: Vec<ViewerStats> = self.state().viewer_stats.values().copied().collect();
        v.sort_by_key(|s| s.session);
        v
    }

    pub fn streams(&self) -> Vec<StreamView> {
        let now = Instant::now();
        self.state()
            .streams
            .values()
            .map(|e| {
                let (domain, app) = rts_common::config::split_stream_app(&e.app);
                (domain.to_string(), app.to_string(), e)
            })
            .map(|(domain, app, e)| StreamView {
                domain,
                app,
                stream: e.stream.clone(),
                shard: e.shard,
                publishing: e.publishing,
                stats: e.totals.home(now).cloned(),
                viewers: e.totals.viewers(now),
                bytes_in: e.totals.bytes_in(),
                bytes_out: e.totals.bytes_out(),
                per_shard: e.totals.current(now).cloned().collect(),
            })
            .collect()
    }

    /// (bytes_in, bytes_out) per domain/app/stream/protocol, over the shards.
    pub fn usage_totals(&self) -> BTreeMap<rts_common::ipc::UsageKey, (u64, u64)> {
        self.state().usage.totals().clone()
    }

    pub fn shard_stats(&self) -> Vec<ShardStats> {
        self.state().shard_stats.iter().flatten().cloned().collect()
    }

    /// DTLS handshake times since control started: [completed, failed].
    pub fn dtls_handshakes(&self) -> [Histogram; 2] {
        self.state().dtls_handshakes
    }

    pub fn counters(&self) -> (ControlCounters, BTreeMap<String, u64>, usize) {
        let inner = self.state();
        (inner.counters, inner.auth_failures.clone(), inner.sessions.len())
    }

    /// The ring pump: runs on its own thread until `stop()`.
    pub fn pump(self: Arc<Self>, mut consumers: Vec<Consumer>) {
        let mut next_timer = Instant::now();
        let mut next_reconcile = Instant::now() + RECONCILE_EVERY;
        while !self.stop.load(Ordering::Relaxed) {
            self.flush_backlogs();
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
            if now >= next_reconcile {
                next_reconcile = now + RECONCILE_EVERY;
                self.reconcile_all();
            }
            if !busy {
                // Every shard's ring rings one doorbell; a short bound keeps
                // the backlogs and timers moving.
                rts_common::shm::wait_any(&consumers, Duration::from_millis(1));
            }
        }
    }

    fn on_shard_message(&self, shard: usize, msg: ShardToControl) {
        match msg {
            ShardToControl::DtlsFromPeer { session, peer, data } => {
                {
                    let mut inner = self.state();
                    let Some(s) = inner.sessions.get_mut(&session) else {
                        // e.g. a session created by a previous control instance.
                        inner.counters.unknown_session += 1;
                        return;
                    };
                    s.peer.get_or_insert(peer);
                }
                self.submit(Job::Datagram { session, peer, data });
            }
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
            ShardToControl::Ack { id } => {
                let mut inner = self.state();
                if inner.inflight.remove(&id).is_some() {
                    inner.counters.acks += 1;
                }
            }
            ShardToControl::SessionList { snapshot, sessions, last } => {
                let done = {
                    let mut inner = self.state();
                    let entry = inner.listing.entry(shard).or_insert_with(|| (snapshot, Vec::new()));
                    if entry.0 != snapshot {
                        *entry = (snapshot, Vec::new());
                    }
                    entry.1.extend(sessions);
                    if last {
                        inner.listing.remove(&shard)
                    } else {
                        None
                    }
                };
                if let Some((snapshot, entries)) = done {
                    self.reconcile(shard, snapshot, &entries);
                }
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
            ShardToControl::IceRestarted { session, local_ufrag, ok } => {
                let inner = self.state();
                if let Some(tx) = inner.restarts.get(&(session, local_ufrag)) {
                    let _ = tx.send(ok);
                }
            }
            ShardToControl::Hook { req, call } => self.call_hook(Some(shard), req, call),
            ShardToControl::Clients { .. } | ShardToControl::CutDone { .. } => {
                if let Some(tx) = self.admin_answers.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                    let _ = tx.send(msg);
                }
            }
            ShardToControl::StreamWanted { app, stream } => {
                if let Some(c) = self.cluster() {
                    c.wanted(app, stream);
                }
            }
            ShardToControl::PullEnded { app, stream, reason } => {
                if let Some(c) = self.cluster() {
                    c.on_pull_ended(&app, &stream, &reason);
                }
            }
            ShardToControl::StreamStarted { app, stream } => {
                if let Some(c) = self.cluster() {
                    c.on_stream_started(&app, &stream);
                }
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
                    let _ = self.send(other, msg);
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
                if s.draining {
                    // A control started during a drain learns it here.
                    self.set_draining();
                }
                let mut inner = self.state();
                if let Some(slot) = inner.shard_stats.get_mut(shard) {
                    *slot = Some(*s);
                }
                if let Some(a) = inner.assigned.get_mut(shard) {
                    *a = 0;
                }
            }
            ShardToControl::Usage(records) => match self.billing.get() {
                Some(b) => b.submit(shard, records),
                None => {
                    let mut inner = self.state();
                    if !inner.usage_unwritable {
                        inner.usage_unwritable = true;
                        tracing::error!(shard, "the dataplane sends usage records but control has no [billing] section; they are not written");
                    }
                }
            },
            ShardToControl::UsageTotals(totals) => self.state().usage.on_report(shard as u32, totals),
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
                v.totals.on_report(*s, Instant::now());
            }
        }
    }

    /// `shard` answered snapshot request `snapshot` with `entries`. Sessions
    /// control added before that request and the shard no longer has are
    /// forgotten (their `SessionClosed` was lost, e.g. with a control
    /// restart); sessions the shard has and control does not are adopted
    /// when media runs (created by a previous control), and removed when
    /// still handshaking (the DTLS state died with that control). Sessions
    /// control removed after the request are neither.
    fn reconcile(&self, shard: usize, snapshot: u64, entries: &[SessionEntry]) {
        let listed: HashSet<u64> = entries.iter().map(|e| e.session).collect();
        let mut to_remove = Vec::new();
        {
            let mut inner = self.state();
            let gone: Vec<u64> = inner
                .sessions
                .iter()
                .filter(|(&id, s)| ipc::session_shard(id) == shard && s.add_req < snapshot && !listed.contains(&id))
                .map(|(&id, _)| id)
                .collect();
            for id in &gone {
                inner.sessions.remove(id);
                inner.viewer_stats.remove(id);
            }
            inner.counters.reconciled_forgotten += gone.len() as u64;
            for e in entries {
                let removed_later = inner.removed.get(&e.session).is_some_and(|&req| req > snapshot);
                if inner.sessions.contains_key(&e.session) || removed_later {
                    continue;
                }
                if e.media {
                    inner.counters.reconciled_adopted += 1;
                    inner.sessions.insert(e.session, CtlSession { add_req: 0, created: Instant::now(), connected: true, peer: None, ice: None, key: String::new(), client_ip: None });
                } else {
                    inner.counters.reconciled_removed += 1;
                    to_remove.push(e.session);
                }
            }
            // Removals the shard has applied by this snapshot are settled.
            inner.removed.retain(|&id, &mut req| req > snapshot || ipc::session_shard(id) != shard);
            if !gone.is_empty() {
                tracing::info!(shard, forgotten = gone.len(), "sessions the shard no longer has");
            }
        }
        for id in to_remove {
            let _ = self.remove_session(id, "handshake lost with a control restart");
        }
    }

    /// Sessions that never finished ICE+DTLS are dropped after 30 s (the
    /// shard drops its side on the same schedule). DTLS retransmission
    /// timers run on the handshake workers.
    fn on_timers(&self, now: Instant) {
        let expired: Vec<u64> = {
            let inner = self.state();
            inner
                .sessions
                .iter()
                .filter(|(_, s)| !s.connected && now.duration_since(s.created) > Duration::from_secs(30))
                .map(|(&id, _)| id)
                .collect()
        };
        for id in expired {
            self.forget(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rts_common::shm::RingConfig;

    /// A region as the dataplane makes it (one shard, 2 KiB slots), with
    /// control attached and nobody consuming its requests.
    fn attached(tag: &str) -> (Arc<Engine>, std::path::PathBuf, ShmRegion) {
        let path = std::env::temp_dir().join(format!("rts-engine-{tag}-{}", std::process::id()));
        let region = ShmRegion::create(&path, &RingConfig { shards: 1, slots: 8, slot_size: 2048 }).unwrap();
        let mut cfg = Config::default();
        cfg.dataplane.shm_path = path.clone();
        cfg.control.dtls_workers = 1;
        let (engine, _consumers, _attached) = Engine::attach(Arc::new(cfg), Duration::from_secs(1)).unwrap();
        (engine, path, region)
    }

    #[test]
    fn a_message_too_large_for_a_ring_slot_is_refused_not_queued() {
        let (engine, path, region) = attached("too-large");
        let switch = |stream: String| ControlToShard::SwitchStream { session: 1, app: "live".into(), stream, home_shard: None };
        // Fill the ring (the attach's snapshot request is in it already):
        // later state-changing messages wait in the backlog, in order.
        while engine.backlog_len() == 0 {
            engine.send(0, switch("s".into())).unwrap();
        }
        // Queued behind the others, a message that never fits a slot would
        // hold every later one to this shard for good.
        let err = engine.send(0, switch("x".repeat(5_000))).unwrap_err();
        assert!(matches!(err, EngineError::TooLarge(0, n) if n > 5_000), "{err}");
        assert_eq!(engine.backlog_len(), 1, "not queued");
        assert_eq!(engine.counters().0.ring_too_large, 1);
        // And the backlog still drains once the shard reads.
        let mut consumer = region.dataplane_endpoints(0).map(|(_, c)| c).unwrap();
        while consumer.pop_with(|_| ()).is_some() {}
        engine.flush_backlogs();
        assert_eq!(engine.backlog_len(), 0);
        engine.stop();
        let _ = std::fs::remove_file(&path);
    }
}
