//! One viewer session after signaling: ICE (controlling, USE-CANDIDATE;
//! binding requests from a full-ICE peer are answered too), DTLS (client, or
//! server when the answer says `setup:active`), SRTP; then media accounting
//! and loss repair as a browser does it (NACK, RTX, RED; see [`crate::repair`]).
//! Sans-IO: datagrams and time in, datagrams to send out through the
//! caller's outbox.

use crate::report::{FailureKind, Tally};
use crate::repair::{self, Arrival, Dropper, Held, NackRequester, RedAudio, ReorderBuffer, Slot};
use crate::sei;
use crate::signaling::Remote;
use crate::stats::{FrameJitter, SeqTracker, StallDetector};
use crate::swipe::{SwipeConfig, SwitchOutcome, Swiper};
use rts_dtls::{DtlsContext, DtlsEndpoint, DtlsEvent, Role, SrtpExport};
use rts_rtp::h264::H264Depacketizer;
use rts_rtp::RtpHeader;
use rts_srtp::{KeyingMaterial, Profile, SrtpContext};
use rts_stun::{classify, BindingRequest, Class, PacketKind, StunMessage, METHOD_BINDING};
use std::time::{Duration, Instant};

/// Connectivity checks repeat this often until one succeeds.
const CHECK_INTERVAL: Duration = Duration::from_millis(50);
/// Consent freshness (RFC 7675): the server drops us after 30 s of silence.
const CONSENT_INTERVAL: Duration = Duration::from_secs(5);
/// Receiver reports keep the server's view of us fresh.
const RR_INTERVAL: Duration = Duration::from_secs(1);
/// No complete frame for longer than this is a stall.
pub const STALL_THRESHOLD: Duration = Duration::from_millis(200);
/// Peer-reflexive priority (type pref 110, local pref 65535, component 1).
const PRFLX_PRIORITY: u32 = (110 << 24) | (65535 << 8) | 255;
/// H.264 RTP clock.
const VIDEO_CLOCK: u32 = 90_000;
/// Media SSRCs tracked per viewer (video, audio); more are ignored.
const MAX_TRACKED_SSRCS: usize = 4;
/// Bytes a headers-only receive keeps of each datagram: the RTP header, and
/// whole STUN messages (consent, a peer's checks) and DTLS alerts, and the
/// server's SRTCP sender reports.
pub const HEAD_BYTES: usize = 192;
/// Shortest interval between two PLIs (libwebrtc waits for the keyframe too).
const PLI_INTERVAL: Duration = Duration::from_secs(1);
/// A complete keyframe held behind a gap this old ends the wait for the gap.
const KEYFRAME_SKIP_AFTER: Duration = Duration::from_millis(200);
/// Sequence numbers per NACK packet (4 bytes per 17 numbers at best).
const NACK_CHUNK: usize = 128;

/// Static per-viewer settings handed over by signaling.
#[derive(Debug, Clone)]
pub struct ViewerConfig {
    /// From the answer.
    pub remote: Remote,
    /// Our ICE ufrag (as put in the offer).
    pub local_ufrag: String,
    /// Our ICE password (as put in the offer): keys our answers to the peer's checks.
    pub local_pwd: String,
    /// Where our datagrams go: the answer's candidate, or `--relay`.
    pub dest: std::net::SocketAddr,
    /// Decrypt and verify media.
    pub verified: bool,
    /// When signaling for this viewer began.
    pub signaling_started: Instant,
    /// Limits for the ICE and DTLS phases.
    pub ice_timeout: Duration,
    /// See `ice_timeout`.
    pub dtls_timeout: Duration,
    /// NACK lost video packets (off: `--no-nack`).
    pub nack: bool,
    /// Drop this percentage of incoming RTP datagrams (`--drop-pct`).
    pub drop_pct: f64,
    /// Seed of this viewer's drop pattern.
    pub drop_seed: u64,
    /// Move to a new local socket this long after connecting (verified
    /// viewers, `--rebind-after`).
    pub rebind_after: Option<Duration>,
    /// Switch streams on a schedule (`--switch-every`).
    pub swipe: Option<SwipeConfig>,
}

/// Where the session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Sending connectivity checks.
    Ice,
    /// DTLS handshake running.
    Dtls,
    /// Keys installed, receiving media.
    Connected,
    /// Gave up; counted in this category.
    Failed(FailureKind),
    /// Ended (teardown or closed by the server).
    Closed,
}

/// Latency samples (SEI stamps) are taken from this long after a viewer's
/// first frame: before, the server replays its GOP cache (frames up to a
/// GOP old, at 5,000 packets/s: a 2 s GOP in ~90 ms, 10 s in under 0.5 s),
/// whose stamps give the cache's age, not a delay.
pub const LATENCY_WARMUP: Duration = Duration::from_secs(1);

/// Media verification state (only verified viewers carry it).
struct Verify {
    depack: H264Depacketizer,
    reorder: ReorderBuffer,
    red: RedAudio,
    stalls: StallDetector,
    jitter: FrameJitter,
    /// When the first frame completed (None: not yet); latency samples
    /// start [`LATENCY_WARMUP`] later.
    first_frame_at: Option<Instant>,
    /// The last packet released ended a frame.
    last_marker: bool,
    /// The depacketizer restarts at this held keyframe (the gap before it was given up).
    restart_at: Option<u64>,
    /// RTP timestamp and release time of the first packet of the frame
    /// being assembled, and of the one before it (a frame whose marker was
    /// lost comes out when the next one starts): when a switch's keyframe began.
    frame_start: Option<(u32, Instant)>,
    prev_frame_start: Option<(u32, Instant)>,
}

/// One media SSRC's sequence accounting, with the state of the last
/// receiver report (for its fraction lost).
struct Track {
    ssrc: u32,
    seq: SeqTracker,
    audio: bool,
    reported: (u64, u64),
}

/// The network change of `--rebind-after`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Rebind {
    Off,
    /// Move at this time.
    Due(Instant),
    /// Moved at `at` from the address the server saw as `from`;
    /// `confirmed` once the server answered a check on the new socket;
    /// `resumed` once a complete frame arrived after the move.
    Moved { at: Instant, from: Option<std::net::SocketAddr>, confirmed: bool, resumed: bool },
}

/// A viewer session.
pub struct Viewer {
    cfg: ViewerConfig,
    username: String,
    tiebreaker: u64,
    sender_ssrc: u32,
    phase: Phase,
    dtls: DtlsEndpoint,
    tx: Option<SrtpContext>,
    /// Every connected viewer can decrypt: verified ones everything, light
    /// ones only sender reports and RTX payloads (for the original number).
    rx: Option<SrtpContext>,
    verify: Option<Verify>,
    pending: [([u8; 12], Option<Instant>); 4],
    pending_at: usize,
    phase_deadline: Instant,
    next_check: Instant,
    next_rr: Instant,
    connected_at: Option<Instant>,
    tracks: Vec<Track>,
    /// Missing video packets and their NACKs.
    nack: NackRequester,
    /// The video SSRC NACKs name (from the answer, else the first H.264 packet).
    video_ssrc: Option<u32>,
    /// Losses repaired through RTX (the media SSRC's tracker never sees them).
    rtx_recovered: u64,
    dropper: Option<Dropper>,
    /// Last sender report per SSRC: (middle 32 bits of its NTP time, arrival).
    last_sr: Vec<(u32, u32, Instant)>,
    last_pli: Option<Instant>,
    rebind: Rebind,
    /// Our address as the server saw it (the last check response's mapped address).
    mapped: Option<std::net::SocketAddr>,
    /// A wall-clock reading and the `Instant` it was taken at, so frames
    /// released by a timer still get an arrival time in UNIX µs.
    wall_ref: Option<(Instant, u64)>,
    lost_buf: Vec<u16>,
    /// Swipe mode: the switch schedule and its timing.
    swiper: Option<Swiper>,
    /// Results so far.
    tally: Tally,
}

impl Viewer {
    /// A viewer about to start ICE at `now`. `ctx` must be in the role the
    /// answer asked for (server when `cfg.remote.dtls_server`).
    pub fn new(ctx: &DtlsContext, cfg: ViewerConfig, now: Instant) -> Result<Viewer, FailureKind> {
        let dtls = DtlsEndpoint::new(ctx).map_err(|_| FailureKind::DtlsFailed)?;
        Ok(Viewer {
            username: format!("{}:{}", cfg.remote.ufrag, cfg.local_ufrag),
            tiebreaker: rand::random(),
            sender_ssrc: rand::random(),
            phase: Phase::Ice,
            dtls,
            tx: None,
            rx: None,
            verify: None,
            pending: [([0; 12], None); 4],
            pending_at: 0,
            phase_deadline: now + cfg.ice_timeout,
            next_check: now,
            next_rr: now + RR_INTERVAL,
            connected_at: None,
            tracks: Vec::new(),
            nack: NackRequester::new(cfg.nack),
            video_ssrc: cfg.remote.video_ssrc,
            rtx_recovered: 0,
            dropper: Dropper::new(cfg.drop_pct, cfg.drop_seed),
            last_sr: Vec::new(),
            last_pli: None,
            rebind: Rebind::Off,
            mapped: None,
            wall_ref: None,
            lost_buf: Vec::new(),
            swiper: cfg.swipe.map(Swiper::new),
            tally: Tally::default(),
            cfg,
        })
    }

    /// Current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether this viewer verifies media.
    pub fn is_verified(&self) -> bool {
        self.cfg.verified
    }

    /// Finished (failed or closed): the caller can drop the socket.
    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Failed(_) | Phase::Closed)
    }

    /// Results so far (complete frames, bytes...).
    pub fn tally(&self) -> &Tally {
        &self.tally
    }

    /// Stalls so far (for the live progress line; final figures are in the tally).
    pub fn live_stalls(&self) -> u64 {
        self.verify.as_ref().map_or(0, |v| v.stalls.count)
    }

    /// Where this viewer's datagrams go (the socket is connected there).
    pub fn dest(&self) -> std::net::SocketAddr {
        self.cfg.dest
    }

    /// Video packets missing and still being asked for.
    pub fn nacks_outstanding(&self) -> usize {
        self.nack.outstanding()
    }

    /// Next time [`handle_timeout`](Self::handle_timeout) has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Ice => Some(self.next_check.min(self.phase_deadline)),
            Phase::Dtls => Some(self.dtls.poll_timeout().map_or(self.phase_deadline, |d| d.min(self.phase_deadline))),
            Phase::Connected => {
                let mut t = self.next_check.min(self.next_rr);
                if let Some(n) = self.nack.poll_timeout() {
                    t = t.min(n);
                }
                if let Rebind::Due(at) = self.rebind {
                    t = t.min(at);
                }
                if let Some(at) = self.swiper.as_ref().and_then(Swiper::poll_timeout) {
                    t = t.min(at);
                }
                Some(t)
            }
            Phase::Failed(_) | Phase::Closed => None,
        }
    }

    /// Timers: connectivity checks, consent, RTCP RR, NACK retries and
    /// give-ups, DTLS retransmission, phase limits.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut Vec<Vec<u8>>) {
        match self.phase {
            Phase::Ice => {
                if now >= self.phase_deadline {
                    return self.fail(FailureKind::IceTimeout);
                }
                if now >= self.next_check {
                    self.send_check(now, out);
                    self.next_check = now + CHECK_INTERVAL;
                }
            }
            Phase::Dtls => {
                if now >= self.phase_deadline {
                    return self.fail(FailureKind::DtlsFailed);
                }
                if self.dtls.handle_timeout(now).is_err() {
                    return self.fail(FailureKind::DtlsFailed);
                }
                self.drain_dtls(now, out);
            }
            Phase::Connected => {
                if now >= self.next_check {
                    self.send_check(now, out);
                    // Until the server answers on a new socket, check as often as ICE does.
                    let checking = matches!(self.rebind, Rebind::Moved { confirmed: false, .. });
                    self.next_check = now + if checking { CHECK_INTERVAL } else { CONSENT_INTERVAL };
                }
                if now >= self.next_rr {
                    self.send_rr(now, out);
                    self.next_rr = now + RR_INTERVAL;
                }
                if let Some(s) = &mut self.swiper {
                    s.handle_timeout(now);
                }
                self.flush_feedback(now, out);
            }
            Phase::Failed(_) | Phase::Closed => {}
        }
    }

    /// True when only the head of each datagram is needed: a light viewer
    /// with keys installed and no packet missing counts RTP/RTCP from the
    /// clear header. While it waits for repairs it reads whole datagrams,
    /// to find the original sequence number inside RTX payloads. STUN and
    /// DTLS it still gets whole when they fit in [`HEAD_BYTES`].
    pub fn headers_only(&self) -> bool {
        self.phase == Phase::Connected && !self.cfg.verified && self.nack.outstanding() == 0
    }

    /// Whether this viewer wants to move to a new socket now
    /// (`--rebind-after`): the caller opens one and calls
    /// [`rebound`](Self::rebound), or [`rebind_failed`](Self::rebind_failed).
    pub fn wants_rebind(&self, now: Instant) -> bool {
        self.phase == Phase::Connected && matches!(self.rebind, Rebind::Due(at) if now >= at)
    }

    /// The caller moved us to a new socket at `now`: tell the server with a
    /// check (USE-CANDIDATE) from there; it moves media to the new address.
    pub fn rebound(&mut self, now: Instant, out: &mut Vec<Vec<u8>>) {
        self.rebind = Rebind::Moved { at: now, from: self.mapped, confirmed: false, resumed: false };
        self.tally.rebinds += 1;
        self.send_check(now, out);
        self.next_check = now + CHECK_INTERVAL;
    }

    /// No new socket could be opened: stay where we are.
    pub fn rebind_failed(&mut self) {
        self.rebind = Rebind::Off;
    }

    /// The WHEP resource of this session (what a switch is posted to).
    pub fn location(&self) -> Option<&str> {
        self.cfg.remote.location.as_deref()
    }

    /// Swipe mode: the `--switch-streams` index to switch to now, if a
    /// switch is due (the caller sends the request, off this thread, and
    /// reports with [`switch_answered`](Self::switch_answered)).
    pub fn poll_switch(&mut self, now: Instant) -> Option<usize> {
        if self.phase != Phase::Connected {
            return None;
        }
        self.swiper.as_mut()?.poll_switch(now)
    }

    /// The switch request sent at `sent` got `outcome` at `answered`.
    pub fn switch_answered(&mut self, sent: Instant, answered: Instant, outcome: SwitchOutcome) {
        if let Some(s) = &mut self.swiper {
            s.on_answer(sent, answered, outcome);
        }
    }

    /// One datagram from the server. `wall_us` is the UNIX time in µs at
    /// arrival (for the SEI latency); `d` may be decrypted in place. Sends
    /// the feedback it caused (NACKs) at once.
    pub fn handle_datagram(&mut self, now: Instant, wall_us: u64, d: &mut [u8], out: &mut Vec<Vec<u8>>) {
        let len = d.len();
        self.handle_head(now, wall_us, d, len, out);
        self.flush_feedback(now, out);
    }

    /// The head of a coalesced (UDP_GRO) datagram of `len` bytes made of
    /// `segment`-byte datagrams, for a light viewer: one GSO send of the
    /// server, i.e. consecutive RTP packets of one SSRC (the sender wrote
    /// them in one message). Each is counted with its length and the
    /// sequence number that follows the first one's; only the first
    /// header was read. Verified viewers read every packet whole instead.
    pub fn handle_coalesced_head(&mut self, now: Instant, wall_us: u64, d: &mut [u8], len: usize, segment: usize, out: &mut Vec<Vec<u8>>) {
        if segment == 0 || d.len() < 12 || classify(d) != PacketKind::Rtp {
            return self.handle_head(now, wall_us, d, len, out);
        }
        let n = len.div_ceil(segment);
        let first = u16::from_be_bytes([d[2], d[3]]);
        let mut head = [0u8; 12];
        head.copy_from_slice(&d[..12]);
        for k in 0..n {
            let plen = if k + 1 == n { len - segment * (n - 1) } else { segment };
            head[2..4].copy_from_slice(&first.wrapping_add(k as u16).to_be_bytes());
            self.handle_head(now, wall_us, &mut head, plen, out);
        }
    }

    /// Like [`handle_datagram`](Self::handle_datagram) with only the first
    /// bytes of a `len`-byte datagram (see [`headers_only`](Self::headers_only)).
    /// A cut RTP/RTCP packet is counted by `len`; a cut STUN or DTLS message
    /// cannot be read and is dropped (counted in `truncated`). Feedback it
    /// causes waits for [`flush_feedback`](Self::flush_feedback).
    pub fn handle_head(&mut self, now: Instant, wall_us: u64, d: &mut [u8], len: usize, out: &mut Vec<Vec<u8>>) {
        let cut = d.len() < len;
        self.wall_ref = Some((now, wall_us));
        match classify(d) {
            PacketKind::Rtp if self.phase == Phase::Connected && !(cut && self.cfg.verified) => {
                self.on_rtp(now, wall_us, d, len)
            }
            PacketKind::Rtcp if self.phase == Phase::Connected => {
                self.tally.packets += 1;
                self.tally.bytes += len as u64;
                if !cut {
                    self.on_rtcp(now, d);
                }
            }
            _ if cut => self.tally.truncated += 1,
            PacketKind::Stun => {
                // Every UDP payload byte from the server counts (as the
                // server's traffic records count them).
                self.tally.bytes += len as u64;
                self.on_stun(now, d, out)
            }
            // We serve DTLS and the peer finished its checks before our own
            // check's response arrived: its ClientHello proves the path.
            PacketKind::Dtls if self.phase == Phase::Ice && self.dtls.role() == Role::Server => {
                self.tally.bytes += len as u64;
                self.enter_dtls(now, out);
                let _ = self.dtls.handle_datagram(d, now);
                self.drain_dtls(now, out);
            }
            PacketKind::Dtls if matches!(self.phase, Phase::Dtls | Phase::Connected) => {
                self.tally.bytes += len as u64;
                // Malformed records are the peer's problem; the handshake timer still runs.
                let _ = self.dtls.handle_datagram(d, now);
                self.drain_dtls(now, out);
            }
            _ => {}
        }
    }

    /// Sends what the datagrams since the last call made due: NACKs for
    /// newly missing video packets (and retries, give-ups and a PLI that
    /// are due). The worker calls it after each socket's receive batch.
    pub fn flush_feedback(&mut self, now: Instant, out: &mut Vec<Vec<u8>>) {
        if self.phase != Phase::Connected {
            return;
        }
        let mut lost = std::mem::take(&mut self.lost_buf);
        lost.clear();
        self.nack.poll(now, &mut lost);
        if let Some(media) = self.video_ssrc.filter(|_| !lost.is_empty()) {
            // A compound packet (RFC 4585): a receiver report first, so the
            // server's RTT estimate (LSR/DLSR) is fresh when retries come;
            // otherwise it assumes 100 ms, our retry interval, and may refuse
            // a retry as too early during the first second.
            let blocks = self.report_blocks(now);
            for chunk in lost.chunks(NACK_CHUNK) {
                let mut plain = [0u8; 1024];
                let Ok(n) = rts_rtp::rtcp::write_receiver_report(&mut plain, self.sender_ssrc, &blocks) else { break };
                if let Ok(m) = rts_rtp::rtcp::write_nack(&mut plain[n..], self.sender_ssrc, media, chunk) {
                    self.send_rtcp(&plain[..n + m], out);
                }
            }
        }
        self.lost_buf = lost;
        // A given-up packet leaves the decoder without a reference: ask for a keyframe.
        if self.nack.take_keyframe_wanted() && self.cfg.nack && self.last_pli.is_none_or(|t| now >= t + PLI_INTERVAL) {
            if let Some(media) = self.video_ssrc {
                let mut plain = [0u8; 12];
                if let Ok(n) = rts_rtp::rtcp::write_pli(&mut plain, self.sender_ssrc, media) {
                    self.send_rtcp(&plain[..n], out);
                    self.tally.plis_sent += 1;
                    self.last_pli = Some(now);
                }
            }
        }
        if self.verify.as_ref().is_some_and(|v| !v.reorder.is_empty()) {
            let wall = self.wall_at(now);
            self.drain_video(now, wall);
        }
    }

    /// Teardown: queue DTLS close_notify and stop.
    pub fn close(&mut self, now: Instant, out: &mut Vec<Vec<u8>>) {
        if self.is_done() {
            return;
        }
        if self.phase == Phase::Ice {
            // Never got as far as the server knowing us; not a failure.
            self.phase = Phase::Closed;
            return;
        }
        self.dtls.close();
        while let Some(d) = self.dtls.poll_datagram() {
            out.push(d);
        }
        self.end(now);
        self.phase = Phase::Closed;
    }

    /// Consumes the viewer, closing open accounting at `now`.
    pub fn finish(mut self, now: Instant) -> Tally {
        if self.phase == Phase::Connected {
            self.end(now);
        }
        self.tally
    }

    fn end(&mut self, now: Instant) {
        let Some(at) = self.connected_at.take() else { return };
        let secs = now.saturating_duration_since(at).as_secs_f64();
        self.tally.viewer_seconds += secs;
        for t in &self.tracks {
            let s = &t.seq;
            if self.cfg.verified {
                self.tally.expected += s.expected();
                self.tally.received += s.received;
                self.tally.duplicates += s.duplicates;
                self.tally.reordered += s.reordered;
                if t.audio {
                    self.tally.audio_lost += s.lost();
                }
            }
            self.tally.header_expected += s.expected();
            self.tally.header_received += s.received;
        }
        if let Some(s) = &mut self.swiper {
            s.finish(now);
            self.tally.switches.merge(std::mem::take(&mut s.stats));
        }
        let st = self.nack.stats;
        self.tally.nacks_sent += st.nacks_sent;
        self.tally.recovered += st.recovered;
        self.tally.recovered_after_retry += st.recovered_after_retry;
        self.tally.unrecovered += st.unrecovered;
        if let Some(v) = &mut self.verify {
            self.tally.verified_recovered += st.recovered;
            self.tally.verified_unrecovered += st.unrecovered;
            self.tally.audio_recovered_by_red += v.red.recovered;
            v.stalls.finish(now);
            self.tally.stall_count += v.stalls.count;
            self.tally.stall_ms += v.stalls.total.as_secs_f64() * 1000.0;
            self.tally.verified_seconds += secs;
            // Fairness across viewers (issue 11): this viewer's own median
            // end-to-end delay; the tally holds only its samples until merged.
            if let Some(m) = crate::stats::median(&mut self.tally.e2e_ms.clone()) {
                self.tally.e2e_viewer_median_ms.push(m);
            }
        }
    }

    fn fail(&mut self, kind: FailureKind) {
        self.phase = Phase::Failed(kind);
        self.tally.fail(kind);
    }

    fn send_check(&mut self, now: Instant, out: &mut Vec<Vec<u8>>) {
        let tid: [u8; 12] = rand::random();
        self.pending[self.pending_at % self.pending.len()] = (tid, Some(now));
        self.pending_at += 1;
        let req = BindingRequest {
            transaction_id: tid,
            username: &self.username,
            priority: PRFLX_PRIORITY,
            controlling: Some(self.tiebreaker),
            use_candidate: true,
        };
        let mut buf = [0u8; 256];
        if let Ok(n) = rts_stun::write_binding_request(&req, self.cfg.remote.pwd.as_bytes(), &mut buf) {
            out.push(buf[..n].to_vec());
        }
    }

    fn on_stun(&mut self, now: Instant, d: &[u8], out: &mut Vec<Vec<u8>>) {
        let Ok(m) = StunMessage::parse(d) else { return };
        if m.method != METHOD_BINDING {
            return;
        }
        if m.class == Class::Request {
            return self.answer_check(&m, out);
        }
        let sent = self.pending.iter().find(|(t, _)| *t == m.transaction_id && *t != [0; 12]).map(|(_, at)| *at);
        if m.class != Class::SuccessResponse || sent.is_none() {
            return;
        }
        if !m.verify_integrity(self.cfg.remote.pwd.as_bytes()) {
            return;
        }
        if let Some(at) = sent.flatten() {
            self.tally.stun_rtt_ms.push(ms(now.saturating_duration_since(at)));
        }
        if m.xor_mapped_address.is_some() {
            self.mapped = m.xor_mapped_address;
        }
        match self.phase {
            Phase::Ice => self.enter_dtls(now, out),
            Phase::Connected => {
                if let Rebind::Moved { confirmed: c @ false, from, .. } = &mut self.rebind {
                    *c = true;
                    self.next_check = now + CONSENT_INTERVAL;
                    if m.xor_mapped_address.is_some_and(|a| Some(a) != *from) {
                        self.tally.rebinds_moved += 1;
                    }
                }
            }
            _ => {}
        }
    }

    /// A full-ICE peer (not lite) checks connectivity towards us too, and
    /// later sends consent-freshness requests (RFC 7675): answer each one
    /// addressed to our ufrag and keyed with our password. The mapped address
    /// is where the request came from (the socket is connected to `dest`).
    fn answer_check(&mut self, m: &StunMessage<'_>, out: &mut Vec<Vec<u8>>) {
        let to_us = m.username.and_then(|u| u.split_once(':')).is_some_and(|(to, _)| to == self.cfg.local_ufrag);
        if !to_us || !m.verify_integrity(self.cfg.local_pwd.as_bytes()) {
            return;
        }
        let mut buf = [0u8; 128];
        if let Ok(n) = rts_stun::write_binding_success(&m.transaction_id, self.cfg.dest, self.cfg.local_pwd.as_bytes(), &mut buf) {
            out.push(buf[..n].to_vec());
            self.tally.checks_answered += 1;
        }
    }

    /// ICE is done: start DTLS (the client sends its ClientHello now; the
    /// server waits for the peer's).
    fn enter_dtls(&mut self, now: Instant, out: &mut Vec<Vec<u8>>) {
        self.phase = Phase::Dtls;
        self.phase_deadline = now + self.cfg.dtls_timeout;
        if self.dtls.start(now).is_err() {
            return self.fail(FailureKind::DtlsFailed);
        }
        self.drain_dtls(now, out);
    }

    fn drain_dtls(&mut self, now: Instant, out: &mut Vec<Vec<u8>>) {
        while let Some(d) = self.dtls.poll_datagram() {
            out.push(d);
        }
        while let Some(ev) = self.dtls.poll_event() {
            match ev {
                DtlsEvent::Connected(export) if self.phase == Phase::Dtls => self.on_connected(now, &export),
                // A second handshake on the same session (must not happen): counted.
                DtlsEvent::Connected(_) => self.tally.dtls_handshakes += 1,
                DtlsEvent::Closed => {
                    if self.phase == Phase::Connected {
                        self.tally.server_closed += 1;
                        self.end(now);
                        self.phase = Phase::Closed;
                    } else {
                        self.fail(FailureKind::DtlsFailed);
                    }
                }
                DtlsEvent::Failed(_) => {
                    if self.phase == Phase::Connected {
                        self.end(now);
                        self.phase = Phase::Closed;
                    } else {
                        self.fail(FailureKind::DtlsFailed);
                    }
                }
            }
        }
    }

    fn on_connected(&mut self, now: Instant, export: &SrtpExport) {
        self.tally.dtls_handshakes += 1;
        if !export.peer_fingerprint_sha256.eq_ignore_ascii_case(&self.cfg.remote.fingerprint) {
            self.dtls.close();
            return self.fail(FailureKind::FingerprintMismatch);
        }
        let Some(keys) = Profile::from_dtls_id(export.profile_id)
            .and_then(|p| KeyingMaterial::from_exported(p, &export.material, self.dtls.role() == Role::Server).ok())
        else {
            return self.fail(FailureKind::SrtpFailed);
        };
        let (Ok(tx), Ok(rx)) = (
            SrtpContext::new(keys.profile, &keys.local_key, &keys.local_salt),
            SrtpContext::new(keys.profile, &keys.remote_key, &keys.remote_salt),
        ) else {
            return self.fail(FailureKind::SrtpFailed);
        };
        if self.cfg.verified {
            self.verify = Some(Verify {
                depack: H264Depacketizer::new(),
                reorder: ReorderBuffer::new(),
                red: RedAudio::default(),
                stalls: StallDetector::new(STALL_THRESHOLD),
                jitter: FrameJitter::default(),
                first_frame_at: None,
                last_marker: true,
                restart_at: None,
                frame_start: None,
                prev_frame_start: None,
            });
            self.tally.verified = 1;
            if let Some(after) = self.cfg.rebind_after {
                self.rebind = Rebind::Due(now + after);
            }
        }
        self.tx = Some(tx);
        self.rx = Some(rx);
        self.phase = Phase::Connected;
        self.connected_at = Some(now);
        self.tally.connected = 1;
        self.next_check = now + CONSENT_INTERVAL;
        self.next_rr = now + RR_INTERVAL;
        if let Some(s) = &mut self.swiper {
            s.start(now);
        }
    }

    /// Light path: header fields only (`d` may be just the head of a
    /// `len`-byte packet); RTX payloads are decrypted while packets are
    /// missing. Verified path: decrypt, repair, then frames.
    fn on_rtp(&mut self, now: Instant, wall_us: u64, d: &mut [u8], len: usize) {
        if self.dropper.as_mut().is_some_and(Dropper::drop_next) {
            self.tally.dropped += 1;
            return;
        }
        self.tally.packets += 1;
        self.tally.bytes += len as u64;
        if d.len() < 12 {
            return;
        }
        // SRTP leaves the RTP header in the clear: type, sequence and SSRC are free.
        let pt = d[1] & 0x7f;
        let ssrc = u32::from_be_bytes([d[8], d[9], d[10], d[11]]);
        let remote = &self.cfg.remote;
        let rtx = remote.rtx_pt == Some(pt) && remote.rtx_ssrc.is_none_or(|r| r == ssrc);
        let video = remote.h264_pt == Some(pt);
        let audio = remote.opus_pt == Some(pt) || remote.red_pt == Some(pt);
        if rtx {
            self.tally.retransmissions += 1;
        }
        if self.verify.is_none() {
            if rtx {
                // Which packet came back is inside the encrypted payload.
                if d.len() == len && self.nack.outstanding() > 0 {
                    if let Some(osn) = self.rx.as_mut().and_then(|rx| rx.unprotect_rtp(d).ok()).and_then(|n| rtx_osn(&d[..n])) {
                        self.on_video_seq(now, osn, true);
                    }
                }
                return;
            }
            let seq = u16::from_be_bytes([d[2], d[3]]);
            track(&mut self.tracks, ssrc, seq, audio);
            if video {
                self.video_ssrc.get_or_insert(ssrc);
                self.on_video_seq(now, seq, false);
            }
            return;
        }
        let Some(n) = self.rx.as_mut().and_then(|rx| rx.unprotect_rtp(d).ok()) else {
            self.tally.srtp_errors += 1;
            return;
        };
        let Ok(h) = RtpHeader::parse(&d[..n]) else { return };
        let payload = h.payload(&d[..n]);
        if rtx {
            if let Some((osn, inner)) = repair::unwrap_rtx(payload) {
                self.on_video(now, wall_us, osn, h.timestamp, h.marker, inner, true);
            }
            return;
        }
        track(&mut self.tracks, h.ssrc, h.sequence, audio);
        if audio {
            if let (Some(red), Some(opus)) = (self.cfg.remote.red_pt, self.cfg.remote.opus_pt) {
                if h.payload_type == red {
                    if let Some(v) = &mut self.verify {
                        v.red.on_packet(h.timestamp, payload, opus);
                    }
                }
            }
            return;
        }
        if !video {
            return;
        }
        self.video_ssrc.get_or_insert(h.ssrc);
        if let Some(id) = self.cfg.remote.playout_delay_id {
            let d = rts_rtp::hdrext::one_byte_extension(&d[..n], &h, id).and_then(rts_rtp::hdrext::PlayoutDelay::parse);
            if let Some(d) = d {
                self.tally.playout_delay_packets += 1;
                if h.marker {
                    // One sample per frame, like the jitter samples.
                    self.tally.playout_delay_min_ms.push(f64::from(d.min) * 10.0);
                }
            }
        }
        self.on_video(now, wall_us, h.sequence, h.timestamp, h.marker, payload, false);
    }

    /// A video sequence number arrived (light viewers, and the first step
    /// of the verified path); returns its extended number and meaning.
    fn on_video_seq(&mut self, now: Instant, seq: u16, via_rtx: bool) -> (u64, Arrival) {
        let (ext, arrival) = self.nack.on_packet(now, seq);
        match arrival {
            Arrival::Recovered if via_rtx => self.rtx_recovered += 1,
            // The same number again, after it was missing: a plain retransmission.
            Arrival::Recovered | Arrival::RepeatedRecovery if !via_rtx => self.tally.retransmissions += 1,
            _ => {}
        }
        (ext, arrival)
    }

    /// Verified video packet (original or unwrapped RTX): through the
    /// reorder buffer into the depacketizer.
    #[allow(clippy::too_many_arguments)]
    fn on_video(&mut self, now: Instant, wall_us: u64, seq: u16, ts: u32, marker: bool, payload: &[u8], via_rtx: bool) {
        let (ext, _) = self.on_video_seq(now, seq, via_rtx);
        let Some(v) = &mut self.verify else { return };
        match v.reorder.place(ext) {
            Slot::Now => self.release(now, wall_us, seq, ts, marker, payload),
            Slot::Hold => v.reorder.hold(ext, Held { seq, timestamp: ts, marker, payload: payload.to_vec() }),
            Slot::Late => {}
        }
        self.drain_video(now, wall_us);
    }

    /// Releases what the reorder buffer may release now. A complete
    /// keyframe held behind a gap open for [`KEYFRAME_SKIP_AFTER`] ends the
    /// wait for what lies before it (a decoder restarts from it; the
    /// server sends one when it cannot repair).
    fn drain_video(&mut self, now: Instant, wall_us: u64) {
        loop {
            let Some(v) = &mut self.verify else { return };
            if v.reorder.is_empty() {
                return;
            }
            let waited = self.nack.oldest_missing_since().is_some_and(|t| now >= t + KEYFRAME_SKIP_AFTER);
            if waited {
                if let Some(k) = v.reorder.held_keyframe(repair::starts_keyframe) {
                    self.nack.give_up_before(k);
                    v.restart_at = Some(k);
                }
            }
            let nack = &self.nack;
            let Some((ext, p)) = v.reorder.pop(|e| nack.is_missing(e)) else { return };
            if v.restart_at == Some(ext) {
                // A decoder restarts at the keyframe; a frame left open before the gap is lost.
                v.restart_at = None;
                if !v.last_marker {
                    self.tally.frames_incomplete += 1;
                }
                v.depack = H264Depacketizer::new();
            }
            self.release(now, wall_us, p.seq, p.timestamp, p.marker, &p.payload);
        }
    }

    /// One packet, in order, into the depacketizer; frames out are counted.
    fn release(&mut self, now: Instant, wall_us: u64, seq: u16, ts: u32, marker: bool, payload: &[u8]) {
        let Some(v) = &mut self.verify else { return };
        if v.last_marker || v.frame_start.is_none_or(|(t, _)| t != ts) {
            v.prev_frame_start = v.frame_start;
            v.frame_start = Some((ts, now));
        }
        v.last_marker = marker;
        let h = RtpHeader { sequence: seq, timestamp: ts, marker, ..Default::default() };
        let mut frame = v.depack.push(&h, payload);
        while let Some(f) = frame {
            if f.complete {
                self.tally.frames += 1;
                v.stalls.on_frame(now);
                if let Some(j) = v.jitter.on_frame(now, f.timestamp, VIDEO_CLOCK) {
                    self.tally.jitter_ms.push(j);
                }
                // The first frame a player can show: a keyframe (a P-frame
                // before any keyframe decodes to nothing).
                if v.first_frame_at.is_none() && f.keyframe {
                    v.first_frame_at = Some(now);
                    if let Some(at) = self.connected_at {
                        self.tally.first_frame_ms.push(ms(now.saturating_duration_since(at)));
                    }
                    self.tally.first_frame_from_signaling_ms.push(ms(now.saturating_duration_since(self.cfg.signaling_started)));
                }
                if let Rebind::Moved { at, resumed: r @ false, .. } = &mut self.rebind {
                    *r = true;
                    self.tally.rebind_gap_ms.push(ms(now.saturating_duration_since(*at)));
                }
                if sei::has_user_data(&f.nalus) {
                    self.tally.frames_with_user_data += 1;
                }
                if let Some(s) = self.swiper.as_mut().filter(|_| f.keyframe) {
                    let began = [v.frame_start, v.prev_frame_start].into_iter().flatten().find(|(t, _)| *t == f.timestamp);
                    s.on_keyframe(began.map_or(now, |(_, at)| at), now);
                }
                // After a switch, like after the first frame, the GOP-cache replay comes first.
                let settled = self.swiper.as_ref().is_none_or(|s| s.settled(now, LATENCY_WARMUP));
                let warm = settled && v.first_frame_at.is_some_and(|t| now.saturating_duration_since(t) >= LATENCY_WARMUP);
                if let Some(stamp) = sei::find_timestamp(&f.nalus).filter(|_| warm) {
                    // Stamps from the future or older than an hour mean unsynced clocks: skip.
                    if let Some(d) = wall_us.checked_sub(stamp).filter(|d| *d < 3_600_000_000) {
                        self.tally.e2e_ms.push(d as f64 / 1000.0);
                    }
                }
            } else {
                self.tally.frames_incomplete += 1;
            }
            frame = v.depack.poll_frame();
        }
    }

    /// SRTCP from the server: sender reports give the LSR/DLSR our
    /// receiver reports carry (the server's RTT measurement).
    fn on_rtcp(&mut self, now: Instant, d: &mut [u8]) {
        let Some(n) = self.rx.as_mut().and_then(|rx| rx.unprotect_rtcp(d).ok()) else {
            if self.cfg.verified {
                self.tally.srtp_errors += 1;
            }
            return;
        };
        for p in rts_rtp::rtcp::iter_compound(&d[..n]).flatten() {
            if p.pt != rts_rtp::rtcp::PT_SR || p.body.len() < 12 {
                continue;
            }
            let ssrc = u32::from_be_bytes([p.body[0], p.body[1], p.body[2], p.body[3]]);
            // Middle 32 bits of the 64-bit NTP timestamp.
            let lsr = u32::from_be_bytes([p.body[6], p.body[7], p.body[8], p.body[9]]);
            if let Some(e) = self.last_sr.iter_mut().find(|(s, ..)| *s == ssrc) {
                *e = (ssrc, lsr, now);
            } else if self.last_sr.len() < MAX_TRACKED_SSRCS {
                if self.last_sr.is_empty() {
                    // The first SR: report at once, so the server knows our RTT
                    // within the first NACK round rather than after a second.
                    self.next_rr = now;
                }
                self.last_sr.push((ssrc, lsr, now));
            }
        }
    }

    /// UNIX µs at `now`, from the last wall-clock reading.
    fn wall_at(&self, now: Instant) -> u64 {
        self.wall_ref.map_or(0, |(at, us)| us + now.saturating_duration_since(at).as_micros() as u64)
    }

    fn send_rtcp(&mut self, plain: &[u8], out: &mut Vec<Vec<u8>>) {
        let Some(tx) = &mut self.tx else { return };
        let mut sealed = vec![0u8; plain.len() + 64];
        if let Ok(len) = tx.protect_rtcp(plain, &mut sealed) {
            sealed.truncate(len);
            out.push(sealed);
        }
    }

    /// A receiver report as a browser sends it: per media SSRC the loss
    /// (after repair: packets recovered through RTX count as received),
    /// fraction lost since the last report, and LSR/DLSR of the last sender
    /// report, from which the server computes our RTT.
    fn send_rr(&mut self, now: Instant, out: &mut Vec<Vec<u8>>) {
        let blocks = self.report_blocks(now);
        let mut plain = [0u8; 1024];
        let Ok(n) = rts_rtp::rtcp::write_receiver_report(&mut plain, self.sender_ssrc, &blocks) else { return };
        let Ok(m) = rts_rtp::rtcp::write_sdes_cname(&mut plain[n..], self.sender_ssrc, "rts-loadgen") else { return };
        self.send_rtcp(&plain[..n + m], out);
    }

    /// Report blocks for the media SSRCs as of `now` (starts a new
    /// fraction-lost interval).
    fn report_blocks(&mut self, now: Instant) -> Vec<rts_rtp::rtcp::ReportBlock> {
        let video = self.video_ssrc;
        let rtx_recovered = self.rtx_recovered;
        let last_sr = &self.last_sr;
        self.tracks
            .iter_mut()
            .take(31)
            .map(|t| {
                let expected = t.seq.expected();
                let received = t.seq.received + if Some(t.ssrc) == video { rtx_recovered } else { 0 };
                let (e0, r0) = t.reported;
                t.reported = (expected, received);
                let (de, dr) = (expected.saturating_sub(e0), received.saturating_sub(r0));
                let fraction_lost = (de.saturating_sub(dr) * 256).checked_div(de).map_or(0, |f| f.min(255) as u8);
                let (lsr, dlsr) = last_sr.iter().find(|(s, ..)| *s == t.ssrc).map_or((0, 0), |&(_, lsr, at)| {
                    (lsr, (now.saturating_duration_since(at).as_micros() * 65_536 / 1_000_000) as u32)
                });
                rts_rtp::rtcp::ReportBlock {
                    ssrc: t.ssrc,
                    fraction_lost,
                    cumulative_lost: i32::try_from(expected.saturating_sub(received)).unwrap_or(i32::MAX),
                    highest_seq: t.seq.extended_highest(),
                    lsr,
                    dlsr,
                    ..Default::default()
                }
            })
            .collect()
    }
}

/// The original sequence number inside a decrypted RTX packet.
fn rtx_osn(packet: &[u8]) -> Option<u16> {
    let h = RtpHeader::parse(packet).ok()?;
    repair::unwrap_rtx(h.payload(packet)).map(|(osn, _)| osn)
}

fn track(tracks: &mut Vec<Track>, ssrc: u32, seq: u16, audio: bool) {
    if let Some(t) = tracks.iter_mut().find(|t| t.ssrc == ssrc) {
        t.seq.push(seq);
    } else if tracks.len() < MAX_TRACKED_SSRCS {
        let mut s = SeqTracker::default();
        s.push(seq);
        tracks.push(Track { ssrc, seq: s, audio, reported: (0, 0) });
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use rts_dtls::{DtlsCert, Role};

    const PWD: &str = "serverpassword0123456789";
    const MY_PWD: &str = "viewerpassword0123456789";
    const VIDEO_SSRC: u32 = 0x1234_5678;
    const RTX_SSRC: u32 = 0x2222_0000;

    struct FakeServer {
        dtls: DtlsEndpoint,
        srtp: Option<SrtpContext>,
        /// Decrypts the viewer's SRTCP.
        rx: Option<SrtpContext>,
    }

    fn setup(verified: bool, fingerprint: Option<String>) -> (Viewer, FakeServer, Instant) {
        setup_with(verified, fingerprint, |_| {})
    }

    fn setup_with(verified: bool, fingerprint: Option<String>, adjust: impl FnOnce(&mut ViewerConfig)) -> (Viewer, FakeServer, Instant) {
        let client_cert = DtlsCert::generate().unwrap();
        let server_cert = DtlsCert::generate().unwrap();
        let cctx = DtlsContext::new(&client_cert, Role::Client).unwrap();
        let sctx = DtlsContext::new(&server_cert, Role::Server).unwrap();
        let now = Instant::now();
        let cfg = ViewerConfig {
            remote: Remote {
                addr: "127.0.0.1:9".parse().unwrap(),
                addr6: None,
                ufrag: "srv".into(),
                pwd: PWD.into(),
                fingerprint: fingerprint.unwrap_or_else(|| server_cert.fingerprint_sha256()),
                h264_pt: Some(102),
                playout_delay_id: None,
                video_ssrc: Some(VIDEO_SSRC),
                rtx_pt: Some(103),
                rtx_ssrc: Some(RTX_SSRC),
                opus_pt: Some(111),
                red_pt: Some(63),
                location: None,
                dtls_server: false,
                ice_lite: true,
            },
            local_ufrag: "me".into(),
            local_pwd: MY_PWD.into(),
            dest: "127.0.0.1:9".parse().unwrap(),
            verified,
            signaling_started: now,
            ice_timeout: Duration::from_secs(10),
            dtls_timeout: Duration::from_secs(10),
            nack: true,
            drop_pct: 0.0,
            drop_seed: 1,
            rebind_after: None,
            swipe: None,
        };
        let mut cfg = cfg;
        adjust(&mut cfg);
        let v = Viewer::new(&cctx, cfg, now).unwrap();
        (v, FakeServer { dtls: DtlsEndpoint::new(&sctx).unwrap(), srtp: None, rx: None }, now)
    }

    /// Delivers viewer→server datagrams (answering STUN like an ICE-lite server)
    /// and server→viewer datagrams until both sides are quiet.
    fn exchange(v: &mut Viewer, s: &mut FakeServer, now: Instant, out: &mut Vec<Vec<u8>>) {
        for _ in 0..20 {
            let mut back = Vec::new();
            for d in out.drain(..) {
                match classify(&d) {
                    PacketKind::Stun => {
                        let m = StunMessage::parse(&d).unwrap();
                        assert_eq!(m.username, Some("srv:me"));
                        assert!(m.use_candidate && m.ice_controlling.is_some());
                        assert!(m.verify_integrity(PWD.as_bytes()));
                        let mut b = [0u8; 128];
                        let n = rts_stun::write_binding_success(&m.transaction_id, "127.0.0.1:5000".parse().unwrap(), PWD.as_bytes(), &mut b).unwrap();
                        back.push(b[..n].to_vec());
                    }
                    PacketKind::Dtls => {
                        s.dtls.handle_datagram(&d, now).unwrap();
                        while let Some(x) = s.dtls.poll_datagram() {
                            back.push(x);
                        }
                        while let Some(ev) = s.dtls.poll_event() {
                            if let DtlsEvent::Connected(e) = ev {
                                let p = Profile::from_dtls_id(e.profile_id).unwrap();
                                let k = KeyingMaterial::from_exported(p, &e.material, true).unwrap();
                                s.srtp = Some(SrtpContext::new(p, &k.local_key, &k.local_salt).unwrap());
                                s.rx = Some(SrtpContext::new(p, &k.remote_key, &k.remote_salt).unwrap());
                            }
                        }
                    }
                    _ => {}
                }
            }
            if back.is_empty() {
                return;
            }
            for mut d in back {
                v.handle_datagram(now, 0, &mut d, out);
            }
        }
    }

    fn rtp(s: &mut FakeServer, seq: u16, ts: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
        packet(s, VIDEO_SSRC, 102, seq, ts, marker, payload)
    }

    /// An SRTP packet from the fake server.
    fn packet(s: &mut FakeServer, ssrc: u32, pt: u8, seq: u16, ts: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
        let mut hdr = vec![0x80, if marker { 0x80 | pt } else { pt }];
        hdr.extend_from_slice(&seq.to_be_bytes());
        hdr.extend_from_slice(&ts.to_be_bytes());
        hdr.extend_from_slice(&ssrc.to_be_bytes());
        let mut out = vec![0u8; hdr.len() + payload.len() + 64];
        let n = s.srtp.as_mut().unwrap().protect_rtp(&hdr, payload, &mut out).unwrap();
        out.truncate(n);
        out
    }

    #[test]
    fn ice_dtls_srtp_then_frames_and_loss() {
        // Without NACK (--no-nack): a gap is skipped at once.
        let (mut v, mut s, now) = setup_with(true, None, |c| c.nack = false);
        let mut out = Vec::new();
        v.handle_timeout(now, &mut out);
        assert_eq!(out.len(), 1, "first connectivity check");
        exchange(&mut v, &mut s, now, &mut out);
        assert_eq!(v.phase(), Phase::Connected);
        // One-packet frames; seq 3 is lost (so frame 4 is incomplete); 110 -> 510 ms is a stall.
        let t = |ms| now + Duration::from_millis(ms);
        let idr = [0x65, 0x88, 0x84, 0x00];
        for (seq, ts, at) in [(1u16, 0u32, 10u64), (2, 9000, 110), (4, 27000, 300), (5, 45000, 510)] {
            let mut d = rtp(&mut s, seq, ts, true, &idr);
            v.handle_datagram(t(at), 0, &mut d, &mut out);
        }
        assert_eq!(v.live_stalls(), 1);
        v.handle_timeout(t(1000), &mut out);
        assert!(out.iter().any(|d| classify(d) == PacketKind::Rtcp), "receiver report sent");
        let tally = v.finish(t(1000));
        assert_eq!((tally.connected, tally.verified, tally.frames, tally.frames_incomplete), (1, 1, 3, 1));
        assert_eq!((tally.expected, tally.received), (5, 4));
        assert_eq!(tally.stall_count, 2, "510 -> 1000 is still frozen at the end");
        assert_eq!(tally.first_frame_ms.len(), 1);
    }

    #[test]
    fn the_first_frame_is_the_first_keyframe() {
        let (mut v, mut s, now) = setup_with(true, None, |c| c.nack = false);
        let mut out = Vec::new();
        v.handle_timeout(now, &mut out);
        exchange(&mut v, &mut s, now, &mut out);
        let t = |ms| now + Duration::from_millis(ms);
        // A complete P-frame (NAL type 1) 10 ms after DTLS: a player shows
        // nothing before a keyframe, which comes at 50 ms.
        let mut d = rtp(&mut s, 1, 0, true, &[0x41, 0x9a, 0x00]);
        v.handle_datagram(t(10), 0, &mut d, &mut out);
        let mut d = rtp(&mut s, 2, 3000, true, &[0x65, 0x88, 0x84, 0x00]);
        v.handle_datagram(t(50), 0, &mut d, &mut out);
        let tally = v.finish(t(100));
        assert_eq!(tally.frames, 2);
        assert_eq!(tally.first_frame_ms, vec![50.0], "from DTLS to the keyframe, not to the P-frame");
    }

    #[test]
    fn latency_samples_skip_the_gop_cache_replay() {
        let (mut v, mut s, now) = setup_with(true, None, |_| {});
        let mut out = Vec::new();
        v.handle_timeout(now, &mut out);
        exchange(&mut v, &mut s, now, &mut out);
        assert_eq!(v.phase(), Phase::Connected);
        let t = |ms| now + Duration::from_millis(ms);
        let wall = 1_700_000_000_000_000u64; // the wall clock at `now`, µs
        let idr = [0x65, 0x88, 0x84, 0x00];
        // (RTP time, arrival ms, the stamp's age at arrival ms): two frames
        // of the GOP-cache replay (2 s and 1.967 s old, 2 ms apart), then a
        // live frame 1.5 s later, 20 ms old.
        for (i, (ts, at, age)) in [(0u32, 10u64, 2_000u64), (3_000, 12, 1_967), (135_000, 1_510, 20)].into_iter().enumerate() {
            let seq = 1 + 2 * i as u16;
            let arrival = wall + at * 1_000;
            let mut d = rtp(&mut s, seq, ts, false, &crate::sei::tests::sei_nal(arrival - age * 1_000, &[]));
            v.handle_datagram(t(at), arrival, &mut d, &mut out);
            let mut d = rtp(&mut s, seq + 1, ts, true, &idr);
            v.handle_datagram(t(at), arrival, &mut d, &mut out);
        }
        let tally = v.finish(t(1_600));
        assert_eq!(tally.frames, 3);
        assert_eq!(tally.e2e_ms, vec![20.0], "only the live frame's delay");
    }

    /// The RTCP the viewer queued in `out` (drained), decrypted by the fake server.
    fn feedback(s: &mut FakeServer, out: &mut Vec<Vec<u8>>) -> Vec<rts_rtp::rtcp::RtcpPacket> {
        let mut pkts = Vec::new();
        for mut d in out.drain(..).filter(|d| classify(d) == PacketKind::Rtcp) {
            let n = s.rx.as_mut().unwrap().unprotect_rtcp(&mut d).unwrap();
            pkts.extend(rts_rtp::rtcp::parse_compound(&d[..n]).unwrap());
        }
        pkts
    }

    fn nacked(pkts: &[rts_rtp::rtcp::RtcpPacket]) -> Vec<u16> {
        pkts.iter()
            .flat_map(|p| match p {
                rts_rtp::rtcp::RtcpPacket::Nack { media_ssrc, lost, .. } => {
                    assert_eq!(*media_ssrc, VIDEO_SSRC);
                    lost.clone()
                }
                _ => Vec::new(),
            })
            .collect()
    }

    fn connected(verified: bool, adjust: impl FnOnce(&mut ViewerConfig)) -> (Viewer, FakeServer, Instant) {
        let (mut v, mut s, now) = setup_with(verified, None, adjust);
        let mut out = Vec::new();
        v.handle_timeout(now, &mut out);
        exchange(&mut v, &mut s, now, &mut out);
        assert_eq!(v.phase(), Phase::Connected);
        (v, s, now)
    }

    // One frame of two FU-A packets (start, end), and single-NAL P slices.
    const FU_START: [u8; 3] = [0x7c, 0x81, 0xaa];
    const FU_END: [u8; 3] = [0x7c, 0x41, 0xbb];
    const SLICE: [u8; 2] = [0x41, 0xcc];

    /// A gap is NACKed at once and again after 100 ms; the RTX packet
    /// (original sequence number first) completes the held frame; its
    /// second copy counts as a retransmission but not as a second recovery.
    #[test]
    fn verified_viewer_nacks_and_rtx_repairs_the_frame() {
        let (mut v, mut s, now) = connected(true, |_| {});
        let t = |ms| now + Duration::from_millis(ms);
        let mut out = Vec::new();
        let mut d = rtp(&mut s, 1, 0, true, &SLICE);
        v.handle_datagram(t(0), 0, &mut d, &mut out);
        assert!(feedback(&mut s, &mut out).is_empty(), "nothing missing, nothing sent");
        let mut d = rtp(&mut s, 3, 3000, true, &FU_END); // 2 (FU start) lost
        v.handle_datagram(t(33), 0, &mut d, &mut out);
        assert_eq!(nacked(&feedback(&mut s, &mut out)), [2], "NACKed at once");
        let mut d = rtp(&mut s, 4, 6000, true, &SLICE);
        v.handle_datagram(t(66), 0, &mut d, &mut out);
        assert!(out.is_empty(), "no second NACK within 100 ms");
        assert_eq!(v.tally().frames, 1, "frames behind the gap wait");
        assert_eq!(v.poll_timeout(), Some(t(133)));
        v.handle_timeout(t(132), &mut out);
        assert!(nacked(&feedback(&mut s, &mut out)).is_empty());
        v.handle_timeout(t(133), &mut out);
        let fb = feedback(&mut s, &mut out);
        assert_eq!(nacked(&fb), [2], "retried after 100 ms");
        assert!(matches!(fb[0], rts_rtp::rtcp::RtcpPacket::ReceiverReport { .. }), "compound: RR first, {fb:?}");
        // The repair: RTX SSRC and sequence, original timestamp, payload = OSN + original payload.
        let mut rtx_payload = 2u16.to_be_bytes().to_vec();
        rtx_payload.extend_from_slice(&FU_START);
        for (k, at) in [(0u16, 140u64), (1, 141)] {
            let mut d = packet(&mut s, RTX_SSRC, 103, 700 + k, 3000, false, &rtx_payload);
            v.handle_datagram(t(at), 0, &mut d, &mut out);
        }
        assert_eq!((v.tally().frames, v.tally().frames_incomplete), (3, 0), "repaired frame and the one behind it");
        assert_eq!(v.nacks_outstanding(), 0);
        v.handle_timeout(t(300), &mut out);
        assert!(nacked(&feedback(&mut s, &mut out)).is_empty(), "recovered: no more NACKs");
        let tally = v.finish(t(300));
        assert_eq!((tally.nacks_sent, tally.retransmissions, tally.recovered, tally.unrecovered), (2, 2, 1, 0));
        assert_eq!((tally.verified_recovered, tally.verified_unrecovered), (1, 0));
        assert_eq!((tally.expected, tally.received), (4, 3), "the wire loss is still reported");
        assert_eq!(tally.stall_count, 0, "33 -> 140 ms without a frame is no stall");
    }

    /// A gap that is never repaired: 10 NACKs, given up at 1 s, one
    /// incomplete frame, a PLI; the frames held behind it come out.
    #[test]
    fn verified_viewer_gives_up_and_sends_a_pli() {
        let (mut v, mut s, now) = connected(true, |_| {});
        let t = |ms| now + Duration::from_millis(ms);
        let mut out = Vec::new();
        let mut nacks = Vec::new();
        let mut plis = 0;
        let mut seq = 1u16;
        for ms in (0..1300).step_by(10) {
            if ms % 30 == 0 {
                if seq == 3 {
                    seq += 1; // lost
                }
                let mut d = rtp(&mut s, seq, u32::from(seq) * 3000, true, &SLICE);
                v.handle_datagram(t(ms), 0, &mut d, &mut out);
                seq += 1;
            }
            v.handle_timeout(t(ms), &mut out);
            let fb = feedback(&mut s, &mut out);
            plis += fb.iter().filter(|p| matches!(p, rts_rtp::rtcp::RtcpPacket::Pli { .. })).count();
            nacks.extend(nacked(&fb));
        }
        assert_eq!(nacks, [3; 10]);
        assert_eq!(plis, 1);
        let tally = v.finish(t(1300));
        assert_eq!((tally.unrecovered, tally.recovered, tally.plis_sent), (1, 0, 1));
        assert_eq!(tally.frames_incomplete, 1, "the frame after the gap (its start may have been lost)");
        assert_eq!(tally.frames + tally.frames_incomplete, u64::from(seq) - 2, "every other frame released");
        assert_eq!(tally.stall_count, 1, "one stall, while the gap was awaited");
    }

    /// Without NACK nothing is asked for and nothing waits.
    #[test]
    fn no_nack_sends_nothing() {
        let (mut v, mut s, now) = connected(true, |c| c.nack = false);
        let mut out = Vec::new();
        for seq in [1u16, 3, 4] {
            let mut d = rtp(&mut s, seq, u32::from(seq) * 3000, true, &SLICE);
            v.handle_datagram(now, 0, &mut d, &mut out);
        }
        v.handle_timeout(now + Duration::from_secs(2), &mut out);
        assert!(feedback(&mut s, &mut out).iter().all(|p| !matches!(p, rts_rtp::rtcp::RtcpPacket::Nack { .. })));
        let tally = v.finish(now);
        assert_eq!((tally.nacks_sent, tally.frames, tally.frames_incomplete, tally.unrecovered), (0, 2, 1, 1));
    }

    /// Light viewers NACK from the clear headers; while a NACK is out they
    /// read whole datagrams and decrypt only RTX packets, for the OSN.
    #[test]
    fn light_viewer_nacks_and_learns_what_came_back() {
        let (mut v, mut s, now) = connected(false, |_| {});
        let mut out = Vec::new();
        assert!(v.headers_only());
        let payload = [0x41u8; 300];
        for seq in [10u16, 13] {
            let mut d = rtp(&mut s, seq, 0, true, &payload);
            let n = d.len();
            v.handle_head(now, 0, &mut d[..HEAD_BYTES], n, &mut out);
        }
        v.flush_feedback(now, &mut out);
        assert_eq!(nacked(&feedback(&mut s, &mut out)), [11, 12]);
        assert!(!v.headers_only(), "whole datagrams while repairs are awaited");
        // 11 comes back as RTX (read whole), 12 as RTX seen only through its head.
        let mut osn = 11u16.to_be_bytes().to_vec();
        osn.extend_from_slice(&payload);
        let mut d = packet(&mut s, RTX_SSRC, 103, 50, 0, true, &osn);
        v.handle_datagram(now, 0, &mut d, &mut out);
        assert_eq!(v.nacks_outstanding(), 1);
        let mut osn = 12u16.to_be_bytes().to_vec();
        osn.extend_from_slice(&payload);
        let mut d = packet(&mut s, RTX_SSRC, 103, 51, 0, true, &osn);
        let n = d.len();
        v.handle_head(now, 0, &mut d[..HEAD_BYTES], n, &mut out);
        assert_eq!(v.nacks_outstanding(), 1, "OSN unreadable in a head");
        v.handle_timeout(now + Duration::from_millis(100), &mut out);
        assert_eq!(nacked(&feedback(&mut s, &mut out)), [12]);
        // A plain resend on the media SSRC is recognised from the header.
        let mut d = rtp(&mut s, 12, 0, true, &payload);
        let n = d.len();
        v.handle_head(now, 0, &mut d[..HEAD_BYTES], n, &mut out);
        assert!(v.headers_only(), "nothing missing: back to heads");
        let t = v.finish(now);
        assert_eq!((t.nacks_sent, t.retransmissions, t.recovered, t.unrecovered), (3, 3, 2, 0));
        assert_eq!((t.verified_recovered, t.header_expected, t.header_received), (0, 4, 3));
    }

    /// --drop-pct drops before anything is counted; in a coalesced head
    /// each contained packet is dropped (and NACKed) on its own.
    #[test]
    fn drop_pct_drops_before_processing() {
        let (mut v, mut s, now) = connected(false, |c| c.drop_pct = 100.0);
        let mut out = Vec::new();
        let mut d = rtp(&mut s, 1, 0, true, &SLICE);
        v.handle_datagram(now, 0, &mut d, &mut out);
        let t = v.finish(now);
        assert_eq!((t.dropped, t.packets, t.header_expected), (1, 0, 0));

        let (mut v, mut s, now) = connected(false, |c| {
            c.drop_pct = 30.0;
            c.drop_seed = 42;
        });
        let mut pattern = Dropper::new(30.0, 42).unwrap();
        let expect: Vec<bool> = (0..40).map(|_| pattern.drop_next()).collect();
        let first = rtp(&mut s, 100, 0, false, &[0x41; 1000]);
        let seg = first.len();
        let mut head = first[..HEAD_BYTES].to_vec();
        v.handle_coalesced_head(now, 0, &mut head, seg * 40, seg, &mut out);
        v.flush_feedback(now, &mut out);
        let dropped: Vec<u16> = (0..40u16).filter(|k| expect[usize::from(*k)]).map(|k| 100 + k).collect();
        let last_kept = (0..40u16).rev().find(|k| !expect[usize::from(*k)]).unwrap();
        let first_kept = (0..40u16).find(|k| !expect[usize::from(*k)]).unwrap();
        let inner: Vec<u16> = dropped.iter().copied().filter(|s| (100 + first_kept..100 + last_kept).contains(s)).collect();
        assert!(!inner.is_empty());
        assert_eq!(nacked(&feedback(&mut s, &mut out)), inner, "the dropped ones between kept ones are NACKed");
        let t = v.finish(now);
        assert_eq!(t.dropped as usize, dropped.len());
        assert_eq!(t.packets as usize, 40 - dropped.len());
    }

    /// RED audio: the primary block is the packet's frame; a lost packet's
    /// frame found in a later packet's redundancy counts as recovered.
    #[test]
    fn red_audio_recovers_lost_frames() {
        let (mut v, mut s, now) = connected(true, |_| {});
        let mut out = Vec::new();
        let mut frames: Vec<Vec<u8>> = Vec::new();
        for k in 0..10u16 {
            frames.push(vec![k as u8; 20]);
            if k == 4 || k == 5 {
                continue; // lost
            }
            let ts = u32::from(k) * 960;
            let red: Vec<(u32, &[u8])> = (1..=2u16).filter(|b| *b <= k).map(|b| (u32::from(b) * 960, &frames[usize::from(k - b)][..])).rev().collect();
            let mut p = Vec::new();
            rts_rtp::red::write(111, &frames[usize::from(k)], &red, &mut p);
            let mut d = packet(&mut s, 0x3333, 63, 100 + k, ts, false, &p);
            v.handle_datagram(now, 0, &mut d, &mut out);
        }
        let t = v.finish(now);
        assert_eq!((t.audio_lost, t.audio_recovered_by_red), (2, 2));
    }

    /// Receiver reports carry LSR/DLSR of the server's last sender report
    /// and the fraction lost since the last report.
    #[test]
    fn receiver_report_has_lsr_dlsr_and_fraction_lost() {
        let (mut v, mut s, now) = connected(false, |c| c.nack = false);
        let mut out = Vec::new();
        for seq in [1u16, 2, 4, 5] {
            let mut d = rtp(&mut s, seq, 0, true, &SLICE);
            v.handle_datagram(now, 0, &mut d, &mut out);
        }
        let mut plain = [0u8; 128];
        let ntp = 0x1122_3344_5566_7788u64;
        let n = rts_rtp::rtcp::write_sender_report(&mut plain, VIDEO_SSRC, ntp, 0, 4, 100, "rts").unwrap();
        let mut sr = vec![0u8; n + 64];
        let m = s.srtp.as_mut().unwrap().protect_rtcp(&plain[..n], &mut sr).unwrap();
        v.handle_datagram(now + Duration::from_millis(500), 0, &mut sr[..m], &mut out);
        assert_eq!(v.poll_timeout(), Some(now + Duration::from_millis(500)), "the first SR is answered at once");
        v.handle_timeout(now + Duration::from_secs(1), &mut out);
        let rr = feedback(&mut s, &mut out);
        let blocks = rr
            .iter()
            .find_map(|p| match p {
                rts_rtp::rtcp::RtcpPacket::ReceiverReport { reports, .. } => Some(reports.clone()),
                _ => None,
            })
            .unwrap();
        let b = blocks.iter().find(|b| b.ssrc == VIDEO_SSRC).unwrap();
        assert_eq!((b.lsr, b.dlsr), (0x3344_5566, 32_768), "0.5 s after the SR");
        assert_eq!((b.fraction_lost, b.cumulative_lost), (51, 1), "1 of 5 = 51/256");
    }

    /// --rebind-after: the viewer asks for a new socket, checks from it
    /// (USE-CANDIDATE) until answered, and measures the gap to the next
    /// complete frame; no new DTLS handshake.
    #[test]
    fn rebind_checks_from_the_new_socket_and_measures_the_gap() {
        let (mut v, mut s, now) = connected(true, |c| c.rebind_after = Some(Duration::from_secs(3)));
        let t = |ms| now + Duration::from_millis(ms);
        let mut out = Vec::new();
        let mut d = rtp(&mut s, 1, 0, true, &SLICE);
        v.handle_datagram(t(0), 0, &mut d, &mut out);
        assert!(!v.wants_rebind(t(2999)));
        assert!(v.poll_timeout().unwrap() <= t(3000));
        assert!(v.wants_rebind(t(3000)));
        v.rebound(t(3000), &mut out);
        assert!(!v.wants_rebind(t(3001)));
        let check = StunMessage::parse(&out[0]).unwrap();
        assert!(check.use_candidate && check.verify_integrity(PWD.as_bytes()));
        out.clear();
        // Unanswered: checked again after 50 ms (not 5 s).
        v.handle_timeout(t(3050), &mut out);
        out.retain(|d| classify(d) == PacketKind::Stun);
        assert_eq!(out.len(), 1);
        let m = StunMessage::parse(&out[0]).unwrap();
        let mut b = [0u8; 128];
        let n = rts_stun::write_binding_success(&m.transaction_id, "127.0.0.1:5001".parse().unwrap(), PWD.as_bytes(), &mut b).unwrap();
        out.clear();
        v.handle_datagram(t(3052), 0, &mut b[..n], &mut out);
        v.handle_timeout(t(3200), &mut out);
        assert!(out.iter().all(|d| classify(d) != PacketKind::Stun), "answered: back to consent checks");
        // Media resumes on the new socket: the first complete frame ends the gap.
        let mut d = rtp(&mut s, 2, 3000, true, &SLICE);
        v.handle_datagram(t(3080), 0, &mut d, &mut out);
        let mut d = rtp(&mut s, 3, 6000, true, &SLICE);
        v.handle_datagram(t(3110), 0, &mut d, &mut out);
        let tally = v.finish(t(3200));
        assert_eq!((tally.rebinds, tally.rebind_gap_ms.clone(), tally.dtls_handshakes), (1, vec![80.0], 1));
        assert_eq!(tally.rebinds_moved, 1, "the server saw 127.0.0.1:5001 instead of :5000");
        assert!(tally.stun_rtt_ms.contains(&2.0), "{:?}", tally.stun_rtt_ms);
    }

    /// Swipe mode: a switch is timed from its request to the first complete
    /// keyframe that began after it (an old-stream keyframe completing
    /// meanwhile does not count, one that beat the answer does); a switch
    /// with no keyframe within the timeout counts as no frame.
    #[test]
    fn switch_is_timed_to_the_new_streams_first_keyframe() {
        let swipe = SwipeConfig {
            targets: 2,
            start: Some(0),
            offset: 0,
            every: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            measure_frames: true,
        };
        let (mut v, mut s, now) = connected(true, |c| c.swipe = Some(swipe));
        let t = |ms| now + Duration::from_millis(ms);
        let mut out = Vec::new();
        let mut d = rtp(&mut s, 1, 0, true, &SLICE);
        v.handle_datagram(t(100), 0, &mut d, &mut out);
        assert!(v.poll_timeout().unwrap() <= t(2000));
        assert_eq!(v.poll_switch(t(1999)), None);
        assert_eq!(v.poll_switch(t(2000)), Some(1), "to list entry 1, from entry 0");
        // A keyframe: STAP-A (SPS, PPS), then the IDR in two FU-A fragments.
        const STAP: [u8; 9] = [0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce];
        const IDR_START: [u8; 3] = [0x7c, 0x85, 0xaa];
        const IDR_END: [u8; 3] = [0x7c, 0x45, 0xbb];
        // The old stream's keyframe began at 2,001 ms, before the request
        // left (2,002); the new stream's at 2,010, done at 2,025; the answer
        // comes at 2,015 and is seen by the viewer after both.
        let keyframe = |s: &mut FakeServer, seq: u16, ts: u32| {
            [rtp(s, seq, ts, false, &STAP), rtp(s, seq + 1, ts, false, &IDR_START), rtp(s, seq + 2, ts, true, &IDR_END)]
        };
        for (mut d, at) in keyframe(&mut s, 2, 3000).into_iter().zip([2001, 2002, 2003]) {
            v.handle_datagram(t(at), 0, &mut d, &mut out);
        }
        for (mut d, at) in keyframe(&mut s, 5, 6000).into_iter().zip([2010, 2011, 2025]) {
            v.handle_datagram(t(at), 0, &mut d, &mut out);
        }
        assert_eq!(v.tally().frames, 3);
        v.switch_answered(t(2002), t(2015), SwitchOutcome::Ok);
        // The second switch (back to entry 0) is answered, but nothing follows.
        assert_eq!(v.poll_switch(t(4000)), Some(0));
        v.switch_answered(t(4001), t(4005), SwitchOutcome::Ok);
        assert!(v.poll_timeout().unwrap() <= t(5001), "the frame timeout is a timer");
        v.handle_timeout(t(5001), &mut out);
        let tally = v.finish(t(5100));
        let sw = &tally.switches;
        assert_eq!((sw.sent, sw.ok, sw.refused, sw.failed, sw.timed, sw.no_frame), (2, 2, 0, 0, 2, 1));
        assert_eq!(sw.frame_ms, [23.0], "2,002 -> 2,025 ms");
        assert_eq!(sw.http_ms, [13.0, 4.0]);
    }

    #[test]
    fn light_viewer_counts_coalesced_gro_datagrams() {
        let (mut v, mut s, now) = setup(false, None);
        let mut out = Vec::new();
        v.handle_timeout(now, &mut out);
        exchange(&mut v, &mut s, now, &mut out);
        assert_eq!(v.phase(), Phase::Connected);
        assert!(v.headers_only());
        // The handshake's STUN and DTLS bytes count as received too.
        let handshake = v.tally().bytes;
        assert!(handshake > 0);
        let payload = [0x41u8; 1000];
        let first = rtp(&mut s, 10, 0, false, &payload);
        let seg = first.len();
        // Three full segments and a 500-byte last one, seen through a 192-byte head.
        let len = seg * 3 + 500;
        let mut head = first[..HEAD_BYTES].to_vec();
        v.handle_coalesced_head(now, 0, &mut head, len, seg, &mut out);
        // The next datagram skips seq 14: one lost.
        let mut d = rtp(&mut s, 15, 0, true, &payload);
        let n = d.len();
        v.handle_head(now, 0, &mut d[..HEAD_BYTES], n, &mut out);
        let t = v.finish(now);
        assert_eq!((t.header_expected, t.header_received), (6, 5));
        assert_eq!((t.packets, t.bytes - handshake), (5, (len + n) as u64));
    }

    #[test]
    fn fingerprint_mismatch_is_categorised() {
        let (mut v, mut s, now) = setup(false, Some("00:11".into()));
        let mut out = Vec::new();
        v.handle_timeout(now, &mut out);
        exchange(&mut v, &mut s, now, &mut out);
        assert_eq!(v.phase(), Phase::Failed(FailureKind::FingerprintMismatch));
    }

    #[test]
    fn ice_and_dtls_timeouts() {
        let (mut v, _s, now) = setup(false, None);
        let mut out = Vec::new();
        v.handle_timeout(now, &mut out);
        v.handle_timeout(now + Duration::from_millis(50), &mut out);
        assert_eq!(out.len(), 2, "a check every 50 ms");
        v.handle_timeout(now + Duration::from_secs(10), &mut out);
        assert_eq!(v.phase(), Phase::Failed(FailureKind::IceTimeout));
        assert_eq!(v.finish(now).failures[FailureKind::IceTimeout.index()], 1);

        // STUN answered, DTLS never: the DTLS phase times out.
        let (mut v, _s, now) = setup(false, None);
        let mut out = Vec::new();
        v.handle_timeout(now, &mut out);
        let m = StunMessage::parse(&out[0]).unwrap();
        let mut b = [0u8; 128];
        let n = rts_stun::write_binding_success(&m.transaction_id, "127.0.0.1:5000".parse().unwrap(), PWD.as_bytes(), &mut b).unwrap();
        // A response keyed with the wrong password is ignored.
        let mut forged = [0u8; 128];
        let fl = rts_stun::write_binding_success(&m.transaction_id, "127.0.0.1:5000".parse().unwrap(), b"wrong", &mut forged).unwrap();
        v.handle_datagram(now, 0, &mut forged[..fl], &mut out);
        assert_eq!(v.phase(), Phase::Ice);
        v.handle_datagram(now, 0, &mut b[..n], &mut out);
        assert_eq!(v.phase(), Phase::Dtls);
        v.handle_timeout(now + Duration::from_secs(11), &mut out);
        assert_eq!(v.phase(), Phase::Failed(FailureKind::DtlsFailed));
    }

    /// A full-ICE peer that answers `setup:active` (aiortc's shape): it checks
    /// us too, and it sends the ClientHello; the viewer serves DTLS.
    #[test]
    fn full_ice_peer_as_dtls_client() {
        let client_cert = DtlsCert::generate().unwrap();
        let viewer_cert = DtlsCert::generate().unwrap();
        let peer_ctx = DtlsContext::new(&client_cert, Role::Client).unwrap();
        let viewer_ctx = DtlsContext::new(&viewer_cert, Role::Server).unwrap();
        let now = Instant::now();
        let (mut v, _, _) = setup(false, Some(client_cert.fingerprint_sha256()));
        v.cfg.remote.dtls_server = true;
        v.cfg.remote.ice_lite = false;
        v.dtls = DtlsEndpoint::new(&viewer_ctx).unwrap();
        let mut peer = DtlsEndpoint::new(&peer_ctx).unwrap();
        let mut out = Vec::new();

        // The peer's check: answered with our password; a wrong ufrag or key is ignored.
        let mut req = [0u8; 256];
        for (user, key) in [("me:srv", MY_PWD), ("other:srv", MY_PWD), ("me:srv", "wrong")] {
            let r = BindingRequest { transaction_id: [7; 12], username: user, priority: 1, controlling: None, use_candidate: false };
            let n = rts_stun::write_binding_request(&r, key.as_bytes(), &mut req).unwrap();
            v.handle_datagram(now, 0, &mut req[..n], &mut out);
            assert_eq!(out.len(), 1, "only the first is answered ({user} {key})");
        }
        let resp = StunMessage::parse(&out[0]).unwrap();
        assert_eq!((resp.class, resp.transaction_id), (Class::SuccessResponse, [7; 12]));
        assert!(resp.verify_integrity(MY_PWD.as_bytes()));
        out.clear();
        assert_eq!(v.phase(), Phase::Ice);

        // The peer's ClientHello arrives before our own check's response: DTLS starts anyway.
        peer.start(now).unwrap();
        for _ in 0..20 {
            let mut to_viewer = Vec::new();
            while let Some(d) = peer.poll_datagram() {
                to_viewer.push(d);
            }
            if to_viewer.is_empty() {
                break;
            }
            for mut d in to_viewer {
                v.handle_datagram(now, 0, &mut d, &mut out);
            }
            for d in out.drain(..) {
                if classify(&d) == PacketKind::Dtls {
                    peer.handle_datagram(&d, now).unwrap();
                }
            }
        }
        assert!(peer.is_connected());
        assert_eq!(v.phase(), Phase::Connected);
        assert_eq!(v.finish(now).checks_answered, 1);
    }
}
