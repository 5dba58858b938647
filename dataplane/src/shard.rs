//! One shard's I/O shell: a thread pinned to a core with its own io_uring
//! loop, RTMP and media HTTP listeners (SO_REUSEPORT), UDP media port, control rings and
//! relay queues, around the sans-IO [`Core`] that decides everything.
//!
//! One loop turn: read the clock, hand the completions, the viewer
//! datagrams waiting on the UDP ring (which never wakes the shard, decision
//! 028), control messages and due timers to the core (draining its outputs after each), read the
//! clock again as the turn ends, and block in io_uring until the core's
//! next timeout (at most one tick). Nothing here is shared with other
//! shards.

use crate::core::{Core, TcpOutput};
use crate::relay::RelayMesh;
use crate::udp::{self, UdpSender};
use crate::recv_ring::RecvRing;
use crate::uring::{Completion, RecvSlot, Token, Uring};
use bytes::Bytes;
use rts_common::config::Config;
use rts_common::ipc::{self, Request, ShardToControl};
use rts_common::shm::{Consumer, Producer};
use slab::Slab;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Longest wait in io_uring: the control ring has no wake-up into the ring,
/// so it is polled at least this often; so is the UDP ring (viewer
/// datagrams wait at most this long, see `read_udp_ring`).
const TICK: Duration = Duration::from_millis(1);
/// Outstanding recvmsg operations: enough to drain a burst of STUN/DTLS/RTCP
/// from a ramp of new viewers while a keyframe fan-out keeps the loop busy.
const UDP_RECV_SLOTS: usize = 128;
const TCP_RECV_BUF: usize = 64 * 1024;
/// Media-listener connections only send a request head (bounded at 8 KiB,
/// read in pieces); then nothing is expected but the close.
const HTTP_RECV_BUF: usize = 4 * 1024;
/// An RTMP peer with this much unsent output is not reading: closed.
const TCP_OUT_LIMIT: usize = 4 << 20;
/// The same safety net for media viewers, above what the core lets queue
/// (its skip limit plus one GOP start; see core/flv_viewers.rs).
const HTTP_OUT_LIMIT: usize = 32 << 20;
/// Buffers handed to one writev.
const MAX_IOV: usize = 64;
/// State-changing messages for control kept while its ring is full.
const CTL_BACKLOG_LIMIT: usize = 1 << 16;
/// Batches sent after one input before the shard reads its sockets and
/// rings again: a keyframe to thousands of viewers (tens of ms) goes out in
/// slices, with other streams' frames, checks and control handled between
/// them (the core gives each stream's delivery turns).
const BATCHES_PER_SLICE: usize = 16;
/// UDP datagrams handled before the shard drains the core (see
/// `on_completion`): at most one batch of one-off replies.
const UDP_DRAIN_EVERY: usize = crate::batch::SHARD_BATCH_MESSAGES;
/// Completions one read of the UDP ring can bring: one per provided buffer.
const RECV_RING_REAP: usize = crate::recv_ring::RING_ENTRIES as usize;
/// Reads of the UDP ring per turn at most (see `read_udp_ring`).
const UDP_RING_ROUNDS: usize = 4;
/// How often the core's wall clock anchor is refreshed.
const WALLCLOCK_EVERY: Duration = Duration::from_secs(1);

pub struct ShardInit {
    pub id: usize,
    pub core: Option<usize>,
    pub pinned: bool,
    pub cfg: Arc<Config>,
    pub to_ctl: Producer,
    pub from_ctl: Consumer,
    pub stop: Arc<AtomicBool>,
    pub mesh: Arc<RelayMesh>,
    /// TLS for the media listener's HTTPS twin (`[https] media_listen`);
    /// None: no certificate configured.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The dataplane drains (see `Dataplane::drain`).
    pub draining: Arc<AtomicBool>,
    /// Where this shard publishes how many clients it holds (index = id).
    pub clients: Arc<Vec<std::sync::atomic::AtomicU64>>,
}

/// An RTMP connection's socket side; its protocol state is in the core.
struct Conn {
    sock: socket2::Socket,
    buf: Box<[u8]>,
    out: VecDeque<Bytes>,
    out_off: usize,
    /// The one recv this connection may have queued in io_uring.
    recv_in_flight: bool,
    /// Closed while its recv was in flight: freed when that completes.
    closing: bool,
    /// Accepted on the media listener (else RTMP).
    http: bool,
    /// Bytes in `out` not yet written (from `out_off` on).
    out_bytes: usize,
    /// TLS (accepted on `[https] media_listen`): the core reads and writes
    /// plaintext, the socket carries records.
    tls: Option<Box<rustls::ServerConnection>>,
    /// The address of an outgoing connect in flight (a cluster pull); the
    /// kernel reads it until the connect completes.
    connect_to: Option<Box<socket2::SockAddr>>,
}

pub struct Shard {
    id: usize,
    cpu: Option<usize>,
    pinned: bool,
    stop: Arc<AtomicBool>,
    uring: Uring,
    /// The multishot receive's own ring, which the loop never sleeps on
    /// (`[dataplane] udp_read_at_turns`): datagrams wait in it for the next
    /// turn instead of waking the shard. None: they come on `uring`.
    /// Declared before `recv_ring`, like `uring`.
    udp_uring: Option<Uring>,
    /// Completions reaped from `udp_uring` (kept for its capacity).
    udp_completions: Vec<Completion>,
    read_at_turns: bool,
    listener: socket2::Socket,
    media_listener: socket2::Socket,
    media_tls: Option<(socket2::Socket, Arc<rustls::ServerConfig>)>,
    udp: std::net::UdpSocket,
    /// The send-only twin of `udp` (see `udp::UdpPair`); `sender` uses it.
    _udp_send: std::net::UdpSocket,
    sender: UdpSender,
    // Boxed on purpose: the kernel holds pointers into each slot, and slots
    // are swapped with `spare_slot` by pointer without moving their memory.
    #[allow(clippy::vec_box)]
    recv_slots: Vec<Box<RecvSlot>>,
    spare_slot: Option<Box<RecvSlot>>,
    /// Provided buffers of the multishot receive; None: the one-shot
    /// `recv_slots` are used (config, or a kernel before 6.0). Declared
    /// after `uring` so the ring is gone before its buffers are freed.
    recv_ring: Option<Box<RecvRing>>,
    /// The multishot receive is in use (`recv_ring` registered and the
    /// kernel took the request).
    multishot: bool,
    /// Multishot receive re-armed (out of buffers, or an error ended it).
    udp_rearmed: u64,
    /// Datagrams longer than a receive buffer, dropped.
    udp_truncated: u64,
    /// UDP datagrams handled since the last drain.
    udp_undrained: usize,
    conns: Slab<Conn>,
    /// Connections whose output hit a full socket buffer (retried each turn).
    blocked: Vec<usize>,
    /// Connections given output in the current drain (written at its end).
    tcp_dirty: Vec<usize>,
    to_ctl: Producer,
    from_ctl: Consumer,
    /// Encoded state-changing messages waiting for room in `to_ctl`.
    ctl_backlog: VecDeque<Vec<u8>>,
    ring_full_dropped: u64,
    ctl_backlogged: u64,
    mesh: Arc<RelayMesh>,
    /// Target of the in-flight eventfd read (boxed: the kernel writes it).
    wake_buf: Box<u64>,
    register: bool,
    /// The current turn's time (see `run`).
    now: Instant,
    core: Core,
    draining: Arc<AtomicBool>,
    clients: Arc<Vec<std::sync::atomic::AtomicU64>>,
}

/// Moves what a TLS session has to send (records of queued plaintext,
/// handshake messages, alerts) to a connection's output queue.
fn tls_records(tls: &mut rustls::ServerConnection, out: &mut VecDeque<Bytes>, out_bytes: &mut usize) {
    while tls.wants_write() {
        let mut records = Vec::new();
        match tls.write_tls(&mut records) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                *out_bytes += records.len();
                out.push_back(Bytes::from(records));
            }
        }
    }
}

/// Drops the first `n` bytes of a queue whose front buffer is written up
/// to `off` (a partial write ends inside a buffer: `off` moves there).
fn consume(out: &mut VecDeque<Bytes>, off: &mut usize, mut n: usize) {
    while let Some(front) = out.front() {
        let rest = front.len() - *off;
        if n < rest {
            *off += n;
            return;
        }
        n -= rest;
        out.pop_front();
        *off = 0;
    }
}

/// A listening TCP socket that every shard binds on the same address
/// (SO_REUSEPORT): the kernel spreads connections over the shards. `[::]`
/// takes both families (falls back to IPv4 on a host without IPv6).
fn reuseport_listener(addr: SocketAddr, what: &str) -> anyhow::Result<socket2::Socket> {
    rts_common::net::bind_any_family(addr, what, |a| {
        let listener = rts_common::net::socket_for(a, socket2::Type::STREAM)?;
        listener.set_reuse_address(true)?;
        listener.set_reuse_port(true)?;
        listener.bind(&a.into())?;
        listener.listen(1024)?;
        Ok(listener)
    })
    .map_err(|e| io_err(&format!("bind {what} {addr}"), e))
}

fn io_err(ctx: &str, e: std::io::Error) -> anyhow::Error {
    anyhow::anyhow!("{ctx}: {e}")
}

fn unix_us() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

impl Shard {
    pub fn new(init: ShardInit) -> anyhow::Result<Shard> {
        let cfg = init.cfg.clone();
        // RTMP: one listener per shard on the same port; the kernel spreads
        // connections (SO_REUSEPORT), so a stream lives where it landed.
        let listener = reuseport_listener(cfg.rtmp.listen, "RTMP")?;
        let media_listener = reuseport_listener(cfg.http.media_listen, "media HTTP")?;
        let media_tls = match init.tls {
            Some(tls) => Some((reuseport_listener(cfg.https.media_listen, "media HTTPS")?, tls)),
            None => None,
        };

        let udp_addr = SocketAddr::new(cfg.webrtc.udp_bind_ip, cfg.udp_port(init.id));
        // Large buffers absorb keyframe bursts to many viewers; the kernel
        // caps them at net.core.[rw]mem_max (see kernel-tuning/).
        let pair = rts_common::net::bind_any_family(udp_addr, "WebRTC UDP", |a| udp::UdpPair::bind(a, 8 << 20, 4 << 20))
            .map_err(|e| io_err(&format!("bind UDP {udp_addr}"), e))?;
        let (udp, udp_send) = (pair.recv, pair.send);
        udp::enable_pktinfo(udp.as_raw_fd()).map_err(|e| io_err("IP_PKTINFO/IPV6_RECVPKTINFO", e))?;
        let sender = UdpSender::new(udp_send.as_raw_fd(), !cfg.dataplane.disable_gso);
        let shards = init.mesh.shards();
        Ok(Shard {
            id: init.id,
            cpu: init.core,
            pinned: init.pinned,
            stop: init.stop,
            uring: Uring::new(1024).map_err(|e| io_err("io_uring", e))?,
            udp_uring: None,
            udp_completions: Vec::with_capacity(RECV_RING_REAP),
            read_at_turns: cfg.dataplane.udp_read_at_turns,
            listener,
            media_listener,
            media_tls,
            udp,
            _udp_send: udp_send,
            sender,
            recv_slots: (0..UDP_RECV_SLOTS).map(|_| RecvSlot::new_boxed()).collect(),
            spare_slot: Some(RecvSlot::new_boxed()),
            recv_ring: cfg.dataplane.udp_multishot.then(|| Box::new(RecvRing::new())),
            multishot: false,
            udp_rearmed: 0,
            udp_truncated: 0,
            udp_undrained: 0,
            conns: Slab::new(),
            blocked: Vec::new(),
            tcp_dirty: Vec::new(),
            to_ctl: init.to_ctl,
            from_ctl: init.from_ctl,
            ctl_backlog: VecDeque::new(),
            ring_full_dropped: 0,
            ctl_backlogged: 0,
            mesh: init.mesh,
            wake_buf: Box::new(0),
            register: cfg.dataplane.uring_register,
            now: Instant::now(),
            core: Core::new(init.id, shards, cfg, Instant::now(), unix_us()),
            draining: init.draining,
            clients: init.clients,
        })
    }

    pub fn udp_port(&self) -> u16 {
        self.udp.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn gso(&self) -> bool {
        self.sender.gso_enabled()
    }

    pub fn run(mut self) -> anyhow::Result<()> {
        if self.register {
            let fds = [self.udp.as_raw_fd(), self.listener.as_raw_fd(), self.mesh.wake_fd(self.id), self.media_listener.as_raw_fd()];
            if let Err(e) = self.uring.register_files(&fds) {
                tracing::warn!(shard = self.id, error = %e, "io_uring file registration refused; using plain fds");
            }
        }
        self.uring.accept(self.listener.as_raw_fd(), Token::Accept).map_err(|e| io_err("accept", e))?;
        self.uring.accept(self.media_listener.as_raw_fd(), Token::AcceptMedia).map_err(|e| io_err("accept", e))?;
        if let Some((l, _)) = &self.media_tls {
            self.uring.accept(l.as_raw_fd(), Token::AcceptMediaTls).map_err(|e| io_err("accept", e))?;
        }
        if self.recv_ring.is_some() && self.read_at_turns {
            match Uring::new_unwaited(256) {
                Ok(mut u) => {
                    if self.register {
                        if let Err(e) = u.register_files(&[self.udp.as_raw_fd()]) {
                            tracing::warn!(shard = self.id, error = %e, "io_uring file registration refused on the UDP ring; using a plain fd");
                        }
                    }
                    self.udp_uring = Some(u);
                }
                Err(e) => tracing::warn!(shard = self.id, error = %e, "no io_uring with deferred task work (Linux 6.1+); datagrams wake the shard"),
            }
        }
        if let Some(ring) = &self.recv_ring {
            let uring = self.udp_uring.as_mut().unwrap_or(&mut self.uring);
            // SAFETY: the ring is boxed and declared after both io_urings,
            // so it stays in place until they are dropped.
            if let Err(e) = unsafe { uring.register_recv_ring(ring) } {
                tracing::warn!(shard = self.id, error = %e, "provided-buffer ring refused; using one-shot recvmsg");
                self.recv_ring = None;
                self.udp_uring = None;
            }
        }
        self.multishot = self.recv_ring.is_some();
        if self.multishot {
            self.arm_multishot();
        } else {
            self.arm_recv_slots()?;
        }
        self.arm_wake();
        let mut completions = Vec::with_capacity(256);
        let mut next_wallclock = Instant::now() + WALLCLOCK_EVERY;
        while !self.stop.load(Ordering::Relaxed) {
            // The turn's clock: every input of this turn happens "now".
            let now = Instant::now();
            self.now = now;
            for c in completions.drain(..) {
                self.on_completion(now, c);
            }
            self.read_udp_ring(now);
            if self.udp_undrained > 0 {
                self.drain();
            }
            self.poll_control(now);
            if now >= self.core.poll_timeout() {
                self.core.handle_timeout(now);
                self.drain();
            }
            if now >= next_wallclock {
                next_wallclock = now + WALLCLOCK_EVERY;
                self.core.set_wallclock(now, unix_us());
            }
            if self.draining.load(Ordering::Relaxed) && !self.core.draining() {
                self.core.handle_drain(now);
            }
            if let Some(c) = self.clients.get(self.id) {
                c.store(self.core.clients() as u64, Ordering::Relaxed);
            }
            self.retry_output();
            // Transmit work left from the slices above goes on here.
            self.drain();
            // The turn ends: latency samples and the load's idle time start here.
            let parked = Instant::now();
            self.core.handle_parked(parked);
            let wait = if self.core.transmit_pending() { Duration::ZERO } else { self.core.poll_timeout().saturating_duration_since(parked).min(TICK) };
            self.uring.submit_and_wait(wait).map_err(|e| io_err("io_uring_enter", e))?;
            self.uring.drain(&mut completions);
        }
        tracing::info!(shard = self.id, "shard stopped");
        Ok(())
    }

    /// Hands what the core produced to the sockets (at most a slice of
    /// [`BATCHES_PER_SLICE`]; the loop comes back for the rest), the control
    /// ring and the relay queues.
    fn drain(&mut self) {
        self.udp_undrained = 0;
        for _ in 0..BATCHES_PER_SLICE {
            let Some(t) = self.core.poll_transmit() else { break };
            self.sender.send_many(t.iter());
        }
        // Output is queued per connection and written once per drain
        // (one writev for all of it), not once per piece.
        while let Some(out) = self.core.poll_tcp() {
            match out {
                TcpOutput::Send { conn, data } => {
                    if let Some(c) = self.conns.get_mut(conn).filter(|c| !c.closing) {
                        if c.out.is_empty() {
                            self.tcp_dirty.push(conn);
                        }
                        match c.tls.as_mut() {
                            Some(tls) => {
                                let _ = std::io::Write::write_all(&mut tls.writer(), &data);
                                tls_records(tls, &mut c.out, &mut c.out_bytes);
                            }
                            None => {
                                c.out_bytes += data.len();
                                c.out.push_back(data);
                            }
                        }
                    }
                }
                TcpOutput::Close { conn } => {
                    if let Some(c) = self.conns.get_mut(conn) {
                        if let Some(tls) = c.tls.as_mut() {
                            tls.send_close_notify();
                            tls_records(tls, &mut c.out, &mut c.out_bytes);
                        }
                    }
                    let _ = self.flush_tcp(conn);
                    self.close_socket(conn);
                    self.core.handle_tcp_released(self.now, conn);
                }
                TcpOutput::Connect { token, addr } => {
                    let conn = self.connect(addr);
                    self.core.handle_pull_conn(self.now, token, conn);
                }
            }
        }
        let mut dirty = std::mem::take(&mut self.tcp_dirty);
        for conn in dirty.drain(..) {
            if let Err(reason) = self.flush_tcp(conn) {
                self.core.handle_tcp_closed(self.now, conn, reason);
            }
        }
        self.tcp_dirty = dirty;
        while let Some(msg) = self.core.poll_control() {
            self.push_ctl(msg);
        }
        while let Some((to, msg)) = self.core.poll_relay() {
            if let Err(msg) = self.mesh.send(self.id, to, msg) {
                self.core.handle_relay_full(to, msg);
            }
        }
    }

    fn on_completion(&mut self, now: Instant, c: Completion) {
        match c.token {
            Token::Accept | Token::AcceptMedia | Token::AcceptMediaTls => {
                let http = c.token != Token::Accept;
                let tls = c.token == Token::AcceptMediaTls;
                if c.result >= 0 {
                    self.on_accept(now, c.result, http, tls);
                } else {
                    tracing::warn!(shard = self.id, err = %std::io::Error::from_raw_os_error(-c.result), "accept failed");
                }
                let listener = match (&self.media_tls, tls, http) {
                    (Some((l, _)), true, _) => l.as_raw_fd(),
                    (_, _, true) => self.media_listener.as_raw_fd(),
                    _ => self.listener.as_raw_fd(),
                };
                if let Err(e) = self.uring.accept(listener, c.token) {
                    tracing::error!(shard = self.id, error = %e, "cannot re-arm accept");
                }
            }
            Token::TcpRecv(idx) => self.on_tcp_recv(now, idx as usize, c.result),
            Token::Connect(idx) => self.on_connected(now, idx as usize, c.result),
            Token::UdpMulti => self.on_udp_multi(now, c),
            Token::Wake => {
                let me = self.id;
                for from in (0..self.mesh.shards()).filter(|&f| f != me) {
                    // Bounded per turn, like the control ring.
                    for _ in 0..1024 {
                        let Some(msg) = self.mesh.recv(self.id, from) else { break };
                        self.core.handle_relay(now, from, msg);
                        self.drain();
                    }
                }
                self.arm_wake();
            }
            Token::UdpRecv(idx) => {
                let idx = idx as usize;
                if c.result >= 0 {
                    // Move the filled slot out so the core can take the
                    // datagram while the shard is borrowed; the idle spare
                    // takes its place (re-armed below). No allocation.
                    if let Some(spare) = self.spare_slot.take() {
                        let mut slot = std::mem::replace(&mut self.recv_slots[idx], spare);
                        let n = (c.result as usize).min(slot.buf.len());
                        if let Some(src) = slot.source() {
                            let local = slot.local_ip();
                            self.core.handle_datagram(now, src, local, &mut slot.buf[..n]);
                            // Datagrams are drained in groups (and after the
                            // turn's last): the answers to a group's NACKs go
                            // out in one sendmmsg. A datagram adds at most one
                            // one-off reply, so a group fits one batch.
                            self.udp_undrained += 1;
                            if self.udp_undrained >= UDP_DRAIN_EVERY {
                                self.drain();
                            }
                        }
                        self.spare_slot = Some(slot);
                    }
                }
                let fd = self.udp.as_raw_fd();
                // SAFETY: see run(): the slot is boxed and idle now.
                if let Err(e) = unsafe { self.uring.recvmsg(fd, &mut self.recv_slots[idx], idx as u32) } {
                    tracing::error!(shard = self.id, error = %e, "cannot re-arm recvmsg");
                }
            }
        }
    }

    fn arm_recv_slots(&mut self) -> anyhow::Result<()> {
        let fd = self.udp.as_raw_fd();
        for i in 0..self.recv_slots.len() {
            // SAFETY: slots are boxed, owned by the shard and only touched
            // again after their completion is reaped.
            unsafe { self.uring.recvmsg(fd, &mut self.recv_slots[i], i as u32) }.map_err(|e| io_err("recvmsg", e))?;
        }
        Ok(())
    }

    fn arm_multishot(&mut self) {
        let Some(ring) = &self.recv_ring else { return };
        let uring = self.udp_uring.as_mut().unwrap_or(&mut self.uring);
        // SAFETY: the ring is registered and outlives the io_urings (see run()).
        if let Err(e) = unsafe { uring.recvmsg_multi(self.udp.as_raw_fd(), ring) } {
            tracing::error!(shard = self.id, error = %e, "cannot arm multishot recvmsg");
        }
    }

    /// The datagrams waiting in `udp_uring` since the last turn. A round
    /// that found as many as the provided buffers hold (or re-armed the
    /// request) may have left more in the socket: read again, a few rounds
    /// at most, so a flood cannot hold the turn.
    fn read_udp_ring(&mut self, now: Instant) {
        for _ in 0..UDP_RING_ROUNDS {
            let Some(u) = self.udp_uring.as_mut() else { return };
            let mut got = std::mem::take(&mut self.udp_completions);
            if let Err(e) = u.reap(&mut got) {
                tracing::error!(shard = self.id, error = %e, "reading the UDP ring failed");
            }
            let (n, rearmed) = (got.len(), self.udp_rearmed);
            for c in got.drain(..) {
                self.on_udp_multi(now, c);
            }
            self.udp_completions = got;
            if n < RECV_RING_REAP && self.udp_rearmed == rearmed {
                return;
            }
        }
    }

    /// One completion of the multishot receive: a datagram in a provided
    /// buffer (handed to the core in place, then given back), or the end of
    /// the request (re-armed). A kernel without multishot recvmsg (before
    /// 6.0) refuses the first request with EINVAL: the shard falls back to
    /// one-shot receives.
    fn on_udp_multi(&mut self, now: Instant, c: Completion) {
        if c.result >= 0 {
            if let (Some(bid), Some(ring)) = (c.buffer(), self.recv_ring.as_mut()) {
                if let Some(d) = ring.datagram(bid, c.result as usize) {
                    if d.truncated {
                        self.udp_truncated += 1;
                    } else if let Some(src) = d.source {
                        self.core.handle_datagram(now, src, d.local_ip, d.payload);
                        self.udp_undrained += 1;
                    }
                }
                ring.recycle(bid);
                if self.udp_undrained >= UDP_DRAIN_EVERY {
                    self.drain();
                }
            }
        } else if c.result == -libc::EINVAL {
            // Nothing else makes a well-formed request invalid.
            tracing::warn!(shard = self.id, "multishot recvmsg refused by the kernel; using one-shot recvmsg");
            self.multishot = false;
            self.udp_uring = None;
            if let Err(e) = self.arm_recv_slots() {
                tracing::error!(shard = self.id, error = %e, "cannot arm recvmsg");
            }
            return;
        }
        if !c.more() {
            self.udp_rearmed += 1;
            self.arm_multishot();
        }
    }

    fn arm_wake(&mut self) {
        let fd = self.mesh.wake_fd(self.id);
        // SAFETY: wake_buf is boxed, owned by the shard, and re-armed only
        // after its previous completion.
        if let Err(e) = unsafe { self.uring.read_eventfd(fd, &mut self.wake_buf) } {
            tracing::error!(shard = self.id, error = %e, "cannot arm relay wake-up");
        }
    }

    // ------------------------------------------------------------ control

    /// Messages from control, bounded per turn so a flood cannot starve media.
    fn poll_control(&mut self, now: Instant) {
        for _ in 0..256 {
            let Some(msg) = self.from_ctl.pop_with(|b| ipc::decode::<Request>(b)) else { break };
            match msg {
                Ok(r) => {
                    self.core.handle_request(now, r);
                    self.drain();
                }
                Err(e) => tracing::warn!(shard = self.id, error = %e, "undecodable control message dropped"),
            }
        }
    }

    /// Queues a message for control. Media never waits for control: when
    /// the ring is full, stats and DTLS records (which the peer resends)
    /// are dropped and counted; messages that change control's state wait
    /// in order in a backlog.
    fn push_ctl(&mut self, mut msg: ShardToControl) {
        if let ShardToControl::Stats(s) = &mut msg {
            s.core = self.cpu.map(|c| c as u32);
            s.pinned = self.pinned;
            s.udp_port = self.udp_port();
            s.gso = self.sender.gso_enabled();
            s.uring_fixed_files = self.uring.fixed_files();
            s.udp_multishot = self.multishot;
            // Dropped whenever the multishot receive is given up.
            s.udp_read_at_turns = self.udp_uring.is_some();
            let (c, st) = (&mut s.counters, self.sender.stats);
            c.udp_datagrams_out = st.datagrams;
            c.udp_bytes_out = st.bytes;
            c.udp_sends = st.syscalls;
            c.udp_messages = st.messages;
            c.udp_send_errors = st.errors;
            c.gso_fallbacks = st.gso_fallbacks;
            c.ring_full_dropped = self.ring_full_dropped;
            c.ctl_backlogged = self.ctl_backlogged;
            c.udp_recv_rearmed = self.udp_rearmed;
            c.udp_recv_truncated = self.udp_truncated;
        }
        let bytes = ipc::encode(&msg);
        if self.ctl_backlog.is_empty() && self.to_ctl.try_push(&bytes).is_ok() {
            return;
        }
        if msg.is_droppable() || self.ctl_backlog.len() >= CTL_BACKLOG_LIMIT {
            self.ring_full_dropped += 1;
        } else {
            self.ctl_backlogged += 1;
            self.ctl_backlog.push_back(bytes);
        }
    }

    /// Retries what waited for room: control messages, blocked RTMP output.
    fn retry_output(&mut self) {
        while let Some(b) = self.ctl_backlog.front() {
            if self.to_ctl.try_push(b).is_err() {
                break;
            }
            self.ctl_backlog.pop_front();
        }
        let mut blocked = std::mem::take(&mut self.blocked);
        for &idx in &blocked {
            if let Err(reason) = self.flush_tcp(idx) {
                self.core.handle_tcp_closed(self.now, idx, reason);
                self.drain();
            }
        }
        blocked.retain(|&i| self.conns.get(i).is_some_and(|c| !c.out.is_empty() && !c.closing));
        self.blocked = blocked;
    }

    // ---------------------------------------------------------------- RTMP

    fn on_accept(&mut self, now: Instant, fd: RawFd, http: bool, tls: bool) {
        // SAFETY: the kernel just handed us this new descriptor; we own it.
        let sock = unsafe { <socket2::Socket as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let _ = sock.set_nodelay(true);
        // IPv4 clients of a dual-stack listener are v4-mapped: recorded as IPv4.
        let peer = sock.peer_addr().ok().and_then(|a| a.as_socket()).map(rts_common::net::canonical);
        let tls = match (tls, &self.media_tls) {
            (true, Some((_, cfg))) => match rustls::ServerConnection::new(cfg.clone()) {
                Ok(mut c) => {
                    // Records are moved to the connection's queue as soon as
                    // they are made (bounded there); a tag or part larger than
                    // rustls's default 64 KiB must not be cut.
                    c.set_buffer_limit(None);
                    Some(Box::new(c))
                }
                Err(e) => {
                    tracing::warn!(shard = self.id, error = %e, "TLS session refused");
                    return;
                }
            },
            _ => None,
        };
        // TLS records are up to 16 KiB: read them whole.
        let len = if tls.is_some() { TCP_RECV_BUF } else if http { HTTP_RECV_BUF } else { TCP_RECV_BUF };
        let buf = vec![0u8; len].into_boxed_slice();
        let idx = self.conns.insert(Conn { sock, buf, out: VecDeque::new(), out_off: 0, recv_in_flight: false, closing: false, http, out_bytes: 0, tls, connect_to: None });
        if http {
            self.core.handle_http_open(now, idx, peer);
        } else {
            self.core.handle_rtmp_open(now, idx, peer);
        }
        self.drain();
        self.arm_tcp_recv(now, idx);
    }

    /// Starts an outgoing connection (a cluster pull) to `addr`: its id,
    /// or None when no socket could be made. Its connect is the one
    /// operation in flight until [`Shard::on_connected`].
    fn connect(&mut self, addr: SocketAddr) -> Option<usize> {
        let domain = if addr.is_ipv4() { socket2::Domain::IPV4 } else { socket2::Domain::IPV6 };
        let sock = match socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP)) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(shard = self.id, %addr, error = %e, "cannot open a pull socket");
                return None;
            }
        };
        let _ = sock.set_nodelay(true);
        let target = Box::new(socket2::SockAddr::from(addr));
        let buf = vec![0u8; TCP_RECV_BUF].into_boxed_slice();
        let idx = self.conns.insert(Conn { sock, buf, out: VecDeque::new(), out_off: 0, recv_in_flight: true, closing: false, http: false, out_bytes: 0, tls: None, connect_to: None });
        let conn = &mut self.conns[idx];
        let fd = conn.sock.as_raw_fd();
        // SAFETY: the address is boxed and kept in the connection until the
        // connect completes (the connection is only freed after that).
        let armed = unsafe { self.uring.connect(fd, &target, idx as u32) };
        conn.connect_to = Some(target);
        if let Err(e) = armed {
            tracing::warn!(shard = self.id, %addr, error = %e, "cannot submit a connect");
            self.conns.remove(idx);
            return None;
        }
        Some(idx)
    }

    /// The connect of pull connection `idx` finished with `result`.
    fn on_connected(&mut self, now: Instant, idx: usize, result: i32) {
        let Some(conn) = self.conns.get_mut(idx) else { return };
        conn.recv_in_flight = false;
        conn.connect_to = None;
        if conn.closing {
            self.conns.remove(idx);
            return;
        }
        if result < 0 {
            let reason = format!("connect: {}", std::io::Error::from_raw_os_error(-result));
            self.close_socket(idx);
            self.core.handle_tcp_closed(now, idx, &reason);
            self.drain();
            return;
        }
        self.core.handle_pull_connected(now, idx);
        self.drain();
        self.arm_tcp_recv(now, idx);
    }

    fn arm_tcp_recv(&mut self, now: Instant, idx: usize) {
        let Some(conn) = self.conns.get_mut(idx).filter(|c| !c.closing) else { return };
        let fd = conn.sock.as_raw_fd();
        // SAFETY: conn.buf is a boxed slice owned by the connection, which is
        // only removed after this recv's completion is reaped (close_socket).
        match unsafe { self.uring.recv(fd, &mut conn.buf, idx as u32) } {
            Ok(()) => conn.recv_in_flight = true,
            Err(e) => {
                tracing::error!(shard = self.id, error = %e, "cannot arm TCP recv");
                self.close_socket(idx);
                self.core.handle_tcp_closed(now, idx, "io_uring error");
                self.drain();
            }
        }
    }

    fn on_tcp_recv(&mut self, now: Instant, idx: usize, result: i32) {
        let Some(conn) = self.conns.get_mut(idx) else { return };
        conn.recv_in_flight = false;
        if conn.closing {
            self.conns.remove(idx);
            return;
        }
        if result <= 0 {
            let reason = if result == 0 { "peer closed".to_string() } else { std::io::Error::from_raw_os_error(-result).to_string() };
            self.close_socket(idx);
            self.core.handle_tcp_closed(now, idx, &reason);
            self.drain();
            return;
        }
        let n = (result as usize).min(conn.buf.len());
        if conn.tls.is_some() {
            match self.tls_input(idx, n) {
                Ok(plain) => {
                    // Traffic is TCP payload: the records' framing counts too.
                    self.core.handle_tls_framing_read(idx, n.saturating_sub(plain.len()));
                    if !plain.is_empty() {
                        self.core.handle_tcp_data(now, idx, &plain);
                    }
                    self.tcp_dirty.push(idx);
                }
                Err(reason) => {
                    self.close_socket(idx);
                    self.core.handle_tcp_closed(now, idx, reason);
                }
            }
        } else {
            self.core.handle_tcp_data(now, idx, &conn.buf[..n]);
        }
        self.drain();
        self.arm_tcp_recv(now, idx);
    }

    /// The first `n` bytes of `idx`'s buffer are TLS records: the plaintext
    /// they carry; what the session has to send (handshake, alerts) is
    /// queued on the connection. Err: the session failed (closed).
    fn tls_input(&mut self, idx: usize, n: usize) -> Result<Vec<u8>, &'static str> {
        let Some(conn) = self.conns.get_mut(idx) else { return Err("gone") };
        let Some(tls) = conn.tls.as_mut() else { return Err("not TLS") };
        let mut input = &conn.buf[..n];
        let mut plain = Vec::new();
        while !input.is_empty() {
            match tls.read_tls(&mut input) {
                Ok(0) => break,
                Ok(_) => {}
                Err(_) => return Err("TLS read"),
            }
            if let Err(e) = tls.process_new_packets() {
                tracing::debug!(shard = self.id, error = %e, "TLS session failed");
                // The alert rustls made, then close.
                tls_records(tls, &mut conn.out, &mut conn.out_bytes);
                return Err("TLS error");
            }
            let mut chunk = [0u8; 4096];
            loop {
                match std::io::Read::read(&mut tls.reader(), &mut chunk) {
                    Ok(0) => return Err("TLS closed"),
                    Ok(k) => plain.extend_from_slice(&chunk[..k]),
                    Err(_) => break, // WouldBlock: no more plaintext now
                }
            }
        }
        tls_records(tls, &mut conn.out, &mut conn.out_bytes);
        Ok(plain)
    }

    /// Writes what is queued without blocking. Err when this closed the
    /// connection (send error, or the peer does not read): the caller tells
    /// the core.
    fn flush_tcp(&mut self, idx: usize) -> Result<(), &'static str> {
        let Some(conn) = self.conns.get_mut(idx).filter(|c| !c.closing) else { return Ok(()) };
        let mut written = 0;
        while !conn.out.is_empty() {
            let mut iov = [libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; MAX_IOV];
            let mut n = 0;
            for (i, b) in conn.out.iter().take(MAX_IOV).enumerate() {
                let chunk = if i == 0 { &b[conn.out_off..] } else { &b[..] };
                iov[n] = libc::iovec { iov_base: chunk.as_ptr() as *mut libc::c_void, iov_len: chunk.len() };
                n += 1;
            }
            // SAFETY: the iovecs point into live `Bytes` held by conn.out
            // for the duration of the call; our own socket.
            let msg = libc::msghdr { msg_iov: iov.as_mut_ptr(), msg_iovlen: n, ..unsafe { std::mem::zeroed() } };
            let rc = unsafe { libc::sendmsg(conn.sock.as_raw_fd(), &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
            if rc < 0 {
                if std::io::Error::last_os_error().kind() == std::io::ErrorKind::WouldBlock {
                    if !self.blocked.contains(&idx) {
                        self.blocked.push(idx);
                    }
                    break;
                }
                self.close_socket(idx);
                return Err("send failed");
            }
            let n = rc as usize;
            written += n;
            conn.out_bytes -= n.min(conn.out_bytes);
            consume(&mut conn.out, &mut conn.out_off, n);
        }
        let limit = if conn.http { HTTP_OUT_LIMIT } else { TCP_OUT_LIMIT };
        let over = conn.out_bytes > limit;
        if written > 0 {
            self.core.handle_tcp_written(idx, written);
        }
        if over {
            self.close_socket(idx);
            return Err("peer not reading");
        }
        Ok(())
    }

    /// Closes a connection's socket; its buffer is freed once no recv is in
    /// flight. The core is told by the caller when it did not ask for it.
    fn close_socket(&mut self, idx: usize) {
        self.blocked.retain(|&i| i != idx);
        let Some(conn) = self.conns.get_mut(idx).filter(|c| !c.closing) else { return };
        if conn.recv_in_flight {
            // The kernel still owns conn.buf: shutting the socket down makes
            // the recv complete, and on_tcp_recv frees the connection then.
            let _ = conn.sock.shutdown(std::net::Shutdown::Both);
            conn.closing = true;
            conn.out.clear();
        } else {
            self.conns.remove(idx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_write_leaves_the_queue_at_the_right_byte() {
        let mut q: VecDeque<Bytes> = [&b"abc"[..], b"de", b"fghi"].into_iter().map(Bytes::from_static).collect();
        let mut off = 0;
        consume(&mut q, &mut off, 2); // "ab"
        assert_eq!((q.len(), off), (3, 2));
        consume(&mut q, &mut off, 3); // "c", "de"
        assert_eq!((q.len(), off), (1, 0));
        assert_eq!(&q[0][off..], b"fghi");
        consume(&mut q, &mut off, 1);
        assert_eq!(&q[0][off..], b"ghi");
        consume(&mut q, &mut off, 3);
        assert!(q.is_empty());
        assert_eq!(off, 0);
        consume(&mut q, &mut off, 5); // nothing left: no panic
        assert!(q.is_empty());
    }
}
