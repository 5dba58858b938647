//! RFC 7983 first-byte demultiplexing of the shared media port.
//!
//! One UDP port carries STUN, DTLS, SRTP and SRTCP, so the dataplane must
//! route each datagram by its first byte before any parser sees it.

use crate::{HEADER_LEN, MAGIC_COOKIE};

/// What a datagram received on the media port is (RFC 7983 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    /// STUN (first byte 0..=3, valid cookie and length).
    Stun,
    /// DTLS record (first byte 20..=63).
    Dtls,
    /// (S)RTP (first byte 128..=191, payload type outside 192..=223).
    Rtp,
    /// (S)RTCP (first byte 128..=191, packet type 192..=223, RFC 5761 §4).
    Rtcp,
    /// Anything else: ZRTP, TURN channels, garbage. Drop it.
    Unknown,
}

/// Classify a datagram by its first byte (RFC 7983), with a cheap sanity
/// check for STUN (magic cookie and length) so a stray 0..=3 byte doesn't
/// reach the STUN parser and cost an HMAC.
#[must_use]
pub fn classify(datagram: &[u8]) -> PacketKind {
    let Some(&first) = datagram.first() else {
        return PacketKind::Unknown;
    };
    match first {
        0..=3 if looks_like_stun(datagram) => PacketKind::Stun,
        20..=63 => PacketKind::Dtls,
        128..=191 => match datagram.get(1) {
            // RFC 5761 §4: RTCP packet types 192..=223 collide with RTP
            // payload types 64..=95 with the marker bit set, which are
            // therefore never used for RTP when muxing.
            Some(192..=223) => PacketKind::Rtcp,
            Some(_) => PacketKind::Rtp,
            None => PacketKind::Unknown,
        },
        _ => PacketKind::Unknown,
    }
}

/// Header-only check: cookie matches and the length field describes
/// exactly the rest of the datagram in 4-byte units.
fn looks_like_stun(d: &[u8]) -> bool {
    if d.len() < HEADER_LEN {
        return false;
    }
    let len = usize::from(u16::from_be_bytes([d[2], d[3]]));
    d[4..8] == MAGIC_COOKIE.to_be_bytes() && len % 4 == 0 && len + HEADER_LEN == d.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stun_header(len: u16) -> Vec<u8> {
        let mut v = vec![0x00, 0x01];
        v.extend_from_slice(&len.to_be_bytes());
        v.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        v.extend_from_slice(&[7; 12]);
        v.resize(HEADER_LEN + usize::from(len), 0);
        v
    }

    #[test]
    fn every_first_byte_maps_to_its_rfc7983_range() {
        for b in 0..=255u8 {
            // Second byte 0 => RTP (payload type 0) for the RTP range.
            let d = [b, 0, 0, 0];
            let want = match b {
                20..=63 => PacketKind::Dtls,
                128..=191 => PacketKind::Rtp,
                // 0..=3 without a valid STUN header, 16..=19 ZRTP,
                // 64..=79 TURN channel and everything else.
                _ => PacketKind::Unknown,
            };
            assert_eq!(classify(&d), want, "first byte {b}");
        }
    }

    #[test]
    fn stun_requires_cookie_and_exact_length() {
        let ok = stun_header(8);
        assert_eq!(classify(&ok), PacketKind::Stun);
        for first in 0..=3u8 {
            let mut d = ok.clone();
            d[0] = first;
            assert_eq!(classify(&d), PacketKind::Stun);
        }
        let mut bad_cookie = ok.clone();
        bad_cookie[5] ^= 1;
        assert_eq!(classify(&bad_cookie), PacketKind::Unknown);
        assert_eq!(classify(&ok[..ok.len() - 4]), PacketKind::Unknown);
        assert_eq!(classify(&ok[..19]), PacketKind::Unknown);
        let mut odd = stun_header(8);
        odd[3] = 7; // length not a multiple of 4
        odd.truncate(HEADER_LEN + 7);
        assert_eq!(classify(&odd), PacketKind::Unknown);
    }

    #[test]
    fn rtp_rtcp_split_on_second_byte() {
        assert_eq!(classify(&[0x80, 96]), PacketKind::Rtp);
        assert_eq!(classify(&[0x80, 96 | 0x80]), PacketKind::Rtp); // marker, PT 96
        assert_eq!(classify(&[0x80, 191]), PacketKind::Rtp);
        assert_eq!(classify(&[0x80, 192]), PacketKind::Rtcp);
        assert_eq!(classify(&[0x81, 200]), PacketKind::Rtcp); // SR
        assert_eq!(classify(&[0xbf, 223]), PacketKind::Rtcp);
        assert_eq!(classify(&[0x80, 224]), PacketKind::Rtp);
        assert_eq!(classify(&[0x80]), PacketKind::Unknown);
        assert_eq!(classify(&[]), PacketKind::Unknown);
    }
}
