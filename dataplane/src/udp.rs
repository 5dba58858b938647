//! The UDP send path, isolated behind one small API (quinn-udp's lesson):
//! `sendmmsg` of many messages per syscall, each message a GSO super-datagram
//! (UDP_SEGMENT) when the kernel and device take it, one datagram per
//! message otherwise, and IP_PKTINFO so every reply leaves from the address
//! its request arrived at (multi-homed hosts).
//!
//! Sends are plain syscalls, not io_uring SQEs: measured on this box
//! io_uring SENDMSG without registered buffers was slower than the syscall
//! for the same GSO messages (docs/decisions/001).

use std::io;
use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::RawFd;

use crate::batch::{GsoBatch, Transmit, MAX_MESSAGES};
use crate::sockaddr::{self, SockAddr};

/// Asks for the local address of each received datagram: IPV6_RECVPKTINFO
/// on an IPv6 socket (IPv4 datagrams on a dual-stack socket carry it
/// v4-mapped), IP_PKTINFO on an IPv4 one.
pub fn enable_pktinfo(fd: RawFd) -> io::Result<()> {
    if sockaddr::is_ipv6_socket(fd) {
        setsockopt_int(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)
    } else {
        setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)
    }
}

/// Sets DF on every datagram and ignores the path-MTU cache
/// (IP_PMTUDISC_PROBE). Media packets are sized under the MTU already
/// (`[webrtc] max_rtp_packet`), WebRTC stacks send with DF too, and a DF
/// datagram on an unconnected socket gets IP ID 0 instead of the kernel's
/// hashed ID generator (`__ip_select_ident`): one hash and one shared atomic
/// less per send. On an IPv6 socket both options are set: IPv4 destinations
/// of a dual-stack socket leave through the IPv4 path, which reads the
/// IPv4 one.
pub fn set_dont_fragment(fd: RawFd) -> io::Result<()> {
    if sockaddr::is_ipv6_socket(fd) {
        setsockopt_int(fd, libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER, libc::IPV6_PMTUDISC_PROBE)?;
    }
    setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, libc::IP_PMTUDISC_PROBE)
}

pub fn setsockopt_int(fd: RawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: passing a pointer to a live i32 and its exact size.
    let rc = unsafe {
        libc::setsockopt(fd, level, name, (&value as *const i32).cast(), std::mem::size_of::<i32>() as u32)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether the kernel accepts UDP_SEGMENT on this socket (probed once).
pub fn probe_gso(fd: RawFd) -> bool {
    let mut v: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as u32;
    // SAFETY: out-pointers to live locals with their sizes.
    unsafe { libc::getsockopt(fd, libc::SOL_UDP, libc::UDP_SEGMENT, (&mut v as *mut i32).cast(), &mut len) == 0 }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SendStats {
    pub datagrams: u64,
    pub bytes: u64,
    pub syscalls: u64,
    /// Entries sent: a GSO super-datagram or one datagram each.
    pub messages: u64,
    pub errors: u64,
    pub gso_fallbacks: u64,
}

/// The kernel-facing parts of one `mmsghdr` entry, kept together so the
/// pointers inside the header stay valid while the entry is in use.
struct Entry {
    addr: SockAddr,
    iov: libc::iovec,
    cmsg: [u64; 8],
}

impl Entry {
    /// `buf` to `addr`; the control buffer is filled by [`fill_msghdr`].
    fn new(addr: SockAddr, buf: &[u8]) -> Entry {
        Entry { addr, iov: libc::iovec { iov_base: buf.as_ptr() as *mut _, iov_len: buf.len() }, cmsg: [0; 8] }
    }
}

/// Points `hdr` at `e` (address, data) and writes the control messages for
/// `src` (IP_PKTINFO, or IPV6_PKTINFO on an IPv6 socket) and `segment`
/// (UDP_SEGMENT) into `e`.
fn fill_msghdr(hdr: &mut libc::msghdr, e: &mut Entry, src: Option<IpAddr>, ipv6_socket: bool, segment: Option<u16>) {
    // SAFETY: msghdr is plain C data; zero is its valid empty state.
    *hdr = unsafe { std::mem::zeroed() };
    hdr.msg_name = e.addr.as_mut_ptr();
    hdr.msg_namelen = e.addr.byte_len();
    hdr.msg_iov = &mut e.iov;
    hdr.msg_iovlen = 1;
    // An IPv4 socket cannot be told an IPv6 source: the kernel picks.
    let src = src.filter(|ip| ipv6_socket || ip.is_ipv4());
    let info_len = if ipv6_socket { std::mem::size_of::<libc::in6_pktinfo>() } else { std::mem::size_of::<libc::in_pktinfo>() };
    // SAFETY: CMSG_SPACE is a pure size computation.
    let pktinfo_space = unsafe { libc::CMSG_SPACE(info_len as u32) } as usize;
    // SAFETY: as above.
    let seg_space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<u16>() as u32) } as usize;
    let space = if src.is_some() { pktinfo_space } else { 0 } + if segment.is_some() { seg_space } else { 0 };
    if space == 0 {
        return;
    }
    hdr.msg_control = e.cmsg.as_mut_ptr().cast();
    hdr.msg_controllen = space;
    // SAFETY: the control buffer (64 bytes, u64-aligned) holds both headers
    // (at most 40 + 24 bytes); CMSG_* walk within msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(hdr);
        match src {
            Some(ip) if ipv6_socket => {
                (*c).cmsg_level = libc::IPPROTO_IPV6;
                (*c).cmsg_type = libc::IPV6_PKTINFO;
                (*c).cmsg_len = libc::CMSG_LEN(info_len as u32) as usize;
                let addr = match ip {
                    IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                    IpAddr::V6(v6) => v6,
                };
                let info = libc::in6_pktinfo { ipi6_addr: libc::in6_addr { s6_addr: addr.octets() }, ipi6_ifindex: 0 };
                std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut libc::in6_pktinfo, info);
                c = libc::CMSG_NXTHDR(hdr, c);
            }
            Some(IpAddr::V4(ip)) => {
                (*c).cmsg_level = libc::IPPROTO_IP;
                (*c).cmsg_type = libc::IP_PKTINFO;
                (*c).cmsg_len = libc::CMSG_LEN(info_len as u32) as usize;
                let info = libc::in_pktinfo {
                    ipi_ifindex: 0,
                    ipi_spec_dst: libc::in_addr { s_addr: u32::from(ip).to_be() },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut libc::in_pktinfo, info);
                c = libc::CMSG_NXTHDR(hdr, c);
            }
            _ => {}
        }
        if let Some(seg) = segment {
            (*c).cmsg_level = libc::SOL_UDP;
            (*c).cmsg_type = libc::UDP_SEGMENT;
            (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as u32) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut u16, seg);
        }
    }
}

/// The shard's UDP port as two sockets on one address: `recv` is the one
/// the event loop waits on, `send` only sends. Why two: every datagram the
/// kernel frees (at once on loopback, at TX completion on a NIC) wakes the
/// sending socket's wait queue (`sock_wfree` → write-space wake-up); with
/// io_uring's receive poll parked on that queue, that wake-up cost 17 % of
/// the shard core at 1,000 viewers (perf, loopback). A send-only socket has
/// no waiter, so the wake-up is a no-op. Both sockets are in one
/// SO_REUSEPORT group whose classic BPF program sends every incoming
/// datagram to the first socket, so the send socket never receives.
pub struct UdpPair {
    pub recv: std::net::UdpSocket,
    pub send: std::net::UdpSocket,
}

impl UdpPair {
    /// Binds both sockets to `addr` with the given buffer sizes; `[::]`
    /// takes IPv4 too (IPV6_V6ONLY off: one port, one receive ring and one
    /// GSO send path for both families).
    pub fn bind(addr: std::net::SocketAddr, sndbuf: usize, rcvbuf: usize) -> io::Result<UdpPair> {
        let open = || -> io::Result<socket2::Socket> {
            let s = rts_common::net::socket_for(addr, socket2::Type::DGRAM)?;
            s.set_reuse_port(true)?;
            s.set_nonblocking(true)?;
            Ok(s)
        };
        // SO_REUSEPORT would let a second server (same user) bind the port
        // too and silently get nothing: probe with a plain socket first so a
        // taken port fails as it always did (EADDRINUSE).
        if addr.port() != 0 {
            let probe = rts_common::net::socket_for(addr, socket2::Type::DGRAM)?;
            probe.bind(&addr.into())?;
        }
        let recv = open()?;
        let _ = recv.set_recv_buffer_size(rcvbuf);
        recv.bind(&addr.into())?;
        // An ephemeral port (0) must be shared: bind the twin to what the
        // first one got.
        let bound = recv.local_addr()?;
        let send = open()?;
        let _ = send.set_send_buffer_size(sndbuf);
        // The twin gets nothing; keep its receive buffer minimal.
        let _ = send.set_recv_buffer_size(0);
        // Without the steering program the twin would take part of the
        // input; then send from the receive socket itself (a dup of it),
        // as before the twin existed: slower under load, same behaviour.
        if let Err(e) = attach_first_socket_program(std::os::fd::AsRawFd::as_raw_fd(&recv)) {
            tracing::warn!(error = %e, "SO_ATTACH_REUSEPORT_CBPF refused; sending from the receive socket");
            let _ = recv.set_send_buffer_size(sndbuf);
            let recv: std::net::UdpSocket = recv.into();
            let send = recv.try_clone()?;
            return Ok(UdpPair { recv, send });
        }
        send.bind(&bound)?;
        Ok(UdpPair { recv: recv.into(), send: send.into() })
    }
}

/// SO_ATTACH_REUSEPORT_CBPF with `ret 0`: the reuseport group always picks
/// its first socket (the receive socket, bound first).
fn attach_first_socket_program(fd: RawFd) -> io::Result<()> {
    let mut code = [libc::sock_filter { code: (libc::BPF_RET | libc::BPF_K) as u16, jt: 0, jf: 0, k: 0 }];
    let prog = libc::sock_fprog { len: code.len() as u16, filter: code.as_mut_ptr() };
    // SAFETY: passes a pointer to a live sock_fprog (and its one-instruction
    // program, copied by the kernel during the call) with its exact size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            (&prog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as u32,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A UDP socket's send side.
pub struct UdpSender {
    fd: RawFd,
    gso: bool,
    /// An AF_INET6 socket (dual-stack unless bound to one IPv6 address).
    ipv6: bool,
    pub stats: SendStats,
}

impl UdpSender {
    /// Takes the socket's send side; sets DF on it ([`set_dont_fragment`]).
    pub fn new(fd: RawFd, allow_gso: bool) -> UdpSender {
        if let Err(e) = set_dont_fragment(fd) {
            tracing::debug!(error = %e, "IP_MTU_DISCOVER not set");
        }
        UdpSender { fd, gso: allow_gso && probe_gso(fd), ipv6: sockaddr::is_ipv6_socket(fd), stats: SendStats::default() }
    }

    pub fn gso_enabled(&self) -> bool {
        self.gso
    }

    /// Sends `buf` to `dst` as `buf.len() / segment` datagrams (the last may
    /// be shorter). `src` picks the source address (IP_PKTINFO). Errors are
    /// counted, not returned: a viewer's full socket buffer must not stop the
    /// fan-out to the others.
    pub fn send(&mut self, dst: SocketAddr, src: Option<IpAddr>, buf: &[u8], segment: usize) {
        self.send_many([Transmit { dst, src, contents: buf, segment }].into_iter());
    }

    /// Sends every closed message of `batch` and empties it.
    pub fn send_batch(&mut self, batch: &mut GsoBatch) {
        if !batch.is_empty() {
            self.send_many(batch.transmits());
        }
        batch.clear();
    }

    /// Sends many messages with as few `sendmmsg` calls as fit
    /// ([`MAX_MESSAGES`] per call). With GSO each message is one entry;
    /// without it (forced off, or refused at runtime) each datagram is.
    /// A failed entry is counted and skipped; the rest still go out.
    pub fn send_many<'a>(&mut self, transmits: impl Iterator<Item = Transmit<'a>>) {
        let mut transmits = transmits.filter(|t| !t.contents.is_empty()).peekable();
        // Offset into the front transmit when it is being sent datagram by
        // datagram.
        let mut offset = 0usize;
        let mut hdrs: [MaybeUninit<libc::mmsghdr>; MAX_MESSAGES] = [const { MaybeUninit::uninit() }; MAX_MESSAGES];
        let mut entries: [MaybeUninit<Entry>; MAX_MESSAGES] = [const { MaybeUninit::uninit() }; MAX_MESSAGES];
        // Per entry: the transmit it came from (for the GSO fallback), its
        // datagram count and whether it carries UDP_SEGMENT.
        let mut meta: [MaybeUninit<(Transmit<'a>, usize, bool)>; MAX_MESSAGES] = [const { MaybeUninit::uninit() }; MAX_MESSAGES];
        while transmits.peek().is_some() {
            let mut n = 0;
            while n < MAX_MESSAGES {
                let Some(t) = transmits.peek().copied() else { break };
                // An IPv6 viewer on an IPv4-only socket: unreachable, counted.
                let Some(addr) = SockAddr::new(t.dst, self.ipv6) else {
                    self.stats.errors += 1;
                    transmits.next();
                    offset = 0;
                    continue;
                };
                let seg = t.segment.max(1);
                let count = t.contents.len().div_ceil(seg);
                let (chunk, gso_seg) = if count > 1 && self.gso {
                    (t.contents, Some(seg as u16))
                } else {
                    let end = (offset + seg).min(t.contents.len());
                    (&t.contents[offset..end], None)
                };
                let e = entries[n].write(Entry::new(addr, chunk));
                // SAFETY: mmsghdr is plain C data; zero is a valid state.
                let h = hdrs[n].write(unsafe { std::mem::zeroed() });
                fill_msghdr(&mut h.msg_hdr, e, t.src, self.ipv6, gso_seg);
                meta[n].write((t, if gso_seg.is_some() { count } else { 1 }, gso_seg.is_some()));
                n += 1;
                if gso_seg.is_some() || offset + chunk.len() >= t.contents.len() {
                    transmits.next();
                    offset = 0;
                } else {
                    offset += chunk.len();
                }
            }
            let mut done = 0;
            while done < n {
                self.stats.syscalls += 1;
                // SAFETY: entries [done, n) were written above and their
                // pointers refer to `entries` and to the transmits' buffers,
                // all alive for this call.
                let rc = unsafe {
                    libc::sendmmsg(self.fd, hdrs[done..n].as_mut_ptr().cast(), (n - done) as u32, libc::MSG_DONTWAIT)
                };
                if rc > 0 {
                    for k in done..done + rc as usize {
                        // SAFETY: entry k and its meta were written above.
                        let (len, count) = unsafe { (entries[k].assume_init_ref().iov.iov_len, meta[k].assume_init_ref().1) };
                        self.stats.datagrams += count as u64;
                        self.stats.bytes += len as u64;
                        self.stats.messages += 1;
                    }
                    done += rc as usize;
                    continue;
                }
                let err = io::Error::last_os_error();
                // SAFETY: meta[done] was written above.
                let (t, _, gso_entry) = unsafe { *meta[done].assume_init_ref() };
                match err.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    // The device cannot segment (e.g. no checksum offload):
                    // GSO is off for good on this socket; this message goes
                    // out datagram by datagram, later ones are built so.
                    Some(libc::EIO) | Some(libc::EINVAL) if gso_entry => {
                        if self.gso {
                            self.gso = false;
                            self.stats.gso_fallbacks += 1;
                            tracing::warn!(error = %err, "UDP GSO send failed; falling back to one datagram per message");
                        }
                        self.send_many(std::iter::once(t));
                    }
                    _ => self.stats.errors += 1,
                }
                done += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    fn push(b: &mut GsoBatch, len: usize, fill: u8) {
        let s = b.spare(1500);
        s[..len].fill(fill);
        b.commit(len);
    }


    fn loopback_roundtrip(allow_gso: bool) {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut sender = UdpSender::new(tx.as_raw_fd(), allow_gso);
        assert_eq!(sender.gso_enabled(), allow_gso && probe_gso(tx.as_raw_fd()));
        let dst = rx.local_addr().unwrap();
        let mut b = GsoBatch::new(65536, 1);
        for (i, len) in [1200usize, 1200, 1200, 700].iter().enumerate() {
            push(&mut b, *len, i as u8);
        }
        b.end_message(dst, Some(IpAddr::from([127, 0, 0, 1])));
        sender.send_batch(&mut b);
        let mut got = Vec::new();
        let mut buf = [0u8; 2000];
        for _ in 0..4 {
            let (n, from) = rx.recv_from(&mut buf).unwrap();
            assert_eq!(from, tx.local_addr().unwrap());
            got.push((n, buf[0]));
        }
        assert_eq!(got, vec![(1200, 0), (1200, 1), (1200, 2), (700, 3)]);
        assert_eq!(sender.stats.datagrams, 4);
        // One sendmmsg either way: one GSO entry, or four datagram entries.
        assert_eq!(sender.stats.syscalls, 1);
    }

    /// Many viewers' messages in one batch leave in one `sendmmsg`, each to
    /// its own destination with its own segment size.
    #[test]
    fn batch_of_messages_to_many_destinations() {
        let rx: Vec<UdpSocket> = (0..3).map(|_| UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut sender = UdpSender::new(tx.as_raw_fd(), true);
        let mut b = GsoBatch::new(256 << 10, MAX_MESSAGES);
        for (i, r) in rx.iter().enumerate() {
            let dst = r.local_addr().unwrap();
            // Viewer i gets i+1 packets of 1000 + i bytes.
            for k in 0..=i {
                push(&mut b, 1000 + i, (i * 10 + k) as u8);
            }
            b.end_message(dst, None);
        }
        assert_eq!(b.messages(), 3);
        sender.send_batch(&mut b);
        assert!(b.is_empty());
        assert_eq!(sender.stats.syscalls, 1);
        assert_eq!(sender.stats.datagrams, 6);
        for (i, r) in rx.iter().enumerate() {
            r.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
            let mut buf = [0u8; 2000];
            for k in 0..=i {
                let (n, _) = r.recv_from(&mut buf).unwrap();
                assert_eq!((n, buf[0]), (1000 + i, (i * 10 + k) as u8));
            }
        }
    }

    /// Everything sent to the pair's port arrives on `recv`, none on `send`;
    /// what `send` sends comes from the shared port.
    #[test]
    fn pair_receives_only_on_the_first_socket() {
        let pair = UdpPair::bind("127.0.0.1:0".parse().unwrap(), 1 << 20, 1 << 20).unwrap();
        let port = pair.recv.local_addr().unwrap();
        assert_eq!(pair.send.local_addr().unwrap(), port);
        pair.recv.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        // Many source ports: reuseport hashing would spread them.
        let peers: Vec<UdpSocket> = (0..32).map(|_| UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
        for p in &peers {
            p.send_to(b"x", port).unwrap();
        }
        let mut buf = [0u8; 16];
        for _ in 0..peers.len() {
            pair.recv.recv_from(&mut buf).unwrap();
        }
        pair.send.set_nonblocking(true).unwrap();
        assert!(pair.send.recv_from(&mut buf).is_err(), "the send socket received a datagram");
        peers[0].set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        pair.send.send_to(b"y", peers[0].local_addr().unwrap()).unwrap();
        let (_, from) = peers[0].recv_from(&mut buf).unwrap();
        assert_eq!(from, port);
        // A second server on the same port is refused, not silently starved.
        let err = UdpPair::bind(port, 1 << 16, 1 << 16).err().expect("port is taken");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }


    /// A dual-stack pair (bound to `::`) receives from IPv4 and IPv6 peers
    /// on one socket and sends GSO batches to both, from the address each
    /// asked (IPV6_PKTINFO, v4-mapped for IPv4), through one `sendmmsg`.
    #[test]
    fn dual_stack_pair_serves_both_families() {
        let pair = UdpPair::bind("[::]:0".parse().unwrap(), 1 << 20, 1 << 20).unwrap();
        let port = pair.recv.local_addr().unwrap().port();
        enable_pktinfo(pair.recv.as_raw_fd()).unwrap();
        let v4 = UdpSocket::bind("127.0.0.1:0").unwrap();
        let v6 = UdpSocket::bind("[::1]:0").unwrap();
        v4.send_to(b"four", ("127.0.0.1", port)).unwrap();
        v6.send_to(b"six", ("::1", port)).unwrap();
        pair.recv.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 16];
        for _ in 0..2 {
            let (n, from) = pair.recv.recv_from(&mut buf).unwrap();
            got.push((crate::sockaddr::canonical(from), buf[..n].to_vec()));
        }
        got.sort();
        assert_eq!(got, vec![(v4.local_addr().unwrap(), b"four".to_vec()), (v6.local_addr().unwrap(), b"six".to_vec())]);

        let mut sender = UdpSender::new(pair.send.as_raw_fd(), true);
        let mut b = GsoBatch::new(65536, 4);
        for (peer, src, fill) in [(v4.local_addr().unwrap(), IpAddr::from([127, 0, 0, 1]), 4u8), (v6.local_addr().unwrap(), "::1".parse().unwrap(), 6)] {
            push(&mut b, 1200, fill);
            push(&mut b, 1200, fill);
            push(&mut b, 500, fill);
            b.end_message(peer, Some(src));
        }
        sender.send_batch(&mut b);
        assert_eq!((sender.stats.syscalls, sender.stats.datagrams, sender.stats.errors), (1, 6, 0));
        for (rx, fill, from) in [(&v4, 4u8, SocketAddr::from(([127, 0, 0, 1], port))), (&v6, 6, SocketAddr::new("::1".parse().unwrap(), port))] {
            rx.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
            let mut lens = Vec::new();
            let mut big = [0u8; 2000];
            for _ in 0..3 {
                let (n, src) = rx.recv_from(&mut big).unwrap();
                assert_eq!(big[0], fill);
                assert_eq!(src, from);
                lens.push(n);
            }
            assert_eq!(lens, vec![1200, 1200, 500]);
        }
    }

    /// An IPv4 socket asked to reach an IPv6 viewer counts an error and
    /// still sends the rest of the batch.
    #[test]
    fn ipv4_socket_skips_ipv6_destinations() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut sender = UdpSender::new(tx.as_raw_fd(), true);
        let mut b = GsoBatch::new(65536, 4);
        push(&mut b, 100, 1);
        b.end_message("[::1]:9".parse().unwrap(), None);
        push(&mut b, 100, 2);
        b.end_message(rx.local_addr().unwrap(), Some("::1".parse().unwrap()));
        sender.send_batch(&mut b);
        assert_eq!((sender.stats.errors, sender.stats.datagrams), (1, 1));
        rx.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 200];
        let (n, _) = rx.recv_from(&mut buf).unwrap();
        assert_eq!((n, buf[0]), (100, 2));
    }

    #[test]
    fn gso_send_splits_into_datagrams() {
        loopback_roundtrip(true);
    }

    #[test]
    fn forced_fallback_sends_same_datagrams() {
        loopback_roundtrip(false);
    }
}
