//! `cargo fuzz run h264_depacketize`: the input is a sequence of
//! length-prefixed (u16 BE) RTP packets fed to one depacketizer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rts_rtp::h264::H264Depacketizer;
use rts_rtp::RtpHeader;

fuzz_target!(|data: &[u8]| {
    let mut depack = H264Depacketizer::new();
    let mut rest = data;
    while let [a, b, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*a, *b])).min(tail.len());
        let (packet, tail) = tail.split_at(len);
        rest = tail;
        if let Ok(h) = RtpHeader::parse(packet) {
            let _ = depack.push(&h, h.payload(packet));
            while depack.poll_frame().is_some() {}
        }
    }
});
