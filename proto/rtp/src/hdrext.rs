//! RTP header extensions (RFC 8285), read side: finding one element of the
//! one-byte form, and the playout-delay extension the server writes on
//! video. Used by players and test tools to check what arrived.

use crate::RtpHeader;

/// Profile of the one-byte header form.
const ONE_BYTE_PROFILE: [u8; 2] = [0xbe, 0xde];

/// The data of element `id` (1-14) of the packet's one-byte-form header
/// extension; None when the packet has no extension, uses another form, or
/// lacks that element. `header` must be `RtpHeader::parse(packet)`.
pub fn one_byte_extension<'a>(packet: &'a [u8], header: &RtpHeader, id: u8) -> Option<&'a [u8]> {
    if packet.first()? & 0x10 == 0 || !(1..=14).contains(&id) {
        return None;
    }
    let start = crate::RTP_HEADER_LEN + 4 * usize::from(packet[0] & 0x0f);
    let block = packet.get(start..header.header_len)?;
    let (profile, mut rest) = (block.get(..2)?, block.get(4..)?);
    if profile != ONE_BYTE_PROFILE {
        return None;
    }
    while let Some((&b, tail)) = rest.split_first() {
        if b == 0 {
            rest = tail; // padding between elements
            continue;
        }
        let (eid, len) = (b >> 4, usize::from(b & 0x0f) + 1);
        if eid == 15 {
            return None; // reserved: stop parsing (RFC 8285 §4.2)
        }
        let data = tail.get(..len)?;
        if eid == id {
            return Some(data);
        }
        rest = &tail[len..];
    }
    None
}

/// Google's playout-delay extension: the receiver's bounds on video
/// playout delay, in 10 ms units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlayoutDelay {
    /// Minimum, 10 ms units (12 bits).
    pub min: u16,
    /// Maximum, 10 ms units (12 bits).
    pub max: u16,
}

impl PlayoutDelay {
    /// Parses the 3 data bytes of the element.
    pub fn parse(data: &[u8]) -> Option<PlayoutDelay> {
        let [a, b, c] = *data else { return None };
        let min = (u16::from(a) << 4) | u16::from(b >> 4);
        let max = (u16::from(b & 0x0f) << 8) | u16::from(c);
        Some(PlayoutDelay { min, max })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(ext: &[u8]) -> Vec<u8> {
        let mut p = vec![0x90, 96, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        p.extend_from_slice(&[0xbe, 0xde, 0, (ext.len() / 4) as u8]);
        p.extend_from_slice(ext);
        p.extend_from_slice(b"payload");
        p
    }

    #[test]
    fn finds_elements_and_the_playout_delay() {
        // Padding byte, a 1-byte element id 3, then playout delay id 5 (len 3), padding.
        let p = packet(&[0x00, 0x30, 0xaa, 0x52, 0x00, 0x53, 0xe8, 0x00]);
        let h = RtpHeader::parse(&p).unwrap();
        assert_eq!(one_byte_extension(&p, &h, 3), Some(&[0xaa][..]));
        let d = one_byte_extension(&p, &h, 5).unwrap();
        assert_eq!(PlayoutDelay::parse(d), Some(PlayoutDelay { min: 5, max: 1000 }));
        assert_eq!(one_byte_extension(&p, &h, 7), None);
        assert_eq!(one_byte_extension(&p, &h, 15), None);
        assert_eq!(h.payload(&p), b"payload");
    }

    #[test]
    fn rejects_other_forms_and_truncation() {
        // Two-byte form (0x1000) is not read.
        let mut p = packet(&[0x52, 0x00, 0x53, 0xe8]);
        p[12..14].copy_from_slice(&[0x10, 0x00]);
        let h = RtpHeader::parse(&p).unwrap();
        assert_eq!(one_byte_extension(&p, &h, 5), None);
        // Element longer than the block.
        let p = packet(&[0x5f, 0x00, 0x00, 0x00]);
        let h = RtpHeader::parse(&p).unwrap();
        assert_eq!(one_byte_extension(&p, &h, 5), None);
        // Reserved id 15 ends parsing before a later element.
        let p = packet(&[0xf0, 0x52, 0x00, 0x53, 0xe8, 0, 0, 0]);
        let h = RtpHeader::parse(&p).unwrap();
        assert_eq!(one_byte_extension(&p, &h, 5), None);
        // No extension at all.
        let mut p = packet(&[]);
        p[0] = 0x80;
        p.drain(12..16);
        let h = RtpHeader::parse(&p).unwrap();
        assert_eq!(one_byte_extension(&p, &h, 5), None);
        assert_eq!(PlayoutDelay::parse(&[1, 2]), None);
    }
}
