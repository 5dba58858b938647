//! The admin listener's reach into a shard: its TCP clients listed on
//! request (WebRTC sessions are control's to list), and cuts of a client
//! or of a stream's publisher.

use super::flv_viewers::Wire;
use super::stream::Stream;
use super::Core;
use rts_common::ipc::{ClientEntry, Protocol, ShardToControl, USAGE_MESSAGE_BYTES};

/// Encoded bytes of a `ClientEntry` besides its names (ids, address,
/// counters, length prefixes), rounded up.
const CLIENT_ENTRY_OVERHEAD: usize = 64;

impl Core {
    /// Answers `ListClients` `req`: publishers, RTMP players, HTTP-FLV and
    /// LL-HLS connections that asked for a stream, and pulls.
    pub(super) fn list_clients(&mut self, req: u64) {
        let mut all = Vec::new();
        let name = |core: &Core, id| core.streams.get(id).map(|s| (s.app().to_string(), s.name().to_string()));
        for (&conn, &session) in &self.conn_sessions {
            let entry = if let Some(c) = self.conns.get(&conn) {
                let (protocol, stream, bytes_out) = match (c.publishing(), self.tcp_viewers.get(&conn)) {
                    (Some(id), _) => (Protocol::Publish, Some(id), 0),
                    (None, Some(v)) => (Protocol::Rtmp, v.stream(), v.bytes_out()),
                    (None, None) => continue, // handshaking
                };
                let Some((app, stream)) = stream.and_then(|id| name(self, id)) else { continue };
                ClientEntry { session, protocol, app, stream, peer: c.peer(), bytes_in: c.bytes_in(), bytes_out }
            } else if let Some(v) = self.tcp_viewers.get(&conn) {
                let protocol = if v.wire == Wire::Hls { Protocol::Hls } else { Protocol::Flv };
                let Some((app, stream)) = v.stream().and_then(|id| name(self, id)) else { continue };
                ClientEntry { session, protocol, app, stream, peer: v.peer, bytes_in: 0, bytes_out: v.bytes_out() }
            } else {
                continue;
            };
            all.push(entry);
        }
        for (conn, app, stream, source, bytes_in) in self.pull_clients() {
            if let Some(&session) = self.conn_sessions.get(&conn) {
                all.push(ClientEntry { session, protocol: Protocol::Relay, app, stream, peer: Some(source), bytes_in, bytes_out: 0 });
            }
        }
        all.sort_by_key(|e| e.session);
        // Chunks that fit the smallest ring slot whatever the names' lengths.
        let mut chunk: Vec<ClientEntry> = Vec::new();
        let mut size = 0;
        for e in all {
            let n = e.app.len() + e.stream.len() + CLIENT_ENTRY_OVERHEAD;
            if !chunk.is_empty() && size + n > USAGE_MESSAGE_BYTES {
                self.push_ctl(ShardToControl::Clients { req, clients: std::mem::take(&mut chunk), last: false });
                size = 0;
            }
            size += n;
            chunk.push(e);
        }
        self.push_ctl(ShardToControl::Clients { req, clients: chunk, last: true });
    }

    /// Closes the TCP client with usage session `session` (a viewer, an
    /// RTMP publisher or player, a pull).
    pub(super) fn cut_client(&mut self, session: u64) {
        let conn = self.conn_sessions.iter().find(|(_, &s)| s == session).map(|(&c, _)| c);
        let found = match conn {
            Some(c) if self.is_pull(c) => self.cut_pull(c),
            Some(c) if self.conns.contains_key(&c) => {
                self.close_rtmp(c, "cut by admin");
                true
            }
            Some(c) if self.tcp_viewers.contains_key(&c) => {
                self.close_tcp_viewer(c, "cut by admin");
                true
            }
            _ => false,
        };
        if found {
            self.counters.admin_cuts += 1;
            tracing::info!(shard = self.id, session = format_args!("{session:016x}"), "client cut by admin");
        }
        self.push_ctl(ShardToControl::CutDone { session, app: String::new(), stream: String::new(), found });
    }

    /// Closes the source of app/stream here: its RTMP publisher or its pull.
    pub(super) fn cut_publisher(&mut self, app: String, stream: String) {
        let key = Stream::key_of(&app, &stream);
        let publisher = self.conns.iter().find(|(_, c)| c.publishing().and_then(|id| self.streams.get(id)).is_some_and(|s| s.key() == key)).map(|(&c, _)| c);
        let found = match publisher {
            Some(c) => {
                self.close_rtmp(c, "publisher cut by admin");
                true
            }
            None => {
                let pulls: Vec<usize> = self.pull_clients().into_iter().filter(|p| p.1 == app && p.2 == stream).map(|p| p.0).collect();
                let mut any = false;
                for c in pulls {
                    any |= self.cut_pull(c);
                }
                any
            }
        };
        if found {
            self.counters.admin_cuts += 1;
            tracing::info!(shard = self.id, stream = %key, "publisher cut by admin");
        }
        self.push_ctl(ShardToControl::CutDone { session: 0, app, stream, found });
    }
}
