//! Any bytes as a postcard-encoded ring message, in both directions. Decoding must
//! not panic (or allocate without bound), and whatever decodes must survive an
//! encode/decode round trip unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rts_common::ipc::{decode, encode, ControlToShard, ShardToControl};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = decode::<ControlToShard>(data) {
        assert_eq!(decode::<ControlToShard>(&encode(&m)).ok(), Some(m));
    }
    if let Ok(m) = decode::<ShardToControl>(data) {
        assert_eq!(decode::<ShardToControl>(&encode(&m)).ok(), Some(m));
    }
});
