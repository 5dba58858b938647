//! Answering real-world offers; the client-side offer; round trips through our own parser.

mod common;

use common::{m_lines, opts, section, CHROME, FIREFOX, FP, VP8_ONLY};
use rts_sdp::{
    build_answer, build_recvonly_offer, Direction, Error, MediaKind, OfferOptions,
    SessionDescription, Setup,
};

#[test]
fn chrome_answer_picks_42e01f_and_rejects_datachannel() {
    let offer = SessionDescription::parse(CHROME).unwrap();
    let a = build_answer(&offer, &opts("192.0.2.1:8000")).unwrap();
    assert_eq!(
        m_lines(&a.sdp),
        [
            "m=audio 8000 UDP/TLS/RTP/SAVPF 111 63",
            "m=video 8000 UDP/TLS/RTP/SAVPF 106 107",
            "m=application 0 UDP/DTLS/SCTP webrtc-datachannel",
        ]
    );
    assert_eq!(a.bundle_mids, ["0", "1"]);
    let v = a.video.as_ref().unwrap();
    assert_eq!(
        (v.mid.as_str(), v.payload_type, v.rtx_payload_type),
        ("1", 106, Some(107))
    );
    assert_eq!(
        v.fmtp.as_deref(),
        Some("level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f")
    );
    assert!(v.nack && v.pli);
    let au = a.audio.as_ref().unwrap();
    assert_eq!(
        (au.mid.as_str(), au.payload_type, au.rtx_payload_type),
        ("0", 111, None)
    );
    assert_eq!(au.fmtp.as_deref(), Some("minptime=10;useinbandfec=1"));

    let sdp = &a.sdp;
    assert!(sdp.ends_with("\r\n"));
    assert!(!sdp.replace("\r\n", "").contains('\n'), "bare LF in answer");
    for needle in [
        "a=ice-lite\r\n",
        "a=group:BUNDLE 0 1\r\n",
        "a=msid-semantic: WMS live-s\r\n",
    ] {
        assert!(sdp.contains(needle), "missing {needle:?}");
    }
    let video = section(sdp, 1);
    for want in [
        "c=IN IP4 192.0.2.1",
        "a=ice-ufrag:srvU",
        "a=setup:passive",
        "a=mid:1",
        "a=sendonly",
        "a=rtcp-mux",
        "a=rtcp-rsize",
        "a=rtpmap:106 H264/90000",
        "a=rtcp-fb:106 nack",
        "a=rtcp-fb:106 nack pli",
        "a=rtcp-fb:106 ccm fir",
        "a=fmtp:106 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
        "a=rtpmap:107 rtx/90000",
        "a=fmtp:107 apt=106",
        "a=ssrc-group:FID 1111 2222",
        "a=msid:live-s rts-video",
        "a=ssrc:1111 cname:rtscname",
        "a=ssrc:1111 msid:live-s rts-video",
        "a=ssrc:2222 cname:rtscname",
        "a=candidate:1 1 udp 2130706431 192.0.2.1 8000 typ host",
        "a=end-of-candidates",
    ] {
        assert!(
            video.contains(&want),
            "video section lacks {want:?}: {video:#?}"
        );
    }
    assert_eq!(
        video
            .iter()
            .find(|l| l.starts_with("a=fingerprint"))
            .unwrap(),
        &format!("a=fingerprint:sha-256 {FP}")
    );
    // No transport-cc/goog-remb (we do no BWE); the only header extension is playout-delay
    // (see playout_delay_extension_is_echoed_on_video_only).
    assert!(!sdp.contains("transport-cc") && !sdp.contains("goog-remb"));
    assert_eq!(sdp.matches("a=extmap").count(), 1);
    // Rejected section: mid only, no transport attributes.
    assert_eq!(
        section(sdp, 2),
        [
            "m=application 0 UDP/DTLS/SCTP webrtc-datachannel",
            "c=IN IP4 0.0.0.0",
            "a=mid:2",
            ""
        ]
    );
    let audio = section(sdp, 0);
    assert!(audio.contains(&"a=rtpmap:111 opus/48000/2"));
    assert!(audio.contains(&"a=fmtp:111 minptime=10;useinbandfec=1"));
    assert!(audio.contains(&"a=ssrc:3333 msid:live-s rts-audio"));
}

#[test]
fn answer_reparses_with_our_parser() {
    let offer = SessionDescription::parse(CHROME).unwrap();
    let a = build_answer(&offer, &opts("192.0.2.1:8000")).unwrap();
    let p = SessionDescription::parse(&a.sdp).unwrap();
    assert!(p.ice_lite);
    assert_eq!(p.bundle_mids, ["0", "1"]);
    assert_eq!(p.media.len(), 3);
    assert_eq!(p.media[2].port, 0);
    assert_eq!(p.media[2].kind, MediaKind::Application);
    let v = &p.media[1];
    assert_eq!(v.direction, Direction::SendOnly);
    assert_eq!(v.setup, Some(Setup::Passive));
    assert_eq!(p.ice_ufrag_for(1), Some("srvU"));
    assert_eq!(p.fingerprint_for(1).unwrap().value, FP);
    assert_eq!(v.ssrcs, [1111, 2222]);
    assert_eq!(v.codecs[1].apt, Some(106));
    assert_eq!(p.candidates.len(), 2);
    assert_eq!(p.candidates[0].address.to_string(), "192.0.2.1");
    assert_eq!(p.candidates[0].port, 8000);
}

#[test]
fn firefox_answer() {
    let offer = SessionDescription::parse(FIREFOX).unwrap();
    let a = build_answer(&offer, &opts("192.0.2.1:8000")).unwrap();
    assert_eq!(
        m_lines(&a.sdp),
        [
            "m=audio 8000 UDP/TLS/RTP/SAVPF 109",
            "m=video 8000 UDP/TLS/RTP/SAVPF 126 127"
        ]
    );
    assert_eq!(
        a.audio.as_ref().unwrap().fmtp.as_deref(),
        Some("maxplaybackrate=48000;stereo=1;useinbandfec=1")
    );
    let v = a.video.unwrap();
    assert_eq!((v.payload_type, v.rtx_payload_type), (126, Some(127)));
    // Firefox's audio offers no rtcp-rsize; its video does.
    assert!(!section(&a.sdp, 0).contains(&"a=rtcp-rsize"));
    assert!(section(&a.sdp, 1).contains(&"a=rtcp-rsize"));
}

#[test]
fn vp8_only_is_no_common_codec() {
    let offer = SessionDescription::parse(VP8_ONLY).unwrap();
    assert_eq!(
        build_answer(&offer, &opts("192.0.2.1:8000")),
        Err(Error::NoCommonCodec)
    );
}

#[test]
fn profile_preference_order() {
    let only = |keep: &[u8]| {
        let mut o = SessionDescription::parse(CHROME).unwrap();
        o.media[1]
            .codecs
            .retain(|c| keep.contains(&c.payload_type) || c.name == "rtx");
        build_answer(&o, &opts("192.0.2.1:8000"))
            .unwrap()
            .video
            .map(|v| (v.payload_type, v.rtx_payload_type))
    };
    // 42001f (102) beats main (127) and high (112); pm=0 variants (104, 108) never chosen.
    assert_eq!(only(&[112, 127, 104, 108, 102]), Some((102, Some(103))));
    assert_eq!(only(&[112, 127, 104]), Some((127, Some(125))));
    assert_eq!(only(&[112, 39]), Some((112, Some(113))));
    // Only packetization-mode=0 H.264 plus VP8: video rejected, audio still answered.
    let mut o = SessionDescription::parse(CHROME).unwrap();
    o.media[1]
        .codecs
        .retain(|c| [96, 104, 108].contains(&c.payload_type));
    let a = build_answer(&o, &opts("192.0.2.1:8000")).unwrap();
    assert!(a.video.is_none());
    assert_eq!(a.bundle_mids, ["0"]);
    assert!(m_lines(&a.sdp)[1].starts_with("m=video 0 UDP/TLS/RTP/SAVPF 96 97 102"));
}

#[test]
fn directions_and_missing_rtx_and_feedback() {
    let sdp = "v=0\r\na=ice-ufrag:u\r\na=ice-pwd:p\r\na=fingerprint:sha-256 AA\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 100\r\na=mid:v\r\na=sendonly\r\na=rtpmap:100 H264/90000\r\n\
        a=rtcp-fb:100 nack pli\r\na=fmtp:100 packetization-mode=1\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:a\r\na=sendrecv\r\na=rtpmap:111 opus/48000/2\r\n";
    let o = SessionDescription::parse(sdp).unwrap();
    let a = build_answer(&o, &opts("192.0.2.1:8000")).unwrap();
    let v = section(&a.sdp, 0);
    assert!(v.contains(&"a=inactive"));
    // Only offered feedback is echoed; inactive sections announce no source.
    assert!(v.contains(&"a=rtcp-fb:100 nack pli") && !v.contains(&"a=rtcp-fb:100 nack"));
    assert!(!v
        .iter()
        .any(|l| l.starts_with("a=ssrc") || l.starts_with("a=msid")));
    assert!(a.video.is_none());
    assert!(section(&a.sdp, 1).contains(&"a=sendonly"));
    assert_eq!(a.audio.unwrap().fmtp, None);
    assert_eq!(a.bundle_mids, ["v", "a"]);
}

#[test]
fn ipv6_candidate_formats() {
    let offer = SessionDescription::parse(CHROME).unwrap();
    let a = build_answer(&offer, &opts("[2001:db8::1]:8001")).unwrap();
    let v = section(&a.sdp, 1);
    assert!(v.contains(&"c=IN IP6 2001:db8::1"));
    assert!(v.contains(&"a=candidate:1 1 udp 2130706431 2001:db8::1 8001 typ host"));
    let p = SessionDescription::parse(&a.sdp).unwrap();
    assert_eq!(p.candidates[0].address.to_string(), "2001:db8::1");
    // An IPv4-mapped address is announced as plain IPv4.
    let a = build_answer(&offer, &opts("[::ffff:192.0.2.9]:8000")).unwrap();
    assert!(a.sdp.contains("c=IN IP4 192.0.2.9\r\n"));
}

/// A dual-stack server announces one host candidate per family, the first
/// preferred (RFC 8445 priority: type 126, local preference 65535 then 65534),
/// in the answer and in the ICE-restart fragment; the m-line and `c=` use the first.
#[test]
fn dual_stack_candidates() {
    let offer = SessionDescription::parse(CHROME).unwrap();
    let mut o = opts("192.0.2.1:8000");
    o.candidates.push("[2001:db8::1]:8000".parse().unwrap());
    let a = build_answer(&offer, &o).unwrap();
    let v = section(&a.sdp, 1);
    assert!(v.contains(&"c=IN IP4 192.0.2.1"), "{v:#?}");
    let cands: Vec<&&str> = v.iter().filter(|l| l.starts_with("a=candidate")).collect();
    // 2130706175 = 126 << 24 | 65534 << 8 | 255
    assert_eq!(cands, [&"a=candidate:1 1 udp 2130706431 192.0.2.1 8000 typ host", &"a=candidate:2 1 udp 2130706175 2001:db8::1 8000 typ host"]);
    let p = SessionDescription::parse(&a.sdp).unwrap();
    let addrs: Vec<String> = p.media[1].candidates.iter().map(|c| c.address.to_string()).collect();
    assert_eq!(addrs, ["192.0.2.1", "2001:db8::1"]);
    let frag = a.ice_fragment.unwrap().write("uf", "pw");
    assert!(frag.contains("a=candidate:1 1 udp 2130706431 192.0.2.1 8000 typ host\r\na=candidate:2 1 udp 2130706175 2001:db8::1 8000 typ host\r\na=end-of-candidates\r\n"), "{frag}");
}

#[test]
fn refuses_offers_we_cannot_serve_securely() {
    let base = "v=0\r\na=ice-ufrag:u\r\na=ice-pwd:p\r\na=fingerprint:sha-256 AA\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=rtpmap:111 opus/48000/2\r\n";
    let o = |s: &str| SessionDescription::parse(s).unwrap();
    let op = opts("192.0.2.1:8000");
    assert!(build_answer(&o(base), &op).is_ok());
    assert_eq!(
        build_answer(&o(&base.replace("a=fingerprint:sha-256 AA\r\n", "")), &op),
        Err(Error::MissingAttribute {
            index: 0,
            what: "fingerprint"
        })
    );
    assert_eq!(
        build_answer(&o(&base.replace("a=mid:0\r\n", "")), &op),
        Err(Error::MissingAttribute {
            index: 0,
            what: "mid"
        })
    );
    assert_eq!(
        build_answer(&o(&format!("{base}a=setup:passive\r\n")), &op),
        Err(Error::IncompatibleSetup { index: 0 })
    );
    let mut bad = op.clone();
    bad.stream_id = "x\r\na=evil".into();
    assert_eq!(
        build_answer(&o(base), &bad),
        Err(Error::InvalidOption("stream_id"))
    );
    let mut bad = op.clone();
    bad.candidates = vec!["0.0.0.0:8000".parse().unwrap()];
    assert_eq!(
        build_answer(&o(base), &bad),
        Err(Error::InvalidOption("candidates"))
    );
    bad.candidates = vec![];
    assert_eq!(
        build_answer(&o(base), &bad),
        Err(Error::InvalidOption("candidates"))
    );
}

#[test]
fn recvonly_offer_round_trip() {
    let oo = OfferOptions {
        ice_ufrag: "cliU".into(),
        ice_pwd: "clientpasswordclientpassword".into(),
        fingerprint_sha256: FP.into(),
        video: true,
        audio: true,
    };
    let sdp = build_recvonly_offer(&oo);
    assert!(sdp.contains("a=group:BUNDLE 0 1\r\n"));
    assert!(sdp.contains(
        "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n"
    ));
    // Video: H.264 with NACK, PLI and FIR feedback, and RTX for it (like Chrome).
    assert!(sdp.contains("m=video 9 UDP/TLS/RTP/SAVPF 102 103\r\n"));
    for line in [
        "a=rtcp-fb:102 nack\r\n",
        "a=rtcp-fb:102 nack pli\r\n",
        "a=rtcp-fb:102 ccm fir\r\n",
        "a=rtpmap:103 rtx/90000\r\na=fmtp:103 apt=102\r\n",
    ] {
        assert!(sdp.contains(line), "{line:?} missing:\n{sdp}");
    }
    // Audio: Opus, then RED carrying Opus (RFC 2198), listed after it.
    assert!(
        sdp.contains("m=audio 9 UDP/TLS/RTP/SAVPF 111 63\r\n"),
        "{sdp}"
    );
    assert!(sdp.contains(
        "a=fmtp:111 minptime=10;useinbandfec=1\r\na=rtpmap:63 red/48000/2\r\na=fmtp:63 111/111\r\n"
    ));
    assert_eq!(rts_sdp::OFFER_RED_PT, 63);
    let offer = SessionDescription::parse(&sdp).unwrap();
    let audio = offer
        .media
        .iter()
        .find(|m| m.kind == MediaKind::Audio)
        .unwrap();
    let names: Vec<(u8, &str)> = audio
        .codecs
        .iter()
        .map(|c| (c.payload_type, c.name.as_str()))
        .collect();
    assert_eq!(names, [(111, "opus"), (63, "red")]);
    assert_eq!(offer.media.len(), 2);
    assert!(offer
        .media
        .iter()
        .all(|m| m.direction == Direction::RecvOnly && m.rtcp_mux));
    assert_eq!(offer.setup_for(0), Some(Setup::ActPass));
    let answer = build_answer(&offer, &opts("192.0.2.1:8000")).unwrap();
    assert_eq!(
        answer
            .video
            .as_ref()
            .map(|v| (v.payload_type, v.rtx_payload_type, v.playout_delay_id)),
        Some((102, Some(103), Some(5)))
    );
    assert_eq!(
        answer
            .audio
            .as_ref()
            .map(|a| (a.payload_type, a.red_payload_type)),
        Some((111, Some(63)))
    );
    // Client parses the server's answer.
    let parsed = SessionDescription::parse(&answer.sdp).unwrap();
    assert!(parsed.ice_lite);
    assert_eq!(parsed.ice_pwd_for(0), Some("serverpasswordserverpassword"));
    assert_eq!(parsed.media[0].direction, Direction::SendOnly);
    assert_eq!(parsed.media[0].ssrcs, [1111, 2222]);
    assert_eq!(parsed.media[1].ssrcs, [3333]);
    assert!(answer.sdp.contains("a=ssrc-group:FID 1111 2222\r\n"));
    let red = parsed.media[1]
        .codecs
        .iter()
        .find(|c| c.name == "red")
        .unwrap();
    assert_eq!(
        (red.payload_type, red.fmtp.as_deref()),
        (63, Some("111/111"))
    );

    let audio_only = build_recvonly_offer(&OfferOptions { video: false, ..oo });
    let p = SessionDescription::parse(&audio_only).unwrap();
    assert_eq!(p.bundle_mids, ["0"]);
    assert_eq!(p.media[0].kind, MediaKind::Audio);
}

#[test]
fn playout_delay_extension_is_echoed_on_video_only() {
    let ext = format!("a=extmap:5/sendonly {}", rts_sdp::PLAYOUT_DELAY_URI);
    let offer = SessionDescription::parse(CHROME).unwrap();
    let a = build_answer(&offer, &opts("192.0.2.1:8000")).unwrap();
    assert_eq!(a.video.as_ref().unwrap().playout_delay_id, Some(5));
    assert_eq!(a.audio.as_ref().unwrap().playout_delay_id, None);
    assert!(section(&a.sdp, 1).contains(&ext.as_str()));
    // No other extension is echoed: we write no other one into packets.
    assert_eq!(a.sdp.matches("a=extmap:").count(), 1, "{}", a.sdp);

    // Firefox offers it as "6/recvonly"; we answer sendonly.
    let offer = SessionDescription::parse(FIREFOX).unwrap();
    let a = build_answer(&offer, &opts("192.0.2.1:8000")).unwrap();
    assert_eq!(a.video.as_ref().unwrap().playout_delay_id, Some(6));

    // Switched off by the server, or not offered: neither negotiated nor written.
    let offer = SessionDescription::parse(CHROME).unwrap();
    let off = rts_sdp::AnswerOptions {
        playout_delay: false,
        ..opts("192.0.2.1:8000")
    };
    let a = build_answer(&offer, &off).unwrap();
    assert_eq!(a.video.unwrap().playout_delay_id, None);
    assert!(!a.sdp.contains("a=extmap:"));
    let stripped = CHROME.replace(
        "a=extmap:5 http://www.webrtc.org/experiments/rtp-hdrext/playout-delay\r\n",
        "",
    );
    assert_ne!(stripped, CHROME);
    let a = build_answer(
        &SessionDescription::parse(&stripped).unwrap(),
        &opts("192.0.2.1:8000"),
    )
    .unwrap();
    assert_eq!(a.video.unwrap().playout_delay_id, None);
}

#[test]
fn playout_delay_ids_beyond_the_one_byte_form_are_ignored() {
    let offer = CHROME.replace(
        "a=extmap:5 http://www.webrtc.org/experiments/rtp-hdrext/playout-delay",
        "a=extmap:15 http://www.webrtc.org/experiments/rtp-hdrext/playout-delay",
    );
    let a = build_answer(
        &SessionDescription::parse(&offer).unwrap(),
        &opts("192.0.2.1:8000"),
    )
    .unwrap();
    assert_eq!(a.video.unwrap().playout_delay_id, None);
    assert!(!a.sdp.contains("a=extmap:"));
}

#[test]
fn red_is_answered_next_to_opus_when_offered_and_enabled() {
    let offer = SessionDescription::parse(CHROME).unwrap();
    let a = build_answer(&offer, &opts("192.0.2.1:8000")).unwrap();
    let audio = a.audio.as_ref().unwrap();
    assert_eq!((audio.payload_type, audio.red_payload_type), (111, Some(63)));
    let s = section(&a.sdp, 0);
    assert!(s[0].ends_with(" 111 63"), "{}", s[0]);
    assert!(s.contains(&"a=rtpmap:63 red/48000/2") && s.contains(&"a=fmtp:63 111/111"), "{s:?}");
    // Off by the server: not answered.
    let off = rts_sdp::AnswerOptions { red: false, ..opts("192.0.2.1:8000") };
    let a = build_answer(&offer, &off).unwrap();
    assert_eq!(a.audio.as_ref().unwrap().red_payload_type, None);
    assert!(!a.sdp.contains("red/48000"));
    // RED carrying another codec than the chosen Opus is not ours to send.
    let other = CHROME.replace("a=fmtp:63 111/111", "a=fmtp:63 9/9");
    let a = build_answer(&SessionDescription::parse(&other).unwrap(), &opts("192.0.2.1:8000")).unwrap();
    assert_eq!(a.audio.unwrap().red_payload_type, None);
    // Firefox offers no RED.
    let a = build_answer(&SessionDescription::parse(FIREFOX).unwrap(), &opts("192.0.2.1:8000")).unwrap();
    assert_eq!(a.audio.unwrap().red_payload_type, None);
}
