//! Repairs that cannot wait for a NACK: libwebrtc drops every frame of the
//! old GOP still incomplete once the next keyframe is complete (its
//! reference finder forgets the old GOP's state when the keyframe is
//! handed on), so a packet lost within about an RTT before a keyframe,
//! whose retransmission arrives after it, costs every frame from it to the
//! keyframe: a skip of a few frames (one to eight seen), without a PLI. At
//! 5 % loss with a 2 s GOP that was about 1 % of all frames in Chromium;
//! with a 10 s GOP, 0.1 %.
//!
//! A viewer that has shown loss therefore gets, just ahead of each
//! keyframe and unasked, the video it was sent in the last RTT +
//! [`RECENT_MARGIN`] (a lost packet there is either not noticed yet or its
//! retransmission is still on the way) and the packets resent to it in the
//! last RTT + `RETRY_ALLOWANCE` + [`RESENT_MARGIN`] (that resend may have
//! been lost, or may still be: a resend in flight when the keyframe goes
//! out is lost with the link's loss rate, and asked for again only after
//! libwebrtc's retry interval, too late). Each goes through the viewer's
//! resend maximum and byte budget, not the RTT rule (it is a copy of what
//! may be in flight on purpose); refusals are not counted, nobody asked. A
//! viewer without loss gets nothing extra.

use super::repair::{Resend, RETRY_ALLOWANCE};
use super::stream::Kind;
use super::streams::StreamId;
use super::Core;
use std::time::{Duration, Instant};

/// Beyond the RTT, for the video sent recently: a lost last packet of a
/// frame is noticed only with the next frame (33 ms at 30 fps).
pub const RECENT_MARGIN: Duration = Duration::from_millis(50);
/// Beyond the RTT and the retry allowance, for earlier resends: a repair
/// that failed once is asked for again only after libwebrtc's retry
/// interval (100 ms while it has no RTT of its own, as a receive-only
/// peer). Measured in Chromium at 5 % loss, RTT 40 ms, 10 runs each: both
/// margins 50 ms, 2 runs skipped 4-8 frames at a keyframe; both 150 ms,
/// none (≈ 545 guard packets in 20 s); 50 ms recent and 150 ms resent, none
/// (99.49-99.99 %, ≈ 265 guard packets in 20 s).
pub const RESENT_MARGIN: Duration = Duration::from_millis(150);
/// Most packets sent again ahead of one keyframe to one viewer (about
/// 100 ms of a 10 Mbit/s stream).
pub const GUARD_MAX_PACKETS: usize = 96;
/// Most earlier resends repeated ahead of one keyframe to one viewer.
const GUARD_MAX_RESENT: usize = 16;

impl Core {
    /// A keyframe whose first packet is `first` (stream numbering) is about
    /// to be fanned out on stream `id`: queue the guard for its lossy
    /// viewers. Call before queueing the keyframe's fan-out, so the guard
    /// leaves first.
    pub(super) fn guard_keyframe(&mut self, id: StreamId, first: u16, now: Instant) {
        let Some(stream) = self.streams.get(id) else { return };
        let burst = stream.repair_burst();
        for &idx in stream.viewers() {
            let Some(m) = self.sessions.get_mut(idx).and_then(|s| s.media.as_mut()) else { continue };
            if !m.repair.enabled || !m.repair.is_lossy(now) || !m.pending.is_empty() || !m.video.started() {
                continue;
            }
            let rtt = m.repair.rtt_or_default();
            let rtx = m.repair.rtx.is_some();
            let mut queued = false;
            // Earlier resends first (stream numbers), then the recent video
            // that is not among them.
            let mut again = [0u16; GUARD_MAX_RESENT];
            let mut n = 0;
            if let Some(since) = now.checked_sub(rtt + RETRY_ALLOWANCE + RESENT_MARGIN) {
                for seq in m.repair.resent_since(since).take(GUARD_MAX_RESENT) {
                    again[n] = seq;
                    n += 1;
                }
            }
            let again = &again[..n];
            let recent = now
                .checked_sub(rtt + RECENT_MARGIN)
                .map(|since| stream.recent_video(first, since, GUARD_MAX_PACKETS).filter(|(s, _)| !again.contains(s)));
            let resent = again.iter().filter_map(|&s| stream.history_packet(Kind::Video, s, now).map(|p| (s, p)));
            for (source, packet) in resent.chain(recent.into_iter().flatten()) {
                let Some(seq) = m.video.viewer_seq(source) else { continue };
                if !rtx && !m.video.can_repeat(seq) {
                    continue;
                }
                if let Ok(copies) = m.repair.admit_unasked(source, packet.len(), now, burst) {
                    for _ in 0..copies {
                        m.repair.queue.push_back(Resend { kind: Kind::Video, seq, packet: packet.clone(), guard: true });
                    }
                    queued = true;
                }
            }
            if queued {
                self.resend.queue(&mut self.work, m, idx, now);
            }
        }
    }
}
