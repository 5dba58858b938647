//! Protection profiles (RFC 5764 §4.1.2, RFC 7714 §14.2) and the DTLS-SRTP
//! keying-material split (RFC 5764 §4.2).

use crate::Error;

/// The SRTP protection profiles rts negotiates.
///
/// Only the two profiles browsers actually offer are supported: GCM is
/// preferred (one AEAD pass, 16-byte tag), AES-CM/HMAC-SHA1-80 is the
/// mandatory-to-implement fallback.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Profile {
    /// `SRTP_AEAD_AES_128_GCM`, DTLS-SRTP id 0x0007 (RFC 7714).
    AeadAes128Gcm,
    /// `SRTP_AES128_CM_HMAC_SHA1_80`, DTLS-SRTP id 0x0001 (RFC 3711/5764).
    AesCm128HmacSha1_80,
}

impl Profile {
    /// Maps the `use_srtp` protection-profile id to a profile we support.
    pub fn from_dtls_id(id: u16) -> Option<Profile> {
        match id {
            0x0007 => Some(Profile::AeadAes128Gcm),
            0x0001 => Some(Profile::AesCm128HmacSha1_80),
            _ => None,
        }
    }

    /// The `use_srtp` protection-profile id.
    pub fn dtls_id(self) -> u16 {
        match self {
            Profile::AeadAes128Gcm => 0x0007,
            Profile::AesCm128HmacSha1_80 => 0x0001,
        }
    }

    /// Master (and session) encryption key length in bytes.
    pub fn master_key_len(self) -> usize {
        16
    }

    /// Master (and session) salt length in bytes: 96 bits for GCM, 112 for CM.
    pub fn master_salt_len(self) -> usize {
        match self {
            Profile::AeadAes128Gcm => 12,
            Profile::AesCm128HmacSha1_80 => 14,
        }
    }

    /// Bytes SRTP appends to an RTP packet (the authentication tag).
    pub fn rtp_overhead(self) -> usize {
        self.tag_len()
    }

    /// Bytes SRTCP appends to an RTCP packet: tag plus the 4-byte E‖SRTCP index.
    pub fn rtcp_overhead(self) -> usize {
        self.tag_len() + 4
    }

    pub(crate) fn tag_len(self) -> usize {
        match self {
            Profile::AeadAes128Gcm => 16,
            Profile::AesCm128HmacSha1_80 => 10,
        }
    }
}

/// Keying material exported by DTLS-SRTP, already split into our sending
/// ("local") and receiving ("remote") halves.
///
/// RFC 5764 §4.2 lays the exporter output out as
/// `client_key | server_key | client_salt | server_salt`; the DTLS client
/// protects with the client half. `Debug` is redacted so keys never reach logs.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyingMaterial {
    /// Profile the keys belong to.
    pub profile: Profile,
    /// Master key for packets we send.
    pub local_key: Vec<u8>,
    /// Master salt for packets we send.
    pub local_salt: Vec<u8>,
    /// Master key for packets we receive.
    pub remote_key: Vec<u8>,
    /// Master salt for packets we receive.
    pub remote_salt: Vec<u8>,
}

impl KeyingMaterial {
    /// Bytes to request from the DTLS exporter (`EXTRACTOR-dtls_srtp`).
    pub fn exported_len(profile: Profile) -> usize {
        2 * (profile.master_key_len() + profile.master_salt_len())
    }

    /// Splits the exporter output. `we_are_dtls_server` selects which half is
    /// ours: the DTLS server sends with the server key/salt.
    pub fn from_exported(
        profile: Profile,
        exported: &[u8],
        we_are_dtls_server: bool,
    ) -> Result<Self, Error> {
        let expected = Self::exported_len(profile);
        if exported.len() != expected {
            return Err(Error::KeyLength {
                what: "exported keying material",
                expected,
                got: exported.len(),
            });
        }
        let k = profile.master_key_len();
        let s = profile.master_salt_len();
        let (keys, salts) = exported.split_at(2 * k);
        let (client_key, server_key) = keys.split_at(k);
        let (client_salt, server_salt) = salts.split_at(s);
        let (local, remote) = if we_are_dtls_server {
            ((server_key, server_salt), (client_key, client_salt))
        } else {
            ((client_key, client_salt), (server_key, server_salt))
        };
        Ok(KeyingMaterial {
            profile,
            local_key: local.0.to_vec(),
            local_salt: local.1.to_vec(),
            remote_key: remote.0.to_vec(),
            remote_salt: remote.1.to_vec(),
        })
    }
}

impl core::fmt::Debug for KeyingMaterial {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("KeyingMaterial")
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtls_ids_round_trip() {
        for p in [Profile::AeadAes128Gcm, Profile::AesCm128HmacSha1_80] {
            assert_eq!(Profile::from_dtls_id(p.dtls_id()), Some(p));
        }
        assert_eq!(Profile::from_dtls_id(0x0007), Some(Profile::AeadAes128Gcm));
        assert_eq!(
            Profile::from_dtls_id(0x0001),
            Some(Profile::AesCm128HmacSha1_80)
        );
        // AES_CM_128_HMAC_SHA1_32 and AEAD_AES_256_GCM are not supported.
        assert_eq!(Profile::from_dtls_id(0x0002), None);
        assert_eq!(Profile::from_dtls_id(0x0008), None);
    }

    #[test]
    fn overheads() {
        assert_eq!(Profile::AeadAes128Gcm.rtp_overhead(), 16);
        assert_eq!(Profile::AeadAes128Gcm.rtcp_overhead(), 20);
        assert_eq!(Profile::AesCm128HmacSha1_80.rtp_overhead(), 10);
        assert_eq!(Profile::AesCm128HmacSha1_80.rtcp_overhead(), 14);
    }

    #[test]
    fn exported_split_follows_rfc5764_layout() {
        let p = Profile::AeadAes128Gcm;
        assert_eq!(KeyingMaterial::exported_len(p), 56);
        // client_key = 0x01.., server_key = 0x02.., client_salt = 0x03.., server_salt = 0x04..
        let mut ex = Vec::new();
        ex.extend([1u8; 16]);
        ex.extend([2u8; 16]);
        ex.extend([3u8; 12]);
        ex.extend([4u8; 12]);
        let server = KeyingMaterial::from_exported(p, &ex, true).unwrap();
        assert_eq!(server.local_key, [2u8; 16]);
        assert_eq!(server.local_salt, [4u8; 12]);
        assert_eq!(server.remote_key, [1u8; 16]);
        assert_eq!(server.remote_salt, [3u8; 12]);
        let client = KeyingMaterial::from_exported(p, &ex, false).unwrap();
        assert_eq!(client.local_key, server.remote_key);
        assert_eq!(client.local_salt, server.remote_salt);
        let dbg = format!("{server:?}");
        assert!(
            !dbg.contains("local_key") && !dbg.contains("[2"),
            "Debug must not print keys"
        );
    }

    #[test]
    fn exported_wrong_length_is_error() {
        let p = Profile::AesCm128HmacSha1_80;
        assert_eq!(KeyingMaterial::exported_len(p), 60);
        assert!(matches!(
            KeyingMaterial::from_exported(p, &[0u8; 59], true),
            Err(Error::KeyLength {
                expected: 60,
                got: 59,
                ..
            })
        ));
    }
}
