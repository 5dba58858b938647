//! The one error type of this crate.

/// Why an SDP could not be parsed or answered.
///
/// Line numbers are 1-based so they can be shown to whoever sent the SDP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The first line is not `v=0`.
    #[error("SDP must start with v=0")]
    MissingVersion,
    /// A line is not of the form `<letter>=<value>`.
    #[error("line {line}: not a <type>=<value> line")]
    BadLine {
        /// 1-based line number.
        line: usize,
    },
    /// An `m=` line does not follow `m=<media> <port> <proto> <fmt> ...`.
    #[error("line {line}: malformed m= line")]
    BadMediaLine {
        /// 1-based line number.
        line: usize,
    },
    /// A payload type (in `m=`, `a=rtpmap`, `a=fmtp`, `a=rtcp-fb`) is not a number in 0..=127.
    #[error("line {line}: payload type is not a number in 0..=127")]
    BadPayloadType {
        /// 1-based line number.
        line: usize,
    },
    /// A known attribute has a value we cannot read.
    #[error("line {line}: malformed a={attribute}")]
    BadAttribute {
        /// 1-based line number.
        line: usize,
        /// Attribute name, e.g. `rtpmap`.
        attribute: &'static str,
    },
    /// The offer has neither H.264 (packetization-mode=1) video nor Opus audio.
    #[error("offer has no H.264 video and no Opus audio")]
    NoCommonCodec,
    /// A media section we would accept lacks something a DTLS-SRTP answer needs.
    #[error("m-line {index}: offer lacks {what}")]
    MissingAttribute {
        /// 0-based index of the m-line.
        index: usize,
        /// `mid`, `ice-ufrag`, `ice-pwd` or `fingerprint`.
        what: &'static str,
    },
    /// The offer asks us to be the DTLS server *and* claims `setup:passive` itself.
    #[error("m-line {index}: offer is setup:passive, we can only be passive")]
    IncompatibleSetup {
        /// 0-based index of the m-line.
        index: usize,
    },
    /// An [`AnswerOptions`](crate::AnswerOptions) string is empty or contains whitespace or
    /// control characters (it would corrupt the SDP).
    #[error("answer option {0} is empty or contains whitespace/control characters")]
    InvalidOption(&'static str),
}
