//! The I/O side: spawn ffmpeg, split its Annex B output into access units, stamp and convert
//! them, and publish over RTMP (rml_rtmp's `ClientSession` on a blocking `TcpStream`).
//!
//! A reader thread forwards server bytes over a channel so the frame loop never blocks on
//! the socket; between frames the loop feeds them to the session (acks, pings).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult,
    PublishRequestType, StreamMetadata,
};
use rml_rtmp::time::RtmpTimestamp;

use crate::annexb::AuSplitter;
use crate::convert::Converter;
use crate::url::RtmpUrl;
use crate::PublishError;

/// How long the server may take to answer the handshake, connect and publish.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// An encoder producing this much without an AUD is not running with `aud=1`.
const MAX_AU_BYTES: usize = 16 << 20;

/// Publisher settings (the CLI flags).
#[derive(Debug, Clone)]
pub struct Options {
    /// `rtmp://host[:port]/app/stream[?query]`.
    pub url: String,
    /// Frame width.
    pub width: u32,
    /// Frame height.
    pub height: u32,
    /// Frames per second (also the RTMP timestamp step, 1000/fps ms).
    pub fps: u32,
    /// Keyframe interval in frames.
    pub gop: u32,
    /// ffmpeg bitrate string, e.g. `2M`.
    pub bitrate: String,
    /// Stop after this many seconds (`None`: run until killed).
    pub duration: Option<f64>,
    /// ffmpeg executable.
    pub ffmpeg: String,
    /// Timestamp SEI on one frame in this many (see `Converter::with_sei_every`).
    pub sei_every: u32,
    /// x264 preset. `ultrafast` keeps the encoder at a few % of a core, so a
    /// capacity run's publisher does not eat the core it shares.
    pub preset: String,
}

/// What was published.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Video tags sent (excluding sequence headers).
    pub frames: u64,
    /// Of which keyframes.
    pub keyframes: u64,
    /// Video tag bytes sent.
    pub bytes: u64,
}

/// The ffmpeg command line (arguments only) for these options.
pub fn ffmpeg_args(o: &Options) -> Vec<String> {
    let mut a: Vec<String> = [
        "-hide_banner",
        "-loglevel",
        "error",
        "-re",
        "-f",
        "lavfi",
        "-i",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.push(format!(
        "testsrc2=size={}x{}:rate={}",
        o.width, o.height, o.fps
    ));
    if let Some(d) = o.duration {
        a.extend(["-t".into(), format!("{d}")]);
    }
    let gop = o.gop.to_string();
    for s in [
        "-c:v",
        "libx264",
        "-profile:v",
        "baseline",
        "-tune",
        "zerolatency",
        "-preset",
        &o.preset,
        "-pix_fmt",
        "yuv420p",
        "-g",
        &gop,
        "-b:v",
        &o.bitrate,
        "-x264-params",
        "aud=1",
        "-flush_packets",
        "1",
        "-f",
        "h264",
        "-",
    ] {
        a.push(s.to_string());
    }
    a
}

/// Kills ffmpeg if we leave early (error, refused publish).
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rtmp_err(e: impl std::fmt::Debug) -> PublishError {
    PublishError::Rtmp(format!("{e:?}"))
}

/// A connected, publishing RTMP client.
struct Client {
    sock: TcpStream,
    session: ClientSession,
    /// Bytes from the server; `None` marks EOF or a read error.
    rx: Receiver<Option<Vec<u8>>>,
}

impl Client {
    fn connect(url: &RtmpUrl) -> Result<Self, PublishError> {
        let mut sock = TcpStream::connect((url.host.as_str(), url.port))?;
        sock.set_nodelay(true)?;
        sock.set_read_timeout(Some(SETUP_TIMEOUT))?;
        let mut hs = Handshake::new(PeerType::Client);
        sock.write_all(&hs.generate_outbound_p0_and_p1().map_err(rtmp_err)?)?;
        let mut buf = vec![0u8; 16 * 1024];
        let remaining = loop {
            let n = sock.read(&mut buf)?;
            if n == 0 {
                return Err(PublishError::Refused(
                    "server closed the connection during the handshake".into(),
                ));
            }
            match hs.process_bytes(&buf[..n]).map_err(rtmp_err)? {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    sock.write_all(&response_bytes)?
                }
                HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                } => {
                    sock.write_all(&response_bytes)?;
                    break remaining_bytes;
                }
            }
        };
        sock.set_read_timeout(None)?;
        let (tx, rx) = mpsc::channel();
        if !remaining.is_empty() {
            let _ = tx.send(Some(remaining));
        }
        let mut reader = sock.try_clone()?;
        std::thread::spawn(move || loop {
            match reader.read(&mut buf) {
                Ok(n) if n > 0 => {
                    if tx.send(Some(buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
                _ => {
                    let _ = tx.send(None);
                    return;
                }
            }
        });
        let mut config = ClientSessionConfig::new();
        config.tc_url = Some(url.tc_url());
        let (session, results) = ClientSession::new(config).map_err(rtmp_err)?;
        let mut client = Self { sock, session, rx };
        client.handle_results(results)?;
        Ok(client)
    }

    /// Writes outbound packets; returns the events.
    fn handle_results(
        &mut self,
        results: Vec<ClientSessionResult>,
    ) -> Result<Vec<ClientSessionEvent>, PublishError> {
        let mut events = Vec::new();
        for r in results {
            match r {
                ClientSessionResult::OutboundResponse(p) => self.sock.write_all(&p.bytes)?,
                ClientSessionResult::RaisedEvent(e) => events.push(e),
                ClientSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
        Ok(events)
    }

    fn send(&mut self, r: ClientSessionResult) -> Result<(), PublishError> {
        self.handle_results(vec![r]).map(drop)
    }

    fn feed(
        &mut self,
        bytes: Option<Vec<u8>>,
        phase: &str,
    ) -> Result<Vec<ClientSessionEvent>, PublishError> {
        let Some(bytes) = bytes else {
            return Err(PublishError::Refused(format!(
                "server closed the connection {phase}"
            )));
        };
        let results = self.session.handle_input(&bytes).map_err(rtmp_err)?;
        self.handle_results(results)
    }

    /// Waits for the event `done` accepts; a refusal or EOF is an error.
    fn wait(
        &mut self,
        phase: &str,
        done: impl Fn(&ClientSessionEvent) -> bool,
    ) -> Result<(), PublishError> {
        loop {
            let bytes = match self.rx.recv_timeout(SETUP_TIMEOUT) {
                Ok(b) => b,
                Err(RecvTimeoutError::Timeout) => {
                    return Err(PublishError::Rtmp(format!("timed out {phase}")))
                }
                Err(RecvTimeoutError::Disconnected) => None,
            };
            for e in self.feed(bytes, phase)? {
                if done(&e) {
                    return Ok(());
                }
                match e {
                    ClientSessionEvent::ConnectionRequestRejected { description } => {
                        return Err(PublishError::Refused(format!(
                            "connect rejected: {description}"
                        )))
                    }
                    ClientSessionEvent::UnhandleableOnStatusCode { code } => {
                        return Err(PublishError::Refused(format!("{phase}: {code}")))
                    }
                    _ => {}
                }
            }
        }
    }

    /// Feeds whatever the server sent since the last call, without blocking.
    fn poll_server(&mut self) -> Result<(), PublishError> {
        loop {
            match self.rx.try_recv() {
                Ok(bytes) => {
                    self.feed(bytes, "while publishing")?;
                }
                Err(TryRecvError::Empty) => return Ok(()),
                Err(TryRecvError::Disconnected) => {
                    return self.feed(None, "while publishing").map(drop)
                }
            }
        }
    }
}

fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Connects, publishes, and streams until ffmpeg ends (`--duration`) or fails.
pub fn run(o: &Options) -> Result<Summary, PublishError> {
    if o.fps == 0 || o.width == 0 || o.height == 0 {
        return Err(PublishError::Ffmpeg("size and fps must be non-zero".into()));
    }
    let url = RtmpUrl::parse(&o.url)?;
    let mut client = Client::connect(&url)?;
    let r = client
        .session
        .request_connection(url.app.clone())
        .map_err(rtmp_err)?;
    client.send(r)?;
    client.wait("connecting", |e| {
        matches!(e, ClientSessionEvent::ConnectionRequestAccepted)
    })?;
    let r = client
        .session
        .request_publishing(url.stream_key.clone(), PublishRequestType::Live)
        .map_err(rtmp_err)?;
    client.send(r)?;
    client.wait("publishing", |e| {
        matches!(e, ClientSessionEvent::PublishRequestAccepted)
    })?;

    let mut meta = StreamMetadata::new();
    meta.video_width = Some(o.width);
    meta.video_height = Some(o.height);
    meta.video_codec_id = Some(7);
    meta.video_frame_rate = Some(o.fps as f32);
    meta.encoder = Some("rts-publish".into());
    let r = client.session.publish_metadata(&meta).map_err(rtmp_err)?;
    client.send(r)?;

    let child = Command::new(&o.ffmpeg)
        .args(ffmpeg_args(o))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| PublishError::Ffmpeg(format!("cannot start {}: {e}", o.ffmpeg)))?;
    let mut child = ChildGuard(child);
    let mut stdout = child
        .0
        .stdout
        .take()
        .ok_or_else(|| PublishError::Ffmpeg("no stdout".into()))?;

    let mut splitter = AuSplitter::new();
    let mut converter = Converter::with_sei_every(o.sei_every);
    let mut summary = Summary::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = stdout.read(&mut buf)?;
        let mut aus = Vec::new();
        if n == 0 {
            aus.extend(splitter.finish());
        } else {
            splitter.push(&buf[..n]);
            while let Some(au) = splitter.next_au() {
                aus.push(au);
            }
            if splitter.buffered() > MAX_AU_BYTES {
                return Err(PublishError::Bitstream(
                    "no access unit delimiter in 16 MiB of ffmpeg output".into(),
                ));
            }
        }
        for au in aus {
            // Stamp when the access unit is complete, i.e. when it can first be sent.
            let Some(tags) = converter.convert(&au, unix_us())? else {
                continue;
            };
            let ts = RtmpTimestamp::new((summary.frames * 1000 / u64::from(o.fps)) as u32);
            if let Some(sh) = tags.sequence_header {
                let r = client
                    .session
                    .publish_video_data(Bytes::from(sh), ts, false)
                    .map_err(rtmp_err)?;
                client.send(r)?;
            }
            summary.bytes += tags.frame.len() as u64;
            let r = client
                .session
                .publish_video_data(Bytes::from(tags.frame), ts, false)
                .map_err(rtmp_err)?;
            client.send(r)?;
            summary.frames += 1;
            summary.keyframes += u64::from(tags.keyframe);
        }
        client.poll_server()?;
        if n == 0 {
            break;
        }
    }
    let status = child.0.wait()?;
    if !status.success() && summary.frames == 0 {
        return Err(PublishError::Ffmpeg(format!("exited with {status}")));
    }
    if let Ok(results) = client.session.stop_publishing() {
        let _ = client.handle_results(results);
    }
    let _ = client.sock.shutdown(std::net::Shutdown::Both);
    Ok(summary)
}
