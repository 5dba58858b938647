//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::net::SocketAddr;

use rts_sdp::AnswerOptions;

pub const CHROME: &str = include_str!("../fixtures/chrome_av_datachannel_recvonly.sdp");
pub const FIREFOX: &str = include_str!("../fixtures/firefox_av_recvonly.sdp");
pub const VP8_ONLY: &str = include_str!("../fixtures/vp8_only.sdp");

pub const FP: &str = "AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99";

pub fn opts(candidate: &str) -> AnswerOptions {
    AnswerOptions {
        ice_ufrag: "srvU".into(),
        ice_pwd: "serverpasswordserverpassword".into(),
        fingerprint_sha256: FP.into(),
        candidates: vec![candidate.parse::<SocketAddr>().unwrap()],
        video_ssrc: 1111,
        video_rtx_ssrc: Some(2222),
        audio_ssrc: 3333,
        cname: "rtscname".into(),
        stream_id: "live-s".into(),
        session_id: 42,
        offer_audio: true,
        playout_delay: true,
        red: true,
    }
}

/// The m= lines of an SDP, in order.
pub fn m_lines(sdp: &str) -> Vec<&str> {
    sdp.split("\r\n").filter(|l| l.starts_with("m=")).collect()
}

/// The lines of media section `i` (from its m= line up to the next).
pub fn section(sdp: &str, i: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut idx = None;
    for l in sdp.split("\r\n") {
        if l.starts_with("m=") {
            idx = Some(idx.map_or(0, |x| x + 1));
        }
        if idx == Some(i) {
            out.push(l);
        }
    }
    out
}
