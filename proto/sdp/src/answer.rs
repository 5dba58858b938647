//! Server side: answer a browser's offer as an ICE-lite, DTLS-passive, send-only peer.
//!
//! We serve one H.264 video track and one Opus audio track per viewer, so the first usable
//! video and audio sections are accepted and every other section (data channel, extra
//! video, unknown kinds, codecs we lack) is rejected with port 0, as JSEP §5.3.1 requires
//! rather than dropping it: the answer must have one m-line per offered m-line.

use std::net::SocketAddr;

use crate::error::Error;
use crate::types::{Codec, Direction, MediaKind, MediaSection, SessionDescription, Setup};
use crate::write::sdp_line;

/// What the server puts into an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerOptions {
    /// Our ICE username fragment.
    pub ice_ufrag: String,
    /// Our ICE password.
    pub ice_pwd: String,
    /// SHA-256 fingerprint of our DTLS certificate, `AB:CD:...`.
    pub fingerprint_sha256: String,
    /// Our host candidates (the shard's UDP socket as seen by viewers), in order of
    /// preference: one per address family the server is reachable on. The first also
    /// gives the m-lines' port and `c=` address.
    pub candidates: Vec<SocketAddr>,
    /// SSRC of the video stream we send.
    pub video_ssrc: u32,
    /// SSRC of the RTX (retransmission) stream; announced with `a=ssrc-group:FID` when the
    /// viewer offered RTX, because Chrome drops RTX packets from unsignalled SSRCs.
    pub video_rtx_ssrc: Option<u32>,
    /// SSRC of the audio stream we send.
    pub audio_ssrc: u32,
    /// RTCP CNAME.
    pub cname: String,
    /// `msid` stream id (MediaStream id seen by the player).
    pub stream_id: String,
    /// `o=` session id.
    pub session_id: u64,
    /// Whether the stream currently has audio. Informational only: audio is still answered
    /// `sendonly` when false, so an audio track that appears later needs no renegotiation.
    pub offer_audio: bool,
    /// Accept the playout-delay header extension on video when the viewer offers it, so the
    /// server can tell the receiver how much later than video the audio leaves us.
    pub playout_delay: bool,
    /// Accept RED (RFC 2198, `red/48000/2` carrying the chosen Opus) on audio when offered.
    pub red: bool,
}

/// The answer SDP plus what was negotiated, for the dataplane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The answer SDP (CRLF line endings).
    pub sdp: String,
    /// Negotiated video, `None` when no video is sent (rejected or answered `inactive`).
    pub video: Option<NegotiatedCodec>,
    /// Negotiated audio, `None` when no audio is sent.
    pub audio: Option<NegotiatedCodec>,
    /// Mids of the accepted sections, i.e. our `a=group:BUNDLE`.
    pub bundle_mids: Vec<String>,
    /// What our side of an ICE restart's SDP fragment repeats from this answer; `None`
    /// when no section was accepted.
    pub ice_fragment: Option<IceFragment>,
}

/// The server's `application/trickle-ice-sdpfrag` (RFC 8840 §9) for an answered session,
/// as a WHEP/WHIP ICE restart returns it (RFC 9725 §4.3.5): `a=ice-lite`, the BUNDLE
/// group, the BUNDLE-tag m-line (the first accepted section; with max-bundle the only one
/// that carries ICE information) with its mid, new credentials, and the same host
/// candidates as the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceFragment {
    bundle_mids: Vec<String>,
    /// `<kind> <proto> <formats>` of the BUNDLE-tag section as answered.
    kind: String,
    protocol: String,
    formats: Vec<String>,
    mid: String,
    candidates: Vec<SocketAddr>,
}

impl IceFragment {
    /// The fragment with credentials `ice_ufrag` / `ice_pwd` (CRLF line endings).
    pub fn write(&self, ice_ufrag: &str, ice_pwd: &str) -> String {
        let mut sdp = String::with_capacity(256);
        sdp_line!(&mut sdp, "a=ice-lite");
        sdp_line!(&mut sdp, "a=group:BUNDLE {}", self.bundle_mids.join(" "));
        // Port 9 (discard), as RFC 8840's fragments write it: the address is the candidate's.
        sdp_line!(
            &mut sdp,
            "m={} 9 {} {}",
            self.kind,
            self.protocol,
            self.formats.join(" ")
        );
        sdp_line!(&mut sdp, "a=mid:{}", self.mid);
        sdp_line!(&mut sdp, "a=ice-ufrag:{ice_ufrag}");
        sdp_line!(&mut sdp, "a=ice-pwd:{ice_pwd}");
        write_candidates(&mut sdp, &self.candidates);
        sdp_line!(&mut sdp, "a=end-of-candidates");
        sdp
    }
}

/// A codec both sides agreed on for one media section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedCodec {
    /// Mid of the section (used for the RTP mid header extension if ever enabled).
    pub mid: String,
    /// Payload type to send with (the viewer's number).
    pub payload_type: u8,
    /// Format parameters as offered and answered.
    pub fmtp: Option<String>,
    /// RTX payload type, when the viewer offered RTX for this codec.
    pub rtx_payload_type: Option<u8>,
    /// The viewer sends generic NACK.
    pub nack: bool,
    /// The viewer sends PLI.
    pub pli: bool,
    /// One-byte header extension id of [`PLAYOUT_DELAY_URI`], when negotiated (video only).
    pub playout_delay_id: Option<u8>,
    /// RED payload type, when negotiated (audio only).
    pub red_payload_type: Option<u8>,
}

/// Google's playout-delay RTP header extension: the sender's bounds on the receiver's
/// playout delay, 12-bit min and max in 10 ms units. Chrome offers it on video.
pub const PLAYOUT_DELAY_URI: &str = "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay";

/// Track ids in `a=msid`; fixed because each viewer session has one track of each kind.
const VIDEO_TRACK: &str = "rts-video";
const AUDIO_TRACK: &str = "rts-audio";
/// Feedback we understand and echo when the viewer offered it.
const VIDEO_FEEDBACK: [&str; 3] = ["nack", "nack pli", "ccm fir"];

/// What to do with one offered section.
enum Plan<'a> {
    Reject,
    Video {
        codec: &'a Codec,
        rtx: Option<&'a Codec>,
    },
    Audio {
        codec: &'a Codec,
        red: Option<&'a Codec>,
    },
}

/// Builds the answer to `offer`. See the crate docs for the rules.
pub fn build_answer(offer: &SessionDescription, opts: &AnswerOptions) -> Result<Answer, Error> {
    validate(opts)?;
    let plans = plan(offer, opts.red)?;
    // validate() guaranteed at least one candidate.
    let primary = opts.candidates[0];
    let ip = primary.ip().to_canonical();
    let ip_ver = if ip.is_ipv4() { "IP4" } else { "IP6" };

    let mut bundle_mids = Vec::new();
    for (i, (m, p)) in offer.media.iter().zip(&plans).enumerate() {
        if !matches!(p, Plan::Reject) {
            bundle_mids.push(check_transport(offer, i, m)?.to_owned());
        }
    }

    let mut sdp = String::with_capacity(2048);
    sdp_line!(&mut sdp, "v=0");
    sdp_line!(&mut sdp, "o=- {} 2 IN IP4 127.0.0.1", opts.session_id);
    sdp_line!(&mut sdp, "s=-");
    sdp_line!(&mut sdp, "t=0 0");
    sdp_line!(&mut sdp, "a=ice-lite");
    if !bundle_mids.is_empty() {
        sdp_line!(&mut sdp, "a=group:BUNDLE {}", bundle_mids.join(" "));
    }
    sdp_line!(&mut sdp, "a=msid-semantic: WMS {}", opts.stream_id);

    let (mut video, mut audio, mut ice_fragment) = (None, None, None);
    for (m, p) in offer.media.iter().zip(&plans) {
        let codecs: Vec<&Codec> = match p {
            Plan::Reject => {
                write_rejected(&mut sdp, m);
                continue;
            }
            Plan::Video { codec, rtx } => [Some(*codec), *rtx].into_iter().flatten().collect(),
            Plan::Audio { codec, red } => [Some(*codec), *red].into_iter().flatten().collect(),
        };
        let dir = answer_direction(m.direction);
        // check_transport guaranteed the mid.
        let mid = m.mid.clone().unwrap_or_default();
        let pts: Vec<String> = codecs.iter().map(|c| c.payload_type.to_string()).collect();
        if ice_fragment.is_none() {
            ice_fragment = Some(IceFragment {
                bundle_mids: bundle_mids.clone(),
                kind: m.kind.as_str().to_owned(),
                protocol: m.protocol.clone(),
                formats: pts.clone(),
                mid: mid.clone(),
                candidates: opts.candidates.clone(),
            });
        }
        sdp_line!(
            &mut sdp,
            "m={} {} {} {}",
            m.kind.as_str(),
            primary.port(),
            m.protocol,
            pts.join(" ")
        );
        sdp_line!(&mut sdp, "c=IN {ip_ver} {ip}");
        sdp_line!(&mut sdp, "a=ice-ufrag:{}", opts.ice_ufrag);
        sdp_line!(&mut sdp, "a=ice-pwd:{}", opts.ice_pwd);
        sdp_line!(
            &mut sdp,
            "a=fingerprint:sha-256 {}",
            opts.fingerprint_sha256
        );
        sdp_line!(&mut sdp, "a=setup:passive");
        sdp_line!(&mut sdp, "a=mid:{mid}");
        sdp_line!(&mut sdp, "a={dir}");
        sdp_line!(&mut sdp, "a=rtcp-mux");
        if m.rtcp_rsize {
            sdp_line!(&mut sdp, "a=rtcp-rsize");
        }
        let sending = dir == Direction::SendOnly;
        match p {
            Plan::Video { codec, rtx } => {
                write_codec(&mut sdp, codec, &VIDEO_FEEDBACK);
                if let Some(r) = rtx {
                    write_codec(&mut sdp, r, &[]);
                }
                let playout_delay_id = opts.playout_delay.then(|| playout_delay_id(m)).flatten();
                if let Some(id) = playout_delay_id.filter(|_| sending) {
                    // We only send it (RFC 8285 §6: the answer to a recvonly or
                    // sendrecv extension may be sendonly; Firefox offers recvonly).
                    sdp_line!(&mut sdp, "a=extmap:{id}/sendonly {PLAYOUT_DELAY_URI}");
                }
                if sending {
                    let rtx_ssrc = rtx.and(opts.video_rtx_ssrc);
                    if let Some(r) = rtx_ssrc {
                        sdp_line!(&mut sdp, "a=ssrc-group:FID {} {r}", opts.video_ssrc);
                    }
                    let ssrcs = [Some(opts.video_ssrc), rtx_ssrc];
                    write_source(&mut sdp, opts, VIDEO_TRACK, ssrcs.into_iter().flatten());
                    video = Some(NegotiatedCodec {
                        playout_delay_id,
                        ..negotiated(mid, codec, *rtx)
                    });
                }
            }
            Plan::Audio { codec, red } => {
                write_codec(&mut sdp, codec, &[]);
                if let Some(r) = red {
                    write_codec(&mut sdp, r, &[]);
                }
                if sending {
                    write_source(&mut sdp, opts, AUDIO_TRACK, [opts.audio_ssrc].into_iter());
                    audio = Some(NegotiatedCodec {
                        nack: false,
                        pli: false,
                        red_payload_type: red.map(|r| r.payload_type),
                        ..negotiated(mid, codec, None)
                    });
                }
            }
            Plan::Reject => {}
        }
        write_candidates(&mut sdp, &opts.candidates);
        sdp_line!(&mut sdp, "a=end-of-candidates");
    }
    Ok(Answer {
        sdp,
        video,
        audio,
        bundle_mids,
        ice_fragment,
    })
}

/// Our host candidates: foundation `i + 1` (they differ in address), priority of a host
/// candidate (type preference 126) with local preference 65535 for the first, one less for
/// each next (RFC 8445 §5.1.2.1).
fn write_candidates(sdp: &mut String, candidates: &[SocketAddr]) {
    for (i, c) in candidates.iter().enumerate() {
        let ip = c.ip().to_canonical();
        let priority = (126u32 << 24) | ((65535 - i as u32) << 8) | 255;
        sdp_line!(
            sdp,
            "a=candidate:{} 1 udp {priority} {ip} {} typ host",
            i + 1,
            c.port()
        );
    }
}

/// Decides, per offered section, what we answer; errors when nothing is usable.
fn plan(offer: &SessionDescription, accept_red: bool) -> Result<Vec<Plan<'_>>, Error> {
    let (mut have_video, mut have_audio) = (false, false);
    let plans: Vec<Plan<'_>> = offer
        .media
        .iter()
        .map(|m| {
            if m.port == 0 || m.codecs.is_empty() {
                return Plan::Reject;
            }
            match m.kind {
                MediaKind::Video if !have_video => match choose_h264(m) {
                    Some(codec) => {
                        have_video = true;
                        let rtx = m.codecs.iter().find(|r| {
                            r.name.eq_ignore_ascii_case("rtx") && r.apt == Some(codec.payload_type)
                        });
                        Plan::Video { codec, rtx }
                    }
                    None => Plan::Reject,
                },
                MediaKind::Audio if !have_audio => match choose_opus(m) {
                    Some(codec) => {
                        have_audio = true;
                        let red = m.codecs.iter().find(|r| accept_red && is_red_for(r, codec.payload_type));
                        Plan::Audio { codec, red }
                    }
                    None => Plan::Reject,
                },
                _ => Plan::Reject,
            }
        })
        .collect();
    if !have_video && !have_audio {
        return Err(Error::NoCommonCodec);
    }
    Ok(plans)
}

/// The best H.264 codec we can send: packetization-mode=1, ranked by profile so that the
/// most widely decodable one wins (decoders for baseline exist everywhere, incl. Safari's
/// hardware path); ties keep the viewer's order.
fn choose_h264(m: &MediaSection) -> Option<&Codec> {
    m.codecs
        .iter()
        .filter_map(|c| h264_rank(c).map(|r| (r, c)))
        .min_by_key(|(r, _)| *r)
        .map(|(_, c)| c)
}

fn h264_rank(c: &Codec) -> Option<u8> {
    if !c.name.eq_ignore_ascii_case("H264") || c.clock_rate != 90_000 {
        return None;
    }
    if c.fmtp_param("packetization-mode") != Some("1") {
        return None;
    }
    // RFC 6184 §8.1: absent profile-level-id means Baseline, level 1.
    let plid = c.fmtp_param("profile-level-id").unwrap_or("42000a");
    if plid.len() != 6 || !plid.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let profile = &plid[..2];
    if plid.eq_ignore_ascii_case("42e01f") {
        Some(0)
    } else if profile == "42" {
        Some(1)
    } else if profile.eq_ignore_ascii_case("4d") {
        Some(2)
    } else if profile == "64" {
        Some(3)
    } else {
        None
    }
}

fn choose_opus(m: &MediaSection) -> Option<&Codec> {
    m.codecs.iter().find(|c| {
        c.name.eq_ignore_ascii_case("opus")
            && c.clock_rate == 48_000
            && c.channels.unwrap_or(2) == 2
    })
}

/// RED at 48 kHz stereo whose blocks are `opus_pt` (`a=fmtp:63 111/111`, RFC 2198 §5).
fn is_red_for(c: &Codec, opus_pt: u8) -> bool {
    let blocks_ok = c.fmtp.as_deref().is_some_and(|f| {
        let pts: Vec<&str> = f.split('/').map(str::trim).collect();
        !pts.is_empty() && pts.iter().all(|p| p.parse::<u8>() == Ok(opus_pt))
    });
    c.name.eq_ignore_ascii_case("red") && c.clock_rate == 48_000 && c.channels.unwrap_or(1) == 2 && blocks_ok
}

/// JSEP §5.3.1: we only send, so a viewer that receives gets `sendonly`, and a viewer that
/// does not want to receive gets `inactive`.
fn answer_direction(offered: Direction) -> Direction {
    match offered {
        Direction::RecvOnly | Direction::SendRecv => Direction::SendOnly,
        Direction::SendOnly | Direction::Inactive => Direction::Inactive,
    }
}

/// An accepted section must let us run ICE and verify DTLS; returns its mid.
fn check_transport<'a>(
    offer: &SessionDescription,
    i: usize,
    m: &'a MediaSection,
) -> Result<&'a str, Error> {
    let missing = |what| Error::MissingAttribute { index: i, what };
    let mid = m.mid.as_deref().ok_or_else(|| missing("mid"))?;
    offer.ice_ufrag_for(i).ok_or_else(|| missing("ice-ufrag"))?;
    offer.ice_pwd_for(i).ok_or_else(|| missing("ice-pwd"))?;
    offer
        .fingerprint_for(i)
        .ok_or_else(|| missing("fingerprint"))?;
    if offer.setup_for(i) == Some(Setup::Passive) {
        return Err(Error::IncompatibleSetup { index: i });
    }
    Ok(mid)
}

fn write_rejected(sdp: &mut String, m: &MediaSection) {
    sdp_line!(
        sdp,
        "m={} 0 {} {}",
        m.kind.as_str(),
        m.protocol,
        m.formats.join(" ")
    );
    sdp_line!(sdp, "c=IN IP4 0.0.0.0");
    if let Some(mid) = &m.mid {
        sdp_line!(sdp, "a=mid:{mid}");
    }
}

fn write_codec(sdp: &mut String, c: &Codec, feedback: &[&str]) {
    let pt = c.payload_type;
    match c.channels {
        Some(ch) if ch > 1 => sdp_line!(sdp, "a=rtpmap:{pt} {}/{}/{ch}", c.name, c.clock_rate),
        _ => sdp_line!(sdp, "a=rtpmap:{pt} {}/{}", c.name, c.clock_rate),
    }
    for fb in feedback.iter().filter(|fb| c.has_rtcp_fb(fb)) {
        sdp_line!(sdp, "a=rtcp-fb:{pt} {fb}");
    }
    if let Some(f) = &c.fmtp {
        sdp_line!(sdp, "a=fmtp:{pt} {f}");
    }
}

fn write_source(
    sdp: &mut String,
    opts: &AnswerOptions,
    track: &str,
    ssrcs: impl Iterator<Item = u32>,
) {
    sdp_line!(sdp, "a=msid:{} {track}", opts.stream_id);
    for s in ssrcs {
        sdp_line!(sdp, "a=ssrc:{s} cname:{}", opts.cname);
        sdp_line!(sdp, "a=ssrc:{s} msid:{} {track}", opts.stream_id);
    }
}

/// The id the viewer gave the playout-delay extension, if it fits the one-byte header form
/// (ids 1-14, RFC 8285 §4.2) that our fixed 8-byte extension block uses.
fn playout_delay_id(m: &MediaSection) -> Option<u8> {
    m.extmap_ids(PLAYOUT_DELAY_URI)
        .find(|id| (1..=14).contains(id))
}

fn negotiated(mid: String, c: &Codec, rtx: Option<&Codec>) -> NegotiatedCodec {
    NegotiatedCodec {
        mid,
        payload_type: c.payload_type,
        fmtp: c.fmtp.clone(),
        rtx_payload_type: rtx.map(|r| r.payload_type),
        nack: c.has_rtcp_fb("nack"),
        pli: c.has_rtcp_fb("nack pli"),
        playout_delay_id: None,
        red_payload_type: None,
    }
}

/// Strings we splice into the SDP must be single tokens, or a caller bug (or a hostile
/// stream name used as `stream_id`) could inject lines.
fn validate(opts: &AnswerOptions) -> Result<(), Error> {
    let token_ok = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic());
    for (name, v) in [
        ("ice_ufrag", &opts.ice_ufrag),
        ("ice_pwd", &opts.ice_pwd),
        ("fingerprint_sha256", &opts.fingerprint_sha256),
        ("cname", &opts.cname),
        ("stream_id", &opts.stream_id),
    ] {
        if !token_ok(v) {
            return Err(Error::InvalidOption(name));
        }
    }
    if opts.candidates.is_empty() || opts.candidates.iter().any(|c| c.port() == 0 || c.ip().is_unspecified()) {
        return Err(Error::InvalidOption("candidates"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h264(fmtp: Option<&str>) -> Codec {
        Codec {
            payload_type: 100,
            name: "h264".into(),
            clock_rate: 90_000,
            channels: None,
            fmtp: fmtp.map(str::to_owned),
            rtcp_fb: Vec::new(),
            apt: None,
        }
    }

    #[test]
    fn rank_follows_profile_preference() {
        let r = |f| h264_rank(&h264(Some(f)));
        assert_eq!(r("packetization-mode=1;profile-level-id=42E01F"), Some(0));
        assert_eq!(r("profile-level-id=42001f; packetization-mode=1"), Some(1));
        assert_eq!(r("packetization-mode=1;profile-level-id=4D0032"), Some(2));
        assert_eq!(r("packetization-mode=1;profile-level-id=640c1f"), Some(3));
        // High 4:4:4, malformed ids and mode 0 are not sendable.
        assert_eq!(r("packetization-mode=1;profile-level-id=f4001f"), None);
        assert_eq!(r("packetization-mode=1;profile-level-id=42e0"), None);
        assert_eq!(r("packetization-mode=1;profile-level-id=42é01"), None);
        assert_eq!(r("packetization-mode=0;profile-level-id=42e01f"), None);
        assert_eq!(h264_rank(&h264(None)), None);
        // RFC 6184: absent profile-level-id means baseline.
        assert_eq!(r("packetization-mode=1"), Some(1));
    }

    #[test]
    fn direction_mapping() {
        assert_eq!(answer_direction(Direction::RecvOnly), Direction::SendOnly);
        assert_eq!(answer_direction(Direction::SendRecv), Direction::SendOnly);
        assert_eq!(answer_direction(Direction::SendOnly), Direction::Inactive);
        assert_eq!(answer_direction(Direction::Inactive), Direction::Inactive);
    }
}
