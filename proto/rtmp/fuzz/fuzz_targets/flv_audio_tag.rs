//! Arbitrary bytes as an FLV audio tag body (AAC with its
//! AudioSpecificConfig, or any other sound format): parsed or refused,
//! never a panic; an AAC frame's payload is a slice of the input.
//! Run: `cargo +nightly fuzz run flv_audio_tag`.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rts_rtmp::flv::{parse_audio_tag, AudioTag};

fuzz_target!(|data: &[u8]| {
    let input = Bytes::copy_from_slice(data);
    if let Ok(AudioTag::AacRaw(frame)) = parse_audio_tag(&input) {
        assert!(frame.len() <= data.len());
    }
});
