//! Parsing real-world offers and rejecting garbage.

mod common;

use common::{CHROME, FIREFOX, VP8_ONLY};
use rts_sdp::{Direction, Error, MediaKind, SessionDescription, Setup};

#[test]
fn chrome_offer_structure() {
    let o = SessionDescription::parse(CHROME).unwrap();
    assert_eq!(o.bundle_mids, ["0", "1", "2"]);
    assert!(!o.ice_lite);
    let kinds: Vec<_> = o.media.iter().map(|m| m.kind.clone()).collect();
    assert_eq!(
        kinds,
        [MediaKind::Audio, MediaKind::Video, MediaKind::Application]
    );
    let v = &o.media[1];
    assert_eq!(v.mid.as_deref(), Some("1"));
    assert_eq!(v.direction, Direction::RecvOnly);
    assert!(v.rtcp_mux && v.rtcp_rsize);
    assert_eq!(v.codecs.len(), 25);
    assert_eq!(v.codecs[0].payload_type, 96);
    assert_eq!(v.codecs[0].name, "VP8");
    let h = v.codecs.iter().find(|c| c.payload_type == 106).unwrap();
    assert_eq!(h.name, "H264");
    assert_eq!(h.clock_rate, 90_000);
    assert_eq!(h.fmtp_param("profile-level-id"), Some("42e01f"));
    assert_eq!(
        h.rtcp_fb,
        ["goog-remb", "transport-cc", "ccm fir", "nack", "nack pli"]
    );
    let rtx = v.codecs.iter().find(|c| c.payload_type == 107).unwrap();
    assert_eq!((rtx.name.as_str(), rtx.apt), ("rtx", Some(106)));
    assert!(v
        .extmaps
        .contains(&(4, "urn:ietf:params:rtp-hdrext:sdes:mid".to_owned())));
    let opus = &o.media[0].codecs[0];
    assert_eq!(
        (
            opus.payload_type,
            opus.name.as_str(),
            opus.clock_rate,
            opus.channels
        ),
        (111, "opus", 48_000, Some(2))
    );
    assert_eq!(opus.fmtp.as_deref(), Some("minptime=10;useinbandfec=1"));
    let app = &o.media[2];
    assert_eq!(app.protocol, "UDP/DTLS/SCTP");
    assert_eq!(app.formats, ["webrtc-datachannel"]);
    assert!(app.codecs.is_empty());
    // Media-level credentials, no session-level ones.
    assert_eq!(o.ice_ufrag, None);
    assert_eq!(o.ice_ufrag_for(1), Some("EsAw"));
    assert_eq!(o.ice_pwd_for(2), Some("bP+XJMM09aR8AiX1jdukzR6Y"));
    assert_eq!(o.fingerprint_for(0).unwrap().algorithm, "sha-256");
    assert_eq!(o.setup_for(0), Some(Setup::ActPass));
    assert_eq!(o.ice_ufrag_for(9), None);
    // The mDNS candidate is skipped; srflx IPv4 and host IPv6 are kept.
    assert_eq!(o.candidates.len(), 2);
    assert_eq!(o.candidates[0].address.to_string(), "203.0.113.7");
    assert_eq!(
        (o.candidates[0].port, o.candidates[0].typ.as_str()),
        (54400, "srflx")
    );
    assert_eq!(
        o.candidates[1].address.to_string(),
        "2001:db8:b0b:cafe::ab0b"
    );
    assert_eq!(o.media[0].candidates.len(), 2);
}

#[test]
fn firefox_offer_session_level_fingerprint_and_fmtp_before_rtpmap() {
    let o = SessionDescription::parse(FIREFOX).unwrap();
    assert!(o.fingerprint.is_some());
    assert!(o.media[1].fingerprint.is_none());
    assert_eq!(o.fingerprint_for(1).unwrap().value.len(), 95);
    let v = &o.media[1];
    assert_eq!(v.direction, Direction::RecvOnly);
    let h = v.codecs.iter().find(|c| c.payload_type == 126).unwrap();
    assert_eq!(h.name, "H264");
    assert_eq!(h.fmtp_param("packetization-mode"), Some("1"));
    assert_eq!(
        v.extmaps[3],
        (
            6,
            "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay".to_owned()
        )
    );
    assert_eq!(o.media[0].ssrcs, [2_219_735_093]);
    assert_eq!(o.media[0].codecs[1].channels, Some(1));
}

#[test]
fn lf_and_crlf_parse_identically() {
    let lf = CHROME.replace("\r\n", "\n");
    assert_eq!(
        SessionDescription::parse(&lf).unwrap(),
        SessionDescription::parse(CHROME).unwrap()
    );
    let crlf = FIREFOX.replace('\n', "\r\n");
    assert_eq!(
        SessionDescription::parse(&crlf).unwrap(),
        SessionDescription::parse(FIREFOX).unwrap()
    );
}

#[test]
fn session_direction_is_default_for_media() {
    let sdp = "v=0\r\na=sendonly\r\nm=audio 9 RTP/AVP 0\r\nm=audio 9 RTP/AVP 0\r\na=inactive\r\n";
    let o = SessionDescription::parse(sdp).unwrap();
    assert_eq!(o.media[0].direction, Direction::SendOnly);
    assert_eq!(o.media[1].direction, Direction::Inactive);
    // Static payload type without rtpmap.
    assert_eq!(o.media[0].codecs[0].name, "PCMU");
}

#[test]
fn rejects_structural_garbage() {
    let cases: &[(&str, Error)] = &[
        ("", Error::MissingVersion),
        ("hello world", Error::MissingVersion),
        ("o=- 1 1 IN IP4 0.0.0.0\r\nv=0\r\n", Error::MissingVersion),
        ("v=1\r\n", Error::MissingVersion),
        ("v=0\r\nthis is not sdp\r\n", Error::BadLine { line: 2 }),
        ("v=0\r\nX=0\r\n", Error::BadLine { line: 2 }),
        ("v=0\r\nm=video\r\n", Error::BadMediaLine { line: 2 }),
        (
            "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF\r\n",
            Error::BadMediaLine { line: 2 },
        ),
        (
            "v=0\r\nm=video 70000 UDP/TLS/RTP/SAVPF 96\r\n",
            Error::BadMediaLine { line: 2 },
        ),
        (
            "v=0\r\nm=video x UDP/TLS/RTP/SAVPF 96\r\n",
            Error::BadMediaLine { line: 2 },
        ),
        (
            "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96 vp8\r\n",
            Error::BadPayloadType { line: 2 },
        ),
        (
            "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 128\r\n",
            Error::BadPayloadType { line: 2 },
        ),
        (
            "v=0\nm=video 9 UDP/TLS/RTP/SAVPF 96\na=rtpmap:x VP8/90000\n",
            Error::BadPayloadType { line: 3 },
        ),
        (
            "v=0\nm=video 9 UDP/TLS/RTP/SAVPF 96\na=fmtp:-1 a=b\n",
            Error::BadPayloadType { line: 3 },
        ),
        (
            "v=0\nm=video 9 UDP/TLS/RTP/SAVPF 96\na=rtcp-fb:9x nack\n",
            Error::BadPayloadType { line: 3 },
        ),
        (
            "v=0\nm=video 9 UDP/TLS/RTP/SAVPF 97\na=fmtp:97 apt=abc\n",
            Error::BadPayloadType { line: 3 },
        ),
        (
            "v=0\nm=video 9 UDP/TLS/RTP/SAVPF 96\na=rtpmap:96 VP8\n",
            Error::BadAttribute {
                line: 3,
                attribute: "rtpmap",
            },
        ),
        (
            "v=0\na=setup:sideways\n",
            Error::BadAttribute {
                line: 2,
                attribute: "setup",
            },
        ),
        (
            "v=0\na=fingerprint:sha-256\n",
            Error::BadAttribute {
                line: 2,
                attribute: "fingerprint",
            },
        ),
        (
            "v=0\na=candidate:1 1 udp 99 1.2.3.4 port typ host\n",
            Error::BadAttribute {
                line: 2,
                attribute: "candidate",
            },
        ),
        (
            "v=0\na=candidate:1 1 udp\n",
            Error::BadAttribute {
                line: 2,
                attribute: "candidate",
            },
        ),
        (
            "v=0\nm=audio 9 RTP/AVP 0\na=ssrc:abc cname:x\n",
            Error::BadAttribute {
                line: 3,
                attribute: "ssrc",
            },
        ),
        (
            "v=0\nm=audio 9 RTP/AVP 0\na=mid:\n",
            Error::BadAttribute {
                line: 3,
                attribute: "mid",
            },
        ),
    ];
    for (sdp, want) in cases {
        assert_eq!(
            SessionDescription::parse(sdp).as_ref(),
            Err(want),
            "input {sdp:?}"
        );
    }
}

#[test]
fn tolerates_unknown_attributes_and_lines() {
    let sdp = "v=0\r\nb=AS:300\r\na=x-google-flag:conference\r\na=weird\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\na=x-unknown:1 2 3\r\nk=prompt\r\n";
    let o = SessionDescription::parse(sdp).unwrap();
    assert_eq!(o.media.len(), 1);
    // rtpmap for a PT not in the m= line is ignored rather than invented.
    let sdp = "v=0\nm=audio 9 UDP/TLS/RTP/SAVPF 111\na=rtpmap:112 opus/48000/2\n";
    let o = SessionDescription::parse(sdp).unwrap();
    assert_eq!(o.media[0].codecs.len(), 1);
    assert_eq!(o.media[0].codecs[0].name, "");
}

#[test]
fn every_truncation_of_the_fixtures_is_handled() {
    for fixture in [CHROME, FIREFOX, VP8_ONLY] {
        for cut in 0..=fixture.len() {
            let Some(prefix) = fixture.get(..cut) else {
                continue;
            };
            if let Ok(o) = SessionDescription::parse(prefix) {
                // Whatever parsed must also be answerable or cleanly refused.
                let _ = rts_sdp::build_answer(&o, &common::opts("192.0.2.1:8000"));
            }
        }
    }
}

/// xorshift64*: deterministic noise without a `rand` dependency.
fn noise(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

#[test]
fn random_bytes_and_mutations_never_panic() {
    let mut s = 0x9E37_79B9_7F4A_7C15_u64;
    for _ in 0..2000 {
        let len = (noise(&mut s) % 300) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| noise(&mut s) as u8).collect();
        let text = String::from_utf8_lossy(&bytes);
        assert!(SessionDescription::parse(&text).is_err());
        // Random bytes after a valid header get deeper into the parser.
        let _ = SessionDescription::parse(&format!("v=0\r\n{text}"));
    }
    // Byte flips in a real offer (kept to valid UTF-8 by flipping within ASCII).
    let base = CHROME.as_bytes();
    for _ in 0..3000 {
        let mut b = base.to_vec();
        for _ in 0..4 {
            let i = (noise(&mut s) as usize) % b.len();
            b[i] = b" :/=-0123456789abcxyz\r\n"[(noise(&mut s) % 23) as usize];
        }
        let text = String::from_utf8(b).unwrap();
        if let Ok(o) = SessionDescription::parse(&text) {
            let _ = rts_sdp::build_answer(&o, &common::opts("192.0.2.1:8000"));
        }
    }
}
