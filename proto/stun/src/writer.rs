//! Writing the few messages an ICE-lite server and a load-generating ICE
//! client need, straight into a caller-supplied buffer (no allocation).

use std::net::SocketAddr;

use crate::attr;
use crate::integrity::{fingerprint, hmac_sha1, HMAC_LEN};
use crate::message::{message_type, padded, Class};
use crate::{Error, HEADER_LEN, MAGIC_COOKIE, METHOD_BINDING};

/// Largest Binding success response [`write_binding_success`] produces
/// (IPv6): header 20 + XOR-MAPPED-ADDRESS 24 + MESSAGE-INTEGRITY 24 +
/// FINGERPRINT 8. Size response buffers with this.
pub const BINDING_SUCCESS_MAX_LEN: usize = 76;

/// ICE-lite answer to a Binding request: XOR-MAPPED-ADDRESS (the request's
/// source), MESSAGE-INTEGRITY keyed with our ice-pwd, FINGERPRINT.
/// Returns the number of bytes written to `out`.
pub fn write_binding_success(
    transaction_id: &[u8; 12],
    mapped: SocketAddr,
    integrity_key: &[u8],
    out: &mut [u8],
) -> Result<usize, Error> {
    let mut e = Encoder::new(
        out,
        message_type(METHOD_BINDING, Class::SuccessResponse),
        transaction_id,
    )?;
    let mut xor = [0u8; 20];
    let n = attr::encode_xor_address(mapped, transaction_id, &mut xor);
    e.attr(attr::XOR_MAPPED_ADDRESS, &[&xor[..n]])?;
    e.integrity(integrity_key)?;
    e.fingerprint()
}

/// Binding error response with ERROR-CODE `code` (300..=699; ICE uses 400
/// Bad Request, 401 Unauthorized, 487 Role Conflict) and `reason`.
/// MESSAGE-INTEGRITY is added when a key is given: a 401 goes without
/// because the sender's credentials were not recognised (RFC 8489 §9.1.3),
/// a 487 carries it (RFC 8445 §7.3.1.1). Always ends with FINGERPRINT.
pub fn write_binding_error(
    transaction_id: &[u8; 12],
    code: u16,
    reason: &str,
    integrity_key: Option<&[u8]>,
    out: &mut [u8],
) -> Result<usize, Error> {
    if !(300..=699).contains(&code) {
        return Err(Error::InvalidErrorCode(code));
    }
    if reason.len() > attr::MAX_REASON {
        return Err(Error::ValueTooLong(attr::ERROR_CODE));
    }
    let mut e = Encoder::new(
        out,
        message_type(METHOD_BINDING, Class::ErrorResponse),
        transaction_id,
    )?;
    // Both fit in a u8: code / 100 is 3..=6, code % 100 is < 100.
    let head = [0, 0, (code / 100) as u8, (code % 100) as u8];
    e.attr(attr::ERROR_CODE, &[&head, reason.as_bytes()])?;
    if let Some(key) = integrity_key {
        e.integrity(key)?;
    }
    e.fingerprint()
}

/// What an ICE client (the load generator, tests) puts in a Binding request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindingRequest<'a> {
    /// Fresh random ID; the response echoes it.
    pub transaction_id: [u8; 12],
    /// "remote_ufrag:local_ufrag" (RFC 8445 §7.2.2).
    pub username: &'a str,
    /// PRIORITY of the candidate this check would create (peer-reflexive).
    pub priority: u32,
    /// ICE-CONTROLLING tiebreaker when we are controlling; `None` sends no
    /// role attribute.
    pub controlling: Option<u64>,
    /// Nominate the pair (USE-CANDIDATE, controlling agent only).
    pub use_candidate: bool,
}

/// Write a Binding request: USERNAME, PRIORITY, ICE-CONTROLLING,
/// USE-CANDIDATE (if set), MESSAGE-INTEGRITY keyed with the remote
/// ice-pwd, FINGERPRINT. Returns the number of bytes written.
pub fn write_binding_request(
    req: &BindingRequest<'_>,
    integrity_key: &[u8],
    out: &mut [u8],
) -> Result<usize, Error> {
    if req.username.len() > attr::MAX_USERNAME {
        return Err(Error::ValueTooLong(attr::USERNAME));
    }
    let mut e = Encoder::new(
        out,
        message_type(METHOD_BINDING, Class::Request),
        &req.transaction_id,
    )?;
    e.attr(attr::USERNAME, &[req.username.as_bytes()])?;
    e.attr(attr::PRIORITY, &[&req.priority.to_be_bytes()])?;
    if let Some(tiebreaker) = req.controlling {
        e.attr(attr::ICE_CONTROLLING, &[&tiebreaker.to_be_bytes()])?;
    }
    if req.use_candidate {
        e.attr(attr::USE_CANDIDATE, &[])?;
    }
    e.integrity(integrity_key)?;
    e.fingerprint()
}

/// Cursor over the output buffer. The header length is written last, in
/// [`Encoder::fingerprint`]; integrity and fingerprint substitute the
/// length they must cover without touching the buffer.
struct Encoder<'b> {
    buf: &'b mut [u8],
    pos: usize,
}

impl<'b> Encoder<'b> {
    fn new(buf: &'b mut [u8], ty: u16, tid: &[u8; 12]) -> Result<Self, Error> {
        let h = buf.get_mut(..HEADER_LEN).ok_or(Error::BufferTooSmall)?;
        h[0..2].copy_from_slice(&ty.to_be_bytes());
        h[2..4].copy_from_slice(&[0, 0]);
        h[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
        h[8..20].copy_from_slice(tid);
        Ok(Encoder {
            buf,
            pos: HEADER_LEN,
        })
    }

    /// Append one attribute whose value is the concatenation of `parts`,
    /// zero-padded to 4 bytes.
    fn attr(&mut self, t: u16, parts: &[&[u8]]) -> Result<(), Error> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let len16 = u16::try_from(len).map_err(|_| Error::ValueTooLong(t))?;
        let end = self.pos + 4 + padded(len);
        let dst = self
            .buf
            .get_mut(self.pos..end)
            .ok_or(Error::BufferTooSmall)?;
        dst[0..2].copy_from_slice(&t.to_be_bytes());
        dst[2..4].copy_from_slice(&len16.to_be_bytes());
        let mut at = 4;
        for p in parts {
            dst[at..at + p.len()].copy_from_slice(p);
            at += p.len();
        }
        dst[at..].fill(0);
        self.pos = end;
        Ok(())
    }

    /// Length field value if the message ended `extra` bytes past `pos`.
    fn len_with(&self, extra: usize) -> Result<u16, Error> {
        u16::try_from(self.pos + extra - HEADER_LEN).map_err(|_| Error::BufferTooSmall)
    }

    fn integrity(&mut self, key: &[u8]) -> Result<(), Error> {
        let len = self.len_with(4 + HMAC_LEN)?;
        let mac = hmac_sha1(key, &self.buf[..self.pos], len);
        self.attr(attr::MESSAGE_INTEGRITY, &[&mac])
    }

    /// Append FINGERPRINT, fix the header length, return the total size.
    fn fingerprint(mut self) -> Result<usize, Error> {
        let len = self.len_with(8)?;
        let crc = fingerprint(&self.buf[..self.pos], len);
        self.attr(attr::FINGERPRINT, &[&crc.to_be_bytes()])?;
        self.buf[2..4].copy_from_slice(&len.to_be_bytes());
        Ok(self.pos)
    }
}

/// Split an ICE USERNAME "a:b" into (a, b). On a request we receive, `a`
/// is our ufrag and `b` the peer's. `None` unless both halves are
/// non-empty and there is exactly one colon (ufrags are ice-chars, which
/// exclude ':', RFC 8839 §5.4).
#[must_use]
pub fn split_username(username: &str) -> Option<(&str, &str)> {
    let (a, b) = username.split_once(':')?;
    (!a.is_empty() && !b.is_empty() && !b.contains(':')).then_some((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StunMessage;

    const TID: [u8; 12] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];

    #[test]
    fn split_username_cases() {
        assert_eq!(split_username("ours:theirs"), Some(("ours", "theirs")));
        assert_eq!(split_username("ours"), None);
        assert_eq!(split_username(":theirs"), None);
        assert_eq!(split_username("ours:"), None);
        assert_eq!(split_username("a:b:c"), None);
    }

    #[test]
    fn success_response_layout_and_max_len() {
        let mut out = [0u8; BINDING_SUCCESS_MAX_LEN];
        let n = write_binding_success(
            &TID,
            "[2001:db8::1]:5000".parse().unwrap(),
            b"pwd",
            &mut out,
        )
        .unwrap();
        assert_eq!(n, BINDING_SUCCESS_MAX_LEN);
        assert_eq!(&out[0..4], &[0x01, 0x01, 0x00, 56]);
        let n = write_binding_success(&TID, "10.0.0.1:5000".parse().unwrap(), b"pwd", &mut out)
            .unwrap();
        assert_eq!(n, 20 + 12 + 24 + 8);
    }

    #[test]
    fn too_small_buffer_is_an_error_at_every_size() {
        let addr = "10.0.0.1:5000".parse().unwrap();
        let mut big = [0u8; 128];
        let need = write_binding_success(&TID, addr, b"k", &mut big).unwrap();
        for size in 0..need {
            let mut out = vec![0u8; size];
            assert_eq!(
                write_binding_success(&TID, addr, b"k", &mut out),
                Err(Error::BufferTooSmall),
                "size {size}"
            );
        }
    }

    #[test]
    fn error_response_round_trips_with_and_without_integrity() {
        let mut out = [0u8; 128];
        let n = write_binding_error(&TID, 487, "Role Conflict", Some(b"pwd"), &mut out).unwrap();
        let m = StunMessage::parse(&out[..n]).unwrap();
        assert_eq!(m.class, Class::ErrorResponse);
        assert_eq!(m.method, METHOD_BINDING);
        assert_eq!(m.error_code, Some(487));
        assert_eq!(m.error_reason, Some("Role Conflict"));
        assert!(m.verify_integrity(b"pwd"));
        assert!(m.has_valid_fingerprint());

        let n = write_binding_error(&TID, 401, "Unauthorized", None, &mut out).unwrap();
        let m = StunMessage::parse(&out[..n]).unwrap();
        assert_eq!(m.error_code, Some(401));
        assert!(!m.has_integrity());
        assert!(m.has_valid_fingerprint());
    }

    #[test]
    fn error_response_rejects_bad_codes() {
        let mut out = [0u8; 128];
        assert_eq!(
            write_binding_error(&TID, 299, "", None, &mut out),
            Err(Error::InvalidErrorCode(299))
        );
        assert_eq!(
            write_binding_error(&TID, 700, "", None, &mut out),
            Err(Error::InvalidErrorCode(700))
        );
        let long = "x".repeat(764);
        assert_eq!(
            write_binding_error(&TID, 400, &long, None, &mut [0u8; 2048]),
            Err(Error::ValueTooLong(attr::ERROR_CODE))
        );
    }

    #[test]
    fn request_round_trips() {
        let req = BindingRequest {
            transaction_id: TID,
            username: "srv1:cli2",
            priority: 0x6e00_01ff,
            controlling: Some(0x1122_3344_5566_7788),
            use_candidate: true,
        };
        let mut out = [0u8; 128];
        let n = write_binding_request(&req, b"remote-pwd", &mut out).unwrap();
        let m = StunMessage::parse(&out[..n]).unwrap();
        assert!(m.is_binding_request());
        assert_eq!(m.transaction_id, TID);
        assert_eq!(m.username, Some("srv1:cli2"));
        assert_eq!(m.priority, Some(0x6e00_01ff));
        assert_eq!(m.ice_controlling, Some(0x1122_3344_5566_7788));
        assert_eq!(m.ice_controlled, None);
        assert!(m.use_candidate);
        assert!(m.verify_integrity(b"remote-pwd"));
        assert!(!m.verify_integrity(b"other-pwd"));
        assert!(m.has_valid_fingerprint());

        let plain = BindingRequest {
            controlling: None,
            use_candidate: false,
            ..req
        };
        let n = write_binding_request(&plain, b"k", &mut out).unwrap();
        let m = StunMessage::parse(&out[..n]).unwrap();
        assert_eq!(m.ice_controlling, None);
        assert!(!m.use_candidate);
        assert!(m.verify_integrity(b"k"));
    }
}
