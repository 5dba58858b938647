//! The socket side: one listen socket facing clients, one connected upstream socket per
//! client address (so the server sees a distinct 5-tuple per viewer), and a binary heap of
//! datagrams waiting for their delivery time. Single-threaded `mio` loop; the poll timeout is
//! the next delivery time, so nothing sleeps or spins.
//!
//! Each client gets its own [`Model`] per direction — every viewer has its own impaired access
//! link — seeded with [`client_seed`] so runs are reproducible.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use serde::Serialize;

use crate::{Decision, ImpairConfig, ImpairError, Model, ModelStats};

const LISTEN: Token = Token(0);
/// Largest UDP payload we relay; bigger datagrams are truncated by the kernel anyway.
const MAX_DATAGRAM: usize = 65_535;
/// Cap on the buffer pool so a burst does not pin memory forever.
const POOL_MAX: usize = 4096;

/// Which way a datagram travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client → server.
    Up,
    /// Server → client (the viewer's downlink).
    Down,
}

/// Seed of the model for the `index`-th client (0-based, in order of first packet) and one
/// direction. Public so tests can replay exactly what the relay will do.
pub fn client_seed(seed: u64, index: u64, dir: Direction) -> u64 {
    let d = match dir {
        Direction::Up => 1,
        Direction::Down => 0,
    };
    seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(d)
}

/// Relay settings.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Where clients send (e.g. `0.0.0.0:9000`, or `127.0.0.1:0` in tests).
    pub listen: SocketAddr,
    /// The real server.
    pub upstream: SocketAddr,
    /// Applied client → server.
    pub up: ImpairConfig,
    /// Applied server → client.
    pub down: ImpairConfig,
    /// Base seed (see [`client_seed`]).
    pub seed: u64,
    /// A client silent in both directions this long is forgotten and its socket closed.
    pub idle_timeout: Duration,
    /// New client addresses beyond this many are ignored (counted in `rejected_clients`).
    pub max_clients: usize,
}

impl RelayConfig {
    /// A transparent relay with defaults: 60 s idle timeout, 100 000 clients.
    pub fn new(listen: SocketAddr, upstream: SocketAddr) -> Self {
        Self {
            listen,
            upstream,
            up: ImpairConfig::default(),
            down: ImpairConfig::default(),
            seed: 1,
            idle_timeout: Duration::from_secs(60),
            max_clients: 100_000,
        }
    }
}

/// Relay counters, totals over all clients past and present.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RelayStats {
    /// Client addresses seen so far.
    pub clients_total: u64,
    /// Clients with a live upstream socket.
    pub clients_active: u64,
    /// New clients ignored because of `max_clients` or a socket error.
    pub rejected_clients: u64,
    /// Client → server model counters.
    pub up: ModelStats,
    /// Server → client model counters.
    pub down: ModelStats,
    /// Datagrams actually sent (duplicates included).
    pub sent: u64,
    /// Sends that failed (including a full socket buffer); counted, never fatal.
    pub send_errors: u64,
}

struct Client {
    id: u64,
    addr: SocketAddr,
    sock: UdpSocket,
    up: Model,
    down: Model,
    last_seen: Instant,
}

struct Pending {
    at: Instant,
    seq: u64,
    dir: Direction,
    slot: usize,
    client_id: u64,
    addr: SocketAddr,
    buf: Vec<u8>,
}

impl PartialEq for Pending {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Pending {
    /// Delivery time, then arrival order, so equal times keep FIFO order.
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// A bound relay; drive it with [`Relay::run`] or [`Relay::poll_once`].
pub struct Relay {
    cfg: RelayConfig,
    poll: Poll,
    events: Events,
    listen: UdpSocket,
    clients: Vec<Option<Client>>,
    free_slots: Vec<usize>,
    by_addr: HashMap<SocketAddr, usize>,
    heap: BinaryHeap<Reverse<Pending>>,
    pool: Vec<Vec<u8>>,
    scratch: Vec<u8>,
    seq: u64,
    /// Counters of clients already forgotten, plus relay-level counters.
    retired: RelayStats,
}

impl Relay {
    /// Binds the listen socket. Upstream sockets are created lazily per client.
    pub fn bind(cfg: RelayConfig) -> Result<Self, ImpairError> {
        cfg.up.validate()?;
        cfg.down.validate()?;
        let poll = Poll::new()?;
        let mut listen = UdpSocket::bind(cfg.listen)?;
        grow_recv_buffer(&listen);
        poll.registry()
            .register(&mut listen, LISTEN, Interest::READABLE)?;
        Ok(Self {
            cfg,
            poll,
            events: Events::with_capacity(256),
            listen,
            clients: Vec::new(),
            free_slots: Vec::new(),
            by_addr: HashMap::new(),
            heap: BinaryHeap::new(),
            pool: Vec::new(),
            scratch: vec![0; MAX_DATAGRAM],
            seq: 0,
            retired: RelayStats::default(),
        })
    }

    /// The address clients should send to (useful after binding port 0).
    pub fn local_addr(&self) -> Result<SocketAddr, ImpairError> {
        Ok(self.listen.local_addr()?)
    }

    /// Totals so far.
    pub fn stats(&self) -> RelayStats {
        let mut s = self.retired;
        for c in self.clients.iter().flatten() {
            s.clients_active += 1;
            s.up.add(&c.up.stats());
            s.down.add(&c.down.stats());
        }
        s
    }

    /// Runs until `stop` is set, calling `on_tick` every `tick` with the current totals.
    /// Returns the final totals.
    pub fn run(
        &mut self,
        stop: &AtomicBool,
        tick: Duration,
        mut on_tick: impl FnMut(&RelayStats),
    ) -> Result<RelayStats, ImpairError> {
        let mut next_tick = Instant::now() + tick;
        while !stop.load(Ordering::Relaxed) {
            // Wake at least every 100 ms to notice `stop` (set from a signal handler).
            let until_tick = next_tick.saturating_duration_since(Instant::now());
            self.poll_once(until_tick.min(Duration::from_millis(100)))?;
            let now = Instant::now();
            if now >= next_tick {
                self.expire_idle(now);
                on_tick(&self.stats());
                next_tick = now + tick;
            }
        }
        Ok(self.stats())
    }

    /// Waits up to `max_wait` (less if a delivery is due sooner) for datagrams, relays them
    /// through the models, and sends everything now due.
    pub fn poll_once(&mut self, max_wait: Duration) -> Result<(), ImpairError> {
        let now = Instant::now();
        let wait = match self.heap.peek() {
            Some(Reverse(p)) => p.at.saturating_duration_since(now).min(max_wait),
            None => max_wait,
        };
        if let Err(e) = self.poll.poll(&mut self.events, Some(wait)) {
            if e.kind() != ErrorKind::Interrupted {
                return Err(e.into());
            }
        }
        let tokens: Vec<Token> = self.events.iter().map(|e| e.token()).collect();
        for token in tokens {
            if token == LISTEN {
                self.read_clients()?;
            } else {
                self.read_upstream(token.0 - 1);
            }
        }
        self.flush_due(Instant::now());
        Ok(())
    }

    fn read_clients(&mut self) -> Result<(), ImpairError> {
        loop {
            let (len, from) = match self.listen.recv_from(&mut self.scratch) {
                Ok(x) => x,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // ICMP errors from earlier sends surface here on some kernels; keep going.
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => continue,
                Err(e) => return Err(e.into()),
            };
            let now = Instant::now();
            let Some(slot) = self.client_slot(from, now) else {
                continue;
            };
            let Some(c) = self.clients[slot].as_mut() else {
                continue;
            };
            c.last_seen = now;
            let decision = c.up.on_datagram(now, len);
            let (id, addr) = (c.id, c.addr);
            self.schedule(decision, Direction::Up, slot, id, addr, len);
        }
    }

    fn read_upstream(&mut self, slot: usize) {
        loop {
            let Some(c) = self.clients.get_mut(slot).and_then(Option::as_mut) else {
                return;
            };
            let len = match c.sock.recv(&mut self.scratch) {
                Ok(len) => len,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // WouldBlock ends the drain; a refused port (ICMP) is not fatal either.
                Err(_) => return,
            };
            let now = Instant::now();
            c.last_seen = now;
            let decision = c.down.on_datagram(now, len);
            let (id, addr) = (c.id, c.addr);
            self.schedule(decision, Direction::Down, slot, id, addr, len);
        }
    }

    /// Finds or creates the client for `addr`; `None` if it must be ignored.
    fn client_slot(&mut self, addr: SocketAddr, now: Instant) -> Option<usize> {
        if let Some(&slot) = self.by_addr.get(&addr) {
            return Some(slot);
        }
        if self.by_addr.len() >= self.cfg.max_clients {
            self.retired.rejected_clients += 1;
            return None;
        }
        match self.new_client(addr, now) {
            Ok(slot) => Some(slot),
            Err(_) => {
                self.retired.rejected_clients += 1;
                None
            }
        }
    }

    fn new_client(&mut self, addr: SocketAddr, now: Instant) -> Result<usize, ImpairError> {
        let index = self.retired.clients_total;
        let bind: SocketAddr = if self.cfg.upstream.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let mut sock = UdpSocket::bind(bind)?;
        grow_recv_buffer(&sock);
        sock.connect(self.cfg.upstream)?;
        let slot = self.free_slots.pop().unwrap_or(self.clients.len());
        self.poll
            .registry()
            .register(&mut sock, Token(slot + 1), Interest::READABLE)?;
        let client = Client {
            id: index,
            addr,
            sock,
            up: Model::new(
                self.cfg.up,
                client_seed(self.cfg.seed, index, Direction::Up),
            )?,
            down: Model::new(
                self.cfg.down,
                client_seed(self.cfg.seed, index, Direction::Down),
            )?,
            last_seen: now,
        };
        if slot == self.clients.len() {
            self.clients.push(Some(client));
        } else {
            self.clients[slot] = Some(client);
        }
        self.by_addr.insert(addr, slot);
        self.retired.clients_total += 1;
        Ok(slot)
    }

    fn schedule(
        &mut self,
        d: Decision,
        dir: Direction,
        slot: usize,
        client_id: u64,
        addr: SocketAddr,
        len: usize,
    ) {
        let Decision::Deliver { at, duplicate_at } = d else {
            return;
        };
        for at in std::iter::once(at).chain(duplicate_at) {
            let mut buf = self.pool.pop().unwrap_or_default();
            buf.clear();
            buf.extend_from_slice(&self.scratch[..len]);
            self.seq += 1;
            self.heap.push(Reverse(Pending {
                at,
                seq: self.seq,
                dir,
                slot,
                client_id,
                addr,
                buf,
            }));
        }
    }

    fn flush_due(&mut self, now: Instant) {
        while self.heap.peek().is_some_and(|Reverse(p)| p.at <= now) {
            let Some(Reverse(p)) = self.heap.pop() else {
                break;
            };
            let res = match p.dir {
                Direction::Down => Some(self.listen.send_to(&p.buf, p.addr)),
                Direction::Up => match self.clients.get(p.slot).and_then(Option::as_ref) {
                    Some(c) if c.id == p.client_id => Some(c.sock.send(&p.buf)),
                    _ => None, // client expired meanwhile
                },
            };
            match res {
                Some(Ok(_)) => self.retired.sent += 1,
                _ => self.retired.send_errors += 1,
            }
            if self.pool.len() < POOL_MAX {
                self.pool.push(p.buf);
            }
        }
    }

    fn expire_idle(&mut self, now: Instant) {
        for slot in 0..self.clients.len() {
            let idle = self.clients[slot].as_ref().is_some_and(|c| {
                now.saturating_duration_since(c.last_seen) >= self.cfg.idle_timeout
            });
            if !idle {
                continue;
            }
            if let Some(mut c) = self.clients[slot].take() {
                let _ = self.poll.registry().deregister(&mut c.sock);
                self.by_addr.remove(&c.addr);
                self.retired.up.add(&c.up.stats());
                self.retired.down.add(&c.down.stats());
                self.free_slots.push(slot);
            }
        }
    }
}

/// Receive buffer of every relay socket. A new viewer's GOP-cache replay
/// arrives at ~5,000 datagrams/s; with the kernel default (~208 KiB, ~90
/// full-size datagrams) a relay busy with other clients overflowed it and
/// the loss showed up as impairment that was never configured.
const RECV_BUFFER: libc::c_int = 4 << 20;

/// Best effort: SO_RCVBUFFORCE (root) past `net.core.rmem_max`, else
/// SO_RCVBUF up to it.
#[allow(unsafe_code)]
fn grow_recv_buffer(sock: &UdpSocket) {
    use std::os::fd::AsRawFd;
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: passes a pointer to a live c_int and its exact size.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&RECV_BUFFER as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            return;
        }
    }
}
