//! The crate's single error type.

/// Everything that can go wrong parsing or writing STUN.
///
/// Parse errors carry just enough context to log; the dataplane drops the
/// datagram on any of them (a malformed request never gets a reply, which
/// is what RFC 8489 §6.3 asks of a receiver that cannot trust the header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Fewer than 20 bytes: not even a header.
    #[error("datagram shorter than the 20-byte STUN header")]
    TooShort,
    /// Top two bits set or magic cookie wrong: not (RFC 5389+) STUN.
    #[error("not a STUN message (leading bits or magic cookie)")]
    NotStun,
    /// Header length not a multiple of 4 or not equal to the datagram body.
    #[error("STUN length field {declared} does not match body of {actual} bytes")]
    LengthMismatch {
        /// Length from the header.
        declared: usize,
        /// Bytes actually following the header.
        actual: usize,
    },
    /// An attribute header or value runs past the end of the message.
    #[error("attribute runs past end of message")]
    Truncated,
    /// A known attribute has the wrong length or an invalid value.
    #[error("malformed attribute 0x{0:04x}")]
    InvalidAttribute(u16),
    /// An unknown comprehension-required attribute (0x0000..=0x7fff).
    #[error("unknown comprehension-required attribute 0x{0:04x}")]
    UnknownRequiredAttribute(u16),
    /// FINGERPRINT must be the last attribute (RFC 8489 §14.7).
    #[error("attribute after FINGERPRINT")]
    AttributeAfterFingerprint,
    /// The caller's output buffer cannot hold the message.
    #[error("output buffer too small")]
    BufferTooSmall,
    /// ERROR-CODE outside 300..=699 (RFC 8489 §14.8).
    #[error("error code {0} outside 300..=699")]
    InvalidErrorCode(u16),
    /// A value to be written exceeds its attribute's limit (e.g. USERNAME > 513 bytes).
    #[error("value too long for attribute 0x{0:04x}")]
    ValueTooLong(u16),
}
