//! The UDP send path, isolated behind one small API (quinn-udp's lesson):
//! `sendmsg` with UDP_SEGMENT (GSO) when the kernel and device take it, one
//! datagram per call otherwise, and IP_PKTINFO so every reply leaves from
//! the address its request arrived at (multi-homed hosts).
//!
//! Sends are plain `sendmsg` syscalls, not io_uring SQEs: measured on this
//! box io_uring SENDMSG without registered buffers was 10–15 % slower than
//! the syscall for the same GSO messages (docs/decisions/001).

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::RawFd;

/// Kernel limit on segments per GSO send (UDP_MAX_SEGMENTS).
pub const MAX_GSO_SEGMENTS: usize = 64;
/// Keep a GSO super-datagram under the 64 KiB IP limit.
pub const MAX_GSO_BYTES: usize = 65_000;

pub fn enable_pktinfo(fd: RawFd) -> io::Result<()> {
    setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)
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
    pub errors: u64,
    pub gso_fallbacks: u64,
}

/// A UDP socket's send side.
pub struct UdpSender {
    fd: RawFd,
    gso: bool,
    pub stats: SendStats,
}

impl UdpSender {
    pub fn new(fd: RawFd, allow_gso: bool) -> UdpSender {
        UdpSender { fd, gso: allow_gso && probe_gso(fd), stats: SendStats::default() }
    }

    pub fn gso_enabled(&self) -> bool {
        self.gso
    }

    /// Sends `buf` to `dst` as `buf.len() / segment` datagrams (the last may
    /// be shorter). `src` picks the source address (IP_PKTINFO). Errors are
    /// counted, not returned: a viewer's full socket buffer must not stop the
    /// fan-out to the others.
    pub fn send(&mut self, dst: SocketAddrV4, src: Option<Ipv4Addr>, buf: &[u8], segment: usize) {
        if buf.is_empty() {
            return;
        }
        let count = buf.len().div_ceil(segment.max(1));
        if count > 1 && self.gso {
            match self.sendmsg(dst, src, buf, Some(segment as u16)) {
                Ok(()) => {
                    self.stats.datagrams += count as u64;
                    self.stats.bytes += buf.len() as u64;
                    return;
                }
                // The device cannot segment (e.g. no checksum offload): GSO
                // is off for good on this socket, send one by one instead.
                Err(e) if matches!(e.raw_os_error(), Some(libc::EIO) | Some(libc::EINVAL)) => {
                    self.gso = false;
                    self.stats.gso_fallbacks += 1;
                    tracing::warn!(error = %e, "UDP GSO send failed; falling back to one datagram per sendmsg");
                }
                Err(_) => {
                    self.stats.errors += 1;
                    return;
                }
            }
        }
        for chunk in buf.chunks(segment.max(1)) {
            match self.sendmsg(dst, src, chunk, None) {
                Ok(()) => {
                    self.stats.datagrams += 1;
                    self.stats.bytes += chunk.len() as u64;
                }
                Err(_) => self.stats.errors += 1,
            }
        }
    }

    fn sendmsg(&mut self, dst: SocketAddrV4, src: Option<Ipv4Addr>, buf: &[u8], segment: Option<u16>) -> io::Result<()> {
        self.stats.syscalls += 1;
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as u16,
            sin_port: dst.port().to_be(),
            sin_addr: libc::in_addr { s_addr: u32::from(*dst.ip()).to_be() },
            sin_zero: [0; 8],
        };
        let mut iov = libc::iovec { iov_base: buf.as_ptr() as *mut _, iov_len: buf.len() };
        let mut cmsg_buf = [0u64; 8];
        // SAFETY: msghdr is plain C data; zero-initialised then filled.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&sin as *const libc::sockaddr_in as *mut libc::sockaddr_in).cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        let mut space = 0usize;
        // SAFETY: CMSG_SPACE is a pure size computation.
        let pktinfo_space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<libc::in_pktinfo>() as u32) } as usize;
        // SAFETY: as above.
        let seg_space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<u16>() as u32) } as usize;
        if src.is_some() {
            space += pktinfo_space;
        }
        if segment.is_some() {
            space += seg_space;
        }
        if space > 0 {
            msg.msg_control = cmsg_buf.as_mut_ptr().cast();
            msg.msg_controllen = space;
            // SAFETY: the control buffer (64 bytes, u64-aligned) holds both
            // headers (32 + 24 bytes); CMSG_* walk within msg_controllen.
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(&msg);
                if let Some(ip) = src {
                    (*c).cmsg_level = libc::IPPROTO_IP;
                    (*c).cmsg_type = libc::IP_PKTINFO;
                    (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::in_pktinfo>() as u32) as usize;
                    let info = libc::in_pktinfo {
                        ipi_ifindex: 0,
                        ipi_spec_dst: libc::in_addr { s_addr: u32::from(ip).to_be() },
                        ipi_addr: libc::in_addr { s_addr: 0 },
                    };
                    std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut libc::in_pktinfo, info);
                    c = libc::CMSG_NXTHDR(&msg, c);
                }
                if let Some(seg) = segment {
                    (*c).cmsg_level = libc::SOL_UDP;
                    (*c).cmsg_type = libc::UDP_SEGMENT;
                    (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as u32) as usize;
                    std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut u16, seg);
                }
            }
        }
        // SAFETY: msg points at live locals for the duration of the call.
        let rc = unsafe { libc::sendmsg(self.fd, &msg, libc::MSG_DONTWAIT) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

/// Packs one viewer's protected packets into GSO super-datagrams: a batch
/// holds packets of one size, optionally ended by one shorter packet (the
/// kernel's rule for UDP_SEGMENT).
pub struct GsoBatch {
    /// Fixed, zeroed once: `spare` hands out slices without re-zeroing
    /// (the SRTP output overwrites them anyway).
    buf: Box<[u8]>,
    len: usize,
    segment: usize,
    count: usize,
    closed: bool,
}

impl GsoBatch {
    pub fn with_capacity(cap: usize) -> GsoBatch {
        GsoBatch { buf: vec![0u8; cap.max(MAX_GSO_BYTES + 2048)].into_boxed_slice(), len: 0, segment: 0, count: 0, closed: false }
    }

    /// Whether a packet of `len` bytes can join the current batch. If not,
    /// the caller must flush first.
    pub fn fits(&self, len: usize) -> bool {
        if self.count == 0 {
            return len <= self.buf.len();
        }
        !self.closed
            && self.count < MAX_GSO_SEGMENTS
            && self.len + len <= MAX_GSO_BYTES
            && len <= self.segment
    }

    /// Room for one more packet of up to `max_len` bytes; call
    /// [`GsoBatch::commit`] with the length written (or `rollback`).
    pub fn spare(&mut self, max_len: usize) -> &mut [u8] {
        let end = (self.len + max_len).min(self.buf.len());
        &mut self.buf[self.len..end]
    }

    /// Keeps `len` bytes of the last `spare` area as a packet.
    pub fn commit(&mut self, _spare_len: usize, len: usize) {
        self.len = (self.len + len).min(self.buf.len());
        if self.count == 0 {
            self.segment = len;
        } else if len < self.segment {
            self.closed = true;
        }
        self.count += 1;
    }

    /// Discards an unused `spare` area (nothing was committed).
    pub fn rollback(&mut self, _spare_len: usize) {}

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn flush(&mut self, sender: &mut UdpSender, dst: SocketAddrV4, src: Option<Ipv4Addr>) {
        if self.count > 0 {
            sender.send(dst, src, &self.buf[..self.len], self.segment);
        }
        self.len = 0;
        self.count = 0;
        self.segment = 0;
        self.closed = false;
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
        b.commit(1500, len);
    }

    #[test]
    fn batch_rules() {
        let mut b = GsoBatch::with_capacity(65536);
        assert!(b.fits(1000));
        push(&mut b, 1000, 1);
        assert!(b.fits(1000));
        push(&mut b, 1000, 2);
        assert!(!b.fits(1001), "larger packet must start a new batch");
        assert!(b.fits(300));
        push(&mut b, 300, 3);
        assert!(!b.fits(300), "a short packet closes the batch");
        assert_eq!(b.len(), 2300);
    }

    fn loopback_roundtrip(allow_gso: bool) {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut sender = UdpSender::new(tx.as_raw_fd(), allow_gso);
        assert_eq!(sender.gso_enabled(), allow_gso && probe_gso(tx.as_raw_fd()));
        let dst = match rx.local_addr().unwrap() {
            std::net::SocketAddr::V4(a) => a,
            _ => unreachable!(),
        };
        let mut b = GsoBatch::with_capacity(65536);
        for (i, len) in [1200usize, 1200, 1200, 700].iter().enumerate() {
            push(&mut b, *len, i as u8);
        }
        b.flush(&mut sender, dst, Some(Ipv4Addr::LOCALHOST));
        let mut got = Vec::new();
        let mut buf = [0u8; 2000];
        for _ in 0..4 {
            let (n, from) = rx.recv_from(&mut buf).unwrap();
            assert_eq!(from, tx.local_addr().unwrap());
            got.push((n, buf[0]));
        }
        assert_eq!(got, vec![(1200, 0), (1200, 1), (1200, 2), (700, 3)]);
        assert_eq!(sender.stats.datagrams, 4);
        assert_eq!(sender.stats.syscalls, if sender.gso_enabled() { 1 } else { 4 });
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
