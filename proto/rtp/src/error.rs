//! The crate's single error type.

/// Everything that can go wrong while parsing or building RTP/RTCP.
///
/// Malformed input from the network always ends up here; nothing in this
/// crate panics on untrusted bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input ended before a structure it announces was complete.
    #[error("input too short: need {needed} bytes, have {have}")]
    TooShort {
        /// Bytes required by the structure being parsed.
        needed: usize,
        /// Bytes actually available.
        have: usize,
    },
    /// RTP and RTCP are version 2 only.
    #[error("unsupported RTP/RTCP version {0}")]
    BadVersion(u8),
    /// The padding count is zero or larger than the packet body.
    #[error("invalid padding length")]
    BadPadding,
    /// A length field points outside the buffer or is otherwise inconsistent.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// The caller's output buffer cannot hold what should be written.
    #[error("output buffer too small: need {needed} bytes, have {have}")]
    BufferTooSmall {
        /// Bytes the write requires.
        needed: usize,
        /// Bytes available in the caller's buffer.
        have: usize,
    },
    /// AVCC NAL length prefixes are 1, 2 or 4 bytes (3 tolerated).
    #[error("AVCC length size must be 1..=4, got {0}")]
    BadLengthSize(usize),
    /// The configured maximum packet size leaves no room for payload.
    #[error("max packet size {0} too small (minimum 15)")]
    MaxPacketSizeTooSmall(usize),
    /// A caller-supplied argument cannot be encoded (e.g. a NACK with no
    /// sequence numbers, a CNAME over 255 bytes, more than 31 report blocks).
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
}
