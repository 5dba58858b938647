//! RTCP: viewers' feedback in (SRTCP), and the sender reports out that let
//! a receiver map both tracks' RTP time to one clock (lip sync).

use super::transmit::Work;
use super::Core;
use rts_rtp::rtcp::RtcpPacket;
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

/// Sender reports right after a viewer joins come this often, so its lip
/// sync starts within the first second...
const SR_YOUNG_INTERVAL: Duration = Duration::from_millis(200);
/// ...for this long; then the usual interval.
const SR_YOUNG_FOR: Duration = Duration::from_secs(2);
const SR_INTERVAL: Duration = Duration::from_secs(1);
/// The first report after media starts.
pub(super) const SR_FIRST_AFTER: Duration = Duration::from_millis(100);

impl Core {
    pub(super) fn on_rtcp(&mut self, _now: Instant, src: SocketAddrV4, data: &mut [u8]) {
        let Some(&idx) = self.by_addr.get(&src) else {
            self.counters.unknown_dropped += 1;
            return;
        };
        let Some(media) = self.sessions[idx].media.as_mut() else {
            self.counters.unknown_dropped += 1;
            return;
        };
        let Ok(n) = media.rx.unprotect_rtcp(data) else {
            self.counters.srtcp_failed += 1;
            return;
        };
        self.counters.rtcp_in += 1;
        let Ok(pkts) = rts_rtp::rtcp::parse_compound(&data[..n]) else { return };
        for p in pkts {
            match p {
                RtcpPacket::Nack { .. } => self.counters.nacks_in += 1,
                RtcpPacket::Pli { .. } | RtcpPacket::Fir { .. } => {
                    self.counters.plis_in += 1;
                    if let Some(s) = self.sessions[idx].stream.and_then(|id| self.streams.get_mut(id)) {
                        s.request_keyframe();
                    }
                }
                _ => {}
            }
        }
    }

    /// Queues the sender reports due at `now`: per viewer on its own
    /// schedule, one per track. Both tracks' RTP times derive from the same
    /// stream clock (FLV time), so mapping them to one NTP time lets the
    /// receiver lip-sync (RFC 3550 §6.4.1).
    pub(super) fn queue_sender_reports(&mut self, now: Instant) {
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
            let young = now.saturating_duration_since(media.started_at) < SR_YOUNG_FOR;
            media.next_sr = now + if young { SR_YOUNG_INTERVAL } else { SR_INTERVAL };
            self.sr_due.push(idx);
        }
        if !self.sr_due.is_empty() {
            let ntp = rts_rtp::unix_micros_to_ntp(self.unix_us(now));
            self.work.push_back(Work::SenderReports { now, ntp, next: 0 });
        }
    }
}
