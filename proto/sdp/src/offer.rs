//! Client side: the offer our load generator sends, shaped like a receive-only browser.

use crate::answer::PLAYOUT_DELAY_URI;
use crate::write::sdp_line;

/// What the load generator puts into its offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferOptions {
    /// Our ICE username fragment (single token, no whitespace).
    pub ice_ufrag: String,
    /// Our ICE password.
    pub ice_pwd: String,
    /// SHA-256 fingerprint of our DTLS certificate, `AB:CD:...`.
    pub fingerprint_sha256: String,
    /// Ask for video (H.264 PT 102 + RTX PT 103).
    pub video: bool,
    /// Ask for audio (Opus PT 111, and RED PT 63 carrying it).
    pub audio: bool,
}

/// H.264 payload type of our offer, chosen to match Chrome's usual numbering.
pub const OFFER_H264_PT: u8 = 102;
/// RTX payload type repairing [`OFFER_H264_PT`].
pub const OFFER_RTX_PT: u8 = 103;
/// Opus payload type of our offer.
pub const OFFER_OPUS_PT: u8 = 111;
/// RED (RFC 2198) payload type of our offer, its blocks Opus
/// ([`OFFER_OPUS_PT`]); listed after Opus, as Chrome does.
pub const OFFER_RED_PT: u8 = 63;
/// Header extension id the offer gives the playout-delay extension (Chrome's).
pub const OFFER_PLAYOUT_DELAY_ID: u8 = 5;

/// Builds a `recvonly`, BUNDLEd, rtcp-mux offer with `setup:actpass`. Video (if any) gets
/// mid `0`, audio the next mid. Parse the server's answer with
/// [`SessionDescription::parse`](crate::SessionDescription::parse).
pub fn build_recvonly_offer(opts: &OfferOptions) -> String {
    let mut kinds = Vec::with_capacity(2);
    if opts.video {
        kinds.push("video");
    }
    if opts.audio {
        kinds.push("audio");
    }
    let mids: Vec<String> = (0..kinds.len()).map(|i| i.to_string()).collect();

    let mut sdp = String::with_capacity(1536);
    sdp_line!(&mut sdp, "v=0");
    sdp_line!(&mut sdp, "o=- 1 2 IN IP4 127.0.0.1");
    sdp_line!(&mut sdp, "s=-");
    sdp_line!(&mut sdp, "t=0 0");
    if !mids.is_empty() {
        sdp_line!(&mut sdp, "a=group:BUNDLE {}", mids.join(" "));
    }
    sdp_line!(&mut sdp, "a=msid-semantic: WMS");
    for (kind, mid) in kinds.iter().zip(&mids) {
        let is_video = *kind == "video";
        if is_video {
            sdp_line!(
                &mut sdp,
                "m=video 9 UDP/TLS/RTP/SAVPF {OFFER_H264_PT} {OFFER_RTX_PT}"
            );
        } else {
            sdp_line!(
                &mut sdp,
                "m=audio 9 UDP/TLS/RTP/SAVPF {OFFER_OPUS_PT} {OFFER_RED_PT}"
            );
        }
        sdp_line!(&mut sdp, "c=IN IP4 0.0.0.0");
        sdp_line!(&mut sdp, "a=ice-ufrag:{}", opts.ice_ufrag);
        sdp_line!(&mut sdp, "a=ice-pwd:{}", opts.ice_pwd);
        sdp_line!(
            &mut sdp,
            "a=fingerprint:sha-256 {}",
            opts.fingerprint_sha256
        );
        sdp_line!(&mut sdp, "a=setup:actpass");
        sdp_line!(&mut sdp, "a=mid:{mid}");
        sdp_line!(&mut sdp, "a=recvonly");
        sdp_line!(&mut sdp, "a=rtcp-mux");
        sdp_line!(&mut sdp, "a=rtcp-rsize");
        if is_video {
            let pt = OFFER_H264_PT;
            sdp_line!(&mut sdp, "a=rtpmap:{pt} H264/90000");
            for fb in ["nack", "nack pli", "ccm fir"] {
                sdp_line!(&mut sdp, "a=rtcp-fb:{pt} {fb}");
            }
            sdp_line!(
                &mut sdp,
                "a=fmtp:{pt} level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"
            );
            sdp_line!(&mut sdp, "a=rtpmap:{OFFER_RTX_PT} rtx/90000");
            sdp_line!(&mut sdp, "a=fmtp:{OFFER_RTX_PT} apt={pt}");
            // Like Chrome, so load tests carry the same 20-byte video headers.
            sdp_line!(
                &mut sdp,
                "a=extmap:{OFFER_PLAYOUT_DELAY_ID} {PLAYOUT_DELAY_URI}"
            );
        } else {
            sdp_line!(&mut sdp, "a=rtpmap:{OFFER_OPUS_PT} opus/48000/2");
            sdp_line!(
                &mut sdp,
                "a=fmtp:{OFFER_OPUS_PT} minptime=10;useinbandfec=1"
            );
            sdp_line!(&mut sdp, "a=rtpmap:{OFFER_RED_PT} red/48000/2");
            sdp_line!(
                &mut sdp,
                "a=fmtp:{OFFER_RED_PT} {OFFER_OPUS_PT}/{OFFER_OPUS_PT}"
            );
        }
    }
    sdp
}
