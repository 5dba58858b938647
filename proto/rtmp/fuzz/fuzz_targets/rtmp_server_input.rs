//! Arbitrary bytes into an `RtmpServerConn`, split where the first byte says, answering
//! publish requests as a shard would. Run: `cargo +nightly fuzz run rtmp_server_input`.
//! A valid C0+C1+C2 prefix (3073 bytes, e.g. `03` then zeros) in the seed corpus gets the
//! fuzzer past the handshake quickly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rts_rtmp::{RtmpEvent, RtmpOutput, RtmpServerConn};

fuzz_target!(|data: &[u8]| {
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    let piece = usize::from(split).max(1) * 64;
    let mut conn = RtmpServerConn::new();
    for chunk in data.chunks(piece) {
        if conn.handle_input(chunk).is_err() {
            return;
        }
        while let Some(out) = conn.poll_output() {
            if let RtmpOutput::Event(RtmpEvent::PublishRequested { request_id, .. }) = out {
                let _ = conn.accept_publish(request_id);
            }
        }
    }
    let _ = conn.handle_eof();
});
