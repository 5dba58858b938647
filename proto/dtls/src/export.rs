//! SRTP keying material exported after the handshake (RFC 5764 §4.2).

use crate::Role;

/// IANA id of `SRTP_AEAD_AES_128_GCM` (RFC 7714 §14.2).
pub const PROFILE_AEAD_AES_128_GCM: u16 = 0x0007;
/// IANA id of `SRTP_AES128_CM_HMAC_SHA1_80` (RFC 5764 §4.1.2).
pub const PROFILE_AES128_CM_SHA1_80: u16 = 0x0001;
/// Exporter label for DTLS-SRTP (RFC 5764 §4.2).
pub const EXPORTER_LABEL: &str = "EXTRACTOR-dtls_srtp";

/// Result of a completed handshake: everything the dataplane needs to build the
/// SRTP contexts, plus the peer's fingerprint for the caller to check against the SDP.
#[derive(Clone, PartialEq, Eq)]
pub struct SrtpExport {
    /// Negotiated profile: [`PROFILE_AEAD_AES_128_GCM`] or [`PROFILE_AES128_CM_SHA1_80`].
    pub profile_id: u16,
    /// `2 * (key_len + salt_len)` exported bytes laid out as
    /// `client_key | server_key | client_salt | server_salt`; identical on both peers.
    pub material: Vec<u8>,
    /// SHA-256 fingerprint of the peer's certificate, same format as
    /// [`crate::DtlsCert::fingerprint_sha256`]. The caller MUST compare it with the
    /// SDP `a=fingerprint` before using the keys.
    pub peer_fingerprint_sha256: String,
    /// The peer's certificate, DER-encoded: for checking an `a=fingerprint` made with
    /// another hash ([`crate::certificate_fingerprint`]).
    pub peer_certificate: Vec<u8>,
}

impl SrtpExport {
    /// `(master key length, master salt length)` for a profile id this crate negotiates.
    pub fn key_salt_len(profile_id: u16) -> Option<(usize, usize)> {
        match profile_id {
            PROFILE_AEAD_AES_128_GCM => Some((16, 12)),
            PROFILE_AES128_CM_SHA1_80 => Some((16, 14)),
            _ => None,
        }
    }

    /// `(key, salt)` this side encrypts with, when it played `role`.
    pub fn local_key_salt(&self, role: Role) -> Option<(&[u8], &[u8])> {
        self.half(role == Role::Client)
    }

    /// `(key, salt)` the peer encrypts with (this side decrypts with), when it played `role`.
    pub fn remote_key_salt(&self, role: Role) -> Option<(&[u8], &[u8])> {
        self.half(role == Role::Server)
    }

    fn half(&self, client: bool) -> Option<(&[u8], &[u8])> {
        let (k, s) = Self::key_salt_len(self.profile_id)?;
        if self.material.len() != 2 * (k + s) {
            return None;
        }
        let (key_at, salt_at) = if client { (0, 2 * k) } else { (k, 2 * k + s) };
        Some((&self.material[key_at..key_at + k], &self.material[salt_at..salt_at + s]))
    }
}

impl std::fmt::Debug for SrtpExport {
    /// Keys stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtpExport")
            .field("profile_id", &self.profile_id)
            .field("material_len", &self.material.len())
            .field("peer_fingerprint_sha256", &self.peer_fingerprint_sha256)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_rfc5764_layout() {
        // client_key(16)=0 | server_key(16)=1 | client_salt(14)=2 | server_salt(14)=3
        let mut material = vec![0u8; 16];
        material.extend([1u8; 16]);
        material.extend([2u8; 14]);
        material.extend([3u8; 14]);
        let e = SrtpExport {
            profile_id: PROFILE_AES128_CM_SHA1_80,
            material,
            peer_fingerprint_sha256: String::new(),
            peer_certificate: Vec::new(),
        };
        assert_eq!(e.local_key_salt(Role::Client), Some((&[0u8; 16][..], &[2u8; 14][..])));
        assert_eq!(e.remote_key_salt(Role::Client), Some((&[1u8; 16][..], &[3u8; 14][..])));
        assert_eq!(e.local_key_salt(Role::Server), e.remote_key_salt(Role::Client));
        assert!(!format!("{e:?}").contains("[0, 0"));
        let short = SrtpExport { material: vec![0; 10], ..e };
        assert_eq!(short.local_key_salt(Role::Client), None);
    }

    #[test]
    fn gcm_lengths() {
        assert_eq!(SrtpExport::key_salt_len(PROFILE_AEAD_AES_128_GCM), Some((16, 12)));
        assert_eq!(SrtpExport::key_salt_len(0x0002), None);
    }
}
