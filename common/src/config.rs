//! `rts.toml`: every key has an embedded default, so `rts serve` runs with no
//! file at all. Both processes read the same file; the dataplane treats it as
//! read-only shared configuration (DESIGN.md §2).

use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub rtmp: RtmpConfig,
    pub http: HttpConfig,
    pub webrtc: WebrtcConfig,
    pub dataplane: DataplaneConfig,
    pub auth: AuthSection,
    pub log: LogConfig,
    pub transcode: TranscodeConfig,
    pub control: ControlConfig,
    /// Traffic records; absent = none are made.
    pub billing: Option<BillingConfig>,
    pub admin: AdminConfig,
    pub hls: HlsConfig,
    pub https: HttpsConfig,
    /// Streaming domains (`[[domain]]`), each with its keys; requests are
    /// matched by the name they ask for (HTTP Host, the RTS/SRS stream
    /// URL's host, the RTMP tcUrl host).
    #[serde(rename = "domain")]
    pub domains: Vec<DomainConfig>,
    /// Cluster mode (`[cluster]`): a stream directory in Redis, pulls from
    /// the node that has a stream, steering; absent = a single node.
    pub cluster: Option<ClusterConfig>,
    pub ops: OpsConfig,
    pub hooks: HooksConfig,
    pub limits: LimitsConfig,
}

/// `[limits]`: what one client address may cost (floods, slow clients).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Signaling requests per second from one address (a burst of twice
    /// that is allowed); over it: 429. 0 = no limit.
    pub signaling_per_ip_per_s: u32,
    /// WebRTC sessions one address may hold; 0 = no limit.
    pub sessions_per_ip: u32,
    /// TCP connections (RTMP and media listeners) one address may hold on
    /// a shard; 0 = no limit.
    pub conns_per_ip: u32,
    /// An RTMP connection that has not published or played by then is closed.
    pub rtmp_handshake_s: u32,
    /// A media-listener connection without a complete request for this
    /// long (a slow head, an idle keep-alive) is closed.
    pub http_idle_s: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self { signaling_per_ip_per_s: 500, sessions_per_ip: 0, conns_per_ip: 0, rtmp_handshake_s: 10, http_idle_s: 15 }
    }
}

/// `[hooks]`: HTTP callbacks like SRS's (`http_hooks`): JSON POSTed to
/// the operator's URLs. A non-2xx answer to `on_publish` / `on_play`
/// refuses the client; a hook that does not answer in `timeout_ms` (or a
/// control that does not) gets `fail_open`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HooksConfig {
    /// URLs; empty = no hook.
    pub on_publish: String,
    pub on_unpublish: String,
    pub on_play: String,
    pub on_stop: String,
    pub timeout_ms: u64,
    /// A hook that fails (timeout, no connection) allows (true) or refuses
    /// (false) the client.
    pub fail_open: bool,
}

impl HooksConfig {
    /// The URL configured for hook `action` (`on_publish`, `on_unpublish`,
    /// `on_play`, `on_stop`); empty: none.
    pub fn url(&self, action: &str) -> &str {
        match action {
            "on_publish" => &self.on_publish,
            "on_unpublish" => &self.on_unpublish,
            "on_play" => &self.on_play,
            "on_stop" => &self.on_stop,
            _ => "",
        }
    }
}

impl Default for HooksConfig {
    fn default() -> Self {
        Self { on_publish: String::new(), on_unpublish: String::new(), on_play: String::new(), on_stop: String::new(), timeout_ms: 2000, fail_open: false }
    }
}

/// `[ops]`: running the server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpsConfig {
    /// Graceful drain (SIGTERM, `POST /api/v1/drain`): how long publishers
    /// and viewers already here may stay before the server exits.
    pub drain_s: u64,
}

impl Default for OpsConfig {
    fn default() -> Self {
        Self { drain_s: 30 }
    }
}

/// `[cluster]`: this node's entry in the Redis directory and how it pulls
/// and steers (docs/decisions/022).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// `redis://host:port[/db]`.
    pub redis: String,
    /// Unique in the cluster; default: the host name.
    pub node_id: String,
    /// Base URL of this node's signaling (`http://host:8080`): where other
    /// nodes redirect viewers; default: `http://{candidate_ip}:{http.listen port}`.
    pub advertise_url: String,
    /// `host:port` other nodes pull HTTP-FLV from; default: the candidate
    /// address and the `[http] media_listen` port.
    pub advertise_media: String,
    /// Viewers this node takes before redirecting new ones (0 = no limit).
    pub capacity_viewers: u64,
    /// Other nodes may send viewers here (false: an origin or mid-tier
    /// that only feeds other nodes).
    pub redirect_target: bool,
    /// Heartbeat period; the directory entries live `ttl_ms`.
    pub heartbeat_ms: u64,
    pub ttl_ms: u64,
    /// A pull stops this long after its last viewer here left.
    pub pull_linger_s: u64,
    /// Longest chain origin -> ... -> this node (1 = pull only from the
    /// node that ingests).
    pub max_hops: u32,
    /// A pull that has not started streaming within this time is given up.
    pub pull_timeout_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            redis: "redis://127.0.0.1:6379".into(),
            node_id: String::new(),
            advertise_url: String::new(),
            advertise_media: String::new(),
            capacity_viewers: 0,
            redirect_target: true,
            heartbeat_ms: 1000,
            ttl_ms: 3000,
            pull_linger_s: 10,
            max_hops: 3,
            pull_timeout_ms: 5000,
        }
    }
}

/// One streaming domain: its names and keys (`[[domain]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainConfig {
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Publish keys (absent: publishing is open on this domain).
    #[serde(default)]
    pub ingest_key: Option<String>,
    #[serde(default)]
    pub ingest_key_secondary: Option<String>,
    /// Play keys (absent: playing is open on this domain).
    #[serde(default)]
    pub play_key: Option<String>,
    #[serde(default)]
    pub play_key_secondary: Option<String>,
    /// Token validity; absent: `[auth] validity_s`.
    #[serde(default)]
    pub validity_s: Option<u64>,
    /// Alibaba RTS signaling (`artc://`) on this domain.
    #[serde(default = "yes")]
    pub rts: bool,
}

fn yes() -> bool {
    true
}

/// What a requested name selects.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DomainMatch<'a> {
    /// No name (an IP address, no Host), or no domains configured: the
    /// top-level `[auth]`.
    Default,
    Domain(&'a DomainConfig),
    /// A name no `[[domain]]` has, while some are configured: refused.
    Unknown,
}

/// HTTPS for signaling, the player and the API (`[https]`): on only when a
/// certificate is configured. `artc://domain/…` means `https://domain/…`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpsConfig {
    pub listen: SocketAddr,
    /// The media listener over TLS (HTTP-FLV and LL-HLS from the shards,
    /// `https://host:8443/{app}/{stream}.m3u8`), with the same certificates.
    pub media_listen: SocketAddr,
    /// The default certificate chain and its key (PEM files): for clients
    /// that send no SNI name, or one no `certs` entry has.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Certificates chosen by the SNI name (`*.example.com` matches one label).
    pub certs: Vec<SniCert>,
    /// Seconds between checks of the files for changes; a changed file is
    /// served from the next connection on (0: never reloaded).
    pub reload_check_s: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SniCert {
    pub names: Vec<String>,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Default for HttpsConfig {
    fn default() -> Self {
        Self { listen: any_port(443), media_listen: any_port(8443), cert: PathBuf::new(), key: PathBuf::new(), certs: Vec::new(), reload_check_s: 2 }
    }
}

impl HttpsConfig {
    /// Whether any certificate is configured (the listener runs).
    pub fn enabled(&self) -> bool {
        !self.cert.as_os_str().is_empty() || !self.certs.is_empty()
    }
}

/// LL-HLS on the media listener (`[hls]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HlsConfig {
    /// Mux every published stream (H.264 + AAC) into CMAF parts and
    /// segments and serve `/{app}/{stream}.m3u8`. False: 404.
    pub enabled: bool,
}

impl Default for HlsConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// Usage records for billing (`[billing]`): the shards count each session's
/// bytes and cut a record every `interval_s` and at its end; control
/// appends them as JSON lines to hourly files under `path`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BillingConfig {
    /// Directory of the hourly files (`usage-YYYYMMDDTHH.jsonl`, UTC).
    pub path: PathBuf,
    /// Seconds between interim records, aligned to the Unix clock.
    pub interval_s: u32,
}

impl Default for BillingConfig {
    fn default() -> Self {
        Self { path: PathBuf::from("/var/lib/rts/usage"), interval_s: 60 }
    }
}

/// The admin listener (control): billing totals and the full metrics,
/// never on the public port.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    /// Bearer token every admin request must carry; empty = none (keep the
    /// listener on a loopback address then).
    pub token: String,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self { listen: SocketAddr::from(([127, 0, 0, 1], 8081)), token: String::new() }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControlConfig {
    /// Threads running DTLS handshakes (each session on one of them); 0 =
    /// one per core, at most 8.
    pub dtls_workers: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TranscodeConfig {
    /// Opus in-band FEC on AAC→Opus audio, tuned to a loss hint: this many
    /// percent, or 0 = the highest loss the stream's viewers report (their
    /// RTCP receiver reports, capped at 30 %). libopus carries the FEC in
    /// its SILK/hybrid modes (speech-like bitrates) only.
    pub opus_loss_hint_pct: u8,
    /// False: no in-band FEC whatever the hint.
    pub opus_fec: bool,
    /// True: a stream's transcoder (AAC→Opus, B-frame re-encode) runs while
    /// it is published, not only while WebRTC viewers need it, so a first
    /// viewer starts from a re-encoded GOP at once (CPU for every such
    /// stream, watched or not). False: it starts with the first viewer, on
    /// the publisher's GOP so far.
    pub keep_warm: bool,
    /// Seconds a stream's transcoder keeps running after its last WebRTC
    /// viewer (local or replica) left: a viewer swiping back to a room
    /// finds its audio and re-encoded video running (no encoder start, no
    /// re-encoded GOP to wait for). A shard keeps its replica of a stream
    /// published on another shard as long after its last viewer there left
    /// (fed, GOP cache and send clocks warm). 0: both stop with the last
    /// viewer.
    pub linger_s: u32,
}

impl Default for TranscodeConfig {
    fn default() -> Self {
        Self { opus_loss_hint_pct: 0, opus_fec: true, keep_warm: false, linger_s: 15 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RtmpConfig {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Plain HTTP for signaling, API and the player page (the control
    /// process); false: HTTPS only.
    pub enabled: bool,
    /// Signaling, API and the player page (the control process).
    pub listen: SocketAddr,
    /// The media listener (HTTP-FLV), served by every dataplane shard on
    /// the same port (SO_REUSEPORT): media bytes never pass through control.
    pub media_listen: SocketAddr,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebrtcConfig {
    /// Address put in the ICE host candidate. Empty = the host's first
    /// non-loopback IPv4 address, else 127.0.0.1.
    pub candidate_ip: String,
    /// A second host candidate, IPv6, offered after `candidate_ip` (a
    /// dual-stack `udp_bind_ip` takes both families on the one port). Empty
    /// = none, except when `candidate_ip` is empty too: then the host's
    /// IPv6 address with a route to the Internet, if it has one.
    pub candidate_ip6: String,
    /// Shard `i` listens on `udp_port_base + i`.
    pub udp_port_base: u16,
    /// Address the media sockets bind to (`::` = all, IPv6 and IPv4, one
    /// socket; `0.0.0.0` = all IPv4 only). Replies leave from the address
    /// each request arrived at (IP_PKTINFO / IPV6_PKTINFO).
    pub udp_bind_ip: IpAddr,
    /// Largest RTP packet we build (header + payload, before SRTP).
    pub max_rtp_packet: usize,
    /// Seconds without a STUN consent check before a viewer is dropped
    /// (RFC 7675 says 30).
    pub consent_timeout_s: u64,
    /// Start new viewers from the GOP cache (instant first frame). Off only
    /// to measure the difference: viewers then wait for the next keyframe.
    pub gop_cache: bool,
    /// Always send two consecutive Opus packets to a viewer as one GSO
    /// message (halves audio sends; audio waits at most 20 ms more, and the
    /// receiver's audio jitter buffer grows by ~30 ms). Off by default: see
    /// `pair_audio_when_busy`.
    pub pair_audio: bool,
    /// Pair audio only while the shard's core is busier than this share
    /// (0..1; hysteresis 0.15): full audio latency at normal load, ~20 %
    /// more viewers per core when saturated. 0 disables.
    pub pair_audio_when_busy: f64,
    /// Send transcoded Opus packets 20 ms apart (held up to 40 ms) instead
    /// of in the bursts the publisher's interleaving makes: receivers then
    /// keep a smaller audio jitter buffer (dataplane/src/pacer.rs).
    pub pace_audio: bool,
    /// The publisher's video waits at the shard for as long as its
    /// transcoded audio leaves later (measured, at most 150 ms), before it
    /// goes to WebRTC viewers (HTTP-FLV, RTMP and LL-HLS get it at once): a
    /// receiver's lip sync would hold it that long anyway, and video held
    /// here is skipped by a channel switch instead of played out first
    /// (dataplane/src/video_hold.rs, decision 029). A room whose audio was
    /// not transcoded yet starts from the lag of the other rooms published
    /// on the shard (40 ms before any was measured).
    pub hold_video_for_audio: bool,
    /// Video carries the playout-delay RTP header extension where the viewer
    /// offers it: min = how much later than video the audio leaves the shard
    /// (transcoder + pacer, measured), plus the receiver's audio buffering
    /// (80 ms at a viewer's start, 30 ms once settled; dataplane/src/lipsync.rs). Lip
    /// sync from the first frame instead of after the receiver's own sync
    /// has slewed for seconds.
    pub playout_delay_hint: bool,
    /// Answer viewers' NACKs with retransmissions from each stream's shared
    /// history (RTX when negotiated), and restart a viewer that sends a
    /// PLI/FIR from the GOP cache. False: NACKs are only counted (to
    /// measure the difference).
    pub nack: bool,
    /// Answers to a viewer's NACKs wait for its next packet (audio or
    /// video), at most this many ms (and at most 80 ms less the viewer's
    /// RTT, so they beat its next request), and leave in the same GSO
    /// message: one send instead of two. 0: they leave at once, on their own.
    pub resend_hold_ms: u64,
    /// The first resend of a packet named by a NACK that names at most 4
    /// goes out as two copies, while the viewer's retransmission budget
    /// left after them still covers the stream's latest keyframe and half
    /// the budget's burst: a lost resend then costs a retry (libwebrtc asks
    /// again 100 ms later) with the link's loss squared instead of its loss
    /// (decision 030). False: one copy.
    pub double_first_resend: bool,
    /// Send audio as RED (RFC 2198, two earlier Opus frames per packet) to
    /// viewers that offer `red/48000/2`.
    pub red: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataplaneConfig {
    /// Number of shards; 0 = one per available core.
    pub shards: usize,
    /// Cores to pin shards to, in order; empty = shard i on the i-th available core.
    pub cores: Vec<usize>,
    /// Shared-memory file the dataplane creates and control attaches to.
    pub shm_path: PathBuf,
    /// Slots per ring (power of two) and bytes per slot.
    pub ring_slots: u32,
    pub ring_slot_size: u32,
    /// Disable UDP GSO even where the kernel offers it (tests the fallback).
    pub disable_gso: bool,
    /// Register the shard's long-lived fds (UDP socket, RTMP listener,
    /// relay eventfd) with its io_uring as fixed files; off, or when the
    /// kernel refuses, SQEs use plain fds.
    pub uring_register: bool,
    /// Receive UDP with one multishot recvmsg and a ring of provided
    /// buffers (Linux 6.0+); off, or when the kernel refuses, 128 one-shot
    /// recvmsg operations are kept armed.
    pub udp_multishot: bool,
    /// With the multishot receive: viewers' datagrams (RTCP, NACKs, STUN,
    /// DTLS) come in on a second io_uring the shard never sleeps on, and
    /// are read at each loop turn (at least every millisecond), instead of
    /// waking the shard for each one. Off: they wake it (lower receive
    /// latency, one wake-up per datagram).
    pub udp_read_at_turns: bool,
    /// Viewers stay on their stream's home shard until it carries this many
    /// more viewers than the least loaded shard; then new viewers go to the
    /// least loaded shard, which replicates the stream (0 = always spread).
    pub spread_after: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSection {
    /// RTMP publish key (Alibaba type A); absent = publishing is open.
    pub ingest_key: Option<String>,
    pub ingest_key_secondary: Option<String>,
    /// WebRTC/HTTP play key; absent = playing is open.
    pub play_key: Option<String>,
    pub play_key_secondary: Option<String>,
    pub validity_s: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// tracing EnvFilter directive; RUST_LOG overrides it.
    pub level: String,
    /// `text` (human) or `json` (one object per line, for log shippers).
    pub format: String,
    /// One line per signaling request (target `access`): client, method,
    /// path (the `auth_key` value hidden), status, duration.
    pub access: bool,
}

/// `[::]:port`: every address of both families (`rts_common::net` binds it
/// dual-stack, or IPv4 only on a host without IPv6).
fn any_port(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv6Addr::UNSPECIFIED, port))
}

impl Default for RtmpConfig {
    fn default() -> Self {
        Self { listen: any_port(1935) }
    }
}
impl Default for HttpConfig {
    fn default() -> Self {
        Self { enabled: true, listen: any_port(8080), media_listen: any_port(8088) }
    }
}
impl Default for WebrtcConfig {
    fn default() -> Self {
        Self {
            candidate_ip: String::new(),
            candidate_ip6: String::new(),
            udp_port_base: 8000,
            udp_bind_ip: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            max_rtp_packet: 1200,
            consent_timeout_s: 30,
            gop_cache: true,
            pair_audio: false,
            pair_audio_when_busy: 0.75,
            pace_audio: true,
            hold_video_for_audio: true,
            playout_delay_hint: true,
            nack: true,
            resend_hold_ms: 40,
            double_first_resend: true,
            red: true,
        }
    }
}
impl Default for DataplaneConfig {
    fn default() -> Self {
        Self {
            shards: 0,
            cores: Vec::new(),
            shm_path: PathBuf::from("/dev/shm/rts-dataplane"),
            ring_slots: 4096,
            ring_slot_size: 4096,
            disable_gso: false,
            uring_register: true,
            udp_multishot: true,
            udp_read_at_turns: true,
            spread_after: 200,
        }
    }
}
impl Default for AuthSection {
    fn default() -> Self {
        Self {
            ingest_key: None,
            ingest_key_secondary: None,
            play_key: None,
            play_key_secondary: None,
            validity_s: 1800,
        }
    }
}
impl Default for LogConfig {
    fn default() -> Self {
        Self { level: "info".into(), format: "text".into(), access: true }
    }
}
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("parsing {path}: {source}")]
    Parse { path: PathBuf, source: Box<toml::de::Error> },
    #[error("invalid config: {0}")]
    Invalid(String),
}

impl Config {
    /// Loads `path` if given, else the embedded defaults.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let cfg = match path {
            None => Config::default(),
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|source| ConfigError::Read { path: p.to_owned(), source })?;
                Self::parse(&text).map_err(|e| match e {
                    ConfigError::Parse { source, .. } => ConfigError::Parse { path: p.to_owned(), source },
                    other => other,
                })?
            }
        };
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: PathBuf::from("<string>"), source: Box::new(e) })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks what a parse cannot (also for a configuration assembled by a reload).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let d = &self.dataplane;
        if !d.ring_slots.is_power_of_two() {
            return Err(ConfigError::Invalid("dataplane.ring_slots must be a power of two".into()));
        }
        if d.ring_slot_size < 2048 {
            return Err(ConfigError::Invalid("dataplane.ring_slot_size must be >= 2048".into()));
        }
        if !(200..=1400).contains(&self.webrtc.max_rtp_packet) {
            return Err(ConfigError::Invalid("webrtc.max_rtp_packet must be in 200..=1400".into()));
        }
        let h = &self.https;
        if h.cert.as_os_str().is_empty() != h.key.as_os_str().is_empty() {
            return Err(ConfigError::Invalid("https.cert and https.key go together".into()));
        }
        if h.certs.iter().any(|c| c.names.is_empty()) {
            return Err(ConfigError::Invalid("every https.certs entry needs names".into()));
        }
        if !self.http.enabled && !h.enabled() {
            return Err(ConfigError::Invalid("http.enabled = false needs an https certificate".into()));
        }
        let mut names = std::collections::HashSet::new();
        for d in &self.domains {
            for n in std::iter::once(&d.name).chain(&d.aliases) {
                if n.is_empty() || n.parse::<IpAddr>().is_ok() {
                    return Err(ConfigError::Invalid(format!("domain name {n:?} must be a host name")));
                }
                if !names.insert(n.to_ascii_lowercase()) {
                    return Err(ConfigError::Invalid(format!("domain name {n:?} is listed twice")));
                }
            }
        }
        if let Some(b) = &self.billing {
            if b.interval_s == 0 || b.interval_s > 3600 {
                return Err(ConfigError::Invalid("billing.interval_s must be in 1..=3600".into()));
            }
            if b.path.as_os_str().is_empty() {
                return Err(ConfigError::Invalid("billing.path must name a directory".into()));
            }
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(ConfigError::Invalid("log.format must be \"text\" or \"json\"".into()));
        }
        if self.limits.rtmp_handshake_s == 0 || self.limits.http_idle_s == 0 {
            return Err(ConfigError::Invalid("limits.rtmp_handshake_s and limits.http_idle_s must be at least 1".into()));
        }
        let h = &self.hooks;
        for url in [&h.on_publish, &h.on_unpublish, &h.on_play, &h.on_stop] {
            if !url.is_empty() && (!(url.starts_with("http://") || url.starts_with("https://")) || url.len() > 256) {
                return Err(ConfigError::Invalid(format!("hook URL {url:?} must be http(s):// and at most 256 characters")));
            }
        }
        if let Some(c) = &self.cluster {
            if !c.redis.starts_with("redis://") {
                return Err(ConfigError::Invalid("cluster.redis must be a redis:// URL".into()));
            }
            if c.heartbeat_ms == 0 || c.ttl_ms <= c.heartbeat_ms {
                return Err(ConfigError::Invalid("cluster.ttl_ms must be above cluster.heartbeat_ms > 0".into()));
            }
            if c.max_hops == 0 {
                return Err(ConfigError::Invalid("cluster.max_hops must be at least 1".into()));
            }
            if !c.advertise_media.is_empty() && c.advertise_media.parse::<SocketAddr>().is_err() {
                return Err(ConfigError::Invalid("cluster.advertise_media must be ip:port".into()));
            }
            if c.node_id.contains([';', ',', '|']) {
                return Err(ConfigError::Invalid("cluster.node_id must not contain ; , |".into()));
            }
        }
        if !self.webrtc.candidate_ip6.is_empty() && self.webrtc.candidate_ip6.parse::<Ipv6Addr>().is_err() {
            return Err(ConfigError::Invalid(format!("webrtc.candidate_ip6 {:?} is not an IPv6 address", self.webrtc.candidate_ip6)));
        }
        if !self.webrtc.candidate_ip.is_empty() && self.webrtc.candidate_ip.parse::<IpAddr>().is_err() {
            return Err(ConfigError::Invalid(format!(
                "webrtc.candidate_ip {:?} is not an IP address",
                self.webrtc.candidate_ip
            )));
        }
        Ok(())
    }

    /// Shard count after resolving `0 = one per core`.
    pub fn shard_count(&self) -> usize {
        if self.dataplane.shards > 0 {
            self.dataplane.shards
        } else if !self.dataplane.cores.is_empty() {
            self.dataplane.cores.len()
        } else {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        }
    }

    pub fn udp_port(&self, shard: usize) -> u16 {
        self.webrtc.udp_port_base.wrapping_add(shard as u16)
    }

    /// This node's id in the cluster: configured, else the host name.
    pub fn node_id(&self) -> String {
        match &self.cluster {
            Some(c) if !c.node_id.is_empty() => c.node_id.clone(),
            _ => std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "rts".into()),
        }
    }

    /// Where other nodes send viewers: `[cluster] advertise_url`, else
    /// this node's candidate address and signaling port.
    pub fn advertise_url(&self) -> String {
        match &self.cluster {
            Some(c) if !c.advertise_url.is_empty() => c.advertise_url.trim_end_matches('/').to_string(),
            _ => format!("http://{}", SocketAddr::new(self.candidate_ip(), self.http.listen.port())),
        }
    }

    /// Where other nodes pull HTTP-FLV from.
    pub fn advertise_media(&self) -> SocketAddr {
        self.cluster
            .as_ref()
            .and_then(|c| c.advertise_media.parse().ok())
            .unwrap_or_else(|| SocketAddr::new(self.candidate_ip(), self.http.media_listen.port()))
    }

    /// Every host candidate address, in order of preference:
    /// [`Config::candidate_ip`], then the IPv6 one (`candidate_ip6`, or
    /// found when both are empty), each only where the UDP bind address
    /// can reach its family.
    pub fn candidate_ips(&self) -> Vec<IpAddr> {
        let bind = self.webrtc.udp_bind_ip;
        let reachable = |ip: &IpAddr| match (bind, ip) {
            (IpAddr::V6(b), IpAddr::V4(_)) => b.is_unspecified(),
            (IpAddr::V4(_), IpAddr::V6(_)) => false,
            _ => true,
        };
        let configured6 = self.webrtc.candidate_ip6.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
        let mut ips = Vec::new();
        if self.webrtc.candidate_ip.is_empty() {
            ips.extend(first_non_loopback_ipv4().map(IpAddr::V4));
            ips.extend(configured6.or_else(|| first_global_ipv6().map(IpAddr::V6)));
            if ips.is_empty() {
                ips.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
            }
        } else {
            ips.push(self.candidate_ip());
            ips.extend(configured6.filter(|ip| *ip != ips[0]));
        }
        let usable: Vec<IpAddr> = ips.iter().copied().filter(reachable).collect();
        if usable.is_empty() {
            ips
        } else {
            usable
        }
    }

    /// The ICE candidate address: configured, else first non-loopback IPv4.
    pub fn candidate_ip(&self) -> IpAddr {
        if let Ok(ip) = self.webrtc.candidate_ip.parse::<IpAddr>() {
            return ip;
        }
        first_non_loopback_ipv4().map(IpAddr::V4).unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    /// The domain `host` (a name, or an IP address; a port or IPv6
    /// brackets are ignored) selects.
    pub fn domain(&self, host: &str) -> DomainMatch<'_> {
        let host = host.trim().trim_end_matches('.');
        let bare = host.trim_start_matches('[').split(']').next().unwrap_or("");
        if self.domains.is_empty() || host.is_empty() || bare.parse::<IpAddr>().is_ok() {
            return DomainMatch::Default;
        }
        let is = |n: &String| n.eq_ignore_ascii_case(host);
        match self.domains.iter().find(|d| is(&d.name) || d.aliases.iter().any(is)) {
            Some(d) => DomainMatch::Domain(d),
            None => DomainMatch::Unknown,
        }
    }

    /// The app name a stream of `host`'s domain goes by inside the server:
    /// `{domain}/{app}` for a configured domain (its canonical name, so
    /// aliases share streams), `app` for the default domain; None: unknown
    /// domain. App names have no `/`, so the two never collide, and every
    /// message that carries an app carries the domain with it
    /// (decision 021).
    pub fn stream_app(&self, host: &str, app: &str) -> Option<String> {
        match self.domain(host) {
            DomainMatch::Default => Some(app.to_string()),
            DomainMatch::Domain(d) => Some(format!("{}/{app}", d.name.to_ascii_lowercase())),
            DomainMatch::Unknown => None,
        }
    }

    /// Play auth for a request that asked for `host`; None: unknown domain.
    pub fn play_auth_for(&self, host: &str) -> Option<crate::auth::AuthConfig> {
        match self.domain(host) {
            DomainMatch::Default => Some(self.play_auth()),
            DomainMatch::Domain(d) => Some(crate::auth::AuthConfig {
                key: d.play_key.clone(),
                secondary_key: d.play_key_secondary.clone(),
                validity_s: d.validity_s.unwrap_or(self.auth.validity_s),
            }),
            DomainMatch::Unknown => None,
        }
    }

    /// Publish auth for an RTMP connection to `host`; None: unknown domain.
    pub fn ingest_auth_for(&self, host: &str) -> Option<crate::auth::AuthConfig> {
        match self.domain(host) {
            DomainMatch::Default => Some(self.ingest_auth()),
            DomainMatch::Domain(d) => Some(crate::auth::AuthConfig {
                key: d.ingest_key.clone(),
                secondary_key: d.ingest_key_secondary.clone(),
                validity_s: d.validity_s.unwrap_or(self.auth.validity_s),
            }),
            DomainMatch::Unknown => None,
        }
    }

    pub fn ingest_auth(&self) -> crate::auth::AuthConfig {
        crate::auth::AuthConfig {
            key: self.auth.ingest_key.clone(),
            secondary_key: self.auth.ingest_key_secondary.clone(),
            validity_s: self.auth.validity_s,
        }
    }

    pub fn play_auth(&self) -> crate::auth::AuthConfig {
        crate::auth::AuthConfig {
            key: self.auth.play_key.clone(),
            secondary_key: self.auth.play_key_secondary.clone(),
            validity_s: self.auth.validity_s,
        }
    }
}

/// The embedded defaults as an `rts.toml` whose every line is commented
/// out (`rts defaults`; the Debian package's `/etc/rts/rts.toml`): a file
/// that changes nothing until a line is uncommented.
pub fn defaults_toml() -> String {
    let body = toml::to_string(&Config::default()).unwrap_or_default();
    let mut out = String::from(
        "# rts configuration. Every key below is shown with its embedded default and\n\
         # commented out: this file changes nothing until a line is uncommented.\n\
         # Optional sections ([billing], [cluster], [[domain]], [[https.certs]]) and\n\
         # every key are described in the README (/usr/share/doc/rts/README.md).\n\
         # Reload: systemctl reload rts (SIGHUP); what needs a restart is logged.\n\n",
    );
    for line in body.lines() {
        if line.is_empty() {
            out.push('\n');
        } else {
            out.push_str("# ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The host of a URL (`artc://Example.com:443/live/s`, an RTMP tcUrl) or of
/// a Host header value (`example.com:8080`): lowercase, without user, port
/// or IPv6 brackets; empty when there is none. What [`Config::domain`] is
/// given.
pub fn host_of(s: &str) -> String {
    let rest = s.split_once("://").map_or(s, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host_port.split(':').next().unwrap_or(""),
    };
    host.to_ascii_lowercase()
}

/// (domain, app) of an app name from [`Config::stream_app`]; the domain is
/// empty for the default domain.
pub fn split_stream_app(app: &str) -> (&str, &str) {
    app.rsplit_once('/').unwrap_or(("", app))
}

/// First IPv4 address of an interface that is up and not loopback.
pub fn first_non_loopback_ipv4() -> Option<Ipv4Addr> {
    // Connecting a UDP socket sends nothing but makes the kernel pick the
    // source address it would route from; this avoids parsing getifaddrs.
    // Fallback path for hosts without a default route: none (127.0.0.1).
    let sock = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    sock.connect("192.0.2.1:9").ok()?; // TEST-NET-1, never actually contacted
    match sock.local_addr().ok()?.ip() {
        IpAddr::V4(ip) if !ip.is_loopback() && !ip.is_unspecified() => Some(ip),
        _ => None,
    }
}

/// The IPv6 address the host would reach the Internet from (global or
/// unique-local, not link-local), if it has a route there.
pub fn first_global_ipv6() -> Option<Ipv6Addr> {
    // As above: connecting picks the source address, nothing is sent.
    let sock = std::net::UdpSocket::bind("[::]:0").ok()?;
    sock.connect("[2001:db8::1]:9").ok()?; // documentation prefix, never contacted
    match sock.local_addr().ok()?.ip() {
        IpAddr::V6(ip) if !ip.is_loopback() && !ip.is_unspecified() && !ip.is_unicast_link_local() && ip.to_ipv4_mapped().is_none() => Some(ip),
        _ => None,
    }
}

/// `2026-12-07T01:00:00.123Z`: RFC 3339 / ISO 8601 UTC of a Unix time in
/// ms (usage records, EXT-X-PROGRAM-DATE-TIME).
pub fn utc_iso8601(unix_ms: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let f = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    t.format(&f).unwrap_or_default()
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.rtmp.listen.port(), 1935);
        assert_eq!(c.http.listen.port(), 8080);
        assert_eq!(c.http.media_listen.port(), 8088);
        assert_eq!(c.webrtc.udp_port_base, 8000);
        assert_eq!(c.auth.validity_s, 1800);
        assert!(c.auth.ingest_key.is_none());
        // Every listener takes both families by default.
        for a in [c.rtmp.listen, c.http.listen, c.http.media_listen, c.https.listen, c.https.media_listen] {
            assert_eq!(a.ip(), "::".parse::<IpAddr>().unwrap());
        }
        assert_eq!(c.webrtc.udp_bind_ip, "::".parse::<IpAddr>().unwrap());
    }

    /// Host candidates per family: configured ones in order, only the
    /// families the UDP bind address serves; a non-IPv6 `candidate_ip6`
    /// is refused.
    #[test]
    fn candidate_addresses_per_family() {
        let ips = |toml: &str| -> Vec<String> { Config::parse(toml).unwrap().candidate_ips().iter().map(|i| i.to_string()).collect() };
        assert_eq!(ips("[webrtc]\ncandidate_ip = \"10.200.0.1\"\n"), ["10.200.0.1"]);
        assert_eq!(ips("[webrtc]\ncandidate_ip = \"10.200.0.1\"\ncandidate_ip6 = \"fd00:200::1\"\n"), ["10.200.0.1", "fd00:200::1"]);
        assert_eq!(ips("[webrtc]\ncandidate_ip = \"fd00:200::1\"\n"), ["fd00:200::1"]);
        assert_eq!(ips("[webrtc]\ncandidate_ip = \"10.200.0.1\"\ncandidate_ip6 = \"fd00:200::1\"\nudp_bind_ip = \"0.0.0.0\"\n"), ["10.200.0.1"]);
        assert_eq!(ips("[webrtc]\ncandidate_ip = \"10.200.0.1\"\ncandidate_ip6 = \"fd00:200::1\"\nudp_bind_ip = \"fd00:200::1\"\n"), ["fd00:200::1"]);
        assert!(Config::parse("[webrtc]\ncandidate_ip6 = \"10.200.0.1\"\n").is_err());
    }

    #[test]
    fn keys_parse_and_unknown_keys_are_rejected() {
        let c = Config::parse(
            "[auth]\ningest_key = \"a\"\nplay_key = \"b\"\nvalidity_s = 60\n[dataplane]\nshards = 3\ncores = [1]\n[webrtc]\ncandidate_ip = \"10.200.0.1\"\n",
        )
        .unwrap();
        assert_eq!(c.auth.ingest_key.as_deref(), Some("a"));
        assert_eq!(c.shard_count(), 3);
        assert_eq!(c.candidate_ip(), "10.200.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(c.udp_port(2), 8002);
        assert!(Config::parse("[auth]\nbogus = 1\n").is_err());
        assert!(Config::parse("[webrtc]\ncandidate_ip = \"nope\"\n").is_err());
        assert!(Config::parse("[dataplane]\nring_slots = 1000\n").is_err());
    }

    #[test]
    fn billing_is_off_unless_configured() {
        assert!(Config::parse("").unwrap().billing.is_none());
        let c = Config::parse("[billing]\npath = \"/tmp/u\"\n").unwrap();
        let b = c.billing.unwrap();
        assert_eq!((b.path, b.interval_s), (PathBuf::from("/tmp/u"), 60));
        assert!(Config::parse("[billing]\ninterval_s = 0\n").is_err());
        assert_eq!(Config::parse("").unwrap().admin.listen, SocketAddr::from(([127, 0, 0, 1], 8081)));
    }

    #[test]
    fn https_needs_a_certificate_and_its_key() {
        assert!(!Config::parse("").unwrap().https.enabled());
        let c = Config::parse("[https]\nlisten = \"0.0.0.0:8443\"\ncert = \"a.pem\"\nkey = \"a.key\"\n[[https.certs]]\nnames = [\"x.example.com\"]\ncert = \"x.pem\"\nkey = \"x.key\"\n").unwrap();
        assert!(c.https.enabled());
        assert_eq!(c.https.certs[0].names, vec!["x.example.com".to_string()]);
        assert!(Config::parse("[https]\ncert = \"a.pem\"\n").is_err());
        assert!(Config::parse("[http]\nenabled = false\n").is_err(), "no listener at all");
    }

    #[test]
    fn domains_select_their_keys_and_unknown_names_are_refused() {
        let c = Config::parse(
            "[auth]\nplay_key = \"default\"\nvalidity_s = 60\n[[domain]]\nname = \"a.example.com\"\naliases = [\"A2.example.com\"]\nplay_key = \"ka\"\ningest_key = \"ia\"\n[[domain]]\nname = \"b.example.com\"\nplay_key = \"kb\"\nrts = false\nvalidity_s = 5\n",
        )
        .unwrap();
        let key = |h: &str| c.play_auth_for(h).map(|a| (a.key, a.validity_s));
        assert_eq!(key("a.example.com"), Some((Some("ka".into()), 60)));
        assert_eq!(key("a2.EXAMPLE.com."), Some((Some("ka".into()), 60)), "aliases, any case, a trailing dot");
        assert_eq!(key("b.example.com"), Some((Some("kb".into()), 5)));
        assert_eq!(key("10.0.0.1"), Some((Some("default".into()), 60)), "an address: the default domain");
        assert_eq!(key("[::1]"), Some((Some("default".into()), 60)));
        assert_eq!(key(""), Some((Some("default".into()), 60)));
        assert_eq!(key("c.example.com"), None, "unknown");
        assert_eq!(c.ingest_auth_for("a.example.com").and_then(|a| a.key), Some("ia".into()));
        assert_eq!(c.ingest_auth_for("b.example.com").map(|a| a.key), Some(None), "open ingest on b");
        assert!(matches!(c.domain("b.example.com"), DomainMatch::Domain(d) if !d.rts));
        assert_eq!(c.stream_app("A2.example.com", "live").as_deref(), Some("a.example.com/live"), "aliases share the name's streams");
        assert_eq!(c.stream_app("10.0.0.1", "live").as_deref(), Some("live"));
        assert_eq!(c.stream_app("c.example.com", "live"), None);
        assert_eq!(split_stream_app("a.example.com/live"), ("a.example.com", "live"));
        assert_eq!(split_stream_app("live"), ("", "live"));
        assert!(matches!(c.domain("a.example.com"), DomainMatch::Domain(d) if d.rts));
        // Without domains every name is the default.
        assert_eq!(Config::parse("").unwrap().domain("x.example.com"), DomainMatch::Default);
        assert!(Config::parse("[[domain]]\nname = \"a\"\n[[domain]]\nname = \"b\"\naliases = [\"A\"]\n").is_err(), "a name twice");
        assert!(Config::parse("[[domain]]\nname = \"10.0.0.1\"\n").is_err());
    }

    #[test]
    fn hosts_of_urls_and_host_headers() {
        assert_eq!(host_of("artc://Live.Example.com/live/s?auth_key=1"), "live.example.com");
        assert_eq!(host_of("webrtc://10.0.0.1:1985/live/s"), "10.0.0.1");
        assert_eq!(host_of("rtmp://Edge.Example.com:1935/live?auth_key=1"), "edge.example.com");
        assert_eq!(host_of("rtmp://[::1]:1935/live"), "::1");
        assert_eq!(host_of("rtmp://user@h.example/live"), "h.example");
        assert_eq!(host_of("rtmp://h.example?x=1"), "h.example");
        assert_eq!(host_of("Example.com:8080"), "example.com");
        assert_eq!(host_of("[2001:db8::1]:8080"), "2001:db8::1");
        assert_eq!(host_of(""), "");
    }

    #[test]
    fn utc_times() {
        // `date -u -d @1796605200` = 2026-12-07 01:00:00 UTC; 951782400 = 2000-02-29.
        assert_eq!(utc_iso8601(1_796_605_200_123), "2026-12-07T01:00:00.123Z");
        assert_eq!(utc_iso8601(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(utc_iso8601(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn the_cluster_examples_parse_and_two_nodes_share_no_listener() {
        let a = Config::parse(include_str!("../../examples/cluster/a.toml")).unwrap();
        let b = Config::parse(include_str!("../../examples/cluster/b.toml")).unwrap();
        let ports = |c: &Config| {
            vec![
                c.rtmp.listen.port(),
                c.http.listen.port(),
                c.http.media_listen.port(),
                c.https.media_listen.port(),
                c.admin.listen.port(),
                c.udp_port(0),
                c.udp_port(15),
            ]
        };
        let (pa, pb) = (ports(&a), ports(&b));
        assert!(pa.iter().all(|p| !pb.contains(p)), "{pa:?} vs {pb:?}");
        assert!(a.udp_port(15) < b.udp_port(0), "16 shards of A fit below B's UDP ports");
        assert_ne!(a.dataplane.shm_path, b.dataplane.shm_path);
        assert_eq!((a.node_id(), b.node_id()), ("a".to_string(), "b".to_string()));
        assert_eq!(b.cluster.as_ref().map(|c| c.capacity_viewers), Some(1000));
        assert_eq!(b.advertise_media().port(), 8098);
        assert!(b.advertise_url().ends_with(":8090"), "{}", b.advertise_url());
    }

    #[test]
    fn the_commented_defaults_change_nothing_and_uncommented_are_the_defaults() {
        let text = defaults_toml();
        assert!(text.lines().all(|l| l.is_empty() || l.starts_with('#')), "every line commented");
        let as_json = |c: &Config| serde_json::to_value(c).unwrap();
        assert_eq!(as_json(&Config::parse(&text).unwrap()), as_json(&Config::default()));
        let uncommented: String = text.lines().skip_while(|l| l.starts_with("# rts") || l.starts_with("# ") && !l.starts_with("# [")).map(|l| l.strip_prefix("# ").unwrap_or(l)).collect::<Vec<_>>().join("\n");
        let cfg = Config::parse(&uncommented).unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
        assert_eq!(as_json(&cfg), as_json(&Config::default()));
        assert!(uncommented.contains("[limits]") && uncommented.contains("[hooks]") && uncommented.contains("drain_s = 30"));
    }

    #[test]
    fn cluster_settings_are_checked() {
        assert!(Config::parse("[cluster]\nredis = \"http://x\"\n").is_err());
        assert!(Config::parse("[cluster]\nheartbeat_ms = 1000\nttl_ms = 1000\n").is_err());
        assert!(Config::parse("[cluster]\nmax_hops = 0\n").is_err());
        assert!(Config::parse("[cluster]\nnode_id = \"a;b\"\n").is_err());
        assert!(Config::parse("[cluster]\nadvertise_media = \"host\"\n").is_err());
        let c = Config::parse("[cluster]\n").unwrap();
        assert_eq!(c.cluster.map(|c| (c.heartbeat_ms, c.ttl_ms, c.max_hops)), Some((1000, 3000, 3)));
        assert!(Config::parse("").unwrap().cluster.is_none(), "no section: a single node");
    }

    #[test]
    fn cores_imply_shard_count() {
        let c = Config::parse("[dataplane]\ncores = [0, 1]\n").unwrap();
        assert_eq!(c.shard_count(), 2);
    }
}
