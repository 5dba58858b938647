//! SRTP key derivation: the AES-CM PRF of RFC 3711 §4.3 with
//! key_derivation_rate = 0 (the only rate DTLS-SRTP uses).
//!
//! RFC 7714 §11 reuses the same PRF for the GCM profiles; its 96-bit master
//! salt is zero-padded on the right to 112 bits, as libsrtp and browsers do.

use aws_lc_rs::cipher::{EncryptingKey, EncryptionContext, UnboundCipherKey, AES_128};
use aws_lc_rs::iv::FixedLength;

use crate::Error;

/// RFC 3711 §4.3.2 labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Label {
    RtpEncryption = 0,
    RtpAuth = 1,
    RtpSalt = 2,
    RtcpEncryption = 3,
    RtcpAuth = 4,
    RtcpSalt = 5,
}

/// Session keys for one direction of RTP or RTCP (fixed-size: no heap).
#[derive(Clone)]
pub(crate) struct SessionKeys {
    pub(crate) key: [u8; 16],
    /// Only the first `salt_len` bytes are meaningful (12 GCM, 14 CM).
    pub(crate) salt: [u8; 14],
    /// HMAC-SHA1 key; unused by GCM.
    pub(crate) auth: [u8; 20],
}

/// Prepared PRF: the master key schedule is expanded once.
pub(crate) struct Kdf {
    prf: EncryptingKey,
    salt: [u8; 14],
}

impl Kdf {
    pub(crate) fn new(master_key: &[u8], master_salt: &[u8]) -> Result<Self, Error> {
        if master_key.len() != 16 {
            return Err(Error::KeyLength {
                what: "master key",
                expected: 16,
                got: master_key.len(),
            });
        }
        if master_salt.len() > 14 {
            return Err(Error::KeyLength {
                what: "master salt",
                expected: 14,
                got: master_salt.len(),
            });
        }
        let mut salt = [0u8; 14];
        salt[..master_salt.len()].copy_from_slice(master_salt);
        let prf = EncryptingKey::ctr(UnboundCipherKey::new(&AES_128, master_key)?)?;
        Ok(Kdf { prf, salt })
    }

    /// Fills `out` with PRF output for `label`:
    /// AES-CTR keystream under the master key with IV = (salt XOR label<<48) << 16.
    pub(crate) fn derive(&self, label: Label, out: &mut [u8]) -> Result<(), Error> {
        let mut iv = [0u8; 16];
        iv[..14].copy_from_slice(&self.salt);
        iv[7] ^= label as u8;
        out.fill(0);
        self.prf
            .less_safe_encrypt(out, EncryptionContext::Iv128(FixedLength::from(iv)))?;
        Ok(())
    }

    /// Derives the three session keys for RTP (`rtcp = false`) or RTCP.
    pub(crate) fn session_keys(&self, rtcp: bool, salt_len: usize) -> Result<SessionKeys, Error> {
        let (le, la, ls) = if rtcp {
            (Label::RtcpEncryption, Label::RtcpAuth, Label::RtcpSalt)
        } else {
            (Label::RtpEncryption, Label::RtpAuth, Label::RtpSalt)
        };
        let mut keys = SessionKeys {
            key: [0; 16],
            salt: [0; 14],
            auth: [0; 20],
        };
        self.derive(le, &mut keys.key)?;
        self.derive(la, &mut keys.auth)?;
        self.derive(ls, &mut keys.salt[..salt_len])?;
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    /// RFC 3711 Appendix B.3.
    #[test]
    fn rfc3711_b3_key_derivation() {
        let kdf = Kdf::new(
            &h("E1F97A0D3E018BE0D64FA32C06DE4139"),
            &h("0EC675AD498AFEEBB6960B3AABE6"),
        )
        .unwrap();
        let mut key = [0u8; 16];
        kdf.derive(Label::RtpEncryption, &mut key).unwrap();
        assert_eq!(key[..], h("C61E7A93744F39EE10734AFE3FF7A087")[..]);
        let mut salt = [0u8; 14];
        kdf.derive(Label::RtpSalt, &mut salt).unwrap();
        assert_eq!(salt[..], h("30CBBC08863D8C85D49DB34A9AE1")[..]);
        // B.3 prints 94 bytes of auth-key PRF output; check all of them.
        let mut auth = [0u8; 94];
        kdf.derive(Label::RtpAuth, &mut auth).unwrap();
        assert_eq!(
            auth[..],
            h("CEBE321F6FF7716B6FD4AB49AF256A15\
               6D38BAA48F0A0ACF3C34E2359E6CDBCE\
               E049646C43D9327AD175578EF7227098\
               6371C10C9A369AC2F94A8C5FBCDDDC25\
               6D6E919A48B610EF17C2041E47403576\
               6B68642C59BBFC2F34DB60DBDFB2")[..]
        );
        let keys = kdf.session_keys(false, 14).unwrap();
        assert_eq!(keys.key[..], h("C61E7A93744F39EE10734AFE3FF7A087")[..]);
        assert_eq!(
            keys.auth[..],
            h("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4")[..]
        );
        assert_eq!(keys.salt[..], h("30CBBC08863D8C85D49DB34A9AE1")[..]);
    }

    #[test]
    fn rtcp_labels_differ_from_rtp() {
        let kdf = Kdf::new(&[7u8; 16], &[9u8; 14]).unwrap();
        let rtp = kdf.session_keys(false, 14).unwrap();
        let rtcp = kdf.session_keys(true, 14).unwrap();
        assert_ne!(rtp.key, rtcp.key);
        assert_ne!(rtp.auth, rtcp.auth);
        assert_ne!(rtp.salt, rtcp.salt);
    }

    #[test]
    fn bad_lengths_rejected() {
        assert!(Kdf::new(&[0u8; 15], &[0u8; 14]).is_err());
        assert!(Kdf::new(&[0u8; 16], &[0u8; 15]).is_err());
    }
}
