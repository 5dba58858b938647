//! MESSAGE-INTEGRITY (HMAC-SHA1) and FINGERPRINT (CRC-32) over a message
//! prefix. Both cover the header with its length field rewritten to end
//! just after the attribute being computed (RFC 8489 §14.5, §14.7), so the
//! callers pass the prefix plus that length instead of patching a copy:
//! the three pieces are fed to the hash in turn, no buffer needed.

use aws_lc_rs::{constant_time, hmac};

/// Size of the HMAC-SHA1 value in MESSAGE-INTEGRITY.
pub(crate) const HMAC_LEN: usize = 20;
/// XORed into the CRC so a STUN CRC never equals another protocol's
/// (RFC 8489 §14.7).
const FINGERPRINT_XOR: u32 = 0x5354_554e;

/// HMAC-SHA1 of `prefix` (header + attributes before MESSAGE-INTEGRITY)
/// with the header length field replaced by `len_field`.
pub(crate) fn hmac_sha1(key: &[u8], prefix: &[u8], len_field: u16) -> [u8; HMAC_LEN] {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
    let mut ctx = hmac::Context::with_key(&key);
    feed(prefix, len_field, |part| ctx.update(part));
    let mut out = [0u8; HMAC_LEN];
    out.copy_from_slice(ctx.sign().as_ref());
    out
}

/// Constant-time check of a received MESSAGE-INTEGRITY value.
pub(crate) fn hmac_matches(key: &[u8], prefix: &[u8], len_field: u16, mac: &[u8]) -> bool {
    constant_time::verify_slices_are_equal(&hmac_sha1(key, prefix, len_field), mac).is_ok()
}

/// FINGERPRINT value for `prefix` with the length field set to `len_field`.
pub(crate) fn fingerprint(prefix: &[u8], len_field: u16) -> u32 {
    let mut crc = crc32fast::Hasher::new();
    feed(prefix, len_field, |part| crc.update(part));
    crc.finalize() ^ FINGERPRINT_XOR
}

/// Feed type, substituted length, then the rest of `prefix` (which always
/// holds at least the 20-byte header when called from this crate).
fn feed(prefix: &[u8], len_field: u16, mut f: impl FnMut(&[u8])) {
    let (ty, rest) = prefix.split_at(2.min(prefix.len()));
    f(ty);
    f(&len_field.to_be_bytes());
    f(rest.get(2..).unwrap_or_default());
}
