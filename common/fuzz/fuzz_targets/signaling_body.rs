//! Arbitrary bytes as the JSON body of an RTS or SRS play request: a clear
//! error or the fields signaling needs, never a panic; an SRS stream URL
//! that parses gives non-empty names without a '/'.
//! Run: `cargo +nightly fuzz run signaling_body`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rts_common::signaling_body::{parse_stream_url, rts_offer, srs_offer};

fuzz_target!(|data: &[u8]| {
    let _ = rts_offer(data);
    if let Ok(o) = srs_offer(data) {
        assert!(!o.app.is_empty() && !o.stream.is_empty() && !o.app.contains('/') && !o.stream.contains('/'));
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Some((app, stream, _)) = parse_stream_url(s) {
            assert!(!app.is_empty() && !stream.is_empty());
        }
    }
});
