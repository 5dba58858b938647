//! RTMP ingest: each connection's protocol state machine (rts-rtmp), the
//! publish decision (auth key, one publisher per stream) and the frames a
//! publisher sends, packetized once and handed to delivery.

use super::fanout::FanOut;
use super::hooks::{Held, HookState, RtmpRequest};
use super::stream::{AudioOutcome, Kind, Stream, VideoOutcome};
use super::streams::StreamId;
use super::transmit::Work;
use super::{Core, TcpOutput};
use crate::flv_gop::FlvTag;
use crate::relay::RelayMsg;
use rts_rtmp::flv::file::{TAG_AUDIO, TAG_VIDEO};
use bytes::Bytes;
use rts_common::ipc::{Protocol, ShardToControl};
use rts_rtmp::{RtmpEvent, RtmpOutput, RtmpServerConn};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(super) struct Ingest {
    rtmp: RtmpServerConn,
    /// The stream while this connection publishes.
    publishing: Option<StreamId>,
    peer: Option<SocketAddr>,
    /// Bytes read (the admin listing).
    bytes_in: u64,
    /// When it connected: one that has not published or played within
    /// `[limits] rtmp_handshake_s` is closed.
    opened: Instant,
}

impl Ingest {
    pub(super) fn publishing(&self) -> Option<StreamId> {
        self.publishing
    }

    pub(super) fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    pub(super) fn bytes_in(&self) -> u64 {
        self.bytes_in
    }

    pub(super) fn opened(&self) -> Instant {
        self.opened
    }
}

impl Core {
    /// The domain RTMP connection `conn` named: its tcUrl's host (none
    /// for a tcUrl that is not a URL).
    fn conn_domain(&self, conn: usize) -> String {
        let tc_url = self.conns.get(&conn).map_or("", |c| c.rtmp.tc_url());
        if tc_url.contains("://") {
            rts_common::config::host_of(tc_url)
        } else {
            String::new()
        }
    }

    /// The shell accepted RTMP connection `conn` (its own id) from `peer`.
    pub fn handle_rtmp_open(&mut self, now: Instant, conn: usize, peer: Option<SocketAddr>) {
        let now = self.advance(now);
        self.counters.rtmp_connections += 1;
        if !self.admit_conn(conn, peer) {
            return;
        }
        self.conns.insert(conn, Ingest { rtmp: RtmpServerConn::new(), publishing: None, peer, bytes_in: 0, opened: now });
        self.open_conn_meter(now, conn, peer);
        tracing::debug!(shard = self.id, conn, ?peer, "RTMP connection");
    }

    /// Bytes read from RTMP connection `conn`.
    pub fn handle_rtmp_data(&mut self, now: Instant, conn: usize, data: &[u8]) {
        let now = self.advance(now);
        self.meter_conn(conn, data.len() as u64, 0);
        let Some(c) = self.conns.get_mut(&conn) else { return };
        c.bytes_in += data.len() as u64;
        if let Err(e) = c.rtmp.handle_input(data) {
            self.counters.rtmp_errors += 1;
            tracing::info!(shard = self.id, conn, peer = ?c.peer, error = %e, "RTMP protocol error; closing");
            self.close_rtmp(conn, "protocol error");
            return;
        }
        self.pump_rtmp(conn, now);
    }

    /// Hands out what connection `conn`'s RTMP state machine has: bytes to
    /// send, events to act on (also after an answer decided outside the
    /// connection's input, e.g. a hook's verdict).
    pub(super) fn pump_rtmp(&mut self, conn: usize, now: Instant) {
        loop {
            let Some(c) = self.conns.get_mut(&conn) else { return };
            let Some(out) = c.rtmp.poll_output() else { break };
            match out {
                RtmpOutput::Transmit(data) => self.send_rtmp_bytes(conn, data),
                RtmpOutput::Event(ev) => self.on_rtmp_event(conn, ev, now),
            }
        }
        self.start_rtmp_player(conn);
    }

    /// The shell closed RTMP connection `conn` (peer closed, error, or not
    /// reading).
    pub fn handle_rtmp_closed(&mut self, now: Instant, conn: usize, reason: &str) {
        self.advance(now);
        self.end_publish(conn);
        self.forget_tcp_viewer(conn, reason);
        if let Some(c) = self.conns.remove(&conn) {
            tracing::debug!(shard = self.id, conn, peer = ?c.peer, reason, "RTMP connection closed");
        }
        self.handle_tcp_released(now, conn);
    }

    /// Closes a connection from our side (after what is queued for it).
    pub(super) fn close_rtmp(&mut self, conn: usize, reason: &str) {
        self.end_publish(conn);
        self.forget_tcp_viewer(conn, reason);
        if let Some(c) = self.conns.remove(&conn) {
            tracing::debug!(shard = self.id, conn, peer = ?c.peer, reason, "RTMP connection closed");
            self.tcp_out.push_back(TcpOutput::Close { conn });
        }
    }

    fn on_rtmp_event(&mut self, conn: usize, ev: RtmpEvent, now: Instant) {
        match ev {
            RtmpEvent::PublishRequested { request_id, app, stream, query } => {
                self.on_publish_request(conn, RtmpRequest { request_id, app, stream, query }, now, HookState::Ask)
            }
            RtmpEvent::Video { timestamp_ms, data } => {
                if let Some(id) = self.conns.get(&conn).and_then(|c| c.publishing) {
                    self.ingest_tag(id, true, timestamp_ms, data, now);
                }
            }
            RtmpEvent::Audio { timestamp_ms, data } => {
                if let Some(id) = self.conns.get(&conn).and_then(|c| c.publishing) {
                    self.ingest_tag(id, false, timestamp_ms, data, now);
                }
            }
            RtmpEvent::PublishFinished => self.end_publish(conn),
            RtmpEvent::PlayRequested { request_id, app, stream, query } => {
                self.on_play_request(conn, RtmpRequest { request_id, app, stream, query }, now, HookState::Ask)
            }
            RtmpEvent::PlayFinished => self.close_rtmp(conn, "play finished"),
            _ => {}
        }
    }

    /// An RTMP client asks to play: the stream's FLV tags from its GOP
    /// cache on (`flv_viewers.rs`), or a refusal and close.
    pub(super) fn on_play_request(&mut self, conn: usize, req: RtmpRequest, now: Instant, hook: HookState) {
        let (request_id, app, stream, query) = (req.request_id, req.app.as_str(), req.stream.as_str(), req.query.as_str());
        let domain = self.conn_domain(conn);
        let verdict = match (self.rtmp_play_stream(conn, &domain, app, stream, query, now), hook) {
            (Ok(id), HookState::Refused(r)) => {
                self.drop_stream_if_unused(id);
                Err(format!("hook: {r}"))
            }
            (Ok(id), HookState::Ask) => {
                let peer = self.conns.get(&conn).and_then(|c| c.peer);
                let server_app = self.cfg.stream_app(&domain, app).unwrap_or_else(|| app.to_string());
                let call = self.hook_call("on_play", conn, Protocol::Rtmp, peer, (&server_app, stream), query);
                let held = Held::RtmpPlay { conn, req: req.clone() };
                if self.hold_for_hook(now, held, call) {
                    return;
                }
                Ok(id)
            }
            (v, _) => v,
        };
        let verdict_id = verdict.clone();
        let Some(c) = self.conns.get_mut(&conn) else { return };
        let peer = c.peer;
        let accepted = match verdict {
            Ok(id) => c.rtmp.accept_play(request_id).map(|msid| (id, msid)).map_err(|e| e.to_string()),
            Err(reason) => {
                self.counters.rtmp_play_refused += 1;
                tracing::info!(shard = self.id, stream = %Stream::key_of(app, stream), ?peer, %reason, "RTMP play refused");
                let _ = c.rtmp.reject_play(request_id, &reason);
                while let Some(RtmpOutput::Transmit(data)) = c.rtmp.poll_output() {
                    self.tcp_out.push_back(TcpOutput::Send { conn, data });
                }
                self.close_rtmp(conn, "play refused");
                return;
            }
        };
        match accepted {
            Ok((id, msid)) => {
                let domain = self.conn_domain(conn);
                self.bill_conn(now, conn, &domain, app, stream, Protocol::Rtmp);
                self.add_rtmp_player(conn, peer, id, msid);
            }
            Err(e) => {
                tracing::warn!(shard = self.id, error = %e, "accept_play failed");
                self.close_rtmp(conn, "protocol error");
                // A replica made for this play goes again.
                if let Ok(id) = verdict_id {
                    self.drop_stream_if_unused(id);
                }
            }
        }
    }

    pub(super) fn on_publish_request(&mut self, conn: usize, req: RtmpRequest, now: Instant, hook: HookState) {
        let held_req = req.clone();
        let RtmpRequest { request_id, app: plain_app, stream, query } = req;
        let query = query.as_str();
        let auth_key = rts_common::auth::query_param(query, "auth_key");
        // The domain of the connection's tcUrl picks the keys (decision 004:
        // publish keys are checked here) and the stream (decision 021).
        let domain = self.conn_domain(conn);
        let verdict = match self.cfg.ingest_auth_for(&domain) {
            Some(auth) => auth.check(&plain_app, &stream, None, auth_key, self.unix_us(now) / 1_000_000).map_err(|f| f.to_string()),
            None => Err("unknown_domain".to_string()),
        };
        let app = self.cfg.stream_app(&domain, &plain_app).unwrap_or_else(|| plain_app.clone());
        let key = Stream::key_of(&app, &stream);
        let busy = self.published_here(&app, &stream);
        let mut refusal = match (verdict, busy) {
            _ if self.draining => Some("server draining".to_string()),
            (Err(f), _) => Some(format!("auth: {f}")),
            (Ok(()), true) => Some("stream already publishing".to_string()),
            (Ok(()), false) => None,
        };
        if refusal.is_none() {
            match hook {
                HookState::Refused(r) => refusal = Some(format!("hook: {r}")),
                HookState::Ask => {
                    let peer = self.conns.get(&conn).and_then(|c| c.peer);
                    let call = self.hook_call("on_publish", conn, Protocol::Publish, peer, (&app, &stream), query);
                    let held = Held::Publish { conn, req: held_req };
                    if self.hold_for_hook(now, held, call) {
                        return;
                    }
                }
                HookState::Allowed => {}
            }
        }
        let Some(c) = self.conns.get_mut(&conn) else { return };
        if let Some(reason) = refusal {
            self.counters.rtmp_publish_refused += 1;
            tracing::warn!(shard = self.id, stream = %key, peer = ?c.peer, %reason, "RTMP publish refused");
            let _ = c.rtmp.reject_publish(request_id, &reason);
            // Deliver the error status, then close.
            while let Some(RtmpOutput::Transmit(data)) = c.rtmp.poll_output() {
                self.tcp_out.push_back(TcpOutput::Send { conn, data });
            }
            self.push_ctl(ShardToControl::PublishRefused { app, stream, reason });
            self.close_rtmp(conn, "publish refused");
            return;
        }
        if let Err(e) = c.rtmp.accept_publish(request_id) {
            tracing::warn!(shard = self.id, error = %e, "accept_publish failed");
            self.close_rtmp(conn, "protocol error");
            return;
        }
        let peer = c.peer;
        self.bill_conn(now, conn, &domain, &plain_app, &stream, Protocol::Publish);
        let id = self.begin_publish(conn, &app, &stream);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.publishing = Some(id);
        }
        tracing::info!(shard = self.id, stream = %key, ?peer, "RTMP publish started");
    }

    /// Whether app/stream has a publisher (or a pull) on this shard.
    pub(super) fn published_here(&self, app: &str, stream: &str) -> bool {
        self.streams.lookup(&Stream::key_of(app, stream)).and_then(|id| self.streams.get(id)).is_some_and(|s| s.is_published())
    }

    /// Connection `conn` is the source of app/stream from now on (an RTMP
    /// publisher, or a pull from another node): the stream is made or
    /// taken over from the shard it was replicated from, announced to the
    /// other shards and to control.
    pub(super) fn begin_publish(&mut self, conn: usize, app: &str, stream: &str) -> StreamId {
        let key = Stream::key_of(app, stream);
        let max_packet = self.cfg.webrtc.max_rtp_packet;
        let id = self.streams.intern(app, stream, || Stream::new(app, stream, max_packet));
        self.start_hls(id);
        let Some(s) = self.streams.get_mut(id) else { return id };
        let old_home = s.home();
        s.on_publish_start(conn);
        s.set_transcoder_policy(self.cfg.transcode.keep_warm, Duration::from_secs(self.cfg.transcode.linger_s.into()));
        s.set_video_hold(self.cfg.webrtc.hold_video_for_audio);
        if let Some(old_home) = old_home {
            // It was a replica of another shard's stream: from now on the
            // packets come from here, a new sequence space for the viewers.
            self.rebase_viewers(id);
            self.relay(old_home, RelayMsg::Unsubscribe { key: key.clone(), from: self.id });
        }
        self.announce_home(&key, true);
        self.push_ctl(ShardToControl::StreamStarted { app: app.to_string(), stream: stream.to_string() });
        id
    }

    /// One audio or video tag from a stream's source: to FLV and RTMP
    /// viewers as it came, to the LL-HLS muxer, and packetized once for
    /// WebRTC (Opus from the transcoder for AAC).
    pub(super) fn ingest_tag(&mut self, id: StreamId, video: bool, timestamp_ms: u32, data: Bytes, now: Instant) {
        let tag_type = if video { TAG_VIDEO } else { TAG_AUDIO };
        self.deliver_flv(id, FlvTag::new(tag_type, timestamp_ms, data.clone()), now);
        self.feed_hls(now, id, video, timestamp_ms, &data);
        if video {
            // WebRTC's video may wait for its audio first (video_hold.rs).
            let prior = self.lag_prior_ms.unwrap_or(crate::video_hold::DEFAULT_LAG_MS);
            let Some(s) = self.streams.get_mut(id) else { return };
            if let Some((timestamp_ms, data)) = s.hold_video(timestamp_ms, data, now, prior) {
                self.on_video(id, timestamp_ms, &data, now);
            }
            return;
        }
        let Some(s) = self.streams.get_mut(id) else { return };
        match s.on_audio(timestamp_ms, &data, now) {
            AudioOutcome::ConfigChanged => s.update_transcoder(),
            AudioOutcome::Packet(p) => self.deliver_audio(id, p, now),
            AudioOutcome::Nothing => {}
        }
    }

    /// The publisher on `conn` stopped (or the connection went away).
    pub(super) fn end_publish(&mut self, conn: usize) {
        let Some(id) = self.conns.get_mut(&conn).and_then(|c| c.publishing.take()) else { return };
        if let Some(s) = self.streams.get(id) {
            let peer = self.conns.get(&conn).and_then(|c| c.peer);
            let call = self.hook_call("on_unpublish", conn, Protocol::Publish, peer, (s.app(), s.name()), "");
            self.notify_hook(call);
        }
        self.end_source(id, "RTMP publish ended");
    }

    /// Stream `id` lost its source (publisher gone, pull ended): replicas,
    /// FLV/RTMP viewers and control are told; WebRTC viewers stay and wait.
    pub(super) fn end_source(&mut self, id: StreamId, what: &'static str) {
        self.end_hls(self.now, id);
        if let Some(s) = self.streams.get_mut(id) {
            let l = s.latency();
            tracing::info!(shard = self.id, stream = %s.key(), frames = s.video_frames(), viewers = s.viewers().len(),
                latency_p50_us = l.p50_us, latency_p99_us = l.p99_us, latency_max_us = l.max_us, "{what}");
            let (app, stream) = (s.app().to_string(), s.name().to_string());
            let key = s.key();
            for (shard, replica) in s.on_publish_end() {
                self.relay(shard, RelayMsg::Ended { stream: replica });
            }
            self.end_flv_viewers(id);
            self.announce_home(&key, false);
            self.push_ctl(ShardToControl::StreamEnded { app, stream });
        }
        self.drop_stream_if_unused(id);
    }

    pub(super) fn on_video(&mut self, id: StreamId, timestamp_ms: u32, data: &Bytes, now: Instant) {
        let Some(stream) = self.streams.get_mut(id) else { return };
        self.packets.clear();
        let keyframe = match stream.on_video(timestamp_ms, data, now, &mut self.packets) {
            Ok(VideoOutcome::Packets { keyframe }) => keyframe,
            Ok(VideoOutcome::Nothing) => return,
            Err(e) => {
                tracing::debug!(shard = self.id, stream = %stream.key(), error = %e, "bad video tag dropped");
                return;
            }
        };
        let received = (!stream.viewers().is_empty()).then_some(now);
        let frame: Arc<[Bytes]> = Arc::from(self.packets.as_slice());
        self.packets.clear();
        self.deliver(id, Kind::Video, frame, keyframe, received, now);
    }

    /// Delivers a stream's new packets: to every replicating shard (the same
    /// shared packets, no copy), then to the local viewers.
    pub(super) fn deliver(&mut self, id: StreamId, kind: Kind, packets: Arc<[Bytes]>, keyframe: bool, received: Option<Instant>, now: Instant) {
        let Some(s) = self.streams.get_mut(id) else { return };
        let anchor = s.anchor();
        for &(shard, replica) in s.subscribers() {
            self.relay_out.push_back((shard, RelayMsg::Packets { stream: replica, kind, packets: packets.clone(), keyframe, anchor }));
        }
        // Kept for retransmission; also the stream's A/V lag sample (lipsync.rs).
        s.on_delivered(kind, &packets, keyframe, now);
        if kind == Kind::Audio {
            self.audio_tails_at(id, &packets, now);
        }
        let Some(s) = self.streams.get_mut(id) else { return };
        if s.viewers().is_empty() {
            return;
        }
        let red = (kind == Kind::Audio && s.has_red_viewers()).then(|| s.red_versions(&packets, now));
        if let Some(r) = &red {
            self.counters.red_packets += r.len() as u64;
        }
        let hint = s.av_hint(now);
        let start = s.next_start();
        let viewers = s.viewers_shared();
        if kind == Kind::Video && keyframe {
            if let Some(first) = packets.first().filter(|p| p.len() >= 12) {
                self.guard_keyframe(id, u16::from_be_bytes([first[2], first[3]]), now);
            }
        }
        let fanout = FanOut::new(id, kind, packets, red, hint, received, viewers, self.joins, start).with_keyframe(keyframe);
        self.work.push_back(Work::FanOut(fanout));
    }

    /// Audio tails at a delivery of stream `id`'s audio: viewers that
    /// switched here before its audio flowed take it from now on (their
    /// old stream's audio stops), and sessions that left it and still get
    /// its audio get these packets.
    fn audio_tails_at(&mut self, id: StreamId, packets: &Arc<[Bytes]>, now: Instant) {
        let Some(s) = self.streams.get_mut(id) else { return };
        for v in s.take_audio_waiters() {
            if self.sessions.get(v).is_some_and(|x| x.stream == Some(id)) {
                self.end_audio_tail(v, now, true);
            }
        }
        let Some(s) = self.streams.get(id) else { return };
        if let Some(tail) = s.audio_tail_shared() {
            let hint = s.av_hint(now);
            self.work.push_back(Work::FanOut(FanOut::audio_tail(id, packets.clone(), hint, tail)));
        }
    }

    /// Audio is 50 of a viewer's 80 sends per second. When paired, two
    /// consecutive (CBR, equal-size) Opus packets go to each viewer as one
    /// GSO sendmsg: half the audio sends for at most 20 ms more audio delay.
    pub(super) fn deliver_audio(&mut self, id: StreamId, packet: Bytes, now: Instant) {
        if !self.audio_paired() {
            self.deliver(id, Kind::Audio, Arc::from([packet]), false, None, now);
            return;
        }
        let Some(s) = self.streams.get_mut(id) else { return };
        if let Some(pair) = s.pair_audio(packet, now) {
            self.deliver(id, Kind::Audio, Arc::from(pair), false, None, now);
        }
    }

    /// Every local viewer of `id` gets its next packets from a new sequence
    /// space (another source of the same stream).
    pub(super) fn rebase_viewers(&mut self, id: StreamId) {
        let Some(s) = self.streams.get(id) else { return };
        for &v in s.viewers() {
            if let Some(m) = self.sessions.get_mut(v).and_then(|x| x.media.as_mut()) {
                m.video.rebase_next();
                m.audio.rebase_next();
            }
        }
    }
}
