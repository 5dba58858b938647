//! Start-up self-signed certificate. WebRTC authenticates DTLS peers by the
//! certificate fingerprint carried in the SDP, not by a CA chain, so a fresh
//! self-signed ECDSA P-256 certificate (cheap to sign with, what browsers use) is enough.

use std::time::{SystemTime, UNIX_EPOCH};

use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::{X509Name, X509};

use crate::{fingerprint, Error};

const DAY_SECS: i64 = 24 * 60 * 60;
/// Validity window length; starts a day in the past so peers with a slightly
/// wrong clock do not reject the certificate as not-yet-valid.
const VALID_DAYS: i64 = 30;

/// A self-signed ECDSA P-256 certificate (CN "rts") and its private key.
/// Cloning is cheap (OpenSSL reference counts).
#[derive(Clone)]
pub struct DtlsCert {
    pub(crate) cert: X509,
    pub(crate) key: PKey<Private>,
    fingerprint: String,
}

impl DtlsCert {
    /// Generates a fresh key pair and certificate, valid from one day ago for 30 days.
    /// Reads the wall clock once (start-up code, not protocol code).
    pub fn generate() -> Result<Self, Error> {
        let now = SystemTime::now();
        let unix = now.duration_since(UNIX_EPOCH).map_err(|_| Error::Clock)?.as_secs();
        let unix = i64::try_from(unix).map_err(|_| Error::Clock)?;
        Self::generate_at(unix)
    }

    /// As [`DtlsCert::generate`] with the current Unix time passed in.
    fn generate_at(unix_now: i64) -> Result<Self, Error> {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
        let key = PKey::from_ec_key(EcKey::generate(&group)?)?;

        let mut name = X509Name::builder()?;
        name.append_entry_by_nid(Nid::COMMONNAME, "rts")?;
        let name = name.build();

        let mut serial = BigNum::new()?;
        serial.rand(64, MsbOption::MAYBE_ZERO, false)?;
        let serial = Asn1Integer::from_bn(&serial)?;

        let not_before = unix_now - DAY_SECS;
        let not_after = not_before + VALID_DAYS * DAY_SECS;

        let mut b = X509::builder()?;
        b.set_version(2)?;
        b.set_serial_number(&serial)?;
        b.set_subject_name(&name)?;
        b.set_issuer_name(&name)?;
        b.set_pubkey(&key)?;
        let not_before = Asn1Time::from_unix(not_before as libc::time_t)?;
        let not_after = Asn1Time::from_unix(not_after as libc::time_t)?;
        b.set_not_before(&not_before)?;
        b.set_not_after(&not_after)?;
        b.sign(&key, MessageDigest::sha256())?;
        let cert = b.build();

        let fingerprint = fingerprint::sha256(&cert)?;
        Ok(Self { cert, key, fingerprint })
    }

    /// SHA-256 fingerprint, "AB:CD:.." uppercase hex with colons, as in SDP
    /// `a=fingerprint:sha-256`.
    pub fn fingerprint_sha256(&self) -> String {
        self.fingerprint.clone()
    }
}

impl std::fmt::Debug for DtlsCert {
    /// Never prints the private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DtlsCert").field("fingerprint_sha256", &self.fingerprint).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_fields() {
        let c = DtlsCert::generate_at(1_700_000_000).expect("generate");
        let cn = c.cert.subject_name().entries_by_nid(Nid::COMMONNAME).next().expect("cn");
        assert_eq!(cn.data().as_slice(), b"rts");
        // Self-signed with the P-256 key it carries.
        assert!(c.cert.verify(&c.key).expect("verify"));
        assert_eq!(c.key.ec_key().expect("ec").group().curve_name(), Some(Nid::X9_62_PRIME256V1));
        let nb = Asn1Time::from_unix(1_700_000_000 - DAY_SECS).expect("t");
        let na = Asn1Time::from_unix(1_700_000_000 + 29 * DAY_SECS).expect("t");
        assert_eq!(c.cert.not_before().compare(&nb).expect("cmp"), std::cmp::Ordering::Equal);
        assert_eq!(c.cert.not_after().compare(&na).expect("cmp"), std::cmp::Ordering::Equal);
        // 32 bytes -> 32 pairs + 31 colons.
        let fp = c.fingerprint_sha256();
        assert_eq!(fp.len(), 95);
        assert_eq!(fp, fingerprint::sha256(&c.cert).expect("fp"));
        assert!(!format!("{c:?}").contains("PRIVATE"));
    }

    #[test]
    fn fresh_keys_each_time() {
        let a = DtlsCert::generate().expect("a");
        let b = DtlsCert::generate().expect("b");
        assert_ne!(a.fingerprint_sha256(), b.fingerprint_sha256());
    }
}
