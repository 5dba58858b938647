//! One viewer session after signaling: ICE (controlling, USE-CANDIDATE;
//! binding requests from a full-ICE peer are answered too), DTLS (client, or
//! server when the answer says `setup:active`), SRTP; then media accounting. Sans-IO: datagrams and time
//! in, datagrams to send out through the caller's outbox.

use crate::report::{FailureKind, Tally};
use crate::sei;
use crate::signaling::Remote;
use crate::stats::{FrameJitter, SeqTracker, StallDetector};
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
/// SSRCs tracked per viewer (video, audio, RTX); more are ignored.
const MAX_TRACKED_SSRCS: usize = 4;
/// Bytes a headers-only receive keeps of each datagram: the RTP header, and
/// whole STUN messages (consent, a peer's checks) and DTLS alerts.
pub const HEAD_BYTES: usize = 192;

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

/// Media verification state (only verified viewers carry it).
struct Verify {
    rx: SrtpContext,
    depack: H264Depacketizer,
    stalls: StallDetector,
    jitter: FrameJitter,
    first_frame: bool,
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
    verify: Option<Verify>,
    pending: [[u8; 12]; 4],
    pending_at: usize,
    phase_deadline: Instant,
    next_check: Instant,
    next_rr: Instant,
    connected_at: Option<Instant>,
    seqs: Vec<(u32, SeqTracker)>,
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
            verify: None,
            pending: [[0; 12]; 4],
            pending_at: 0,
            phase_deadline: now + cfg.ice_timeout,
            next_check: now,
            next_rr: now + RR_INTERVAL,
            connected_at: None,
            seqs: Vec::new(),
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

    /// Next time [`handle_timeout`](Self::handle_timeout) has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Ice => Some(self.next_check.min(self.phase_deadline)),
            Phase::Dtls => Some(self.dtls.poll_timeout().map_or(self.phase_deadline, |d| d.min(self.phase_deadline))),
            Phase::Connected => Some(self.next_check.min(self.next_rr)),
            Phase::Failed(_) | Phase::Closed => None,
        }
    }

    /// Timers: connectivity checks, consent, RTCP RR, DTLS retransmission, phase limits.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut Vec<Vec<u8>>) {
        match self.phase {
            Phase::Ice => {
                if now >= self.phase_deadline {
                    return self.fail(FailureKind::IceTimeout);
                }
                if now >= self.next_check {
                    self.send_check(out);
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
                    self.send_check(out);
                    self.next_check = now + CONSENT_INTERVAL;
                }
                if now >= self.next_rr {
                    self.send_rr(out);
                    self.next_rr = now + RR_INTERVAL;
                }
            }
            Phase::Failed(_) | Phase::Closed => {}
        }
    }

    /// True when only the head of each datagram is needed: a light viewer
    /// with keys installed counts RTP/RTCP from the clear header. STUN and
    /// DTLS it still gets whole when they fit in [`HEAD_BYTES`].
    pub fn headers_only(&self) -> bool {
        self.phase == Phase::Connected && !self.cfg.verified
    }

    /// One datagram from the server. `wall_us` is the UNIX time in µs at
    /// arrival (for the SEI latency); `d` may be decrypted in place.
    pub fn handle_datagram(&mut self, now: Instant, wall_us: u64, d: &mut [u8], out: &mut Vec<Vec<u8>>) {
        let len = d.len();
        self.handle_head(now, wall_us, d, len, out);
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
    /// cannot be read and is dropped (counted in `truncated`).
    pub fn handle_head(&mut self, now: Instant, wall_us: u64, d: &mut [u8], len: usize, out: &mut Vec<Vec<u8>>) {
        let cut = d.len() < len;
        match classify(d) {
            PacketKind::Rtp if self.phase == Phase::Connected && !(cut && self.cfg.verified) => {
                self.on_rtp(now, wall_us, d, len)
            }
            PacketKind::Rtcp if self.phase == Phase::Connected => {
                self.tally.packets += 1;
                self.tally.bytes += len as u64;
            }
            _ if cut => self.tally.truncated += 1,
            PacketKind::Stun => self.on_stun(now, d, out),
            // We serve DTLS and the peer finished its checks before our own
            // check's response arrived: its ClientHello proves the path.
            PacketKind::Dtls if self.phase == Phase::Ice && self.dtls.role() == Role::Server => {
                self.enter_dtls(now, out);
                let _ = self.dtls.handle_datagram(d, now);
                self.drain_dtls(now, out);
            }
            PacketKind::Dtls if matches!(self.phase, Phase::Dtls | Phase::Connected) => {
                // Malformed records are the peer's problem; the handshake timer still runs.
                let _ = self.dtls.handle_datagram(d, now);
                self.drain_dtls(now, out);
            }
            _ => {}
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
        for (_, s) in &self.seqs {
            if self.cfg.verified {
                self.tally.expected += s.expected();
                self.tally.received += s.received;
                self.tally.duplicates += s.duplicates;
                self.tally.reordered += s.reordered;
            }
            self.tally.header_expected += s.expected();
            self.tally.header_received += s.received;
        }
        if let Some(v) = &mut self.verify {
            v.stalls.finish(now);
            self.tally.stall_count += v.stalls.count;
            self.tally.stall_ms += v.stalls.total.as_secs_f64() * 1000.0;
            self.tally.verified_seconds += secs;
        }
    }

    fn fail(&mut self, kind: FailureKind) {
        self.phase = Phase::Failed(kind);
        self.tally.fail(kind);
    }

    fn send_check(&mut self, out: &mut Vec<Vec<u8>>) {
        let tid: [u8; 12] = rand::random();
        self.pending[self.pending_at % self.pending.len()] = tid;
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
        let ours = self.pending.contains(&m.transaction_id) && m.transaction_id != [0; 12];
        if m.class != Class::SuccessResponse || !ours {
            return;
        }
        if !m.verify_integrity(self.cfg.remote.pwd.as_bytes()) {
            return;
        }
        if self.phase == Phase::Ice {
            self.enter_dtls(now, out);
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
                DtlsEvent::Connected(_) => {}
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
        if !export.peer_fingerprint_sha256.eq_ignore_ascii_case(&self.cfg.remote.fingerprint) {
            self.dtls.close();
            return self.fail(FailureKind::FingerprintMismatch);
        }
        let Some(keys) = Profile::from_dtls_id(export.profile_id)
            .and_then(|p| KeyingMaterial::from_exported(p, &export.material, self.dtls.role() == Role::Server).ok())
        else {
            return self.fail(FailureKind::SrtpFailed);
        };
        let Ok(tx) = SrtpContext::new(keys.profile, &keys.local_key, &keys.local_salt) else {
            return self.fail(FailureKind::SrtpFailed);
        };
        if self.cfg.verified {
            let Ok(rx) = SrtpContext::new(keys.profile, &keys.remote_key, &keys.remote_salt) else {
                return self.fail(FailureKind::SrtpFailed);
            };
            self.verify = Some(Verify {
                rx,
                depack: H264Depacketizer::new(),
                stalls: StallDetector::new(STALL_THRESHOLD),
                jitter: FrameJitter::default(),
                first_frame: false,
            });
            self.tally.verified = 1;
        }
        self.tx = Some(tx);
        self.phase = Phase::Connected;
        self.connected_at = Some(now);
        self.tally.connected = 1;
        self.next_check = now + CONSENT_INTERVAL;
        self.next_rr = now + RR_INTERVAL;
    }

    /// Light path: header fields only (`d` may be just the head of a
    /// `len`-byte packet). Verified path: decrypt, then frames.
    fn on_rtp(&mut self, now: Instant, wall_us: u64, d: &mut [u8], len: usize) {
        self.tally.packets += 1;
        self.tally.bytes += len as u64;
        let Some(v) = &mut self.verify else {
            // SRTP leaves the RTP header in the clear: sequence and SSRC are free.
            if d.len() >= 12 {
                let seq = u16::from_be_bytes([d[2], d[3]]);
                let ssrc = u32::from_be_bytes([d[8], d[9], d[10], d[11]]);
                track(&mut self.seqs, ssrc, seq);
            }
            return;
        };
        let Ok(n) = v.rx.unprotect_rtp(d) else {
            self.tally.srtp_errors += 1;
            return;
        };
        let Ok(h) = RtpHeader::parse(&d[..n]) else { return };
        track(&mut self.seqs, h.ssrc, h.sequence);
        if Some(h.payload_type) != self.cfg.remote.h264_pt {
            return;
        }
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
        let mut frame = v.depack.push(&h, h.payload(&d[..n]));
        while let Some(f) = frame {
            if f.complete {
                self.tally.frames += 1;
                v.stalls.on_frame(now);
                if let Some(j) = v.jitter.on_frame(now, f.timestamp, VIDEO_CLOCK) {
                    self.tally.jitter_ms.push(j);
                }
                if !v.first_frame {
                    v.first_frame = true;
                    if let Some(at) = self.connected_at {
                        self.tally.first_frame_ms.push(ms(now.saturating_duration_since(at)));
                    }
                    self.tally.first_frame_from_signaling_ms.push(ms(now.saturating_duration_since(self.cfg.signaling_started)));
                }
                if let Some(stamp) = sei::find_timestamp(&f.nalus) {
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

    fn send_rr(&mut self, out: &mut Vec<Vec<u8>>) {
        let Some(tx) = &mut self.tx else { return };
        let blocks: Vec<rts_rtp::rtcp::ReportBlock> = self
            .seqs
            .iter()
            .take(31)
            .map(|(ssrc, s)| rts_rtp::rtcp::ReportBlock {
                ssrc: *ssrc,
                cumulative_lost: i32::try_from(s.lost()).unwrap_or(i32::MAX),
                highest_seq: s.extended_highest(),
                ..Default::default()
            })
            .collect();
        let mut plain = [0u8; 1024];
        let Ok(n) = rts_rtp::rtcp::write_receiver_report(&mut plain, self.sender_ssrc, &blocks) else { return };
        let Ok(m) = rts_rtp::rtcp::write_sdes_cname(&mut plain[n..], self.sender_ssrc, "rts-loadgen") else { return };
        let mut sealed = vec![0u8; n + m + 64];
        if let Ok(len) = tx.protect_rtcp(&plain[..n + m], &mut sealed) {
            sealed.truncate(len);
            out.push(sealed);
        }
    }
}

fn track(seqs: &mut Vec<(u32, SeqTracker)>, ssrc: u32, seq: u16) {
    if let Some((_, s)) = seqs.iter_mut().find(|(x, _)| *x == ssrc) {
        s.push(seq);
    } else if seqs.len() < MAX_TRACKED_SSRCS {
        let mut s = SeqTracker::default();
        s.push(seq);
        seqs.push((ssrc, s));
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

    struct FakeServer {
        dtls: DtlsEndpoint,
        srtp: Option<SrtpContext>,
    }

    fn setup(verified: bool, fingerprint: Option<String>) -> (Viewer, FakeServer, Instant) {
        let client_cert = DtlsCert::generate().unwrap();
        let server_cert = DtlsCert::generate().unwrap();
        let cctx = DtlsContext::new(&client_cert, Role::Client).unwrap();
        let sctx = DtlsContext::new(&server_cert, Role::Server).unwrap();
        let now = Instant::now();
        let cfg = ViewerConfig {
            remote: Remote {
                addr: "127.0.0.1:9".parse().unwrap(),
                ufrag: "srv".into(),
                pwd: PWD.into(),
                fingerprint: fingerprint.unwrap_or_else(|| server_cert.fingerprint_sha256()),
                h264_pt: Some(102),
                playout_delay_id: None,
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
        };
        let v = Viewer::new(&cctx, cfg, now).unwrap();
        (v, FakeServer { dtls: DtlsEndpoint::new(&sctx).unwrap(), srtp: None }, now)
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
        let mut hdr = vec![0x80, if marker { 0x80 | 102 } else { 102 }];
        hdr.extend_from_slice(&seq.to_be_bytes());
        hdr.extend_from_slice(&ts.to_be_bytes());
        hdr.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        let mut out = vec![0u8; hdr.len() + payload.len() + 64];
        let n = s.srtp.as_mut().unwrap().protect_rtp(&hdr, payload, &mut out).unwrap();
        out.truncate(n);
        out
    }

    #[test]
    fn ice_dtls_srtp_then_frames_and_loss() {
        let (mut v, mut s, now) = setup(true, None);
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
    fn light_viewer_counts_coalesced_gro_datagrams() {
        let (mut v, mut s, now) = setup(false, None);
        let mut out = Vec::new();
        v.handle_timeout(now, &mut out);
        exchange(&mut v, &mut s, now, &mut out);
        assert_eq!(v.phase(), Phase::Connected);
        assert!(v.headers_only());
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
        assert_eq!((t.packets, t.bytes), (5, (len + n) as u64));
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
