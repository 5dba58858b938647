//! Stream replication between shards (DESIGN.md §2): a shard with viewers
//! of a stream published elsewhere subscribes to the home shard, which
//! answers with its GOP cache and then relays every delivery (the same
//! shared packets its own viewers get). Messages name the receiver's stream
//! id, so no string is handled per frame.

use super::stream::Kind;
use super::streams::StreamId;
use super::Core;
use crate::relay::RelayMsg;
use std::time::Instant;

/// State-changing relay messages kept for a retry while queues are full.
const MAX_RELAY_RETRY: usize = 4096;

impl Core {
    /// A message from shard `from`.
    pub fn handle_relay(&mut self, now: Instant, from: usize, msg: RelayMsg) {
        let now = self.advance(now);
        match msg {
            RelayMsg::Subscribe { key, from: sub, replica } => {
                let home = self.streams.lookup(&key).filter(|&id| self.streams.get(id).is_some_and(|s| s.is_published()));
                let Some(id) = home else {
                    self.relay(sub, RelayMsg::Ended { stream: replica });
                    return;
                };
                let Some(s) = self.streams.get_mut(id) else { return };
                s.add_subscriber(sub, replica);
                let snapshot = s.snapshot(replica);
                tracing::info!(shard = self.id, stream = %key, to = sub, "replicating stream to shard");
                self.relay(sub, snapshot);
            }
            RelayMsg::Unsubscribe { key, from: sub } => {
                let Some(id) = self.streams.lookup(&key) else { return };
                if let Some(s) = self.streams.get_mut(id) {
                    s.remove_subscriber(sub);
                }
                self.drop_stream_if_unused(id);
            }
            RelayMsg::Snapshot { stream, gop, anchor, flv, clocks } => {
                let Some(s) = self.streams.get_mut(stream).filter(|s| s.home() == Some(from)) else { return };
                s.on_snapshot(gop, anchor, *clocks);
                s.flv = *flv;
                self.start_waiting_flv_viewers(stream);
                let Some(s) = self.streams.get(stream) else { return };
                // Viewers that joined, or switched here, before the snapshot
                // start from it (not from the next keyframe); one that
                // switched goes on by the clocks it brought, as a switch to
                // a fed stream does (not its first packet taken as on time).
                let clock = (s.send_rtp_at(Kind::Video, now), s.send_rtp_at(Kind::Audio, now));
                let viewers = s.viewers().len();
                for i in 0..viewers {
                    let Some(&v) = self.streams.get(stream).and_then(|s| s.viewers().get(i)) else { break };
                    let Some(m) = self.sessions.get_mut(v).and_then(|x| x.media.as_mut()) else { continue };
                    if m.video.awaiting_source() {
                        m.video.rebase_with(now, None, clock.0);
                        m.audio.rebase_with(now, None, clock.1);
                        self.queue_gop(v);
                    }
                }
            }
            RelayMsg::Packets { stream, kind, packets, keyframe, anchor } => {
                let Some(s) = self.streams.get_mut(stream).filter(|s| s.home() == Some(from)) else { return };
                s.on_relay(kind, &packets, keyframe, anchor);
                self.deliver(stream, kind, packets, keyframe, None, now);
            }
            RelayMsg::FlvTag { stream, tag } => {
                if self.streams.get(stream).is_some_and(|s| s.home() == Some(from)) {
                    self.deliver_flv(stream, tag, now);
                }
            }
            RelayMsg::Home { key, home } => self.on_home_announced(from, key, home),
            m @ (RelayMsg::HlsSubscribe { .. } | RelayMsg::HlsUnsubscribe { .. } | RelayMsg::HlsUpdate { .. }) => self.handle_hls_relay(now, from, m),
            RelayMsg::Ended { stream } => {
                let Some(s) = self.streams.get_mut(stream).filter(|s| s.home() == Some(from)) else { return };
                s.set_home(None);
                self.end_flv_viewers(stream);
                self.drop_stream_if_unused(stream);
            }
        }
    }

    /// The shell could not queue `msg` for shard `to` (its queue is full):
    /// media is dropped (counted), anything else is retried.
    pub fn handle_relay_full(&mut self, to: usize, msg: RelayMsg) {
        if msg.is_media() || self.relay_retry.len() >= MAX_RELAY_RETRY {
            self.counters.relay_dropped += 1;
        } else {
            self.counters.relay_retried += 1;
            self.relay_retry.push_back((to, msg));
        }
    }

    /// Makes local stream `id` a replica of `home`'s stream.
    pub(super) fn subscribe(&mut self, id: StreamId, home: usize) {
        let Some(stream) = self.streams.get_mut(id) else { return };
        if home == self.id || home >= self.shards || stream.is_published() || stream.home() == Some(home) {
            return;
        }
        let old = stream.home();
        stream.set_home(Some(home));
        let key = stream.key();
        // A new source means a new sequence space for every local viewer.
        self.rebase_viewers(id);
        if let Some(old) = old {
            self.relay(old, RelayMsg::Unsubscribe { key: key.clone(), from: self.id });
        }
        self.relay(home, RelayMsg::Subscribe { key, from: self.id, replica: id });
    }
}
