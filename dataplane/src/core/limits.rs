//! What one client may cost a shard (`[limits]`): TCP connections per
//! address, and how long a connection may take to say what it wants (an
//! RTMP handshake that never publishes or plays, a slow or idle HTTP
//! request head: slowloris). Refusals and closes are counted; nothing
//! here touches other clients.

use super::flv_viewers::State;
use super::{Core, TcpOutput};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

impl Core {
    /// Whether connection `conn` from `peer` may stay: false when its
    /// address holds `[limits] conns_per_ip` connections here already (it
    /// is closed at once, counted).
    pub(super) fn admit_conn(&mut self, conn: usize, peer: Option<SocketAddr>) -> bool {
        let Some(ip) = peer.map(|p| p.ip()) else { return true };
        let limit = self.cfg.limits.conns_per_ip;
        let held = self.conn_ips.get(&ip).copied().unwrap_or(0);
        if limit > 0 && held >= limit {
            self.counters.conns_refused_per_ip += 1;
            tracing::debug!(shard = self.id, %ip, held, "connection refused: too many from this address");
            self.tcp_out.push_back(TcpOutput::Close { conn });
            return false;
        }
        *self.conn_ips.entry(ip).or_default() += 1;
        self.conn_ip.insert(conn, ip);
        true
    }

    /// Connection `conn` is gone: its address holds one less.
    pub(super) fn release_conn_ip(&mut self, conn: usize) {
        let Some(ip) = self.conn_ip.remove(&conn) else { return };
        if let Some(n) = self.conn_ips.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.conn_ips.remove(&ip);
            }
        }
    }

    /// Closes RTMP connections that have not published or played within
    /// `rtmp_handshake_s`, and media connections without a complete
    /// request for `http_idle_s`.
    pub(super) fn close_slow_clients(&mut self, now: Instant) {
        let rtmp_limit = Duration::from_secs(self.cfg.limits.rtmp_handshake_s.into());
        let http_limit = Duration::from_secs(self.cfg.limits.http_idle_s.into());
        let slow_rtmp: Vec<usize> = self
            .conns
            .iter()
            .filter(|(c, i)| i.publishing().is_none() && !self.tcp_viewers.contains_key(c) && now.saturating_duration_since(i.opened()) >= rtmp_limit)
            .map(|(&c, _)| c)
            .collect();
        for conn in slow_rtmp {
            self.counters.slow_clients_closed += 1;
            self.close_rtmp(conn, "no publish or play in time");
        }
        let slow_http: Vec<usize> = self
            .tcp_viewers
            .iter()
            .filter(|(c, v)| v.state == State::Request && !self.conns.contains_key(c) && now.saturating_duration_since(v.idle_since) >= http_limit)
            .map(|(&c, _)| c)
            .collect();
        for conn in slow_http {
            self.counters.slow_clients_closed += 1;
            self.close_http(conn, "no request in time");
        }
    }
}

/// Per-address counts for a shard.
pub(super) type ConnIps = std::collections::HashMap<IpAddr, u32>;
