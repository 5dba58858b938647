//! The crate's single error type.

/// Everything that can go wrong in `rts-srtp`.
///
/// Malformed or forged input from the network always surfaces as one of
/// these variants; nothing in this crate panics on untrusted bytes.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A master key, master salt or exported keying block had the wrong size.
    #[error("{what} must be {expected} bytes, got {got}")]
    KeyLength {
        /// Which input was wrong.
        what: &'static str,
        /// Length the profile requires.
        expected: usize,
        /// Length supplied.
        got: usize,
    },
    /// The packet is shorter than its header, CSRC list, extension or tag claims.
    #[error("packet truncated")]
    Truncated,
    /// The first two bits are not RTP/RTCP version 2.
    #[error("not an RTP/RTCP version 2 packet")]
    BadVersion,
    /// `header` passed to `protect_rtp` is not exactly one RTP header.
    #[error("header slice is {got} bytes but the RTP header is {parsed} bytes")]
    HeaderMismatch {
        /// Length of the `header` slice.
        got: usize,
        /// Length its CC/X fields describe.
        parsed: usize,
    },
    /// `protect_rtp_padded`: padding asked for, but the header's P bit is
    /// clear.
    #[error("RTP padding without the header's P bit")]
    PaddingFlag,
    /// The caller's output buffer cannot hold the protected packet.
    #[error("output buffer too small: need {needed} bytes, have {got}")]
    OutputTooSmall {
        /// Bytes required.
        needed: usize,
        /// Bytes available.
        got: usize,
    },
    /// Authentication tag did not verify (tampered, wrong key or wrong ROC).
    #[error("SRTP authentication failed")]
    AuthFailed,
    /// The packet index was already received (replay window hit).
    #[error("replayed packet")]
    Replay,
    /// The packet index is older than the replay window covers.
    #[error("packet too old for the replay window")]
    TooOld,
    /// The index would precede the first packet of this SSRC (ROC would be -1).
    #[error("packet index precedes the start of the stream")]
    BeforeStart,
    /// 2^48 packets were protected under one master key; rekey (RFC 3711 §9.2).
    #[error("SRTP packet index exhausted; rekey required")]
    IndexExhausted,
    /// More SSRCs than one context tracks (bounded to cap memory per viewer).
    #[error("too many SSRCs in one SRTP context")]
    TooManySsrcs,
    /// The crypto backend refused an operation it should not refuse.
    #[error("crypto backend failure")]
    Crypto,
}

impl From<ring::error::Unspecified> for Error {
    fn from(_: ring::error::Unspecified) -> Self {
        Error::Crypto
    }
}

impl From<aws_lc_rs::error::Unspecified> for Error {
    fn from(_: aws_lc_rs::error::Unspecified) -> Self {
        Error::Crypto
    }
}
