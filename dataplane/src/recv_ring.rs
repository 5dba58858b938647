//! UDP input through one multishot `recvmsg` and a ring of provided
//! buffers (io_uring, Linux 6.0+): the kernel keeps the socket's poll armed
//! and picks a free buffer for each datagram itself, so a datagram costs
//! one completion, not a completion plus a new SQE, a failed non-blocking
//! receive and a poll re-arm (what a re-armed one-shot `recvmsg` costs).
//! At 5 % loss every viewer sends ~10 NACK datagrams a second; that
//! per-datagram cost was most of what repair added to the server's CPU
//! (docs/performance.md, issue 12).
//!
//! Layout of each provided buffer, filled by the kernel:
//! `[io_uring_recvmsg_out (16)] [name (NAME_LEN)] [control (CONTROL_LEN)] [payload]`.
//! The shard hands the payload to the core in place and gives the buffer
//! back at once, so the ring's size bounds the datagrams one wait returns.

use std::alloc::{self, Layout};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};

/// Buffers in the ring (a power of two, as the kernel requires).
pub const RING_ENTRIES: u16 = 256;
/// Fixed room for the source address (a `sockaddr_in6` fits; 8-aligned so
/// the control data after it is aligned too).
const NAME_LEN: usize = 32;
/// Room for the control messages asked for (IP_PKTINFO: 32 bytes,
/// IPV6_PKTINFO: 40).
const CONTROL_LEN: usize = 64;
const HEADER_LEN: usize = 16;
const PAYLOAD_OFFSET: usize = HEADER_LEN + NAME_LEN + CONTROL_LEN;
/// Largest datagram kept whole; longer ones are truncated and dropped.
pub const PAYLOAD_LEN: usize = 2048;
const BUF_LEN: usize = PAYLOAD_OFFSET + PAYLOAD_LEN;
const ENTRY_LEN: usize = 16; // struct io_uring_buf
const PAGE: usize = 4096;

/// The buffer group id the shard's multishot receive selects from.
pub const GROUP: u16 = 0;

/// A provided-buffer ring and its buffers. The kernel holds pointers into
/// both while the ring is registered: the owner keeps it alive (and at its
/// address) until the io_uring it is registered with is gone.
pub struct RecvRing {
    entries: *mut u8,
    bufs: *mut u8,
    /// Our copy of the ring's tail (the kernel reads the shared one).
    tail: u16,
    /// What the multishot SQE points at: asks for name and control room.
    msghdr: Box<libc::msghdr>,
}

// SAFETY: the raw pointers are owned allocations; the ring is used by one
// thread at a time (the shard's), moved there once before registration.
unsafe impl Send for RecvRing {}

fn entries_layout() -> Layout {
    Layout::from_size_align(RING_ENTRIES as usize * ENTRY_LEN, PAGE).expect("ring layout")
}

fn bufs_layout() -> Layout {
    Layout::from_size_align(RING_ENTRIES as usize * BUF_LEN, 64).expect("buffer layout")
}

/// One received datagram, parsed from a completed buffer.
pub struct Datagram<'a> {
    /// Canonical: an IPv4 peer of a dual-stack socket is IPv4 here.
    pub source: Option<SocketAddr>,
    pub local_ip: Option<IpAddr>,
    /// The datagram was longer than [`PAYLOAD_LEN`] (payload cut short).
    pub truncated: bool,
    pub payload: &'a mut [u8],
}

impl RecvRing {
    pub fn new() -> RecvRing {
        // SAFETY: non-zero sizes; zeroed memory is a valid empty ring.
        let (entries, bufs) = unsafe { (alloc::alloc_zeroed(entries_layout()), alloc::alloc_zeroed(bufs_layout())) };
        if entries.is_null() || bufs.is_null() {
            alloc::handle_alloc_error(bufs_layout());
        }
        // SAFETY: msghdr is plain C data; zero is valid.
        let mut msghdr: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        msghdr.msg_namelen = NAME_LEN as u32;
        msghdr.msg_controllen = CONTROL_LEN;
        let mut ring = RecvRing { entries, bufs, tail: 0, msghdr };
        for bid in 0..RING_ENTRIES {
            ring.put(bid);
        }
        ring.publish();
        ring
    }

    /// Address of the entries array, for `register_buf_ring`.
    pub fn ring_addr(&self) -> u64 {
        self.entries as u64
    }

    pub fn msghdr(&self) -> *const libc::msghdr {
        &*self.msghdr
    }

    /// Writes buffer `bid` at our tail (not yet visible to the kernel).
    fn put(&mut self, bid: u16) {
        let slot = (self.tail & (RING_ENTRIES - 1)) as usize;
        // SAFETY: slot < RING_ENTRIES, inside the entries allocation;
        // io_uring_buf is { addr: u64, len: u32, bid: u16, resv: u16 }. The
        // kernel only reads entries between its head and the published tail,
        // and this one is past the tail until `publish`.
        unsafe {
            let e = self.entries.add(slot * ENTRY_LEN);
            (e as *mut u64).write(self.bufs.add(bid as usize * BUF_LEN) as u64);
            (e.add(8) as *mut u32).write(BUF_LEN as u32);
            (e.add(12) as *mut u16).write(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes the buffers put so far visible to the kernel.
    fn publish(&mut self) {
        // The tail is the `resv` field of entry 0 (offset 14); the release
        // store orders the entries written above before it.
        // SAFETY: 2-aligned u16 inside the page-aligned entries allocation,
        // only ever accessed atomically by us and the kernel.
        let tail = unsafe { &*(self.entries.add(14) as *const AtomicU16) };
        tail.store(self.tail, Ordering::Release);
    }

    /// Gives buffer `bid` back to the kernel.
    pub fn recycle(&mut self, bid: u16) {
        if bid < RING_ENTRIES {
            self.put(bid);
            self.publish();
        }
    }

    /// The datagram in buffer `bid`, of which the kernel filled `len`
    /// bytes. None for an id or length the kernel cannot have given.
    pub fn datagram(&mut self, bid: u16, len: usize) -> Option<Datagram<'_>> {
        if bid >= RING_ENTRIES || !(PAYLOAD_OFFSET..=BUF_LEN).contains(&len) {
            return None;
        }
        // SAFETY: the buffer is ours until recycled (the kernel completed
        // it); bid < RING_ENTRIES keeps it inside the allocation.
        let buf = unsafe { std::slice::from_raw_parts_mut(self.bufs.add(bid as usize * BUF_LEN), BUF_LEN) };
        parse(&mut buf[..len])
    }
}

impl Default for RecvRing {
    fn default() -> Self {
        RecvRing::new()
    }
}

impl Drop for RecvRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with these layouts.
        unsafe {
            alloc::dealloc(self.entries, entries_layout());
            alloc::dealloc(self.bufs, bufs_layout());
        }
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Parses one completed buffer (`[header][name][control][payload]`).
fn parse(buf: &mut [u8]) -> Option<Datagram<'_>> {
    if buf.len() < PAYLOAD_OFFSET {
        return None;
    }
    // struct io_uring_recvmsg_out { namelen, controllen, payloadlen, flags }
    let namelen = u32_at(buf, 0) as usize;
    let controllen = (u32_at(buf, 4) as usize).min(CONTROL_LEN);
    let payloadlen = u32_at(buf, 8) as usize;
    let flags = u32_at(buf, 12) as i32;
    let name = &buf[HEADER_LEN..HEADER_LEN + NAME_LEN.min(namelen)];
    let source = crate::sockaddr::parse_sockaddr(name);
    let local_ip = crate::sockaddr::parse_pktinfo(&buf[HEADER_LEN + NAME_LEN..HEADER_LEN + NAME_LEN + controllen]);
    let room = buf.len() - PAYLOAD_OFFSET;
    let truncated = flags & libc::MSG_TRUNC != 0 || payloadlen > room;
    let payload = &mut buf[PAYLOAD_OFFSET..PAYLOAD_OFFSET + payloadlen.min(room)];
    Some(Datagram { source, local_ip, truncated, payload })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A buffer as the kernel lays it out, built by hand.
    fn filled(payload: &[u8], flags: i32, with_pktinfo: bool) -> Vec<u8> {
        let mut b = vec![0u8; PAYLOAD_OFFSET + payload.len()];
        b[0..4].copy_from_slice(&16u32.to_ne_bytes());
        b[4..8].copy_from_slice(&(if with_pktinfo { 28u32 } else { 0 }).to_ne_bytes());
        b[8..12].copy_from_slice(&(payload.len() as u32).to_ne_bytes());
        b[12..16].copy_from_slice(&flags.to_ne_bytes());
        // sockaddr_in 10.200.0.2:40000
        b[16..18].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        b[18..20].copy_from_slice(&[0x9c, 0x40]);
        b[20..24].copy_from_slice(&[10, 200, 0, 2]);
        if with_pktinfo {
            let c = HEADER_LEN + NAME_LEN;
            b[c..c + 8].copy_from_slice(&28u64.to_ne_bytes());
            b[c + 8..c + 12].copy_from_slice(&(libc::IPPROTO_IP as u32).to_ne_bytes());
            b[c + 12..c + 16].copy_from_slice(&(libc::IP_PKTINFO as u32).to_ne_bytes());
            b[c + 24..c + 28].copy_from_slice(&[10, 200, 0, 1]);
        }
        b[PAYLOAD_OFFSET..].copy_from_slice(payload);
        b
    }

    #[test]
    fn parses_source_local_address_and_payload() {
        let mut b = filled(b"rtcp", 0, true);
        let d = parse(&mut b).unwrap();
        assert_eq!(d.source, Some("10.200.0.2:40000".parse().unwrap()));
        assert_eq!(d.local_ip, Some(IpAddr::from([10, 200, 0, 1])));
        assert!(!d.truncated);
        assert_eq!(d.payload, b"rtcp");
    }

    #[test]
    fn missing_pktinfo_and_truncation_are_reported() {
        let mut b = filled(b"xy", libc::MSG_TRUNC, false);
        let d = parse(&mut b).unwrap();
        assert_eq!(d.local_ip, None);
        assert!(d.truncated);
        // A header claiming more payload than the buffer holds is cut, not read past.
        let mut b = filled(b"abc", 0, false);
        b[8..12].copy_from_slice(&5000u32.to_ne_bytes());
        let d = parse(&mut b).unwrap();
        assert!(d.truncated);
        assert_eq!(d.payload, b"abc");
        assert!(parse(&mut [0u8; 20]).is_none());
    }

    #[test]
    fn a_bad_control_length_stops_the_walk() {
        let mut b = filled(b"z", 0, true);
        let c = HEADER_LEN + NAME_LEN;
        b[c..c + 8].copy_from_slice(&4u64.to_ne_bytes());
        assert_eq!(parse(&mut b).unwrap().local_ip, None);
        b[c..c + 8].copy_from_slice(&u64::MAX.to_ne_bytes());
        assert_eq!(parse(&mut b).unwrap().local_ip, None);
    }

    #[test]
    fn datagram_refuses_ids_and_lengths_the_kernel_cannot_give() {
        let mut r = RecvRing::new();
        assert!(r.datagram(RING_ENTRIES, PAYLOAD_OFFSET).is_none());
        assert!(r.datagram(0, BUF_LEN + 1).is_none());
        assert!(r.datagram(0, PAYLOAD_OFFSET - 1).is_none());
        assert!(r.datagram(3, PAYLOAD_OFFSET).is_some());
    }
}
