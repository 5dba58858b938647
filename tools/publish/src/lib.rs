//! rts-publish: a test RTMP publisher whose every access unit carries the wall-clock time in
//! an SEI NAL, so viewers can measure end-to-end latency.
//!
//! The pure parts — [`annexb`] splitting, the [`sei`] writer/parser, the [`avcc`] builders and
//! the [`convert`] step — have no I/O; [`publisher`] runs ffmpeg and the RTMP session.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod annexb;
pub mod avcc;
pub mod convert;
mod error;
pub mod publisher;
pub mod sei;
pub mod url;

pub use error::PublishError;

#[cfg(test)]
mod tests;
