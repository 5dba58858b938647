//! `cargo fuzz run rtcp_parse`: any bytes into the RTCP parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rts_rtp::rtcp::{iter_compound, parse_compound};

fuzz_target!(|data: &[u8]| {
    let parsed = parse_compound(data);
    // The borrowing iterator must agree with the allocating parser.
    let mut out = Vec::new();
    let mut ok = !data.is_empty();
    for raw in iter_compound(data) {
        match raw.and_then(|r| r.decode_into(&mut out)) {
            Ok(()) => {}
            Err(_) => {
                ok = false;
                break;
            }
        }
    }
    assert_eq!(parsed.is_ok(), ok);
    if let Ok(p) = parsed {
        assert_eq!(p, out);
    }
});
