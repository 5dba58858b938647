//! The shard's sans-IO core: everything a shard decides (streams, viewers,
//! RTMP ingest, ICE-lite and consent, RTCP, GOP catch-up, channel switching,
//! replication between shards, sender reports, stats), with no sockets and
//! no clock (str0m's shape; docs/decisions/011).
//!
//! Inputs are `handle_*(now, …)`; outputs are drained with `poll_transmit`
//! (UDP, as GSO batches), `poll_tcp` (RTMP bytes and closes),
//! `poll_control` (to control), `poll_relay` (to other shards), and
//! `poll_timeout` says when to call `handle_timeout` next. The contract, as
//! in str0m: after every `handle_*` call, drain `poll_transmit` until it
//! returns None before the next `handle_*` (a delivery in progress reads the
//! stream's viewer list, which the next input may change). Time that goes
//! backwards is ignored.
//!
//! The shell (`shard.rs`) owns io_uring, the sockets and the clock; tests
//! drive the core with a simulated clock (`core/tests`).

pub mod fanout;
pub mod flv_viewers;
pub mod history;
mod hls_viewers;
pub mod repair;
pub mod session;
pub mod stream;
pub mod streams;
pub mod usage;

mod admin;
mod control;
mod hooks;
mod ice;
mod ingest;
mod keyframe_guard;
mod limits;
mod metering;
mod pull;
mod reload;
mod replication;
pub mod resend;
mod rtcp;
mod timers;
mod transmit;

#[cfg(test)]
mod tests;

use crate::load::LoadGovernor;
use crate::relay::RelayMsg;
use bytes::Bytes;
use ingest::Ingest;
use rts_common::config::Config;
use rts_common::ipc::{ShardCounters, ShardToControl};
use session::Session;
use slab::Slab;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use streams::{StreamId, StreamTable};
use transmit::{Outbox, Work};

pub use transmit::Transmits;

/// What the core wants done on a TCP connection (identified by the id the
/// shell gave it in [`Core::handle_rtmp_open`] or [`Core::handle_http_open`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcpOutput {
    /// Bytes to write, in order.
    Send { conn: usize, data: Bytes },
    /// Write what is queued (best effort), then close. The core has
    /// forgotten the connection already.
    Close { conn: usize },
    /// Open a TCP connection to `addr` for pull `token` and say which
    /// connection it is ([`Core::handle_pull_conn`]), then when it is
    /// connected ([`Core::handle_pull_connected`]) or failed
    /// (`handle_tcp_closed`).
    Connect { token: u64, addr: std::net::SocketAddr },
}

pub struct Core {
    id: usize,
    shards: usize,
    cfg: Arc<Config>,
    /// The latest time seen; never goes backwards.
    now: Instant,
    /// Wall clock anchor (an instant and the Unix time in µs at it), kept
    /// current by the shell ([`Core::set_wallclock`]): sender reports carry
    /// NTP time and publish tokens are checked against Unix time.
    wall: (Instant, u64),
    streams: StreamTable,
    sessions: Slab<Session>,
    by_ufrag: HashMap<String, usize>,
    by_addr: HashMap<SocketAddr, usize>,
    by_id: HashMap<u64, usize>,
    conns: HashMap<usize, Ingest>,
    /// HTTP-FLV connections and RTMP players, by the shell's id.
    tcp_viewers: HashMap<usize, flv_viewers::TcpViewer>,
    /// Where each stream published on another shard lives (announced by
    /// that shard; `RelayMsg::Home`).
    homes: HashMap<String, usize>,
    /// Scratch for FLV deliveries, reused.
    flv_scratch: Vec<usize>,
    // Transmit side (transmit.rs).
    out: Outbox,
    work: VecDeque<Work>,
    /// Sessions replaying a GOP cache (paced; see transmit.rs).
    catchup: Vec<usize>,
    /// Sessions with an audio tail (`Media::audio_tail`), for its deadline.
    audio_tails: Vec<usize>,
    last_catchup: Instant,
    /// Viewers whose sender reports are due (reused between rounds).
    sr_due: Vec<usize>,
    /// Joins of viewers to streams so far (see `Session::joined`).
    joins: u64,
    /// Viewers with retransmissions queued (resend.rs).
    resend: resend::ResendLists,
    // Other outputs.
    tcp_out: VecDeque<TcpOutput>,
    ctl_out: VecDeque<ShardToControl>,
    relay_out: VecDeque<(usize, RelayMsg)>,
    /// State-changing relay messages a full queue handed back.
    relay_retry: VecDeque<(usize, RelayMsg)>,
    // Scratch, reused.
    packets: Vec<Bytes>,
    /// A NACK's lost sequence numbers, and other RTCP decoded (rtcp.rs).
    nack_scratch: Vec<u16>,
    rtcp_scratch: Vec<rts_rtp::rtcp::RtcpPacket>,
    ids: Vec<StreamId>,
    /// RTMP frames fanned out since the last park, with their arrival: the
    /// server-added latency is measured at [`Core::handle_parked`].
    delivered: Vec<(StreamId, Instant)>,
    // Timers and load.
    next_housekeeping: Instant,
    next_stats: Instant,
    next_log: Instant,
    /// The A/V lag this shard measured on its streams (their mean, ms,
    /// refreshed with the stats): where the video hold of a room whose
    /// audio is not transcoded yet starts (`Stream::hold_video`; before
    /// any was measured, `video_hold::DEFAULT_LAG_MS`).
    lag_prior_ms: Option<f64>,
    load: LoadGovernor,
    parked: Option<Instant>,
    counters: ShardCounters,
    /// Traffic records (billing).
    usage: usage::UsageBook,
    /// The usage session of each TCP connection (RTMP and media listener),
    /// by the shell's id, until the shell has let the connection go.
    conn_sessions: HashMap<usize, u64>,
    next_conn_session: u64,
    /// LL-HLS: muxers of streams published here, views served here.
    hls: hls_viewers::HlsState,
    /// Cluster pulls by their token, and the connection each one uses.
    pulls: HashMap<u64, pull::Pull>,
    pull_conns: HashMap<usize, u64>,
    next_pull: u64,
    /// Media-listener viewers waiting for a stream the cluster may have
    /// (its pull asked for): (connection, give up at).
    cluster_waits: Vec<(usize, Instant)>,
    /// When control was last told a media viewer wants each stream.
    wanted: HashMap<String, Instant>,
    /// A configuration reload being received, and the last one applied.
    reload: reload::PendingReload,
    reloaded: u64,
    /// Graceful drain: no new publishers or media viewers.
    draining: bool,
    /// Clients held for a hook's verdict, by request.
    hook_waits: HashMap<u64, hooks::HookWait>,
    next_hook: u64,
    /// TCP connections per client address, and each connection's address.
    conn_ips: limits::ConnIps,
    conn_ip: HashMap<usize, std::net::IpAddr>,
    next_slow_check: Instant,
}

impl Core {
    /// Shard `id` of `shards`, starting at `now` when the Unix time is
    /// `unix_us`.
    pub fn new(id: usize, shards: usize, cfg: Arc<Config>, now: Instant, unix_us: u64) -> Core {
        let billing = cfg.billing.as_ref().map(|b| b.interval_s);
        let resend_hold = Duration::from_millis(cfg.webrtc.resend_hold_ms);
        Core {
            id,
            shards,
            load: LoadGovernor::new(cfg.webrtc.pair_audio_when_busy, now),
            cfg,
            now,
            wall: (now, unix_us),
            streams: StreamTable::default(),
            sessions: Slab::new(),
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
            by_id: HashMap::new(),
            conns: HashMap::new(),
            tcp_viewers: HashMap::new(),
            homes: HashMap::new(),
            flv_scratch: Vec::new(),
            out: Outbox::new(),
            work: VecDeque::new(),
            catchup: Vec::new(),
            audio_tails: Vec::new(),
            last_catchup: now,
            sr_due: Vec::new(),
            joins: 0,
            resend: resend::ResendLists { hold: resend_hold, ..Default::default() },
            tcp_out: VecDeque::new(),
            ctl_out: VecDeque::new(),
            relay_out: VecDeque::new(),
            relay_retry: VecDeque::new(),
            packets: Vec::with_capacity(256),
            nack_scratch: Vec::with_capacity(64),
            rtcp_scratch: Vec::with_capacity(4),
            ids: Vec::new(),
            delivered: Vec::new(),
            next_housekeeping: now + HOUSEKEEPING,
            next_stats: now + STATS_EVERY,
            next_log: now + LOG_EVERY,
            lag_prior_ms: None,
            parked: None,
            counters: ShardCounters::default(),
            usage: usage::UsageBook::new(billing, id as u32, unix_us),
            conn_sessions: HashMap::new(),
            // Unique across shards (the id carries the shard) and, with
            // the boot time in every record, across runs.
            next_conn_session: unix_us & 0xFFFF_FFFF,
            hls: Default::default(),
            pulls: HashMap::new(),
            pull_conns: HashMap::new(),
            next_pull: 0,
            cluster_waits: Vec::new(),
            wanted: HashMap::new(),
            reload: Default::default(),
            reloaded: 0,
            draining: false,
            hook_waits: HashMap::new(),
            next_hook: 0,
            conn_ips: Default::default(),
            conn_ip: HashMap::new(),
            next_slow_check: now,
        }
    }

    pub fn id(&self) -> usize {
        self.id
    }

    /// Takes `now` as the current time unless it is older, and closes the
    /// idle period that started at [`Core::handle_parked`].
    fn advance(&mut self, now: Instant) -> Instant {
        if now > self.now {
            self.now = now;
        }
        if let Some(p) = self.parked.take() {
            self.load.add_idle(self.now.saturating_duration_since(p));
        }
        self.now
    }

    /// Re-anchors the wall clock (the shell does it about once a second).
    pub fn set_wallclock(&mut self, now: Instant, unix_us: u64) {
        self.wall = (now, unix_us);
    }

    /// Unix time in µs at `now`, from the wall clock anchor.
    fn unix_us(&self, now: Instant) -> u64 {
        let (at, us) = self.wall;
        if now >= at {
            us + now.duration_since(at).as_micros() as u64
        } else {
            us.saturating_sub(at.duration_since(now).as_micros() as u64)
        }
    }

    /// The shell is about to wait for I/O at `now`: this turn's work is
    /// done. RTMP frames fanned out this turn get their server-added latency
    /// (frame in -> last viewer's packets handed to the kernel), and the
    /// wait until the next input counts as idle for the load governor.
    pub fn handle_parked(&mut self, now: Instant) {
        let now = self.advance(now);
        for (id, received) in self.delivered.drain(..) {
            if let Some(s) = self.streams.get_mut(id) {
                s.record_latency(rts_common::histogram::micros_since(received, now));
            }
        }
        self.parked = Some(now);
    }

    /// Next message for control.
    pub fn poll_control(&mut self) -> Option<ShardToControl> {
        self.ctl_out.pop_front()
    }

    /// Next message for another shard: (shard, message).
    pub fn poll_relay(&mut self) -> Option<(usize, RelayMsg)> {
        self.relay_out.pop_front()
    }

    /// Next write or close on an RTMP connection.
    pub fn poll_tcp(&mut self) -> Option<TcpOutput> {
        self.tcp_out.pop_front()
    }

    /// The counters this core keeps (the shell adds its send counters).
    pub fn counters(&self) -> &ShardCounters {
        &self.counters
    }

    /// Whether audio is paired now (forced by config or by load).
    pub fn audio_paired(&self) -> bool {
        self.cfg.webrtc.pair_audio || self.load.pair_audio()
    }

    pub fn busy_share(&self) -> f64 {
        self.load.busy()
    }

    /// The server drains: from now on new publishers, RTMP players and
    /// media-listener requests are refused (503 with Retry-After on HTTP);
    /// everyone already here carries on. WebRTC viewers are control's to
    /// refuse (it is told separately).
    pub fn handle_drain(&mut self, now: Instant) {
        self.advance(now);
        if !self.draining {
            self.draining = true;
            tracing::info!(shard = self.id, clients = self.clients(), "draining: no new publishers or viewers");
        }
    }

    pub fn draining(&self) -> bool {
        self.draining
    }

    /// Clients here: WebRTC sessions, TCP connections (publishers, RTMP
    /// players, media-listener viewers) and pulls.
    pub fn clients(&self) -> usize {
        self.sessions.len() + self.conns.len() + self.tcp_viewers.len() + self.pulls.len()
    }

    /// Playing sessions (ICE selected a pair and media started).
    pub fn viewers(&self) -> usize {
        self.sessions.iter().filter(|(_, s)| s.is_playing()).count()
    }

    fn push_ctl(&mut self, msg: ShardToControl) {
        self.ctl_out.push_back(msg);
    }

    fn relay(&mut self, to: usize, msg: RelayMsg) {
        if to != self.id && to < self.shards {
            self.relay_out.push_back((to, msg));
        }
    }

    /// Removes a stream nobody publishes or watches here; a replica also
    /// tells its home shard. A replica (a stream published on another
    /// shard) lingers for `[transcode] linger_s` after its last viewer here
    /// left, fed as before: a viewer swiping back finds its GOP cache and
    /// send clocks warm (a switch re-bases by them,
    /// `TrackOut::rebase_with`) instead of waiting for a new
    /// subscription's snapshot. Housekeeping drops it then
    /// (`drop_lingered_replicas`).
    fn drop_stream_if_unused(&mut self, id: StreamId) {
        let lingers = self.cfg.transcode.linger_s > 0;
        if !self.streams.get(id).is_some_and(|s| s.is_unused() && !(lingers && s.home().is_some())) {
            return;
        }
        self.remove_stream(id);
    }

    /// Drops the replicas that lingered without viewers for `[transcode]
    /// linger_s` (housekeeping).
    fn drop_lingered_replicas(&mut self, now: Instant) {
        let linger = Duration::from_secs(self.cfg.transcode.linger_s.into());
        let expired: Vec<StreamId> = self.streams.iter_mut().filter_map(|(id, s)| s.replica_lingered(linger, now).then_some(id)).collect();
        for id in expired {
            tracing::info!(shard = self.id, stream = %self.streams.get(id).map(|s| s.key()).unwrap_or_default(), "replica dropped after lingering without viewers");
            self.remove_stream(id);
        }
    }

    /// Removes stream `id`; a replica unsubscribes from its home shard.
    /// Sessions still getting its audio, or waiting for it, go on without
    /// their audio tail.
    fn remove_stream(&mut self, id: StreamId) {
        let tails: Vec<usize> = self.audio_tails.iter().copied().filter(|&v| self.sessions.get(v).is_some_and(|s| s.stream == Some(id) || s.media.as_ref().and_then(|m| m.audio_tail).is_some_and(|(t, _)| t == id))).collect();
        for v in tails {
            self.clear_audio_tail(v, self.now, true);
        }
        if let Some(s) = self.streams.remove(id) {
            if let Some(home) = s.home() {
                self.relay(home, RelayMsg::Unsubscribe { key: s.key(), from: self.id });
            }
        }
    }
}

impl Core {
    /// Ends session `idx`'s audio tail (`Media::audio_tail`): the stream it
    /// left stops feeding it audio. With `rebase`, its audio track goes on
    /// from its stream's next audio packet, re-based by both streams'
    /// audio clocks at `now` (as a switch does). Returns the stream left.
    fn clear_audio_tail(&mut self, idx: usize, now: Instant, rebase: bool) -> Option<StreamId> {
        self.audio_tails.retain(|&v| v != idx);
        let sess = self.sessions.get_mut(idx)?;
        let new = sess.stream;
        let (old, _) = sess.media.as_mut()?.audio_tail.take()?;
        let audio_now = |id: Option<StreamId>| id.and_then(|id| self.streams.get(id)).and_then(|s| s.send_rtp_at(stream::Kind::Audio, now));
        let clocks = rebase.then(|| (audio_now(Some(old)), audio_now(new)));
        if let Some(s) = self.streams.get_mut(old) {
            s.remove_audio_tail(idx);
        }
        if let Some(s) = new.and_then(|id| self.streams.get_mut(id)) {
            s.remove_audio_waiter(idx);
        }
        if let (Some((old_now, new_now)), Some(m)) = (clocks, self.sessions.get_mut(idx).and_then(|s| s.media.as_mut())) {
            m.audio.rebase_next();
            m.audio.rebase_with(now, old_now, new_now);
        }
        Some(old)
    }

    /// [`Core::clear_audio_tail`], then drops the stream left if nothing
    /// else uses it.
    pub(super) fn end_audio_tail(&mut self, idx: usize, now: Instant, rebase: bool) {
        if let Some(old) = self.clear_audio_tail(idx, now, rebase) {
            self.drop_stream_if_unused(old);
        }
    }

    /// Ends the audio tails past their deadline (housekeeping): the new
    /// stream's audio did not come ([`AUDIO_TAIL_MAX`]).
    fn expire_audio_tails(&mut self, now: Instant) {
        let due: Vec<usize> = self.audio_tails.iter().copied().filter(|&v| self.sessions.get(v).and_then(|s| s.media.as_ref()).and_then(|m| m.audio_tail).is_none_or(|(_, until)| now >= until)).collect();
        for v in due {
            self.end_audio_tail(v, now, true);
        }
    }
}

/// Longest an audio tail lasts: a starting transcoder's first Opus packet
/// came 18-85 ms after a switch here; a room without audio (or one whose
/// audio does not start) gets the old room's sound no longer than this.
pub(super) const AUDIO_TAIL_MAX: Duration = Duration::from_millis(250);

/// How often timers (consent, sender reports, load) are checked.
const HOUSEKEEPING: Duration = Duration::from_millis(100);
const STATS_EVERY: Duration = Duration::from_secs(1);
const LOG_EVERY: Duration = Duration::from_secs(10);
