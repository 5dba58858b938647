//! HTTP callbacks (`[hooks]`, like SRS's `http_hooks`) as the shard sees
//! them: a publish, an RTMP play or an HTTP-FLV request that passed its
//! key check is held while control asks `on_publish` / `on_play`
//! (`ShardToControl::Hook`) and goes on with the verdict; without one by
//! `timeout_ms` + 500 ms (a dead hook server, a control that is down) the
//! `fail_open` policy decides. The shard never waits for anything else:
//! other clients and streams carry on meanwhile. `on_unpublish` and
//! `on_stop` are notices (publisher gone, TCP viewer gone).

use super::Core;
use crate::media_request::MediaRequest;
use rts_common::config::split_stream_app;
use rts_common::ipc::{HookCall, Protocol, ShardToControl};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Where a client stands with the hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum HookState {
    /// Not asked yet: ask (and hold) when a hook is configured.
    Ask,
    Allowed,
    Refused(String),
}

/// An RTMP publish or play request, as the client named it.
#[derive(Debug, Clone)]
pub(super) struct RtmpRequest {
    pub request_id: u32,
    pub app: String,
    pub stream: String,
    pub query: String,
}

/// A client held for a verdict, with what it takes to go on.
pub(super) enum Held {
    Publish { conn: usize, req: RtmpRequest },
    RtmpPlay { conn: usize, req: RtmpRequest },
    Flv { conn: usize, req: MediaRequest },
}

pub(super) struct HookWait {
    held: Held,
    /// The client's session id: a connection id the shell reused for
    /// another client meanwhile must not get this one's answer.
    session: u64,
    deadline: Instant,
}

impl Held {
    fn conn(&self) -> usize {
        match self {
            Held::Publish { conn, .. } | Held::RtmpPlay { conn, .. } | Held::Flv { conn, .. } => *conn,
        }
    }
}

/// What the shell adds to `timeout_ms` before the policy applies: control's
/// own round trip to the hook server fits in.
const MARGIN: Duration = Duration::from_millis(500);

impl Core {
    /// The call describing `conn`'s client, for `action` on the server's
    /// app (with its domain) and stream.
    pub(super) fn hook_call(&self, action: &str, conn: usize, protocol: Protocol, peer: Option<SocketAddr>, (server_app, stream): (&str, &str), param: &str) -> HookCall {
        let (domain, app) = split_stream_app(server_app);
        HookCall {
            action: action.to_string(),
            session: self.conn_sessions.get(&conn).copied().unwrap_or(0),
            protocol,
            client: peer,
            domain: domain.to_string(),
            app: app.to_string(),
            stream: stream.to_string(),
            param: param.to_string(),
        }
    }

    /// Holds `held` while control asks the hook of `call.action`: true when
    /// it is held (a hook is configured), false to go on at once.
    pub(super) fn hold_for_hook(&mut self, now: Instant, held: Held, call: HookCall) -> bool {
        if self.cfg.hooks.url(&call.action).is_empty() {
            return false;
        }
        self.next_hook += 1;
        let req = self.next_hook;
        let deadline = now + Duration::from_millis(self.cfg.hooks.timeout_ms) + MARGIN;
        let session = self.conn_sessions.get(&held.conn()).copied().unwrap_or(0);
        self.hook_waits.insert(req, HookWait { held, session, deadline });
        self.counters.hooks_asked += 1;
        self.push_ctl(ShardToControl::Hook { req, call });
        true
    }

    /// Tells control's hook of a client that left (`on_unpublish`, `on_stop`).
    pub(super) fn notify_hook(&mut self, call: HookCall) {
        if !self.cfg.hooks.url(&call.action).is_empty() {
            self.push_ctl(ShardToControl::Hook { req: 0, call });
        }
    }

    /// Control's verdict on hook request `req`.
    pub(super) fn handle_hook_verdict(&mut self, now: Instant, req: u64, allow: bool, reason: String) {
        if let Some(w) = self.hook_waits.remove(&req) {
            let state = if allow { HookState::Allowed } else { HookState::Refused(reason) };
            self.resume_held(now, w, state);
        }
    }

    /// Held clients without a verdict by their deadline get the policy.
    pub(super) fn check_hook_waits(&mut self, now: Instant) {
        let late: Vec<u64> = self.hook_waits.iter().filter(|(_, w)| now >= w.deadline).map(|(&r, _)| r).collect();
        for req in late {
            let Some(w) = self.hook_waits.remove(&req) else { continue };
            self.counters.hooks_timed_out += 1;
            let state = if self.cfg.hooks.fail_open { HookState::Allowed } else { HookState::Refused("hook did not answer".into()) };
            tracing::info!(shard = self.id, req, policy = ?state, "hook verdict late; policy applied");
            self.resume_held(now, w, state);
        }
    }

    fn resume_held(&mut self, now: Instant, wait: HookWait, state: HookState) {
        let held = wait.held;
        if self.conn_sessions.get(&held.conn()) != Some(&wait.session) {
            return; // the client left while held
        }
        if let HookState::Refused(_) = &state {
            self.counters.hooks_refused += 1;
        }
        match held {
            Held::Publish { conn, req } => {
                self.on_publish_request(conn, req, now, state);
                self.pump_rtmp(conn, now);
            }
            Held::RtmpPlay { conn, req } => {
                self.on_play_request(conn, req, now, state);
                self.pump_rtmp(conn, now);
            }
            Held::Flv { conn, req } => self.on_media_request(now, conn, req, state),
        }
    }

    pub(super) fn has_hook_waits(&self) -> bool {
        !self.hook_waits.is_empty()
    }
}
