//! The RTP fixed header (RFC 3550 §5.1).

use crate::Error;

/// Length of the fixed RTP header this crate writes (no CSRC, no extension).
pub const RTP_HEADER_LEN: usize = 12;

/// A parsed RTP header.
///
/// Offsets index into the packet passed to [`RtpHeader::parse`], so the
/// payload is `&packet[h.payload_offset..h.payload_end]` (see
/// [`RtpHeader::payload`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RtpHeader {
    /// M bit; for video, set on the last packet of a frame.
    pub marker: bool,
    /// 7-bit payload type.
    pub payload_type: u8,
    /// Sequence number.
    pub sequence: u16,
    /// Media timestamp (90 kHz for video).
    pub timestamp: u32,
    /// Synchronization source.
    pub ssrc: u32,
    /// Bytes of header: fixed 12 + CSRC list + header extension. This is the
    /// part SRTP authenticates but does not encrypt.
    pub header_len: usize,
    /// Where the payload starts; equal to `header_len`, kept as its own field
    /// so callers read intent rather than arithmetic.
    pub payload_offset: usize,
    /// Where the payload ends: packet length minus RTP padding.
    pub payload_end: usize,
    /// Number of padding bytes at the end (0 if the P bit is clear).
    pub padding_len: u8,
}

impl RtpHeader {
    /// Parses the header of `packet`, walking CSRCs, the header extension
    /// and padding. Never panics; malformed input returns an error.
    pub fn parse(packet: &[u8]) -> Result<RtpHeader, Error> {
        if packet.len() < RTP_HEADER_LEN {
            return Err(Error::TooShort {
                needed: RTP_HEADER_LEN,
                have: packet.len(),
            });
        }
        let b0 = packet[0];
        let version = b0 >> 6;
        if version != 2 {
            return Err(Error::BadVersion(version));
        }
        let has_padding = b0 & 0x20 != 0;
        let has_extension = b0 & 0x10 != 0;
        let csrc_count = usize::from(b0 & 0x0f);

        let mut header_len = RTP_HEADER_LEN + 4 * csrc_count;
        if has_extension {
            let ext_start = header_len;
            if packet.len() < ext_start + 4 {
                return Err(Error::TooShort {
                    needed: ext_start + 4,
                    have: packet.len(),
                });
            }
            let words = usize::from(u16::from_be_bytes([
                packet[ext_start + 2],
                packet[ext_start + 3],
            ]));
            header_len = ext_start + 4 + 4 * words;
        }
        if packet.len() < header_len {
            return Err(Error::TooShort {
                needed: header_len,
                have: packet.len(),
            });
        }

        let padding_len = if has_padding {
            // The last octet counts itself, so 0 is invalid (RFC 3550 §5.1).
            let pad = packet[packet.len() - 1];
            if pad == 0 || usize::from(pad) > packet.len() - header_len {
                return Err(Error::BadPadding);
            }
            pad
        } else {
            0
        };

        Ok(RtpHeader {
            marker: packet[1] & 0x80 != 0,
            payload_type: packet[1] & 0x7f,
            sequence: u16::from_be_bytes([packet[2], packet[3]]),
            timestamp: u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]),
            ssrc: u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]),
            header_len,
            payload_offset: header_len,
            payload_end: packet.len() - usize::from(padding_len),
            padding_len,
        })
    }

    /// The payload of the packet this header was parsed from.
    ///
    /// Returns an empty slice if `packet` is not that packet (too short),
    /// rather than panicking.
    pub fn payload<'a>(&self, packet: &'a [u8]) -> &'a [u8] {
        packet
            .get(self.payload_offset..self.payload_end)
            .unwrap_or(&[])
    }
}

/// Writes a 12-byte RTP header (V=2, no padding, extension or CSRCs) into
/// `out` and returns 12.
///
/// # Panics
/// If `out` is shorter than 12 bytes; the buffer is the caller's, not
/// network input, so this is a programming error.
pub fn write_rtp_header(
    out: &mut [u8],
    marker: bool,
    pt: u8,
    seq: u16,
    ts: u32,
    ssrc: u32,
) -> usize {
    let h = &mut out[..RTP_HEADER_LEN];
    h[0] = 0x80;
    h[1] = (u8::from(marker) << 7) | (pt & 0x7f);
    h[2..4].copy_from_slice(&seq.to_be_bytes());
    h[4..8].copy_from_slice(&ts.to_be_bytes());
    h[8..12].copy_from_slice(&ssrc.to_be_bytes());
    RTP_HEADER_LEN
}

/// Rewrites the payload type of an RTP packet in place, keeping the marker
/// bit. This is the only per-viewer change to the shared plaintext packet
/// (viewers may negotiate different PT numbers). Packets shorter than two
/// bytes are left untouched.
pub fn set_payload_type(packet: &mut [u8], pt: u8) {
    if let Some(b1) = packet.get_mut(1) {
        *b1 = (*b1 & 0x80) | (pt & 0x7f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_parse() {
        let mut buf = [0u8; 16];
        assert_eq!(
            write_rtp_header(&mut buf, true, 102, 0xfffe, 0x1234_5678, 0xdead_beef),
            12
        );
        assert_eq!(
            &buf[..12],
            &[
                0x80,
                0x80 | 102,
                0xff,
                0xfe,
                0x12,
                0x34,
                0x56,
                0x78,
                0xde,
                0xad,
                0xbe,
                0xef
            ]
        );
        let h = RtpHeader::parse(&buf).unwrap();
        assert!(h.marker);
        assert_eq!(
            (h.payload_type, h.sequence, h.timestamp, h.ssrc),
            (102, 0xfffe, 0x1234_5678, 0xdead_beef)
        );
        assert_eq!(
            (h.header_len, h.payload_offset, h.payload_end, h.padding_len),
            (12, 12, 16, 0)
        );
    }

    #[test]
    fn csrc_extension_and_padding() {
        // V=2 P=1 X=1 CC=2, M=0 PT=96
        let mut p = vec![0xb2, 96, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        p.extend_from_slice(&[1, 1, 1, 1, 2, 2, 2, 2]); // 2 CSRCs
        p.extend_from_slice(&[0xbe, 0xde, 0x00, 0x01, 0x10, 0xaa, 0, 0]); // one-byte ext, 1 word
        p.extend_from_slice(&[0x65, 0x01, 0x02]); // payload
        p.extend_from_slice(&[0, 0, 3]); // 3 bytes padding
        let h = RtpHeader::parse(&p).unwrap();
        assert_eq!(h.header_len, 12 + 8 + 8);
        assert_eq!(h.padding_len, 3);
        assert_eq!(h.payload(&p), &[0x65, 0x01, 0x02]);
        assert!(!h.marker);
    }

    #[test]
    fn rejects_malformed() {
        assert!(matches!(
            RtpHeader::parse(&[0x80; 11]),
            Err(Error::TooShort { .. })
        ));
        let mut p = [0u8; 12];
        p[0] = 0x40;
        assert_eq!(RtpHeader::parse(&p), Err(Error::BadVersion(1)));
        // CC=15 but no CSRCs.
        p[0] = 0x8f;
        assert!(matches!(RtpHeader::parse(&p), Err(Error::TooShort { .. })));
        // Padding count 0 and padding larger than the body.
        let mut p = vec![0xa0, 96, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0];
        assert_eq!(RtpHeader::parse(&p), Err(Error::BadPadding));
        *p.last_mut().unwrap() = 3;
        assert_eq!(RtpHeader::parse(&p), Err(Error::BadPadding));
        // Extension length beyond the packet.
        let p = vec![0x90, 96, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xbe, 0xde, 0, 5];
        assert!(matches!(RtpHeader::parse(&p), Err(Error::TooShort { .. })));
    }

    #[test]
    fn set_payload_type_keeps_marker() {
        let mut buf = [0u8; 12];
        write_rtp_header(&mut buf, true, 96, 1, 2, 3);
        set_payload_type(&mut buf, 111);
        assert_eq!(buf[1], 0x80 | 111);
        write_rtp_header(&mut buf, false, 96, 1, 2, 3);
        set_payload_type(&mut buf, 0xff);
        assert_eq!(buf[1], 0x7f);
        let mut short = [0x80u8];
        set_payload_type(&mut short, 1);
        assert_eq!(short, [0x80]);
    }
}
