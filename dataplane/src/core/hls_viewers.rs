//! LL-HLS on the media listener: the playlist, initialization segments,
//! segments and parts of a stream, from memory.
//!
//! A stream is muxed once, on its home shard (`hls::HlsMuxer`, fed with the
//! publisher's FLV tags). Every shard that gets HLS requests for it holds a
//! view: the home its own snapshots, any other shard the snapshots the home
//! relays to it (`RelayMsg::HlsSubscribe` / `HlsUpdate`: shared `Bytes`, no
//! copies). So a player whose requests land on different shards (each TCP
//! connection is placed by SO_REUSEPORT) sees one timeline.
//!
//! Blocking requests: a playlist asked for with `_HLS_msn`/`_HLS_part`
//! that the stream has not reached, and a part not made yet (the preload
//! hint), wait on the view until an update has them, at most
//! [`HOLD_LIMIT`]. Connections are kept alive between requests.
//!
//! Traffic: an HLS player's requests are billed together per client
//! address and stream (one usage session, whatever the connections),
//! closed after [`HLS_SESSION_IDLE`] without a request.

use super::flv_viewers::{State, Wire};
use super::stream::Stream;
use super::streams::StreamId;
use super::Core;
use crate::hls::muxer::Resume;
use crate::hls::{playlist, HlsMuxer, HlsSnapshot};
use crate::media_request::{self, MediaRequest, Method, Output, Refusal};
use crate::relay::RelayMsg;
use bytes::Bytes;
use rts_common::ipc::{Protocol, UsageKey};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest a request waits for its playlist update or part (three target
/// durations, as the LL-HLS draft allows for a blocking reload).
pub const HOLD_LIMIT: Duration = Duration::from_secs(3 * crate::hls::muxer::TARGET_DURATION_S as u64);
/// A view of another shard's stream without requests this long is dropped
/// (and unsubscribed).
pub const VIEW_IDLE: Duration = Duration::from_secs(30);
/// A player's usage session ends this long after its last request.
pub const HLS_SESSION_IDLE: Duration = Duration::from_secs(30);
/// A stream republished within this long continues its numbering.
pub const RESUME_FOR: Duration = Duration::from_secs(600);
/// Segments and parts are immutable: cacheable this long.
const MEDIA_MAX_AGE_S: u32 = 60;

/// What this shard serves of one stream.
pub(super) struct HlsView {
    snapshot: Option<Arc<HlsSnapshot>>,
    /// The shard that muxes it (this one, or the one subscribed to).
    home: usize,
    /// Held requests (connections).
    waiting: Vec<usize>,
    last_request: Instant,
}

/// A held request and until when it may wait.
pub(super) struct Held {
    req: MediaRequest,
    key: String,
    until: Instant,
}

/// One player's usage session: (client address, stream key, domain).
type HlsSessionKey = (IpAddr, String, String);

#[derive(Default)]
pub(super) struct HlsState {
    pub(super) muxers: HashMap<StreamId, HlsMuxer>,
    pub(super) views: HashMap<String, HlsView>,
    /// Shards subscribed to this shard's streams, by stream key.
    pub(super) subscribers: HashMap<String, Vec<usize>>,
    /// Where ended streams' numbering stood, for a new publish of them
    /// (kept [`RESUME_FOR`]).
    resume: HashMap<String, (Resume, Instant)>,
    pub(super) held: HashMap<usize, Held>,
    /// Usage sessions of HLS players: id and last request.
    sessions: HashMap<HlsSessionKey, (u64, Instant)>,
    player_sessions: HashSet<u64>,
}

impl HlsState {
    /// Whether `session` is an HLS player's usage session (shared by its
    /// connections: a connection's end does not end it).
    pub(super) fn is_player_session(&self, session: u64) -> bool {
        self.player_sessions.contains(&session)
    }
}

/// `_HLS_msn` / `_HLS_part` of a query, and the query without the
/// `_HLS_` directives (what the playlist's URIs carry).
fn directives(query: &str) -> (Option<u64>, Option<usize>, String) {
    let (mut msn, mut part) = (None, None);
    let mut keep = Vec::new();
    for kv in query.split('&').filter(|kv| !kv.is_empty()) {
        match kv.split_once('=') {
            Some(("_HLS_msn", v)) => msn = v.parse().ok(),
            Some(("_HLS_part", v)) => part = v.parse().ok(),
            _ if kv.starts_with("_HLS_") => {}
            _ => keep.push(kv),
        }
    }
    (msn, part, keep.join("&"))
}

/// What a request gets from a snapshot now.
enum Answer {
    Body { content_type: &'static str, max_age_s: u32, body: Vec<Bytes> },
    Wait,
    Refuse(Refusal),
}

fn answer(s: &HlsSnapshot, req: &MediaRequest) -> Answer {
    let media = |body: Vec<Bytes>| Answer::Body { content_type: "video/mp4", max_age_s: MEDIA_MAX_AGE_S, body };
    match req.output {
        Output::Playlist => {
            let (msn, part, query) = directives(&req.query);
            if let Some(msn) = msn {
                if msn > s.current.msn + 2 {
                    return Answer::Refuse(Refusal::BadRequest);
                }
                if !s.has(msn, part) {
                    return Answer::Wait;
                }
            }
            let text = playlist::render(s, &req.stream, &query);
            Answer::Body { content_type: "application/vnd.apple.mpegurl", max_age_s: 0, body: vec![Bytes::from(text)] }
        }
        Output::Init { version } => match s.init(version) {
            Some(b) => media(vec![b.clone()]),
            None => Answer::Refuse(Refusal::NotFound),
        },
        Output::Segment { msn } => match s.segment(msn) {
            Some(seg) => media(seg.parts.iter().map(|p| p.bytes.clone()).collect()),
            // The segment being made: when it is complete.
            None if msn == s.current.msn => Answer::Wait,
            None => Answer::Refuse(Refusal::NotFound),
        },
        Output::Part { msn, part } => match s.part(msn, part) {
            Some(p) => media(vec![p.bytes.clone()]),
            // The next parts (the preload hint, or just past it).
            None if (msn == s.current.msn && part <= s.current.parts.len() + 1) || (msn == s.current.msn + 1 && part == 0) => Answer::Wait,
            None => Answer::Refuse(Refusal::NotFound),
        },
        Output::Flv => Answer::Refuse(Refusal::NotFound),
    }
}

impl Core {
    /// A publish started on this shard: its muxer.
    pub(super) fn start_hls(&mut self, id: StreamId) {
        if !self.cfg.hls.enabled {
            return;
        }
        // A stream published here before goes on with its numbering.
        let resumed = self.streams.get(id).and_then(|s| self.hls.resume.remove(&s.key()));
        let m = resumed.map_or_else(HlsMuxer::default, |(r, _)| HlsMuxer::resume(r));
        self.hls.muxers.insert(id, m);
    }

    /// A publisher's FLV tag, into its stream's muxer; a new part or
    /// segment goes to the views here and on the subscribed shards.
    pub(super) fn feed_hls(&mut self, now: Instant, id: StreamId, video: bool, ts_ms: u32, body: &Bytes) {
        let now_ms = self.unix_us(now) / 1000;
        let Some(m) = self.hls.muxers.get_mut(&id) else { return };
        if video {
            m.on_video(ts_ms, body, now_ms);
        } else {
            m.on_audio(ts_ms, body);
        }
        if !m.take_changed() {
            return;
        }
        let Some(key) = self.streams.get(id).map(|s| s.key()) else { return };
        // Nobody serves it: the snapshot is made when someone asks.
        if !self.hls.views.contains_key(&key) && self.hls.subscribers.get(&key).is_none_or(|s| s.is_empty()) {
            return;
        }
        let Some(m) = self.hls.muxers.get(&id) else { return };
        let Some(snapshot) = m.snapshot().map(Arc::new) else { return };
        for &shard in self.hls.subscribers.get(&key).into_iter().flatten() {
            self.relay_out.push_back((shard, RelayMsg::HlsUpdate { key: key.clone(), snapshot: Some(snapshot.clone()), live: true }));
        }
        if let Some(v) = self.hls.views.get_mut(&key) {
            v.snapshot = Some(snapshot);
            self.wake_hls(now, &key);
        }
    }

    /// The publish of `id` ended here: its muxer goes, subscribed shards
    /// and held requests are told.
    pub(super) fn end_hls(&mut self, now: Instant, id: StreamId) {
        let Some(m) = self.hls.muxers.remove(&id) else { return };
        let Some(key) = self.streams.get(id).map(|s| s.key()) else { return };
        self.hls.resume.insert(key.clone(), (m.resume_point(), now));
        for shard in self.hls.subscribers.remove(&key).unwrap_or_default() {
            self.relay(shard, RelayMsg::HlsUpdate { key: key.clone(), snapshot: None, live: false });
        }
        self.drop_hls_view(now, &key);
    }

    /// A request for an HLS output of app/stream on media connection `conn`.
    pub(super) fn on_hls_request(&mut self, now: Instant, conn: usize, req: MediaRequest) {
        if let Some(c) = self.tcp_viewers.get_mut(&conn) {
            c.wire = Wire::Hls;
        }
        if req.method == Method::Options {
            self.answer_http(conn, media_request::preflight_response().into_bytes());
            return;
        }
        if !self.cfg.hls.enabled {
            self.refuse_http(conn, Refusal::NotFound, "HLS is off");
            return;
        }
        let Some(app) = self.authorize_media(now, conn, &req, "m3u8") else { return };
        let key = Stream::key_of(&app, &req.stream);
        // Draining: players already reloading this stream's playlist here
        // go on (every reload is a request); no new stream is opened.
        if self.draining && !self.hls.views.contains_key(&key) {
            self.refuse_http(conn, Refusal::Unavailable, "server draining");
            return;
        }
        if !self.open_hls_view(now, &key) {
            if self.cfg.cluster.is_some() {
                // Pulled from the node that has it, if one does; the
                // player's next request finds it (404 until then).
                self.want_from_cluster(now, &app, &req.stream);
            }
            self.refuse_http(conn, Refusal::NotFound, "stream not live");
            return;
        }
        self.bill_hls(now, conn, &req, &key);
        self.serve_hls(now, conn, req, key, now + HOLD_LIMIT);
    }

    /// Makes sure there is a view of `key` here: false when the stream is
    /// published nowhere.
    fn open_hls_view(&mut self, now: Instant, key: &str) -> bool {
        if let Some(v) = self.hls.views.get_mut(key) {
            v.last_request = now;
            return true;
        }
        let local = self.streams.lookup(key).filter(|id| self.hls.muxers.contains_key(id));
        if let Some(id) = local {
            let snapshot = self.hls.muxers.get(&id).and_then(|m| m.snapshot()).map(Arc::new);
            self.hls.views.insert(key.to_string(), HlsView { snapshot, home: self.id, waiting: Vec::new(), last_request: now });
            return true;
        }
        let Some(&home) = self.homes.get(key).filter(|&&h| h != self.id && h < self.shards) else { return false };
        self.hls.views.insert(key.to_string(), HlsView { snapshot: None, home, waiting: Vec::new(), last_request: now });
        self.relay(home, RelayMsg::HlsSubscribe { key: key.to_string(), from: self.id });
        true
    }

    /// Answers `req` from the view of `key`, or holds it until `until`.
    fn serve_hls(&mut self, now: Instant, conn: usize, req: MediaRequest, key: String, until: Instant) {
        let Some(view) = self.hls.views.get_mut(&key) else {
            self.refuse_http(conn, Refusal::NotFound, "stream not live");
            return;
        };
        let result = match view.snapshot.as_deref() {
            Some(s) => answer(s, &req),
            None => Answer::Wait,
        };
        match result {
            Answer::Wait if now < until => {
                if !view.waiting.contains(&conn) {
                    view.waiting.push(conn);
                }
                if let Some(c) = self.tcp_viewers.get_mut(&conn) {
                    c.state = State::Held;
                }
                if !self.hls.held.contains_key(&conn) {
                    self.counters.hls_held += 1;
                }
                self.hls.held.insert(conn, Held { req, key, until });
            }
            Answer::Wait => {
                // Held to the limit: a playlist as it is; a part, not found.
                let last = view.snapshot.clone();
                match (req.output, last) {
                    (Output::Playlist, Some(s)) => {
                        let (_, _, query) = directives(&req.query);
                        let text = playlist::render(&s, &req.stream, &query);
                        self.send_hls(conn, &req, "application/vnd.apple.mpegurl", 0, vec![Bytes::from(text)], &key);
                    }
                    _ => self.refuse_http(conn, Refusal::NotFound, "not made in time"),
                }
            }
            Answer::Body { content_type, max_age_s, body } => self.send_hls(conn, &req, content_type, max_age_s, body, &key),
            Answer::Refuse(r) => self.refuse_http(conn, r, "HLS request"),
        }
    }

    /// A complete answer; the connection then reads its next request, or
    /// closes when the client asked for that.
    fn send_hls(&mut self, conn: usize, req: &MediaRequest, content_type: &str, max_age_s: u32, body: Vec<Bytes>, key: &str) {
        self.counters.hls_requests += 1;
        let len: usize = body.iter().map(Bytes::len).sum();
        let head = media_request::response_head(content_type, len, req.keep_alive, max_age_s);
        self.send_tcp(conn, Bytes::from(head.into_bytes()));
        if req.method == Method::Get {
            for b in body {
                self.send_tcp(conn, b);
            }
        }
        if let Some(s) = self.streams.lookup(key).and_then(|id| self.streams.get_mut(id)) {
            s.add_bytes_out(len as u64);
        }
        if !req.keep_alive {
            self.close_http(conn, "answered");
            return;
        }
        let now = self.now;
        let leftover = match self.tcp_viewers.get_mut(&conn) {
            Some(c) => {
                c.state = State::Request;
                c.idle_since = now;
                !c.head.is_empty()
            }
            None => false,
        };
        if leftover {
            // A pipelined request after this one.
            self.handle_http_data(self.now, conn, &[]);
        }
    }

    /// The view of `key` has a new snapshot: held requests that it answers go.
    fn wake_hls(&mut self, now: Instant, key: &str) {
        let Some(v) = self.hls.views.get_mut(key) else { return };
        let waiting = std::mem::take(&mut v.waiting);
        for conn in waiting {
            if let Some(h) = self.hls.held.remove(&conn) {
                self.serve_hls(now, conn, h.req, h.key, h.until);
            }
        }
    }

    /// Housekeeping: held requests past their limit, idle views of other
    /// shards' streams, idle players' usage sessions.
    pub(super) fn hls_tick(&mut self, now: Instant) {
        let expired: Vec<usize> = self.hls.held.iter().filter(|(_, h)| now >= h.until).map(|(&c, _)| c).collect();
        for conn in expired {
            if let Some(h) = self.hls.held.remove(&conn) {
                if let Some(v) = self.hls.views.get_mut(&h.key) {
                    v.waiting.retain(|&c| c != conn);
                }
                self.serve_hls(now, conn, h.req, h.key, h.until);
            }
        }
        let idle: Vec<String> = self
            .hls
            .views
            .iter()
            .filter(|(_, v)| v.home != self.id && v.waiting.is_empty() && now.saturating_duration_since(v.last_request) >= VIEW_IDLE)
            .map(|(k, _)| k.clone())
            .collect();
        for key in idle {
            if let Some(v) = self.hls.views.remove(&key) {
                self.relay(v.home, RelayMsg::HlsUnsubscribe { key, from: self.id });
            }
        }
        self.hls.resume.retain(|_, (_, at)| now.saturating_duration_since(*at) < RESUME_FOR);
        let now_us = self.unix_us(now);
        let mut ended = Vec::new();
        self.hls.sessions.retain(|_, (session, last)| {
            let keep = now.saturating_duration_since(*last) < HLS_SESSION_IDLE;
            if !keep {
                ended.push(*session);
            }
            keep
        });
        for session in ended {
            self.hls.player_sessions.remove(&session);
            self.conn_sessions.retain(|_, s| *s != session);
            self.usage.close(session, now_us);
        }
    }

    /// The view of `key` is gone (its stream ended): its held requests get 404.
    fn drop_hls_view(&mut self, _now: Instant, key: &str) {
        let Some(v) = self.hls.views.remove(key) else { return };
        for conn in v.waiting {
            self.hls.held.remove(&conn);
            self.refuse_http(conn, Refusal::NotFound, "stream ended");
        }
    }

    /// A media connection closed: a request it held is dropped.
    pub(super) fn forget_hls_conn(&mut self, conn: usize) {
        if let Some(h) = self.hls.held.remove(&conn) {
            if let Some(v) = self.hls.views.get_mut(&h.key) {
                v.waiting.retain(|&c| c != conn);
            }
        }
    }

    /// HLS relay messages.
    pub(super) fn handle_hls_relay(&mut self, now: Instant, from: usize, msg: RelayMsg) {
        match msg {
            RelayMsg::HlsSubscribe { key, from: sub } => {
                let id = self.streams.lookup(&key).filter(|id| self.hls.muxers.contains_key(id));
                let Some(id) = id else {
                    self.relay(sub, RelayMsg::HlsUpdate { key, snapshot: None, live: false });
                    return;
                };
                let list = self.hls.subscribers.entry(key.clone()).or_default();
                if !list.contains(&sub) {
                    list.push(sub);
                }
                let snapshot = self.hls.muxers.get(&id).and_then(|m| m.snapshot()).map(Arc::new);
                self.relay(sub, RelayMsg::HlsUpdate { key, snapshot, live: true });
            }
            RelayMsg::HlsUnsubscribe { key, from: sub } => {
                if let Some(list) = self.hls.subscribers.get_mut(&key) {
                    list.retain(|&s| s != sub);
                }
            }
            RelayMsg::HlsUpdate { key, snapshot, live } => {
                if self.hls.views.get(&key).is_none_or(|v| v.home != from) {
                    return;
                }
                if !live {
                    self.drop_hls_view(now, &key);
                    return;
                }
                if let (Some(v), Some(s)) = (self.hls.views.get_mut(&key), snapshot) {
                    v.snapshot = Some(s);
                    self.wake_hls(now, &key);
                }
            }
            _ => {}
        }
    }

    /// The connection's traffic goes to the player's usage session (client
    /// address and stream), made on its first request.
    fn bill_hls(&mut self, now: Instant, conn: usize, req: &MediaRequest, key: &str) {
        if !self.usage.is_on() {
            return;
        }
        let Some(peer) = self.tcp_viewers.get(&conn).and_then(|c| c.peer) else { return };
        let sk = (peer.ip(), key.to_string(), req.host.clone());
        let now_us = self.unix_us(now);
        let session = match self.hls.sessions.get_mut(&sk) {
            Some((s, last)) => {
                *last = now;
                *s
            }
            None => {
                let s = self.new_usage_session();
                self.usage.open(s, Some(UsageKey::new(&req.host, &req.app, &req.stream, Protocol::Hls)), Some(peer), now_us);
                self.hls.sessions.insert(sk, (s, now));
                self.hls.player_sessions.insert(s);
                s
            }
        };
        match self.conn_sessions.insert(conn, session) {
            Some(own) if own != session => {
                // The connection's own meter (unbilled: no key) ends; its
                // request bytes so far go to the player's session.
                self.usage.close(own, now_us);
                self.usage.add(session, req.head_len as u64, 0);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_are_read_and_kept_off_the_uris() {
        assert_eq!(directives("_HLS_msn=12&_HLS_part=3&auth_key=1-2-3-x"), (Some(12), Some(3), "auth_key=1-2-3-x".to_string()));
        assert_eq!(directives("auth_key=a&_HLS_skip=YES"), (None, None, "auth_key=a".to_string()));
        assert_eq!(directives(""), (None, None, String::new()));
        assert_eq!(directives("_HLS_msn=x"), (None, None, String::new()));
    }
}
