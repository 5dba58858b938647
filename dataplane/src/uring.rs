//! The shard's io_uring: accept, TCP receive and UDP recvmsg are submitted
//! here; the loop blocks in one `io_uring_enter` with a timeout.
//!
//! Safety model: every buffer handed to the kernel lives in a `Box` owned by
//! the shard (connection buffers, [`RecvSlot`]s) that is neither freed nor
//! reused while its operation is in flight. The shard only frees a buffer
//! after the completion for its one in-flight operation has been reaped.

use crate::recv_ring::{self, RecvRing};
use io_uring::{opcode, squeue, types, IoUring};
use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

/// What a completion belongs to; packed into the 64-bit user_data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    /// A connection on the RTMP listener.
    Accept,
    /// A connection on the media (HTTP) listener.
    AcceptMedia,
    /// A connection on the media listener over TLS.
    AcceptMediaTls,
    TcpRecv(u32),
    UdpRecv(u32),
    /// The shard's relay eventfd became readable.
    Wake,
    /// A datagram (or the end) of the multishot UDP receive.
    UdpMulti,
    /// An outgoing TCP connect (a cluster pull) finished.
    Connect(u32),
}

impl Token {
    fn encode(self) -> u64 {
        match self {
            Token::Accept => 1 << 56,
            Token::TcpRecv(i) => (2 << 56) | i as u64,
            Token::UdpRecv(i) => (3 << 56) | i as u64,
            Token::Wake => 4 << 56,
            Token::UdpMulti => 5 << 56,
            Token::AcceptMedia => 6 << 56,
            Token::AcceptMediaTls => 7 << 56,
            Token::Connect(i) => (8 << 56) | i as u64,
        }
    }
    fn decode(v: u64) -> Option<Token> {
        let idx = (v & 0xFFFF_FFFF) as u32;
        match v >> 56 {
            1 => Some(Token::Accept),
            2 => Some(Token::TcpRecv(idx)),
            3 => Some(Token::UdpRecv(idx)),
            4 => Some(Token::Wake),
            5 => Some(Token::UdpMulti),
            6 => Some(Token::AcceptMedia),
            7 => Some(Token::AcceptMediaTls),
            8 => Some(Token::Connect(idx)),
            _ => None,
        }
    }
}

enum Target {
    Fixed(types::Fixed),
    Fd(types::Fd),
}

#[derive(Debug)]
pub struct Completion {
    pub token: Token,
    pub result: i32,
    /// CQE flags: the provided buffer's id, and whether a multishot
    /// request stays armed (`IORING_CQE_F_MORE`).
    pub flags: u32,
}

impl Completion {
    /// The provided buffer the kernel filled, if any.
    pub fn buffer(&self) -> Option<u16> {
        io_uring::cqueue::buffer_select(self.flags)
    }

    /// Whether a multishot request is still armed after this completion.
    pub fn more(&self) -> bool {
        io_uring::cqueue::more(self.flags)
    }
}

pub struct Uring {
    ring: IoUring,
    /// Fds registered as fixed files, by index (see [`Uring::register_files`]).
    fixed: Vec<RawFd>,
}

impl Uring {
    /// A ring for the calling thread alone (the shard's): completions'
    /// kernel-side work (task work) is deferred to our `submit_and_wait`
    /// and done there in one batch, instead of interrupting the thread at
    /// its next system call for each datagram (Linux 6.1+; older kernels
    /// get a plain ring).
    pub fn new(entries: u32) -> io::Result<Uring> {
        let deferred = IoUring::builder().setup_single_issuer().setup_defer_taskrun().build(entries);
        let ring = match deferred {
            Ok(r) => r,
            Err(_) => IoUring::new(entries)?,
        };
        Ok(Uring { ring, fixed: Vec::new() })
    }

    /// A ring the thread never sleeps on, for input that may wait for the
    /// thread's next turn (viewer datagrams, see `[dataplane]
    /// udp_read_at_turns`). With deferred task work, a completion's
    /// kernel-side work only wakes a thread that waits on *this* ring, so
    /// datagrams arriving here never end the shard's wait on its main
    /// ring; the kernel flags the pending work in the shared ring memory
    /// and [`Uring::reap`] runs it. Err where the kernel lacks deferred
    /// task work (before 6.1): the caller keeps the input on its main ring.
    pub fn new_unwaited(entries: u32) -> io::Result<Uring> {
        let ring = IoUring::builder().setup_single_issuer().setup_defer_taskrun().setup_taskrun_flag().build(entries)?;
        Ok(Uring { ring, fixed: Vec::new() })
    }

    /// For a ring from [`Uring::new_unwaited`]: submits queued SQEs and
    /// runs pending kernel-side work, without waiting, then takes the
    /// completions. Enters the kernel only when something is pending
    /// (a flag in shared memory, no system call to learn it).
    pub fn reap(&mut self, out: &mut Vec<Completion>) -> io::Result<()> {
        let pending = {
            let sq = self.ring.submission();
            sq.taskrun() || !sq.is_empty()
        };
        if pending {
            entered(self.ring.submit())?;
        }
        self.drain(out);
        Ok(())
    }

    /// Registers long-lived fds as fixed files: their SQEs then skip the
    /// per-operation file lookup and reference count (fdget/fdput). Costs
    /// no locked memory. On failure (old kernel, resource limits) the ring
    /// keeps using plain fds; the error is returned for the log.
    pub fn register_files(&mut self, fds: &[RawFd]) -> io::Result<()> {
        self.ring.submitter().register_files(fds)?;
        self.fixed = fds.to_vec();
        Ok(())
    }

    /// Whether fixed files are in use.
    pub fn fixed_files(&self) -> bool {
        !self.fixed.is_empty()
    }

    /// The SQE target for `fd`: its fixed-file index when registered.
    fn target(&self, fd: RawFd) -> Target {
        match self.fixed.iter().position(|&f| f == fd) {
            Some(i) => Target::Fixed(types::Fixed(i as u32)),
            None => Target::Fd(types::Fd(fd)),
        }
    }

    /// Queues an SQE, flushing the submission queue first if it is full.
    ///
    /// # Safety
    /// All pointers inside `sqe` must stay valid until its completion is reaped.
    unsafe fn push(&mut self, sqe: squeue::Entry) -> io::Result<()> {
        // SAFETY: forwarded contract: the caller guarantees pointer validity.
        if unsafe { self.ring.submission().push(&sqe) }.is_ok() {
            return Ok(());
        }
        self.ring.submit()?;
        // SAFETY: as above.
        unsafe { self.ring.submission().push(&sqe) }
            .map_err(|_| io::Error::other("io_uring submission queue full"))
    }

    /// Accepts one connection on `listener`; its completion carries `token`.
    pub fn accept(&mut self, listener: RawFd, token: Token) -> io::Result<()> {
        let sqe = match self.target(listener) {
            Target::Fixed(f) => opcode::Accept::new(f, std::ptr::null_mut(), std::ptr::null_mut()),
            Target::Fd(f) => opcode::Accept::new(f, std::ptr::null_mut(), std::ptr::null_mut()),
        }
        .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
        .build()
        .user_data(token.encode());
        // SAFETY: no buffers: address out-pointers are null.
        unsafe { self.push(sqe) }
    }

    /// # Safety
    /// `buf` must stay valid and unaliased until the TcpRecv(conn) completion.
    pub unsafe fn recv(&mut self, fd: RawFd, buf: &mut [u8], conn: u32) -> io::Result<()> {
        let sqe = opcode::Recv::new(types::Fd(fd), buf.as_mut_ptr(), buf.len() as u32)
            .build()
            .user_data(Token::TcpRecv(conn).encode());
        // SAFETY: forwarded to the caller.
        unsafe { self.push(sqe) }
    }

    /// Connects TCP socket `fd` to `addr`; the completion carries `conn`.
    ///
    /// # Safety
    /// `addr` must stay valid until the Connect completion is reaped.
    pub unsafe fn connect(&mut self, fd: RawFd, addr: &socket2::SockAddr, conn: u32) -> io::Result<()> {
        let sqe = opcode::Connect::new(types::Fd(fd), addr.as_ptr(), addr.len())
            .build()
            .user_data(Token::Connect(conn).encode());
        // SAFETY: forwarded to the caller.
        unsafe { self.push(sqe) }
    }

    /// Reads the 8-byte counter of an eventfd.
    ///
    /// # Safety
    /// `buf` must stay valid until the Wake completion.
    pub unsafe fn read_eventfd(&mut self, fd: RawFd, buf: &mut u64) -> io::Result<()> {
        let ptr: *mut u8 = (buf as *mut u64).cast();
        let sqe = match self.target(fd) {
            Target::Fixed(f) => opcode::Read::new(f, ptr, 8).build(),
            Target::Fd(f) => opcode::Read::new(f, ptr, 8).build(),
        }
        .user_data(Token::Wake.encode());
        // SAFETY: forwarded to the caller.
        unsafe { self.push(sqe) }
    }

    /// # Safety
    /// `slot` must stay at its address and untouched until the UdpRecv(idx) completion.
    pub unsafe fn recvmsg(&mut self, fd: RawFd, slot: &mut RecvSlot, idx: u32) -> io::Result<()> {
        slot.arm();
        let sqe = match self.target(fd) {
            Target::Fixed(f) => opcode::RecvMsg::new(f, &mut slot.msg).build(),
            Target::Fd(f) => opcode::RecvMsg::new(f, &mut slot.msg).build(),
        }
        .user_data(Token::UdpRecv(idx).encode());
        // SAFETY: forwarded to the caller; `slot` is boxed by its owner.
        unsafe { self.push(sqe) }
    }

    /// Registers `ring` as provided-buffer group [`recv_ring::GROUP`].
    ///
    /// # Safety
    /// `ring` must stay alive and in place for as long as this io_uring.
    pub unsafe fn register_recv_ring(&mut self, ring: &RecvRing) -> io::Result<()> {
        // SAFETY: forwarded to the caller.
        unsafe { self.ring.submitter().register_buf_ring_with_flags(ring.ring_addr(), recv_ring::RING_ENTRIES, recv_ring::GROUP, 0) }
    }

    /// Arms one multishot `recvmsg` on `fd` taking buffers from the
    /// registered ring: a UdpMulti completion per datagram until one
    /// comes without `more()` (out of buffers, an error), then re-arm.
    ///
    /// # Safety
    /// `ring` must be the registered one and outlive the request.
    pub unsafe fn recvmsg_multi(&mut self, fd: RawFd, ring: &RecvRing) -> io::Result<()> {
        let sqe = match self.target(fd) {
            Target::Fixed(f) => opcode::RecvMsgMulti::new(f, ring.msghdr(), recv_ring::GROUP).build(),
            Target::Fd(f) => opcode::RecvMsgMulti::new(f, ring.msghdr(), recv_ring::GROUP).build(),
        }
        .user_data(Token::UdpMulti.encode());
        // SAFETY: forwarded to the caller.
        unsafe { self.push(sqe) }
    }

    /// Submits queued SQEs and waits for at least one completion or `timeout`.
    pub fn submit_and_wait(&mut self, timeout: Duration) -> io::Result<()> {
        let ts = types::Timespec::new().sec(timeout.as_secs()).nsec(timeout.subsec_nanos());
        let args = types::SubmitArgs::new().timespec(&ts);
        entered(self.ring.submitter().submit_with_args(1, &args))
    }

    pub fn drain(&mut self, out: &mut Vec<Completion>) {
        for cqe in self.ring.completion() {
            if let Some(token) = Token::decode(cqe.user_data()) {
                out.push(Completion { token, result: cqe.result(), flags: cqe.flags() });
            }
        }
    }
}

/// An `io_uring_enter`'s result: its timeout (ETIME), a signal (EINTR) or a
/// full completion queue (EBUSY) end the call without failing the ring;
/// the next turn enters again.
fn entered(r: io::Result<usize>) -> io::Result<()> {
    match r {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Room for the control messages we ask for (IP_PKTINFO or IPV6_PKTINFO)
/// with slack.
const CMSG_SPACE: usize = 128;
pub const UDP_RECV_BUF: usize = 2048;

/// One outstanding UDP `recvmsg`: the datagram buffer, the source address
/// and the ancillary data (IP_PKTINFO: the local address it arrived at).
#[repr(C)]
pub struct RecvSlot {
    pub buf: [u8; UDP_RECV_BUF],
    addr: libc::sockaddr_storage,
    cmsg: [u64; CMSG_SPACE / 8], // u64 for cmsghdr alignment
    iov: libc::iovec,
    msg: libc::msghdr,
}

impl RecvSlot {
    pub fn new_boxed() -> Box<RecvSlot> {
        // SAFETY: all fields are plain C data for which all-zero is valid.
        Box::new(unsafe { std::mem::zeroed() })
    }

    fn arm(&mut self) {
        self.iov = libc::iovec { iov_base: self.buf.as_mut_ptr().cast(), iov_len: self.buf.len() };
        // SAFETY: msghdr is plain C data; zero is a valid start.
        self.msg = unsafe { std::mem::zeroed() };
        self.msg.msg_name = (&mut self.addr as *mut libc::sockaddr_storage).cast();
        self.msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
        self.msg.msg_iov = &mut self.iov;
        self.msg.msg_iovlen = 1;
        self.msg.msg_control = self.cmsg.as_mut_ptr().cast();
        self.msg.msg_controllen = CMSG_SPACE;
    }

    /// Source address of the completed datagram (canonical: IPv4 peers of a
    /// dual-stack socket are IPv4).
    pub fn source(&self) -> Option<std::net::SocketAddr> {
        let len = (self.msg.msg_namelen as usize).min(std::mem::size_of::<libc::sockaddr_storage>());
        // SAFETY: reading the first `len` bytes of our own sockaddr_storage.
        let name = unsafe { std::slice::from_raw_parts((&self.addr as *const libc::sockaddr_storage).cast::<u8>(), len) };
        crate::sockaddr::parse_sockaddr(name)
    }

    /// Local destination address from IP_PKTINFO / IPV6_PKTINFO, if the
    /// kernel supplied it.
    pub fn local_ip(&self) -> Option<std::net::IpAddr> {
        let len = self.msg.msg_controllen.min(CMSG_SPACE);
        // SAFETY: reading the first `len` bytes of our own control buffer.
        let control = unsafe { std::slice::from_raw_parts(self.cmsg.as_ptr().cast::<u8>(), len) };
        crate::sockaddr::parse_pktinfo(control)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for t in [Token::Accept, Token::TcpRecv(0), Token::TcpRecv(u32::MAX), Token::UdpRecv(7), Token::Wake, Token::UdpMulti, Token::AcceptMedia] {
            assert_eq!(Token::decode(t.encode()), Some(t));
        }
        assert_eq!(Token::decode(0), None);
    }

    #[test]
    fn recvmsg_reports_source_and_pktinfo() {
        recvmsg_roundtrip(false);
    }

    #[test]
    fn recvmsg_through_a_fixed_file() {
        recvmsg_roundtrip(true);
    }

    /// Three datagrams through one multishot request: each completion names
    /// a buffer holding that datagram, its source and local address, and the
    /// request stays armed; a recycled buffer is taken again.
    #[test]
    fn multishot_recvmsg_fills_provided_buffers() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&rx);
        crate::udp::enable_pktinfo(fd).unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut ring = Uring::new(8).unwrap();
        let mut bufs = RecvRing::new();
        // SAFETY: `bufs` lives until after `ring` is dropped (end of the test).
        unsafe {
            ring.register_recv_ring(&bufs).unwrap();
            ring.recvmsg_multi(fd, &bufs).unwrap();
        }
        let mut seen = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        for (i, msg) in [&b"one"[..], b"two", b"three"].iter().enumerate() {
            tx.send_to(msg, rx.local_addr().unwrap()).unwrap();
            let mut out = Vec::new();
            while out.is_empty() {
                assert!(std::time::Instant::now() < deadline, "no multishot completion within 5 s");
                ring.submit_and_wait(Duration::from_millis(100)).unwrap();
                ring.drain(&mut out);
            }
            assert_eq!(out.len(), 1);
            let c = &out[0];
            assert_eq!(c.token, Token::UdpMulti);
            assert!(c.result > 0, "result {}", c.result);
            assert!(c.more(), "the request must stay armed");
            let bid = c.buffer().expect("a provided buffer");
            let d = bufs.datagram(bid, c.result as usize).unwrap();
            assert_eq!(d.payload, *msg, "datagram {i}");
            assert!(!d.truncated);
            assert_eq!(d.source.unwrap(), tx.local_addr().unwrap());
            assert_eq!(d.local_ip, Some(std::net::IpAddr::from([127, 0, 0, 1])));
            seen.push(bid);
            if i == 0 {
                bufs.recycle(bid);
            }
        }
        assert_ne!(seen[1], seen[2], "a buffer not given back is not reused");
        drop(ring);
        drop(bufs);
    }

    /// With every buffer taken and none given back, the next datagram ends
    /// the request (ENOBUFS, not armed any more): the shard re-arms on that.
    #[test]
    fn multishot_recvmsg_ends_when_buffers_run_out() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        crate::udp::setsockopt_int(std::os::fd::AsRawFd::as_raw_fd(&rx), libc::SOL_SOCKET, libc::SO_RCVBUF, 1 << 20).unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut ring = Uring::new(64).unwrap();
        let bufs = RecvRing::new();
        // SAFETY: `bufs` lives until after `ring` is dropped (end of the test).
        unsafe {
            ring.register_recv_ring(&bufs).unwrap();
            ring.recvmsg_multi(std::os::fd::AsRawFd::as_raw_fd(&rx), &bufs).unwrap();
        }
        let n = crate::recv_ring::RING_ENTRIES as usize + 1;
        let mut out = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        for i in 0..n {
            tx.send_to(&[i as u8; 8], rx.local_addr().unwrap()).unwrap();
            // Reap as we go: the completion queue is smaller than n.
            ring.submit_and_wait(Duration::ZERO).unwrap();
            ring.drain(&mut out);
        }
        while out.len() < n {
            assert!(std::time::Instant::now() < deadline, "{} of {n} completions within 5 s", out.len());
            ring.submit_and_wait(Duration::from_millis(100)).unwrap();
            ring.drain(&mut out);
        }
        let filled = out.iter().filter(|c| c.result > 0 && c.buffer().is_some()).count();
        assert_eq!(filled, n - 1, "one datagram per buffer");
        let last = out.last().unwrap();
        assert_eq!(last.result, -libc::ENOBUFS);
        assert!(!last.more(), "the request ends when buffers run out");
        drop(ring);
        drop(bufs);
    }

    /// Datagrams on an unwaited ring do not end the thread's wait on its
    /// main ring; `reap` then returns them. The same datagrams on the main
    /// ring end the wait at once (the control: the measure can tell).
    #[test]
    fn an_unwaited_ring_takes_datagrams_without_waking_the_thread() {
        for unwaited in [true, false] {
            let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let fd = std::os::fd::AsRawFd::as_raw_fd(&rx);
            let to = rx.local_addr().unwrap();
            let mut main = Uring::new(8).unwrap();
            let mut udp = Uring::new_unwaited(8).unwrap();
            let mut bufs = RecvRing::new();
            let ring = if unwaited { &mut udp } else { &mut main };
            // SAFETY: `bufs` lives until after both rings are dropped.
            unsafe {
                ring.register_recv_ring(&bufs).unwrap();
                ring.recvmsg_multi(fd, &bufs).unwrap();
            }
            let sender = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(30));
                let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                for msg in [&b"one"[..], b"two", b"three"] {
                    tx.send_to(msg, to).unwrap();
                }
            });
            let t0 = std::time::Instant::now();
            main.submit_and_wait(Duration::from_millis(400)).unwrap();
            let waited = t0.elapsed();
            sender.join().unwrap();
            let mut out = Vec::new();
            if unwaited {
                assert!(waited >= Duration::from_millis(350), "datagrams on the unwaited ring ended the wait after {waited:?}");
                main.drain(&mut out);
                assert!(out.is_empty(), "nothing on the main ring: {out:?}");
                // Give loopback delivery a moment, then reap without waiting.
                let deadline = std::time::Instant::now() + Duration::from_secs(5);
                while out.len() < 3 {
                    assert!(std::time::Instant::now() < deadline, "{} of 3 datagrams reaped within 5 s", out.len());
                    udp.reap(&mut out).unwrap();
                }
                let payloads: Vec<Vec<u8>> = out.iter().map(|c| bufs.datagram(c.buffer().unwrap(), c.result as usize).unwrap().payload.to_vec()).collect();
                assert_eq!(payloads, [&b"one"[..], b"two", b"three"]);
            } else {
                assert!(waited < Duration::from_millis(350), "datagrams on the main ring end its wait: {waited:?}");
            }
            drop(main);
            drop(udp);
            drop(bufs);
        }
    }

    fn recvmsg_roundtrip(fixed: bool) {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        crate::udp::enable_pktinfo(std::os::fd::AsRawFd::as_raw_fd(&rx)).unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut ring = Uring::new(8).unwrap();
        if fixed {
            ring.register_files(&[std::os::fd::AsRawFd::as_raw_fd(&rx)]).unwrap();
            assert!(ring.fixed_files());
        }
        let mut slot = RecvSlot::new_boxed();
        // SAFETY: slot is boxed and outlives the completion reaped below.
        unsafe { ring.recvmsg(std::os::fd::AsRawFd::as_raw_fd(&rx), &mut slot, 5).unwrap() };
        tx.send_to(b"hello", rx.local_addr().unwrap()).unwrap();
        let mut out = Vec::new();
        // submit_and_wait also returns Ok on its timeout or a signal, so
        // loop, but never past a deadline: a completion that never comes is
        // a failure, not a hang.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while out.is_empty() {
            assert!(std::time::Instant::now() < deadline, "no completion for the RecvMsg SQE within 5 s");
            ring.submit_and_wait(Duration::from_millis(100)).unwrap();
            ring.drain(&mut out);
        }
        assert_eq!(out[0].token, Token::UdpRecv(5));
        assert_eq!(out[0].result, 5);
        assert_eq!(&slot.buf[..5], b"hello");
        assert_eq!(slot.source().unwrap(), tx.local_addr().unwrap());
        assert_eq!(slot.local_ip(), Some(std::net::IpAddr::from([127, 0, 0, 1])));
    }
}
