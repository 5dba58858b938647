//! `cargo fuzz run h264_depacketize`: the input is a sequence of
//! length-prefixed (u16 BE) RTP packets fed to one depacketizer, after
//! looking up every one-byte header extension element in each.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rts_rtp::h264::H264Depacketizer;
use rts_rtp::{hdrext, RtpHeader};

fuzz_target!(|data: &[u8]| {
    let mut depack = H264Depacketizer::new();
    let mut rest = data;
    while let [a, b, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*a, *b])).min(tail.len());
        let (packet, tail) = tail.split_at(len);
        rest = tail;
        if let Ok(h) = RtpHeader::parse(packet) {
            // Header extensions as a player reads them.
            for id in 1..=14 {
                if let Some(d) = hdrext::one_byte_extension(packet, &h, id) {
                    assert!(d.len() <= 16 && h.header_len <= packet.len());
                    let _ = hdrext::PlayoutDelay::parse(d);
                }
            }
            let _ = depack.push(&h, h.payload(packet));
            while depack.poll_frame().is_some() {}
        }
    }
});
