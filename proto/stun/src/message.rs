//! Zero-copy STUN message parsing (RFC 8489 §5, §14) with the ICE
//! attributes of RFC 8445 §16.1.

use std::net::SocketAddr;

use crate::attr;
use crate::integrity::{fingerprint, hmac_matches, HMAC_LEN};
use crate::{Error, HEADER_LEN, MAGIC_COOKIE};

/// STUN message class (RFC 8489 §5), the C1/C0 bits of the type field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Expects a response.
    Request,
    /// Fire-and-forget.
    Indication,
    /// 2xx-style answer.
    SuccessResponse,
    /// Carries ERROR-CODE.
    ErrorResponse,
}

impl Class {
    fn from_type(t: u16) -> Self {
        match ((t >> 7) & 0b10) | ((t >> 4) & 0b1) {
            0 => Class::Request,
            1 => Class::Indication,
            2 => Class::SuccessResponse,
            _ => Class::ErrorResponse,
        }
    }

    fn type_bits(self) -> u16 {
        match self {
            Class::Request => 0x0000,
            Class::Indication => 0x0010,
            Class::SuccessResponse => 0x0100,
            Class::ErrorResponse => 0x0110,
        }
    }
}

/// Build the 14-bit message type from a 12-bit method and a class: the
/// class bits are interleaved into the method (RFC 8489 §5, figure 3).
pub(crate) fn message_type(method: u16, class: Class) -> u16 {
    (method & 0x000F) | ((method & 0x0070) << 1) | ((method & 0x0F80) << 2) | class.type_bits()
}

fn method_from_type(t: u16) -> u16 {
    (t & 0x000F) | ((t & 0x00E0) >> 1) | ((t & 0x3E00) >> 2)
}

/// A parsed STUN message borrowing the datagram it came from.
///
/// Only the attributes an ICE agent acts on are decoded; the rest are
/// validated for framing and skipped. Integrity and fingerprint are not
/// checked by [`StunMessage::parse`] because the key depends on USERNAME,
/// which the caller must look up first.
#[derive(Debug, Clone)]
pub struct StunMessage<'a> {
    /// Message class.
    pub class: Class,
    /// 12-bit method ([`crate::METHOD_BINDING`] for ICE).
    pub method: u16,
    /// Transaction ID to echo in the response.
    pub transaction_id: [u8; 12],
    /// USERNAME ("recipient_ufrag:sender_ufrag" in ICE).
    pub username: Option<&'a str>,
    /// ICE PRIORITY of the peer-reflexive candidate.
    pub priority: Option<u32>,
    /// ICE USE-CANDIDATE flag (nomination).
    pub use_candidate: bool,
    /// ICE-CONTROLLING tiebreaker.
    pub ice_controlling: Option<u64>,
    /// ICE-CONTROLLED tiebreaker.
    pub ice_controlled: Option<u64>,
    /// ERROR-CODE number (300..=699) in error responses.
    pub error_code: Option<u16>,
    /// ERROR-CODE reason phrase.
    pub error_reason: Option<&'a str>,
    /// XOR-MAPPED-ADDRESS in success responses.
    pub xor_mapped_address: Option<SocketAddr>,
    raw: &'a [u8],
    /// Offset of the MESSAGE-INTEGRITY attribute header.
    integrity_at: Option<usize>,
    /// Offset of the FINGERPRINT attribute header.
    fingerprint_at: Option<usize>,
}

impl<'a> StunMessage<'a> {
    /// Parse one STUN message that must fill `buf` exactly.
    ///
    /// Strict on framing (length field, attribute bounds and padding,
    /// lengths of known attributes, FINGERPRINT last). Unknown
    /// comprehension-optional attributes (0x8000..) are skipped; unknown
    /// comprehension-required ones are an error. Attributes after
    /// MESSAGE-INTEGRITY other than FINGERPRINT are ignored and a repeated
    /// attribute keeps its first value, both per RFC 8489 §14.
    pub fn parse(buf: &'a [u8]) -> Result<Self, Error> {
        let header: &[u8; HEADER_LEN] = buf.first_chunk().ok_or(Error::TooShort)?;
        let ty = u16::from_be_bytes([header[0], header[1]]);
        if ty & 0xC000 != 0 || header[4..8] != MAGIC_COOKIE.to_be_bytes() {
            return Err(Error::NotStun);
        }
        let declared = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let actual = buf.len() - HEADER_LEN;
        if declared != actual || declared % 4 != 0 {
            return Err(Error::LengthMismatch { declared, actual });
        }
        let mut transaction_id = [0u8; 12];
        transaction_id.copy_from_slice(&header[8..20]);
        let mut msg = StunMessage {
            class: Class::from_type(ty),
            method: method_from_type(ty),
            transaction_id,
            username: None,
            priority: None,
            use_candidate: false,
            ice_controlling: None,
            ice_controlled: None,
            error_code: None,
            error_reason: None,
            xor_mapped_address: None,
            raw: buf,
            integrity_at: None,
            fingerprint_at: None,
        };
        let mut off = HEADER_LEN;
        while off < buf.len() {
            if msg.fingerprint_at.is_some() {
                return Err(Error::AttributeAfterFingerprint);
            }
            let (t, value, next) = read_attribute(buf, off)?;
            if msg.integrity_at.is_none() || t == attr::FINGERPRINT {
                msg.apply(t, value, off)?;
            }
            off = next;
        }
        Ok(msg)
    }

    /// Decode one attribute into the message. `off` is where its header starts.
    fn apply(&mut self, t: u16, v: &'a [u8], off: usize) -> Result<(), Error> {
        let bad = Error::InvalidAttribute(t);
        match t {
            attr::USERNAME => {
                if v.len() > attr::MAX_USERNAME {
                    return Err(bad);
                }
                let s = std::str::from_utf8(v).map_err(|_| bad)?;
                self.username.get_or_insert(s);
            }
            attr::PRIORITY => {
                let p = u32::from_be_bytes(v.try_into().map_err(|_| bad)?);
                self.priority.get_or_insert(p);
            }
            attr::USE_CANDIDATE if v.is_empty() => self.use_candidate = true,
            attr::USE_CANDIDATE => return Err(bad),
            attr::ICE_CONTROLLING => {
                let x = u64::from_be_bytes(v.try_into().map_err(|_| bad)?);
                self.ice_controlling.get_or_insert(x);
            }
            attr::ICE_CONTROLLED => {
                let x = u64::from_be_bytes(v.try_into().map_err(|_| bad)?);
                self.ice_controlled.get_or_insert(x);
            }
            attr::ERROR_CODE => {
                let (code, reason) = attr::decode_error_code(v)?;
                if self.error_code.is_none() {
                    self.error_code = Some(code);
                    self.error_reason = Some(reason);
                }
            }
            attr::XOR_MAPPED_ADDRESS => {
                let a = attr::decode_xor_address(v, &self.transaction_id)?;
                self.xor_mapped_address.get_or_insert(a);
            }
            attr::MESSAGE_INTEGRITY if v.len() == HMAC_LEN => self.integrity_at = Some(off),
            attr::FINGERPRINT if v.len() == 4 => self.fingerprint_at = Some(off),
            attr::MESSAGE_INTEGRITY | attr::FINGERPRINT => return Err(bad),
            t if t < 0x8000 && !attr::is_known_ignored(t) => {
                return Err(Error::UnknownRequiredAttribute(t));
            }
            _ => {}
        }
        Ok(())
    }

    /// Whether MESSAGE-INTEGRITY is present and is the HMAC-SHA1 of the
    /// message up to it under `key` (for ICE: the recipient's ice-pwd as
    /// raw bytes, RFC 8445 §7.2.2). Constant-time compare.
    #[must_use]
    pub fn verify_integrity(&self, key: &[u8]) -> bool {
        let Some(at) = self.integrity_at else {
            return false;
        };
        // The HMAC covers a header whose length ends right after
        // MESSAGE-INTEGRITY, ignoring FINGERPRINT or anything following.
        let Ok(len) = u16::try_from(at + 4 + HMAC_LEN - HEADER_LEN) else {
            return false;
        };
        let mac = &self.raw[at + 4..at + 4 + HMAC_LEN];
        hmac_matches(key, &self.raw[..at], len, mac)
    }

    /// Whether FINGERPRINT is present and correct.
    #[must_use]
    pub fn has_valid_fingerprint(&self) -> bool {
        let Some(at) = self.fingerprint_at else {
            return false;
        };
        // FINGERPRINT is last, so the header length already ends after it.
        let Ok(len) = u16::try_from(at + 8 - HEADER_LEN) else {
            return false;
        };
        let v = &self.raw[at + 4..at + 8];
        fingerprint(&self.raw[..at], len).to_be_bytes() == v
    }

    /// Whether the message carries MESSAGE-INTEGRITY at all.
    #[must_use]
    pub fn has_integrity(&self) -> bool {
        self.integrity_at.is_some()
    }

    /// Whether the message carries FINGERPRINT at all (ICE requires it,
    /// RFC 8445 §7.2.2; a present-but-wrong one means "not STUN").
    #[must_use]
    pub fn has_fingerprint(&self) -> bool {
        self.fingerprint_at.is_some()
    }

    /// Whether this is a Binding request (ICE connectivity check or
    /// RFC 7675 consent refresh; the server answers both the same way).
    #[must_use]
    pub fn is_binding_request(&self) -> bool {
        self.class == Class::Request && self.method == crate::METHOD_BINDING
    }
}

/// Read the attribute whose header is at `off`: returns its type, its
/// value, and the offset of the next attribute (after padding).
fn read_attribute(buf: &[u8], off: usize) -> Result<(u16, &[u8], usize), Error> {
    let h = buf.get(off..off + 4).ok_or(Error::Truncated)?;
    let t = u16::from_be_bytes([h[0], h[1]]);
    let len = usize::from(u16::from_be_bytes([h[2], h[3]]));
    let start = off + 4;
    let next = start + padded(len);
    if next > buf.len() {
        return Err(Error::Truncated);
    }
    Ok((t, &buf[start..start + len], next))
}

/// Attribute values are padded to a multiple of 4 bytes.
pub(crate) fn padded(len: usize) -> usize {
    (len + 3) & !3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_field_interleaves_class_bits() {
        assert_eq!(message_type(0x001, Class::Request), 0x0001);
        assert_eq!(message_type(0x001, Class::Indication), 0x0011);
        assert_eq!(message_type(0x001, Class::SuccessResponse), 0x0101);
        assert_eq!(message_type(0x001, Class::ErrorResponse), 0x0111);
        for method in [0x000, 0x001, 0x003, 0x07F, 0x0F0, 0xFFF] {
            for class in [
                Class::Request,
                Class::Indication,
                Class::SuccessResponse,
                Class::ErrorResponse,
            ] {
                let t = message_type(method, class);
                assert_eq!(method_from_type(t), method);
                assert_eq!(Class::from_type(t), class);
            }
        }
    }

    fn msg(attrs: &[u8]) -> Vec<u8> {
        let mut v = vec![0x00, 0x01];
        v.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        v.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        v.extend_from_slice(&[9; 12]);
        v.extend_from_slice(attrs);
        v
    }

    #[test]
    fn header_errors() {
        assert_eq!(StunMessage::parse(&[0; 19]).unwrap_err(), Error::TooShort);
        let mut m = msg(&[]);
        m[0] = 0x40;
        assert_eq!(StunMessage::parse(&m).unwrap_err(), Error::NotStun);
        let mut m = msg(&[]);
        m[4] = 0;
        assert_eq!(StunMessage::parse(&m).unwrap_err(), Error::NotStun);
        let mut m = msg(&[0, 0x25, 0, 0]);
        m.push(0);
        assert!(matches!(
            StunMessage::parse(&m),
            Err(Error::LengthMismatch { .. })
        ));
    }

    #[test]
    fn attribute_framing_errors() {
        // Value length runs past the end.
        let m = msg(&[0x00, 0x24, 0x00, 0x08, 0, 0, 0, 1]);
        assert_eq!(StunMessage::parse(&m).unwrap_err(), Error::Truncated);
        // PRIORITY with 2 bytes.
        let m = msg(&[0x00, 0x24, 0x00, 0x02, 0, 1, 0, 0]);
        assert_eq!(
            StunMessage::parse(&m).unwrap_err(),
            Error::InvalidAttribute(0x0024)
        );
        // USE-CANDIDATE with a value.
        let m = msg(&[0x00, 0x25, 0x00, 0x04, 0, 0, 0, 0]);
        assert_eq!(
            StunMessage::parse(&m).unwrap_err(),
            Error::InvalidAttribute(0x0025)
        );
        // Unknown comprehension-required.
        let m = msg(&[0x00, 0x7f, 0x00, 0x00]);
        assert_eq!(
            StunMessage::parse(&m).unwrap_err(),
            Error::UnknownRequiredAttribute(0x7f)
        );
        // Attribute after FINGERPRINT.
        let m = msg(&[0x80, 0x28, 0x00, 0x04, 1, 2, 3, 4, 0x00, 0x25, 0x00, 0x00]);
        assert_eq!(
            StunMessage::parse(&m).unwrap_err(),
            Error::AttributeAfterFingerprint
        );
        // Non-UTF-8 USERNAME.
        let m = msg(&[0x00, 0x06, 0x00, 0x01, 0xff, 0, 0, 0]);
        assert_eq!(
            StunMessage::parse(&m).unwrap_err(),
            Error::InvalidAttribute(0x0006)
        );
    }

    #[test]
    fn optional_unknowns_skipped_first_duplicate_wins_after_integrity_ignored() {
        let mut a = vec![];
        a.extend_from_slice(&[0xc0, 0x57, 0x00, 0x04, 0, 1, 0, 10]); // GOOG-NETWORK-INFO
        a.extend_from_slice(&[0x00, 0x24, 0x00, 0x04, 0, 0, 0, 1]);
        a.extend_from_slice(&[0x00, 0x24, 0x00, 0x04, 0, 0, 0, 2]);
        a.extend_from_slice(&[0x00, 0x08, 0x00, 0x14]);
        a.extend_from_slice(&[0; 20]);
        // Ignored: would be an error before MESSAGE-INTEGRITY.
        a.extend_from_slice(&[0x00, 0x7f, 0x00, 0x00]);
        a.extend_from_slice(&[0x00, 0x25, 0x00, 0x00]);
        let m = msg(&a);
        let p = StunMessage::parse(&m).unwrap();
        assert_eq!(p.priority, Some(1));
        assert!(!p.use_candidate);
        assert!(p.has_integrity());
        assert!(!p.has_fingerprint());
        assert!(!p.has_valid_fingerprint());
        assert!(p.is_binding_request());
    }
}
