//! `cargo fuzz run rtcp_parse`: any bytes into the RTCP parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rts_rtp::rtcp::{iter_compound, parse_compound, RtcpPacket};

fuzz_target!(|data: &[u8]| {
    let parsed = parse_compound(data);
    // The borrowing iterator must agree with the allocating parser, and a
    // NACK read in place with its decoded form.
    let mut out = Vec::new();
    let mut ok = !data.is_empty();
    for raw in iter_compound(data) {
        let Ok(raw) = raw else {
            ok = false;
            break;
        };
        let before = out.len();
        if raw.decode_into(&mut out).is_err() {
            ok = false;
            break;
        }
        if let Some((media, lost)) = raw.generic_nack() {
            let lost: Vec<u16> = lost.collect();
            match &out[before..] {
                [RtcpPacket::Nack { media_ssrc, lost: decoded, .. }] => assert_eq!((*media_ssrc, decoded), (media, &lost)),
                other => panic!("generic_nack on {other:?}"),
            }
        }
    }
    assert_eq!(parsed.is_ok(), ok);
    if let Ok(p) = parsed {
        assert_eq!(p, out);
    }
});
