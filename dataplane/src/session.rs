//! One WebRTC viewer as the shard sees it: ICE-lite credentials, the
//! selected 5-tuple, and (once DTLS finished in control) the SRTP contexts.

use rts_srtp::{Profile, SrtpContext};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Instant;

pub struct Session {
    pub id: u64,
    pub local_ufrag: String,
    pub local_pwd: String,
    pub remote_ufrag: String,
    /// "app/stream" key of the stream it plays.
    pub stream: String,
    /// Selected candidate pair: the viewer's address and our local address
    /// the checks arrived at (replies leave from it).
    pub peer: Option<SocketAddrV4>,
    pub local_ip: Option<Ipv4Addr>,
    pub media: Option<Media>,
    pub created: Instant,
    pub last_consent: Instant,
}

/// Present once the session plays: per-viewer SRTP state and negotiated PTs.
pub struct Media {
    pub tx: SrtpContext,
    pub rx: SrtpContext,
    pub profile: Profile,
    pub video_pt: Option<u8>,
    pub audio_pt: Option<u8>,
    pub bytes_out: u64,
    pub packets_out: u64,
}

impl Session {
    pub fn is_playing(&self) -> bool {
        self.media.is_some() && self.peer.is_some()
    }
}
