//! The run's result: failure categories, the JSON report (schema in the
//! README), thresholds and the terminal summary.

use crate::stats::{percentiles, Percentiles};
use serde::Serialize;
use std::collections::BTreeMap;

/// Why a viewer failed. Every failure lands in exactly one category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum FailureKind {
    /// HTTP request timed out (connect or total).
    SignalingTimeout,
    /// 4xx (or an RTS/SRS JSON error code below 500).
    Http4xx,
    /// 5xx (or JSON error code ≥ 500).
    Http5xx,
    /// Answer unparsable, or without candidate, ICE credentials or fingerprint.
    BadSdp,
    /// No authenticated STUN success within the ICE timeout.
    IceTimeout,
    /// DTLS handshake failed or timed out.
    DtlsFailed,
    /// Server certificate does not match the answer's fingerprint.
    FingerprintMismatch,
    /// Keying material or SRTP context unusable.
    SrtpFailed,
    /// TCP connect refused/reset, DNS, or a local socket error.
    ConnectError,
}

impl FailureKind {
    /// Every category, in report order.
    pub const ALL: [FailureKind; 9] = [
        FailureKind::SignalingTimeout,
        FailureKind::Http4xx,
        FailureKind::Http5xx,
        FailureKind::BadSdp,
        FailureKind::IceTimeout,
        FailureKind::DtlsFailed,
        FailureKind::FingerprintMismatch,
        FailureKind::SrtpFailed,
        FailureKind::ConnectError,
    ];

    /// Key in the report's `failures` object.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::SignalingTimeout => "signaling_timeout",
            FailureKind::Http4xx => "http_4xx",
            FailureKind::Http5xx => "http_5xx",
            FailureKind::BadSdp => "bad_sdp",
            FailureKind::IceTimeout => "ice_timeout",
            FailureKind::DtlsFailed => "dtls_failed",
            FailureKind::FingerprintMismatch => "fingerprint_mismatch",
            FailureKind::SrtpFailed => "srtp_failed",
            FailureKind::ConnectError => "connect_error",
        }
    }

    /// Index into counter arrays.
    pub fn index(self) -> usize {
        Self::ALL.iter().position(|k| *k == self).unwrap_or(0)
    }
}

/// Server-added delay as the rts admin API reports it (µs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ServerLatency {
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Maximum.
    pub max: u64,
}

/// Per-viewer results, summed by workers and then by the run.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// Viewers whose DTLS handshake completed.
    pub connected: u64,
    /// Failures by [`FailureKind::index`].
    pub failures: [u64; 9],
    /// Of the connected, how many verified media.
    pub verified: u64,
    /// SRTP(+SRTCP) datagrams received by connected viewers.
    pub packets: u64,
    /// UDP payload bytes received from the server: SRTP and SRTCP of
    /// connected viewers, STUN and DTLS of all.
    pub bytes: u64,
    /// Σ seconds each viewer was connected.
    pub viewer_seconds: f64,
    /// Σ over verified viewers' streams.
    pub expected: u64,
    /// Σ distinct packets received (verified).
    pub received: u64,
    /// Duplicates (verified).
    pub duplicates: u64,
    /// Reordered (verified).
    pub reordered: u64,
    /// Loss from cleartext headers over all viewers: (expected, received).
    pub header_expected: u64,
    /// See `header_expected`.
    pub header_received: u64,
    /// Complete frames reassembled.
    pub frames: u64,
    /// Frames with a gap or broken fragment.
    pub frames_incomplete: u64,
    /// Complete frames carrying SEI user data (any UUID).
    pub frames_with_user_data: u64,
    /// Stalls and their total length.
    pub stall_count: u64,
    /// Milliseconds.
    pub stall_ms: f64,
    /// Σ seconds verified viewers were connected (stall-ratio denominator).
    pub verified_seconds: f64,
    /// SRTP packets that failed authentication (verified).
    pub srtp_errors: u64,
    /// Sessions the server ended (DTLS close_notify) before teardown.
    pub server_closed: u64,
    /// STUN binding requests from a full-ICE peer that we answered.
    pub checks_answered: u64,
    /// STUN/DTLS datagrams longer than a headers-only receive keeps (dropped).
    pub truncated: u64,
    /// ms from DTLS connected to the first complete frame.
    pub first_frame_ms: Vec<f64>,
    /// ms from the start of signaling to the first complete frame.
    pub first_frame_from_signaling_ms: Vec<f64>,
    /// Inter-frame jitter samples, ms.
    pub jitter_ms: Vec<f64>,
    /// End-to-end delay samples from the SEI stamp, ms.
    pub e2e_ms: Vec<f64>,
    /// Per verified viewer with SEI samples: its median end-to-end delay, ms.
    pub e2e_viewer_median_ms: Vec<f64>,
    /// Video packets carrying the playout-delay extension (verified).
    pub playout_delay_packets: u64,
    /// Its `min` on those packets, ms.
    pub playout_delay_min_ms: Vec<f64>,
    /// RTP datagrams dropped by `--drop-pct` before any processing.
    pub dropped: u64,
    /// Video sequence numbers NACKed (first tries and retries), all viewers.
    pub nacks_sent: u64,
    /// RTX packets, and media packets repeating a number that was missing.
    pub retransmissions: u64,
    /// Missing video packets that arrived later, all viewers.
    pub recovered: u64,
    /// Of `recovered`, those NACKed more than once first, all viewers.
    pub recovered_after_retry: u64,
    /// Missing video packets given up, all viewers.
    pub unrecovered: u64,
    /// `recovered` of verified viewers.
    pub verified_recovered: u64,
    /// `unrecovered` of verified viewers.
    pub verified_unrecovered: u64,
    /// PLIs sent after a packet was given up.
    pub plis_sent: u64,
    /// Audio packets lost on the wire (verified).
    pub audio_lost: u64,
    /// Audio frames recovered from a later RED packet's redundancy (verified).
    pub audio_recovered_by_red: u64,
    /// DTLS handshakes completed (one per connected viewer unless something
    /// started another).
    pub dtls_handshakes: u64,
    /// Viewers that moved to a new socket (`--rebind-after`).
    pub rebinds: u64,
    /// Of those, the ones whose new address the server's check response
    /// showed (its mapped address changed).
    pub rebinds_moved: u64,
    /// Per moved viewer: ms from the move to the next complete frame.
    pub rebind_gap_ms: Vec<f64>,
    /// ms from a STUN check to its response.
    pub stun_rtt_ms: Vec<f64>,
    /// Swipe mode (`--switch-every`): switch requests and their timing.
    pub switches: crate::swipe::SwitchStats,
}

impl Tally {
    /// Adds `o` into `self`.
    pub fn merge(&mut self, mut o: Tally) {
        self.connected += o.connected;
        for (a, b) in self.failures.iter_mut().zip(o.failures) {
            *a += b;
        }
        self.verified += o.verified;
        self.packets += o.packets;
        self.bytes += o.bytes;
        self.viewer_seconds += o.viewer_seconds;
        self.expected += o.expected;
        self.received += o.received;
        self.duplicates += o.duplicates;
        self.reordered += o.reordered;
        self.header_expected += o.header_expected;
        self.header_received += o.header_received;
        self.frames += o.frames;
        self.frames_incomplete += o.frames_incomplete;
        self.frames_with_user_data += o.frames_with_user_data;
        self.stall_count += o.stall_count;
        self.stall_ms += o.stall_ms;
        self.verified_seconds += o.verified_seconds;
        self.srtp_errors += o.srtp_errors;
        self.server_closed += o.server_closed;
        self.checks_answered += o.checks_answered;
        self.truncated += o.truncated;
        self.playout_delay_packets += o.playout_delay_packets;
        self.playout_delay_min_ms.append(&mut o.playout_delay_min_ms);
        self.dropped += o.dropped;
        self.nacks_sent += o.nacks_sent;
        self.retransmissions += o.retransmissions;
        self.recovered += o.recovered;
        self.recovered_after_retry += o.recovered_after_retry;
        self.unrecovered += o.unrecovered;
        self.verified_recovered += o.verified_recovered;
        self.verified_unrecovered += o.verified_unrecovered;
        self.plis_sent += o.plis_sent;
        self.audio_lost += o.audio_lost;
        self.audio_recovered_by_red += o.audio_recovered_by_red;
        self.dtls_handshakes += o.dtls_handshakes;
        self.rebinds += o.rebinds;
        self.rebinds_moved += o.rebinds_moved;
        self.rebind_gap_ms.append(&mut o.rebind_gap_ms);
        self.stun_rtt_ms.append(&mut o.stun_rtt_ms);
        self.switches.merge(std::mem::take(&mut o.switches));
        self.first_frame_ms.append(&mut o.first_frame_ms);
        self.first_frame_from_signaling_ms.append(&mut o.first_frame_from_signaling_ms);
        self.jitter_ms.append(&mut o.jitter_ms);
        self.e2e_ms.append(&mut o.e2e_ms);
        self.e2e_viewer_median_ms.append(&mut o.e2e_viewer_median_ms);
    }

    /// Counts one failure.
    pub fn fail(&mut self, kind: FailureKind) {
        self.failures[kind.index()] += 1;
    }
}

/// The JSON report. Field meanings are documented in the README ("Load generator").
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub url: String,
    pub signaling: String,
    pub viewers_requested: u64,
    pub viewers_started: u64,
    pub viewers_connected: u64,
    pub viewers_failed: u64,
    pub verified_viewers: u64,
    pub failures: BTreeMap<String, u64>,
    pub loss_ratio: f64,
    pub loss_ratio_headers: f64,
    pub packets_lost: u64,
    pub duplicates: u64,
    pub reordered: u64,
    pub srtp_auth_failures: u64,
    pub stall_count: u64,
    pub stall_ms_total: u64,
    pub stall_ratio: f64,
    pub first_frame_ms: Option<Percentiles>,
    pub first_frame_from_signaling_ms: Option<Percentiles>,
    pub frames_decoded: u64,
    pub frames_incomplete: u64,
    /// Complete frames that carried SEI user data (`user_data_unregistered`,
    /// any UUID), e.g. a publisher's product-card cues through a re-encode.
    pub frames_with_user_data: u64,
    pub jitter_ms: Option<Percentiles>,
    pub e2e_latency_ms: Option<Percentiles>,
    /// Fairness: percentiles of the verified viewers' own median delays, the
    /// largest of them, and that largest over `e2e_latency_ms.p50`.
    pub e2e_viewer_median_ms: Option<Percentiles>,
    pub e2e_viewer_median_max_ms: Option<f64>,
    pub e2e_worst_viewer_ratio: Option<f64>,
    /// Verified video packets that carried the playout-delay extension, and
    /// its `min` (the server's lip-sync hint, decision 010).
    pub playout_delay_packets: u64,
    pub playout_delay_min_ms: Option<Percentiles>,
    /// Loss repair (issue 12): NACKs and what came of them.
    pub nacks_sent: u64,
    pub retransmissions_received: u64,
    pub recovered: u64,
    /// Of `recovered`, packets NACKed more than once first: their first
    /// answer was lost (or late), so they waited a retry interval.
    pub recovered_after_retry: u64,
    pub unrecovered: u64,
    pub recovered_ratio: Option<f64>,
    pub verified_recovered: u64,
    pub verified_unrecovered: u64,
    pub verified_recovered_ratio: Option<f64>,
    pub plis_sent: u64,
    pub dropped_by_loadgen: u64,
    pub audio_packets_lost: u64,
    pub audio_recovered_by_red: u64,
    /// Network change without re-signaling (`--rebind-after`).
    pub dtls_handshakes: u64,
    pub rebinds: u64,
    pub rebinds_moved: u64,
    pub rebind_gap_ms: Vec<f64>,
    pub stun_rtt_ms: Option<Percentiles>,
    /// Swipe mode (`--switch-every`): requests sent, answered 2xx, answered
    /// with an error status, not answered; the 2xx answers' HTTP time.
    pub switches_sent: u64,
    pub switches_ok: u64,
    pub switches_refused: u64,
    pub switches_failed: u64,
    pub switch_http_ms: Option<Percentiles>,
    /// Verified viewers' OK switches that were timed, those without a frame
    /// of the new stream within `--switch-timeout`, and request → the new
    /// stream's first complete frame.
    pub switches_timed: u64,
    pub switches_no_frame: u64,
    pub switch_ms: Option<Percentiles>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_latency_us: Option<ServerLatency>,
    pub kbps_per_viewer: f64,
    pub kbps_total: f64,
    pub packets_received: u64,
    pub bytes_received: u64,
    pub viewer_seconds: f64,
    pub sessions_closed_by_server: u64,
    pub peer_checks_answered: u64,
    pub control_truncated: u64,
    pub cpu_percent: f64,
    pub cpu_us_per_viewer_second: f64,
    pub duration_s: f64,
    pub hit_deadline: bool,
    pub threshold_violations: Vec<String>,
}

/// What `build` needs besides the tally.
pub struct RunFacts<'a> {
    pub opts: &'a crate::Options,
    pub started: u64,
    pub wall_s: f64,
    pub hold_s: f64,
    pub cpu_s: f64,
    pub server_latency_us: Option<ServerLatency>,
    pub hit_deadline: bool,
}

impl Report {
    /// Turns the summed tally into the report and checks thresholds.
    pub fn build(mut t: Tally, f: &RunFacts<'_>) -> Report {
        let ratio = |num: f64, den: f64| if den > 0.0 { num / den } else { 0.0 };
        let lost = t.expected.saturating_sub(t.received);
        let stall_ratio = ratio(t.stall_ms, t.verified as f64 * f.hold_s * 1000.0);
        let share = |a: u64, b: u64| (a + b > 0).then(|| a as f64 / (a + b) as f64);
        t.rebind_gap_ms.sort_by(f64::total_cmp);
        let mut r = Report {
            url: f.opts.url.clone(),
            signaling: f.opts.signaling.as_str().into(),
            viewers_requested: f.opts.viewers,
            viewers_started: f.started,
            viewers_connected: t.connected,
            viewers_failed: t.failures.iter().sum(),
            verified_viewers: t.verified,
            failures: FailureKind::ALL.iter().map(|k| (k.as_str().to_string(), t.failures[k.index()])).collect(),
            loss_ratio: ratio(lost as f64, t.expected as f64),
            loss_ratio_headers: ratio(t.header_expected.saturating_sub(t.header_received) as f64, t.header_expected as f64),
            packets_lost: lost,
            duplicates: t.duplicates,
            reordered: t.reordered,
            srtp_auth_failures: t.srtp_errors,
            stall_count: t.stall_count,
            stall_ms_total: t.stall_ms.round() as u64,
            stall_ratio,
            first_frame_ms: percentiles(&mut t.first_frame_ms),
            first_frame_from_signaling_ms: percentiles(&mut t.first_frame_from_signaling_ms),
            frames_decoded: t.frames,
            frames_incomplete: t.frames_incomplete,
            frames_with_user_data: t.frames_with_user_data,
            jitter_ms: percentiles(&mut t.jitter_ms),
            e2e_latency_ms: percentiles(&mut t.e2e_ms),
            e2e_viewer_median_ms: percentiles(&mut t.e2e_viewer_median_ms),
            e2e_viewer_median_max_ms: t.e2e_viewer_median_ms.iter().copied().reduce(f64::max),
            e2e_worst_viewer_ratio: None,
            playout_delay_packets: t.playout_delay_packets,
            playout_delay_min_ms: percentiles(&mut t.playout_delay_min_ms),
            nacks_sent: t.nacks_sent,
            retransmissions_received: t.retransmissions,
            recovered: t.recovered,
            recovered_after_retry: t.recovered_after_retry,
            unrecovered: t.unrecovered,
            recovered_ratio: share(t.recovered, t.unrecovered),
            verified_recovered: t.verified_recovered,
            verified_unrecovered: t.verified_unrecovered,
            verified_recovered_ratio: share(t.verified_recovered, t.verified_unrecovered),
            plis_sent: t.plis_sent,
            dropped_by_loadgen: t.dropped,
            audio_packets_lost: t.audio_lost,
            audio_recovered_by_red: t.audio_recovered_by_red,
            dtls_handshakes: t.dtls_handshakes,
            rebinds: t.rebinds,
            rebinds_moved: t.rebinds_moved,
            rebind_gap_ms: std::mem::take(&mut t.rebind_gap_ms),
            stun_rtt_ms: percentiles(&mut t.stun_rtt_ms),
            switches_sent: t.switches.sent,
            switches_ok: t.switches.ok,
            switches_refused: t.switches.refused,
            switches_failed: t.switches.failed,
            switch_http_ms: percentiles(&mut t.switches.http_ms),
            switches_timed: t.switches.timed,
            switches_no_frame: t.switches.no_frame,
            switch_ms: percentiles(&mut t.switches.frame_ms),
            server_latency_us: f.server_latency_us,
            kbps_per_viewer: ratio(t.bytes as f64 * 8.0 / 1000.0, t.viewer_seconds),
            kbps_total: ratio(t.bytes as f64 * 8.0 / 1000.0, f.hold_s),
            packets_received: t.packets,
            bytes_received: t.bytes,
            viewer_seconds: t.viewer_seconds,
            sessions_closed_by_server: t.server_closed,
            peer_checks_answered: t.checks_answered,
            control_truncated: t.truncated,
            cpu_percent: ratio(f.cpu_s * 100.0, f.wall_s),
            cpu_us_per_viewer_second: ratio(f.cpu_s * 1e6, t.viewer_seconds),
            duration_s: f.wall_s,
            hit_deadline: f.hit_deadline,
            threshold_violations: Vec::new(),
        };
        r.e2e_worst_viewer_ratio = match (r.e2e_viewer_median_max_ms, &r.e2e_latency_ms) {
            (Some(max), Some(all)) if all.p50 > 0.0 => Some(max / all.p50),
            _ => None,
        };
        r.threshold_violations = r.violations(f.opts);
        r
    }

    fn violations(&self, o: &crate::Options) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(max) = o.max_stall_ratio {
            if self.stall_ratio > max {
                v.push(format!("stall ratio {:.4} > --max-stall-ratio {max}", self.stall_ratio));
            }
        }
        if let Some(max) = o.max_failed {
            if self.viewers_failed > max {
                v.push(format!("{} viewers failed > --max-failed {max}", self.viewers_failed));
            }
        }
        if let Some(max) = o.max_loss {
            if self.loss_ratio > max {
                v.push(format!("loss ratio {:.4} > --max-loss {max}", self.loss_ratio));
            }
        }
        v
    }

    fn repair_row(&self) -> String {
        let pct = |r: Option<f64>| r.map_or("n/a".to_string(), |r| format!("{:.2}%", r * 100.0));
        format!(
            "{} NACKed, {} retransmissions, {} recovered ({} after a retry) / {} given up ({}; verified {} / {}, {}), {} PLIs",
            self.nacks_sent,
            self.retransmissions_received,
            self.recovered,
            self.recovered_after_retry,
            self.unrecovered,
            pct(self.recovered_ratio),
            self.verified_recovered,
            self.verified_unrecovered,
            pct(self.verified_recovered_ratio),
            self.plis_sent
        )
    }

    /// Exit code for the binary: 0 when every threshold holds, else 1.
    pub fn exit_code(&self) -> i32 {
        i32::from(!self.threshold_violations.is_empty())
    }

    /// The human summary printed on stdout at the end.
    pub fn summary_table(&self) -> String {
        let pct = |p: &Option<Percentiles>| {
            p.map_or("n/a".to_string(), |p| format!("p50 {:.1}  p95 {:.1}  p99 {:.1}", p.p50, p.p95, p.p99))
        };
        let failures: Vec<String> =
            self.failures.iter().filter(|(_, n)| **n > 0).map(|(k, n)| format!("{k}={n}")).collect();
        let mut rows = vec![
            ("viewers", format!("{} requested, {} connected, {} failed, {} verified", self.viewers_requested, self.viewers_connected, self.viewers_failed, self.verified_viewers)),
            ("failures", if failures.is_empty() { "none".into() } else { failures.join(" ") }),
            ("bitrate", format!("{:.0} kbit/s per viewer, {:.0} kbit/s total", self.kbps_per_viewer, self.kbps_total)),
            ("loss", format!("{:.4}% verified ({} lost), {:.4}% all viewers (headers)", self.loss_ratio * 100.0, self.packets_lost, self.loss_ratio_headers * 100.0)),
            ("frames", format!("{} complete, {} incomplete, {} with SEI user data", self.frames_decoded, self.frames_incomplete, self.frames_with_user_data)),
            ("stalls", format!("{} stalls, {} ms total, ratio {:.4}", self.stall_count, self.stall_ms_total, self.stall_ratio)),
            ("first frame ms", pct(&self.first_frame_ms)),
            ("jitter ms", pct(&self.jitter_ms)),
            ("e2e latency ms", pct(&self.e2e_latency_ms)),
            ("viewer medians ms", match (self.e2e_viewer_median_max_ms, self.e2e_worst_viewer_ratio) {
                (Some(max), Some(ratio)) => format!("{}  max {max:.1} ({ratio:.2} x overall p50)", pct(&self.e2e_viewer_median_ms)),
                _ => "n/a".into(),
            }),
            ("playout-delay min ms", format!("{} ({} packets)", pct(&self.playout_delay_min_ms), self.playout_delay_packets)),
            ("repair", self.repair_row()),
            ("audio", format!("{} lost (verified), {} recovered from RED", self.audio_packets_lost, self.audio_recovered_by_red)),
        ];
        if self.dropped_by_loadgen > 0 {
            rows.push(("dropped", format!("{} RTP datagrams by --drop-pct", self.dropped_by_loadgen)));
        }
        if self.rebinds > 0 {
            let gaps = self.rebind_gap_ms.iter().map(|g| format!("{g:.0}")).collect::<Vec<_>>().join(" ");
            rows.push((
                "rebind",
                format!("{} moved ({} seen by the server), gaps ms [{gaps}], {} DTLS handshakes", self.rebinds, self.rebinds_moved, self.dtls_handshakes),
            ));
        }
        if self.switches_sent > 0 {
            rows.push((
                "switches",
                format!(
                    "{} sent, {} ok, {} refused, {} failed; verified: {} timed, {} without a frame",
                    self.switches_sent, self.switches_ok, self.switches_refused, self.switches_failed, self.switches_timed, self.switches_no_frame
                ),
            ));
            rows.push(("switch ms", pct(&self.switch_ms)));
            rows.push(("switch http ms", pct(&self.switch_http_ms)));
        }
        if let Some(s) = self.server_latency_us {
            rows.push(("server delay us", format!("p50 {}  p99 {}  max {}", s.p50, s.p99, s.max)));
        }
        rows.push(("cpu", format!("{:.1}% ({:.1} us per viewer-second)", self.cpu_percent, self.cpu_us_per_viewer_second)));
        rows.push(("duration", format!("{:.1} s{}", self.duration_s, if self.hit_deadline { " (hit deadline)" } else { "" })));
        for v in &self.threshold_violations {
            rows.push(("THRESHOLD", v.clone()));
        }
        rows.iter().map(|(k, v)| format!("{k:>16} | {v}\n")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_and_thresholds() {
        let mut o = crate::Options::new("http://h:1/whep/a/b");
        o.viewers = 4;
        o.max_stall_ratio = Some(0.01);
        o.max_failed = Some(0);
        let mut t = Tally { connected: 3, verified: 1, bytes: 250_000, viewer_seconds: 10.0, expected: 100, received: 99, stall_ms: 500.0, stall_count: 1, frames: 300, ..Default::default() };
        t.fail(FailureKind::IceTimeout);
        t.first_frame_ms = vec![120.0, 80.0];
        let f = RunFacts { opts: &o, started: 4, wall_s: 12.0, hold_s: 10.0, cpu_s: 0.6, server_latency_us: None, hit_deadline: false };
        let r = Report::build(t, &f);
        let v = serde_json::to_value(&r).unwrap();
        for key in ["viewers_requested", "viewers_connected", "viewers_failed", "failures", "loss_ratio", "stall_count",
            "stall_ms_total", "first_frame_ms", "frames_decoded", "jitter_ms", "e2e_latency_ms", "kbps_per_viewer",
            "packets_received", "bytes_received", "cpu_percent", "cpu_us_per_viewer_second", "duration_s", "verified_viewers"] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert!(v.get("server_latency_us").is_none(), "omitted without an rts target");
        assert_eq!(v["failures"].as_object().unwrap().len(), 9);
        assert_eq!(v["failures"]["ice_timeout"], 1);
        assert_eq!(v["viewers_failed"], 1);
        assert_eq!(v["e2e_latency_ms"], serde_json::Value::Null);
        assert_eq!(v["first_frame_ms"]["p50"], 80.0);
        assert!((r.loss_ratio - 0.01).abs() < 1e-12);
        assert!((r.kbps_per_viewer - 200.0).abs() < 1e-9);
        assert!((r.cpu_percent - 5.0).abs() < 1e-9);
        assert!((r.stall_ratio - 0.05).abs() < 1e-12);
        assert_eq!(r.threshold_violations.len(), 2, "{:?}", r.threshold_violations);
        assert_eq!(r.exit_code(), 1);
        assert!(r.summary_table().contains("ice_timeout=1"));
        for key in ["nacks_sent", "retransmissions_received", "recovered", "recovered_after_retry", "unrecovered", "recovered_ratio",
            "verified_recovered_ratio", "plis_sent", "dropped_by_loadgen", "audio_recovered_by_red", "dtls_handshakes",
            "rebinds", "rebinds_moved", "rebind_gap_ms", "stun_rtt_ms"] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert_eq!(v["recovered_ratio"], serde_json::Value::Null, "nothing lost, no ratio");
        assert!(!r.summary_table().contains("rebind"), "no rebind row without rebinds");
    }

    #[test]
    fn repair_figures() {
        let o = crate::Options::new("http://h:1/whep/a/b");
        let t = Tally {
            connected: 2,
            verified: 1,
            dtls_handshakes: 2,
            nacks_sent: 120,
            retransmissions: 110,
            recovered: 99,
            recovered_after_retry: 7,
            unrecovered: 1,
            verified_recovered: 40,
            verified_unrecovered: 0,
            dropped: 5,
            rebinds: 1,
            rebind_gap_ms: vec![30.0],
            ..Default::default()
        };
        let f = RunFacts { opts: &o, started: 2, wall_s: 1.0, hold_s: 1.0, cpu_s: 0.0, server_latency_us: None, hit_deadline: false };
        let r = Report::build(t, &f);
        assert_eq!((r.recovered_ratio, r.verified_recovered_ratio), (Some(0.99), Some(1.0)));
        assert_eq!((r.nacks_sent, r.retransmissions_received, r.dropped_by_loadgen), (120, 110, 5));
        let table = r.summary_table();
        assert!(table.contains("120 NACKed, 110 retransmissions, 99 recovered (7 after a retry) / 1 given up (99.00%"), "{table}");
        assert!(table.contains("1 moved (0 seen by the server), gaps ms [30], 2 DTLS handshakes"), "{table}");
        assert!(table.contains("5 RTP datagrams by --drop-pct"), "{table}");
        assert!(!table.contains("switch"), "no switch rows without switches");
    }

    #[test]
    fn switch_figures() {
        let o = crate::Options::new("http://h:1/whep/a/b");
        let mut t = Tally::default();
        // Two viewers as `Viewer::end` leaves them: a verified one and a light one.
        t.merge(Tally {
            switches: crate::swipe::SwitchStats { sent: 3, ok: 3, timed: 3, no_frame: 1, http_ms: vec![4.0, 6.0, 5.0], frame_ms: vec![40.0, 30.0], ..Default::default() },
            ..Default::default()
        });
        t.merge(Tally {
            switches: crate::swipe::SwitchStats { sent: 3, ok: 1, refused: 1, failed: 1, http_ms: vec![7.0], ..Default::default() },
            ..Default::default()
        });
        let f = RunFacts { opts: &o, started: 2, wall_s: 1.0, hold_s: 1.0, cpu_s: 0.0, server_latency_us: None, hit_deadline: false };
        let r = Report::build(t, &f);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!((v["switches_sent"].as_u64(), v["switches_ok"].as_u64(), v["switches_refused"].as_u64(), v["switches_failed"].as_u64()), (Some(6), Some(4), Some(1), Some(1)));
        assert_eq!((v["switches_timed"].as_u64(), v["switches_no_frame"].as_u64()), (Some(3), Some(1)));
        assert_eq!(v["switch_ms"]["p50"], 30.0);
        assert_eq!(v["switch_ms"]["p99"], 40.0);
        assert_eq!(v["switch_http_ms"]["p50"], 5.0);
        let table = r.summary_table();
        assert!(table.contains("6 sent, 4 ok, 1 refused, 1 failed; verified: 3 timed, 1 without a frame"), "{table}");
        assert!(table.contains("switch ms | p50 30.0  p95 40.0  p99 40.0"), "{table}");
        let empty = serde_json::to_value(Report::build(Tally::default(), &f)).unwrap();
        assert_eq!((empty["switches_sent"].as_u64(), &empty["switch_ms"]), (Some(0), &serde_json::Value::Null));
    }

    #[test]
    fn per_viewer_delay_fairness() {
        let o = crate::Options::new("http://h:1/whep/a/b");
        // Two viewers as `Viewer::end` leaves them: their samples and their own median.
        let mut t = Tally { e2e_ms: vec![10.0, 12.0, 14.0], e2e_viewer_median_ms: vec![12.0], ..Default::default() };
        t.merge(Tally { e2e_ms: vec![31.0, 30.0, 30.0], e2e_viewer_median_ms: vec![30.0], ..Default::default() });
        let f = RunFacts { opts: &o, started: 2, wall_s: 1.0, hold_s: 1.0, cpu_s: 0.0, server_latency_us: None, hit_deadline: false };
        let r = Report::build(t, &f);
        // Overall p50 of [10 12 14 30 30 31] is the 3rd sample, 14; the slow viewer's median 30.
        assert_eq!(r.e2e_latency_ms.map(|p| p.p50), Some(14.0));
        assert_eq!(r.e2e_viewer_median_max_ms, Some(30.0));
        assert!((r.e2e_worst_viewer_ratio.unwrap() - 30.0 / 14.0).abs() < 1e-12);
        let table = r.summary_table();
        assert!(table.contains("max 30.0 (2.14 x overall p50)"), "{table}");
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["e2e_viewer_median_ms"]["p99"], 30.0);
        let empty = Report::build(Tally::default(), &f);
        assert_eq!((empty.e2e_viewer_median_max_ms, empty.e2e_worst_viewer_ratio), (None, None));
    }

    #[test]
    fn category_names_are_stable() {
        let names: Vec<_> = FailureKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names, ["signaling_timeout", "http_4xx", "http_5xx", "bad_sdp", "ice_timeout", "dtls_failed", "fingerprint_mismatch", "srtp_failed", "connect_error"]);
        assert!(FailureKind::ALL.iter().enumerate().all(|(i, k)| k.index() == i));
    }
}
