//! SDP-style certificate fingerprints (RFC 8122 `a=fingerprint:sha-256 AB:CD:..`).

use openssl::hash::MessageDigest;
use openssl::x509::X509Ref;

use crate::Error;

/// SHA-256 over the DER certificate, rendered as uppercase hex pairs joined by ':'.
pub(crate) fn sha256(cert: &X509Ref) -> Result<String, Error> {
    let digest = cert.digest(MessageDigest::sha256())?;
    Ok(format_hex(&digest))
}

fn format_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::format_hex;

    #[test]
    fn hex_is_uppercase_colon_separated() {
        assert_eq!(format_hex(&[0xab, 0x01, 0xff]), "AB:01:FF");
        assert_eq!(format_hex(&[]), "");
    }
}
