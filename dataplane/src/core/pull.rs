//! Cluster pulls: a stream ingested from another node's HTTP-FLV, as if it
//! were published here (docs/decisions/022). Control asks for a pull
//! (`ControlToShard::Pull`) when a viewer wants a stream another node has;
//! the core asks the shell for a TCP connection, sends one GET, checks the
//! answer's status line and then reads FLV tags into the same path as an
//! RTMP publisher's (`ingest_tag`): GOP cache, replicas on other shards,
//! WebRTC, FLV, RTMP and LL-HLS viewers, and further pulls from this node.
//!
//! A pull ends when the source closes (its publisher left), on a malformed
//! answer, when it stalls (`[cluster] pull_timeout_ms` without bytes), or on
//! `StopPull`; control hears `PullEnded` with the reason and decides whether
//! to pull again (from wherever the directory then says).

use super::stream::Stream;
use super::streams::StreamId;
use super::{Core, TcpOutput};
use rts_common::ipc::{Protocol, ShardToControl};
use rts_rtmp::flv::file::{FlvReader, TAG_AUDIO, TAG_VIDEO};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Longest response head accepted from a source.
const MAX_HEAD: usize = 8 * 1024;
/// Largest FLV tag accepted from a source (a 4K keyframe fits).
const MAX_TAG: usize = 8 << 20;

enum Phase {
    /// Waiting for the shell's connection (`handle_pull_conn`) and its
    /// connect to finish.
    Connecting,
    /// Request sent; reading the response head.
    Head(Vec<u8>),
    /// Streaming FLV into stream `id`.
    Flv { reader: FlvReader, id: StreamId },
}

/// What control's `Pull` asks for (see `ControlToShard::Pull`).
pub(super) struct PullRequest {
    pub app: String,
    pub stream: String,
    pub domain: String,
    pub source: SocketAddr,
    pub host: String,
    pub path: String,
}

pub(super) struct Pull {
    app: String,
    stream: String,
    domain: String,
    source: SocketAddr,
    host: String,
    path: String,
    conn: Option<usize>,
    phase: Phase,
    /// Bytes must arrive before this (connect, head, then between reads).
    deadline: Instant,
    /// Bytes read (the admin listing).
    bytes_in: u64,
}

impl Core {
    fn pull_timeout(&self) -> Duration {
        Duration::from_millis(self.cfg.cluster.as_ref().map_or(5000, |c| c.pull_timeout_ms))
    }

    /// Control asks to pull app/stream from `source`.
    pub(super) fn start_pull(&mut self, now: Instant, r: PullRequest) {
        let PullRequest { app, stream, domain, source, host, path } = r;
        let key = Stream::key_of(&app, &stream);
        if self.pulls.values().any(|p| p.app == app && p.stream == stream) {
            return; // a repeated request: the pull in progress answers it
        }
        if self.published_here(&app, &stream) {
            // A publisher here already: nothing to pull.
            self.push_ctl(ShardToControl::PullEnded { app, stream, reason: "published here".into() });
            return;
        }
        self.next_pull += 1;
        let token = self.next_pull;
        tracing::info!(shard = self.id, stream = %key, %source, "pull requested");
        self.counters.pulls_started += 1;
        let deadline = now + self.pull_timeout();
        self.pulls.insert(token, Pull { app, stream, domain, source, host, path, conn: None, phase: Phase::Connecting, deadline, bytes_in: 0 });
        self.tcp_out.push_back(TcpOutput::Connect { token, addr: source });
    }

    /// The shell made connection `conn` for pull `token` and started its
    /// connect (None: it could not make a socket).
    pub fn handle_pull_conn(&mut self, now: Instant, token: u64, conn: Option<usize>) {
        let now = self.advance(now);
        let Some(conn) = conn else {
            self.end_pull(token, "cannot open a socket");
            return;
        };
        let Some(p) = self.pulls.get_mut(&token) else {
            // Stopped meanwhile: the connection goes.
            self.tcp_out.push_back(TcpOutput::Close { conn });
            return;
        };
        p.conn = Some(conn);
        let source = p.source;
        self.pull_conns.insert(conn, token);
        self.open_conn_meter(now, conn, Some(source));
    }

    /// Pull connection `conn` is connected: the request goes out.
    pub fn handle_pull_connected(&mut self, now: Instant, conn: usize) {
        let now = self.advance(now);
        let timeout = self.pull_timeout();
        let Some(p) = self.pull_conns.get(&conn).and_then(|t| self.pulls.get_mut(t)) else { return };
        let request = format!("GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: rts-pull\r\nAccept: */*\r\nConnection: close\r\n\r\n", p.path, p.host);
        p.phase = Phase::Head(Vec::new());
        p.deadline = now + timeout;
        let (domain, app, stream) = (p.domain.clone(), p.app.clone(), p.stream.clone());
        self.bill_conn(now, conn, &domain, rts_common::config::split_stream_app(&app).1, &stream, Protocol::Relay);
        self.tcp_out.push_back(TcpOutput::Send { conn, data: bytes::Bytes::from(request) });
    }

    pub(super) fn is_pull(&self, conn: usize) -> bool {
        self.pull_conns.contains_key(&conn)
    }

    /// Bytes read from pull connection `conn`.
    pub(super) fn handle_pull_data(&mut self, now: Instant, conn: usize, data: &[u8]) {
        let now = self.advance(now);
        self.meter_conn(conn, data.len() as u64, 0);
        let Some(&token) = self.pull_conns.get(&conn) else { return };
        let timeout = self.pull_timeout();
        let Some(p) = self.pulls.get_mut(&token) else { return };
        p.deadline = now + timeout;
        p.bytes_in += data.len() as u64;
        let mut rest = data;
        if let Phase::Head(head) = &mut p.phase {
            let before = head.len();
            head.extend_from_slice(&data[..data.len().min(MAX_HEAD + 4 - before.min(MAX_HEAD))]);
            let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
                if head.len() > MAX_HEAD {
                    self.end_pull(token, "source answer head too long");
                }
                return;
            };
            let status = head.split(|&b| b == b'\r').next().map(|l| String::from_utf8_lossy(l).into_owned()).unwrap_or_default();
            if !status_ok(&status) {
                self.counters.pulls_refused += 1;
                self.end_pull(token, &format!("source answered {status:?}"));
                return;
            }
            rest = &data[(end + 4).saturating_sub(before).min(data.len())..];
            let (app, stream) = (p.app.clone(), p.stream.clone());
            if self.published_here(&app, &stream) {
                self.end_pull(token, "published here");
                return;
            }
            let id = self.begin_publish(conn, &app, &stream);
            tracing::info!(shard = self.id, stream = %Stream::key_of(&app, &stream), "pull started");
            let Some(p) = self.pulls.get_mut(&token) else { return };
            p.phase = Phase::Flv { reader: FlvReader::new(MAX_TAG), id };
        }
        let Some(p) = self.pulls.get_mut(&token) else { return };
        let Phase::Flv { reader, id } = &mut p.phase else { return };
        let id = *id;
        reader.push(rest);
        loop {
            let Some(Phase::Flv { reader, .. }) = self.pulls.get_mut(&token).map(|p| &mut p.phase) else { return };
            match reader.next_tag() {
                Ok(Some(tag)) if tag.tag_type == TAG_VIDEO || tag.tag_type == TAG_AUDIO => {
                    self.ingest_tag(id, tag.tag_type == TAG_VIDEO, tag.timestamp_ms, tag.body, now);
                }
                Ok(Some(_)) => {} // script data (onMetaData)
                Ok(None) => return,
                Err(e) => {
                    self.end_pull(token, &format!("bad FLV from the source: {e}"));
                    return;
                }
            }
        }
    }

    /// The shell closed pull connection `conn` (source closed, error).
    pub(super) fn handle_pull_closed(&mut self, now: Instant, conn: usize, reason: &str) {
        self.advance(now);
        if let Some(token) = self.pull_conns.remove(&conn) {
            if let Some(p) = self.pulls.get_mut(&token) {
                p.conn = None;
            }
            self.end_pull(token, &format!("source connection: {reason}"));
        }
        self.handle_tcp_released(now, conn);
    }

    /// The admin listing's view of the pulls: (session of its connection,
    /// app, stream, source, bytes read).
    pub(super) fn pull_clients(&self) -> Vec<(usize, String, String, SocketAddr, u64)> {
        self.pulls.values().filter_map(|p| p.conn.map(|c| (c, p.app.clone(), p.stream.clone(), p.source, p.bytes_in))).collect()
    }

    /// Ends the pull on connection `conn` (an admin cut).
    pub(super) fn cut_pull(&mut self, conn: usize) -> bool {
        let Some(&token) = self.pull_conns.get(&conn) else { return false };
        self.end_pull(token, "cut by admin");
        true
    }

    /// Control asks to stop pulling app/stream.
    pub(super) fn stop_pull(&mut self, app: &str, stream: &str) {
        let tokens: Vec<u64> = self.pulls.iter().filter(|(_, p)| p.app == app && p.stream == stream).map(|(&t, _)| t).collect();
        for t in tokens {
            self.end_pull(t, "stopped");
        }
    }

    /// Ends pull `token`: its connection closes, its stream loses its
    /// source, control hears why.
    fn end_pull(&mut self, token: u64, reason: &str) {
        let Some(p) = self.pulls.remove(&token) else { return };
        if let Some(conn) = p.conn {
            self.pull_conns.remove(&conn);
            self.tcp_out.push_back(TcpOutput::Close { conn });
        }
        if let Phase::Flv { id, .. } = p.phase {
            self.end_source(id, "pull ended");
        }
        tracing::info!(shard = self.id, stream = %Stream::key_of(&p.app, &p.stream), source = %p.source, reason, "pull ended");
        self.counters.pulls_ended += 1;
        self.push_ctl(ShardToControl::PullEnded { app: p.app, stream: p.stream, reason: reason.to_string() });
    }

    /// Cluster mode: a media-listener viewer (`conn`) asks for app/name,
    /// which no shard here has. Control is asked to pull it and the viewer
    /// waits on an empty stream (started by the pull's tags, here or
    /// replicated) until the pull's timeout and a second more. None outside
    /// cluster mode.
    pub(super) fn wait_for_cluster(&mut self, now: Instant, conn: usize, app: &str, name: &str) -> Option<StreamId> {
        self.cfg.cluster.as_ref()?;
        let max_packet = self.cfg.webrtc.max_rtp_packet;
        let id = self.streams.intern(app, name, || Stream::new(app, name, max_packet));
        self.want_from_cluster(now, app, name);
        self.cluster_waits.push((conn, now + self.pull_timeout() + Duration::from_secs(1)));
        self.counters.cluster_waits += 1;
        Some(id)
    }

    /// Tells control a media viewer wants app/name: at most once a second
    /// per stream, however many requests ask (a player retrying a 404, a
    /// crowd arriving at once).
    pub(super) fn want_from_cluster(&mut self, now: Instant, app: &str, name: &str) {
        let key = Stream::key_of(app, name);
        if self.wanted.get(&key).is_some_and(|&at| now < at + Duration::from_secs(1)) {
            return;
        }
        if self.wanted.len() >= 10_000 {
            self.wanted.retain(|_, &mut at| now < at + Duration::from_secs(1));
        }
        self.wanted.insert(key, now);
        self.push_ctl(ShardToControl::StreamWanted { app: app.to_string(), stream: name.to_string() });
    }

    /// Viewers that waited for a stream in vain are closed.
    pub(super) fn check_cluster_waits(&mut self, now: Instant) {
        let mut waits = std::mem::take(&mut self.cluster_waits);
        waits.retain(|&(conn, until)| {
            let waiting = self.tcp_viewers.get(&conn).and_then(|c| c.waiting_on());
            match waiting {
                Some(id) if now >= until && !self.streams.get(id).is_some_and(|s| s.is_live()) => {
                    self.close_tcp_viewer(conn, "stream not found in the cluster");
                    self.drop_stream_if_unused(id);
                    false
                }
                Some(_) => true,
                None => false,
            }
        });
        self.cluster_waits.append(&mut waits);
    }

    /// Pulls without bytes past their deadline are given up.
    pub(super) fn check_pulls(&mut self, now: Instant) {
        let late: Vec<u64> = self.pulls.iter().filter(|(_, p)| now >= p.deadline).map(|(&t, _)| t).collect();
        for t in late {
            let what = match self.pulls.get(&t).map(|p| &p.phase) {
                Some(Phase::Connecting) => "connect timed out",
                Some(Phase::Head(_)) => "no answer from the source",
                _ => "source stalled",
            };
            self.end_pull(t, what);
        }
    }
}

/// Whether an HTTP status line says 200.
fn status_ok(line: &str) -> bool {
    let mut parts = line.split_ascii_whitespace();
    matches!(parts.next(), Some(v) if v.starts_with("HTTP/1.")) && parts.next() == Some("200")
}

#[cfg(test)]
mod tests {
    use super::status_ok;

    #[test]
    fn only_a_200_status_line_is_ok() {
        assert!(status_ok("HTTP/1.1 200 OK"));
        assert!(status_ok("HTTP/1.0 200"));
        assert!(!status_ok("HTTP/1.1 404 Not Found"));
        assert!(!status_ok("HTTP/1.1 2000 OK"));
        assert!(!status_ok("RTSP/1.0 200 OK"));
        assert!(!status_ok(""));
    }
}
