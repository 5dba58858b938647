//! Arbitrary bytes as an FLV file: the reader returns tags and an error,
//! never panics or reads past the input, and the tags it read, written
//! back as a file, read back the same.
//! Run: `cargo +nightly fuzz run flv_file`.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rts_rtmp::flv::file::{file_header, read_file, write_tag};

fuzz_target!(|data: &[u8]| {
    let (tags, _err) = read_file(&Bytes::copy_from_slice(data));
    let mut out = file_header(true, true).to_vec();
    for t in &tags {
        write_tag(&mut out, t.tag_type, t.timestamp_ms, &t.body).expect("a tag that was read fits");
    }
    let (again, err) = read_file(&Bytes::from(out));
    assert!(err.is_none() && again == tags, "tags written back read back the same");
});
