//! The crate's one error type.

/// Everything that can go wrong while transcoding. Malformed input from a publisher
/// always surfaces as one of these, never as a panic.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The AudioSpecificConfig is truncated or inconsistent.
    #[error("malformed AudioSpecificConfig: {0}")]
    BadAudioConfig(&'static str),
    /// The AVCDecoderConfigurationRecord is truncated or inconsistent.
    #[error("malformed AVCDecoderConfigurationRecord: {0}")]
    BadAvcConfig(&'static str),
    /// An AVCC frame whose NAL length prefixes run past the end of the data.
    #[error("malformed AVCC frame: {0}")]
    BadAvcc(&'static str),
    /// Valid input this crate does not handle (HE-AAC, > 2 channels, odd pixel formats).
    #[error("unsupported input: {0}")]
    Unsupported(String),
    /// The AAC decoder rejected a frame.
    #[error("AAC decode failed: {0}")]
    AacDecode(String),
    /// The sample-rate converter failed (construction or processing).
    #[error("resampler: {0}")]
    Resample(String),
    /// libopus returned an error.
    #[error("opus: {0}")]
    Opus(#[from] opus::Error),
    /// libavcodec / libx264 returned an error.
    #[error("ffmpeg: {0}")]
    Ffmpeg(#[from] ffmpeg_next::Error),
    /// A method was called in the wrong state (e.g. video before its config).
    #[error("misuse: {0}")]
    Misuse(&'static str),
}
