//! Everything the core does because time passed: GOP catch-up steps, the
//! transcoders' output and the audio pacer, consent and handshake expiry,
//! sender reports, load, stats.

use super::stream::Kind;
use super::streams::StreamId;
use super::transmit::{Work, CATCHUP_STEP};
use super::{Core, HOUSEKEEPING, LOG_EVERY, STATS_EVERY};
use crate::transcode::Transcoded;
use rts_common::ipc::{ShardStats, ShardToControl, ViewerStats, VIEWER_STATS_PER_MESSAGE};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A session that never completes ICE+DTLS is dropped after this.
pub(super) const PENDING_TIMEOUT: Duration = Duration::from_secs(30);
/// Transcoder workers are polled this often while they run.
const TRANSCODER_POLL: Duration = Duration::from_millis(1);
/// The Opus loss hint (percent): none without FEC, the configured one, or
/// the worst viewer's reported fraction lost (1/256) capped.
fn loss_hint(fec: bool, fixed_pct: u8, worst_fraction: u8) -> u8 {
    match (fec, fixed_pct) {
        (false, _) => 0,
        (true, 0) => ((u32::from(worst_fraction) * 100 / 256) as u8).min(MAX_LOSS_HINT_PCT),
        (true, pct) => pct,
    }
}

/// Highest automatic Opus loss hint, percent.
const MAX_LOSS_HINT_PCT: u8 = 30;
/// Relay messages handed back by a full queue are retried this often.
const RELAY_RETRY: Duration = Duration::from_millis(1);

impl Core {
    /// When [`Core::handle_timeout`] is due next.
    pub fn poll_timeout(&self) -> Instant {
        let mut t = self.next_housekeeping;
        if !self.catchup.is_empty() {
            t = t.min(self.last_catchup + CATCHUP_STEP);
        }
        if !self.relay_retry.is_empty() {
            t = t.min(self.now + RELAY_RETRY);
        }
        if let Some(at) = self.resend.next_release() {
            t = t.min(at);
        }
        for (_, s) in self.streams.iter() {
            if s.has_transcoder() {
                t = t.min(self.now + TRANSCODER_POLL);
            }
            if let Some(due) = s.audio_due() {
                t = t.min(due);
            }
            if let Some(due) = s.video_due() {
                t = t.min(due);
            }
        }
        t
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.advance(now);
        while let Some(m) = self.relay_retry.pop_front() {
            self.relay_out.push_back(m);
        }
        // One step queued at a time: while one is still going out (the
        // shell sends in slices) the budget accrues for the next, so the
        // pace holds and steps do not pile up in the work queue.
        if !self.catchup.is_empty() && now >= self.last_catchup + CATCHUP_STEP && !self.work_queued(|w| matches!(w, Work::Catchup { .. })) {
            self.queue_catchup(now);
        }
        self.poll_transcoders(now);
        self.release_held_resends(now);
        if now >= self.next_housekeeping {
            self.housekeeping(now);
        }
    }

    /// Fans out the publishers' video whose hold for its audio ended
    /// (video_hold.rs), what the transcoder workers produced (Opus audio,
    /// re-encoded video) and audio that is due (paired or paced).
    fn poll_transcoders(&mut self, now: Instant) {
        let pace_audio = self.cfg.webrtc.pace_audio;
        let mut ids = std::mem::take(&mut self.ids);
        ids.clear();
        ids.extend(self.streams.ids());
        for &id in &ids {
            while let Some((timestamp_ms, data)) = self.streams.get_mut(id).and_then(|s| s.pop_held_video(now)) {
                self.on_video(id, timestamp_ms, &data, now);
            }
            if let Some(p) = self.streams.get_mut(id).and_then(|s| s.flush_audio_hold(now)) {
                self.deliver(id, Kind::Audio, Arc::from([p]), false, None, now);
            }
            while let Some(t) = self.streams.get_mut(id).and_then(|s| s.poll_transcoder(now)) {
                let Some(s) = self.streams.get_mut(id) else { break };
                match t {
                    Transcoded::Opus { data, rtp_ts, .. } => {
                        let p = s.on_opus(&data, rtp_ts);
                        if pace_audio {
                            s.pace_audio(p, rtp_ts, now);
                        } else {
                            self.deliver_audio(id, p, now);
                        }
                    }
                    Transcoded::CaughtUp { frames, took } => {
                        tracing::info!(stream = %s.key(), frames, took_ms = took.as_millis() as u64, "re-encoder caught up on the source GOP");
                        // The viewers start once the output comes at the
                        // live pace, not here (`Stream::end_reencode_catchup`).
                        s.note_reencode_caught_up(now);
                    }
                    Transcoded::Video { nalus, pts_ms, keyframe, added_us } => {
                        let live = added_us.is_some();
                        let catching_up = s.reencode_catching_up();
                        self.packets.clear();
                        s.on_reencoded(&nalus, pts_ms, keyframe, live, now, &mut self.packets);
                        if catching_up {
                            // Cached first, so the replay the waiting viewers
                            // start from ends with this frame.
                            if s.end_reencode_catchup(pts_ms, now) {
                                self.start_from_cache(id);
                            }
                        } else if !self.packets.is_empty() {
                            let frame = Arc::from(self.packets.as_slice());
                            self.packets.clear();
                            self.deliver(id, Kind::Video, frame, keyframe, None, now);
                        }
                    }
                }
            }
            if self.streams.get_mut(id).is_some_and(|s| s.reencode_live_overdue(now)) {
                self.start_from_cache(id);
            }
            while let Some(p) = self.streams.get_mut(id).and_then(|s| s.pop_paced_audio(now)) {
                self.deliver_audio(id, p, now);
            }
        }
        self.ids = ids;
    }

    /// A re-encoder caught up on the source GOP: the viewers
    /// waiting for stream `id` (nothing of it yet, no replay queued) start
    /// from the cache it built, and the shards replicating it get that cache
    /// as a new snapshot (their viewers wait the same way).
    fn start_from_cache(&mut self, id: StreamId) {
        let Some(s) = self.streams.get(id) else { return };
        let (viewers, subscribers) = (s.viewers_shared(), s.subscribers().to_vec());
        let snapshots: Vec<_> = subscribers.into_iter().map(|(shard, replica)| (shard, s.snapshot(replica))).collect();
        for (shard, snapshot) in snapshots {
            self.relay(shard, snapshot);
        }
        for &v in viewers.iter() {
            let waiting = self.sessions.get(v).and_then(|x| x.media.as_ref()).is_some_and(|m| m.video.awaiting_source() && m.pending.is_empty());
            if waiting {
                self.queue_gop(v);
            }
        }
    }

    fn housekeeping(&mut self, now: Instant) {
        self.next_housekeeping = now + HOUSEKEEPING;
        if !self.pulls.is_empty() {
            self.check_pulls(now);
        }
        if !self.cluster_waits.is_empty() {
            self.check_cluster_waits(now);
        }
        if self.has_hook_waits() {
            self.check_hook_waits(now);
        }
        if !self.audio_tails.is_empty() {
            self.expire_audio_tails(now);
        }
        if now >= self.next_slow_check {
            self.next_slow_check = now + Duration::from_secs(1);
            self.close_slow_clients(now);
        }
        let was = self.load.pair_audio();
        self.load.tick(now);
        if self.load.pair_audio() != was {
            tracing::info!(shard = self.id, busy = self.load.busy(), paired = self.load.pair_audio(), "audio pairing switched by load");
        }
        let consent = Duration::from_secs(self.cfg.webrtc.consent_timeout_s);
        let expired: Vec<(u64, &'static str)> = self
            .sessions
            .iter()
            .filter_map(|(_, s)| {
                if s.media.is_none() && now.saturating_duration_since(s.created) > PENDING_TIMEOUT {
                    Some((s.id, "ICE/DTLS did not complete"))
                } else if now.saturating_duration_since(s.last_consent) > consent {
                    Some((s.id, "consent expired"))
                } else {
                    None
                }
            })
            .collect();
        for (id, why) in expired {
            self.remove_session(id, why);
        }
        for (_, s) in self.sessions.iter_mut() {
            if let Some(m) = s.media.as_mut() {
                m.repair.on_tick(now);
            }
        }
        self.queue_sender_reports(now);
        for (_, s) in self.streams.iter_mut() {
            s.stop_idle_transcoder(now);
        }
        self.drop_lingered_replicas(now);
        self.hls_tick(now);
        self.usage_tick(now);
        if now >= self.next_stats {
            self.next_stats = now + STATS_EVERY;
            self.report_stats();
            self.report_usage_totals(now);
            self.update_loss_hints();
            self.update_lag_prior();
        }
        if now >= self.next_log {
            self.next_log = now + LOG_EVERY;
            for (_, s) in self.streams.iter().filter(|(_, s)| !s.viewers().is_empty()) {
                s.log_stats(self.id);
            }
        }
    }

    /// Tells each transcoded stream's Opus encoder the loss to protect
    /// against: the configured percentage, or the highest fraction lost its
    /// viewers here report (capped at [`MAX_LOSS_HINT_PCT`]).
    fn update_loss_hints(&mut self) {
        let t = &self.cfg.transcode;
        let (fixed, fec) = (t.opus_loss_hint_pct, t.opus_fec);
        let mut ids = std::mem::take(&mut self.ids);
        ids.clear();
        ids.extend(self.streams.iter().filter(|(_, s)| s.has_transcoder()).map(|(id, _)| id));
        for &id in &ids {
            let Some(s) = self.streams.get(id) else { continue };
            let worst = s
                .viewers()
                .iter()
                .filter_map(|&v| self.sessions.get(v)?.media.as_ref())
                .map(|m| m.repair.fraction_lost)
                .max()
                .unwrap_or(0);
            if let Some(s) = self.streams.get_mut(id) {
                s.set_audio_loss_hint(loss_hint(fec, fixed, worst));
            }
        }
        self.ids = ids;
    }

    /// The mean A/V lag of the streams published here that measured one
    /// (see `Core::lag_prior_ms`); kept when none has. A replica's lag is
    /// what its home's hold left (about 0), and a stream whose publisher
    /// left keeps its last lag: neither counts.
    fn update_lag_prior(&mut self) {
        let lags = self.streams.iter().filter(|(_, s)| s.is_published()).filter_map(|(_, s)| s.av_lag_ms());
        let (n, sum) = lags.fold((0u32, 0.0), |(n, sum), l| (n + 1, sum + l));
        if n > 0 {
            self.lag_prior_ms = Some(sum / f64::from(n));
        }
    }

    /// Stats for control: the shard's counters (the shell fills in its own:
    /// sockets, sends, rings) and one message per stream.
    pub(super) fn report_stats(&mut self) {
        let viewers = self.viewers() as u64;
        let c = &mut self.counters;
        c.sessions = self.sessions.len() as u64;
        c.viewers = viewers;
        c.streams = self.streams.len() as u64;
        c.transmit_overflow = self.out.overflowed;
        let stats = ShardStats {
            shard: self.id as u32,
            core: None,
            pinned: false,
            udp_port: 0,
            gso: false,
            uring_fixed_files: false,
            udp_multishot: false,
            udp_read_at_turns: false,
            busy_permille: (self.load.busy() * 1000.0).round() as u32,
            audio_paired: self.audio_paired(),
            draining: self.draining,
            clients: self.clients() as u64,
            counters: self.counters,
        };
        self.push_ctl(ShardToControl::Stats(Box::new(stats)));
        let shard = self.id as u32;
        let all: Vec<_> = self.streams.iter().map(|(_, s)| s.stats(shard)).collect();
        for s in all {
            self.push_ctl(ShardToControl::StreamStats(Box::new(s)));
        }
        let mut batch = Vec::with_capacity(VIEWER_STATS_PER_MESSAGE);
        for (_, sess) in self.sessions.iter() {
            let Some(m) = sess.media.as_ref() else { continue };
            let r = &m.repair;
            batch.push(ViewerStats {
                session: sess.id,
                rtt_ms: r.rtt.map(|d| d.as_millis().min(u32::MAX as u128) as u32),
                fraction_lost: r.fraction_lost,
                cumulative_lost: r.cumulative_lost,
                packets_out: m.packets_out,
                bytes_out: m.bytes_out,
                nacked: r.stats.nacked,
                resent: r.stats.resent,
                resent_bytes: r.stats.resent_bytes,
                suppressed_rtt: r.stats.suppressed_rtt,
                over_max_resends: r.stats.over_max_resends,
                over_budget: r.stats.over_budget,
                not_in_history: r.stats.not_in_history + r.stats.unrepairable,
                stale: r.stats.stale,
                keyframe_guard: r.stats.keyframe_guard,
                doubled_resends: r.stats.doubled_resends,
                plis: r.stats.plis,
                gop_restarts: r.stats.gop_restarts,
            });
            if batch.len() == VIEWER_STATS_PER_MESSAGE {
                self.ctl_out.push_back(ShardToControl::ViewerStats(std::mem::replace(&mut batch, Vec::with_capacity(VIEWER_STATS_PER_MESSAGE))));
            }
        }
        if !batch.is_empty() {
            self.push_ctl(ShardToControl::ViewerStats(batch));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opus_loss_hint_follows_the_worst_viewer_unless_fixed() {
        assert_eq!(loss_hint(true, 0, 0), 0);
        assert_eq!(loss_hint(true, 0, 26), 10, "26/256 is 10 %");
        assert_eq!(loss_hint(true, 0, 200), MAX_LOSS_HINT_PCT, "capped");
        assert_eq!(loss_hint(true, 7, 200), 7, "configured");
        assert_eq!(loss_hint(false, 7, 200), 0, "FEC off");
    }
}
