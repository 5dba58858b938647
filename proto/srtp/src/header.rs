//! Just enough RTP/RTCP header parsing for SRTP: where the encrypted
//! portion starts, and the SSRC / sequence number that key the IV.

use crate::Error;

/// Fixed RTP header size (RFC 3550 §5.1).
pub(crate) const RTP_FIXED: usize = 12;
/// RTCP bytes SRTCP leaves in the clear: V/P/RC, PT, length, sender SSRC.
pub(crate) const RTCP_FIXED: usize = 8;

/// Length of the RTP header at the start of `packet`, including the CSRC
/// list and any header extension (RFC 3550 §5.3.1). SRTP encrypts only what
/// follows it, so this is the boundary every protect/unprotect needs.
///
/// Errors: [`Error::Truncated`] when the packet is shorter than the header
/// claims, [`Error::BadVersion`] when V != 2.
pub fn rtp_header_len(packet: &[u8]) -> Result<usize, Error> {
    let first = *packet.first().ok_or(Error::Truncated)?;
    if first >> 6 != 2 {
        return Err(Error::BadVersion);
    }
    if packet.len() < RTP_FIXED {
        return Err(Error::Truncated);
    }
    let mut len = RTP_FIXED + 4 * usize::from(first & 0x0f);
    if first & 0x10 != 0 {
        let ext = packet.get(len..len + 4).ok_or(Error::Truncated)?;
        let words = usize::from(u16::from_be_bytes([ext[2], ext[3]]));
        len += 4 + 4 * words;
    }
    if len > packet.len() {
        return Err(Error::Truncated);
    }
    Ok(len)
}

/// Sequence number and SSRC of an RTP packet whose header was validated.
pub(crate) fn rtp_seq_ssrc(header: &[u8]) -> (u16, u32) {
    (
        u16::from_be_bytes([header[2], header[3]]),
        u32::from_be_bytes([header[8], header[9], header[10], header[11]]),
    )
}

/// Validates the clear RTCP prefix and returns the sender SSRC.
pub(crate) fn rtcp_ssrc(packet: &[u8]) -> Result<u32, Error> {
    let first = *packet.first().ok_or(Error::Truncated)?;
    if first >> 6 != 2 {
        return Err(Error::BadVersion);
    }
    let h = packet.get(..RTCP_FIXED).ok_or(Error::Truncated)?;
    Ok(u32::from_be_bytes([h[4], h[5], h[6], h[7]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_header() {
        let mut p = [0u8; 20];
        p[0] = 0x80;
        assert_eq!(rtp_header_len(&p), Ok(12));
        assert_eq!(rtp_header_len(&p[..12]), Ok(12));
        assert_eq!(rtp_header_len(&p[..11]), Err(Error::Truncated));
    }

    #[test]
    fn csrc_and_extension() {
        // CC = 2, X = 1, extension of 3 words.
        let mut p = vec![0u8; 12 + 8 + 4 + 12 + 5];
        p[0] = 0x80 | 0x10 | 2;
        p[20] = 0xbe;
        p[21] = 0xde;
        p[23] = 3;
        assert_eq!(rtp_header_len(&p), Ok(36));
        assert_eq!(rtp_header_len(&p[..36]), Ok(36));
        assert_eq!(rtp_header_len(&p[..35]), Err(Error::Truncated));
        // Extension header itself cut off.
        assert_eq!(rtp_header_len(&p[..22]), Err(Error::Truncated));
        // CSRC list cut off.
        assert_eq!(rtp_header_len(&p[..15]), Err(Error::Truncated));
    }

    #[test]
    fn wrong_version_and_empty() {
        assert_eq!(rtp_header_len(&[]), Err(Error::Truncated));
        assert_eq!(rtp_header_len(&[0x40; 12]), Err(Error::BadVersion));
        assert_eq!(rtcp_ssrc(&[0x80, 200, 0, 1]), Err(Error::Truncated));
        assert_eq!(rtcp_ssrc(&[0x80, 200, 0, 1, 1, 2, 3, 4]), Ok(0x0102_0304));
    }
}
