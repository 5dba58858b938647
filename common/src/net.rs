//! Listening sockets for both address families. The defaults listen on
//! `[::]` with IPV6_V6ONLY off, so one socket takes IPv4 and IPv6 clients
//! (IPv4 ones appear as v4-mapped addresses: [`canonical`] turns them back
//! into plain IPv4 before anything records them). A host without IPv6
//! (booted with `ipv6.disable=1`) refuses `[::]`; the listener then falls
//! back to `0.0.0.0` on the same port and says so.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

/// `addr` with a v4-mapped IPv6 address turned into the IPv4 address.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, v6.port())),
            None => addr,
        },
        v4 => v4,
    }
}

/// Makes a socket of `addr`'s family: IPV6_V6ONLY off when `addr` is `::`
/// (whatever the host's `net.ipv6.bindv6only`), so it serves both families.
pub fn socket_for(addr: SocketAddr, kind: socket2::Type) -> io::Result<socket2::Socket> {
    let s = socket2::Socket::new(socket2::Domain::for_address(addr), kind, None)?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        s.set_only_v6(false)?;
    }
    Ok(s)
}

/// Runs `bind` on `addr`; when `addr` is `[::]:port` and the host has no
/// IPv6, runs it again on `0.0.0.0:port` (with a warning naming `what`).
pub fn bind_any_family<T>(addr: SocketAddr, what: &str, bind: impl Fn(SocketAddr) -> io::Result<T>) -> io::Result<T> {
    match bind(addr) {
        Err(e) if addr.is_ipv6() && addr.ip().is_unspecified() && matches!(e.raw_os_error(), Some(libc::EAFNOSUPPORT) | Some(libc::EADDRNOTAVAIL)) => {
            let v4 = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, addr.port()));
            tracing::warn!(%addr, fallback = %v4, error = %e, "{what}: no IPv6 on this host; listening on IPv4 only");
            bind(v4)
        }
        r => r,
    }
}

/// A listening TCP socket on `addr` (dual-stack for `[::]`, see
/// [`bind_any_family`]), non-blocking, with SO_REUSEADDR.
pub fn tcp_listener(addr: SocketAddr, what: &str) -> io::Result<std::net::TcpListener> {
    bind_any_family(addr, what, |a| {
        let s = socket_for(a, socket2::Type::STREAM)?;
        s.set_reuse_address(true)?;
        s.bind(&a.into())?;
        s.listen(1024)?;
        s.set_nonblocking(true)?;
        Ok(s.into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn canonical_addresses() {
        assert_eq!(canonical("[::ffff:192.0.2.7]:80".parse().unwrap()), "192.0.2.7:80".parse::<SocketAddr>().unwrap());
        for a in ["192.0.2.7:80", "[2001:db8::1]:80", "[::1]:80"] {
            assert_eq!(canonical(a.parse().unwrap()), a.parse::<SocketAddr>().unwrap());
        }
    }

    /// One listener on `[::]` takes an IPv4 and an IPv6 client.
    #[test]
    fn dual_stack_listener_takes_both_families() {
        let l = tcp_listener("[::]:0".parse().unwrap(), "test").unwrap();
        l.set_nonblocking(false).unwrap();
        let port = l.local_addr().unwrap().port();
        for (client, want) in [("127.0.0.1", "127.0.0.1"), ("::1", "::1")] {
            let mut c = std::net::TcpStream::connect((client, port)).unwrap();
            c.write_all(b"x").unwrap();
            let (mut s, peer) = l.accept().unwrap();
            assert_eq!(canonical(peer).ip().to_string(), want);
            let mut b = [0u8; 1];
            s.read_exact(&mut b).unwrap();
        }
    }

    #[test]
    fn a_taken_port_is_an_error() {
        let l = tcp_listener("127.0.0.1:0".parse().unwrap(), "test").unwrap();
        let port = l.local_addr().unwrap().port();
        let err = std::net::TcpListener::bind(("127.0.0.1", port)).err();
        assert!(err.is_some());
        // A dual-stack bind of the same port collides with the IPv4 one.
        assert!(tcp_listener(SocketAddr::from(([0u16; 8], port)), "test").is_err());
    }
}
