//! Viewers of a stream's own FLV tags over TCP: HTTP-FLV on the media
//! listener (`[http] media_listen`, one SO_REUSEPORT socket per shard: the
//! request (`media_request.rs`), the signed-URL check, a close-delimited
//! response) and RTMP play on the RTMP listener (the request comes from
//! `ingest.rs`). Both get the tags from the tag GOP cache (`flv_gop.rs`)
//! on; each tag is encoded once per stream for each wire (`FlvTag::wire`,
//! `FlvTag::rtmp`) and the same `Bytes` goes to every viewer.
//!
//! A viewer of a stream published on another shard makes this shard
//! replicate it (the home is known from the publish announcements every
//! shard gets, `RelayMsg::Home`), as WebRTC viewers do.
//!
//! Slow readers: the core knows how many bytes it handed the shell for a
//! connection and how many the shell wrote ([`Core::handle_tcp_written`]).
//! Past [`QUEUE_LIMIT`] unwritten bytes (plus its start, a whole GOP, until
//! it has caught up with that once) a viewer gets nothing more until a
//! keyframe finds its queue under half the limit (it resumes there, after
//! the sequence headers); a viewer over the limit for [`SLOW_CLOSE`] is
//! disconnected. Both counted. A viewer's memory is its queue: at most the
//! limit plus one start (a GOP, bounded by `flv_gop::MAX_GOP_BYTES`), as
//! references to the shared tags.

use super::hooks::{Held, HookState};
use super::stream::Stream;
use super::streams::StreamId;
use super::{Core, TcpOutput};
use crate::flv_gop::FlvTag;
use crate::media_request::{self, MediaRequest, Method, Output, Refusal};
use crate::relay::RelayMsg;
use bytes::Bytes;
use rts_common::ipc::Protocol;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Unwritten bytes past which a viewer skips to the next keyframe.
pub const QUEUE_LIMIT: usize = 1 << 20;
/// A viewer over [`QUEUE_LIMIT`] this long is disconnected.
pub const SLOW_CLOSE: Duration = Duration::from_secs(5);

/// How a viewer's connection carries tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wire {
    /// HTTP-FLV (media listener).
    Flv,
    /// RTMP play on message stream `stream_id`.
    Rtmp { stream_id: u32 },
    /// LL-HLS requests on the media listener (`hls_viewers.rs`), one after
    /// another on a kept-alive connection.
    Hls,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    /// Reading the request head.
    Request,
    /// An LL-HLS request waits for its part or playlist (`hls_viewers.rs`).
    Held,
    /// Answered; waiting for the stream's first keyframe.
    Waiting(StreamId),
    Live(StreamId),
    /// Behind: tags are dropped until a keyframe finds the queue short.
    Skipping(StreamId),
}

impl TcpViewer {
    /// The stream it waits to start on, if it waits.
    pub(super) fn waiting_on(&self) -> Option<StreamId> {
        match self.state {
            State::Waiting(id) => Some(id),
            _ => None,
        }
    }
}

pub(super) struct TcpViewer {
    pub(super) peer: Option<SocketAddr>,
    pub(super) wire: Wire,
    /// The HTTP request head read so far.
    pub(super) head: Vec<u8>,
    pub(super) state: State,
    /// Bytes handed to the shell and not yet written by it.
    queued: usize,
    /// Bytes of the start (the cached GOP) allowed on top of the limit
    /// until the queue first gets back under half the limit: a long GOP at
    /// a high rate is not a slow reader.
    allowance: usize,
    /// Since when `queued` has been over the limit.
    behind_since: Option<Instant>,
    bytes_out: u64,
    /// Since when it has been waiting for a (next) request: a head that
    /// takes longer than `[limits] http_idle_s`, or an idle keep-alive,
    /// is closed.
    pub(super) idle_since: Instant,
    /// When its request was accepted and as what, until its first video
    /// tag goes out (`rts_first_frame_seconds`; not for other nodes' pulls).
    first_frame_from: Option<(Instant, Protocol)>,
}

impl TcpViewer {
    pub(super) fn bytes_out(&self) -> u64 {
        self.bytes_out
    }

    pub(super) fn stream(&self) -> Option<StreamId> {
        match self.state {
            State::Waiting(id) | State::Live(id) | State::Skipping(id) => Some(id),
            State::Request | State::Held => None,
        }
    }
}

impl Core {
    /// The shell accepted connection `conn` on the media listener.
    pub fn handle_http_open(&mut self, now: Instant, conn: usize, peer: Option<SocketAddr>) {
        let now = self.advance(now);
        if !self.admit_conn(conn, peer) {
            return;
        }
        self.tcp_viewers.insert(conn, TcpViewer { peer, wire: Wire::Flv, head: Vec::new(), state: State::Request, queued: 0, allowance: 0, behind_since: None, bytes_out: 0, idle_since: now, first_frame_from: None });
        self.open_conn_meter(now, conn, peer);
    }

    /// Bytes read from media connection `conn`. Only the request head is
    /// read; anything after it is ignored.
    pub fn handle_http_data(&mut self, now: Instant, conn: usize, data: &[u8]) {
        let now = self.advance(now);
        self.meter_conn(conn, data.len() as u64, 0);
        if let Some(c) = self.tcp_viewers.get_mut(&conn).filter(|c| c.state == State::Held) {
            // The next request while an HLS request waits: read after the answer.
            let room = media_request::MAX_HEAD + 1 - c.head.len().min(media_request::MAX_HEAD);
            c.head.extend_from_slice(&data[..data.len().min(room)]);
            return;
        }
        let Some(c) = self.tcp_viewers.get_mut(&conn).filter(|c| c.state == State::Request) else { return };
        let take = data.len().min(media_request::MAX_HEAD + 1 - c.head.len().min(media_request::MAX_HEAD));
        c.head.extend_from_slice(&data[..take]);
        match media_request::parse(&c.head) {
            Ok(None) => {}
            Ok(Some(req)) => {
                // What follows the head is the next request on a kept-alive
                // connection (HLS); FLV reads nothing after its request.
                c.head.drain(..req.head_len.min(c.head.len()));
                self.counters.http_requests += 1;
                if matches!(req.output, Output::Flv) {
                    c.head = Vec::new();
                    self.on_media_request(now, conn, req, HookState::Ask);
                } else {
                    self.on_hls_request(now, conn, req);
                }
            }
            Err(r) => {
                self.counters.http_requests += 1;
                self.refuse_http(conn, r, "malformed request");
            }
        }
    }

    /// The shell wrote `n` bytes of what the core queued for `conn`.
    pub fn handle_tcp_written(&mut self, conn: usize, n: usize) {
        self.meter_conn(conn, 0, n as u64);
        if let Some(c) = self.tcp_viewers.get_mut(&conn) {
            c.queued = c.queued.saturating_sub(n);
        }
    }

    /// The shell closed media connection `conn` (peer closed, error).
    pub fn handle_http_closed(&mut self, now: Instant, conn: usize, reason: &str) {
        self.advance(now);
        self.forget_tcp_viewer(conn, reason);
        self.handle_tcp_released(now, conn);
    }

    pub(super) fn on_media_request(&mut self, now: Instant, conn: usize, req: MediaRequest, hook: HookState) {
        if req.method == Method::Options {
            self.answer_http(conn, media_request::preflight_response().into_bytes());
            return;
        }
        if self.draining {
            self.refuse_http(conn, Refusal::Unavailable, "server draining");
            return;
        }
        let Some(app) = self.authorize_media(now, conn, &req, "flv") else { return };
        if req.method != Method::Head {
            match hook {
                HookState::Refused(r) => {
                    tracing::info!(shard = self.id, path = %req.path, reason = %r, "HTTP-FLV play refused by the hook");
                    self.answer_http(conn, media_request::error_response(403, "Forbidden").into_bytes());
                    return;
                }
                HookState::Ask => {
                    let peer = self.tcp_viewers.get(&conn).and_then(|c| c.peer);
                    let call = self.hook_call("on_play", conn, Protocol::Flv, peer, (&app, &req.stream), &req.query);
                    if let Some(c) = self.tcp_viewers.get_mut(&conn) {
                        c.state = State::Held;
                    }
                    if self.hold_for_hook(now, Held::Flv { conn, req: req.clone() }, call) {
                        return;
                    }
                    if let Some(c) = self.tcp_viewers.get_mut(&conn) {
                        c.state = State::Request;
                    }
                }
                HookState::Allowed => {}
            }
        }
        if req.method == Method::Head {
            // Answered from what is known, without replicating the stream.
            if self.stream_known(&app, &req.stream) {
                self.answer_http(conn, media_request::flv_response_head().into_bytes());
            } else {
                self.refuse_http(conn, Refusal::NotFound, "stream not live");
            }
            return;
        }
        let found = self.flv_stream(&app, &req.stream);
        let Some(id) = found.or_else(|| self.wait_for_cluster(now, conn, &app, &req.stream)) else {
            self.refuse_http(conn, Refusal::NotFound, "stream not live");
            return;
        };
        let relay = rts_common::auth::query_param(&req.query, "relay").is_some();
        if let Some(c) = self.tcp_viewers.get_mut(&conn) {
            c.state = State::Waiting(id);
            c.first_frame_from = (!relay).then_some((now, Protocol::Flv));
        }
        // The response head and the FLV header count as the stream's traffic.
        let mut head = media_request::flv_response_head().into_bytes();
        head.extend_from_slice(&rts_rtmp::flv::file::file_header(true, true));
        self.send_tcp(conn, Bytes::from(head));
        // Another node pulling (decision 022) is billed apart from viewers.
        self.bill_conn(now, conn, &req.host, &req.app, &req.stream, if relay { Protocol::Relay } else { Protocol::Flv });
        self.counters.flv_viewers += 1;
        self.counters.relays_served += u64::from(relay);
        self.attach_tcp_viewer(conn, id, &req.host, true);
    }

    /// The play check of a media-listener request: the keys of the domain
    /// its Host names, a token over `/{app}/{stream}` or the path with
    /// `ext`. The server's app name of the stream asked for (decision 021),
    /// or None once the request is answered (404 unknown domain, 403).
    pub(super) fn authorize_media(&mut self, now: Instant, conn: usize, req: &MediaRequest, ext: &str) -> Option<String> {
        let Some(auth) = self.cfg.play_auth_for(&req.host) else {
            self.refuse_http(conn, Refusal::NotFound, "unknown domain");
            return None;
        };
        let auth_key = rts_common::auth::query_param(&req.query, "auth_key");
        if let Err(f) = auth.check(&req.app, &req.stream, Some(ext), auth_key, self.unix_us(now) / 1_000_000) {
            self.counters.http_refused += 1;
            let peer = self.tcp_viewers.get(&conn).and_then(|c| c.peer);
            tracing::info!(shard = self.id, path = %req.path, ?peer, failure = %f, "media play refused");
            self.answer_http(conn, media_request::error_response(403, "Forbidden").into_bytes());
            return None;
        }
        self.cfg.stream_app(&req.host, &req.app)
    }

    /// RTMP connection `conn` asked to play app/name (`ingest.rs` answers
    /// from the result): the stream it plays, or why not.
    pub(super) fn rtmp_play_stream(&mut self, conn: usize, domain: &str, app: &str, name: &str, query: &str, now: Instant) -> Result<StreamId, String> {
        if self.draining {
            return Err("server draining".into());
        }
        let auth_key = rts_common::auth::query_param(query, "auth_key");
        let Some(auth) = self.cfg.play_auth_for(domain) else { return Err(format!("unknown domain {domain}")) };
        if let Err(f) = auth.check(app, name, None, auth_key, self.unix_us(now) / 1_000_000) {
            return Err(format!("auth: {f}"));
        }
        let app = self.cfg.stream_app(domain, app).unwrap_or_default();
        // The caller (ingest.rs) accepts the play at once; the wait for a
        // pulled stream happens on the same terms as HTTP-FLV's.
        let found = self.flv_stream(&app, name);
        found.or_else(|| self.wait_for_cluster(now, conn, &app, name)).ok_or_else(|| "stream not live".to_string())
    }

    /// RTMP connection `conn` plays stream `id` on message stream
    /// `stream_id` (its play was accepted). Its start waits for
    /// [`Core::start_rtmp_player`]: the answer to the play goes first.
    pub(super) fn add_rtmp_player(&mut self, conn: usize, peer: Option<SocketAddr>, id: StreamId, stream_id: u32) {
        let v = TcpViewer {
            peer,
            wire: Wire::Rtmp { stream_id },
            head: Vec::new(),
            state: State::Waiting(id),
            queued: 0,
            allowance: 0,
            behind_since: None,
            bytes_out: 0,
            idle_since: self.now,
            first_frame_from: Some((self.now, Protocol::Rtmp)),
        };
        self.tcp_viewers.insert(conn, v);
        self.counters.rtmp_players += 1;
        self.attach_tcp_viewer(conn, id, "", false);
    }

    /// Starts RTMP player `conn` if it waits (after its connection's output).
    pub(super) fn start_rtmp_player(&mut self, conn: usize) {
        if let Some(State::Waiting(id)) = self.tcp_viewers.get(&conn).map(|c| c.state) {
            self.start_flv_viewer(conn, id);
        }
    }

    fn attach_tcp_viewer(&mut self, conn: usize, id: StreamId, host: &str, start: bool) {
        let Some(s) = self.streams.get_mut(id) else { return };
        s.flv_viewers.push(conn);
        let v = self.tcp_viewers.get(&conn);
        let (peer, wire) = (v.and_then(|c| c.peer), v.map(|c| c.wire));
        tracing::info!(shard = self.id, stream = %s.key(), ?peer, ?wire, host, "FLV-tag viewer");
        if start {
            self.start_flv_viewer(conn, id);
        }
    }

    /// Counts bytes the RTMP connection of a player sends besides media
    /// (status, acknowledgements), then queues them.
    pub(super) fn send_rtmp_bytes(&mut self, conn: usize, data: Bytes) {
        if self.tcp_viewers.contains_key(&conn) {
            self.send_tcp(conn, data);
        } else {
            self.tcp_out.push_back(TcpOutput::Send { conn, data });
        }
    }

    /// A tag as `conn`'s wire carries it.
    fn tag_bytes(&self, conn: usize, tag: &FlvTag) -> Bytes {
        match self.tcp_viewers.get(&conn).map(|c| c.wire) {
            Some(Wire::Flv) => tag.wire.clone(),
            Some(Wire::Rtmp { stream_id: FlvTag::RTMP_STREAM_ID }) => tag.rtmp.clone(),
            // A player on another message stream (it created more than
            // one): its own encoding.
            Some(Wire::Rtmp { stream_id }) => rts_rtmp::media::encode_media_message(tag.tag_type, tag.timestamp_ms, stream_id, &tag.body),
            Some(Wire::Hls) | None => Bytes::new(),
        }
    }

    /// Whether app/name is live here or announced by another shard.
    fn stream_known(&self, app: &str, name: &str) -> bool {
        let key = Stream::key_of(app, name);
        self.streams.lookup(&key).and_then(|id| self.streams.get(id)).is_some_and(|s| s.is_live()) || self.homes.get(&key).is_some_and(|&h| h != self.id && h < self.shards)
    }

    /// The local stream an FLV viewer of app/name attaches to: live here,
    /// or a new replica of the shard that announced it.
    fn flv_stream(&mut self, app: &str, name: &str) -> Option<StreamId> {
        let key = Stream::key_of(app, name);
        if let Some(id) = self.streams.lookup(&key).filter(|&id| self.streams.get(id).is_some_and(|s| s.is_live())) {
            return Some(id);
        }
        let home = *self.homes.get(&key)?;
        if home == self.id || home >= self.shards {
            return None;
        }
        let max_packet = self.cfg.webrtc.max_rtp_packet;
        let id = self.streams.intern(app, name, || Stream::new(app, name, max_packet));
        self.subscribe(id, home);
        Some(id)
    }

    /// Starts the viewers of `id` that wait for a start (a replica's
    /// snapshot came).
    pub(super) fn start_waiting_flv_viewers(&mut self, id: StreamId) {
        let Some(s) = self.streams.get(id) else { return };
        let mut viewers = std::mem::take(&mut self.flv_scratch);
        viewers.clear();
        viewers.extend_from_slice(&s.flv_viewers);
        for &conn in &viewers {
            self.start_flv_viewer(conn, id);
        }
        self.flv_scratch = viewers;
    }

    /// Sends a waiting viewer the stream's start once there is one.
    fn start_flv_viewer(&mut self, conn: usize, id: StreamId) {
        let Some(s) = self.streams.get(id) else { return };
        if !s.flv.ready() || self.tcp_viewers.get(&conn).map(|c| c.state) != Some(State::Waiting(id)) {
            return;
        }
        let mut start = 0;
        for tag in s.flv.start() {
            let b = self.tag_bytes(conn, &tag);
            start += b.len();
            self.send_tcp(conn, b);
        }
        let mut first = None;
        if let Some(c) = self.tcp_viewers.get_mut(&conn) {
            c.allowance = start;
            c.state = State::Live(id);
            first = c.first_frame_from.take();
        }
        // The start holds the cached GOP from its keyframe (`flv.ready()`):
        // the viewer's first video tag went out with it.
        if let (Some((from, protocol)), Some(s)) = (first, self.streams.get_mut(id)) {
            s.record_first_frame(protocol, rts_common::histogram::micros_since(from, self.now));
        }
    }

    /// A tag of stream `id` (from its publisher here, or relayed from its
    /// home): into the stream's tag cache, to the shards replicating it and
    /// to its FLV viewers.
    pub(super) fn deliver_flv(&mut self, id: StreamId, tag: FlvTag, now: Instant) {
        let Some(s) = self.streams.get_mut(id) else { return };
        s.flv.on_tag(tag.clone());
        for &(shard, replica) in s.subscribers() {
            self.relay_out.push_back((shard, RelayMsg::FlvTag { stream: replica, tag: tag.clone() }));
        }
        // A copy of the list (into reused scratch): a viewer closed for
        // being slow leaves the stream's list while this walks it.
        let mut viewers = std::mem::take(&mut self.flv_scratch);
        viewers.clear();
        viewers.extend_from_slice(&s.flv_viewers);
        for &conn in &viewers {
            self.flv_tag_to(conn, id, &tag, now);
        }
        self.flv_scratch = viewers;
    }

    fn flv_tag_to(&mut self, conn: usize, id: StreamId, tag: &FlvTag, now: Instant) {
        let Some(c) = self.tcp_viewers.get_mut(&conn) else { return };
        if c.queued <= QUEUE_LIMIT / 2 {
            c.allowance = 0;
        }
        let limit = QUEUE_LIMIT + c.allowance;
        if c.queued > limit {
            let since = *c.behind_since.get_or_insert(now);
            if now.saturating_duration_since(since) >= SLOW_CLOSE {
                self.counters.flv_slow_closed += 1;
                tracing::info!(shard = self.id, conn, peer = ?c.peer, queued = c.queued, "FLV-tag viewer not reading; closing");
                self.close_tcp_viewer(conn, "slow reader");
                return;
            }
        } else {
            c.behind_since = None;
        }
        match c.state {
            State::Waiting(_) => self.start_flv_viewer(conn, id),
            State::Live(_) if c.queued > limit => {
                c.state = State::Skipping(id);
                self.counters.flv_skips += 1;
            }
            State::Live(_) => {
                let b = self.tag_bytes(conn, tag);
                self.send_tcp(conn, b);
            }
            State::Skipping(_) if tag.is_keyframe() && c.queued <= QUEUE_LIMIT / 2 => {
                c.state = State::Live(id);
                let headers = self.streams.get(id).map(|s| s.flv.headers_at(tag.timestamp_ms)).unwrap_or_default();
                for h in headers.iter().chain(std::iter::once(tag)) {
                    let b = self.tag_bytes(conn, h);
                    self.send_tcp(conn, b);
                }
            }
            State::Skipping(_) | State::Request | State::Held => {}
        }
    }

    /// Stream `id` ended here (its publisher left, or its home said so):
    /// its FLV viewers are closed (a player reconnects; a new publisher's
    /// timeline would not continue this one's).
    pub(super) fn end_flv_viewers(&mut self, id: StreamId) {
        let Some(s) = self.streams.get_mut(id) else { return };
        for conn in std::mem::take(&mut s.flv_viewers) {
            self.close_tcp_viewer(conn, "stream ended");
        }
    }

    /// Queues bytes for a viewer, counting them as queued and as traffic.
    pub(super) fn send_tcp(&mut self, conn: usize, data: Bytes) {
        let Some(c) = self.tcp_viewers.get_mut(&conn) else { return };
        if data.is_empty() {
            return;
        }
        c.queued += data.len();
        c.bytes_out += data.len() as u64;
        match c.wire {
            Wire::Flv => self.counters.flv_bytes_out += data.len() as u64,
            Wire::Rtmp { .. } => self.counters.rtmp_play_bytes_out += data.len() as u64,
            Wire::Hls => self.counters.hls_bytes_out += data.len() as u64,
        }
        if let Some(s) = c.stream().and_then(|id| self.streams.get_mut(id)) {
            s.add_bytes_out(data.len() as u64);
        }
        self.tcp_out.push_back(TcpOutput::Send { conn, data });
    }

    /// A complete answer (refusal, HEAD, preflight), then close.
    pub(super) fn answer_http(&mut self, conn: usize, response: Vec<u8>) {
        self.send_tcp(conn, Bytes::from(response));
        self.close_http(conn, "answered");
    }

    pub(super) fn refuse_http(&mut self, conn: usize, r: Refusal, why: &str) {
        self.counters.http_refused += 1;
        let peer = self.tcp_viewers.get(&conn).and_then(|c| c.peer);
        tracing::debug!(shard = self.id, conn, ?peer, status = r.status().0, why, "media request refused");
        self.answer_http(conn, media_request::refusal_response(r).into_bytes());
    }

    /// Closes a media-listener connection from our side, after what is queued.
    pub(super) fn close_http(&mut self, conn: usize, reason: &str) {
        if self.forget_tcp_viewer(conn, reason) {
            self.tcp_out.push_back(TcpOutput::Close { conn });
        }
    }

    /// Closes a viewer's connection from our side, whichever listener it
    /// came from.
    pub(super) fn close_tcp_viewer(&mut self, conn: usize, reason: &str) {
        match self.tcp_viewers.get(&conn).map(|c| c.wire) {
            Some(Wire::Flv | Wire::Hls) => self.close_http(conn, reason),
            Some(Wire::Rtmp { .. }) => self.close_rtmp(conn, reason),
            None => {}
        }
    }

    /// Forgets viewer `conn` (HTTP or RTMP); false if it was not one.
    pub(super) fn forget_tcp_viewer(&mut self, conn: usize, reason: &str) -> bool {
        let Some(c) = self.tcp_viewers.remove(&conn) else { return false };
        if c.wire == Wire::Hls {
            self.forget_hls_conn(conn);
        }
        if let Some(id) = c.stream() {
            match c.wire {
                Wire::Flv => self.counters.flv_viewers = self.counters.flv_viewers.saturating_sub(1),
                Wire::Rtmp { .. } => self.counters.rtmp_players = self.counters.rtmp_players.saturating_sub(1),
                Wire::Hls => {}
            }
            tracing::debug!(shard = self.id, conn, peer = ?c.peer, bytes_out = c.bytes_out, reason, "FLV-tag viewer left");
            if c.wire != Wire::Hls {
                if let Some((app, name)) = self.streams.get(id).map(|s| (s.app().to_string(), s.name().to_string())) {
                    let protocol = if c.wire == Wire::Flv { Protocol::Flv } else { Protocol::Rtmp };
                    let call = self.hook_call("on_stop", conn, protocol, c.peer, (&app, &name), "");
                    self.notify_hook(call);
                }
            }
            if let Some(s) = self.streams.get_mut(id) {
                s.flv_viewers.retain(|&v| v != conn);
            }
            self.drop_stream_if_unused(id);
        }
        true
    }

    /// Bytes read from TCP connection `conn`, whichever listener took it.
    pub fn handle_tcp_data(&mut self, now: Instant, conn: usize, data: &[u8]) {
        if self.is_pull(conn) {
            self.handle_pull_data(now, conn, data);
        } else if self.is_http(conn) {
            self.handle_http_data(now, conn, data);
        } else {
            self.handle_rtmp_data(now, conn, data);
        }
    }

    /// The shell closed TCP connection `conn`, whichever listener took it.
    pub fn handle_tcp_closed(&mut self, now: Instant, conn: usize, reason: &str) {
        if self.is_pull(conn) {
            self.handle_pull_closed(now, conn, reason);
        } else if self.is_http(conn) {
            self.handle_http_closed(now, conn, reason);
        } else {
            self.handle_rtmp_closed(now, conn, reason);
        }
    }

    /// Whether `conn` is a media-listener connection or RTMP player the
    /// core holds.
    pub fn has_tcp_viewer(&self, conn: usize) -> bool {
        self.tcp_viewers.contains_key(&conn)
    }

    fn is_http(&self, conn: usize) -> bool {
        self.tcp_viewers.get(&conn).is_some_and(|c| matches!(c.wire, Wire::Flv | Wire::Hls))
    }

    /// A publish started (`Some(shard)`) or ended (`None`) on shard `from`.
    pub(super) fn on_home_announced(&mut self, from: usize, key: String, home: Option<usize>) {
        match home {
            Some(h) => {
                self.homes.insert(key, h);
            }
            // Only the shard it names may clear an entry: a publisher that
            // moved announces its new home before or after the old one's end.
            None => {
                if self.homes.get(&key) == Some(&from) {
                    self.homes.remove(&key);
                }
            }
        }
    }

    /// Tells every other shard where stream `key` is published now.
    pub(super) fn announce_home(&mut self, key: &str, published: bool) {
        let home = published.then_some(self.id);
        let me = self.id;
        for to in (0..self.shards).filter(|&s| s != me) {
            self.relay(to, RelayMsg::Home { key: key.to_string(), home });
        }
    }
}
