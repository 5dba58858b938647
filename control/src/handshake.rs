//! DTLS handshakes on a pool of worker threads, off the ring pump and off
//! the engine's lock: every session belongs to one worker (by its id), which
//! owns its DTLS endpoint, so a session's records stay in order and
//! handshakes of different sessions run on different cores. A worker only
//! takes the engine's lock for brief bookkeeping (counters, the session's
//! `connected` flag), never during crypto.

use crate::engine::{Engine, MediaParams};
use crate::ice::RemoteFingerprints;
use rts_common::ipc::{self, ControlToShard};
use rts_dtls::{DtlsEndpoint, DtlsEvent};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Weak;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often a worker checks its sessions' DTLS retransmission timers.
const TIMER_TICK: Duration = Duration::from_millis(10);

/// Work for the worker that owns `session`.
pub(crate) enum Job {
    /// A new session: its server endpoint and what to check and hand on.
    Add { session: u64, dtls: Box<DtlsEndpoint>, fingerprint: Option<RemoteFingerprints>, media: MediaParams, key: String },
    /// A DTLS record from the session's peer.
    Datagram { session: u64, peer: SocketAddr, data: Vec<u8> },
    /// The session is gone: drop its endpoint.
    Remove { session: u64 },
}

struct Handshake {
    dtls: Box<DtlsEndpoint>,
    /// What the peer's certificate must match; a session without is refused.
    fingerprint: Option<RemoteFingerprints>,
    media: MediaParams,
    key: String,
    connected: bool,
    /// When the peer's first DTLS record came (the handshake's start for
    /// `rts_dtls_handshake_seconds`).
    first_record: Option<Instant>,
}

/// The workers; jobs go to the session's worker.
pub(crate) struct Pool {
    workers: Vec<Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

impl Pool {
    /// `n` workers (at least one) serving `engine`.
    pub fn start(n: usize, engine: Weak<Engine>) -> std::io::Result<Pool> {
        let mut workers = Vec::new();
        let mut threads = Vec::new();
        for i in 0..n.max(1) {
            let (tx, rx) = mpsc::channel();
            let e = engine.clone();
            threads.push(std::thread::Builder::new().name(format!("rts-dtls-{i}")).spawn(move || run(rx, e))?);
            workers.push(tx);
        }
        Ok(Pool { workers, threads })
    }

    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Hands `job` to the worker of its session.
    pub fn submit(&self, job: Job) {
        let session = match &job {
            Job::Add { session, .. } | Job::Datagram { session, .. } | Job::Remove { session } => *session,
        };
        // Session ids are random in their low 48 bits: spread by those.
        let w = (session % self.workers.len() as u64) as usize;
        let _ = self.workers[w].send(job);
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Closing the channels ends the workers.
        self.workers.clear();
        for t in self.threads.drain(..) {
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

fn run(rx: Receiver<Job>, engine: Weak<Engine>) {
    let mut sessions: HashMap<u64, Handshake> = HashMap::new();
    let mut next_tick = Instant::now() + TIMER_TICK;
    loop {
        let wait = next_tick.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(job) => {
                let Some(e) = engine.upgrade() else { return };
                on_job(&e, &mut sessions, job);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let now = Instant::now();
        if now >= next_tick {
            next_tick = now + TIMER_TICK;
            let Some(e) = engine.upgrade() else { return };
            on_timers(&e, &mut sessions, now);
        }
    }
}

fn on_job(engine: &Engine, sessions: &mut HashMap<u64, Handshake>, job: Job) {
    match job {
        Job::Add { session, dtls, fingerprint, media, key } => {
            sessions.insert(session, Handshake { dtls, fingerprint, media, key, connected: false, first_record: None });
        }
        Job::Remove { session } => {
            sessions.remove(&session);
        }
        Job::Datagram { session, peer, data } => {
            let Some(h) = sessions.get_mut(&session) else {
                // Adopted after a control restart, or gone: nothing to do.
                engine.count_unknown_session();
                return;
            };
            let now = Instant::now();
            h.first_record.get_or_insert(now);
            if let Err(e) = h.dtls.handle_datagram(&data, now) {
                tracing::debug!(session = format_args!("{session:016x}"), error = %e, "DTLS record rejected");
            }
            let ended = drain(engine, session, h, Some(peer), now);
            if ended {
                sessions.remove(&session);
            }
        }
    }
}

/// Sends what the endpoint produced and acts on its events; true when the
/// session ended.
fn drain(engine: &Engine, session: u64, h: &mut Handshake, peer: Option<SocketAddr>, now: Instant) -> bool {
    let took_us = |h: &Handshake| h.first_record.map(|t| rts_common::histogram::micros_since(t, now));
    let shard = ipc::session_shard(session);
    while let Some(data) = h.dtls.poll_datagram() {
        let _ = engine.send(shard, ControlToShard::DtlsToPeer { session, data });
    }
    let mut fail = None;
    while let Some(ev) = h.dtls.poll_event() {
        match ev {
            DtlsEvent::Connected(export) if !h.connected => {
                let mismatch = match &h.fingerprint {
                    Some(f) if f.matches(&export.peer_certificate) => None,
                    Some(f) => Some(format!("DTLS certificate does not match the offer's {} fingerprint", f.hash.sdp_name())),
                    None => Some("no offer fingerprint to check the DTLS certificate against".to_string()),
                };
                if mismatch.is_some() {
                    fail = mismatch;
                    continue;
                }
                h.connected = true;
                engine.on_handshake_done(session, took_us(h));
                let Some(profile) = rts_srtp::Profile::from_dtls_id(export.profile_id) else {
                    fail = Some("unsupported SRTP profile".into());
                    continue;
                };
                // We are the DTLS server: local = server write keys.
                match rts_srtp::KeyingMaterial::from_exported(profile, &export.material, true) {
                    Ok(k) => {
                        let fingerprint = h.fingerprint.as_ref().map_or("", |f| f.hash.sdp_name());
                        tracing::info!(session = format_args!("{session:016x}"), stream = %h.key, peer = ?peer, ?profile, fingerprint, "DTLS connected; media starts");
                        let m = h.media;
                        let msg = ControlToShard::StartMedia {
                            session,
                            srtp_profile: export.profile_id,
                            local_key: k.local_key,
                            local_salt: k.local_salt,
                            remote_key: k.remote_key,
                            remote_salt: k.remote_salt,
                            video_pt: m.video_pt,
                            audio_pt: m.audio_pt,
                            video_playout_delay_id: m.video_playout_delay_id,
                            video_rtx: m.video_rtx,
                            video_nack: m.video_nack,
                            audio_red_pt: m.audio_red_pt,
                        };
                        if let Err(e) = engine.send(shard, msg) {
                            tracing::warn!(session = format_args!("{session:016x}"), error = %e, "StartMedia refused");
                        }
                    }
                    Err(e) => fail = Some(format!("SRTP keys: {e}")),
                }
            }
            DtlsEvent::Connected(_) => {}
            DtlsEvent::Closed => fail = Some("DTLS close_notify".to_string()),
            DtlsEvent::Failed(e) => fail = Some(format!("DTLS failed: {e}")),
        }
    }
    match fail {
        Some(reason) => {
            // A handshake that never completed is timed as failed; the end
            // of one that did (close_notify, teardown) is not a handshake.
            engine.count_dtls_failure(&reason, if h.connected { None } else { took_us(h) });
            tracing::info!(session = format_args!("{session:016x}"), %reason, "session ends");
            let _ = engine.remove_session(session, &reason);
            true
        }
        None => false,
    }
}

fn on_timers(engine: &Engine, sessions: &mut HashMap<u64, Handshake>, now: Instant) {
    let mut ended = Vec::new();
    for (&session, h) in sessions.iter_mut() {
        if h.dtls.poll_timeout().is_some_and(|t| t <= now) {
            let _ = h.dtls.handle_timeout(now);
            if drain(engine, session, h, None, now) {
                ended.push(session);
            }
        }
    }
    for s in ended {
        sessions.remove(&s);
    }
}

/// The pool handle the engine keeps: started once the engine exists (the
/// workers hold a weak reference to it).
pub(crate) type PoolSlot = std::sync::OnceLock<Pool>;

/// Workers for `[control] dtls_workers` (0: one per core, at most 8).
pub(crate) fn worker_count(configured: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8)
}
