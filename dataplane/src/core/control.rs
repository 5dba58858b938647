//! Messages from control: a session's life (add → start → switch / ICE
//! restart → remove) and the stream directory (where a stream is published).
//!
//! Control may repeat a message or deliver one the session no longer needs
//! (a restart replays, a race reorders): every handler checks the state it
//! changes and ignores what does not apply, so duplicates and stale
//! messages are harmless.

use super::repair::{Repair, Rtx};
use super::rtcp::{SR_FIRST_AFTER, SR_YOUNG_FOR};
use super::session::{Media, Session, TrackOut};
use super::stream::{Kind, Stream};
use super::Core;
use rts_common::config::split_stream_app;
use rts_common::ipc::{self, ControlToShard, Protocol, Request, SessionEntry, ShardToControl, UsageKey, SESSIONS_PER_MESSAGE};
use std::time::Instant;

impl Core {
    /// A request from control: applied, then acknowledged when it has an id.
    /// A `Snapshot` is answered with the session list before the ack.
    pub fn handle_request(&mut self, now: Instant, r: Request) {
        let snapshot = matches!(r.msg, ControlToShard::Snapshot);
        self.handle_control(now, r.msg);
        if snapshot {
            self.list_sessions(r.id);
        }
        if r.id != 0 {
            self.push_ctl(ShardToControl::Ack { id: r.id });
        }
    }

    /// Every session this shard holds, in `SessionList` chunks.
    fn list_sessions(&mut self, snapshot: u64) {
        let mut chunk = Vec::with_capacity(SESSIONS_PER_MESSAGE);
        for (_, s) in self.sessions.iter() {
            chunk.push(SessionEntry { session: s.id, media: s.media.is_some() });
            if chunk.len() == SESSIONS_PER_MESSAGE {
                let sessions = std::mem::replace(&mut chunk, Vec::with_capacity(SESSIONS_PER_MESSAGE));
                self.ctl_out.push_back(ShardToControl::SessionList { snapshot, sessions, last: false });
            }
        }
        self.ctl_out.push_back(ShardToControl::SessionList { snapshot, sessions: chunk, last: true });
    }

    pub fn handle_control(&mut self, now: Instant, msg: ControlToShard) {
        let now = self.advance(now);
        match msg {
            ControlToShard::AddSession { session, local_ufrag, local_pwd, remote_ufrag, app, stream, home_shard, domain } => {
                if self.by_id.contains_key(&session) || self.by_ufrag.contains_key(&local_ufrag) {
                    return;
                }
                // Billed under the app the viewer named (the server's app
                // name carries its domain, decision 021).
                let key = UsageKey::new(&domain, split_stream_app(&app).1, &stream, Protocol::Webrtc);
                self.usage.open(session, Some(key), None, self.unix_us(now));
                let idx = self.sessions.insert(Session {
                    id: session,
                    local_ufrag: local_ufrag.clone(),
                    local_pwd,
                    remote_ufrag,
                    video_ssrc: ipc::stream_ssrc(&app, &stream, 0),
                    audio_ssrc: ipc::stream_ssrc(&app, &stream, 1),
                    app,
                    stream_name: stream,
                    stream: None,
                    peer: None,
                    local_ip: None,
                    media: None,
                    home_hint: home_shard.map(|h| h as usize),
                    created: now,
                    joined: 0,
                    last_consent: now,
                    udp_in: 0,
                    udp_out: 0,
                });
                self.by_ufrag.insert(local_ufrag, idx);
                self.by_id.insert(session, idx);
            }
            ControlToShard::Pull { app, stream, domain, source, host, path } => {
                self.start_pull(now, super::pull::PullRequest { app, stream, domain, source, host, path })
            }
            ControlToShard::StopPull { app, stream } => self.stop_pull(&app, &stream),
            ControlToShard::ListClients { req } => self.list_clients(req),
            ControlToShard::HookVerdict { req, allow, reason } => self.handle_hook_verdict(now, req, allow, reason),
            ControlToShard::Cut { session } => self.cut_client(session),
            ControlToShard::CutPublisher { app, stream } => self.cut_publisher(app, stream),
            ControlToShard::Reload { generation, part, parts, auth, domains, billing_interval_s, hooks } => {
                self.handle_reload_part(now, super::reload::ReloadPart { generation, part, parts, auth, domains, billing_interval_s, hooks })
            }
            ControlToShard::DtlsToPeer { session, data } => {
                let Some(&idx) = self.by_id.get(&session) else { return };
                let s = &self.sessions[idx];
                if let Some(peer) = s.peer {
                    let n = self.out.send_with(peer, s.local_ip, data.len(), |out| {
                        out[..data.len()].copy_from_slice(&data);
                        Some(data.len())
                    });
                    self.sessions[idx].udp_out += n as u64;
                }
            }
            ControlToShard::StartMedia {
                session,
                srtp_profile,
                local_key,
                local_salt,
                remote_key,
                remote_salt,
                video_pt,
                audio_pt,
                video_playout_delay_id,
                video_rtx,
                video_nack,
                audio_red_pt,
            } => {
                let Some(&idx) = self.by_id.get(&session) else { return };
                if self.sessions[idx].media.is_some() {
                    return; // a repeat: keys and sequence state stay
                }
                let Some(profile) = rts_srtp::Profile::from_dtls_id(srtp_profile) else {
                    self.remove_session(session, "unsupported SRTP profile");
                    return;
                };
                let tx = rts_srtp::SrtpContext::new(profile, &local_key, &local_salt);
                let rx = rts_srtp::SrtpContext::new(profile, &remote_key, &remote_salt);
                let (Ok(tx), Ok(rx)) = (tx, rx) else {
                    self.remove_session(session, "bad SRTP keys");
                    return;
                };
                let repair_on = self.cfg.webrtc.nack && video_nack;
                // RTX numbering starts at a value of the session's own (RFC 4588 §4: random).
                let rtx = video_rtx.map(|(pt, ssrc)| Rtx { pt, ssrc, seq: (session >> 16) as u16 });
                let red_pt = audio_red_pt.filter(|_| self.cfg.webrtc.red);
                let sess = &mut self.sessions[idx];
                sess.media = Some(Media {
                    tx,
                    rx,
                    profile,
                    video: TrackOut::new(video_pt, sess.video_ssrc, Kind::Video).with_playout_delay(video_playout_delay_id),
                    audio: TrackOut::new(audio_pt, sess.audio_ssrc, Kind::Audio).with_red(red_pt),
                    pending: Default::default(),
                    bytes_out: 0,
                    packets_out: 0,
                    started_at: now,
                    awaiting_first_video: true,
                    next_sr: now + SR_FIRST_AFTER,
                    sr_young_until: now + SR_YOUNG_FOR,
                    repair: Repair::new(repair_on, rtx),
                    audio_tail: None,
                });
                let (app, name, hint) = (sess.app.clone(), sess.stream_name.clone(), sess.home_hint);
                self.attach_viewer(idx, &app, &name, hint);
                tracing::info!(shard = self.id, session = format_args!("{session:016x}"), stream = %Stream::key_of(&app, &name), profile = ?profile, "viewer playing");
            }
            ControlToShard::SwitchStream { session, app, stream, home_shard } => {
                let result = self.switch(now, session, &app, &stream, home_shard.map(|h| h as usize));
                let (ok, reason) = match result {
                    Ok(()) => (true, String::new()),
                    Err(e) => (false, e.to_string()),
                };
                self.push_ctl(ShardToControl::SwitchDone { session, app, stream, ok, reason });
            }
            ControlToShard::RemoveSession { session, reason } => self.remove_session(session, &reason),
            ControlToShard::StreamHome { app, stream, shard } => {
                let Some(id) = self.streams.lookup(&Stream::key_of(&app, &stream)) else { return };
                let watched = |s: &Stream| !s.viewers().is_empty() || !s.flv_viewers.is_empty();
                let waiting = self.streams.get(id).is_some_and(|s| !s.is_published() && watched(s));
                if waiting && shard as usize != self.id {
                    self.subscribe(id, shard as usize);
                }
            }
            ControlToShard::UsageWritten { boot, seqs } => self.usage.written(boot, &seqs),
            ControlToShard::Snapshot => {
                // A (re)started control: the records it may not have.
                self.usage.resend_all();
                let live: Vec<(String, String)> =
                    self.streams.iter().filter(|(_, s)| s.is_published()).map(|(_, s)| (s.app().to_string(), s.name().to_string())).collect();
                for (app, stream) in live {
                    self.push_ctl(ShardToControl::StreamStarted { app, stream });
                }
                self.report_stats();
            }
            ControlToShard::IceRestart { session, local_ufrag, local_pwd, remote_ufrag } => {
                let ok = self.restart_ice(session, &local_ufrag, local_pwd, remote_ufrag);
                self.push_ctl(ShardToControl::IceRestarted { session, local_ufrag, ok });
            }
        }
    }

    /// New ICE credentials for a session (ICE restart): checks are matched
    /// against the new ufrag and password only. The selected address stays,
    /// so media keeps flowing to it until a check with the new credentials
    /// nominates another (RFC 8445 §9: the old pair is used until then);
    /// DTLS and SRTP are untouched. False when the session is unknown or the
    /// ufrag is another session's; a repeat of the applied restart is true.
    fn restart_ice(&mut self, session: u64, local_ufrag: &str, local_pwd: String, remote_ufrag: String) -> bool {
        let Some(&idx) = self.by_id.get(&session) else { return false };
        match self.by_ufrag.get(local_ufrag) {
            Some(&other) if other != idx => return false,
            Some(_) => {}
            None => {
                let sess = &mut self.sessions[idx];
                let old = std::mem::replace(&mut sess.local_ufrag, local_ufrag.to_string());
                self.by_ufrag.remove(&old);
                self.by_ufrag.insert(local_ufrag.to_string(), idx);
            }
        }
        let sess = &mut self.sessions[idx];
        sess.local_pwd = local_pwd;
        sess.remote_ufrag = remote_ufrag;
        tracing::info!(shard = self.id, session = format_args!("{session:016x}"), "ICE restart");
        true
    }

    /// Moves a playing session to another stream (channel switch): same
    /// ICE/DTLS/SRTP, continuous sequence numbers and timestamps, starting
    /// from the new stream's GOP cache.
    fn switch(&mut self, now: Instant, session: u64, app: &str, name: &str, home: Option<usize>) -> Result<(), &'static str> {
        let Some(&idx) = self.by_id.get(&session) else { return Err("no such session on this shard") };
        if self.sessions[idx].media.is_none() {
            return Err("session is not playing yet");
        }
        let key = Stream::key_of(app, name);
        let live_here = self.streams.lookup(&key).and_then(|id| self.streams.get(id)).is_some_and(|s| s.is_live());
        if !live_here && home.is_none_or(|h| h == self.id || h >= self.shards) {
            return Err("stream is not live");
        }
        let sess = &mut self.sessions[idx];
        let old = sess.stream.take();
        // The viewer's audio still comes from the stream it left before
        // (an audio tail), or from the one it leaves now.
        let tail_from = sess.media.as_ref().and_then(|m| m.audio_tail).map(|(t, _)| t);
        let audio_from = tail_from.or(old);
        let send_at = |s: &Stream| (s.send_rtp_at(Kind::Video, now), s.send_rtp_at(Kind::Audio, now));
        let old_clock = (
            old.and_then(|id| self.streams.get(id)).and_then(|s| s.send_rtp_at(Kind::Video, now)),
            audio_from.and_then(|id| self.streams.get(id)).and_then(|s| s.send_rtp_at(Kind::Audio, now)),
        );
        // A new stream whose audio does not flow yet (its transcoder
        // starting, a replica not fed yet): the viewer's audio goes on from
        // the old stream until the new one's first audio packet, instead
        // of a gap the receiver conceals (issue 18).
        let tail = audio_from.and_then(|id| self.streams.get(id)).is_some_and(|s| s.audio_flowing(now))
            && !self.streams.lookup(&key).and_then(|id| self.streams.get(id)).is_some_and(|s| s.audio_flowing(now));
        let old_ms = old.and_then(|id| self.streams.get(id)).and_then(|s| s.stream_ms_at(now));
        let from = Stream::key_of(&sess.app, &sess.stream_name);
        // The bytes so far go to the stream left.
        let (total_in, total_out) = sess.traffic();
        let domain = self.usage.domain(session);
        self.usage.set_totals(session, total_in, total_out);
        self.usage.set_key(session, UsageKey::new(&domain, split_stream_app(app).1, name, Protocol::Webrtc), self.unix_us(now));
        let sess = &mut self.sessions[idx];
        sess.app = app.to_string();
        sess.stream_name = name.to_string();
        if let Some(m) = sess.media.as_mut() {
            m.video.rebase_next();
            m.pending.clear();
        }
        let red = sess.media.as_ref().is_some_and(|m| m.audio.red_pt.is_some());
        if let Some(old) = old {
            if let Some(s) = self.streams.get_mut(old) {
                s.remove_viewer(idx, red);
                // Waiting for the stream left is over; a tail goes on from
                // where the audio comes.
                s.remove_audio_waiter(idx);
            }
        }
        match (tail, tail_from) {
            (true, Some(_)) => {}
            (true, None) => {
                if let Some(s) = old.and_then(|id| self.streams.get_mut(id)) {
                    s.add_audio_tail(idx);
                }
                self.audio_tails.push(idx);
            }
            (false, Some(_)) => {
                // Back to audio that flows: the tail ends here, re-based
                // below like a switch.
                self.end_audio_tail(idx, now, false);
            }
            (false, None) => {}
        }
        if let Some(old) = old {
            self.drop_stream_if_unused(old);
        }
        self.attach_viewer(idx, app, name, home);
        if let (true, Some(from)) = (tail, audio_from) {
            let new = self.sessions[idx].stream;
            if let Some(s) = new.and_then(|id| self.streams.get_mut(id)) {
                s.add_audio_waiter(idx);
            }
            if let Some(m) = self.sessions[idx].media.as_mut() {
                m.audio_tail = Some((from, now + super::AUDIO_TAIL_MAX));
            }
        }
        // Both tracks go on at the wall clock's pace (see
        // `TrackOut::rebase_with`), video's replay squeezed before its live
        // edge (`Squeeze`).
        let new_stream = self.sessions[idx].stream.and_then(|id| self.streams.get(id));
        let (new_clock, new_ms) = (new_stream.map_or((None, None), send_at), new_stream.and_then(|s| s.stream_ms_at(now)));
        let mut skew = None;
        if let Some(m) = self.sessions[idx].media.as_mut() {
            // Logged, for issue 18's open A/V step: how far the receiver's
            // A/V relation may move at the new stream's first sender report.
            if let ((Some(ov), Some(oa)), (Some(nv), Some(na)), Some(om), Some(nm)) = (old_clock, new_clock, old_ms, new_ms) {
                skew = Some(crate::send_clock::switch_skew_ms((ov, oa), (nv, na), om, nm).round() as i64);
            }
            if !tail {
                m.audio.rebase_next();
                m.audio.rebase_with(now, old_clock.1, new_clock.1);
            }
            m.video.rebase_with(now, old_clock.0, new_clock.0);
            // The new stream's mapping in sender reports at once and then
            // at the young interval, as after a start.
            m.next_sr = now + SR_FIRST_AFTER;
            m.sr_young_until = now + SR_YOUNG_FOR;
        }
        tracing::info!(shard = self.id, session = format_args!("{session:016x}"), %from, to = %key, skew_ms = ?skew, "channel switch");
        Ok(())
    }

    /// Adds a playing session to a stream (replicating it from `home_hint`
    /// if it is published on another shard) and queues the stream's GOP
    /// cache for it: an instant first frame, paced by the catch-up steps.
    fn attach_viewer(&mut self, idx: usize, app: &str, name: &str, home_hint: Option<usize>) {
        let max_packet = self.cfg.webrtc.max_rtp_packet;
        let id = self.streams.intern(app, name, || Stream::new(app, name, max_packet));
        let sess = &mut self.sessions[idx];
        sess.stream = Some(id);
        sess.joined = self.joins;
        self.joins += 1;
        let red = sess.media.as_ref().is_some_and(|m| m.audio.red_pt.is_some());
        let Some(stream) = self.streams.get_mut(id) else { return };
        stream.add_viewer(idx, red);
        if let Some(h) = home_hint {
            if !stream.is_live() && h != self.id && h < self.shards {
                self.subscribe(id, h);
            }
        }
        if self.cfg.webrtc.gop_cache {
            self.queue_gop(idx);
        }
    }

    /// Queues the GOP cache of the session's stream for it, unless it has
    /// started on live video already.
    pub(super) fn queue_gop(&mut self, idx: usize) {
        let Some(sess) = self.sessions.get_mut(idx) else { return };
        let Some(stream) = sess.stream.and_then(|id| self.streams.get(id)) else { return };
        let Some(m) = sess.media.as_mut() else { return };
        if !m.pending.is_empty() {
            return;
        }
        m.queue_replay(stream.gop_cache());
        self.start_catchup(idx);
    }

    pub(super) fn remove_session(&mut self, session: u64, reason: &str) {
        let Some(idx) = self.by_id.remove(&session) else { return };
        self.end_audio_tail(idx, self.now, false);
        let s = self.sessions.remove(idx);
        let (total_in, total_out) = s.traffic();
        self.usage.set_totals(session, total_in, total_out);
        self.usage.close(session, self.unix_us(self.now));
        self.by_ufrag.remove(&s.local_ufrag);
        if let Some(peer) = s.peer {
            self.by_addr.remove(&peer);
        }
        // Blanked, not removed: a catch-up step or resend round may be
        // half-way through these lists (the shell handles input between
        // batches), and removing would shift the viewers after it.
        for v in self.catchup.iter_mut().filter(|v| **v == idx) {
            *v = usize::MAX;
        }
        self.resend.forget(idx);
        if let Some(id) = s.stream {
            let red = s.media.as_ref().is_some_and(|m| m.audio.red_pt.is_some());
            if let Some(stream) = self.streams.get_mut(id) {
                stream.remove_viewer(idx, red);
            }
            self.drop_stream_if_unused(id);
        }
        tracing::info!(shard = self.id, session = format_args!("{session:016x}"), reason, "session removed");
        self.push_ctl(ShardToControl::SessionClosed { session, reason: reason.to_string() });
    }
}
