//! `cargo +nightly fuzz run parse_offer`: any bytes into the offer and fragment parsers
//! and, when they parse as an offer, into the answer builder. None may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rts_sdp::{build_answer, AnswerOptions, SessionDescription};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The same bytes as a WHEP PATCH body (RFC 8840 fragment).
    let _ = SessionDescription::parse_fragment(text);
    let Ok(offer) = SessionDescription::parse(text) else {
        return;
    };
    let opts = AnswerOptions {
        ice_ufrag: "fuzz".into(),
        ice_pwd: "fuzzfuzzfuzzfuzzfuzzfuzz".into(),
        fingerprint_sha256: "AA:BB".into(),
        candidates: vec!["192.0.2.1:8000".parse().expect("literal"), "[2001:db8::1]:8000".parse().expect("literal")],
        video_ssrc: 1,
        video_rtx_ssrc: Some(2),
        audio_ssrc: 3,
        cname: "c".into(),
        stream_id: "s".into(),
        session_id: 1,
        offer_audio: true,
        playout_delay: true,
        red: true,
    };
    if let Ok(answer) = build_answer(&offer, &opts) {
        // Our own answer must always re-parse, and a negotiated extension id
        // fits the one-byte header form we write.
        assert!(SessionDescription::parse(&answer.sdp).is_ok());
        // So must our ICE restart fragment.
        if let Some(f) = &answer.ice_fragment {
            assert!(SessionDescription::parse_fragment(&f.write("fuzz", "fuzzfuzzfuzzfuzzfuzzfuzz")).is_ok());
        }
        if let Some(id) = answer.video.and_then(|v| v.playout_delay_id) {
            assert!((1..=14).contains(&id));
        }
        // RED is only answered next to the Opus it carries, never instead of it.
        if let Some(a) = answer.audio {
            assert!(a.red_payload_type != Some(a.payload_type));
        }
    }
});
