//! The core's side of the traffic records (`usage.rs`): which session each
//! byte belongs to. WebRTC sessions keep their own counts (`Session::traffic`,
//! read at every cut); TCP connections (RTMP publish and play, HTTP-FLV)
//! are metered from the bytes the shell read and wrote, and billed to a
//! key once they publish or play.

use super::Core;
use rts_common::ipc::{self, Protocol, UsageKey};
use std::net::SocketAddr;
use std::time::Instant;

impl Core {
    /// A TCP connection opened: its session id and meter, billed to nobody yet.
    /// Every connection gets a session id, billing or not: the admin
    /// listing names clients by it and cuts them by it.
    pub(super) fn open_conn_meter(&mut self, now: Instant, conn: usize, peer: Option<SocketAddr>) {
        let session = self.new_usage_session();
        self.conn_sessions.insert(conn, session);
        self.usage.open(session, None, peer, self.unix_us(now));
    }

    /// A usage session id for a TCP connection or an HLS player (WebRTC
    /// sessions have control's ids).
    pub(super) fn new_usage_session(&mut self) -> u64 {
        self.next_conn_session += 1;
        ipc::make_session_id(self.id, self.next_conn_session)
    }

    /// Bytes read from (`bytes_in`) or written to (`bytes_out`) `conn`.
    pub(super) fn meter_conn(&mut self, conn: usize, bytes_in: u64, bytes_out: u64) {
        if let Some(&session) = self.conn_sessions.get(&conn) {
            self.usage.add(session, bytes_in, bytes_out);
        }
    }

    /// `n` bytes read on TLS connection `conn` were record framing and
    /// handshake, not plaintext for the core: still its traffic.
    pub fn handle_tls_framing_read(&mut self, conn: usize, n: usize) {
        self.meter_conn(conn, n as u64, 0);
    }

    /// `conn` publishes or plays app/stream for `domain` from now on.
    pub(super) fn bill_conn(&mut self, now: Instant, conn: usize, domain: &str, app: &str, stream: &str, protocol: Protocol) {
        if let Some(&session) = self.conn_sessions.get(&conn) {
            let now_us = self.unix_us(now);
            self.usage.set_key(session, UsageKey::new(domain, app, stream, protocol), now_us);
        }
    }

    /// The shell let connection `conn` go: after it wrote what the core
    /// queued before closing it, or after telling the core the peer left.
    /// Its final usage record (the id may be reused from now on).
    pub fn handle_tcp_released(&mut self, now: Instant, conn: usize) {
        let now = self.advance(now);
        self.release_conn_ip(conn);
        if let Some(session) = self.conn_sessions.remove(&conn) {
            // An HLS player's session outlives its connections.
            if !self.hls.is_player_session(session) {
                self.usage.close(session, self.unix_us(now));
            }
        }
    }

    /// WebRTC sessions' counts into their meters.
    fn sync_session_meters(&mut self) {
        for (_, s) in self.sessions.iter() {
            let (i, o) = s.traffic();
            self.usage.set_totals(s.id, i, o);
        }
    }

    /// Housekeeping: the interval's records when its boundary passed, and
    /// records for control (new ones, and those it has not acknowledged).
    pub(super) fn usage_tick(&mut self, now: Instant) {
        if !self.usage.is_on() {
            return;
        }
        let now_us = self.unix_us(now);
        if self.usage.cut_due(now_us) {
            self.sync_session_meters();
            self.usage.cut_all(now_us);
        }
        self.usage.poll_messages(now_us, &mut self.ctl_out);
    }

    /// Stats: the traffic per key so far.
    pub(super) fn report_usage_totals(&mut self, now: Instant) {
        if !self.usage.is_on() {
            return;
        }
        self.sync_session_meters();
        let now_us = self.unix_us(now);
        self.usage.totals_messages(now_us, &mut self.ctl_out);
    }
}
