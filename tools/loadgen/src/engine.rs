//! Threads and sockets: ramp-paced signaling threads hand ready sessions to
//! T worker threads, each a mio event loop over its viewers' UDP sockets
//! (one socket per viewer, so the server sees distinct 5-tuples).
//!
//! Cost per packet is what limits viewers per loadgen core, so a worker
//! batches: it wakes at most once per `--wake-interval-us` (edge-triggered
//! epoll), drains each ready socket with `recvmmsg` into one reusable set of
//! buffers, and reads the clocks once per wake-up. Light viewers then cost a
//! header parse per packet and a system call per socket per wake-up, and the
//! kernel copies only the head of each of their datagrams.

use crate::report::{FailureKind, Tally};
use crate::signaling::{self, Target};
use crate::swipe::{SwipeConfig, SwitchOutcome, SwitchTarget};
use crate::sys::{self, RecvBatch};
use crate::viewer::{Phase, Viewer, ViewerConfig, HEAD_BYTES};
use crate::Options;
use crossbeam_channel::{Receiver, Sender};
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use rts_dtls::DtlsContext;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Worker poll timeout; also the timer scan granularity.
const TICK: Duration = Duration::from_millis(5);
/// Largest datagram we expect (server MTU is ~1200).
const RECV_BUF: usize = 2048;
/// Largest coalesced (UDP_GRO) datagram: 64 KiB.
const GRO_BUF: usize = 65_536;
/// Datagrams per recvmmsg call.
const RECV_BATCH: usize = 32;
/// Socket receive buffer: a keyframe burst for one viewer between two wake-ups.
const SOCKET_RCVBUF: usize = 1 << 20;
/// At teardown, how long a worker waits for the answers to its switch
/// requests still out (rts's control gives up on the shard after 2 s).
const SWITCH_DRAIN: Duration = Duration::from_millis(2500);

/// State shared by every thread of a run; counters feed the progress line.
#[derive(Default)]
pub struct Shared {
    pub stop: AtomicBool,
    pub active: AtomicI64,
    pub started: AtomicU64,
    pub connected: AtomicU64,
    pub failed: AtomicU64,
    pub bytes: AtomicU64,
    pub stalls: AtomicU64,
    pub signaling_done: AtomicU64,
    pub first_start: OnceLock<Instant>,
    /// Failures that happened before a viewer reached a worker.
    pub signaling_failures: Mutex<Tally>,
    /// WHEP resources to DELETE at teardown.
    pub locations: Mutex<Vec<String>>,
}

impl Shared {
    fn fail(&self, kind: FailureKind) {
        self.failed.fetch_add(1, Relaxed);
        self.signaling_failures.lock().unwrap_or_else(|e| e.into_inner()).fail(kind);
    }
}

/// A signaled session on its way to a worker.
pub struct NewSession {
    cfg: ViewerConfig,
    socket: std::net::UdpSocket,
}

/// A switch request for an HTTP thread; the answer goes back to the
/// worker that owns the viewer, in `slot` (if it still holds `serial`).
pub struct SwitchJob {
    url: String,
    reply: Sender<SwitchDone>,
    slot: usize,
    serial: u64,
}

/// How a switch request went, with its send and answer times.
pub struct SwitchDone {
    slot: usize,
    serial: u64,
    sent: Instant,
    answered: Instant,
    outcome: SwitchOutcome,
}

/// Swipe mode's link from the workers to the HTTP threads.
#[derive(Clone)]
pub struct SwipeLink {
    pub jobs: Sender<SwitchJob>,
    pub targets: Arc<Vec<SwitchTarget>>,
}

/// Switch thread body: sends switch requests until every worker is gone.
/// Blocking HTTP, off the media workers; the time taken just before the
/// request and just after its answer are what the viewer's timing uses.
pub fn switch_thread(jobs: Receiver<SwitchJob>, timeout: Duration) {
    let agent = signaling::agent(timeout);
    while let Ok(job) = jobs.recv() {
        let sent = Instant::now();
        let outcome = signaling::switch(&agent, &job.url);
        let answered = Instant::now();
        let _ = job.reply.send(SwitchDone { slot: job.slot, serial: job.serial, sent, answered, outcome });
    }
}

/// What a signaling thread needs.
pub struct SignalingJob {
    pub opts: Options,
    pub target: Target,
    pub fingerprint: String,
    pub t0: Instant,
    pub next: Arc<AtomicU64>,
    pub workers: Vec<Sender<NewSession>>,
    pub shared: Arc<Shared>,
    /// Swipe mode: the `--switch-streams` index of the URL's stream, if listed.
    pub swipe_start: Option<usize>,
}

/// Signaling thread body: take the next viewer index, wait for its ramp
/// slot, signal, open its socket and hand it to a worker.
pub fn signaling_thread(job: SignalingJob) {
    let o = &job.opts;
    let agent = signaling::agent(Duration::from_secs_f64(o.connect_timeout));
    let k = o.verified_count();
    loop {
        let i = job.next.fetch_add(1, Relaxed);
        if i >= o.viewers || job.shared.stop.load(Relaxed) {
            break;
        }
        let slot = job.t0 + Duration::from_secs_f64(i as f64 / o.ramp);
        while Instant::now() < slot && !job.shared.stop.load(Relaxed) {
            std::thread::sleep((slot - Instant::now()).min(Duration::from_millis(50)));
        }
        if job.shared.stop.load(Relaxed) {
            break;
        }
        let started = Instant::now();
        let first = *job.shared.first_start.get_or_init(|| started);
        if started >= first + Duration::from_secs_f64(o.duration) {
            break; // the hold is over; later viewers are not started
        }
        job.shared.started.fetch_add(1, Relaxed);
        let local_ufrag = random_token(8);
        let local_pwd = random_token(24);
        let offer = rts_sdp::build_recvonly_offer(&rts_sdp::OfferOptions {
            ice_ufrag: local_ufrag.clone(),
            ice_pwd: local_pwd.clone(),
            fingerprint_sha256: job.fingerprint.clone(),
            video: true,
            audio: true,
        });
        let remote = match signaling::signal(&agent, &job.target, &offer) {
            Ok(r) => r,
            Err(kind) => {
                job.shared.fail(kind);
                continue;
            }
        };
        if let Some(l) = &remote.location {
            job.shared.locations.lock().unwrap_or_else(|e| e.into_inner()).push(l.clone());
        }
        let candidate = if o.ipv6 { remote.addr6 } else { Some(remote.addr) };
        let Some(dest) = o.relay.or(candidate) else {
            // --ipv6 and the answer has no IPv6 candidate.
            job.shared.fail(FailureKind::BadSdp);
            continue;
        };
        let socket = match open_socket(dest, !job.opts.no_gro) {
            Ok(s) => s,
            Err(_) => {
                job.shared.fail(FailureKind::ConnectError);
                continue;
            }
        };
        // Spread verified viewers evenly; viewer 0 is always one.
        let verified = (i * k) % o.viewers < k;
        let cfg = ViewerConfig {
            remote,
            local_ufrag,
            local_pwd,
            dest,
            verified,
            signaling_started: started,
            ice_timeout: Duration::from_secs_f64(o.ice_timeout),
            dtls_timeout: Duration::from_secs_f64(o.dtls_timeout),
            nack: !o.no_nack,
            drop_pct: o.drop_pct,
            drop_seed: crate::repair::viewer_seed(o.seed, i),
            rebind_after: o.rebind_after.map(Duration::from_secs_f64),
            swipe: o.switch_every.map(|every| SwipeConfig {
                targets: o.switch_streams.len(),
                start: job.swipe_start,
                offset: i as usize,
                every: Duration::from_secs_f64(every),
                timeout: Duration::from_secs_f64(o.switch_timeout),
                measure_frames: verified,
            }),
        };
        job.shared.active.fetch_add(1, Relaxed);
        let w = (i as usize) % job.workers.len();
        if job.workers[w].send(NewSession { cfg, socket }).is_err() {
            job.shared.active.fetch_sub(1, Relaxed);
        }
    }
    job.shared.signaling_done.fetch_add(1, Relaxed);
}

fn open_socket(remote: SocketAddr, gro: bool) -> std::io::Result<std::net::UdpSocket> {
    let bind: SocketAddr = if remote.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { (std::net::Ipv6Addr::UNSPECIFIED, 0).into() };
    let s = std::net::UdpSocket::bind(bind)?;
    s.connect(remote)?;
    s.set_nonblocking(true)?;
    // Best effort: without it the kernel default (~208 KiB) still works for most streams.
    let _ = sys::set_recv_buffer(&s, SOCKET_RCVBUF);
    // Best effort too: without GRO every datagram is received on its own.
    if gro {
        sys::enable_gro(&s);
    }
    Ok(s)
}

fn random_token(n: usize) -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..n).map(|_| char::from(CHARS[rng.gen_range(0..CHARS.len())])).collect()
}

struct Slot {
    viewer: Viewer,
    socket: UdpSocket,
    counted_connected: bool,
    /// Tells a switch answer for this viewer from one for an earlier
    /// occupant of the slot.
    serial: u64,
}

/// DTLS contexts for both roles, sharing one certificate (and fingerprint).
#[derive(Clone)]
pub struct Contexts {
    /// We send the ClientHello (answer `setup:passive`, e.g. rts).
    pub client: DtlsContext,
    /// The peer does (answer `setup:active`, e.g. aiortc).
    pub server: DtlsContext,
}

/// Worker thread body: runs until `shared.stop` or `deadline`, then tears
/// its viewers down and returns their summed tally.
pub fn worker(
    rx: Receiver<NewSession>,
    ctx: Contexts,
    shared: Arc<Shared>,
    deadline: Instant,
    wake_interval: Duration,
    gro: bool,
    swipe: Option<SwipeLink>,
) -> std::io::Result<Tally> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(4096);
    let mut slots: Vec<Option<Slot>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    // With GRO a datagram may be a whole frame's packets: verified viewers
    // need room for all of it; light ones still read only the head (see
    // `Viewer::handle_coalesced_head`).
    let mut whole = RecvBatch::new(RECV_BATCH, if gro { GRO_BUF } else { RECV_BUF });
    let mut heads = RecvBatch::new(RECV_BATCH, HEAD_BYTES);
    let mut last_wake = Instant::now();
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut tally = Tally::default();
    let mut bytes_reported = 0u64;
    let mut bytes_now = 0u64;
    let mut stalls_reported = 0u64;
    let mut next_scan = Instant::now();
    let mut next_report = Instant::now();
    let (done_tx, done_rx) = crossbeam_channel::unbounded::<SwitchDone>();
    let mut switches_out = 0usize;
    let mut serial = 0u64;

    while !shared.stop.load(Relaxed) && Instant::now() < deadline {
        let now = Instant::now();
        while let Ok(s) = rx.try_recv() {
            let mut socket = UdpSocket::from_std(s.socket);
            let role_ctx = if s.cfg.remote.dtls_server { &ctx.server } else { &ctx.client };
            let Ok(mut viewer) = Viewer::new(role_ctx, s.cfg, now) else {
                shared.fail(FailureKind::DtlsFailed);
                shared.active.fetch_sub(1, Relaxed);
                continue;
            };
            let idx = free.pop().unwrap_or_else(|| {
                slots.push(None);
                slots.len() - 1
            });
            if poll.registry().register(&mut socket, Token(idx), Interest::READABLE).is_err() {
                free.push(idx);
                shared.fail(FailureKind::ConnectError);
                shared.active.fetch_sub(1, Relaxed);
                continue;
            }
            viewer.handle_timeout(now, &mut out);
            flush(&socket, &mut out);
            serial += 1;
            slots[idx] = Some(Slot { viewer, socket, counted_connected: false, serial });
        }

        // Batch wake-ups: let datagrams gather for up to `wake_interval` since
        // the last one, so one epoll_wait returns many sockets and one
        // recvmmsg returns several datagrams of each.
        let since = last_wake.elapsed();
        if since < wake_interval {
            std::thread::sleep(wake_interval - since);
        }
        if let Err(e) = poll.poll(&mut events, Some(TICK)) {
            if e.kind() != ErrorKind::Interrupted {
                return Err(e);
            }
        }
        // One clock read per wake-up (also the arrival time of everything drained now).
        let now = Instant::now();
        last_wake = now;
        let wall_us = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64);
        for ev in events.iter() {
            let idx = ev.token().0;
            let Some(Some(slot)) = slots.get_mut(idx) else { continue };
            // Edge-triggered: drain until a short batch or WouldBlock.
            loop {
                let batch = if slot.viewer.headers_only() { &mut heads } else { &mut whole };
                match batch.recv(&slot.socket) {
                    Ok(n) => {
                        for i in 0..n {
                            let segment = batch.segment(i);
                            let (d, len) = batch.get_mut(i);
                            bytes_now += len as u64;
                            match segment {
                                // Coalesced: the server's datagrams, back to back.
                                Some(seg) if d.len() == len => {
                                    for p in d.chunks_mut(seg) {
                                        let n = p.len();
                                        slot.viewer.handle_head(now, wall_us, p, n, &mut out);
                                    }
                                }
                                // A light viewer's head of a coalesced datagram.
                                Some(seg) => slot.viewer.handle_coalesced_head(now, wall_us, d, len, seg, &mut out),
                                None => slot.viewer.handle_head(now, wall_us, d, len, &mut out),
                            }
                        }
                        // NACKs for what this batch found missing, at once.
                        slot.viewer.flush_feedback(now, &mut out);
                        if !out.is_empty() {
                            flush(&slot.socket, &mut out);
                        }
                        if n < batch.capacity() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    // ICMP port unreachable and friends: the timers decide the outcome.
                    Err(_) => break,
                }
            }
        }

        // Switch answers, before the timers look at the switches.
        while let Ok(d) = done_rx.try_recv() {
            switches_out -= 1;
            answer_switch(&mut slots, d);
        }

        if now >= next_scan {
            next_scan = now + TICK;
            for (idx, entry) in slots.iter_mut().enumerate() {
                let Some(slot) = entry else { continue };
                if slot.viewer.poll_timeout().is_some_and(|t| t <= now) {
                    slot.viewer.handle_timeout(now, &mut out);
                    flush(&slot.socket, &mut out);
                }
                if slot.viewer.wants_rebind(now) {
                    rebind(&poll, slot, idx, now, gro, &mut out);
                }
                if let Some(link) = &swipe {
                    if let Some(t) = slot.viewer.poll_switch(now) {
                        let job = slot.viewer.location().map(|l| SwitchJob { url: link.targets[t].url(l), reply: done_tx.clone(), slot: idx, serial: slot.serial });
                        match job.map(|j| link.jobs.send(j)) {
                            Some(Ok(())) => switches_out += 1,
                            _ => slot.viewer.switch_answered(now, now, SwitchOutcome::Failed),
                        }
                    }
                }
                if !slot.counted_connected && slot.viewer.phase() == Phase::Connected {
                    slot.counted_connected = true;
                    shared.connected.fetch_add(1, Relaxed);
                }
                if slot.viewer.is_done() {
                    if let Some(mut s) = entry.take() {
                        let _ = poll.registry().deregister(&mut s.socket);
                        if matches!(s.viewer.phase(), Phase::Failed(_)) {
                            shared.failed.fetch_add(1, Relaxed);
                        }
                        shared.active.fetch_sub(1, Relaxed);
                        tally.merge(s.viewer.finish(now));
                        free.push(idx);
                    }
                }
            }
        }

        if now >= next_report {
            next_report = now + Duration::from_millis(200);
            shared.bytes.fetch_add(bytes_now - bytes_reported, Relaxed);
            bytes_reported = bytes_now;
            let stalls: u64 = slots.iter().flatten().map(|s| s.viewer.live_stalls()).sum::<u64>() + tally.stall_count;
            shared.stalls.fetch_add(stalls.saturating_sub(stalls_reported), Relaxed);
            stalls_reported = stalls_reported.max(stalls);
        }
    }

    // Teardown: DTLS close_notify to every viewer, then their final
    // accounting, with the answers to switch requests still out (counted,
    // and their frames timed only if they came before `now`).
    let now = Instant::now();
    let drain_until = (now + SWITCH_DRAIN).min(deadline);
    while switches_out > 0 {
        let Ok(d) = done_rx.recv_deadline(drain_until) else { break };
        switches_out -= 1;
        answer_switch(&mut slots, d);
    }
    for slot in slots.into_iter().flatten() {
        let Slot { mut viewer, socket, .. } = slot;
        viewer.close(now, &mut out);
        flush(&socket, &mut out);
        tally.merge(viewer.finish(now));
    }
    // Sessions still queued never started their ICE phase: nothing to count.
    Ok(tally)
}

/// Hands a switch answer to its viewer, if it is still in its slot.
fn answer_switch(slots: &mut [Option<Slot>], d: SwitchDone) {
    if let Some(Some(slot)) = slots.get_mut(d.slot) {
        if slot.serial == d.serial {
            slot.viewer.switch_answered(d.sent, d.answered, d.outcome);
        }
    }
}

/// `--rebind-after`: moves a viewer to a new socket (a new local port, the
/// same destination) under the same token; the old one is closed, and what
/// the server still sends there is lost until its check moves the media.
fn rebind(poll: &Poll, slot: &mut Slot, idx: usize, now: Instant, gro: bool, out: &mut Vec<Vec<u8>>) {
    let Ok(s) = open_socket(slot.viewer.dest(), gro) else {
        return slot.viewer.rebind_failed();
    };
    let mut socket = UdpSocket::from_std(s);
    if poll.registry().register(&mut socket, Token(idx), Interest::READABLE).is_err() {
        return slot.viewer.rebind_failed();
    }
    let _ = poll.registry().deregister(&mut slot.socket);
    slot.socket = socket;
    slot.viewer.rebound(now, out);
    flush(&slot.socket, out);
}

/// Sends queued datagrams; UDP send errors are counted by the outcome (timeouts), not raised.
fn flush(socket: &UdpSocket, out: &mut Vec<Vec<u8>>) {
    for d in out.drain(..) {
        let _ = socket.send(&d);
    }
}
