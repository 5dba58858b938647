//! `--protocol flv|rtmp`: viewers of the standard outputs over TCP
//! (issue 13's capacity line). Each viewer connects, asks for the stream
//! (`GET /{app}/{stream}.flv`, or an RTMP handshake, `connect` and `play`
//! through rml_rtmp's client), and reads it; the FLV tags are counted as
//! they arrive. A frame is a video tag carrying coded data; a stall is a
//! gap of more than 200 ms between frames (as for WebRTC viewers); the
//! first frame is the first keyframe, timed from the request.
//!
//! `--slow-readers N` makes the first N viewers read at most
//! `--slow-read-kbps` (a viewer on a bad link): they are reported apart and
//! left out of the stall ratio, which is the others' (what a slow reader
//! must not harm).
//!
//! One mio poll per worker thread over its viewers' sockets.

use crate::stats::{percentiles, Percentiles, StallDetector};
use crate::{Error, Options};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Stall threshold, as for the WebRTC viewers.
const STALL: Duration = Duration::from_millis(200);
const TICK: Duration = Duration::from_millis(5);
const READ_BUF: usize = 256 * 1024;

/// Where and how to ask for the stream.
#[derive(Debug, Clone)]
pub enum Target {
    /// `http://host:port/app/stream.flv?query`: the request line's target.
    Flv { addr: SocketAddr, host: String, path: String },
    /// `rtmp://host[:port]/app/stream?query`.
    /// `tc_url` is what `connect` sends (`rtmp://host[:port]/app`), as
    /// ffmpeg and OBS do: the server bills the host.
    Rtmp { addr: SocketAddr, app: String, stream: String, tc_url: String },
}

impl Target {
    pub fn parse(url: &str, protocol: crate::Protocol) -> Result<Target, Error> {
        let bad = || Error::Usage(format!("--url {url}: expected http://host:port/app/stream.flv or rtmp://host[:port]/app/stream"));
        let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
        let (authority, path) = rest.split_once('/').ok_or_else(bad)?;
        let default_port = match (protocol, scheme) {
            (crate::Protocol::Flv, "http") => 80,
            (crate::Protocol::Rtmp, "rtmp") => 1935,
            _ => return Err(bad()),
        };
        // `[v6]:port`, `[v6]`, `host:port`, `host`.
        let has_port = match authority.rfind(']') {
            Some(i) => authority[i + 1..].starts_with(':'),
            None => authority.contains(':'),
        };
        let with_port = if has_port { authority.to_string() } else { format!("{authority}:{default_port}") };
        let addr = with_port.to_socket_addrs().map_err(|_| bad())?.next().ok_or_else(bad)?;
        match protocol {
            crate::Protocol::Flv => Ok(Target::Flv { addr, host: authority.to_string(), path: format!("/{path}") }),
            _ => {
                let (app, stream) = path.split_once('/').ok_or_else(bad)?;
                let tc_url = format!("rtmp://{authority}/{app}");
                Ok(Target::Rtmp { addr, app: app.to_string(), stream: stream.to_string(), tc_url })
            }
        }
    }

    fn addr(&self) -> SocketAddr {
        match self {
            Target::Flv { addr, .. } | Target::Rtmp { addr, .. } => *addr,
        }
    }
}

/// Incremental reader of an HTTP-FLV response: the head (status checked),
/// the FLV header, then tags. Sans-IO: bytes in, tags out.
#[derive(Debug, Default)]
pub struct FlvReader {
    buf: Vec<u8>,
    head_done: bool,
    header_done: bool,
}

/// One tag as the reader saw it: type, timestamp, and for video whether it
/// is coded data (not a sequence header) and a keyframe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagSeen {
    pub tag_type: u8,
    pub timestamp_ms: u32,
    pub coded: bool,
    pub keyframe: bool,
}

fn classify(tag_type: u8, timestamp_ms: u32, body: &[u8]) -> TagSeen {
    let (coded, keyframe) = match (tag_type, body) {
        (9, [first, packet, ..]) if first & 0x80 == 0 => (*packet == 1, *packet == 1 && first >> 4 == 1),
        // Enhanced RTMP: packet types 1 and 3 carry coded frames.
        (9, [first, ..]) => (matches!(first & 0x0f, 1 | 3), matches!(first & 0x0f, 1 | 3) && (first >> 4) & 0x07 == 1),
        _ => (false, false),
    };
    TagSeen { tag_type, timestamp_ms, coded, keyframe }
}

impl FlvReader {
    /// Feeds bytes; the tags completed by them go to `out`. Err: not a 200
    /// answer or not an FLV stream.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<TagSeen>) -> Result<(), String> {
        self.buf.extend_from_slice(data);
        let mut at = 0;
        if !self.head_done {
            let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                if self.buf.len() > 16 * 1024 {
                    return Err("response head too long".into());
                }
                return Ok(());
            };
            let status = String::from_utf8_lossy(&self.buf[..self.buf.len().min(12)]).into_owned();
            if !status.starts_with("HTTP/1.1 200") && !status.starts_with("HTTP/1.0 200") {
                return Err(format!("answer {}", status.trim()));
            }
            self.head_done = true;
            at = end + 4;
        }
        if !self.header_done {
            if self.buf.len() < at + 13 {
                self.buf.drain(..at);
                return Ok(());
            }
            if &self.buf[at..at + 3] != b"FLV" {
                return Err("not an FLV stream".into());
            }
            self.header_done = true;
            at += 13;
        }
        while self.buf.len() >= at + 11 {
            let h = &self.buf[at..at + 11];
            let size = u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize;
            let ts = u32::from_be_bytes([h[7], h[4], h[5], h[6]]);
            if self.buf.len() < at + 11 + size + 4 {
                break;
            }
            out.push(classify(h[0], ts, &self.buf[at + 11..at + 11 + size]));
            at += 11 + size + 4;
        }
        self.buf.drain(..at);
        Ok(())
    }
}

enum Wire {
    Flv(FlvReader),
    Rtmp(Box<RtmpPlayer>),
}

/// rml_rtmp's client through the handshake, `connect` and `play`.
struct RtmpPlayer {
    handshake: Option<Handshake>,
    session: Option<ClientSession>,
    stream: String,
    app: String,
    tc_url: String,
    asked_play: bool,
}

impl RtmpPlayer {
    fn new(app: &str, stream: &str, tc_url: &str) -> RtmpPlayer {
        RtmpPlayer { handshake: Some(Handshake::new(PeerType::Client)), session: None, stream: stream.into(), app: app.into(), tc_url: tc_url.into(), asked_play: false }
    }

    /// C0+C1.
    fn hello(&mut self) -> Result<Vec<u8>, String> {
        self.handshake.as_mut().ok_or("no handshake")?.generate_outbound_p0_and_p1().map_err(|e| e.to_string())
    }

    /// Input in; bytes to send back and tags out.
    fn feed(&mut self, data: &[u8], send: &mut Vec<u8>, out: &mut Vec<TagSeen>) -> Result<(), String> {
        if let Some(hs) = self.handshake.as_mut() {
            match hs.process_bytes(data).map_err(|e| e.to_string())? {
                HandshakeProcessResult::InProgress { response_bytes } => send.extend_from_slice(&response_bytes),
                HandshakeProcessResult::Completed { response_bytes, remaining_bytes } => {
                    send.extend_from_slice(&response_bytes);
                    self.handshake = None;
                    let mut config = ClientSessionConfig::new();
                    config.tc_url = Some(self.tc_url.clone());
                    let (mut session, initial) = ClientSession::new(config).map_err(|e| e.to_string())?;
                    let connect = session.request_connection(self.app.clone()).map_err(|e| e.to_string())?;
                    self.session = Some(session);
                    self.results(initial, send, out)?;
                    self.results(vec![connect], send, out)?;
                    if !remaining_bytes.is_empty() {
                        return self.feed(&remaining_bytes, send, out);
                    }
                }
            }
            return Ok(());
        }
        let results = self.session.as_mut().ok_or("no session")?.handle_input(data).map_err(|e| e.to_string())?;
        self.results(results, send, out)
    }

    fn results(&mut self, results: Vec<ClientSessionResult>, send: &mut Vec<u8>, out: &mut Vec<TagSeen>) -> Result<(), String> {
        for r in results {
            match r {
                ClientSessionResult::OutboundResponse(p) => send.extend_from_slice(&p.bytes),
                ClientSessionResult::RaisedEvent(ClientSessionEvent::ConnectionRequestAccepted) if !self.asked_play => {
                    self.asked_play = true;
                    let r = self.session.as_mut().ok_or("no session")?.request_playback(self.stream.clone()).map_err(|e| e.to_string())?;
                    self.results(vec![r], send, out)?;
                }
                ClientSessionResult::RaisedEvent(ClientSessionEvent::VideoDataReceived { data, timestamp, .. }) => out.push(classify(9, timestamp.value, &data)),
                ClientSessionResult::RaisedEvent(ClientSessionEvent::AudioDataReceived { timestamp, .. }) => out.push(classify(8, timestamp.value, &[])),
                ClientSessionResult::RaisedEvent(ClientSessionEvent::UnhandleableOnStatusCode { code }) if code.contains("StreamNotFound") => {
                    return Err(format!("play refused: {code}"));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

struct Viewer {
    socket: TcpStream,
    wire: Wire,
    asked: Instant,
    requested: bool,
    first_frame: Option<Duration>,
    stalls: StallDetector,
    frames: u64,
    keyframes: u64,
    tags: u64,
    bytes: u64,
    /// Read budget in bytes (slow readers only).
    slow: Option<f64>,
    /// Readable, but the budget ran out: read on a later tick.
    pending: bool,
    done: Option<String>,
    last_budget: Instant,
    /// From the request to the end of the run.
    watched: Duration,
}

/// What the run measured.
#[derive(Debug, Clone, Serialize)]
pub struct TcpReport {
    pub protocol: String,
    pub url: String,
    pub viewers_requested: u64,
    pub viewers_connected: u64,
    pub viewers_failed: u64,
    pub failures: BTreeMap<String, u64>,
    pub bytes_received: u64,
    pub frames: u64,
    pub keyframes: u64,
    /// Viewers that read at full speed: their stalls and ratio.
    pub stall_count: u64,
    pub stall_ms_total: u64,
    pub stall_ratio: f64,
    /// Request to the first keyframe, ms.
    pub first_frame_ms: Option<Percentiles>,
    pub slow_readers: u64,
    pub slow_bytes_received: u64,
    /// Slow readers whose connection the server closed.
    pub slow_disconnected: u64,
    pub duration_s: f64,
    pub cpu_s: f64,
}

impl TcpReport {
    pub fn summary_table(&self) -> String {
        let ff = self.first_frame_ms.as_ref().map_or("-".into(), |p| format!("{:.1} / {:.1} / {:.1}", p.p50, p.p95, p.p99));
        format!(
            "protocol            {}\nviewers             {} connected / {} requested, {} failed {:?}\nbytes received      {} ({:.1} Mbit/s)\nframes              {} ({} keyframes)\nstalls              {} ({} ms, ratio {:.5})\nfirst keyframe ms   {} (p50 / p95 / p99)\nslow readers        {} ({} bytes, {} disconnected by the server)\nloadgen cpu         {:.1} s over {:.1} s\n",
            self.protocol,
            self.viewers_connected,
            self.viewers_requested,
            self.viewers_failed,
            self.failures,
            self.bytes_received,
            self.bytes_received as f64 * 8.0 / self.duration_s.max(1e-9) / 1e6,
            self.frames,
            self.keyframes,
            self.stall_count,
            self.stall_ms_total,
            self.stall_ratio,
            ff,
            self.slow_readers,
            self.slow_bytes_received,
            self.slow_disconnected,
            self.cpu_s,
            self.duration_s,
        )
    }

    /// 1 when a threshold given on the command line is missed.
    pub fn exit_code(&self, opts: &Options) -> i32 {
        let stalls = opts.max_stall_ratio.is_some_and(|m| self.stall_ratio > m);
        let failed = opts.max_failed.is_some_and(|m| self.viewers_failed > m);
        i32::from(stalls || failed)
    }
}

/// Runs `opts.viewers` TCP viewers on one thread per `--threads`.
pub fn run(opts: &Options) -> Result<TcpReport, Error> {
    let target = Target::parse(&opts.url, opts.protocol)?;
    let threads = opts.threads.unwrap_or(1).max(1) as u64;
    let cpu0 = crate::cpu_seconds();
    let t0 = Instant::now();
    let mut handles = Vec::new();
    for t in 0..threads {
        let share = opts.viewers / threads + u64::from(t < opts.viewers % threads);
        let (target, opts) = (target.clone(), opts.clone());
        let slow = opts.slow_readers.saturating_sub(t * (opts.viewers / threads)).min(share);
        handles.push(std::thread::Builder::new().name(format!("loadgen-tcp{t}")).spawn(move || worker(&target, &opts, share, slow, threads))?);
    }
    let mut viewers = Vec::new();
    for h in handles {
        viewers.extend(h.join().map_err(|_| Error::Usage("worker thread panicked".into()))??);
    }
    let duration = t0.elapsed();
    let mut r = TcpReport {
        protocol: format!("{:?}", opts.protocol).to_lowercase(),
        url: opts.url.clone(),
        viewers_requested: opts.viewers,
        viewers_connected: 0,
        viewers_failed: 0,
        failures: BTreeMap::new(),
        bytes_received: 0,
        frames: 0,
        keyframes: 0,
        stall_count: 0,
        stall_ms_total: 0,
        stall_ratio: 0.0,
        first_frame_ms: None,
        slow_readers: 0,
        slow_bytes_received: 0,
        slow_disconnected: 0,
        duration_s: duration.as_secs_f64(),
        cpu_s: crate::cpu_seconds().zip(cpu0).map_or(0.0, |(b, a)| b - a),
    };
    let mut first = Vec::new();
    let mut watched_ms = 0.0;
    for v in &viewers {
        r.bytes_received += v.bytes;
        if v.slow.is_some() {
            r.slow_readers += 1;
            r.slow_bytes_received += v.bytes;
            r.slow_disconnected += u64::from(v.done.as_deref() == Some("closed by the server"));
            continue;
        }
        match v.first_frame {
            Some(ff) => {
                r.viewers_connected += 1;
                first.push(ff.as_secs_f64() * 1e3);
                if let Some(why) = &v.done {
                    *r.failures.entry(format!("after the start: {why}")).or_default() += 1;
                }
            }
            None => {
                r.viewers_failed += 1;
                *r.failures.entry(v.done.clone().unwrap_or_else(|| "no keyframe".into())).or_default() += 1;
            }
        }
        r.frames += v.frames;
        r.keyframes += v.keyframes;
        r.stall_count += v.stalls.count;
        r.stall_ms_total += v.stalls.total.as_millis() as u64;
        watched_ms += v.watched.as_secs_f64() * 1e3;
    }
    r.stall_ratio = if watched_ms > 0.0 { r.stall_ms_total as f64 / watched_ms } else { 0.0 };
    r.first_frame_ms = percentiles(&mut first);
    Ok(r)
}

fn request_bytes(target: &Target) -> Vec<u8> {
    match target {
        Target::Flv { host, path, .. } => format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: rts-loadgen\r\n\r\n").into_bytes(),
        Target::Rtmp { .. } => Vec::new(),
    }
}

fn worker(target: &Target, opts: &Options, count: u64, slow: u64, threads: u64) -> Result<Vec<Viewer>, Error> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut viewers: Vec<Viewer> = Vec::with_capacity(count as usize);
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(opts.duration);
    // Each worker opens its share at its share of the ramp.
    let interval = Duration::from_secs_f64(threads as f64 / opts.ramp);
    let mut buf = vec![0u8; READ_BUF];
    let mut tags = Vec::new();
    let slow_rate = opts.slow_read_kbps * 1000.0 / 8.0;
    while Instant::now() < end {
        let now = Instant::now();
        while (viewers.len() as u64) < count && now >= start + interval * viewers.len() as u32 {
            let idx = viewers.len();
            let mut socket = TcpStream::connect(target.addr())?;
            poll.registry().register(&mut socket, Token(idx), Interest::READABLE | Interest::WRITABLE)?;
            let wire = match target {
                Target::Flv { .. } => Wire::Flv(FlvReader::default()),
                Target::Rtmp { app, stream, tc_url, .. } => Wire::Rtmp(Box::new(RtmpPlayer::new(app, stream, tc_url))),
            };
            let is_slow = (idx as u64) < slow;
            viewers.push(Viewer {
                socket,
                wire,
                asked: now,
                requested: false,
                first_frame: None,
                stalls: StallDetector::new(STALL),
                frames: 0,
                keyframes: 0,
                tags: 0,
                bytes: 0,
                slow: is_slow.then_some(0.0),
                pending: false,
                done: None,
                last_budget: now,
                watched: Duration::ZERO,
            });
        }
        poll.poll(&mut events, Some(TICK))?;
        let mut ready: Vec<(usize, bool, bool)> = events.iter().map(|e| (e.token().0, e.is_writable(), e.is_readable() || e.is_read_closed())).collect();
        // Slow readers with a budget again read on the tick.
        for (i, v) in viewers.iter_mut().enumerate() {
            if let Some(b) = v.slow.as_mut() {
                let now = Instant::now();
                *b = (*b + slow_rate * now.duration_since(v.last_budget).as_secs_f64()).min(slow_rate);
                v.last_budget = now;
                if v.pending && *b >= 1.0 {
                    ready.push((i, false, true));
                }
            }
        }
        for (idx, writable, readable) in ready {
            let Some(v) = viewers.get_mut(idx) else { continue };
            if v.done.is_some() {
                continue;
            }
            if writable && !v.requested {
                v.requested = true;
                v.asked = Instant::now();
                let hello = match &mut v.wire {
                    Wire::Flv(_) => Ok(request_bytes(target)),
                    Wire::Rtmp(p) => p.hello(),
                };
                match hello {
                    Ok(b) if v.socket.write_all(&b).is_ok() => {}
                    Ok(_) => v.done = Some("connect failed".into()),
                    Err(e) => v.done = Some(e),
                }
            }
            if readable {
                read_viewer(v, &mut buf, &mut tags);
            }
        }
    }
    let now = Instant::now();
    for v in viewers.iter_mut() {
        v.stalls.finish(now);
        v.watched = now.saturating_duration_since(v.asked);
        let _ = poll.registry().deregister(&mut v.socket);
    }
    Ok(viewers)
}

fn read_viewer(v: &mut Viewer, buf: &mut [u8], tags: &mut Vec<TagSeen>) {
    v.pending = false;
    loop {
        let limit = match v.slow {
            Some(b) if b < 1.0 => {
                v.pending = true;
                return;
            }
            Some(b) => (b as usize).min(buf.len()),
            None => buf.len(),
        };
        let n = match v.socket.read(&mut buf[..limit]) {
            Ok(0) => {
                v.done = Some("closed by the server".into());
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                v.done = Some(format!("read: {}", e.kind()));
                return;
            }
        };
        if let Some(b) = v.slow.as_mut() {
            *b -= n as f64;
        }
        v.bytes += n as u64;
        tags.clear();
        let mut send = Vec::new();
        let r = match &mut v.wire {
            Wire::Flv(reader) => reader.feed(&buf[..n], tags),
            Wire::Rtmp(p) => p.feed(&buf[..n], &mut send, tags),
        };
        if let Err(e) = r {
            v.done = Some(e);
            return;
        }
        if !send.is_empty() && v.socket.write_all(&send).is_err() {
            v.done = Some("write failed".into());
            return;
        }
        let now = Instant::now();
        for t in tags.iter() {
            v.tags += 1;
            if !t.coded {
                continue;
            }
            if t.keyframe {
                v.keyframes += 1;
                v.first_frame.get_or_insert(now.duration_since(v.asked));
            }
            if v.first_frame.is_some() {
                v.frames += 1;
                v.stalls.on_frame(now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(tag_type: u8, ts: u32, body: &[u8]) -> Vec<u8> {
        let mut t = vec![tag_type];
        t.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        t.extend_from_slice(&ts.to_be_bytes()[1..]);
        t.push((ts >> 24) as u8);
        t.extend_from_slice(&[0, 0, 0]);
        t.extend_from_slice(body);
        t.extend_from_slice(&(body.len() as u32 + 11).to_be_bytes());
        t
    }

    #[test]
    fn the_reader_takes_a_response_in_any_pieces() {
        let mut all = b"HTTP/1.1 200 OK\r\nContent-Type: video/x-flv\r\n\r\nFLV\x01\x05\0\0\0\x09\0\0\0\0".to_vec();
        all.extend(tag(9, 0, &[0x17, 0, 0, 0, 0, 1]));
        all.extend(tag(9, 0x0100_0021, &[0x17, 1, 0, 0, 0, 0xaa]));
        all.extend(tag(8, 5, &[0xaf, 1, 2]));
        all.extend(tag(9, 66, &[0x27, 1, 0, 0, 0, 0xbb]));
        for piece in [1, 7, 64, all.len()] {
            let (mut r, mut out) = (FlvReader::default(), Vec::new());
            for c in all.chunks(piece) {
                r.feed(c, &mut out).unwrap();
            }
            let want = vec![
                TagSeen { tag_type: 9, timestamp_ms: 0, coded: false, keyframe: false },
                TagSeen { tag_type: 9, timestamp_ms: 0x0100_0021, coded: true, keyframe: true },
                TagSeen { tag_type: 8, timestamp_ms: 5, coded: false, keyframe: false },
                TagSeen { tag_type: 9, timestamp_ms: 66, coded: true, keyframe: false },
            ];
            assert_eq!(out, want, "pieces of {piece}");
        }
    }

    #[test]
    fn refusals_and_other_bodies_are_errors() {
        let mut out = Vec::new();
        let e = FlvReader::default().feed(b"HTTP/1.1 404 Not Found\r\n\r\n", &mut out).unwrap_err();
        assert!(e.contains("404"), "{e}");
        let e = FlvReader::default().feed(b"HTTP/1.1 200 OK\r\n\r\n<html>xxxxxxxx", &mut out).unwrap_err();
        assert!(e.contains("not an FLV"), "{e}");
        assert!(out.is_empty());
    }

    #[test]
    fn urls_parse_per_protocol() {
        let t = Target::parse("http://127.0.0.1:8088/live/s.flv?auth_key=a", crate::Protocol::Flv).unwrap();
        assert!(matches!(t, Target::Flv { ref path, ref host, .. } if path == "/live/s.flv?auth_key=a" && host == "127.0.0.1:8088"));
        let t = Target::parse("rtmp://127.0.0.1/live/s?auth_key=a", crate::Protocol::Rtmp).unwrap();
        assert!(matches!(t, Target::Rtmp { addr, ref app, ref stream, ref tc_url } if addr.port() == 1935 && app == "live" && stream == "s?auth_key=a" && tc_url == "rtmp://127.0.0.1/live"));
        assert!(Target::parse("rtmp://127.0.0.1/live/s", crate::Protocol::Flv).is_err());
        // IPv6 literals, with and without a port.
        let t = Target::parse("http://[::1]:8088/live/s.flv", crate::Protocol::Flv).unwrap();
        assert_eq!(t.addr(), "[::1]:8088".parse().unwrap());
        let t = Target::parse("rtmp://[::1]/live/s", crate::Protocol::Rtmp).unwrap();
        assert_eq!(t.addr(), "[::1]:1935".parse().unwrap());
        assert!(Target::parse("http://127.0.0.1:8088", crate::Protocol::Flv).is_err());
    }
}
