//! Several `a=fingerprint` lines (RFC 8122 §5), trickle-ice-sdpfrag bodies (RFC 8840 §9)
//! and the server's fragment after an ICE restart.

mod common;

use common::{opts, CHROME};
use rts_sdp::{build_answer, Error, SessionDescription};

/// aiortc 1.16's default offer (recvonly video + audio): sha-256, sha-384 and sha-512
/// fingerprints in every section, in that order.
const AIORTC: &str = include_str!("fixtures/aiortc_av_recvonly.sdp");

#[test]
fn every_fingerprint_line_is_kept_in_order() {
    let o = SessionDescription::parse(AIORTC).unwrap();
    for i in 0..2 {
        let algs: Vec<&str> = o
            .fingerprints_for(i)
            .iter()
            .map(|f| f.algorithm.as_str())
            .collect();
        assert_eq!(algs, ["sha-256", "sha-384", "sha-512"], "section {i}");
        let lens: Vec<usize> = o
            .fingerprints_for(i)
            .iter()
            .map(|f| f.value.len())
            .collect();
        assert_eq!(lens, [32 * 3 - 1, 48 * 3 - 1, 64 * 3 - 1]);
        // The single-value accessor keeps meaning "the first line".
        assert_eq!(o.fingerprint_for(i).unwrap().algorithm, "sha-256");
    }
    assert!(o.fingerprints.is_empty());
}

#[test]
fn media_level_fingerprints_override_session_level_ones() {
    let sdp = "v=0\r\n\
        a=fingerprint:SHA-1 AA:BB\r\n\
        a=fingerprint:sha-256 CC:DD\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
        a=mid:0\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
        a=mid:1\r\n\
        a=fingerprint:sha-512 EE:FF\r\n";
    let o = SessionDescription::parse(sdp).unwrap();
    let algs = |i| {
        o.fingerprints_for(i)
            .iter()
            .map(|f| f.algorithm.clone())
            .collect::<Vec<_>>()
    };
    // Algorithm names are lower-cased (RFC 8122 hash names are case-insensitive).
    assert_eq!(algs(0), ["sha-1", "sha-256"]);
    assert_eq!(algs(1), ["sha-512"]);
    assert_eq!(o.fingerprint.as_ref().unwrap().algorithm, "sha-1");
    // Out of range: the session-level ones.
    assert_eq!(algs(7), ["sha-1", "sha-256"]);
}

#[test]
fn a_malformed_fingerprint_line_is_an_error() {
    let sdp = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=fingerprint:sha-256\r\n";
    assert_eq!(
        SessionDescription::parse(sdp),
        Err(Error::BadAttribute {
            line: 3,
            attribute: "fingerprint"
        })
    );
}

#[test]
fn a_trickle_fragment_parses_without_v_line() {
    // RFC 9725 §4.3.4's example, LF line endings.
    let frag = "a=group:BUNDLE 0 1\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\n\
        a=mid:0\n\
        a=ice-ufrag:EsAw\n\
        a=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\n\
        a=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0 ufrag EsAw network-id 1\n\
        a=candidate:3471623853 1 udp 2122194687 198.51.100.2 61765 typ host generation 0 ufrag EsAw network-id 2\n\
        a=candidate:473322822 1 tcp 1518280447 192.0.2.1 9 typ host tcptype active generation 0 ufrag EsAw network-id 1\n\
        a=candidate:1 1 udp 1 abcd.local 5000 typ host\n\
        a=end-of-candidates\n";
    let f = SessionDescription::parse_fragment(frag).unwrap();
    assert_eq!(f.bundle_mids, ["0", "1"]);
    assert_eq!(f.media.len(), 1);
    assert_eq!(f.media[0].mid.as_deref(), Some("0"));
    assert_eq!(
        (f.ice_ufrag_for(0), f.ice_pwd_for(0)),
        (Some("EsAw"), Some("P2uYro0UCOQ4zxjKXaWCBui1"))
    );
    // The mDNS candidate is skipped; tcp is kept (the caller decides what it uses).
    assert_eq!(f.candidates.len(), 3);
    assert_eq!(f.candidates[2].transport, "tcp");
    // Session-level credentials (no m= line) are read the same way.
    let f = SessionDescription::parse_fragment("a=ice-ufrag:x\r\na=ice-pwd:y\r\n").unwrap();
    assert_eq!(
        (f.ice_ufrag_for(0), f.ice_pwd_for(0)),
        (Some("x"), Some("y"))
    );
    // A whole SDP is still a valid fragment source; the full parser still wants v=0.
    assert!(SessionDescription::parse_fragment(CHROME).is_ok());
    assert_eq!(
        SessionDescription::parse("a=ice-ufrag:x\r\n"),
        Err(Error::MissingVersion)
    );
    assert!(SessionDescription::parse_fragment("")
        .unwrap()
        .media
        .is_empty());
}

#[test]
fn malformed_fragments_are_errors_with_line_numbers() {
    for (frag, want) in [
        ("a=ice-ufrag:x\r\nhello\r\n", Error::BadLine { line: 2 }),
        ("m=audio nine UDP 111\r\n", Error::BadMediaLine { line: 1 }),
        (
            "a=candidate:1 1 udp 5 192.0.2.1 notaport typ host\r\n",
            Error::BadAttribute {
                line: 1,
                attribute: "candidate",
            },
        ),
        (
            "a=ice-ufrag:\r\n",
            Error::BadAttribute {
                line: 1,
                attribute: "ice-ufrag",
            },
        ),
        ("\u{0}=x\r\n", Error::BadLine { line: 1 }),
    ] {
        assert_eq!(
            SessionDescription::parse_fragment(frag),
            Err(want),
            "{frag:?}"
        );
    }
}

#[test]
fn the_restart_fragment_repeats_the_bundle_tag_section_with_new_credentials() {
    let offer = SessionDescription::parse(CHROME).unwrap();
    let a = build_answer(&offer, &opts("192.0.2.1:8000")).unwrap();
    let frag = a
        .ice_fragment
        .as_ref()
        .unwrap()
        .write("newU", "newpasswordnewpassword");
    assert_eq!(
        frag,
        "a=ice-lite\r\n\
         a=group:BUNDLE 0 1\r\n\
         m=audio 9 UDP/TLS/RTP/SAVPF 111 63\r\n\
         a=mid:0\r\n\
         a=ice-ufrag:newU\r\n\
         a=ice-pwd:newpasswordnewpassword\r\n\
         a=candidate:1 1 udp 2130706431 192.0.2.1 8000 typ host\r\n\
         a=end-of-candidates\r\n"
    );
    // It reads back as what it says, with the answer's candidate.
    let back = SessionDescription::parse_fragment(&frag).unwrap();
    let answer = SessionDescription::parse(&a.sdp).unwrap();
    assert!(back.ice_lite);
    assert_eq!(back.ice_ufrag_for(0), Some("newU"));
    assert_eq!(back.candidates, answer.media[0].candidates);
}

#[test]
fn aiortc_offer_is_answered() {
    let offer = SessionDescription::parse(AIORTC).unwrap();
    let a = build_answer(&offer, &opts("192.0.2.1:8000")).unwrap();
    assert_eq!(
        a.video.as_ref().unwrap().payload_type,
        101,
        "the 42e01f H.264"
    );
    assert_eq!(a.audio.as_ref().unwrap().payload_type, 96);
    assert!(a
        .ice_fragment
        .unwrap()
        .write("u", "p")
        .contains("m=video 9 UDP/TLS/RTP/SAVPF 101 102\r\na=mid:0\r\n"));
}
