//! Socket addresses between the kernel's C layouts and `std::net`, for both
//! families. The shard's UDP socket is dual-stack by default (bound to `::`
//! with IPV6_V6ONLY off): IPv4 peers then arrive as v4-mapped IPv6
//! addresses (`::ffff:a.b.c.d`). Everything above this module sees them as
//! plain IPv4 ([`canonical`]), so sessions, logs, limits and billing name an
//! IPv4 viewer the same way whichever socket family carried it; only the
//! send path maps them back ([`SockAddr::new`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

pub use rts_common::net::canonical;

/// Whether `fd` is an AF_INET6 socket.
pub fn is_ipv6_socket(fd: RawFd) -> bool {
    // SAFETY: out-pointers to live locals with their sizes.
    unsafe {
        let mut ss: libc::sockaddr_storage = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as u32;
        libc::getsockname(fd, (&mut ss as *mut libc::sockaddr_storage).cast(), &mut len) == 0 && ss.ss_family as i32 == libc::AF_INET6
    }
}

/// A destination in the layout the socket's family takes: `sockaddr_in`
/// for an IPv4 socket, `sockaddr_in6` (IPv4 destinations v4-mapped) for an
/// IPv6 one. 28 bytes of storage, not `sockaddr_storage`'s 128: a batch
/// holds 64 of them.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct SockAddr {
    storage: libc::sockaddr_in6,
    len: u32,
}

impl SockAddr {
    /// None when an IPv4 socket is asked to reach an IPv6 address.
    pub fn new(dst: SocketAddr, ipv6_socket: bool) -> Option<SockAddr> {
        // SAFETY: sockaddr_in6 is plain C data; zero is valid.
        let mut storage: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
        let len = match (dst, ipv6_socket) {
            (SocketAddr::V4(v4), false) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as u16,
                    sin_port: v4.port().to_be(),
                    sin_addr: libc::in_addr { s_addr: u32::from(*v4.ip()).to_be() },
                    sin_zero: [0; 8],
                };
                // SAFETY: sockaddr_in (16 bytes) fits in sockaddr_in6 (28),
                // whose alignment (4) is at least sockaddr_in's.
                unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_in6).cast::<libc::sockaddr_in>(), sin) };
                std::mem::size_of::<libc::sockaddr_in>()
            }
            (SocketAddr::V6(_), false) => return None,
            (dst, true) => {
                let (ip, port, flowinfo, scope) = match dst {
                    SocketAddr::V4(v4) => (v4.ip().to_ipv6_mapped(), v4.port(), 0, 0),
                    SocketAddr::V6(v6) => (*v6.ip(), v6.port(), v6.flowinfo(), v6.scope_id()),
                };
                storage.sin6_family = libc::AF_INET6 as u16;
                storage.sin6_port = port.to_be();
                storage.sin6_flowinfo = flowinfo.to_be();
                storage.sin6_addr = libc::in6_addr { s6_addr: ip.octets() };
                storage.sin6_scope_id = scope;
                std::mem::size_of::<libc::sockaddr_in6>()
            }
        };
        Some(SockAddr { storage, len: len as u32 })
    }

    pub fn as_mut_ptr(&mut self) -> *mut libc::c_void {
        (&mut self.storage as *mut libc::sockaddr_in6).cast()
    }

    pub fn byte_len(&self) -> u32 {
        self.len
    }
}

/// A `sockaddr_in` or `sockaddr_in6` as the kernel wrote it (family in host
/// order, port and address in network order), canonical (v4-mapped →
/// IPv4). None for another family or a short buffer.
pub fn parse_sockaddr(name: &[u8]) -> Option<SocketAddr> {
    if name.len() < 2 {
        return None;
    }
    let family = u16::from_ne_bytes([name[0], name[1]]) as i32;
    if family == libc::AF_INET && name.len() >= 8 {
        let port = u16::from_be_bytes([name[2], name[3]]);
        return Some(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(name[4], name[5], name[6], name[7]), port)));
    }
    if family == libc::AF_INET6 && name.len() >= 28 {
        let port = u16::from_be_bytes([name[2], name[3]]);
        let flowinfo = u32::from_be_bytes(name[4..8].try_into().ok()?);
        let ip: [u8; 16] = name[8..24].try_into().ok()?;
        let scope = u32::from_ne_bytes(name[24..28].try_into().ok()?);
        return Some(canonical(SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(ip), port, flowinfo, scope))));
    }
    None
}

/// The local address a datagram arrived at, from its control messages:
/// IP_PKTINFO (IPv4 socket) or IPV6_PKTINFO (IPv6 socket; IPv4 datagrams
/// on a dual-stack socket carry it v4-mapped), walking the
/// `cmsghdr { len: usize, level: i32, type: i32 }` records (8-aligned).
pub fn parse_pktinfo(control: &[u8]) -> Option<IpAddr> {
    const CMSG_HDR: usize = 16;
    let u32_at = |at: usize| u32::from_ne_bytes([control[at], control[at + 1], control[at + 2], control[at + 3]]);
    let mut at = 0;
    while at + CMSG_HDR <= control.len() {
        let len = u64::from_ne_bytes(control[at..at + 8].try_into().ok()?) as usize;
        let level = u32_at(at + 8) as i32;
        let kind = u32_at(at + 12) as i32;
        if len < CMSG_HDR || len > control.len() - at {
            return None;
        }
        let data = &control[at + CMSG_HDR..at + len];
        // struct in_pktinfo { ipi_ifindex: i32, ipi_spec_dst, ipi_addr }
        if level == libc::IPPROTO_IP && kind == libc::IP_PKTINFO && data.len() >= 12 {
            return Some(IpAddr::V4(Ipv4Addr::new(data[8], data[9], data[10], data[11])));
        }
        // struct in6_pktinfo { ipi6_addr: [u8; 16], ipi6_ifindex: u32 }
        if level == libc::IPPROTO_IPV6 && kind == libc::IPV6_PKTINFO && data.len() >= 16 {
            let ip: [u8; 16] = data[..16].try_into().ok()?;
            return Some(IpAddr::V6(Ipv6Addr::from(ip)).to_canonical());
        }
        at += (len + 7) & !7;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmsg(level: i32, kind: i32, data: &[u8]) -> Vec<u8> {
        let mut c = Vec::new();
        c.extend_from_slice(&((16 + data.len()) as u64).to_ne_bytes());
        c.extend_from_slice(&(level as u32).to_ne_bytes());
        c.extend_from_slice(&(kind as u32).to_ne_bytes());
        c.extend_from_slice(data);
        while c.len() % 8 != 0 {
            c.push(0);
        }
        c
    }

    #[test]
    fn mapped_addresses_become_ipv4() {
        let mapped: SocketAddr = "[::ffff:10.200.0.2]:5000".parse().unwrap();
        assert_eq!(canonical(mapped), "10.200.0.2:5000".parse::<SocketAddr>().unwrap());
        let v6: SocketAddr = "[fd00:200::2]:5000".parse().unwrap();
        assert_eq!(canonical(v6), v6);
    }

    /// Byte layouts written by hand from <netinet/in.h>, not by this module.
    #[test]
    fn parses_both_families() {
        let mut sin = vec![0u8; 16];
        sin[0..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        sin[2..4].copy_from_slice(&[0x13, 0x88]);
        sin[4..8].copy_from_slice(&[10, 200, 0, 2]);
        assert_eq!(parse_sockaddr(&sin), Some("10.200.0.2:5000".parse().unwrap()));
        let mut sin6 = vec![0u8; 28];
        sin6[0..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
        sin6[2..4].copy_from_slice(&[0x13, 0x88]);
        sin6[8..24].copy_from_slice(&[0xfd, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        assert_eq!(parse_sockaddr(&sin6), Some("[fd00:200::2]:5000".parse().unwrap()));
        sin6[8..24].copy_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 200, 0, 2]);
        assert_eq!(parse_sockaddr(&sin6), Some("10.200.0.2:5000".parse().unwrap()), "v4-mapped is IPv4");
        assert_eq!(parse_sockaddr(&sin6[..20]), None, "short sockaddr_in6");
        let mut unix = vec![0u8; 28];
        unix[0..2].copy_from_slice(&(libc::AF_UNIX as u16).to_ne_bytes());
        assert_eq!(parse_sockaddr(&unix), None);
    }

    #[test]
    fn pktinfo_of_both_families() {
        let v4 = cmsg(libc::IPPROTO_IP, libc::IP_PKTINFO, &[1, 0, 0, 0, 0, 0, 0, 0, 10, 200, 0, 1]);
        assert_eq!(parse_pktinfo(&v4), Some("10.200.0.1".parse().unwrap()));
        let mut info6 = [0u8; 20];
        info6[..16].copy_from_slice(&[0xfd, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(parse_pktinfo(&cmsg(libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, &info6)), Some("fd00:200::1".parse().unwrap()));
        info6[..16].copy_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 200, 0, 1]);
        // Another record first: the walk goes past it.
        let mut both = cmsg(libc::SOL_SOCKET, libc::SO_TIMESTAMP, &[0; 16]);
        both.extend(cmsg(libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, &info6));
        assert_eq!(parse_pktinfo(&both), Some("10.200.0.1".parse().unwrap()));
        let mut bad = v4.clone();
        bad[..8].copy_from_slice(&u64::MAX.to_ne_bytes());
        assert_eq!(parse_pktinfo(&bad), None);
        bad[..8].copy_from_slice(&4u64.to_ne_bytes());
        assert_eq!(parse_pktinfo(&bad), None);
    }

    /// What the send path writes is what the receive path reads, for each
    /// socket family; an IPv4 socket cannot reach an IPv6 address.
    #[test]
    fn send_layouts() {
        let v4: SocketAddr = "10.200.0.2:5000".parse().unwrap();
        let v6: SocketAddr = "[fd00:200::2]:5000".parse().unwrap();
        for (dst, ipv6_socket, len) in [(v4, false, 16), (v4, true, 28), (v6, true, 28)] {
            let mut a = SockAddr::new(dst, ipv6_socket).unwrap();
            assert_eq!(a.byte_len(), len);
            // SAFETY: the storage is 28 bytes.
            let bytes = unsafe { std::slice::from_raw_parts(a.as_mut_ptr() as *const u8, len as usize) };
            assert_eq!(parse_sockaddr(bytes), Some(dst));
        }
        let mut mapped = SockAddr::new(v4, true).unwrap();
        // SAFETY: as above.
        let bytes = unsafe { std::slice::from_raw_parts(mapped.as_mut_ptr() as *const u8, 28) };
        assert_eq!(&bytes[8..24], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 200, 0, 2]);
        assert!(SockAddr::new(v6, false).is_none());
    }
}
