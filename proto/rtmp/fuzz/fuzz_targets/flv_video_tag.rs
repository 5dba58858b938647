//! Arbitrary bytes as an FLV video tag body, and the NALUs it yields split as AVCC.
//! Run: `cargo +nightly fuzz run flv_video_tag`.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rts_rtmp::flv::{parse_audio_tag, parse_video_tag, AvccNalus, VideoTag};

fuzz_target!(|data: &[u8]| {
    let tag = Bytes::copy_from_slice(data);
    if let Ok(VideoTag::AvcNalus { data, .. }) = parse_video_tag(&tag) {
        for size in [1, 2, 4] {
            for nalu in AvccNalus::new(&data, size) {
                if nalu.is_err() {
                    break;
                }
            }
        }
    }
    let _ = parse_audio_tag(&tag);
});
