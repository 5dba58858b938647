//! The crate's only `unsafe` code: two thin libc wrappers the hot receive
//! path needs and std does not offer. `recvmmsg(2)` takes every queued
//! datagram of one socket in one system call (a frame's packets usually
//! arrive together) and, with small slots and `MSG_TRUNC`, copies only the
//! head of each datagram while still reporting its full length (light
//! viewers read nothing past the RTP header). `SO_RCVBUFFORCE` gives each
//! viewer socket room for a keyframe burst between two wake-ups. `UDP_GRO`
//! lets the kernel hand a sender's GSO super-datagram (a frame's packets)
//! to us whole, one receive for the frame instead of one per packet.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, RawFd};

/// Reusable buffers for one `recvmmsg` call: `n` slots of `slot` bytes.
/// Allocated once per worker; nothing is allocated per datagram.
pub struct RecvBatch {
    bufs: Box<[u8]>,
    slot: usize,
    lens: Vec<usize>,
    full: Vec<usize>,
    /// Segment size of a coalesced (UDP_GRO) datagram, 0 for a plain one.
    segments: Vec<usize>,
    iov: Vec<libc::iovec>,
    /// Room for the UDP_GRO control message of each slot.
    cmsgs: Vec<[u64; 4]>,
    hdrs: Vec<libc::mmsghdr>,
}

/// Asks the kernel to deliver GSO super-datagrams unsegmented (and to
/// coalesce on receive where it can), with the segment size in a
/// control message. Returns whether it took.
pub fn enable_gro(fd: &impl AsRawFd) -> bool {
    let v: libc::c_int = 1;
    // SAFETY: passes a pointer to a live c_int and its exact size.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_GRO,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
    }
}

impl RecvBatch {
    /// `n` datagrams per call; only the first `slot` bytes of each are copied
    /// (see [`full_len`](Self::full_len) for the datagram's real size).
    pub fn new(n: usize, slot: usize) -> RecvBatch {
        let n = n.max(1);
        RecvBatch {
            bufs: vec![0u8; n * slot].into_boxed_slice(),
            slot,
            lens: vec![0; n],
            full: vec![0; n],
            segments: vec![0; n],
            cmsgs: vec![[0; 4]; n],
            iov: (0..n).map(|_| libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }).collect(),
            // SAFETY: mmsghdr is a plain C struct; all-zero is a valid value (null pointers, zero lengths).
            hdrs: (0..n).map(|_| unsafe { std::mem::zeroed() }).collect(),
        }
    }

    /// Slots per call.
    pub fn capacity(&self) -> usize {
        self.lens.len()
    }

    /// Receives up to [`capacity`](Self::capacity) datagrams without blocking.
    /// `Err(WouldBlock)` when none is queued; `Ok(k)` with `k < capacity`
    /// means the queue was drained.
    pub fn recv(&mut self, fd: &impl AsRawFd) -> io::Result<usize> {
        self.recv_fd(fd.as_raw_fd())
    }

    fn recv_fd(&mut self, fd: RawFd) -> io::Result<usize> {
        let n = self.lens.len();
        for i in 0..n {
            self.iov[i] = libc::iovec { iov_base: self.bufs[i * self.slot..].as_mut_ptr().cast(), iov_len: self.slot };
            // SAFETY: as in `new`, all-zero is valid; then point it at this slot's iovec.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_iov = &mut self.iov[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = self.cmsgs[i].as_mut_ptr().cast();
            h.msg_hdr.msg_controllen = std::mem::size_of::<[u64; 4]>();
            self.hdrs[i] = h;
        }
        // SAFETY: `hdrs` holds `n` initialised headers whose single iovec each
        // points at a distinct `slot`-byte region of `bufs`; all stay alive and
        // unaliased for the call, as do the slots' control buffers. No
        // address buffers are passed.
        // MSG_TRUNC: each msg_len is the datagram's real length even when cut.
        let flags = libc::MSG_DONTWAIT | libc::MSG_TRUNC;
        let r = unsafe { libc::recvmmsg(fd, self.hdrs.as_mut_ptr(), n as libc::c_uint, flags, std::ptr::null_mut()) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        let k = r as usize;
        for i in 0..k {
            self.full[i] = self.hdrs[i].msg_len as usize;
            self.lens[i] = self.full[i].min(self.slot);
            self.segments[i] = gro_segment(&self.hdrs[i].msg_hdr);
        }
        Ok(k)
    }

    /// Datagram `i` of the last [`recv`](Self::recv) (its first `slot`
    /// bytes), mutable (verified viewers decrypt in place), with its real length.
    pub fn get_mut(&mut self, i: usize) -> (&mut [u8], usize) {
        let start = i * self.slot;
        (&mut self.bufs[start..start + self.lens[i]], self.full[i])
    }

    /// The segment size when datagram `i` is several coalesced datagrams
    /// (UDP_GRO): each is `segment` bytes, the last may be shorter.
    pub fn segment(&self, i: usize) -> Option<usize> {
        Some(self.segments[i]).filter(|&s| s > 0 && s < self.full[i])
    }
}

/// The UDP_GRO segment size in a received message's control data, 0 if none.
fn gro_segment(msg: &libc::msghdr) -> usize {
    // SAFETY: walks the control buffer the kernel filled, within
    // msg_controllen, with the CMSG_* helpers; reads an int payload.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == libc::UDP_GRO {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::c_int);
                return usize::try_from(v).unwrap_or(0);
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    0
}

/// Sets the socket's receive buffer to `bytes`, past `net.core.rmem_max`
/// when we may (`SO_RCVBUFFORCE` needs CAP_NET_ADMIN), else as far as allowed.
pub fn set_recv_buffer(fd: &impl AsRawFd, bytes: usize) -> io::Result<()> {
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    let set = |opt| {
        // SAFETY: passes a pointer to a live c_int and its exact size.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        }
    };
    if set(libc::SO_RCVBUFFORCE) == 0 || set(libc::SO_RCVBUF) == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recvmmsg_batches_and_drains() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        a.connect(b.local_addr().unwrap()).unwrap();
        set_recv_buffer(&b, 1 << 20).unwrap();
        let mut batch = RecvBatch::new(4, 64);
        assert_eq!(batch.recv(&b).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        for i in 0..6u8 {
            a.send(&vec![i; 10 + usize::from(i)]).unwrap();
        }
        a.send(&[9u8; 100]).unwrap(); // truncated to the slot
        assert_eq!(batch.recv(&b).unwrap(), 4);
        for i in 0..4 {
            let (d, full) = batch.get_mut(i);
            assert_eq!((d.len(), d[0], full), (10 + i, i as u8, 10 + i));
        }
        assert_eq!(batch.recv(&b).unwrap(), 3);
        assert_eq!((batch.get_mut(0).0[0], batch.get_mut(1).0[0]), (4, 5));
        let (d, full) = batch.get_mut(2);
        assert_eq!((d.len(), d[63], full), (64, 9, 100), "cut to the slot, real length kept");
        assert_eq!(batch.recv(&b).unwrap_err().kind(), io::ErrorKind::WouldBlock);
    }

    /// A GSO send of 3 x 1000 + 400 bytes arrives whole on a UDP_GRO socket,
    /// with its segment size.
    #[test]
    fn gro_delivers_gso_sends_whole() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(enable_gro(&b));
        let payload: Vec<u8> = (0..3400u32).map(|i| (i / 1000) as u8).collect();
        let seg: u16 = 1000;
        let dst = match b.local_addr().unwrap() {
            std::net::SocketAddr::V4(v) => v,
            _ => unreachable!(),
        };
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as u16,
            sin_port: dst.port().to_be(),
            sin_addr: libc::in_addr { s_addr: u32::from(*dst.ip()).to_be() },
            sin_zero: [0; 8],
        };
        let mut iov = libc::iovec { iov_base: payload.as_ptr() as *mut _, iov_len: payload.len() };
        let mut cbuf = [0u64; 4];
        // SAFETY: a msghdr over live locals; one UDP_SEGMENT cmsg in a 32-byte buffer.
        let rc = unsafe {
            let mut m: libc::msghdr = std::mem::zeroed();
            m.msg_name = (&sin as *const libc::sockaddr_in as *mut libc::sockaddr_in).cast();
            m.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
            m.msg_iov = &mut iov;
            m.msg_iovlen = 1;
            m.msg_control = cbuf.as_mut_ptr().cast();
            m.msg_controllen = libc::CMSG_SPACE(2) as usize;
            let c = libc::CMSG_FIRSTHDR(&m);
            (*c).cmsg_level = libc::SOL_UDP;
            (*c).cmsg_type = libc::UDP_SEGMENT;
            (*c).cmsg_len = libc::CMSG_LEN(2) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut u16, seg);
            libc::sendmsg(a.as_raw_fd(), &m, 0)
        };
        if rc < 0 {
            eprintln!("no UDP GSO here; skipping");
            return;
        }
        b.set_nonblocking(true).unwrap();
        let mut batch = RecvBatch::new(4, 65536);
        let mut got = 0;
        for _ in 0..1000 {
            match batch.recv(&b) {
                Ok(k) => {
                    got = k;
                    break;
                }
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(1)),
            }
        }
        assert_eq!(got, 1, "one coalesced datagram");
        assert_eq!(batch.segment(0), Some(1000));
        let (d, full) = batch.get_mut(0);
        assert_eq!((d.len(), full, d[0], d[3399]), (3400, 3400, 0, 3));
    }
}
