//! A deterministic harness for the sans-IO core: one `Core` stepped with a
//! simulated clock, an RTMP publisher (rml_rtmp's client), and WebRTC
//! viewers that decrypt what the core sends them. No sockets, no threads.
//! Used by the core's unit tests and by the fuzz targets (feature `testkit`).
#![allow(missing_docs)]

use crate::core::{Core, TcpOutput};
use crate::relay::RelayMsg;
use bytes::Bytes;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult, PublishRequestType};
use rml_rtmp::time::RtmpTimestamp;
use rts_common::config::Config;
use rts_common::ipc::{ControlToShard, ShardToControl};
use rts_rtp::rtcp::RtcpPacket;
use rts_srtp::{Profile, SrtpContext};
use rts_stun::PacketKind;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Our address the viewers' datagrams arrive at.
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A datagram the core sent (GSO messages are split into their datagrams).
pub struct Sent {
    pub at: Instant,
    pub dst: SocketAddr,
    pub src: Option<IpAddr>,
    pub data: Vec<u8>,
    /// The GSO message it left in (numbered from 0 over the rig's life).
    pub msg: usize,
}

/// One core and everything it produced.
pub struct Rig {
    pub core: Core,
    pub t0: Instant,
    pub now: Instant,
    pub sent: Vec<Sent>,
    /// Sends per `poll_transmit` batch (datagrams, messages).
    pub batches: Vec<(usize, usize)>,
    /// Messages sent so far.
    pub messages: usize,
    pub tcp: HashMap<usize, Vec<u8>>,
    pub closed: Vec<usize>,
    /// Connections the core asked for (cluster pulls): (token, address).
    pub connects: Vec<(u64, std::net::SocketAddr)>,
    pub ctl: Vec<ShardToControl>,
    pub relay: Vec<(usize, RelayMsg)>,
    /// Batches `drain` sends per call, as the shell's slices (None: all).
    pub slice: Option<usize>,
    /// TCP connections whose peer reads nothing: their output is kept but
    /// never reported written (`Core::handle_tcp_written`); every other
    /// connection's output is written at once.
    pub stalled: std::collections::HashSet<usize>,
}

/// The config `toml` makes, with the video hold for audio off unless it
/// names `hold_video_for_audio`: these tests hand the core tags and look
/// for their packets at the same instant (the hold has its own tests,
/// core/tests/ingest.rs and video_hold.rs).
pub fn config(toml: &str) -> Arc<Config> {
    let mut cfg = Config::parse(toml).expect("test config");
    if !toml.contains("hold_video_for_audio") {
        cfg.webrtc.hold_video_for_audio = false;
    }
    Arc::new(cfg)
}

impl Rig {
    pub fn new(toml: &str) -> Rig {
        Rig::shard(0, 1, toml, Instant::now())
    }

    /// Shard `id` of `shards`; shards of one test share `t0`.
    pub fn shard(id: usize, shards: usize, toml: &str, t0: Instant) -> Rig {
        Rig {
            core: Core::new(id, shards, config(toml), t0, 1_700_000_000_000_000),
            t0,
            now: t0,
            sent: Vec::new(),
            batches: Vec::new(),
            messages: 0,
            tcp: HashMap::new(),
            closed: Vec::new(),
            connects: Vec::new(),
            ctl: Vec::new(),
            relay: Vec::new(),
            slice: None,
            stalled: Default::default(),
        }
    }

    /// Drains the outputs, as the shell does after each input (every batch,
    /// or a slice of them: see `slice`), and parks.
    pub fn drain(&mut self) {
        let mut batches = 0;
        while self.slice.is_none_or(|n| batches < n) {
            let Some(t) = self.core.poll_transmit() else { break };
            batches += 1;
            let mut datagrams = 0;
            for m in t.iter() {
                for d in m.contents.chunks(m.segment.max(1)) {
                    datagrams += 1;
                    self.sent.push(Sent { at: self.now, dst: m.dst, src: m.src, data: d.to_vec(), msg: self.messages });
                }
                self.messages += 1;
            }
            self.batches.push((datagrams, t.messages()));
        }
        while let Some(o) = self.core.poll_tcp() {
            match o {
                TcpOutput::Send { conn, data } => {
                    self.tcp.entry(conn).or_default().extend_from_slice(&data);
                    if !self.stalled.contains(&conn) {
                        self.core.handle_tcp_written(conn, data.len());
                    }
                }
                TcpOutput::Close { conn } => {
                    // As the shell: what was queued is written, then the
                    // connection is let go.
                    self.closed.push(conn);
                    self.core.handle_tcp_released(self.now, conn);
                }
                TcpOutput::Connect { token, addr } => self.connects.push((token, addr)),
            }
        }
        while let Some(m) = self.core.poll_control() {
            self.ctl.push(m);
        }
        while let Some(r) = self.core.poll_relay() {
            self.relay.push(r);
        }
        self.core.handle_parked(self.now);
    }

    /// Moves the clock to `t`, running every timeout due on the way.
    pub fn at(&mut self, t: Instant) {
        loop {
            let due = self.core.poll_timeout();
            if due > t {
                break;
            }
            self.now = self.now.max(due);
            self.core.handle_timeout(self.now);
            self.drain();
        }
        self.now = self.now.max(t);
    }

    pub fn advance(&mut self, d: Duration) {
        self.at(self.now + d);
    }

    pub fn control(&mut self, msg: ControlToShard) {
        self.core.handle_control(self.now, msg);
        self.drain();
    }

    pub fn datagram(&mut self, src: SocketAddr, data: &[u8]) {
        let mut buf = data.to_vec();
        self.core.handle_datagram(self.now, src, Some(IpAddr::V4(SERVER_IP)), &mut buf);
        self.drain();
    }

    /// Whether media connection `conn` is open in the core.
    pub fn core_has_http(&self, conn: usize) -> bool {
        self.core.has_tcp_viewer(conn)
    }

    pub fn take_ctl(&mut self) -> Vec<ShardToControl> {
        std::mem::take(&mut self.ctl)
    }

    pub fn take_relay(&mut self) -> Vec<(usize, RelayMsg)> {
        std::mem::take(&mut self.relay)
    }

    /// Sessions control was told are closed, with the reason.
    pub fn closed_sessions(&self) -> Vec<(u64, String)> {
        self.ctl
            .iter()
            .filter_map(|m| match m {
                ShardToControl::SessionClosed { session, reason } => Some((*session, reason.clone())),
                _ => None,
            })
            .collect()
    }
}

/// Relays between test shards until no messages are left in flight.
pub fn exchange(rigs: &mut [&mut Rig]) {
    loop {
        let mut moved = false;
        for i in 0..rigs.len() {
            for (to, msg) in rigs[i].take_relay() {
                let r = &mut *rigs[to];
                r.core.handle_relay(r.now, i, msg);
                r.drain();
                moved = true;
            }
        }
        if !moved {
            return;
        }
    }
}

// ----------------------------------------------------------------- media

const SPS: &[u8] = &[0x67, 0x42, 0xc0, 0x1e, 0xda, 0x02, 0x80];
const PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];

/// AVC sequence header tag (AVCDecoderConfigurationRecord).
pub fn seq_header() -> Bytes {
    let mut t = vec![0x17, 0, 0, 0, 0, 1, SPS[1], SPS[2], SPS[3], 0xff, 0xe1];
    t.extend_from_slice(&(SPS.len() as u16).to_be_bytes());
    t.extend_from_slice(SPS);
    t.push(1);
    t.extend_from_slice(&(PPS.len() as u16).to_be_bytes());
    t.extend_from_slice(PPS);
    Bytes::from(t)
}

/// A video tag with one NAL unit of `len` bytes: an IDR slice or a P slice.
/// With 1,200-byte packets, `len` 2,500 makes 3 FU-A packets.
pub fn frame(keyframe: bool, len: usize, fill: u8) -> Bytes {
    let mut t = vec![if keyframe { 0x17 } else { 0x27 }, 1, 0, 0, 0];
    t.extend_from_slice(&(len as u32).to_be_bytes());
    t.push(if keyframe { 0x65 } else { 0x41 });
    t.extend(std::iter::repeat_n(fill, len - 1));
    Bytes::from(t)
}

/// An Enhanced-RTMP Opus audio tag (passed through, no transcoder).
pub fn opus(fill: u8) -> Bytes {
    let mut t = vec![0x91];
    t.extend_from_slice(b"Opus");
    t.extend_from_slice(&[0xfc, fill, fill, fill]);
    Bytes::from(t)
}

// ------------------------------------------------------------- publisher

/// An RTMP publisher (rml_rtmp's client) on connection `conn` of a rig.
pub struct Publisher {
    pub conn: usize,
    client: ClientSession,
    pub events: Vec<ClientSessionEvent>,
}

impl Publisher {
    /// Connects to `app` and asks to publish `stream` (which may carry a
    /// `?auth_key=` query).
    pub fn connect(rig: &mut Rig, conn: usize, app: &str, stream: &str) -> Publisher {
        Self::connect_to(rig, conn, None, app, stream)
    }

    /// Like [`Publisher::connect`], with `connect`'s tcUrl (the domain).
    pub fn connect_to(rig: &mut Rig, conn: usize, tc_url: Option<&str>, app: &str, stream: &str) -> Publisher {
        rtmp_handshake(rig, conn, "10.200.0.2:40000");
        let mut config = ClientSessionConfig::new();
        config.tc_url = tc_url.map(str::to_string);
        let (client, initial) = ClientSession::new(config).expect("client session");
        let mut p = Publisher { conn, client, events: Vec::new() };
        p.results(rig, initial);
        let r = p.client.request_connection(app.to_string()).expect("connect");
        p.results(rig, vec![r]);
        let r = p.client.request_publishing(stream.to_string(), PublishRequestType::Live).expect("publish");
        p.results(rig, vec![r]);
        p
    }

    pub fn accepted(&self) -> bool {
        self.events.contains(&ClientSessionEvent::PublishRequestAccepted)
    }

    /// Reads what the core sent since (e.g. the answer to a publish it
    /// held), answering as the client would.
    pub fn read(&mut self, rig: &mut Rig) {
        let answer = rig.tcp.remove(&self.conn).unwrap_or_default();
        if !answer.is_empty() {
            let results = self.client.handle_input(&answer).expect("client input");
            self.results(rig, results);
        }
    }

    /// Feeds the client's output to the core and the core's answers back,
    /// until both are quiet.
    fn results(&mut self, rig: &mut Rig, results: Vec<ClientSessionResult>) {
        let mut out = Vec::new();
        split_results(results, &mut out, &mut self.events);
        while !out.is_empty() {
            rig.core.handle_rtmp_data(rig.now, self.conn, &out);
            rig.drain();
            out.clear();
            let answer = rig.tcp.remove(&self.conn).unwrap_or_default();
            if answer.is_empty() {
                break;
            }
            split_results(self.client.handle_input(&answer).expect("client input"), &mut out, &mut self.events);
        }
    }

    pub fn video(&mut self, rig: &mut Rig, ts_ms: u32, tag: Bytes) {
        let r = self.client.publish_video_data(tag, RtmpTimestamp::new(ts_ms), false).expect("video");
        self.results(rig, vec![r]);
    }

    /// The RTMP bytes of a video tag, without sending them.
    pub fn encode_video(&mut self, ts_ms: u32, tag: Bytes) -> Vec<u8> {
        match self.client.publish_video_data(tag, RtmpTimestamp::new(ts_ms), false).expect("video") {
            ClientSessionResult::OutboundResponse(p) => p.bytes,
            other => panic!("no bytes: {other:?}"),
        }
    }

    pub fn audio(&mut self, rig: &mut Rig, ts_ms: u32, tag: Bytes) {
        let r = self.client.publish_audio_data(tag, RtmpTimestamp::new(ts_ms), false).expect("audio");
        self.results(rig, vec![r]);
    }

    /// Sequence header, then a keyframe and `p_frames` P-frames 33 ms apart
    /// from `ts_ms` (each frame 3 packets).
    pub fn gop(&mut self, rig: &mut Rig, ts_ms: u32, p_frames: u32) {
        self.video(rig, ts_ms, seq_header());
        self.video(rig, ts_ms, frame(true, 2_500, 1));
        for i in 1..=p_frames {
            self.video(rig, ts_ms + 33 * i, frame(false, 2_500, 2));
        }
    }

    /// The TCP connection went away.
    pub fn drop_connection(self, rig: &mut Rig) {
        rig.core.handle_rtmp_closed(rig.now, self.conn, "peer closed");
        rig.drain();
    }
}

/// An rml_rtmp client's results: bytes for the server to `out`, events kept.
fn split_results(results: Vec<ClientSessionResult>, out: &mut Vec<u8>, events: &mut Vec<ClientSessionEvent>) {
    for r in results {
        match r {
            ClientSessionResult::OutboundResponse(p) => out.extend_from_slice(&p.bytes),
            ClientSessionResult::RaisedEvent(e) => events.push(e),
            ClientSessionResult::UnhandleableMessageReceived(_) => {}
        }
    }
}

/// Handshakes an RTMP client from `peer` on connection `conn` (opened here).
fn rtmp_handshake(rig: &mut Rig, conn: usize, peer: &str) {
    rig.core.handle_rtmp_open(rig.now, conn, Some(peer.parse().expect("peer address")));
    rig.drain();
    let mut hs = Handshake::new(PeerType::Client);
    let c0c1 = hs.generate_outbound_p0_and_p1().expect("c0c1");
    rig.core.handle_rtmp_data(rig.now, conn, &c0c1);
    rig.drain();
    let s0s1s2 = rig.tcp.remove(&conn).unwrap_or_default();
    let c2 = match hs.process_bytes(&s0s1s2).expect("client handshake") {
        HandshakeProcessResult::Completed { response_bytes, .. } => response_bytes,
        HandshakeProcessResult::InProgress { .. } => panic!("handshake incomplete"),
    };
    rig.core.handle_rtmp_data(rig.now, conn, &c2);
    rig.drain();
}

/// An RTMP player (rml_rtmp's client) on connection `conn` of a rig.
pub struct Player {
    pub conn: usize,
    client: ClientSession,
    pub events: Vec<ClientSessionEvent>,
}

impl Player {
    /// Connects to `app` and asks to play `stream` (which may carry a
    /// `?auth_key=` query), then reads the answer.
    pub fn connect(rig: &mut Rig, conn: usize, app: &str, stream: &str) -> Player {
        rtmp_handshake(rig, conn, "10.200.0.3:40000");
        let (client, initial) = ClientSession::new(ClientSessionConfig::new()).expect("client session");
        let mut p = Player { conn, client, events: Vec::new() };
        p.results(rig, initial);
        let r = p.client.request_connection(app.to_string()).expect("connect");
        p.results(rig, vec![r]);
        let r = p.client.request_playback(stream.to_string()).expect("play");
        p.results(rig, vec![r]);
        p
    }

    fn results(&mut self, rig: &mut Rig, results: Vec<ClientSessionResult>) {
        let mut out = Vec::new();
        split_results(results, &mut out, &mut self.events);
        if !out.is_empty() {
            rig.core.handle_rtmp_data(rig.now, self.conn, &out);
            rig.drain();
        }
        self.read(rig);
    }

    /// Hands what the core sent since the last read to the client (and the
    /// client's answers back).
    pub fn read(&mut self, rig: &mut Rig) {
        loop {
            let answer = rig.tcp.remove(&self.conn).unwrap_or_default();
            if answer.is_empty() {
                return;
            }
            let mut out = Vec::new();
            split_results(self.client.handle_input(&answer).expect("client input"), &mut out, &mut self.events);
            if !out.is_empty() {
                rig.core.handle_rtmp_data(rig.now, self.conn, &out);
                rig.drain();
            }
        }
    }

    /// The media received so far: (video, timestamp, tag body).
    pub fn media(&self) -> Vec<(bool, u32, Bytes)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                ClientSessionEvent::VideoDataReceived { data, timestamp, .. } => Some((true, timestamp.value, data.clone())),
                ClientSessionEvent::AudioDataReceived { data, timestamp, .. } => Some((false, timestamp.value, data.clone())),
                _ => None,
            })
            .collect()
    }
}

/// Publishes `app/stream` on connection `conn` and sends one GOP.
pub fn publish(rig: &mut Rig, conn: usize, app: &str, stream: &str, p_frames: u32) -> Publisher {
    let mut p = Publisher::connect(rig, conn, app, stream);
    assert!(p.accepted(), "publish accepted: {:?}", p.events);
    p.gop(rig, 0, p_frames);
    p
}

// ---------------------------------------------------------------- viewer

/// One received RTP packet (an RTX packet is unwrapped: `seq` is its
/// original sequence number, `rtx` its own).
#[derive(Debug, Clone)]
pub struct Rtp {
    pub at: Instant,
    /// The GSO message it came in (`Sent::msg`).
    pub msg: usize,
    /// RTP padding it carried (removed from `payload`).
    pub padding: u8,
    pub ssrc: u32,
    pub pt: u8,
    pub seq: u16,
    pub ts: u32,
    pub payload: Vec<u8>,
    pub rtx: Option<u16>,
}

/// Decides which datagrams to a viewer are lost: (ssrc, seq) of an SRTP
/// packet (its header is in clear), true = lost.
pub type LossFn = Box<dyn FnMut(u32, u16) -> bool>;

/// A WebRTC viewer as the core sees it: ICE credentials, SRTP keys, an
/// address; it decrypts what the core sends it.
pub struct Viewer {
    pub session: u64,
    pub addr: SocketAddr,
    pub ufrag: String,
    pub pwd: String,
    pub keys: [Vec<u8>; 4],
    rx: SrtpContext,
    tx: SrtpContext,
    seen: usize,
    pub rtp: Vec<Rtp>,
    /// Sender reports: (arrival, ssrc, ntp, rtp_ts).
    pub srs: Vec<(Instant, u32, u64, u32)>,
    /// STUN responses: (arrival, class is success).
    pub stun: Vec<(Instant, bool)>,
    /// DTLS records from control.
    pub dtls: usize,
    /// Packets SRTP refused as replays (spurious resends of the same packet).
    pub replays: usize,
    /// (SSRC, sequence) of packets SRTP refused as older than its replay
    /// window (see `recv`).
    pub too_old: Vec<(u32, u16)>,
    /// The path's loss, and what it took: (ssrc, seq).
    pub loss: Option<LossFn>,
    pub lost: Vec<(u32, u16)>,
}

pub const VIDEO_PT: u8 = 102;
pub const AUDIO_PT: u8 = 111;
pub const RTX_PT: u8 = 103;
pub const RTX_SSRC: u32 = 0x0bad_cafe;
pub const RED_PT: u8 = 63;

/// The fields of a `StartMedia` a test may change.
pub struct StartMedia<'a> {
    pub srtp_profile: &'a mut u16,
    pub local_key: &'a mut Vec<u8>,
    pub audio_pt: &'a mut Option<u8>,
    pub video_playout_delay_id: &'a mut Option<u8>,
    pub video_rtx: &'a mut Option<(u8, u32)>,
    pub video_nack: &'a mut bool,
    pub audio_red_pt: &'a mut Option<u8>,
}

impl Viewer {
    pub fn new(n: u16) -> Viewer {
        let key = |salt: u8, len: usize| (0..len).map(|i| (i as u8).wrapping_mul(7) ^ salt ^ n as u8).collect::<Vec<u8>>();
        let keys = [key(1, 16), key(2, 12), key(3, 16), key(4, 12)];
        let p = Profile::AeadAes128Gcm;
        Viewer {
            session: 0x1000 + u64::from(n),
            addr: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 200, (n >> 8) as u8, n as u8), 50_000)),
            ufrag: format!("uf{n}"),
            pwd: format!("pwd-of-viewer-{n:04}-xxxxxxxxx"),
            rx: SrtpContext::new(p, &keys[0], &keys[1]).unwrap(),
            tx: SrtpContext::new(p, &keys[2], &keys[3]).unwrap(),
            keys,
            seen: 0,
            rtp: Vec::new(),
            srs: Vec::new(),
            stun: Vec::new(),
            dtls: 0,
            replays: 0,
            too_old: Vec::new(),
            loss: None,
            lost: Vec::new(),
        }
    }

    pub fn add_msg(&self, app: &str, stream: &str, home: Option<u32>) -> ControlToShard {
        ControlToShard::AddSession {
            session: self.session,
            local_ufrag: self.ufrag.clone(),
            local_pwd: self.pwd.clone(),
            remote_ufrag: "theirs".into(),
            app: app.into(),
            stream: stream.into(),
            home_shard: home,
            domain: "play.example.com".into(),
        }
    }

    pub fn start_msg(&self) -> ControlToShard {
        ControlToShard::StartMedia {
            session: self.session,
            srtp_profile: Profile::AeadAes128Gcm.dtls_id(),
            local_key: self.keys[0].clone(),
            local_salt: self.keys[1].clone(),
            remote_key: self.keys[2].clone(),
            remote_salt: self.keys[3].clone(),
            video_pt: Some(VIDEO_PT),
            audio_pt: Some(AUDIO_PT),
            video_playout_delay_id: None,
            video_rtx: Some((RTX_PT, RTX_SSRC)),
            video_nack: true,
            audio_red_pt: None,
        }
    }

    /// `start_msg` changed by `f`.
    pub fn start_with(&self, f: impl FnOnce(&mut StartMedia<'_>)) -> ControlToShard {
        let mut m = self.start_msg();
        if let ControlToShard::StartMedia { srtp_profile, local_key, audio_pt, video_playout_delay_id, video_rtx, video_nack, audio_red_pt, .. } = &mut m {
            f(&mut StartMedia { srtp_profile, local_key, audio_pt, video_playout_delay_id, video_rtx, video_nack, audio_red_pt });
        }
        m
    }

    /// A binding request as a browser sends it, keyed with `pwd`.
    pub fn binding(&self, pwd: &str, use_candidate: bool, tid: u8) -> Vec<u8> {
        let mut buf = [0u8; 512];
        let username = format!("{}:theirs", self.ufrag);
        let req = rts_stun::BindingRequest { transaction_id: [tid; 12], username: &username, priority: 1, controlling: Some(7), use_candidate };
        let n = rts_stun::write_binding_request(&req, pwd.as_bytes(), &mut buf).unwrap();
        buf[..n].to_vec()
    }

    /// A valid check from this viewer's address.
    pub fn check(&self, rig: &mut Rig) {
        rig.datagram(self.addr, &self.binding(&self.pwd, true, 1));
    }

    /// Add, ICE check, DTLS done: the viewer plays `app/stream`.
    pub fn join(rig: &mut Rig, n: u16, app: &str, stream: &str) -> Viewer {
        let v = Viewer::new(n);
        rig.control(v.add_msg(app, stream, None));
        v.check(rig);
        rig.control(v.start_msg());
        v
    }

    /// Forgets where `recv` stopped reading (after the rig's `sent` list was cleared).
    pub fn reset_seen(&mut self) {
        self.seen = 0;
    }

    /// Takes in what the core sent to this viewer since the last call.
    pub fn recv(&mut self, rig: &Rig) {
        for s in &rig.sent[self.seen..] {
            if s.dst != self.addr {
                continue;
            }
            assert_eq!(s.src, Some(IpAddr::V4(SERVER_IP)), "replies leave from the address the checks arrived at");
            let mut d = s.data.clone();
            match rts_stun::classify(&d) {
                PacketKind::Rtp => {
                    // The header's fixed part is in clear (its padding
                    // count is not: parse only after decrypting).
                    let ssrc = u32::from_be_bytes([d[8], d[9], d[10], d[11]]);
                    let sequence = u16::from_be_bytes([d[2], d[3]]);
                    if self.loss.as_mut().is_some_and(|f| f(ssrc, sequence)) {
                        self.lost.push((ssrc, sequence));
                        continue;
                    }
                    let n = match self.rx.unprotect_rtp(&mut d) {
                        Ok(n) => n,
                        // A resend of a packet we had (a NACK for a packet
                        // that was not lost) is a replay to SRTP.
                        Err(rts_srtp::Error::Replay) => {
                            self.replays += 1;
                            continue;
                        }
                        // A resend on the media SSRC of a packet sent more
                        // than 128 packets ago (a viewer without RTX NACKing
                        // an old one): this receiver's window is smaller
                        // than Chrome's and drops it. Recorded, so a caller
                        // can check it was a packet it had been sent.
                        Err(rts_srtp::Error::TooOld) => {
                            self.too_old.push((ssrc, sequence));
                            continue;
                        }
                        Err(e) => panic!("SRTP does not decrypt: {e}"),
                    };
                    let h = rts_rtp::RtpHeader::parse(&d[..n]).unwrap();
                    let payload = &d[h.payload_offset..h.payload_end];
                    let (seq, payload, rtx) = if h.ssrc == RTX_SSRC {
                        assert_eq!(h.payload_type, RTX_PT);
                        (u16::from_be_bytes([payload[0], payload[1]]), &payload[2..], Some(h.sequence))
                    } else {
                        (h.sequence, payload, None)
                    };
                    self.rtp.push(Rtp { at: s.at, msg: s.msg, padding: h.padding_len, ssrc: h.ssrc, pt: h.payload_type, seq, ts: h.timestamp, payload: payload.to_vec(), rtx });
                }
                PacketKind::Rtcp => {
                    let n = self.rx.unprotect_rtcp(&mut d).expect("SRTCP decrypts");
                    for p in rts_rtp::rtcp::parse_compound(&d[..n]).unwrap() {
                        if let RtcpPacket::SenderReport { ssrc, ntp, rtp_ts, .. } = p {
                            self.srs.push((s.at, ssrc, ntp, rtp_ts));
                        }
                    }
                }
                PacketKind::Stun => {
                    let m = rts_stun::StunMessage::parse(&d).unwrap();
                    self.stun.push((s.at, m.class == rts_stun::Class::SuccessResponse));
                }
                PacketKind::Dtls => self.dtls += 1,
                other => panic!("unexpected datagram kind {other:?}"),
            }
        }
        self.seen = rig.sent.len();
    }

    /// Video as received (retransmissions included, unwrapped).
    pub fn video(&self) -> Vec<&Rtp> {
        self.rtp.iter().filter(|p| p.pt == VIDEO_PT || p.rtx.is_some()).collect()
    }

    /// Sends a NACK for `lost` (this viewer's sequence numbers) on `ssrc`.
    pub fn nack(&mut self, rig: &mut Rig, ssrc: u32, lost: &[u16]) {
        let datagram = self.nack_datagram(ssrc, lost);
        rig.datagram(self.addr, &datagram);
    }

    pub fn audio(&self) -> Vec<&Rtp> {
        self.rtp.iter().filter(|p| p.pt == AUDIO_PT).collect()
    }

    /// A NACK for `lost` on `ssrc`, SRTCP-protected, not sent.
    pub fn nack_datagram(&mut self, ssrc: u32, lost: &[u16]) -> Vec<u8> {
        let mut buf = [0u8; 1024];
        let n = rts_rtp::rtcp::write_nack(&mut buf, 1, ssrc, lost).unwrap();
        let mut out = vec![0u8; n + 64];
        let m = self.tx.protect_rtcp(&buf[..n], &mut out).unwrap();
        out.truncate(m);
        out
    }

    /// Sends an RTCP compound packet to the core (SRTCP-protected). Bytes
    /// SRTCP cannot protect (no RTCP header to read the SSRC from) are not
    /// sent; returns whether they were.
    pub fn rtcp(&mut self, rig: &mut Rig, packet: &[u8]) -> bool {
        let mut out = vec![0u8; packet.len() + 64];
        let Ok(n) = self.tx.protect_rtcp(packet, &mut out) else { return false };
        rig.datagram(self.addr, &out[..n]);
        true
    }
}

/// Sequence numbers follow each other with no gap or repeat.
pub fn assert_consecutive(pkts: &[&Rtp], what: &str) {
    for w in pkts.windows(2) {
        assert_eq!(w[1].seq, w[0].seq.wrapping_add(1), "{what}: {} then {}", w[0].seq, w[1].seq);
    }
}
