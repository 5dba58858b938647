//! The parsed model of a session description.
//!
//! Fields are public and plain so that callers (control plane, load generator, tests) can
//! inspect what the peer offered without accessor boilerplate.

use std::fmt;
use std::net::IpAddr;

/// A whole SDP (offer or answer) as far as WebRTC cares about it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionDescription {
    /// Session-level `a=ice-ufrag` (media level may override it).
    pub ice_ufrag: Option<String>,
    /// Session-level `a=ice-pwd`.
    pub ice_pwd: Option<String>,
    /// Session-level `a=fingerprint`: the first one when several are given.
    pub fingerprint: Option<Fingerprint>,
    /// Every session-level `a=fingerprint`, in order (RFC 8122 §5 allows several, e.g. one
    /// per hash function).
    pub fingerprints: Vec<Fingerprint>,
    /// Session-level `a=setup`.
    pub setup: Option<Setup>,
    /// Mids of `a=group:BUNDLE`, in order.
    pub bundle_mids: Vec<String>,
    /// The `m=` sections, in order.
    pub media: Vec<MediaSection>,
    /// `a=ice-lite` present at session level.
    pub ice_lite: bool,
    /// Candidates found at session level and in every media section, in order of appearance.
    pub candidates: Vec<Candidate>,
}

/// One `m=` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSection {
    /// `audio`, `video`, `application` or anything else.
    pub kind: MediaKind,
    /// Port of the `m=` line; 0 means the section is rejected/disabled.
    pub port: u16,
    /// Transport protocol, e.g. `UDP/TLS/RTP/SAVPF`.
    pub protocol: String,
    /// Raw format tokens of the `m=` line (payload types for RTP, e.g. `webrtc-datachannel`
    /// for SCTP). Kept so a rejected section can echo them back as JSEP requires.
    pub formats: Vec<String>,
    /// `a=mid`.
    pub mid: Option<String>,
    /// Direction attribute; `sendrecv` when absent (RFC 8866 §6.7).
    pub direction: Direction,
    /// Codecs in `m=` line (preference) order. Only filled for RTP protocols.
    pub codecs: Vec<Codec>,
    /// `a=rtcp-mux` present.
    pub rtcp_mux: bool,
    /// `a=rtcp-rsize` present.
    pub rtcp_rsize: bool,
    /// `a=extmap:<id> <uri>` entries (direction suffix and extension attributes dropped).
    pub extmaps: Vec<(u8, String)>,
    /// Media-level `a=ice-ufrag` override.
    pub ice_ufrag: Option<String>,
    /// Media-level `a=ice-pwd` override.
    pub ice_pwd: Option<String>,
    /// Media-level `a=fingerprint` override: the first one when several are given.
    pub fingerprint: Option<Fingerprint>,
    /// Every media-level `a=fingerprint`, in order.
    pub fingerprints: Vec<Fingerprint>,
    /// Media-level `a=setup` override.
    pub setup: Option<Setup>,
    /// Distinct SSRCs of `a=ssrc:` lines, in order of first appearance.
    pub ssrcs: Vec<u32>,
    /// Candidates of this section only.
    pub candidates: Vec<Candidate>,
}

/// Media type of an `m=` line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MediaKind {
    /// `m=audio`.
    Audio,
    /// `m=video`.
    Video,
    /// `m=application` (data channels).
    Application,
    /// Anything else (`text`, `message`, ...), kept verbatim.
    Other(String),
}

impl MediaKind {
    /// Parses the first token of an `m=` line.
    pub fn from_token(s: &str) -> Self {
        match s {
            "audio" => Self::Audio,
            "video" => Self::Video,
            "application" => Self::Application,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The token as written in an `m=` line.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Audio => "audio",
            Self::Video => "video",
            Self::Application => "application",
            Self::Other(s) => s,
        }
    }
}

/// Media direction attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Direction {
    /// `a=sendrecv` (also the default when absent).
    #[default]
    SendRecv,
    /// `a=sendonly`.
    SendOnly,
    /// `a=recvonly`.
    RecvOnly,
    /// `a=inactive`.
    Inactive,
}

impl Direction {
    /// The attribute name, e.g. `sendonly`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SendRecv => "sendrecv",
            Self::SendOnly => "sendonly",
            Self::RecvOnly => "recvonly",
            Self::Inactive => "inactive",
        }
    }

    pub(crate) fn from_attr(s: &str) -> Option<Self> {
        Some(match s {
            "sendrecv" => Self::SendRecv,
            "sendonly" => Self::SendOnly,
            "recvonly" => Self::RecvOnly,
            "inactive" => Self::Inactive,
            _ => return None,
        })
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// DTLS role attribute (RFC 4145 / RFC 5763).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Setup {
    /// `actpass`: the offerer lets the answerer choose.
    ActPass,
    /// `active`: this side is the DTLS client.
    Active,
    /// `passive`: this side is the DTLS server.
    Passive,
    /// `holdconn`.
    HoldConn,
}

impl Setup {
    /// The attribute value, e.g. `passive`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ActPass => "actpass",
            Self::Active => "active",
            Self::Passive => "passive",
            Self::HoldConn => "holdconn",
        }
    }

    pub(crate) fn from_value(s: &str) -> Option<Self> {
        Some(match s {
            "actpass" => Self::ActPass,
            "active" => Self::Active,
            "passive" => Self::Passive,
            "holdconn" => Self::HoldConn,
            _ => return None,
        })
    }
}

/// One payload type of a media section, assembled from the `m=` line, `a=rtpmap`,
/// `a=fmtp` and `a=rtcp-fb`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codec {
    /// RTP payload type.
    pub payload_type: u8,
    /// Encoding name as written (`H264`, `opus`, `rtx`); empty for a dynamic PT without rtpmap.
    pub name: String,
    /// Clock rate in Hz; 0 when unknown.
    pub clock_rate: u32,
    /// Channel count (audio only).
    pub channels: Option<u16>,
    /// Raw `a=fmtp` parameters.
    pub fmtp: Option<String>,
    /// `a=rtcp-fb` values for this PT (plus those given for `*`), e.g. `nack pli`.
    pub rtcp_fb: Vec<String>,
    /// For `rtx`: the `apt=` payload type it repairs.
    pub apt: Option<u8>,
}

impl Codec {
    /// Value of a `key=value` fmtp parameter (keys compared case-insensitively).
    pub fn fmtp_param(&self, key: &str) -> Option<&str> {
        self.fmtp.as_deref()?.split(';').find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            k.trim().eq_ignore_ascii_case(key).then(|| v.trim())
        })
    }

    /// Whether `rtcp-fb` lists exactly `fb` (e.g. `nack`, `nack pli`).
    pub fn has_rtcp_fb(&self, fb: &str) -> bool {
        self.rtcp_fb.iter().any(|f| f == fb)
    }
}

/// `a=fingerprint:<algorithm> <value>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// Hash function, lower-cased (`sha-256`).
    pub algorithm: String,
    /// Colon-separated hex bytes as written.
    pub value: String,
}

/// An ICE candidate (`a=candidate:`), RFC 8839 §5.1. Only IP-address candidates are kept;
/// mDNS (`*.local`) and FQDN candidates are skipped because we cannot use them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Foundation.
    pub foundation: String,
    /// Component id (1 = RTP).
    pub component: u16,
    /// `udp` / `tcp` as written.
    pub transport: String,
    /// Priority.
    pub priority: u32,
    /// Connection address.
    pub address: IpAddr,
    /// Port.
    pub port: u16,
    /// `host`, `srflx`, `prflx`, `relay`.
    pub typ: String,
}

impl MediaSection {
    /// The ids this section's `a=extmap` lines give header extension `uri`, in order.
    pub fn extmap_ids<'a>(&'a self, uri: &'a str) -> impl Iterator<Item = u8> + 'a {
        self.extmaps
            .iter()
            .filter(move |(_, u)| u == uri)
            .map(|(id, _)| *id)
    }
}

impl SessionDescription {
    /// ICE ufrag for media section `i`: the media-level value, else the session-level one.
    pub fn ice_ufrag_for(&self, i: usize) -> Option<&str> {
        self.media
            .get(i)
            .and_then(|m| m.ice_ufrag.as_deref())
            .or(self.ice_ufrag.as_deref())
    }

    /// ICE password for media section `i`: media level, else session level.
    pub fn ice_pwd_for(&self, i: usize) -> Option<&str> {
        self.media
            .get(i)
            .and_then(|m| m.ice_pwd.as_deref())
            .or(self.ice_pwd.as_deref())
    }

    /// DTLS fingerprint for media section `i`: media level, else session level.
    pub fn fingerprint_for(&self, i: usize) -> Option<&Fingerprint> {
        self.media
            .get(i)
            .and_then(|m| m.fingerprint.as_ref())
            .or(self.fingerprint.as_ref())
    }

    /// Every DTLS fingerprint for media section `i`: the media-level ones when it has any,
    /// else the session-level ones (RFC 8122 §5: media level overrides session level).
    pub fn fingerprints_for(&self, i: usize) -> &[Fingerprint] {
        match self.media.get(i) {
            Some(m) if !m.fingerprints.is_empty() => &m.fingerprints,
            _ => &self.fingerprints,
        }
    }

    /// DTLS setup role for media section `i`: media level, else session level.
    pub fn setup_for(&self, i: usize) -> Option<Setup> {
        self.media.get(i).and_then(|m| m.setup).or(self.setup)
    }
}
