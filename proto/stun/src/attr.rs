//! Attribute type codes and the value encodings that need more than a
//! byte copy (XOR-MAPPED-ADDRESS, ERROR-CODE).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::{Error, MAGIC_COOKIE};

pub(crate) const MAPPED_ADDRESS: u16 = 0x0001;
pub(crate) const USERNAME: u16 = 0x0006;
pub(crate) const MESSAGE_INTEGRITY: u16 = 0x0008;
pub(crate) const ERROR_CODE: u16 = 0x0009;
pub(crate) const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
pub(crate) const REALM: u16 = 0x0014;
pub(crate) const NONCE: u16 = 0x0015;
pub(crate) const MESSAGE_INTEGRITY_SHA256: u16 = 0x001C;
pub(crate) const PASSWORD_ALGORITHM: u16 = 0x001D;
pub(crate) const USERHASH: u16 = 0x001E;
pub(crate) const XOR_MAPPED_ADDRESS: u16 = 0x0020;
pub(crate) const PRIORITY: u16 = 0x0024;
pub(crate) const USE_CANDIDATE: u16 = 0x0025;
pub(crate) const FINGERPRINT: u16 = 0x8028;
pub(crate) const ICE_CONTROLLED: u16 = 0x8029;
pub(crate) const ICE_CONTROLLING: u16 = 0x802A;

/// Maximum USERNAME length in bytes (RFC 8489 §14.3).
pub(crate) const MAX_USERNAME: usize = 513;
/// Maximum ERROR-CODE reason phrase length in bytes (RFC 8489 §14.8).
pub(crate) const MAX_REASON: usize = 763;

/// Comprehension-required attributes we understand but whose value this
/// ICE-lite server has no use for. Listing them keeps parse from rejecting
/// an otherwise valid message that carries them.
pub(crate) fn is_known_ignored(t: u16) -> bool {
    matches!(
        t,
        MAPPED_ADDRESS
            | UNKNOWN_ATTRIBUTES
            | REALM
            | NONCE
            | MESSAGE_INTEGRITY_SHA256
            | PASSWORD_ALGORITHM
            | USERHASH
    )
}

const FAMILY_V4: u8 = 0x01;
const FAMILY_V6: u8 = 0x02;

/// Decode an XOR-MAPPED-ADDRESS value (RFC 8489 §14.2). The IPv6 address
/// is XORed with cookie ‖ transaction ID, which is why the ID is needed.
pub(crate) fn decode_xor_address(v: &[u8], tid: &[u8; 12]) -> Result<SocketAddr, Error> {
    let bad = Error::InvalidAttribute(XOR_MAPPED_ADDRESS);
    let (&[_, family, p0, p1], addr) = v.split_first_chunk::<4>().ok_or(bad)?;
    let port = u16::from_be_bytes([p0, p1]) ^ (MAGIC_COOKIE >> 16) as u16;
    let pad = xor_pad(tid);
    let ip = match (family, addr.len()) {
        (FAMILY_V4, 4) => {
            let mut o = [0u8; 4];
            xor_into(&mut o, addr, &pad);
            IpAddr::V4(Ipv4Addr::from(o))
        }
        (FAMILY_V6, 16) => {
            let mut o = [0u8; 16];
            xor_into(&mut o, addr, &pad);
            IpAddr::V6(Ipv6Addr::from(o))
        }
        _ => return Err(bad),
    };
    Ok(SocketAddr::new(ip, port))
}

/// Encode an XOR-MAPPED-ADDRESS value into `out`; returns bytes written
/// (8 for IPv4, 20 for IPv6).
pub(crate) fn encode_xor_address(addr: SocketAddr, tid: &[u8; 12], out: &mut [u8; 20]) -> usize {
    let port = addr.port() ^ (MAGIC_COOKIE >> 16) as u16;
    let pad = xor_pad(tid);
    out[0] = 0;
    out[2..4].copy_from_slice(&port.to_be_bytes());
    match addr.ip() {
        IpAddr::V4(ip) => {
            out[1] = FAMILY_V4;
            xor_into(&mut out[4..8], &ip.octets(), &pad);
            8
        }
        IpAddr::V6(ip) => {
            out[1] = FAMILY_V6;
            xor_into(&mut out[4..20], &ip.octets(), &pad);
            20
        }
    }
}

fn xor_into(dst: &mut [u8], src: &[u8], pad: &[u8; 16]) {
    dst.iter_mut()
        .zip(src)
        .zip(pad)
        .for_each(|((d, s), p)| *d = s ^ p);
}

/// Decode ERROR-CODE (RFC 8489 §14.8) into (code, reason phrase).
pub(crate) fn decode_error_code(v: &[u8]) -> Result<(u16, &str), Error> {
    let bad = Error::InvalidAttribute(ERROR_CODE);
    let (&[_, _, class, number], reason) = v.split_first_chunk::<4>().ok_or(bad)?;
    let class = class & 0x07;
    if !(3..=6).contains(&class) || number > 99 || reason.len() > MAX_REASON {
        return Err(bad);
    }
    let reason = std::str::from_utf8(reason).map_err(|_| bad)?;
    Ok((u16::from(class) * 100 + u16::from(number), reason))
}

/// Magic cookie followed by the transaction ID: the XOR mask for addresses.
fn xor_pad(tid: &[u8; 12]) -> [u8; 16] {
    let mut pad = [0u8; 16];
    pad[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    pad[4..].copy_from_slice(tid);
    pad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xor_address_round_trips_v4_and_v6() {
        let tid = [
            0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
        ];
        for addr in [
            "192.0.2.1:32853",
            "[2001:db8:1234:5678:11:2233:4455:6677]:32853",
        ] {
            let addr: SocketAddr = addr.parse().unwrap();
            let mut buf = [0u8; 20];
            let n = encode_xor_address(addr, &tid, &mut buf);
            assert_eq!(decode_xor_address(&buf[..n], &tid), Ok(addr));
        }
    }

    #[test]
    fn xor_address_matches_rfc5769_bytes() {
        let tid = [
            0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
        ];
        let mut buf = [0u8; 20];
        let n = encode_xor_address("192.0.2.1:32853".parse().unwrap(), &tid, &mut buf);
        assert_eq!(&buf[..n], &[0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43]);
    }

    #[test]
    fn xor_address_rejects_bad_family_and_length() {
        let tid = [0; 12];
        assert!(decode_xor_address(&[0, 1, 0, 0, 1, 2, 3], &tid).is_err());
        assert!(decode_xor_address(&[0, 3, 0, 0, 1, 2, 3, 4], &tid).is_err());
        assert!(decode_xor_address(&[0, 2, 0, 0, 1, 2, 3, 4], &tid).is_err());
        assert!(decode_xor_address(&[], &tid).is_err());
    }

    #[test]
    fn error_code_decodes_class_and_number() {
        assert_eq!(
            decode_error_code(b"\0\0\x04\x01Unauthorized"),
            Ok((401, "Unauthorized"))
        );
        assert_eq!(decode_error_code(b"\0\0\x04\x57"), Ok((487, "")));
        assert!(decode_error_code(b"\0\0\x02\x00").is_err()); // class 2
        assert!(decode_error_code(b"\0\0\x04\x64").is_err()); // number 100
        assert!(decode_error_code(b"\0\0\x04\x01\xff").is_err()); // not UTF-8
        assert!(decode_error_code(b"\0\0\x04").is_err());
    }
}
