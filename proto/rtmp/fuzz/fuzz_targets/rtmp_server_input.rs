//! Arbitrary bytes into an `RtmpServerConn`, split where the first byte says, answering
//! publish and play requests as a shard would (plays accepted or refused by the request
//! id's parity). Run: `cargo +nightly fuzz run rtmp_server_input`.
//! A valid C0+C1+C2 prefix (3073 bytes, e.g. `03` then zeros) in the seed corpus gets the
//! fuzzer past the handshake quickly.
#![no_main]

use std::panic;
use std::sync::Once;

use libfuzzer_sys::fuzz_target;
use rts_rtmp::{RtmpEvent, RtmpOutput, RtmpServerConn};

/// `RtmpServerConn` deliberately catches the overflow panics of rml_rtmp's chunk
/// decoder and fails the connection (`RtmpError::ChunkDecoderPanic`), but libfuzzer-sys'
/// panic hook aborts on every panic, caught or not. Let those through silently; any
/// other panic (and one of these that escapes) still aborts as a crash.
fn tolerate_caught_decoder_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let fuzzer_hook = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let in_decoder = info.location().is_some_and(|l| {
                l.file().contains("rml_rtmp") && l.file().ends_with("chunk_io/deserializer.rs")
            });
            if !in_decoder {
                fuzzer_hook(info);
            }
        }));
    });
}

fuzz_target!(|data: &[u8]| {
    tolerate_caught_decoder_panics();
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
            match out {
                RtmpOutput::Event(RtmpEvent::PublishRequested { request_id, .. }) => {
                    let _ = conn.accept_publish(request_id);
                }
                RtmpOutput::Event(RtmpEvent::PlayRequested { request_id, .. }) if request_id % 2 == 0 => {
                    let _ = conn.accept_play(request_id);
                }
                RtmpOutput::Event(RtmpEvent::PlayRequested { request_id, .. }) => {
                    let _ = conn.reject_play(request_id, "refused");
                }
                _ => {}
            }
        }
    }
    let _ = conn.handle_eof();
});
