//! Arbitrary bytes as an HTTP-FLV stream arriving in pieces (a cluster
//! pull, dataplane/src/core/pull.rs): the incremental reader never panics
//! or buffers past its tag limit, and whatever the piece size (the first
//! byte), the tags it hands out are the ones the whole-file reader finds,
//! in order.
//! Run: `cargo +nightly fuzz run flv_stream`.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rts_rtmp::flv::file::{read_file, FlvReader};

fuzz_target!(|data: &[u8]| {
    let Some((&piece, stream)) = data.split_first() else { return };
    let piece = usize::from(piece).max(1);
    let mut reader = FlvReader::new(1 << 16);
    let mut got = Vec::new();
    'feed: for chunk in stream.chunks(piece) {
        reader.push(chunk);
        loop {
            match reader.next_tag() {
                Ok(Some(t)) => got.push(t),
                Ok(None) => break,
                Err(_) => break 'feed,
            }
        }
        assert!(reader.buffered() <= 11 + (1 << 16) + 4 + 64 + piece, "buffers beyond one tag and a piece");
    }
    let (whole, _) = read_file(&Bytes::copy_from_slice(stream));
    assert!(got.len() <= whole.len() && got[..] == whole[..got.len()], "the same tags as the whole-file reader");
});
