//! One shard: a thread pinned to a core with its own io_uring loop, its own
//! RTMP listener (SO_REUSEPORT), its own UDP media port, its streams and its
//! viewers. Nothing here is shared with other shards.
//!
//! The loop: drain the control ring, run timers, block in io_uring for up to
//! one tick, handle completions. Protocol work is delegated to the sans-IO
//! crates (rts-rtmp, rts-stun, rts-rtp, rts-srtp); this file only moves bytes
//! between them and the sockets.

use crate::session::{Media, Session, TrackOut};
use crate::stream::{AudioOutcome, Kind, Stream, VideoOutcome};
use crate::relay::{RelayMesh, RelayMsg};
use crate::fanout::{fan_out, send_items};
use crate::lipsync::AvLag;
use crate::load::LoadGovernor;
use crate::udp::{self, GsoBatch, UdpSender};
use crate::uring::{Completion, RecvSlot, Token, Uring};
use bytes::Bytes;
use rts_common::config::Config;
use rts_common::ipc::{self, ControlToShard, ShardCounters, ShardStats, ShardToControl, StreamStats};
use rts_common::shm::{Consumer, Producer};
use rts_rtmp::{RtmpEvent, RtmpOutput, RtmpServerConn};
use rts_stun::{Class, PacketKind, StunMessage};
use slab::Slab;
use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TICK: Duration = Duration::from_millis(1);
/// Outstanding recvmsg operations: enough to drain a burst of STUN/DTLS/RTCP
/// from a ramp of new viewers while a keyframe fan-out keeps the loop busy.
const UDP_RECV_SLOTS: usize = 128;
const TCP_RECV_BUF: usize = 64 * 1024;
/// A session that never completes ICE+DTLS is dropped after this.
const PENDING_TIMEOUT: Duration = Duration::from_secs(30);
const STUN_BINDING: u16 = 0x0001;

pub struct ShardInit {
    pub id: usize,
    pub core: Option<usize>,
    pub pinned: bool,
    pub cfg: Arc<Config>,
    pub to_ctl: Producer,
    pub from_ctl: Consumer,
    pub stop: Arc<AtomicBool>,
    pub mesh: Arc<RelayMesh>,
}

struct Conn {
    sock: socket2::Socket,
    buf: Box<[u8]>,
    rtmp: RtmpServerConn,
    out: VecDeque<Bytes>,
    out_off: usize,
    /// Stream key while this connection publishes.
    publishing: Option<String>,
    peer: Option<SocketAddr>,
    /// The one recv this connection may have queued in io_uring.
    recv_in_flight: bool,
    /// Closed while its recv was in flight: freed when that completes.
    closing: bool,
}

pub struct Shard {
    id: usize,
    core: Option<usize>,
    pinned: bool,
    cfg: Arc<Config>,
    stop: Arc<AtomicBool>,
    uring: Uring,
    listener: socket2::Socket,
    udp: std::net::UdpSocket,
    /// The send-only twin of `udp` (see `udp::UdpPair`); `sender` uses it.
    _udp_send: std::net::UdpSocket,
    sender: UdpSender,
    batch: GsoBatch,
    // Boxed on purpose: the kernel holds pointers into each slot, and slots
    // are swapped with `spare_slot` by pointer without moving their memory.
    #[allow(clippy::vec_box)]
    recv_slots: Vec<Box<RecvSlot>>,
    spare_slot: Option<Box<RecvSlot>>,
    conns: Slab<Conn>,
    sessions: Slab<Session>,
    by_ufrag: HashMap<String, usize>,
    by_addr: HashMap<SocketAddrV4, usize>,
    by_id: HashMap<u64, usize>,
    streams: HashMap<String, Stream>,
    /// Reused buffer for the packets one catch-up step sends.
    catchup_items: Vec<(Kind, Bytes)>,
    /// Sessions replaying a GOP cache (paced; see drain_catchup).
    catchup: Vec<usize>,
    last_catchup: Instant,
    to_ctl: Producer,
    from_ctl: Consumer,
    mesh: Arc<RelayMesh>,
    /// Target of the in-flight eventfd read (boxed: the kernel writes it).
    wake_buf: Box<u64>,
    counters: ShardCounters,
    packets: Vec<Bytes>,
    scratch: Vec<u8>,
    last_housekeeping: Instant,
    /// Busy share of this shard's loop; switches audio pairing under load.
    load: LoadGovernor,
    last_stats: Instant,
    last_log: Instant,
}

fn io_err(ctx: &str, e: std::io::Error) -> anyhow::Error {
    anyhow::anyhow!("{ctx}: {e}")
}

impl Shard {
    pub fn new(init: ShardInit) -> anyhow::Result<Shard> {
        let cfg = init.cfg.clone();
        // RTMP: one listener per shard on the same port; the kernel spreads
        // connections (SO_REUSEPORT), so a stream lives where it landed.
        let addr = cfg.rtmp.listen;
        let domain = if addr.is_ipv4() { socket2::Domain::IPV4 } else { socket2::Domain::IPV6 };
        let listener = socket2::Socket::new(domain, socket2::Type::STREAM, None).map_err(|e| io_err("rtmp socket", e))?;
        listener.set_reuse_address(true).map_err(|e| io_err("SO_REUSEADDR", e))?;
        listener.set_reuse_port(true).map_err(|e| io_err("SO_REUSEPORT", e))?;
        listener.bind(&addr.into()).map_err(|e| io_err(&format!("bind RTMP {addr}"), e))?;
        listener.listen(1024).map_err(|e| io_err("listen", e))?;

        let udp_addr = SocketAddr::new(cfg.webrtc.udp_bind_ip, cfg.udp_port(init.id));
        // Large buffers absorb keyframe bursts to many viewers; the kernel
        // caps them at net.core.[rw]mem_max (see kernel-tuning/).
        let pair = udp::UdpPair::bind(udp_addr, 8 << 20, 4 << 20).map_err(|e| io_err(&format!("bind UDP {udp_addr}"), e))?;
        let (udp, udp_send) = (pair.recv, pair.send);
        udp::enable_pktinfo(udp.as_raw_fd()).map_err(|e| io_err("IP_PKTINFO", e))?;
        let sender = UdpSender::new(udp_send.as_raw_fd(), !cfg.dataplane.disable_gso);

        Ok(Shard {
            id: init.id,
            core: init.core,
            pinned: init.pinned,
            cfg,
            stop: init.stop,
            uring: Uring::new(1024).map_err(|e| io_err("io_uring", e))?,
            listener,
            udp,
            _udp_send: udp_send,
            sender,
            batch: GsoBatch::for_shard(),
            catchup_items: Vec::with_capacity(256),
            recv_slots: (0..UDP_RECV_SLOTS).map(|_| RecvSlot::new_boxed()).collect(),
            spare_slot: Some(RecvSlot::new_boxed()),
            conns: Slab::new(),
            sessions: Slab::new(),
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
            by_id: HashMap::new(),
            streams: HashMap::new(),
            catchup: Vec::new(),
            last_catchup: Instant::now(),
            to_ctl: init.to_ctl,
            from_ctl: init.from_ctl,
            mesh: init.mesh,
            wake_buf: Box::new(0),
            counters: ShardCounters::default(),
            packets: Vec::with_capacity(256),
            scratch: vec![0u8; 2048],
            last_housekeeping: Instant::now(),
            load: LoadGovernor::new(init.cfg.webrtc.pair_audio_when_busy, Instant::now()),
            last_stats: Instant::now(),
            last_log: Instant::now(),
        })
    }

    pub fn udp_port(&self) -> u16 {
        self.udp.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn gso(&self) -> bool {
        self.sender.gso_enabled()
    }

    pub fn run(mut self) -> anyhow::Result<()> {
        if self.cfg.dataplane.uring_register {
            let fds = [self.udp.as_raw_fd(), self.listener.as_raw_fd(), self.mesh.wake_fd(self.id)];
            if let Err(e) = self.uring.register_files(&fds) {
                tracing::warn!(shard = self.id, error = %e, "io_uring file registration refused; using plain fds");
            }
        }
        self.uring.accept(self.listener.as_raw_fd()).map_err(|e| io_err("accept", e))?;
        let fd = self.udp.as_raw_fd();
        for i in 0..self.recv_slots.len() {
            // SAFETY: slots are boxed, owned by the shard and only touched
            // again after their completion is reaped.
            unsafe { self.uring.recvmsg(fd, &mut self.recv_slots[i], i as u32) }.map_err(|e| io_err("recvmsg", e))?;
        }
        self.arm_wake();
        let mut completions = Vec::with_capacity(256);
        while !self.stop.load(Ordering::Relaxed) {
            self.poll_control();
            let now = Instant::now();
            if !self.catchup.is_empty() {
                self.drain_catchup(now);
            }
            self.poll_transcoders(now);
            if now.duration_since(self.last_housekeeping) >= Duration::from_millis(100) {
                self.housekeeping(now);
            }
            let parked = Instant::now();
            self.uring.submit_and_wait(TICK).map_err(|e| io_err("io_uring_enter", e))?;
            self.load.add_idle(parked.elapsed());
            self.uring.drain(&mut completions);
            for c in completions.drain(..) {
                self.on_completion(c);
            }
        }
        tracing::info!(shard = self.id, "shard stopped");
        Ok(())
    }

    fn on_completion(&mut self, c: Completion) {
        match c.token {
            Token::Accept => {
                if c.result >= 0 {
                    self.on_accept(c.result);
                } else {
                    tracing::warn!(shard = self.id, err = %std::io::Error::from_raw_os_error(-c.result), "accept failed");
                }
                if let Err(e) = self.uring.accept(self.listener.as_raw_fd()) {
                    tracing::error!(shard = self.id, error = %e, "cannot re-arm accept");
                }
            }
            Token::TcpRecv(idx) => self.on_tcp_recv(idx as usize, c.result),
            Token::Wake => {
                self.poll_relay();
                self.arm_wake();
            }
            Token::UdpRecv(idx) => {
                let idx = idx as usize;
                if c.result >= 0 {
                    // Move the filled slot out so the handler can borrow the
                    // shard mutably; the idle spare takes its place (and is
                    // re-armed below). No allocation per datagram.
                    if let Some(spare) = self.spare_slot.take() {
                        let mut slot = std::mem::replace(&mut self.recv_slots[idx], spare);
                        let n = (c.result as usize).min(slot.buf.len());
                        if let Some(src) = slot.source() {
                            let local = slot.local_ip();
                            self.on_datagram(src, local, &mut slot.buf[..n]);
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

    fn arm_wake(&mut self) {
        let fd = self.mesh.wake_fd(self.id);
        // SAFETY: wake_buf is boxed, owned by the shard, and re-armed only
        // after its previous completion.
        if let Err(e) = unsafe { self.uring.read_eventfd(fd, &mut self.wake_buf) } {
            tracing::error!(shard = self.id, error = %e, "cannot arm relay wake-up");
        }
    }

    // ------------------------------------------------------------- relay

    fn relay(&mut self, to: usize, msg: RelayMsg) {
        if self.mesh.send(self.id, to, msg).is_err() {
            self.counters.relay_dropped += 1;
        }
    }

    fn poll_relay(&mut self) {
        for from in 0..self.mesh.shards() {
            if from == self.id {
                continue;
            }
            // Bounded per call, like the control ring.
            for _ in 0..1024 {
                let Some(msg) = self.mesh.recv(self.id, from) else { break };
                self.on_relay(from, msg);
            }
        }
    }

    fn on_relay(&mut self, from: usize, msg: RelayMsg) {
        match msg {
            RelayMsg::Subscribe { key, from: sub } => {
                let snapshot = match self.streams.get_mut(&key) {
                    Some(s) if s.publisher.is_some() => {
                        if !s.subscribers.contains(&sub) {
                            s.subscribers.push(sub);
                        }
                        s.update_transcoder();
                        Some((s.gop_cache().to_vec(), s.anchor))
                    }
                    _ => None,
                };
                match snapshot {
                    Some((gop, anchor)) => {
                        tracing::info!(shard = self.id, stream = %key, to = sub, "replicating stream to shard");
                        self.relay(sub, RelayMsg::Snapshot { key, gop, anchor });
                    }
                    None => self.relay(sub, RelayMsg::Ended { key }),
                }
            }
            RelayMsg::Unsubscribe { key, from: sub } => {
                if let Some(s) = self.streams.get_mut(&key) {
                    s.subscribers.retain(|&x| x != sub);
                    s.update_transcoder();
                }
                self.drop_stream_if_unused(&key);
            }
            RelayMsg::Snapshot { key, gop, anchor } => {
                let Some(stream) = self.streams.get_mut(&key) else { return };
                if stream.home != Some(from) {
                    return;
                }
                stream.on_snapshot(gop, anchor);
                // Viewers that joined before the snapshot start from it.
                for &v in &stream.viewers {
                    let Some(m) = self.sessions.get_mut(v).and_then(|s| s.media.as_mut()) else { continue };
                    if m.pending.is_empty() && !m.video.started() {
                        m.pending.extend(stream.gop_cache().iter().filter(|(k, _)| *k == Kind::Video).cloned());
                        if !m.pending.is_empty() && !self.catchup.contains(&v) {
                            self.catchup.push(v);
                        }
                    }
                }
            }
            RelayMsg::Packets { key, kind, packets, keyframe, anchor } => {
                let Some(stream) = self.streams.get_mut(&key) else { return };
                if stream.home != Some(from) {
                    return;
                }
                stream.on_relay(kind, &packets, keyframe, anchor);
                let bytes = fan_out(stream, &mut self.sessions, kind, &packets, &mut self.sender, &mut self.batch);
                stream.bytes_out += bytes;
            }
            RelayMsg::Ended { key } => {
                if let Some(s) = self.streams.get_mut(&key) {
                    if s.home == Some(from) {
                        s.home = None;
                    }
                }
                self.drop_stream_if_unused(&key);
            }
        }
    }

    /// Makes the local entry of `key` a replica of `home`'s stream.
    fn subscribe(&mut self, key: &str, home: usize) {
        let Some(stream) = self.streams.get_mut(key) else { return };
        if home == self.id || stream.publisher.is_some() || stream.home == Some(home) {
            return;
        }
        let old = stream.home.replace(home);
        // A new source means a new sequence space for every local viewer.
        for &v in &stream.viewers {
            if let Some(m) = self.sessions.get_mut(v).and_then(|s| s.media.as_mut()) {
                m.video.rebase_next();
                m.audio.rebase_next();
            }
        }
        if let Some(old) = old {
            self.relay(old, RelayMsg::Unsubscribe { key: key.to_string(), from: self.id });
        }
        self.relay(home, RelayMsg::Subscribe { key: key.to_string(), from: self.id });
    }

    // ---------------------------------------------------------------- RTMP

    fn on_accept(&mut self, fd: RawFd) {
        // SAFETY: the kernel just handed us this new descriptor; we own it.
        let sock = unsafe { <socket2::Socket as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let _ = sock.set_nodelay(true);
        let peer = sock.peer_addr().ok().and_then(|a| a.as_socket());
        self.counters.rtmp_connections += 1;
        let entry = self.conns.vacant_entry();
        let idx = entry.key();
        let conn = entry.insert(Conn {
            sock,
            buf: vec![0u8; TCP_RECV_BUF].into_boxed_slice(),
            rtmp: RtmpServerConn::new(),
            out: VecDeque::new(),
            out_off: 0,
            publishing: None,
            peer,
            recv_in_flight: false,
            closing: false,
        });
        tracing::debug!(shard = self.id, conn = idx, peer = ?conn.peer, "RTMP connection");
        self.arm_tcp_recv(idx);
    }

    fn arm_tcp_recv(&mut self, idx: usize) {
        let Some(conn) = self.conns.get_mut(idx) else { return };
        let fd = conn.sock.as_raw_fd();
        // SAFETY: conn.buf is a boxed slice owned by the connection, which is
        // only removed after this recv's completion is reaped (close_conn).
        match unsafe { self.uring.recv(fd, &mut conn.buf, idx as u32) } {
            Ok(()) => conn.recv_in_flight = true,
            Err(e) => {
                tracing::error!(shard = self.id, error = %e, "cannot arm TCP recv");
                self.close_conn(idx, "io_uring error");
            }
        }
    }

    fn on_tcp_recv(&mut self, idx: usize, result: i32) {
        let received_at = Instant::now();
        let Some(conn) = self.conns.get_mut(idx) else { return };
        conn.recv_in_flight = false;
        if conn.closing {
            self.conns.remove(idx);
            return;
        }
        if result <= 0 {
            let reason = if result == 0 { "peer closed".to_string() } else { std::io::Error::from_raw_os_error(-result).to_string() };
            self.close_conn(idx, &reason);
            return;
        }
        let Some(conn) = self.conns.get_mut(idx) else { return };
        let n = result as usize;
        if let Err(e) = conn.rtmp.handle_input(&conn.buf[..n]) {
            self.counters.rtmp_errors += 1;
            tracing::info!(shard = self.id, conn = idx, peer = ?conn.peer, error = %e, "RTMP protocol error; closing");
            self.close_conn(idx, "protocol error");
            return;
        }
        if self.drain_rtmp(idx, received_at) {
            self.arm_tcp_recv(idx);
        }
    }

    /// Handles everything the RTMP state machine produced. Returns false if
    /// the connection was closed.
    fn drain_rtmp(&mut self, idx: usize, received_at: Instant) -> bool {
        loop {
            let Some(conn) = self.conns.get_mut(idx) else { return false };
            let Some(out) = conn.rtmp.poll_output() else { break };
            match out {
                RtmpOutput::Transmit(bytes) => {
                    conn.out.push_back(bytes);
                }
                RtmpOutput::Event(ev) => {
                    if !self.on_rtmp_event(idx, ev, received_at) {
                        return false;
                    }
                }
            }
        }
        self.flush_tcp(idx)
    }

    fn flush_tcp(&mut self, idx: usize) -> bool {
        let Some(conn) = self.conns.get_mut(idx) else { return false };
        while let Some(front) = conn.out.front() {
            let chunk = &front[conn.out_off..];
            // SAFETY: sending from a live slice on our own socket.
            let rc = unsafe {
                libc::send(conn.sock.as_raw_fd(), chunk.as_ptr().cast(), chunk.len(), libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
            };
            if rc < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::WouldBlock {
                    break; // retried from housekeeping
                }
                self.close_conn(idx, "send failed");
                return false;
            }
            conn.out_off += rc as usize;
            if conn.out_off >= front.len() {
                conn.out.pop_front();
                conn.out_off = 0;
            }
        }
        if conn.out.iter().map(|b| b.len()).sum::<usize>() > 4 << 20 {
            self.close_conn(idx, "peer not reading");
            return false;
        }
        true
    }

    fn on_rtmp_event(&mut self, idx: usize, ev: RtmpEvent, received_at: Instant) -> bool {
        match ev {
            RtmpEvent::PublishRequested { request_id, app, stream, query } => {
                let key = Stream::key(&app, &stream);
                let auth_key = rts_common::auth::query_param(&query, "auth_key");
                let verdict = self.cfg.ingest_auth().check(&app, &stream, None, auth_key, rts_common::config::unix_now());
                let busy = self.streams.get(&key).is_some_and(|s| s.publisher.is_some());
                let refusal = match (verdict, busy) {
                    (Err(f), _) => Some(format!("auth: {f}")),
                    (Ok(()), true) => Some("stream already publishing".to_string()),
                    (Ok(()), false) => None,
                };
                let Some(conn) = self.conns.get_mut(idx) else { return false };
                if let Some(reason) = refusal {
                    self.counters.rtmp_publish_refused += 1;
                    tracing::warn!(shard = self.id, stream = %key, peer = ?conn.peer, %reason, "RTMP publish refused");
                    let _ = conn.rtmp.reject_publish(request_id, &reason);
                    // Deliver the error status, then close.
                    while let Some(RtmpOutput::Transmit(b)) = conn.rtmp.poll_output() {
                        conn.out.push_back(b);
                    }
                    self.push_ctl(&ShardToControl::PublishRefused { app, stream, reason });
                    self.flush_tcp(idx);
                    self.close_conn(idx, "publish refused");
                    return false;
                }
                if let Err(e) = conn.rtmp.accept_publish(request_id) {
                    tracing::warn!(shard = self.id, error = %e, "accept_publish failed");
                    self.close_conn(idx, "protocol error");
                    return false;
                }
                conn.publishing = Some(key.clone());
                let peer = conn.peer;
                let max_packet = self.cfg.webrtc.max_rtp_packet;
                let s = self.streams.entry(key.clone()).or_insert_with(|| Stream::new(&app, &stream, max_packet));
                s.publisher = Some(idx);
                s.on_publish_start();
                if let Some(old_home) = s.home.take() {
                    let viewers = s.viewers.clone();
                    for v in viewers {
                        if let Some(m) = self.sessions.get_mut(v).and_then(|x| x.media.as_mut()) {
                            m.video.rebase_next();
                            m.audio.rebase_next();
                        }
                    }
                    self.relay(old_home, RelayMsg::Unsubscribe { key: key.clone(), from: self.id });
                }
                tracing::info!(shard = self.id, stream = %key, ?peer, "RTMP publish started");
                self.push_ctl(&ShardToControl::StreamStarted { app, stream });
                true
            }
            RtmpEvent::Video { timestamp_ms, data } => {
                let Some(key) = self.conns.get(idx).and_then(|c| c.publishing.clone()) else { return true };
                self.on_video(&key, timestamp_ms, &data, received_at);
                true
            }
            RtmpEvent::Audio { timestamp_ms, data } => {
                let Some(key) = self.conns.get(idx).and_then(|c| c.publishing.clone()) else { return true };
                let Some(s) = self.streams.get_mut(&key) else { return true };
                match s.on_audio(timestamp_ms, &data, received_at) {
                    AudioOutcome::ConfigChanged => s.update_transcoder(),
                    AudioOutcome::Packet(p) => {
                        let (streams, mut out) = self.split();
                        if let Some(s) = streams.get_mut(&key) {
                            out.deliver_audio(&key, s, p, received_at);
                        }
                    }
                    AudioOutcome::Nothing => {}
                }
                true
            }
            RtmpEvent::PublishFinished => {
                self.end_publish(idx);
                true
            }
            _ => true,
        }
    }

    fn end_publish(&mut self, idx: usize) {
        let Some(key) = self.conns.get_mut(idx).and_then(|c| c.publishing.take()) else { return };
        if let Some(s) = self.streams.get_mut(&key) {
            s.publisher = None;
            let l = s.latency.summary();
            tracing::info!(shard = self.id, stream = %key, frames = s.video_frames, viewers = s.viewers.len(),
                latency_p50_us = l.p50_us, latency_p99_us = l.p99_us, latency_max_us = l.max_us, "RTMP publish ended");
            let (app, stream) = (s.app.clone(), s.name.clone());
            let subs = std::mem::take(&mut s.subscribers);
            for sub in subs {
                self.relay(sub, RelayMsg::Ended { key: key.clone() });
            }
            self.push_ctl(&ShardToControl::StreamEnded { app, stream });
        }
        self.drop_stream_if_unused(&key);
    }

    fn close_conn(&mut self, idx: usize, reason: &str) {
        if self.conns.get(idx).is_none_or(|c| c.closing) {
            return;
        }
        self.end_publish(idx);
        let conn = &mut self.conns[idx];
        tracing::debug!(shard = self.id, conn = idx, peer = ?conn.peer, reason, "RTMP connection closed");
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

    // ----------------------------------------------------------- fan-out

    fn on_video(&mut self, key: &str, timestamp_ms: u32, data: &Bytes, received_at: Instant) {
        let Some(stream) = self.streams.get_mut(key) else { return };
        self.packets.clear();
        let keyframe = match stream.on_video(timestamp_ms, data, received_at, &mut self.packets) {
            Ok(VideoOutcome::Packets { keyframe }) => keyframe,
            Ok(VideoOutcome::Nothing) => return,
            Err(e) => {
                tracing::debug!(shard = self.id, stream = %key, error = %e, "bad video tag dropped");
                return;
            }
        };
        let packets = std::mem::take(&mut self.packets);
        let (streams, mut out) = self.split();
        let Some(stream) = streams.get_mut(key) else { return };
        out.deliver(key, stream, Kind::Video, &packets, keyframe);
        self.packets = packets;
        let Some(stream) = self.streams.get_mut(key) else { return };
        if !stream.viewers.is_empty() {
            let us = received_at.elapsed().as_micros().min(u32::MAX as u128) as u32;
            stream.latency.record(us);
        }
    }

    /// Fans out what the transcoder workers produced (Opus audio, re-encoded
    /// video) and relays it to replicating shards.
    fn poll_transcoders(&mut self, now: Instant) {
        let pace_audio = self.cfg.webrtc.pace_audio;
        let mut packets = std::mem::take(&mut self.packets);
        let (streams, mut out) = self.split();
        for (key, stream) in streams.iter_mut() {
            out.flush_audio(key, stream, now);
            if stream.transcoder.is_none() {
                continue;
            }
            while let Some(t) = stream.transcoder.as_mut().and_then(|t| t.poll(now)) {
                match t {
                    crate::transcode::Transcoded::Opus { data, rtp_ts, .. } => {
                        let p = stream.on_opus(&data, rtp_ts);
                        if pace_audio {
                            stream.audio_pacer.push(p, rtp_ts, now);
                        } else {
                            out.deliver_audio(key, stream, p, now);
                        }
                    }
                    crate::transcode::Transcoded::Video { nalus, pts_ms, keyframe, .. } => {
                        packets.clear();
                        stream.on_reencoded(&nalus, pts_ms, keyframe, now, &mut packets);
                        if !packets.is_empty() {
                            out.deliver(key, stream, Kind::Video, &packets, keyframe);
                        }
                    }
                }
            }
            while let Some(p) = stream.audio_pacer.pop_due(now) {
                out.deliver_audio(key, stream, p, now);
            }
        }
        self.packets = packets;
    }

    /// The stream table and everything delivering packets needs, borrowed
    /// apart so a stream can be updated while its viewers are served.
    fn split(&mut self) -> (&mut HashMap<String, Stream>, Out<'_>) {
        let pair_audio = self.pair_audio_now();
        (
            &mut self.streams,
            Out {
                sessions: &mut self.sessions,
                sender: &mut self.sender,
                batch: &mut self.batch,
                mesh: &self.mesh,
                id: self.id,
                counters: &mut self.counters,
                pair_audio,
            },
        )
    }

    /// Sends queued GOP-cache packets to viewers that just joined, at a
    /// bounded rate: fast enough that the decoder reaches live within a
    /// fraction of a second, slow enough not to overflow a receive buffer.
    fn drain_catchup(&mut self, now: Instant) {
        let elapsed = now.duration_since(self.last_catchup);
        self.last_catchup = now;
        let budget = ((elapsed.as_micros() as u64 * CATCHUP_PACKETS_PER_S) / 1_000_000).clamp(1, 256) as usize;
        let mut i = 0;
        while i < self.catchup.len() {
            let idx = self.catchup[i];
            let done = match self.sessions.get_mut(idx) {
                Some(sess) => {
                    let (Some(peer), local) = (sess.peer, sess.local_ip) else {
                        i += 1;
                        continue;
                    };
                    let Some(media) = sess.media.as_mut() else {
                        i += 1;
                        continue;
                    };
                    let n = budget.min(media.pending.len());
                    let items = &mut self.catchup_items;
                    items.clear();
                    items.extend(media.pending.drain(..n));
                    let stream = self.streams.get_mut(&sess.stream);
                    let hint = stream.as_ref().map_or_else(|| AvLag::default().hint(now), |s| s.av_lag.hint(now));
                    let sent = send_items(media, peer, local, items.iter().map(|(k, b)| (*k, b)), hint, &mut self.sender, &mut self.batch);
                    items.clear();
                    if let Some(stream) = stream {
                        stream.bytes_out += sent;
                    }
                    media.pending.is_empty()
                }
                None => true,
            };
            if done {
                self.catchup.swap_remove(i);
            } else {
                i += 1;
            }
        }
        self.batch.flush(&mut self.sender);
    }

    // --------------------------------------------------------------- UDP

    fn on_datagram(&mut self, src: SocketAddrV4, local: Option<Ipv4Addr>, data: &mut [u8]) {
        self.counters.udp_datagrams_in += 1;
        self.counters.udp_bytes_in += data.len() as u64;
        match rts_stun::classify(data) {
            PacketKind::Stun => self.on_stun(src, local, data),
            PacketKind::Dtls => {
                let Some(&idx) = self.by_addr.get(&src) else {
                    self.counters.unknown_dropped += 1;
                    return;
                };
                let session = self.sessions[idx].id;
                self.counters.dtls_forwarded += 1;
                self.push_ctl(&ShardToControl::DtlsFromPeer { session, peer: SocketAddr::V4(src), data: data.to_vec() });
            }
            PacketKind::Rtcp => self.on_rtcp(src, data),
            PacketKind::Rtp | PacketKind::Unknown => self.counters.unknown_dropped += 1,
        }
    }

    fn on_stun(&mut self, src: SocketAddrV4, local: Option<Ipv4Addr>, data: &[u8]) {
        let Ok(msg) = StunMessage::parse(data) else {
            self.counters.stun_rejected += 1;
            return;
        };
        if msg.class != Class::Request || msg.method != STUN_BINDING {
            self.counters.stun_rejected += 1;
            return;
        }
        let Some(idx) = msg
            .username
            .and_then(rts_stun::split_username)
            .and_then(|(ours, _theirs)| self.by_ufrag.get(ours).copied())
        else {
            self.counters.stun_rejected += 1;
            return;
        };
        let sess = &mut self.sessions[idx];
        if !msg.verify_integrity(sess.local_pwd.as_bytes()) {
            self.counters.stun_rejected += 1;
            if let Ok(n) = rts_stun::write_binding_error(&msg.transaction_id, 401, "Unauthorized", None, &mut self.scratch) {
                self.sender.send(src, local, &self.scratch[..n], n);
            }
            return;
        }
        self.counters.stun_ok += 1;
        sess.last_consent = Instant::now();
        let n = match rts_stun::write_binding_success(&msg.transaction_id, SocketAddr::V4(src), sess.local_pwd.as_bytes(), &mut self.scratch) {
            Ok(n) => n,
            Err(_) => return,
        };
        // ICE-lite: the browser (controlling) nominates. Take the first
        // address that passes a check, and move to a nominated one.
        let select = sess.peer.is_none() || (msg.use_candidate && sess.peer != Some(src));
        if select {
            if let Some(old) = sess.peer.replace(src) {
                self.by_addr.remove(&old);
            }
            sess.local_ip = local;
            self.by_addr.insert(src, idx);
            let id = sess.id;
            self.push_ctl(&ShardToControl::IceConnected { session: id, peer: SocketAddr::V4(src) });
        }
        self.sender.send(src, local, &self.scratch[..n], n);
    }

    fn on_rtcp(&mut self, src: SocketAddrV4, data: &mut [u8]) {
        let Some(&idx) = self.by_addr.get(&src) else {
            self.counters.unknown_dropped += 1;
            return;
        };
        let Some(media) = self.sessions[idx].media.as_mut() else {
            self.counters.unknown_dropped += 1;
            return;
        };
        let Ok(n) = media.rx.unprotect_rtcp(data) else {
            self.counters.srtcp_failed += 1;
            return;
        };
        self.counters.rtcp_in += 1;
        if let Ok(pkts) = rts_rtp::rtcp::parse_compound(&data[..n]) {
            for p in pkts {
                match p {
                    rts_rtp::rtcp::RtcpPacket::Nack { .. } => self.counters.nacks_in += 1,
                    rts_rtp::rtcp::RtcpPacket::Pli { .. } | rts_rtp::rtcp::RtcpPacket::Fir { .. } => {
                        self.counters.plis_in += 1;
                        // Only a re-encoded stream can make a keyframe on demand.
                        let key = &self.sessions[idx].stream;
                        if let Some(t) = self.streams.get_mut(key).and_then(|s| s.transcoder.as_mut()) {
                            t.request_keyframe();
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    // ----------------------------------------------------------- control

    fn push_ctl(&mut self, msg: &ShardToControl) {
        let bytes = ipc::encode(msg);
        if self.to_ctl.try_push(&bytes).is_err() {
            // Control is slow or gone: media must not wait for it.
            self.counters.ring_full_dropped += 1;
        }
    }

    fn poll_control(&mut self) {
        // Bounded per tick so a flood from control cannot starve media.
        for _ in 0..256 {
            let Some(msg) = self.from_ctl.pop_with(|b| ipc::decode::<ControlToShard>(b)) else { break };
            match msg {
                Ok(m) => self.on_control(m),
                Err(e) => tracing::warn!(shard = self.id, error = %e, "undecodable control message dropped"),
            }
        }
    }

    fn on_control(&mut self, msg: ControlToShard) {
        match msg {
            ControlToShard::AddSession { session, local_ufrag, local_pwd, remote_ufrag, app, stream, home_shard } => {
                if self.by_id.contains_key(&session) || self.by_ufrag.contains_key(&local_ufrag) {
                    return;
                }
                let now = Instant::now();
                let idx = self.sessions.insert(Session {
                    id: session,
                    local_ufrag: local_ufrag.clone(),
                    local_pwd,
                    remote_ufrag,
                    stream: Stream::key(&app, &stream),
                    video_ssrc: ipc::stream_ssrc(&app, &stream, 0),
                    audio_ssrc: ipc::stream_ssrc(&app, &stream, 1),
                    peer: None,
                    local_ip: None,
                    media: None,
                    home_hint: home_shard.map(|h| h as usize),
                    created: now,
                    last_consent: now,
                });
                self.by_ufrag.insert(local_ufrag, idx);
                self.by_id.insert(session, idx);
            }
            ControlToShard::DtlsToPeer { session, data } => {
                let Some(&idx) = self.by_id.get(&session) else { return };
                let s = &self.sessions[idx];
                if let Some(peer) = s.peer {
                    let local = s.local_ip;
                    self.sender.send(peer, local, &data, data.len());
                }
            }
            ControlToShard::StartMedia { session, srtp_profile, local_key, local_salt, remote_key, remote_salt, video_pt, audio_pt, video_playout_delay_id } => {
                let Some(&idx) = self.by_id.get(&session) else { return };
                let Some(profile) = rts_srtp::Profile::from_dtls_id(srtp_profile) else {
                    self.remove_session(session, "unsupported SRTP profile");
                    return;
                };
                let tx = rts_srtp::SrtpContext::new(profile, &local_key, &local_salt);
                let rx = rts_srtp::SrtpContext::new(profile, &remote_key, &remote_salt);
                let (Ok(tx), Ok(rx)) = (tx, rx) else {
                    self.remove_session(session, "bad SRTP keys");
                    return;
                };
                let sess = &mut self.sessions[idx];
                sess.media = Some(Media {
                    tx,
                    rx,
                    profile,
                    video: TrackOut::new(video_pt, sess.video_ssrc, Kind::Video).with_playout_delay(video_playout_delay_id),
                    audio: TrackOut::new(audio_pt, sess.audio_ssrc, Kind::Audio),
                    pending: Default::default(),
                    bytes_out: 0,
                    packets_out: 0,
                    started_at: Instant::now(),
                    next_sr: Instant::now() + Duration::from_millis(100),
                });
                let key = sess.stream.clone();
                let hint = sess.home_hint;
                self.attach_viewer(idx, &key, hint);
                tracing::info!(shard = self.id, session = format_args!("{session:016x}"), stream = %key, profile = ?profile, "viewer playing");
            }
            ControlToShard::SwitchStream { session, app, stream, home_shard } => {
                let key = Stream::key(&app, &stream);
                let result = match self.by_id.get(&session).copied() {
                    None => Err("no such session on this shard"),
                    Some(idx) if self.sessions[idx].media.is_none() => Err("session is not playing yet"),
                    Some(_)
                        if !self.streams.get(&key).is_some_and(|s| s.publisher.is_some() || s.home.is_some())
                            && home_shard.is_none_or(|h| h as usize == self.id) =>
                    {
                        Err("stream is not live")
                    }
                    Some(idx) => {
                        let old = std::mem::replace(&mut self.sessions[idx].stream, key.clone());
                        if let Some(s) = self.streams.get_mut(&old) {
                            s.viewers.retain(|&v| v != idx);
                            s.update_transcoder();
                        }
                        self.drop_stream_if_unused(&old);
                        if let Some(m) = self.sessions[idx].media.as_mut() {
                            m.video.rebase_next();
                            m.audio.rebase_next();
                            m.pending.clear();
                        }
                        self.attach_viewer(idx, &key, home_shard.map(|h| h as usize));
                        tracing::info!(shard = self.id, session = format_args!("{session:016x}"), from = %old, to = %key, "channel switch");
                        Ok(())
                    }
                };
                let (ok, reason) = match result {
                    Ok(()) => (true, String::new()),
                    Err(e) => (false, e.to_string()),
                };
                self.push_ctl(&ShardToControl::SwitchDone { session, app, stream, ok, reason });
            }
            ControlToShard::RemoveSession { session, reason } => self.remove_session(session, &reason),
            ControlToShard::StreamHome { app, stream, shard } => {
                let key = Stream::key(&app, &stream);
                let waiting = self.streams.get(&key).is_some_and(|s| s.publisher.is_none() && !s.viewers.is_empty());
                if waiting && shard as usize != self.id {
                    self.subscribe(&key, shard as usize);
                }
            }
            ControlToShard::Snapshot => {
                let live: Vec<(String, String)> =
                    self.streams.values().filter(|s| s.publisher.is_some()).map(|s| (s.app.clone(), s.name.clone())).collect();
                for (app, stream) in live {
                    self.push_ctl(&ShardToControl::StreamStarted { app, stream });
                }
                self.send_stats();
            }
        }
    }

    /// Adds a playing session to a stream and queues the stream's GOP cache
    /// for it (instant first frame; drained by drain_catchup).
    fn attach_viewer(&mut self, idx: usize, key: &str, home_hint: Option<usize>) {
        let (app, name) = key.split_once('/').unwrap_or((key, ""));
        let max_packet = self.cfg.webrtc.max_rtp_packet;
        let stream = self.streams.entry(key.to_string()).or_insert_with(|| Stream::new(app, name, max_packet));
        stream.viewers.push(idx);
        if let Some(h) = home_hint {
            if stream.publisher.is_none() && stream.home.is_none() && h != self.id && h < self.mesh.shards() {
                self.subscribe(key, h);
            }
        }
        if let Some(s) = self.streams.get_mut(key) {
            s.update_transcoder();
        }
        let Some(stream) = self.streams.get(key) else { return };
        if !self.cfg.webrtc.gop_cache {
            return;
        }
        if let Some(m) = self.sessions[idx].media.as_mut() {
            m.pending.extend(stream.gop_cache().iter().filter(|(k, _)| *k == Kind::Video).cloned());
            if !m.pending.is_empty() && !self.catchup.contains(&idx) {
                self.catchup.push(idx);
            }
        }
    }

    fn remove_session(&mut self, session: u64, reason: &str) {
        let Some(idx) = self.by_id.remove(&session) else { return };
        let s = self.sessions.remove(idx);
        self.by_ufrag.remove(&s.local_ufrag);
        if let Some(peer) = s.peer {
            self.by_addr.remove(&peer);
        }
        if let Some(stream) = self.streams.get_mut(&s.stream) {
            stream.viewers.retain(|&v| v != idx);
            stream.update_transcoder();
        }
        self.catchup.retain(|&v| v != idx);
        self.drop_stream_if_unused(&s.stream);
        tracing::info!(shard = self.id, session = format_args!("{session:016x}"), reason, "session removed");
        self.push_ctl(&ShardToControl::SessionClosed { session, reason: reason.to_string() });
    }

    fn drop_stream_if_unused(&mut self, key: &str) {
        let unused = self.streams.get(key).is_some_and(|s| s.publisher.is_none() && s.viewers.is_empty());
        if unused {
            if let Some(s) = self.streams.remove(key) {
                if let Some(home) = s.home {
                    self.relay(home, RelayMsg::Unsubscribe { key: key.to_string(), from: self.id });
                }
            }
        }
    }

    // ------------------------------------------------------------ timers

    fn pair_audio_now(&self) -> bool {
        self.cfg.webrtc.pair_audio || self.load.pair_audio()
    }

    fn housekeeping(&mut self, now: Instant) {
        self.last_housekeeping = now;
        let was = self.load.pair_audio();
        self.load.tick(now);
        if self.load.pair_audio() != was {
            tracing::info!(shard = self.id, busy = self.load.busy(), paired = self.load.pair_audio(), "audio pairing switched by load");
        }
        // Retry RTMP output that hit a full socket buffer.
        let idxs: Vec<usize> = self.conns.iter().filter(|(_, c)| !c.out.is_empty() && !c.closing).map(|(i, _)| i).collect();
        for i in idxs {
            self.flush_tcp(i);
        }
        let consent = Duration::from_secs(self.cfg.webrtc.consent_timeout_s);
        let expired: Vec<(u64, &'static str)> = self
            .sessions
            .iter()
            .filter_map(|(_, s)| {
                if s.media.is_none() && now.duration_since(s.created) > PENDING_TIMEOUT {
                    Some((s.id, "ICE/DTLS did not complete"))
                } else if now.duration_since(s.last_consent) > consent {
                    Some((s.id, "consent expired"))
                } else {
                    None
                }
            })
            .collect();
        for (id, why) in expired {
            self.remove_session(id, why);
        }
        self.send_sender_reports(now);
        if now.duration_since(self.last_stats) >= Duration::from_secs(1) {
            self.last_stats = now;
            self.send_stats();
        }
        if now.duration_since(self.last_log) >= Duration::from_secs(10) {
            self.last_log = now;
            for (key, s) in &self.streams {
                if s.viewers.is_empty() {
                    continue;
                }
                let l = s.latency.summary();
                tracing::info!(shard = self.id, stream = %key, viewers = s.viewers.len(), frames = s.video_frames,
                    server_latency_p50_us = l.p50_us, server_latency_p99_us = l.p99_us, server_latency_max_us = l.max_us,
                    "stream stats");
                if let Some(t) = &s.transcoder {
                    let (a, v) = (t.audio_delay.summary(), t.video_delay.summary());
                    tracing::info!(shard = self.id, stream = %key, audio_added_p50_us = a.p50_us, audio_added_p99_us = a.p99_us,
                        video_added_p50_us = v.p50_us, video_added_p99_us = v.p99_us, dropped = t.dropped_jobs, errors = t.errors,
                        "transcoder delay");
                }
            }
        }
    }

    /// RTCP sender reports (checked every housekeeping tick, sent per viewer
    /// on its own schedule), per viewer and track: both tracks' RTP times are
    /// derived from the same stream clock (FLV time), so mapping them to one
    /// NTP time lets the receiver lip-sync (RFC 3550 §6.4.1).
    fn send_sender_reports(&mut self, now: Instant) {
        let unix_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        let ntp = rts_rtp::unix_micros_to_ntp(unix_us);
        let mut sr = [0u8; 256];
        for s in self.streams.values() {
            let Some(ms) = s.stream_ms_at(now) else { continue };
            let ms = ms.max(0) as u64;
            let tracks = [
                (Kind::Video, ms.wrapping_mul(90) as u32, s.video_packets, s.video_octets),
                (Kind::Audio, ms.wrapping_mul(48) as u32, s.audio_packets, s.audio_octets),
            ];
            for &v in &s.viewers {
                let Some(sess) = self.sessions.get_mut(v) else { continue };
                let (Some(peer), local) = (sess.peer, sess.local_ip) else { continue };
                let Some(media) = sess.media.as_mut() else { continue };
                if media.next_sr > now {
                    continue;
                }
                // Frequent reports right after joining let the receiver lip-sync
                // within its first second; then the usual ~1 s.
                let young = now.duration_since(media.started_at) < Duration::from_secs(2);
                media.next_sr = now + if young { Duration::from_millis(200) } else { Duration::from_secs(1) };
                for (kind, rtp, packets, octets) in tracks {
                    let t = media.track(kind);
                    if !t.started() {
                        continue;
                    }
                    let (ssrc, ts) = (t.ssrc, t.map_ts(rtp));
                    let Ok(n) = rts_rtp::rtcp::write_sender_report(&mut sr, ssrc, ntp, ts, packets as u32, octets as u32, "rts") else {
                        continue;
                    };
                    if let Ok(len) = media.tx.protect_rtcp(&sr[..n], &mut self.scratch) {
                        self.sender.send(peer, local, &self.scratch[..len], len);
                    }
                }
            }
        }
    }

    fn send_stats(&mut self) {
        let c = &mut self.counters;
        let st = self.sender.stats;
        c.udp_datagrams_out = st.datagrams;
        c.udp_bytes_out = st.bytes;
        c.udp_sends = st.syscalls;
        c.udp_messages = st.messages;
        c.udp_send_errors = st.errors;
        c.gso_fallbacks = st.gso_fallbacks;
        c.sessions = self.sessions.len() as u64;
        c.viewers = self.sessions.iter().filter(|(_, s)| s.is_playing()).count() as u64;
        c.streams = self.streams.len() as u64;
        let stats = ShardStats {
            shard: self.id as u32,
            core: self.core.map(|c| c as u32),
            pinned: self.pinned,
            udp_port: self.udp_port(),
            gso: self.sender.gso_enabled(),
            uring_fixed_files: self.uring.fixed_files(),
            busy_permille: (self.load.busy() * 1000.0).round() as u32,
            audio_paired: self.pair_audio_now(),
            counters: self.counters,
        };
        self.push_ctl(&ShardToControl::Stats(stats));
        let all: Vec<StreamStats> = self
            .streams
            .values()
            .map(|s| {
                let l = s.latency.summary();
                StreamStats {
                    shard: self.id as u32,
                    app: s.app.clone(),
                    stream: s.name.clone(),
                    publishing: s.publisher.is_some(),
                    viewers: s.viewers.len() as u32,
                    video_frames: s.video_frames,
                    audio_frames: s.audio_frames,
                    b_frames: s.saw_b_frames,
                    bytes_in: s.bytes_in,
                    bytes_out: s.bytes_out,
                    latency_us_p50: l.p50_us,
                    latency_us_p99: l.p99_us,
                    latency_us_max: l.max_us,
                    latency_samples: l.samples,
                    audio_transcode_us_p50: s.transcoder.as_ref().map_or(0, |t| t.audio_delay.summary().p50_us),
                    audio_transcode_us_p99: s.transcoder.as_ref().map_or(0, |t| t.audio_delay.summary().p99_us),
                    video_transcode_us_p50: s.transcoder.as_ref().map_or(0, |t| t.video_delay.summary().p50_us),
                    video_transcode_us_p99: s.transcoder.as_ref().map_or(0, |t| t.video_delay.summary().p99_us),
                    transcoder_dropped: s.transcoder.as_ref().map_or(0, |t| t.dropped_jobs),
                    av_lag_ms: s.av_lag.lag_ms().map(|l| l.round() as i32),
                    playout_delay_min_ms: u32::from(s.av_lag.settled_min()) * 10,
                }
            })
            .collect();
        for s in all {
            self.push_ctl(&ShardToControl::StreamStats(s));
        }
    }
}

/// Longest an Opus packet waits for its pair (one 20 ms frame plus slack).
const AUDIO_HOLD: Duration = Duration::from_millis(25);

/// Delivery of a stream's new packets: relay to replicating shards, then
/// fan out to local viewers.
struct Out<'a> {
    sessions: &'a mut Slab<Session>,
    sender: &'a mut UdpSender,
    batch: &'a mut GsoBatch,
    mesh: &'a RelayMesh,
    id: usize,
    counters: &'a mut ShardCounters,
    pair_audio: bool,
}

impl Out<'_> {
    fn deliver(&mut self, key: &str, stream: &mut Stream, kind: Kind, packets: &[Bytes], keyframe: bool) {
        for &sub in &stream.subscribers {
            let msg = RelayMsg::Packets { key: key.to_string(), kind, packets: packets.to_vec(), keyframe, anchor: stream.anchor };
            if self.mesh.send(self.id, sub, msg).is_err() {
                self.counters.relay_dropped += 1;
            }
        }
        stream.bytes_out += fan_out(stream, self.sessions, kind, packets, self.sender, self.batch);
    }

    /// Audio is 50 of a viewer's 80 sends per second. Two consecutive
    /// (CBR, equal-size) Opus packets go to each viewer as one GSO sendmsg:
    /// half the audio sends for at most 20 ms more audio delay.
    fn deliver_audio(&mut self, key: &str, stream: &mut Stream, packet: Bytes, now: Instant) {
        if !self.pair_audio {
            self.deliver(key, stream, Kind::Audio, &[packet], false);
            return;
        }
        match stream.audio_hold.take() {
            None => stream.audio_hold = Some((packet, now)),
            Some((held, _)) => self.deliver(key, stream, Kind::Audio, &[held, packet], false),
        }
    }

    /// Sends a held Opus packet whose pair did not come in time (DTX, end).
    fn flush_audio(&mut self, key: &str, stream: &mut Stream, now: Instant) {
        if stream.audio_hold.as_ref().is_some_and(|(_, at)| now.duration_since(*at) >= AUDIO_HOLD) {
            if let Some((held, _)) = stream.audio_hold.take() {
                self.deliver(key, stream, Kind::Audio, &[held], false);
            }
        }
    }
}

/// Paced replay rate of a GOP cache to one new viewer: a 2 s GOP at
/// 2 Mbit/s (~450 packets) reaches live in ~90 ms.
const CATCHUP_PACKETS_PER_S: u64 = 5_000;

