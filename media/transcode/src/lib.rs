//! rts-transcode: makes RTMP media playable over WebRTC, off the shard's fan-out path.
//!
//! - [`AacToOpus`]: AAC-LC (any rate, mono/stereo) -> Opus 48 kHz, 20 ms packets.
//! - [`H264Reencoder`]: H.264 with B-frames -> constrained-baseline H.264, no B-frames.
//! - [`TranscodeWorker`]: runs both for one stream on a dedicated thread, fed and
//!   drained through bounded queues, waking the shard's io_uring loop via an eventfd.
//!
//! The transcoders are synchronous and clock-free: time comes in as FLV timestamps.
//! Choices and measured delays: docs/decisions/005-aac-decoder.md,
//! 006-opus-encoder.md and 007-video-reencoder.md.
#![forbid(unsafe_code)]

mod asc;
mod audio;
mod error;
mod h264;
mod video;
mod worker;

pub use asc::{parse_audio_specific_config, AudioConfig};
pub use audio::{AacToOpus, OpusPacket, OPUS_FRAME, OPUS_RATE};
pub use error::Error;
pub use h264::{has_b_frames, parse_avc_config, sps_dimensions, AvcConfig};
pub use video::{EncodedFrame, H264Reencoder, ReencodeOptions};
pub use worker::{Job, Output, TranscodeWorker, WorkerOptions};
