//! Cheap framing check run before a datagram reaches OpenSSL. OpenSSL silently
//! discards most junk (RFC 6347 §4.1.2.7), which leaves the caller unable to tell
//! garbage from progress; checking the record headers here lets us return
//! [`Error::Malformed`] and keeps obviously foreign bytes away from the session.

use crate::Error;

/// type(1) version(2) epoch(2) sequence_number(6) length(2).
pub(crate) const HEADER_LEN: usize = 13;
/// TLSCiphertext limit: 2^14 + 2048 (RFC 5246 §6.2.3).
const MAX_RECORD_LEN: usize = (1 << 14) + 2048;

/// Accepts a datagram made of one or more complete DTLS 1.0/1.2 records whose content
/// type is change_cipher_spec, alert, handshake or application_data.
pub(crate) fn check_datagram(mut d: &[u8]) -> Result<(), Error> {
    if d.is_empty() {
        return Err(Error::Malformed("empty datagram"));
    }
    while !d.is_empty() {
        let Some(h) = d.get(..HEADER_LEN) else {
            return Err(Error::Malformed("truncated record header"));
        };
        if !(20..=23).contains(&h[0]) {
            return Err(Error::Malformed("unknown record content type"));
        }
        // 0xFEFF = DTLS 1.0 (allowed on the ClientHello record), 0xFEFD = DTLS 1.2.
        if h[1] != 0xfe || (h[2] != 0xff && h[2] != 0xfd) {
            return Err(Error::Malformed("not a DTLS 1.0/1.2 record version"));
        }
        let len = usize::from(u16::from_be_bytes([h[11], h[12]]));
        if len > MAX_RECORD_LEN {
            return Err(Error::Malformed("record too long"));
        }
        let Some(rest) = d.get(HEADER_LEN + len..) else {
            return Err(Error::Malformed("truncated record body"));
        };
        d = rest;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(ty: u8, body: &[u8]) -> Vec<u8> {
        let mut r = vec![ty, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 7];
        r.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
        r.extend_from_slice(body);
        r
    }

    #[test]
    fn accepts_record_sequences() {
        let mut d = record(22, &[1, 2, 3]);
        d.extend(record(20, &[1]));
        d.extend(record(23, &[]));
        assert!(check_datagram(&d).is_ok());
    }

    #[test]
    fn rejects_bad_framing() {
        assert!(check_datagram(&[]).is_err());
        let r = record(22, &[1, 2, 3]);
        assert!(check_datagram(&r[..HEADER_LEN - 1]).is_err());
        assert!(check_datagram(&r[..r.len() - 1]).is_err());
        let mut extra = r.clone();
        extra.push(0x16);
        assert!(check_datagram(&extra).is_err());
        let mut bad_type = r.clone();
        bad_type[0] = 0x80; // RTP/RTCP range (RFC 7983)
        assert!(check_datagram(&bad_type).is_err());
        let mut tls = r.clone();
        tls[1] = 0x03; // TLS, not DTLS
        assert!(check_datagram(&tls).is_err());
    }
}
