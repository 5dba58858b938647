//! Arbitrary bytes as an AMF0 command body (what `connect`, `publish`,
//! `play` arrive as): a command or an error, never a panic, a stack
//! overflow or an unbounded allocation (nesting and size are bounded
//! before decoding).
//! Run: `cargo +nightly fuzz run amf_command`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((name, _args)) = rts_rtmp::decode_amf_command(data) {
        assert!(name.len() <= data.len(), "a name from the input");
    }
});
