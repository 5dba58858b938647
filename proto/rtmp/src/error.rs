//! The crate's error type.
//!
//! [`RtmpError`] is the one error a connection returns; every variant is fatal for the
//! connection, and its `Display` text is short enough to use as a counted close reason.
//! [`FlvError`] is the FLV tag parser's module error, wrapped by [`RtmpError::Flv`] so a caller
//! that parses tags inside its connection handler can use one `?`.

use thiserror::Error;

/// Why an RTMP connection failed. Every variant means "close the TCP connection".
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RtmpError {
    /// The handshake bytes were not RTMP (bad version byte and the like).
    #[error("rtmp handshake: {0}")]
    Handshake(String),
    /// The peer closed the connection before the handshake completed.
    #[error("rtmp handshake truncated")]
    HandshakeTruncated,
    /// The chunk stream could not be decoded.
    #[error("rtmp chunk: {0}")]
    Chunk(String),
    /// The chunk decoder hit an internal assertion on malformed input (rml_rtmp panics on
    /// some interleaved or inconsistent chunk headers; the panic is caught and the
    /// connection is failed instead).
    #[error("rtmp chunk decoder rejected malformed input")]
    ChunkDecoderPanic,
    /// A protocol message (control message, AMF0 command or data) was malformed.
    #[error("rtmp message: {0}")]
    Message(String),
    /// AMF0 values nested deeper than the guard allows (a stack-exhaustion attempt).
    #[error("amf0 nesting deeper than {0}")]
    AmfTooDeep(usize),
    /// A message, or the bytes buffered while waiting for one, exceeded a size limit.
    #[error("rtmp message too large ({0} bytes)")]
    TooLarge(usize),
    /// The peer asked for something this ingest server does not do (for example `play`).
    #[error("rtmp unsupported: {0}")]
    Unsupported(&'static str),
    /// The peer broke the command sequence (second connect, publish before connect, ...).
    #[error("rtmp protocol violation: {0}")]
    Protocol(&'static str),
    /// `accept_publish` / `reject_publish` named a request that is not pending.
    #[error("no pending publish request {0}")]
    UnknownRequest(u32),
    /// Serializing one of our own messages failed (should not happen; reported, not panicked).
    #[error("rtmp serialize: {0}")]
    Serialize(String),
    /// The connection already failed; it accepts no more input.
    #[error("rtmp connection already failed")]
    Closed,
    /// A media tag could not be parsed.
    #[error(transparent)]
    Flv(#[from] FlvError),
}

/// Why an FLV audio or video tag body could not be parsed.
#[derive(Debug, Error, PartialEq, Eq, Clone)]
#[non_exhaustive]
pub enum FlvError {
    /// The tag ended before the named field.
    #[error("flv tag truncated at {0}")]
    Truncated(&'static str),
    /// Classic AVC tag with an AVCPacketType other than 0, 1, 2.
    #[error("invalid AVCPacketType {0}")]
    AvcPacketType(u8),
    /// AVCDecoderConfigurationRecord with configurationVersion != 1.
    #[error("invalid AVCDecoderConfigurationRecord version {0}")]
    AvcConfigVersion(u8),
    /// lengthSizeMinusOne == 2 (a 3-byte NALU length), which ISO/IEC 14496-15 forbids.
    #[error("invalid NALU length size {0}")]
    NalLengthSize(usize),
    /// An SPS or PPS entry with zero length.
    #[error("empty parameter set")]
    EmptyParameterSet,
    /// An AVCC NALU length prefix runs past the end of the tag.
    #[error("NALU length {len} exceeds remaining {remaining} bytes")]
    NaluOverrun {
        /// Length the prefix claims.
        len: usize,
        /// Bytes actually left.
        remaining: usize,
    },
    /// AAC tag with an AACPacketType other than 0 or 1.
    #[error("invalid AACPacketType {0}")]
    AacPacketType(u8),
    /// AudioSpecificConfig with a reserved sampling frequency index (13 or 14).
    #[error("invalid AAC sampling frequency index {0}")]
    AacSampleRateIndex(u8),
    /// A file without the `FLV` signature.
    #[error("not an FLV file")]
    NotFlv,
    /// A tag body over the 24-bit DataSize limit.
    #[error("FLV tag body of {0} bytes exceeds 16 MiB")]
    TagTooLarge(usize),
}
