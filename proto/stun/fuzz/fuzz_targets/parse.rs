//! Any datagram: demux, parse, and (when it parses) check integrity and
//! fingerprint. None of it may panic; a parsed message's fields must be
//! consistent with what parse promises.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rts_stun::{classify, PacketKind, StunMessage};

fuzz_target!(|data: &[u8]| {
    let kind = classify(data);
    if let Ok(msg) = StunMessage::parse(data) {
        // Within RFC 7983's STUN range parse is stricter than classify,
        // so anything it accepts must also be routed to STUN.
        if data[0] <= 3 {
            assert_eq!(kind, PacketKind::Stun);
        }
        let _ = msg.verify_integrity(b"VOkJxbRl1RmTxUk/WvJxBt");
        let _ = msg.has_valid_fingerprint();
        if let Some(u) = msg.username {
            let _ = rts_stun::split_username(u);
        }
    }
});
