//! Any bytes as a postcard-encoded ring message, in both directions (control
//! → shard messages travel as `Request`s). Decoding must
//! not panic (or allocate without bound), and whatever decodes must survive an
//! encode/decode round trip unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rts_common::ipc::{decode, encode, Request, ShardToControl};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = decode::<Request>(data) {
        assert_eq!(decode::<Request>(&encode(&m)).ok(), Some(m));
    }
    if let Ok(m) = decode::<ShardToControl>(data) {
        assert_eq!(decode::<ShardToControl>(&encode(&m)).ok(), Some(m));
    }
});
