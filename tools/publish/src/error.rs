//! The crate's single error type.

/// Everything that can go wrong publishing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The `--url` is not `rtmp://host[:port]/app/stream[?query]`.
    #[error("bad RTMP url: {0}")]
    Url(String),
    /// The H.264 stream from the encoder is not what we expect (no SPS/PPS, truncated NAL...).
    #[error("bitstream: {0}")]
    Bitstream(String),
    /// The server refused the connect or the publish (exit code 3 in the binary).
    #[error("server refused: {0}")]
    Refused(String),
    /// RTMP protocol failure (handshake, chunking, unexpected state).
    #[error("rtmp: {0}")]
    Rtmp(String),
    /// ffmpeg could not be started or failed.
    #[error("ffmpeg: {0}")]
    Ffmpeg(String),
    /// Socket or pipe I/O.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}
