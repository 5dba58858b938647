//! FLV audio/video tag bodies as RTMP carries them (message types 8 and 9),
//! and the FLV file format around them ([`file`]).
//!
//! Parsing borrows nothing and copies only parameter sets: NALU and AAC payloads are
//! `Bytes` slices of the input, so the packetizer gets the decoder's buffer directly.

mod audio;
pub mod file;
mod video;

pub use audio::{parse_audio_tag, AudioTag, SOUND_FORMAT_AAC};
pub use video::{
    parse_video_tag, AvcConfig, AvccNalus, VideoTag, CODEC_AV1, CODEC_AVC, CODEC_HEVC,
};

pub use crate::error::FlvError;
