//! RTCP: viewers' feedback in (SRTCP): NACKs answered from the stream's
//! history (repair.rs), receiver reports (RTT, loss), PLI/FIR (a GOP
//! restart, or a keyframe from the re-encoder); and the sender reports out
//! that let a receiver map both tracks' RTP time to one clock (lip sync).

use super::repair::{Refusal, Resend, ISOLATED_MAX};
use super::stream::Kind;
use super::transmit::Work;
use super::Core;
use rts_rtp::rtcp::{ReportBlock, RtcpPacket};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Sender reports right after a viewer joins or switches come this often,
/// so its lip sync starts within the first second (after a switch: learns
/// the new stream's mapping; the receiver fits the last 20 reports)...
const SR_YOUNG_INTERVAL: Duration = Duration::from_millis(200);
/// ...for this long; then the usual interval.
pub(super) const SR_YOUNG_FOR: Duration = Duration::from_secs(2);
const SR_INTERVAL: Duration = Duration::from_secs(1);
/// The first report after media starts.
pub(super) const SR_FIRST_AFTER: Duration = Duration::from_millis(100);

impl Core {
    pub(super) fn on_rtcp(&mut self, now: Instant, src: SocketAddr, data: &mut [u8]) {
        let Some(&idx) = self.by_addr.get(&src) else {
            self.counters.unknown_dropped += 1;
            return;
        };
        self.sessions[idx].udp_in += data.len() as u64;
        let Some(media) = self.sessions[idx].media.as_mut() else {
            self.counters.unknown_dropped += 1;
            return;
        };
        let Ok(n) = media.rx.unprotect_rtcp(data) else {
            self.counters.srtcp_failed += 1;
            return;
        };
        self.counters.rtcp_in += 1;
        // NACKs (about one datagram per lost packet) are read in place into
        // a reused list; the rest is decoded into a reused one. A malformed
        // packet ends the compound (what came before it stands).
        let mut lost = std::mem::take(&mut self.nack_scratch);
        let mut decoded = std::mem::take(&mut self.rtcp_scratch);
        for raw in rts_rtp::rtcp::iter_compound(&data[..n]) {
            let Ok(raw) = raw else { break };
            if let Some((media_ssrc, numbers)) = raw.generic_nack() {
                lost.clear();
                lost.extend(numbers);
                self.counters.nacks_in += 1;
                self.on_nack(now, idx, media_ssrc, &lost);
                continue;
            }
            decoded.clear();
            if raw.decode_into(&mut decoded).is_err() {
                break;
            }
            for p in decoded.drain(..) {
                match p {
                    RtcpPacket::Pli { .. } | RtcpPacket::Fir { .. } => {
                        self.counters.plis_in += 1;
                        self.on_keyframe_request(now, idx);
                    }
                    RtcpPacket::ReceiverReport { reports, .. } | RtcpPacket::SenderReport { reports, .. } => self.on_reports(now, idx, &reports),
                    _ => {}
                }
            }
        }
        self.nack_scratch = lost;
        self.rtcp_scratch = decoded;
    }

    /// A viewer reports `lost` (its sequence numbers) on `media_ssrc`:
    /// each packet still in the stream's history and admitted by the
    /// viewer's rules is queued for retransmission.
    fn on_nack(&mut self, now: Instant, idx: usize, media_ssrc: u32, lost: &[u16]) {
        let Some(sess) = self.sessions.get_mut(idx) else { return };
        let Some(m) = sess.media.as_mut() else { return };
        let kind = if media_ssrc == m.video.ssrc {
            Kind::Video
        } else if media_ssrc == m.audio.ssrc {
            Kind::Audio
        } else {
            return;
        };
        m.repair.stats.nacked += lost.len() as u64;
        self.counters.nacked += lost.len() as u64;
        if !m.repair.enabled {
            return;
        }
        m.repair.on_loss(now, None);
        let Some(stream) = sess.stream.and_then(|id| self.streams.get(id)) else { return };
        let (burst, reserve) = (stream.repair_burst(), stream.repair_reserve());
        let rtx = kind == Kind::Video && m.repair.rtx.is_some();
        // Without RTX the packet must repeat byte for byte (the SRTP index
        // repeats): video with the playout-delay value it carried then (if
        // still known), audio only when it did not go out as RED.
        let plain_ok = |m: &super::session::Media, seq: u16| match kind {
            Kind::Video => m.video.can_repeat(seq),
            Kind::Audio => m.audio.red_pt.is_none(),
        };
        let isolated = self.cfg.webrtc.double_first_resend && lost.len() <= ISOLATED_MAX;
        let doubled_before = m.repair.stats.doubled_resends;
        let mut queued = false;
        let mut exhausted = false;
        for &seq in lost {
            let Some(source) = m.track(kind).source_seq(seq) else {
                m.repair.stats.stale += 1;
                continue;
            };
            if !rtx && !plain_ok(m, seq) {
                m.repair.stats.unrepairable += 1;
                continue;
            }
            let Some(packet) = stream.history_packet(kind, source, now) else {
                m.repair.stats.not_in_history += 1;
                continue;
            };
            let admitted = if isolated {
                m.repair.admit_isolated(source, packet.len(), now, burst, reserve)
            } else {
                m.repair.admit(source, packet.len(), now, burst)
            };
            match admitted {
                Ok(copies) => {
                    for _ in 0..copies {
                        m.repair.queue.push_back(Resend { kind, seq, packet: packet.clone(), guard: false });
                    }
                    queued = true;
                }
                Err(r) => {
                    self.counters.resend_refused += 1;
                    m.repair.refused(r);
                    exhausted |= r == Refusal::MaxResends && kind == Kind::Video;
                    if r == Refusal::Budget {
                        tracing::debug!(shard = self.id, session = format_args!("{:016x}", sess.id), burst, "retransmission budget exhausted");
                    }
                }
            }
        }
        self.counters.doubled_resends += m.repair.stats.doubled_resends - doubled_before;
        if queued {
            self.resend.queue(&mut self.work, m, idx, now);
        }
        if exhausted {
            // Resends did not get through: a fresh keyframe now beats
            // waiting for the publisher's next one.
            self.restart_from_gop(now, idx);
        }
    }

    /// A PLI or FIR: a viewer's decoder needs a keyframe. A re-encoded
    /// stream's encoder makes one; RTMP cannot be asked, so a passthrough
    /// viewer restarts from the GOP cache (like a switch to the same
    /// stream), at most once per `GOP_RESTART_EVERY`.
    fn on_keyframe_request(&mut self, now: Instant, idx: usize) {
        if let Some(m) = self.sessions.get_mut(idx).and_then(|s| s.media.as_mut()) {
            m.repair.stats.plis += 1;
        }
        self.restart_from_gop(now, idx);
    }

    /// Gets a keyframe to viewer `idx`: from the re-encoder, or by
    /// replaying the GOP cache (rate-limited). Nothing while a replay is
    /// in progress or repair is off.
    fn restart_from_gop(&mut self, now: Instant, idx: usize) {
        let Some(sess) = self.sessions.get_mut(idx) else { return };
        let Some(id) = sess.stream else { return };
        let Some(m) = sess.media.as_mut() else { return };
        let Some(stream) = self.streams.get_mut(id) else { return };
        if stream.request_keyframe() || !m.repair.enabled || !m.pending.is_empty() || stream.gop_cache().is_empty() {
            return; // a keyframe is coming (re-encoder, or a replay in progress)
        }
        if !m.repair.restart_allowed(now) {
            return;
        }
        self.counters.gop_restarts += 1;
        m.video.rebase_next();
        m.queue_replay(stream.gop_cache());
        tracing::debug!(shard = self.id, session = format_args!("{:016x}", sess.id), "restart from the GOP cache");
        self.start_catchup(idx);
    }

    /// Report blocks about our video: RTT (LSR/DLSR against the wall clock
    /// the sender reports carried) and loss.
    fn on_reports(&mut self, now: Instant, idx: usize, reports: &[ReportBlock]) {
        let ntp = rts_rtp::unix_micros_to_ntp(self.unix_us(now));
        let Some(m) = self.sessions.get_mut(idx).and_then(|s| s.media.as_mut()) else { return };
        for b in reports.iter().filter(|b| b.ssrc == m.video.ssrc) {
            m.repair.fraction_lost = b.fraction_lost;
            m.repair.cumulative_lost = b.cumulative_lost;
            if m.repair.enabled {
                m.repair.on_loss(now, Some(b.fraction_lost));
            }
            if b.lsr == 0 {
                continue; // no sender report received yet
            }
            // Middle 32 bits of NTP time, 1/65536 s.
            let rtt = ((ntp >> 16) as u32).wrapping_sub(b.lsr).wrapping_sub(b.dlsr);
            if rtt < 10 << 16 {
                m.repair.on_rtt(Duration::from_micros(u64::from(rtt) * 1_000_000 / 65_536));
            }
        }
    }

    /// Queues the sender reports due at `now`: per viewer on its own
    /// schedule, one per track. Both tracks' RTP times derive from the same
    /// stream clock (FLV time), so mapping them to one NTP time lets the
    /// receiver lip-sync (RFC 3550 §6.4.1).
    pub(super) fn queue_sender_reports(&mut self, now: Instant) {
        if self.work_queued(|w| matches!(w, Work::SenderReports { .. })) {
            // The last round is still going out (its list must not change
            // under it); the viewers it leaves due are taken next time.
            return;
        }
        self.sr_due.clear();
        for (idx, sess) in self.sessions.iter_mut() {
            if sess.peer.is_none() {
                continue;
            }
            let Some(media) = sess.media.as_mut() else { continue };
            let clock = sess.stream.and_then(|id| self.streams.get(id)).and_then(|s| s.anchor());
            if media.next_sr > now || clock.is_none() {
                continue;
            }
            let young = now < media.sr_young_until;
            media.next_sr = now + if young { SR_YOUNG_INTERVAL } else { SR_INTERVAL };
            self.sr_due.push(idx);
        }
        if !self.sr_due.is_empty() {
            let ntp = rts_rtp::unix_micros_to_ntp(self.unix_us(now));
            self.work.push_back(Work::SenderReports { now, ntp, next: 0 });
        }
    }
}
