//! SDP-style certificate fingerprints (RFC 8122 `a=fingerprint:sha-256 AB:CD:..`).

use openssl::hash::MessageDigest;
use openssl::x509::X509Ref;

use crate::Error;

/// SHA-256 over the DER certificate, rendered as uppercase hex pairs joined by ':'.
pub(crate) fn sha256(cert: &X509Ref) -> Result<String, Error> {
    let digest = cert.digest(MessageDigest::sha256())?;
    Ok(format_hex(&digest))
}

/// A hash function a peer's `a=fingerprint` may use that we can check. SHA-1 and MD5,
/// which RFC 8122 still lists, are left out: they no longer resist collisions, and
/// WebRTC stacks offer SHA-256 anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashFunction {
    /// `sha-256`
    Sha256,
    /// `sha-384`
    Sha384,
    /// `sha-512`
    Sha512,
}

impl HashFunction {
    /// The hash named by an SDP `a=fingerprint` (IANA "Hash Function Textual Names",
    /// compared case-insensitively); `None` for one we do not check.
    pub fn from_sdp_name(name: &str) -> Option<Self> {
        [Self::Sha256, Self::Sha384, Self::Sha512]
            .into_iter()
            .find(|h| h.sdp_name().eq_ignore_ascii_case(name))
    }

    /// The name as SDP writes it, e.g. `sha-256`.
    pub fn sdp_name(self) -> &'static str {
        match self {
            Self::Sha256 => "sha-256",
            Self::Sha384 => "sha-384",
            Self::Sha512 => "sha-512",
        }
    }

    /// Digest length in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }

    fn digest(self) -> MessageDigest {
        match self {
            Self::Sha256 => MessageDigest::sha256(),
            Self::Sha384 => MessageDigest::sha384(),
            Self::Sha512 => MessageDigest::sha512(),
        }
    }
}

/// The RFC 8122 fingerprint of a DER-encoded certificate (`der`, e.g.
/// [`SrtpExport::peer_certificate`](crate::SrtpExport::peer_certificate)) with `hash`:
/// uppercase hex pairs joined by ':', as [`crate::DtlsCert::fingerprint_sha256`] writes it.
pub fn certificate_fingerprint(hash: HashFunction, der: &[u8]) -> Result<String, Error> {
    let digest = openssl::hash::hash(hash.digest(), der)?;
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
    use super::*;

    #[test]
    fn hex_is_uppercase_colon_separated() {
        assert_eq!(format_hex(&[0xab, 0x01, 0xff]), "AB:01:FF");
        assert_eq!(format_hex(&[]), "");
    }

    /// The FIPS 180-2 example digests of "abc" (the same as coreutils' `printf abc |
    /// sha256sum`, `sha384sum`, `sha512sum` print), so the hash behind each name is checked
    /// against values not computed by the code under test.
    #[test]
    fn each_hash_matches_its_fips_180_vector() {
        let hex = |s: &str| {
            let b: Vec<String> = (0..s.len())
                .step_by(2)
                .map(|i| s[i..i + 2].to_ascii_uppercase())
                .collect();
            b.join(":")
        };
        for (h, want) in [
            (HashFunction::Sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            (HashFunction::Sha384, "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7"),
            (
                HashFunction::Sha512,
                "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
            ),
        ] {
            let fp = certificate_fingerprint(h, b"abc").unwrap();
            assert_eq!(fp, hex(want), "{h:?}");
            assert_eq!(fp.len(), h.digest_len() * 3 - 1);
        }
    }

    #[test]
    fn names_are_case_insensitive_and_weak_hashes_are_not_checked() {
        assert_eq!(
            HashFunction::from_sdp_name("SHA-384"),
            Some(HashFunction::Sha384)
        );
        assert_eq!(
            HashFunction::from_sdp_name("sha-512"),
            Some(HashFunction::Sha512)
        );
        for weak in ["sha-1", "md5", "sha-224", "", "sha256"] {
            assert_eq!(HashFunction::from_sdp_name(weak), None, "{weak}");
        }
    }
}
