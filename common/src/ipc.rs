//! The control <-> dataplane contract: one versioned message enum per
//! direction, carried as postcard bytes in the shared-memory rings.
//!
//! Changing a variant's shape is a protocol change: bump [`IPC_VERSION`]
//! (a mismatched control refuses to attach instead of misreading bytes).

pub use crate::histogram::Histogram;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// Bumped on any incompatible change to the enums below.
pub const IPC_VERSION: u32 = 18;

/// Session ids carry their shard in the top 16 bits, so any control
/// instance (including one restarted after a crash) can route a DELETE to
/// the right shard without remembering the session.
pub fn session_shard(session: u64) -> usize {
    (session >> 48) as usize
}

pub fn make_session_id(shard: usize, random: u64) -> u64 {
    ((shard as u64) << 48) | (random & 0xFFFF_FFFF_FFFF)
}

/// What control puts in a shard's ring: a message and its request id. The
/// shard acknowledges every request with a non-zero id (`ShardToControl::Ack`)
/// once it has applied it; ids only grow within one control run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub id: u64,
    pub msg: ControlToShard,
}

impl ControlToShard {
    /// Whether the message changes the shard's state: it gets a request id,
    /// is never dropped on a full ring (it waits in control's backlog) and
    /// is acknowledged. DTLS records are not: the peer retransmits them.
    pub fn changes_state(&self) -> bool {
        !matches!(self, ControlToShard::DtlsToPeer { .. })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlToShard {
    /// Control answered an offer; the shard accepts ICE checks for
    /// `local_ufrag` from now on.
    AddSession {
        session: u64,
        local_ufrag: String,
        local_pwd: String,
        remote_ufrag: String,
        app: String,
        stream: String,
        /// Shard the stream is published on, if it is live (the session's
        /// shard replicates it from there when different).
        home_shard: Option<u32>,
        /// The domain the viewer asked for (traffic records).
        domain: String,
    },
    /// DTLS records for the session's selected peer address.
    DtlsToPeer { session: u64, data: Vec<u8> },
    /// DTLS finished: SRTP keys are known; start sending media.
    StartMedia {
        session: u64,
        srtp_profile: u16,
        local_key: Vec<u8>,
        local_salt: Vec<u8>,
        remote_key: Vec<u8>,
        remote_salt: Vec<u8>,
        video_pt: Option<u8>,
        audio_pt: Option<u8>,
        /// Header extension id of the playout-delay extension on video,
        /// when the viewer negotiated it.
        video_playout_delay_id: Option<u8>,
        /// RTX payload type and SSRC (the answer's `a=ssrc-group:FID`), when
        /// the viewer offered RTX for the video codec.
        video_rtx: Option<(u8, u32)>,
        /// The viewer sends generic NACK for video.
        video_nack: bool,
        /// RED payload type for audio, when negotiated.
        audio_red_pt: Option<u8>,
    },
    RemoveSession { session: u64, reason: String },
    /// Move a playing session to another stream on the same shard, without
    /// new ICE/DTLS (channel switch); it starts from that stream's GOP cache.
    SwitchStream { session: u64, app: String, stream: String, home_shard: Option<u32> },
    /// A stream went live on `shard`: shards with waiting viewers of it
    /// replicate it from there.
    StreamHome { app: String, stream: String, shard: u32 },
    /// Asks the shard to report everything it holds: live streams, stats,
    /// and its sessions (`SessionList`), so control can reconcile (after a
    /// restart, and periodically).
    Snapshot,
    /// ICE restart (a WHEP PATCH with new ICE credentials, RFC 9725 §4.3.5):
    /// from now on the shard answers checks for `local_ufrag` / `local_pwd`
    /// and no longer for the old ones. The selected address, DTLS and media
    /// stay until a check nominates another address. Answered with
    /// `IceRestarted`.
    IceRestart { session: u64, local_ufrag: String, local_pwd: String, remote_ufrag: String },
    /// These usage records of the dataplane run `boot` are on disk: the
    /// shard forgets them (it resends the others until they are).
    UsageWritten { boot: u64, seqs: Vec<u64> },
    /// Cluster: ingest `app`/`stream` (the server's names, decision 021)
    /// from another node's HTTP-FLV at `source` (`GET {path}` with
    /// `Host: {host}`), as if it were published here. Ends with
    /// `PullEnded`; nothing happens if the stream is already published here.
    Pull { app: String, stream: String, domain: String, source: SocketAddr, host: String, path: String },
    /// Cluster: stop that pull (its last viewer here left).
    StopPull { app: String, stream: String },
    /// A configuration reload's settings the shards apply live: the keys
    /// (`[auth]`, `[[domain]]`: publish and media play checks, decision
    /// 004), the billing interval and the hooks. Split in `parts` messages so any
    /// number of domains fits the ring slots; a shard applies a generation
    /// once it has all its parts.
    Reload { generation: u64, part: u32, parts: u32, auth: crate::config::AuthSection, domains: Vec<crate::config::DomainConfig>, billing_interval_s: Option<u32>, hooks: crate::config::HooksConfig },
    /// Admin: list the shard's TCP clients (publishers, RTMP players,
    /// HTTP-FLV and LL-HLS viewers, pulls); answered with `Clients`.
    ListClients { req: u64 },
    /// Admin: close the TCP client with this session id (as listed); answered
    /// with `CutDone`.
    Cut { session: u64 },
    /// The verdict on hook request `req` (`ShardToControl::Hook`).
    HookVerdict { req: u64, allow: bool, reason: String },
    /// Admin: close the publisher (or pull) of app/stream on this shard;
    /// answered with `CutDone` (session 0).
    CutPublisher { app: String, stream: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardToControl {
    DtlsFromPeer { session: u64, peer: SocketAddr, data: Vec<u8> },
    IceConnected { session: u64, peer: SocketAddr },
    SessionClosed { session: u64, reason: String },
    SwitchDone { session: u64, app: String, stream: String, ok: bool, reason: String },
    StreamStarted { app: String, stream: String },
    StreamEnded { app: String, stream: String },
    PublishRefused { app: String, stream: String, reason: String },
    /// Periodic (1 s) snapshot of the shard's counters.
    Stats(Box<ShardStats>),
    /// Per-stream figures (one message per stream, so a shard with many
    /// streams never overflows a ring slot).
    StreamStats(Box<StreamStats>),
    /// Receiver feedback and repair figures of up to [`VIEWER_STATS_PER_MESSAGE`]
    /// playing sessions.
    ViewerStats(Vec<ViewerStats>),
    /// Request `id` was applied.
    Ack { id: u64 },
    /// The shard's sessions, answering the `Snapshot` request `snapshot`, in
    /// chunks of up to [`SESSIONS_PER_MESSAGE`]; `last` marks the final one.
    SessionList { snapshot: u64, sessions: Vec<SessionEntry>, last: bool },
    /// Answer to `IceRestart`: `ok` is false when the shard has no such
    /// session or `local_ufrag` belongs to another one.
    IceRestarted { session: u64, local_ufrag: String, ok: bool },
    /// Usage records to write (billing); resent until `UsageWritten`.
    Usage(Vec<UsageRecord>),
    /// The shard's traffic per domain/app/stream/protocol so far (every
    /// second; chunks of at most [`USAGE_MESSAGE_BYTES`]).
    UsageTotals(Vec<UsageTotal>),
    /// A pull ended or failed (`reason`); its stream, if it had started,
    /// ended too (`StreamEnded` came first).
    PullEnded { app: String, stream: String, reason: String },
    /// An HTTP callback (`[hooks]`) for control to make: `on_publish` and
    /// `on_play` wait for `HookVerdict` `req` (the client is held);
    /// `on_unpublish` / `on_stop` (req 0) are notices.
    Hook { req: u64, call: HookCall },
    /// The answer to `ListClients` `req`, in chunks; `last` marks the final one.
    Clients { req: u64, clients: Vec<ClientEntry>, last: bool },
    /// The answer to `Cut` / `CutPublisher`: whether there was such a client.
    CutDone { session: u64, app: String, stream: String, found: bool },
    /// Cluster: a viewer on the media listener (HTTP-FLV, RTMP play,
    /// LL-HLS) asked for a stream no shard here has; control looks it up
    /// and pulls it.
    StreamWanted { app: String, stream: String },
}

/// One TCP client of a shard, for the admin listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientEntry {
    /// The client's session id (what `Cut` takes; also its usage records').
    pub session: u64,
    /// Publish, Rtmp (play), Flv, Hls, or Relay (a pull of this node).
    pub protocol: Protocol,
    /// The server's names (a domain's app is `{domain}/{app}`); empty while
    /// it has not asked for a stream yet.
    pub app: String,
    pub stream: String,
    pub peer: Option<SocketAddr>,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// What a hook is told about a client (SRS's `http_hooks` fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookCall {
    /// `on_publish`, `on_unpublish`, `on_play`, `on_stop`.
    pub action: String,
    /// The client's session id.
    pub session: u64,
    pub protocol: Protocol,
    pub client: Option<SocketAddr>,
    /// The domain it named (empty: none).
    pub domain: String,
    /// As the client named them.
    pub app: String,
    pub stream: String,
    /// The query string it sent (with `auth_key`), without `?`.
    pub param: String,
}

/// What a session is, in traffic records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Protocol {
    Webrtc,
    Rtmp,
    Flv,
    Hls,
    Publish,
    /// Between cluster nodes: a pull (in at the node that pulls, out at
    /// the node pulled from).
    Relay,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Webrtc => "webrtc",
            Protocol::Rtmp => "rtmp",
            Protocol::Flv => "flv",
            Protocol::Hls => "hls",
            Protocol::Publish => "publish",
            Protocol::Relay => "relay",
        }
    }
}

/// Longest domain, app or stream name a usage record carries (longer ones
/// are cut), so a record always fits a ring slot.
pub const USAGE_NAME_MAX: usize = 255;
/// Encoded bytes a `Usage` or `UsageTotals` message stays under (the
/// smallest ring slot, less its length prefix and some room).
pub const USAGE_MESSAGE_BYTES: usize = 1900;

/// What traffic is billed to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct UsageKey {
    /// The domain the client asked for (HTTP Host, RTMP tcUrl host, RTS
    /// stream URL); empty when it named none.
    pub domain: String,
    pub app: String,
    pub stream: String,
    pub protocol: Option<Protocol>,
}

impl UsageKey {
    pub fn new(domain: &str, app: &str, stream: &str, protocol: Protocol) -> UsageKey {
        UsageKey { domain: clamp(domain), app: clamp(app), stream: clamp(stream), protocol: Some(protocol) }
    }

    /// Upper bound of its encoded size.
    pub fn encoded_max(&self) -> usize {
        self.domain.len() + self.app.len() + self.stream.len() + 3 * 2 + 2
    }
}

fn clamp(s: &str) -> String {
    let mut end = s.len().min(USAGE_NAME_MAX);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// One usage record: a session's bytes over one interval. A session's
/// records add up to its total; `last` marks its final one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// Unique: the dataplane run (its start, Unix µs), shard and number.
    pub boot: u64,
    pub shard: u32,
    pub seq: u64,
    pub key: UsageKey,
    pub session: u64,
    pub client: Option<SocketAddr>,
    /// Unix µs: when the session started, and this record's interval.
    pub session_start_us: u64,
    pub start_us: u64,
    pub end_us: u64,
    pub last: bool,
    /// Payload bytes of the interval: UDP for WebRTC, TCP for the rest.
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl UsageRecord {
    /// Upper bound of its encoded size.
    pub fn encoded_max(&self) -> usize {
        self.key.encoded_max() + 10 * 11 + 2 + 20
    }
}

/// A shard's bytes for one key so far. `gen` changes when the shard
/// started the count over (it forgot the key while idle): the count is
/// then new, not lower.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageTotal {
    pub key: UsageKey,
    pub gen: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// Sessions per `SessionList` message (at most 11 bytes each encoded).
pub const SESSIONS_PER_MESSAGE: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEntry {
    pub session: u64,
    /// DTLS finished and media started (false: still handshaking).
    pub media: bool,
}

/// Sessions per `ViewerStats` message: at most ~135 bytes each encoded, so
/// a message fits the smallest ring slot (`[dataplane] ring_slot_size` >= 2048).
pub const VIEWER_STATS_PER_MESSAGE: usize = 12;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewerStats {
    pub session: u64,
    /// Round-trip time from the viewer's receiver reports (LSR/DLSR), ms.
    pub rtt_ms: Option<u32>,
    /// Fraction of video lost in the viewer's last report, in 1/256.
    pub fraction_lost: u8,
    pub cumulative_lost: i32,
    pub packets_out: u64,
    pub bytes_out: u64,
    /// Sequence numbers the viewer reported lost (NACK).
    pub nacked: u64,
    /// Retransmissions sent (RTX or on the media SSRC) and their bytes.
    pub resent: u64,
    pub resent_bytes: u64,
    /// NACKed packets not resent: within the RTT, over `MAX_RESENDS`, over
    /// the budget, no longer in the history, or from before a switch.
    pub suppressed_rtt: u64,
    pub over_max_resends: u64,
    pub over_budget: u64,
    pub not_in_history: u64,
    pub stale: u64,
    /// Of `resent`, packets sent again unasked ahead of a keyframe
    /// (decision 012).
    pub keyframe_guard: u64,
    /// First resends sent as two copies (isolated loss, decision 030).
    pub doubled_resends: u64,
    pub plis: u64,
    pub gop_restarts: u64,
}

impl ShardToControl {
    /// Whether losing the message on a full ring changes nothing lasting:
    /// stats are resent every second and a DTLS peer retransmits its
    /// records, usage records are resent until acknowledged. Every other
    /// message changes control's state and must be delivered.
    pub fn is_droppable(&self) -> bool {
        matches!(
            self,
            ShardToControl::Stats(_)
                | ShardToControl::StreamStats(_)
                | ShardToControl::ViewerStats(_)
                | ShardToControl::DtlsFromPeer { .. }
                // Resent by the shard until control says it wrote them.
                | ShardToControl::Usage(_)
                | ShardToControl::UsageTotals(_)
        )
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardCounters {
    pub udp_datagrams_in: u64,
    pub udp_bytes_in: u64,
    pub udp_datagrams_out: u64,
    pub udp_bytes_out: u64,
    pub udp_sends: u64,
    /// Messages sent (a GSO super-datagram or a single datagram each).
    pub udp_messages: u64,
    pub udp_send_errors: u64,
    pub gso_fallbacks: u64,
    /// The multishot UDP receive ended (out of buffers, an error) and was re-armed.
    pub udp_recv_rearmed: u64,
    /// Datagrams longer than a receive buffer, dropped.
    pub udp_recv_truncated: u64,
    pub stun_ok: u64,
    pub stun_rejected: u64,
    pub dtls_forwarded: u64,
    pub rtcp_in: u64,
    pub srtcp_failed: u64,
    pub nacks_in: u64,
    pub plis_in: u64,
    pub unknown_dropped: u64,
    /// Droppable messages to control (stats, DTLS records) lost on a full ring.
    pub ring_full_dropped: u64,
    /// State-changing messages to control that waited for ring space.
    pub ctl_backlogged: u64,
    /// Relayed media dropped on a full shard-to-shard queue.
    pub relay_dropped: u64,
    /// State-changing relay messages retried after a full queue.
    pub relay_retried: u64,
    /// Datagrams that waited for room in the send batch.
    pub transmit_overflow: u64,
    /// Loss repair, summed over the shard's viewers (see `ViewerStats`).
    pub nacked: u64,
    pub resent: u64,
    pub resent_bytes: u64,
    pub resend_refused: u64,
    pub keyframe_guard: u64,
    pub doubled_resends: u64,
    pub gop_restarts: u64,
    pub red_packets: u64,
    /// Requests on the media listener, and those refused (4xx).
    pub http_requests: u64,
    pub http_refused: u64,
    /// HTTP-FLV viewers now (a gauge), other nodes' pulls included.
    pub flv_viewers: u64,
    /// Pulls by other cluster nodes served so far (HTTP-FLV with `relay=`).
    pub relays_served: u64,
    /// Pulls of this shard from other nodes: started, refused by the
    /// source (non-200), ended (any reason).
    pub pulls_started: u64,
    pub pulls_refused: u64,
    pub pulls_ended: u64,
    /// Media-listener viewers that waited for a stream to be pulled.
    pub cluster_waits: u64,
    /// Configuration reloads applied.
    pub reloads: u64,
    /// Clients and publishers cut by the admin API.
    pub admin_cuts: u64,
    /// Hook verdicts asked for, refused (by the hook or the policy), and
    /// late (the policy applied).
    pub hooks_asked: u64,
    pub hooks_refused: u64,
    pub hooks_timed_out: u64,
    /// TCP connections refused for `[limits] conns_per_ip`, and clients
    /// closed for not saying what they want in time (RTMP handshake,
    /// HTTP request head or idle keep-alive).
    pub conns_refused_per_ip: u64,
    pub slow_clients_closed: u64,
    /// Bytes handed to media-listener connections.
    pub flv_bytes_out: u64,
    /// RTMP players now (a gauge), their bytes, and plays refused.
    pub rtmp_players: u64,
    pub rtmp_play_bytes_out: u64,
    pub rtmp_play_refused: u64,
    /// LL-HLS requests answered, those held until their part or playlist
    /// was ready (blocking reloads, preload hints), and bytes sent.
    pub hls_requests: u64,
    pub hls_held: u64,
    pub hls_bytes_out: u64,
    /// HTTP-FLV viewers and RTMP players that fell behind and skipped to a keyframe.
    pub flv_skips: u64,
    /// HTTP-FLV viewers and RTMP players disconnected for not reading.
    pub flv_slow_closed: u64,
    pub rtmp_connections: u64,
    pub rtmp_errors: u64,
    pub rtmp_publish_refused: u64,
    pub sessions: u64,
    pub viewers: u64,
    pub streams: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardStats {
    pub shard: u32,
    pub core: Option<u32>,
    pub pinned: bool,
    pub udp_port: u16,
    pub gso: bool,
    /// The shard's long-lived fds are registered with its io_uring.
    pub uring_fixed_files: bool,
    /// UDP input uses one multishot recvmsg with provided buffers.
    pub udp_multishot: bool,
    /// Viewer datagrams are read at the shard's turns (`udp_read_at_turns`).
    pub udp_read_at_turns: bool,
    /// Share of the last second the shard loop was busy, in per mille.
    pub busy_permille: u32,
    /// Audio is being paired (forced by config or by load).
    pub audio_paired: bool,
    /// The dataplane drains (no new publishers or viewers).
    pub draining: bool,
    /// Clients held: WebRTC sessions, TCP connections, pulls.
    pub clients: u64,
    pub counters: ShardCounters,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamStats {
    pub shard: u32,
    pub app: String,
    pub stream: String,
    pub publishing: bool,
    pub viewers: u32,
    pub video_frames: u64,
    pub audio_frames: u64,
    pub b_frames: bool,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Server-added latency: RTMP frame received (video: let go after its
    /// hold, `video_hold_ms`) -> last viewer's packet sent.
    pub latency_us_p50: u32,
    pub latency_us_p99: u32,
    pub latency_us_max: u32,
    pub latency_samples: u64,
    /// Delay added by the transcoder (input frame arrival -> output ready).
    pub audio_transcode_us_p50: u32,
    pub audio_transcode_us_p99: u32,
    pub video_transcode_us_p50: u32,
    pub video_transcode_us_p99: u32,
    pub transcoder_dropped: u64,
    /// How much later than video the audio leaves the shard (ms, measured;
    /// None until both tracks were sent), and the playout-delay `min` the
    /// video tells settled viewers from it (ms).
    pub av_lag_ms: Option<i32>,
    pub playout_delay_min_ms: u32,
    /// How long the shard holds the publisher's video for its audio now
    /// (ms; `[webrtc] hold_video_for_audio`): the part of `av_lag_ms` the
    /// receivers need not cover. Server-added latency counts from the end
    /// of this hold.
    pub video_hold_ms: u32,
    /// Histograms since the stream started on this shard (counts only
    /// grow; bounds in `histogram.rs`): server-added latency (the samples
    /// behind `latency_us_*`), transcoder delay per kind, and first video
    /// frame per viewer protocol (indexed as [`FIRST_FRAME_PROTOCOLS`]).
    pub latency_hist: Histogram,
    pub audio_transcode_hist: Histogram,
    pub video_transcode_hist: Histogram,
    pub first_frame_hist: [Histogram; FIRST_FRAME_PROTOCOLS.len()],
}

/// The viewer protocols whose first frame is measured, in the order of
/// `StreamStats::first_frame_hist`.
pub const FIRST_FRAME_PROTOCOLS: [Protocol; 3] = [Protocol::Webrtc, Protocol::Flv, Protocol::Rtmp];

/// Where `protocol` is in [`FIRST_FRAME_PROTOCOLS`].
pub fn first_frame_slot(protocol: Protocol) -> Option<usize> {
    FIRST_FRAME_PROTOCOLS.iter().position(|&p| p == protocol)
}

#[derive(Debug, thiserror::Error)]
#[error("ipc decode: {0}")]
pub struct DecodeError(String);

pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    // Serialising these plain structs cannot fail.
    postcard::to_allocvec(msg).unwrap_or_default()
}

pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, DecodeError> {
    postcard::from_bytes(bytes).map_err(|e| DecodeError(e.to_string()))
}

/// SSRC of a stream's video (kind 0) or audio (kind 1) track. Derived from
/// the stream name so control can put it in the SDP answer without asking
/// the shard, and every viewer of a stream shares it (FNV-1a, never 0).
pub fn stream_ssrc(app: &str, stream: &str, kind: u8) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in app.bytes().chain([b'/']).chain(stream.bytes()).chain([kind]) {
        h ^= b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    h.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let full = ShardToControl::SessionList {
            snapshot: u64::MAX,
            sessions: vec![SessionEntry { session: u64::MAX, media: true }; SESSIONS_PER_MESSAGE],
            last: true,
        };
        assert!(encode(&full).len() <= 2048 - 4, "a full session list fits the smallest ring slot");
        let r = Request { id: 7, msg: ControlToShard::Snapshot };
        assert_eq!(decode::<Request>(&encode(&r)).unwrap(), r);
        assert!(ControlToShard::Snapshot.changes_state());
        assert!(!ControlToShard::DtlsToPeer { session: 1, data: vec![] }.changes_state());
        let m = ControlToShard::AddSession {
            session: make_session_id(3, 0xdead_beef),
            local_ufrag: "abcd".into(),
            local_pwd: "p".repeat(24),
            remote_ufrag: "x".into(),
            app: "live".into(),
            stream: "s".into(),
            home_shard: Some(1),
            domain: "example.com".into(),
        };
        let b = encode(&m);
        assert_eq!(decode::<ControlToShard>(&b).unwrap(), m);
        assert!(decode::<ControlToShard>(&[0xff, 0xff, 0xff]).is_err());
        assert!(decode::<ControlToShard>(&b[..b.len() / 2]).is_err());
    }

    #[test]
    fn a_full_viewer_stats_message_fits_the_smallest_ring_slot() {
        let worst = ViewerStats {
            session: u64::MAX,
            rtt_ms: Some(u32::MAX),
            fraction_lost: 255,
            cumulative_lost: i32::MIN,
            packets_out: u64::MAX,
            bytes_out: u64::MAX,
            nacked: u64::MAX,
            resent: u64::MAX,
            resent_bytes: u64::MAX,
            suppressed_rtt: u64::MAX,
            over_max_resends: u64::MAX,
            over_budget: u64::MAX,
            not_in_history: u64::MAX,
            stale: u64::MAX,
            keyframe_guard: u64::MAX,
            doubled_resends: u64::MAX,
            plis: u64::MAX,
            gop_restarts: u64::MAX,
        };
        let m = ShardToControl::ViewerStats(vec![worst; VIEWER_STATS_PER_MESSAGE]);
        let b = encode(&m);
        // Slots carry a 4-byte length; the smallest slot the config allows is 2048.
        assert!(b.len() <= 2048 - 4, "{} bytes", b.len());
        assert_eq!(decode::<ShardToControl>(&b).unwrap(), m);
    }

    /// The seeds of the `ipc_decode` fuzz target, as the ring carries them.
    fn seed_messages() -> Vec<(&'static str, Vec<u8>)> {
        let start = ControlToShard::StartMedia {
            session: make_session_id(1, 42),
            srtp_profile: 7,
            local_key: vec![1; 16],
            local_salt: vec![2; 12],
            remote_key: vec![3; 16],
            remote_salt: vec![4; 12],
            video_pt: Some(102),
            audio_pt: Some(111),
            video_playout_delay_id: Some(5),
            video_rtx: Some((103, 0xdead_beef)),
            video_nack: true,
            audio_red_pt: Some(63),
        };
        let add = ControlToShard::AddSession {
            session: make_session_id(0, 7),
            local_ufrag: "abcd".into(),
            local_pwd: "p".repeat(24),
            remote_ufrag: "x".into(),
            app: "live".into(),
            stream: "s".into(),
            home_shard: Some(1),
            domain: "example.com".into(),
        };
        let restart = ControlToShard::IceRestart {
            session: make_session_id(0, 7),
            local_ufrag: "efgh".into(),
            local_pwd: "q".repeat(24),
            remote_ufrag: "y".into(),
        };
        let req = |id, msg| encode(&Request { id, msg });
        vec![
            ("add_session", req(1, add)),
            ("start_media", req(2, start)),
            ("snapshot", req(3, ControlToShard::Snapshot)),
            ("ice_restart", req(4, restart)),
            ("ice_restarted", encode(&ShardToControl::IceRestarted { session: 9, local_ufrag: "efgh".into(), ok: true })),
            ("dtls_to_peer", req(0, ControlToShard::DtlsToPeer { session: 9, data: vec![22, 254, 253, 0] })),
            ("dtls_from_peer", encode(&ShardToControl::DtlsFromPeer { session: 9, peer: "10.0.0.1:5000".parse().unwrap(), data: vec![22, 254, 253] })),
            ("stream_stats", encode(&ShardToControl::StreamStats(Box::new(StreamStats { app: "live".into(), stream: "s".into(), viewers: 3, ..Default::default() })))),
            ("ack", encode(&ShardToControl::Ack { id: 77 })),
            ("session_list", encode(&ShardToControl::SessionList { snapshot: 3, sessions: vec![SessionEntry { session: 9, media: true }], last: true })),
            ("usage", encode(&ShardToControl::Usage(vec![UsageRecord { seq: 1, key: UsageKey::new("example.com", "live", "s", Protocol::Flv), bytes_out: 1000, ..Default::default() }]))),
            ("usage_written", req(5, ControlToShard::UsageWritten { boot: 1, seqs: vec![1, 2] })),
            ("viewer_stats", encode(&ShardToControl::ViewerStats(vec![ViewerStats { session: 9, rtt_ms: Some(40), nacked: 5, resent: 5, ..Default::default() }]))),
        ]
    }

    /// The committed seeds decode as today's messages (a stale seed gives the
    /// fuzzer no valid start). After an IPC change, rewrite them with
    /// `RTS_WRITE_FUZZ_SEEDS=1 cargo test -p rts-common fuzz_seeds`.
    #[test]
    fn fuzz_seeds_decode() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/ipc_decode");
        if std::env::var_os("RTS_WRITE_FUZZ_SEEDS").is_some() {
            for (name, bytes) in seed_messages() {
                std::fs::write(dir.join(name), bytes).unwrap();
            }
        }
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let bytes = std::fs::read(e.unwrap().path()).unwrap();
            assert!(decode::<Request>(&bytes).is_ok() || decode::<ShardToControl>(&bytes).is_ok(), "stale seed");
            n += 1;
        }
        assert!(n >= seed_messages().len());
    }

    #[test]
    fn a_full_usage_record_fits_the_smallest_ring_slot() {
        let long = "é".repeat(400);
        let key = UsageKey::new(&long, &long, &long, Protocol::Publish);
        assert!(key.domain.len() <= USAGE_NAME_MAX && key.domain.len() > USAGE_NAME_MAX - 2);
        let r = UsageRecord {
            boot: u64::MAX,
            shard: u32::MAX,
            seq: u64::MAX,
            key,
            session: u64::MAX,
            client: Some("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535".parse().unwrap()),
            session_start_us: u64::MAX,
            start_us: u64::MAX,
            end_us: u64::MAX,
            last: true,
            bytes_in: u64::MAX,
            bytes_out: u64::MAX,
        };
        let b = encode(&ShardToControl::Usage(vec![r.clone()]));
        assert!(b.len() <= r.encoded_max() + 2, "{} > {}", b.len(), r.encoded_max());
        assert!(b.len() <= USAGE_MESSAGE_BYTES);
        let ack = encode(&Request { id: u64::MAX, msg: ControlToShard::UsageWritten { boot: u64::MAX, seqs: vec![u64::MAX; 128] } });
        assert!(ack.len() <= 2048 - 4, "{}", ack.len());
    }

    /// Stream names are as long as a usage record keeps, every figure at
    /// its largest: the stats of one stream, histograms included, still fit
    /// the smallest ring slot.
    #[test]
    fn a_full_stream_stats_message_fits_the_smallest_ring_slot() {
        let full = Histogram { counts: [u64::MAX; crate::histogram::BOUNDS + 1], sum_us: u64::MAX };
        let worst = StreamStats {
            shard: u32::MAX,
            app: "a".repeat(USAGE_NAME_MAX),
            stream: "s".repeat(USAGE_NAME_MAX),
            publishing: true,
            viewers: u32::MAX,
            video_frames: u64::MAX,
            audio_frames: u64::MAX,
            b_frames: true,
            bytes_in: u64::MAX,
            bytes_out: u64::MAX,
            latency_us_p50: u32::MAX,
            latency_us_p99: u32::MAX,
            latency_us_max: u32::MAX,
            latency_samples: u64::MAX,
            audio_transcode_us_p50: u32::MAX,
            audio_transcode_us_p99: u32::MAX,
            video_transcode_us_p50: u32::MAX,
            video_transcode_us_p99: u32::MAX,
            transcoder_dropped: u64::MAX,
            av_lag_ms: Some(i32::MIN),
            playout_delay_min_ms: u32::MAX,
            video_hold_ms: u32::MAX,
            latency_hist: full,
            audio_transcode_hist: full,
            video_transcode_hist: full,
            first_frame_hist: [full; FIRST_FRAME_PROTOCOLS.len()],
        };
        let m = ShardToControl::StreamStats(Box::new(worst));
        let b = encode(&m);
        assert!(b.len() <= 2048 - 4, "{} bytes", b.len());
        assert_eq!(decode::<ShardToControl>(&b).unwrap(), m);
        assert_eq!(first_frame_slot(Protocol::Flv), Some(1));
        assert_eq!(first_frame_slot(Protocol::Hls), None);
    }

    #[test]
    fn session_ids_carry_shard() {
        for shard in [0usize, 1, 7, 255] {
            assert_eq!(session_shard(make_session_id(shard, u64::MAX)), shard);
        }
    }
}
