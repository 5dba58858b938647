//! SDP for rts: parse a browser's WebRTC offer (Unified Plan, BUNDLE) and answer it as an
//! ICE-lite, DTLS-passive server that only sends H.264 video and Opus audio; read and write
//! the `trickle-ice-sdpfrag` fragments of a WHEP PATCH (RFC 8840); plus the client side used
//! by the load generator (a recvonly offer, and parsing the answer).
//!
//! Sans-IO and pure: text in, text and plain structs out.
//!
//! # Answer rules
//! * One m-line per offered m-line, same order and mid (JSEP §5.3.1).
//! * Video: an H.264 codec with `packetization-mode=1`, preferring `42e01f`, then any
//!   `42xxxx`, then `4dxxxx`, then `64xxxx`; answered with the viewer's payload type and
//!   fmtp, its RTX if offered, and `nack` / `nack pli` / `ccm fir` only if offered.
//! * Audio: `opus/48000/2` with the offered payload type and fmtp.
//! * `recvonly`/`sendrecv` → `sendonly`; `sendonly`/`inactive` → `inactive`.
//! * Data channels, extra or unknown sections and sections without a usable codec are
//!   rejected with port 0 and left out of BUNDLE.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod answer;
mod error;
mod offer;
mod parse;
mod types;
mod write;

pub use answer::{
    build_answer, Answer, AnswerOptions, IceFragment, NegotiatedCodec, PLAYOUT_DELAY_URI,
};
pub use error::Error;
pub use offer::{
    build_recvonly_offer, OfferOptions, OFFER_H264_PT, OFFER_OPUS_PT, OFFER_RED_PT, OFFER_RTX_PT,
};
pub use types::{
    Candidate, Codec, Direction, Fingerprint, MediaKind, MediaSection, SessionDescription, Setup,
};

impl SessionDescription {
    /// Parses an offer or answer (CRLF or LF line endings).
    ///
    /// Rejects: a first line other than `v=0`, lines not shaped `<letter>=<value>`,
    /// malformed `m=` lines, non-numeric or out-of-range payload types, and malformed values
    /// of the attributes we read. Unknown attributes and line types are ignored.
    pub fn parse(sdp: &str) -> Result<Self, Error> {
        parse::parse(sdp, false)
    }

    /// Parses an SDP fragment (RFC 8840 §9, `application/trickle-ice-sdpfrag`, as a WHEP or
    /// WHIP PATCH carries it): the same lines and rules as [`SessionDescription::parse`]
    /// without the leading `v=0`. Attributes before the first `m=` line land at session
    /// level, so [`SessionDescription::ice_ufrag_for`] and friends read either placement.
    pub fn parse_fragment(fragment: &str) -> Result<Self, Error> {
        parse::parse(fragment, true)
    }
}
