//! A live stream on its home shard: the RTMP publisher's H.264 (and Opus,
//! from the transcoder) turned into RTP packets once per frame, shared by
//! every viewer (`Bytes`), plus the GOP cache a new viewer starts from.
//!
//! Timestamps: RTP time is derived from FLV time plus a per-stream offset.
//! The offset is recomputed when the publisher reconnects or its clock jumps,
//! so viewers see continuous timestamps (and sequence numbers: the
//! packetizers live as long as the stream has a publisher or viewers).

use super::history::History;
use super::streams::StreamId;
use crate::latency::{LatencySummary, LatencyWindow};
use crate::lipsync::{AvLag, PlayoutHint};
use crate::send_clock::{Follow, SendClock};
use crate::video_hold::VideoHold;
use crate::pacer::AudioPacer;
use crate::transcode::{StreamTranscoder, Transcoded};
use bytes::Bytes;
use rts_common::histogram::{Histogram, FIRST_FRAME_BOUNDS_US, SERVER_LATENCY_BOUNDS_US, TRANSCODE_BOUNDS_US};
use rts_common::ipc::{first_frame_slot, Protocol, StreamStats, FIRST_FRAME_PROTOCOLS};
use crate::flv_gop::FlvGop;
use rts_rtmp::flv::{self, AudioTag, AvcConfig, VideoTag};
use rts_rtp::h264::{self, H264Packetizer};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Packets kept for a new viewer: everything since the last keyframe, up to
/// this bound (a 2 s GOP at 8 Mbit/s is ~1,700 packets).
const GOP_CACHE_MAX_PACKETS: usize = 4096;
/// A DTS step outside [-500 ms, +5 s] is a publisher clock jump, not media.
const MAX_BACKWARD_JUMP_MS: i64 = 500;
const MAX_FORWARD_JUMP_MS: i64 = 5_000;
/// Assumed frame spacing when re-basing timestamps after a jump.
const REBASE_STEP_MS: i64 = 33;

/// Payload types inside the shared packets; each viewer's copy gets its
/// negotiated PT (and SSRC, sequence, timestamp offsets) patched in.
pub const SHARED_VIDEO_PT: u8 = 96;
pub const SHARED_AUDIO_PT: u8 = 111;
/// RED packets (the Opus packets with earlier frames added) share this.
pub const SHARED_RED_PT: u8 = 63;
/// Earlier Opus frames in each RED packet: a frame is lost only when three
/// packets in a row are (0.1 % at 10 % random loss).
pub const RED_DISTANCE: usize = 2;

/// Floor of the retransmission burst: a dozen full packets, for streams
/// whose rate is not measured yet or is tiny.
pub const MIN_BURST_BYTES: f64 = 16_384.0;
/// Media time a viewer's retransmission burst covers.
pub const BURST_MEDIA: Duration = Duration::from_millis(500);

/// Bytes per second over the last full one-second window.
#[derive(Debug, Default)]
struct RateMeter {
    start: Option<Instant>,
    bytes: usize,
    per_s: f64,
}

impl RateMeter {
    fn add(&mut self, bytes: usize, now: Instant) {
        let start = *self.start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= Duration::from_secs(1) {
            self.per_s = self.bytes as f64 / elapsed.as_secs_f64();
            self.start = Some(now);
            self.bytes = 0;
        } else if self.per_s == 0.0 && elapsed >= Duration::from_millis(200) {
            // Until the first full window, the partial one.
            self.per_s = self.bytes as f64 / elapsed.as_secs_f64();
        }
        self.bytes += bytes;
    }

    fn bytes_per_s(&self) -> f64 {
        self.per_s
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Video,
    Audio,
}

/// How late a stream's audio is taken to leave against its clock anchor
/// before it was measured (`Stream::send_rtp_at`): AAC decode, Opus encode
/// and the pacer take 20-45 ms here (docs/decisions/010).
const UNMEASURED_AUDIO_LATE_MS: f64 = 45.0;

/// A stream's histograms (`/metrics`): fixed arrays, so counting a sample
/// is an increment, never an allocation. They live as long as the stream
/// on this shard (a transcoder that stops does not take its counts along).
#[derive(Debug, Default, Clone, Copy)]
struct StreamHistograms {
    latency: Histogram,
    audio_transcode: Histogram,
    video_transcode: Histogram,
    first_frame: [Histogram; FIRST_FRAME_PROTOCOLS.len()],
}

pub struct Stream {
    app: String,
    name: String,
    /// The RTMP connection publishing it (home shard only).
    publisher: Option<usize>,
    video_ssrc: u32,
    audio_ssrc: u32,
    avc: Option<AvcConfig>,
    packetizer: H264Packetizer,
    audio_seq: u16,
    /// Video since the last keyframe (consecutive sequence numbers). Audio
    /// is never replayed (a backlog would start the receiver's audio
    /// jitter buffer late), so it is not cached.
    gop: Vec<Bytes>,
    gop_valid: bool,
    /// The publisher's own tags from the last keyframe, for FLV viewers.
    pub flv: FlvGop,
    /// Connections (the shell's ids) of FLV viewers (`flv_viewers.rs`).
    pub flv_viewers: Vec<usize>,
    /// Session slab indices of playing viewers. Shared with the deliveries
    /// in progress (`FanOut` walks the list as it was when it started, and
    /// the shell handles input between its slices); a change while one is
    /// out copies the list once.
    viewers: Arc<Vec<usize>>,
    /// Sessions that switched away from this stream and still get its audio
    /// until their new stream's first audio packet (`Media::audio_tail`).
    audio_tail: Arc<Vec<usize>>,
    /// Sessions that switched to this stream before its audio flowed: their
    /// old stream's audio goes on until this stream's next audio packet.
    audio_waiters: Vec<usize>,
    /// When this stream last delivered audio.
    last_audio: Option<Instant>,
    /// How many of them take audio as RED.
    red_viewers: usize,
    /// Where the next delivery starts in `viewers` (see `FanOut`).
    rotation: usize,
    /// Stream time = FLV time + offset (ms); see module docs.
    offset_ms: i64,
    last_flv_dts: Option<i64>,
    last_stream_ms: Option<i64>,
    rebase_pending: bool,
    /// Wall clock <-> stream time anchor of the latest video frame (for SRs,
    /// shared by both tracks so receivers can lip-sync).
    anchor: Option<(Instant, i64)>,
    latency: LatencyWindow,
    /// Bucket counts for `/metrics`, since the stream started here.
    hists: StreamHistograms,
    video_frames: u64,
    audio_frames: u64,
    bytes_in: u64,
    bytes_out: u64,
    video_packets: u64,
    video_octets: u64,
    audio_packets: u64,
    audio_octets: u64,
    /// Raw AAC AudioSpecificConfig, when the publisher sends AAC.
    aac_config: Option<Bytes>,
    /// Set when the source has B-frames (composition time != 0).
    saw_b_frames: bool,
    /// Raw AVCDecoderConfigurationRecord (for the re-encoder).
    avc_record: Option<Bytes>,
    /// AAC -> Opus / B-frame re-encode worker, while WebRTC viewers need it
    /// (or, with `keep_transcoder_warm`, while the stream is published).
    transcoder: Option<StreamTranscoder>,
    keep_transcoder_warm: bool,
    /// How long the transcoder runs on after its last viewer left, and
    /// since when it has (`[transcode] linger_s`).
    transcoder_linger: Duration,
    transcoder_idle_since: Option<Instant>,
    /// The publisher's H.264 frames since its last keyframe, as they came:
    /// a re-encoder that starts mid-GOP decodes from here, faster than real
    /// time, instead of waiting up to a GOP for the next keyframe.
    source_gop: Vec<SourceFrame>,
    source_gop_bytes: usize,
    /// A re-encoder started on the source GOP is decoding it (Some): its
    /// output until the catch-up ends only fills the cache
    /// (`Stream::end_reencode_catchup`).
    reencode_catchup: Option<ReencodeCatchUp>,
    /// An Opus packet waiting for its pair (see [`Stream::pair_audio`]).
    audio_hold: Option<(Bytes, Instant)>,
    /// Transcoded audio on its way out at an even pace (see pacer.rs).
    audio_pacer: AudioPacer,
    /// How much later than video the audio leaves us (the video
    /// playout-delay hint, see lipsync.rs).
    av_lag: AvLag,
    /// The publisher's video tags waiting for their audio (video_hold.rs),
    /// and how long the last one let go waited: the hold of the video
    /// delivered next (its own, or a re-encoder's output of it and the
    /// frames before), taken off its A/V lag sample.
    video_hold: VideoHold,
    released_hold: Duration,
    /// How long the video frame that set the clock anchor was held: the
    /// A/V lag is measured against its arrival.
    anchor_held: Duration,
    /// When this stream sends each kind's packets (a switch's re-base).
    video_clock: SendClock,
    audio_clock: SendClock,
    /// Replica: the home shard this stream's packets come from.
    home: Option<usize>,
    /// A replica without viewers since then: it lingers (`[transcode]
    /// linger_s`), see `Core::drop_stream_if_unused`.
    unused_since: Option<Instant>,
    /// Packets recently delivered, for retransmission (and RED's earlier
    /// frames), by stream sequence number.
    video_history: History,
    audio_history: History,
    /// Bytes per second delivered, and the size of the latest keyframe:
    /// the viewers' retransmission budget.
    rate: RateMeter,
    keyframe_bytes: usize,
    /// Home: shards that replicate this stream, each with its replica's id.
    subscribers: Vec<(usize, StreamId)>,
}

/// A re-encoder's catch-up on the source GOP ([`Stream::end_reencode_catchup`]).
#[derive(Debug, Default, Clone, Copy)]
struct ReencodeCatchUp {
    /// Its first output (the inner time; the core's clock is not at hand
    /// where the re-encoder starts).
    first_out: Option<Instant>,
    /// When the worker said it ended (its IDR came before): from here the
    /// output at the live pace is waited for at most [`REENCODE_LIVE_WAIT`].
    caught_up: Option<Instant>,
    /// Its last output so far: when, and its media time (ms).
    last_out: Option<(Instant, u64)>,
}

/// Audio delivered this recently is flowing ([`Stream::audio_flowing`]).
const AUDIO_FLOWING: Duration = Duration::from_millis(100);

/// Longest an Opus packet waits for its pair (one 20 ms frame plus slack).
pub const AUDIO_HOLD: Duration = Duration::from_millis(25);

/// Most frames kept in the source GOP (10 s at 60 fps); a longer GOP is not
/// kept, and a re-encoder starting on it waits for the next keyframe.
pub const SOURCE_GOP_MAX_FRAMES: usize = 600;
/// Longest a re-encoder's catch-up on the source GOP holds its output back.
pub const REENCODE_CATCHUP_MAX: Duration = Duration::from_secs(3);
/// Longest the output at the live pace is waited for once the worker's
/// catch-up ended (a publisher that paused; at 10 fps the next frame is
/// 100 ms away, plus its encode).
pub const REENCODE_LIVE_WAIT: Duration = Duration::from_millis(200);
/// Most bytes kept in the source GOP (10 s at ~13 Mbit/s).
const SOURCE_GOP_MAX_BYTES: usize = 16 << 20;

/// One publisher H.264 frame as it came (AVCC), in stream time.
struct SourceFrame {
    avcc: Bytes,
    dts_ms: i64,
    cts_ms: i32,
}

/// What an audio tag produced.
pub enum AudioOutcome {
    /// The AAC configuration changed: re-evaluate the transcoder.
    ConfigChanged,
    /// A passed-through Opus packet to fan out.
    Packet(Bytes),
    Nothing,
}

/// What a video tag produced.
pub enum VideoOutcome {
    /// New packets (appended to the caller's vec) to fan out.
    Packets { keyframe: bool },
    /// Sequence header or a frame that produced nothing.
    Nothing,
}

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("flv: {0}")]
    Flv(String),
    #[error("h264: {0}")]
    H264(String),
}

impl Stream {
    pub fn new(app: &str, name: &str, max_packet: usize) -> Stream {
        let video_ssrc = rts_common::ipc::stream_ssrc(app, name, 0);
        Stream {
            app: app.to_owned(),
            name: name.to_owned(),
            publisher: None,
            video_ssrc,
            audio_ssrc: rts_common::ipc::stream_ssrc(app, name, 1),
            avc: None,
            packetizer: H264Packetizer::new(video_ssrc, SHARED_VIDEO_PT, max_packet, rand::random()),
            audio_seq: rand::random(),
            gop: Vec::new(),
            gop_valid: false,
            flv: FlvGop::default(),
            flv_viewers: Vec::new(),
            viewers: Arc::new(Vec::new()),
            audio_tail: Arc::new(Vec::new()),
            audio_waiters: Vec::new(),
            last_audio: None,
            red_viewers: 0,
            rotation: 0,
            offset_ms: 0,
            last_flv_dts: None,
            last_stream_ms: None,
            rebase_pending: false,
            anchor: None,
            latency: LatencyWindow::default(),
            hists: StreamHistograms::default(),
            video_frames: 0,
            audio_frames: 0,
            bytes_in: 0,
            bytes_out: 0,
            video_packets: 0,
            video_octets: 0,
            audio_packets: 0,
            audio_octets: 0,
            aac_config: None,
            saw_b_frames: false,
            avc_record: None,
            transcoder: None,
            keep_transcoder_warm: false,
            transcoder_linger: Duration::ZERO,
            transcoder_idle_since: None,
            source_gop: Vec::new(),
            source_gop_bytes: 0,
            reencode_catchup: None,
            audio_hold: None,
            audio_pacer: AudioPacer::new(),
            av_lag: AvLag::default(),
            video_hold: VideoHold::new(false),
            released_hold: Duration::ZERO,
            anchor_held: Duration::ZERO,
            video_clock: SendClock::new(90, Follow::Average),
            audio_clock: SendClock::new(48, Follow::Earliest),
            home: None,
            unused_since: None,
            subscribers: Vec::new(),
            video_history: History::video(),
            audio_history: History::audio(),
            rate: RateMeter::default(),
            keyframe_bytes: 0,
        }
    }

    pub fn key_of(app: &str, name: &str) -> String {
        format!("{app}/{name}")
    }

    /// "app/stream".
    pub fn key(&self) -> String {
        Stream::key_of(&self.app, &self.name)
    }

    pub fn app(&self) -> &str {
        &self.app
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn video_ssrc(&self) -> u32 {
        self.video_ssrc
    }

    pub fn audio_ssrc(&self) -> u32 {
        self.audio_ssrc
    }

    /// Published here (this shard holds the RTMP connection).
    pub fn is_published(&self) -> bool {
        self.publisher.is_some()
    }

    /// Live here: published on this shard, or replicated from another.
    pub fn is_live(&self) -> bool {
        self.publisher.is_some() || self.home.is_some()
    }

    pub fn publisher(&self) -> Option<usize> {
        self.publisher
    }

    /// Nobody publishes or watches it here: it can go.
    pub fn is_unused(&self) -> bool {
        self.publisher.is_none() && self.viewers.is_empty() && self.flv_viewers.is_empty() && self.audio_tail.is_empty()
    }

    /// Whether this stream delivered audio within the last 100 ms (five
    /// Opus packets): a switch to it needs no audio tail.
    pub fn audio_flowing(&self, now: Instant) -> bool {
        self.last_audio.is_some_and(|t| now.saturating_duration_since(t) <= AUDIO_FLOWING)
    }

    /// Session `idx` left this stream and keeps getting its audio.
    pub fn add_audio_tail(&mut self, idx: usize) {
        if !self.audio_tail.contains(&idx) {
            Arc::make_mut(&mut self.audio_tail).push(idx);
        }
    }

    pub fn remove_audio_tail(&mut self, idx: usize) {
        if self.audio_tail.contains(&idx) {
            Arc::make_mut(&mut self.audio_tail).retain(|&v| v != idx);
        }
    }

    /// The sessions fed this stream's audio after leaving it (shared, like
    /// [`Stream::viewers_shared`]).
    pub fn audio_tail_shared(&self) -> Option<Arc<Vec<usize>>> {
        (!self.audio_tail.is_empty()).then(|| Arc::clone(&self.audio_tail))
    }

    /// Session `idx` waits for this stream's audio (its old stream's tail).
    pub fn add_audio_waiter(&mut self, idx: usize) {
        if !self.audio_waiters.contains(&idx) {
            self.audio_waiters.push(idx);
        }
    }

    pub fn remove_audio_waiter(&mut self, idx: usize) {
        self.audio_waiters.retain(|&v| v != idx);
    }

    /// The sessions waiting for this stream's audio, now that it comes.
    pub fn take_audio_waiters(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.audio_waiters)
    }

    pub fn viewers(&self) -> &[usize] {
        &self.viewers
    }

    /// The viewer list as it is now, for a delivery (no copy).
    pub fn viewers_shared(&self) -> Arc<Vec<usize>> {
        Arc::clone(&self.viewers)
    }

    /// Adds viewer `idx`; `red`: it takes audio as RED.
    pub fn add_viewer(&mut self, idx: usize, red: bool) {
        if !self.viewers.contains(&idx) {
            Arc::make_mut(&mut self.viewers).push(idx);
            self.red_viewers += usize::from(red);
        }
        self.update_transcoder();
    }

    pub fn remove_viewer(&mut self, idx: usize, red: bool) {
        if self.viewers.contains(&idx) {
            Arc::make_mut(&mut self.viewers).retain(|&v| v != idx);
            self.red_viewers -= usize::from(red).min(self.red_viewers);
        }
        self.update_transcoder();
    }

    /// Where the next delivery starts in the viewer list: advanced by a
    /// large odd step (the golden ratio of 2^32) each time, so successive
    /// deliveries start far apart and every viewer's place is spread evenly.
    pub fn next_start(&mut self) -> usize {
        self.rotation = self.rotation.wrapping_add(0x9e37_79b9);
        self.rotation
    }

    /// Whether any viewer here takes audio as RED.
    pub fn has_red_viewers(&self) -> bool {
        self.red_viewers > 0
    }

    /// Whether this replica, without viewers, has lingered for `linger` at
    /// `now` (housekeeping: its first call starts the count, a viewer back
    /// stops it). False for a stream published here or one in use.
    pub fn replica_lingered(&mut self, linger: Duration, now: Instant) -> bool {
        if self.home.is_none() || !self.is_unused() {
            self.unused_since = None;
            return false;
        }
        let since = *self.unused_since.get_or_insert(now);
        now.saturating_duration_since(since) >= linger
    }

    /// Replica: the home shard.
    pub fn home(&self) -> Option<usize> {
        self.home
    }

    pub fn set_home(&mut self, home: Option<usize>) {
        if home.is_some() && home != self.home {
            self.reset_history();
        }
        self.home = home;
    }

    pub fn subscribers(&self) -> &[(usize, StreamId)] {
        &self.subscribers
    }

    /// Shard `shard` replicates this stream into its stream `replica`.
    pub fn add_subscriber(&mut self, shard: usize, replica: StreamId) {
        self.subscribers.retain(|&(s, _)| s != shard);
        self.subscribers.push((shard, replica));
        self.update_transcoder();
    }

    pub fn remove_subscriber(&mut self, shard: usize) {
        self.subscribers.retain(|&(s, _)| s != shard);
        self.update_transcoder();
    }

    pub fn anchor(&self) -> Option<(Instant, i64)> {
        self.anchor
    }

    pub fn av_hint(&self, now: Instant) -> PlayoutHint {
        self.av_lag.hint(now)
    }

    pub fn record_latency(&mut self, us: u32) {
        self.latency.record(us);
        self.hists.latency.record(&SERVER_LATENCY_BOUNDS_US, us);
    }

    /// A viewer of `protocol` got its first video `us` after its media
    /// could flow (`rts_first_frame_seconds`).
    /// The first-frame histogram of `protocol` viewers (to count into).
    pub fn first_frame_hist(&mut self, protocol: Protocol) -> Option<&mut Histogram> {
        first_frame_slot(protocol).and_then(|i| self.hists.first_frame.get_mut(i))
    }

    pub fn record_first_frame(&mut self, protocol: Protocol, us: u32) {
        if let Some(h) = self.first_frame_hist(protocol) {
            h.record(&FIRST_FRAME_BOUNDS_US, us);
        }
    }

    pub fn latency(&self) -> LatencySummary {
        self.latency.summary()
    }

    pub fn video_frames(&self) -> u64 {
        self.video_frames
    }

    /// Bytes sent to this stream's viewers here (all protocols).
    pub fn bytes_out(&self) -> u64 {
        self.bytes_out
    }

    pub fn add_bytes_out(&mut self, n: u64) {
        self.bytes_out += n;
    }

    /// Packets and payload octets sent so far on `kind` (sender reports).
    pub fn sent_counts(&self, kind: Kind) -> (u64, u64) {
        match kind {
            Kind::Video => (self.video_packets, self.video_octets),
            Kind::Audio => (self.audio_packets, self.audio_octets),
        }
    }

    /// A (new) publisher (RTMP connection `conn`) starts: its clock
    /// restarts, ours must not; a replica becomes the home.
    pub fn on_publish_start(&mut self, conn: usize) {
        self.publisher = Some(conn);
        if self.home.take().is_some() {
            self.reset_history();
        }
        self.rebase_pending = self.last_stream_ms.is_some();
        self.last_flv_dts = None;
        self.avc = None;
        self.aac_config = None;
        self.saw_b_frames = false;
        self.clear_source_gop();
        self.flv.reset();
    }

    /// The publisher left: returns the shards that replicated the stream.
    pub fn on_publish_end(&mut self) -> Vec<(usize, StreamId)> {
        self.publisher = None;
        self.video_hold.clear();
        let subs = std::mem::take(&mut self.subscribers);
        self.update_transcoder();
        subs
    }

    /// Packets a viewer joining now starts from (empty until a keyframe).
    pub fn gop_cache(&self) -> &[Bytes] {
        if self.gop_valid {
            &self.gop
        } else {
            &[]
        }
    }

    /// Maps a publisher DTS (FLV ms) to stream time, re-basing on reconnects
    /// and clock jumps so stream time stays continuous.
    pub fn stream_time(&mut self, flv_dts: u32) -> i64 {
        let dts = flv_dts as i64;
        let jumped = match self.last_flv_dts {
            Some(prev) => {
                let d = dts - prev;
                !(-MAX_BACKWARD_JUMP_MS..=MAX_FORWARD_JUMP_MS).contains(&d)
            }
            None => false,
        };
        if self.rebase_pending || jumped {
            let last = self.last_stream_ms.unwrap_or(0);
            self.offset_ms = last + REBASE_STEP_MS - dts;
            if jumped {
                tracing::info!(stream = %self.key(), from = self.last_flv_dts, to = dts,
                    "publisher timestamp jump; re-based to keep RTP time continuous");
            }
            self.rebase_pending = false;
        }
        self.last_flv_dts = Some(dts);
        let t = dts + self.offset_ms;
        self.last_stream_ms = Some(self.last_stream_ms.map_or(t, |l| l.max(t)));
        t
    }

    /// One FLV video tag body from the publisher.
    pub fn on_video(&mut self, timestamp_ms: u32, data: &Bytes, now: Instant, out: &mut Vec<Bytes>) -> Result<VideoOutcome, StreamError> {
        self.bytes_in += data.len() as u64;
        match flv::parse_video_tag(data).map_err(|e| StreamError::Flv(e.to_string()))? {
            VideoTag::AvcSequenceHeader(cfg) => {
                let changed = self.avc.as_ref().is_some_and(|old| old.sps != cfg.sps || old.pps != cfg.pps);
                // Not `level`: the JSON log format has its own `level` key.
                tracing::info!(stream = %self.key(), avc_profile = cfg.profile, avc_level = cfg.level,
                    sps = cfg.sps.len(), pps = cfg.pps.len(), changed, "AVC sequence header");
                if changed {
                    // New SPS/PPS (e.g. resolution change): cached frames no
                    // longer decode with them; wait for the next IDR.
                    self.gop.clear();
                    self.gop_valid = false;
                    self.clear_source_gop();
                }
                self.avc = Some(cfg);
                let record = data.slice(5.min(data.len())..);
                if let Some(t) = self.transcoder.as_mut().filter(|t| t.video) {
                    t.send(rts_transcode::Job::VideoConfig(record.clone()));
                }
                self.avc_record = Some(record);
                Ok(VideoOutcome::Nothing)
            }
            VideoTag::AvcNalus { composition_time_ms, data, .. } => {
                let Some(length_size) = self.avc.as_ref().map(|c| c.nal_length_size) else {
                    // Frames before the sequence header cannot be decoded.
                    return Ok(VideoOutcome::Nothing);
                };
                let mut nalus: Vec<&[u8]> = Vec::with_capacity(8);
                for n in h264::avcc_nalus(&data, length_size) {
                    nalus.push(n.map_err(|e| StreamError::H264(e.to_string()))?);
                }
                if nalus.is_empty() {
                    return Ok(VideoOutcome::Nothing);
                }
                let keyframe = h264::is_keyframe(&nalus);
                let dts = self.stream_time(timestamp_ms);
                if composition_time_ms != 0 && !self.saw_b_frames {
                    self.saw_b_frames = true;
                    tracing::info!(stream = %self.key(), "B-frames detected (composition time != 0): WebRTC viewers get a baseline re-encode");
                    // The packets cached so far are the source's: no viewer
                    // may start on them.
                    self.gop.clear();
                    self.gop_valid = false;
                    // Starts from the source GOP so far; this frame follows live.
                    self.update_transcoder();
                }
                self.cache_source(&data, dts, composition_time_ms, keyframe);
                if self.saw_b_frames {
                    // Viewers get the re-encoded stream (on_reencoded); while no
                    // re-encoder runs, nobody can take these frames as they are.
                    if let Some(t) = self.transcoder.as_mut().filter(|t| t.video) {
                        t.video_frame(data.clone(), dts, composition_time_ms, now);
                    }
                    self.video_frames += 1;
                    return Ok(VideoOutcome::Nothing);
                }
                let pts = dts + composition_time_ms as i64;
                let rtp_ts = (pts.max(0) as u64).wrapping_mul(90) as u32;
                let Some(cfg) = self.avc.as_ref() else { return Ok(VideoOutcome::Nothing) };
                let first = out.len();
                self.packetizer
                    .packetize(rtp_ts, &nalus, Some((&cfg.sps, &cfg.pps)), out)
                    .map_err(|e| StreamError::H264(e.to_string()))?;
                let produced = &out[first..];
                self.record_video(produced, keyframe);
                self.anchor = Some((now, dts));
                self.anchor_held = self.released_hold;
                self.video_frames += 1;
                Ok(if produced.is_empty() { VideoOutcome::Nothing } else { VideoOutcome::Packets { keyframe } })
            }
            VideoTag::AvcEndOfSequence | VideoTag::Unsupported { .. } => Ok(VideoOutcome::Nothing),
        }
    }

    /// One FLV audio tag body: AAC goes to the transcoder (if running);
    /// Enhanced-RTMP Opus passes through as is.
    pub fn on_audio(&mut self, timestamp_ms: u32, data: &Bytes, now: Instant) -> AudioOutcome {
        self.bytes_in += data.len() as u64;
        match flv::parse_audio_tag(data) {
            Ok(AudioTag::AacSequenceHeader { sample_rate, channels, .. }) => {
                let asc = data.slice(2.min(data.len())..);
                if self.aac_config.as_ref() == Some(&asc) {
                    return AudioOutcome::Nothing;
                }
                tracing::info!(stream = %self.key(), sample_rate, channels, "AAC sequence header");
                if let Some(t) = self.transcoder.as_mut().filter(|t| t.audio) {
                    t.send(rts_transcode::Job::AudioConfig(asc.clone()));
                }
                self.aac_config = Some(asc);
                AudioOutcome::ConfigChanged
            }
            Ok(AudioTag::AacRaw(aac)) => {
                let ms = self.stream_time(timestamp_ms);
                if let Some(t) = self.transcoder.as_mut().filter(|t| t.audio) {
                    t.audio_frame(aac, ms, now);
                }
                AudioOutcome::Nothing
            }
            // Enhanced RTMP: SoundFormat 9 (ex-header), packet type in the low
            // nibble, then a FourCC. Opus needs no transcoding for WebRTC.
            Ok(AudioTag::Other { sound_format: 9, data: body }) if body.len() > 4 && &body[..4] == b"Opus" => {
                const CODED_FRAMES: u8 = 1;
                if data[0] & 0x0f != CODED_FRAMES {
                    return AudioOutcome::Nothing; // OpusHead / sequence end: nothing to send
                }
                let ms = self.stream_time(timestamp_ms).max(0) as u64;
                let rtp_ts = ms.wrapping_mul(48) as u32;
                AudioOutcome::Packet(self.on_opus(&body[4..], rtp_ts))
            }
            Ok(AudioTag::Other { .. }) | Err(_) => AudioOutcome::Nothing,
        }
    }

    /// Starts, restarts or stops the transcoder to match what the stream
    /// needs: only while WebRTC viewers (local or replicas) exist, and only
    /// for AAC audio and/or B-frame video.
    pub fn update_transcoder(&mut self) {
        let demand = self.transcoder_demand();
        if demand {
            self.transcoder_idle_since = None;
        }
        let audio = self.aac_config.is_some();
        let video = self.saw_b_frames && self.avc_record.is_some();
        // Without demand a running transcoder lingers (`[transcode]
        // linger_s`); `stop_idle_transcoder` ends it once that has passed.
        let lingering = !demand && self.transcoder_linger > Duration::ZERO && self.publisher.is_some() && self.transcoder.as_ref().is_some_and(|t| t.audio == audio && t.video == video);
        if lingering {
            return;
        }
        if !demand || (!audio && !video) {
            self.stop_transcoder("no WebRTC viewers or nothing to transcode");
            return;
        }
        if self.transcoder.as_ref().is_some_and(|t| t.audio == audio && t.video == video) {
            return;
        }
        let name = format!("rts-tx-{}", self.name.chars().take(8).collect::<String>());
        // The re-encoder decodes the GOP so far first and encodes its newest
        // picture as an IDR, so the first viewer does not wait for the
        // publisher's next keyframe, nor for all of that GOP re-encoded.
        let fed = if video { self.source_gop.len() } else { 0 };
        if video {
            // The cache holds the previous re-encoder's output (or nothing):
            // viewers start on the new one's first keyframe.
            self.gop.clear();
            self.gop_valid = false;
        }
        match StreamTranscoder::spawn(&name, audio, video, self.aac_config.as_ref(), self.avc_record.as_ref(), fed) {
            Ok(mut t) => {
                self.reencode_catchup = (fed > 0).then(ReencodeCatchUp::default);
                if fed > 0 {
                    t.catch_up(self.source_gop[..fed].iter().map(|f| (&f.avcc, f.dts_ms, f.cts_ms)));
                }
                tracing::info!(stream = %self.key(), aac_to_opus = audio, reencode_b_frames = video, cached_frames = fed, "transcoder started");
                self.transcoder = Some(t);
            }
            Err(e) => tracing::error!(stream = %self.key(), error = %e, "cannot start transcoder"),
        }
    }

    /// Keeps the transcoder running while the stream is published, not only
    /// while WebRTC viewers need it (`[transcode] keep_warm`), and for
    /// `linger` after the last of them left (`[transcode] linger_s`).
    pub fn set_transcoder_policy(&mut self, warm: bool, linger: Duration) {
        self.keep_transcoder_warm = warm;
        self.transcoder_linger = linger;
        self.update_transcoder();
    }

    /// Whether WebRTC viewers (local or replicas) need the transcoder, or
    /// it is kept warm while published.
    fn transcoder_demand(&self) -> bool {
        (self.keep_transcoder_warm && self.publisher.is_some()) || !self.viewers.is_empty() || !self.subscribers.is_empty()
    }

    /// Stops a transcoder that has run without demand for its linger time
    /// (checked by the core's housekeeping). Returns whether it stopped.
    pub fn stop_idle_transcoder(&mut self, now: Instant) -> bool {
        if self.transcoder.is_none() || self.transcoder_demand() {
            return false;
        }
        let since = *self.transcoder_idle_since.get_or_insert(now);
        if now.saturating_duration_since(since) < self.transcoder_linger {
            return false;
        }
        self.transcoder_idle_since = None;
        self.stop_transcoder("lingered without viewers");
        true
    }

    fn stop_transcoder(&mut self, why: &str) {
        if let Some(t) = self.transcoder.take() {
            if t.video {
                // A re-encoder started later begins a new GOP of its own.
                self.gop.clear();
                self.gop_valid = false;
            }
            tracing::info!(stream = %self.key(), why, "transcoder stopped");
        }
    }

    /// Whether a re-encoder's output of media time `pts_ms`, cached, ends
    /// the catch-up on the source GOP it started with: then the viewers
    /// waiting for the stream start from the cache, as a replay whose
    /// newest frame, this one, goes out as on time.
    ///
    /// It ends at the first output after the worker's end of the catch-up
    /// ([`Self::note_reencode_caught_up`]) that came at the live pace (at
    /// least half its media time after the output before it). The outputs
    /// before are a burst: the catch-up's IDR, then the pictures the
    /// decoder held for reordering and the frames that arrived meanwhile,
    /// decoded already, so they come out ahead of the decoder's reordering
    /// delay that every later frame waits for. Started on that burst, the
    /// viewers' timelines took its newest frame as on time and every frame
    /// after it came 60-105 ms late by that mapping (measured, issue 18).
    /// A catch-up that did not end within [`REENCODE_CATCHUP_MAX`] of its
    /// first output ends too (a re-encoder that dropped the inputs), so
    /// output is never held for good.
    pub fn end_reencode_catchup(&mut self, pts_ms: u64, now: Instant) -> bool {
        let Some(c) = self.reencode_catchup.as_mut() else { return false };
        let since = *c.first_out.get_or_insert(now);
        let paced = c.caught_up.is_some()
            && c.last_out.is_some_and(|(at, ms)| {
                let media = pts_ms.saturating_sub(ms);
                media > 0 && now.saturating_duration_since(at) >= Duration::from_millis(media / 2)
            });
        c.last_out = Some((now, pts_ms));
        if paced || now.saturating_duration_since(since) > REENCODE_CATCHUP_MAX {
            self.reencode_catchup = None;
            return true;
        }
        false
    }

    /// The worker ended its catch-up (`Transcoded::CaughtUp`, its IDR came
    /// before).
    pub fn note_reencode_caught_up(&mut self, now: Instant) {
        if let Some(c) = self.reencode_catchup.as_mut() {
            c.caught_up = Some(now);
        }
    }

    /// Whether a catch-up the worker ended has waited [`REENCODE_LIVE_WAIT`]
    /// for output at the live pace in vain: then it ends here (true) and
    /// the waiting viewers start from what was cached.
    pub fn reencode_live_overdue(&mut self, now: Instant) -> bool {
        if self.reencode_catchup.and_then(|c| c.caught_up).is_some_and(|t| now.saturating_duration_since(t) > REENCODE_LIVE_WAIT) {
            self.reencode_catchup = None;
            return true;
        }
        false
    }

    /// A re-encoder decoding the source GOP before it reaches live.
    pub fn reencode_catching_up(&self) -> bool {
        self.reencode_catchup.is_some()
    }

    /// Frames of the publisher's current GOP kept for a re-encoder start.
    pub fn source_gop_frames(&self) -> usize {
        self.source_gop.len()
    }

    fn clear_source_gop(&mut self) {
        self.source_gop.clear();
        self.source_gop_bytes = 0;
    }

    /// Keeps a publisher frame for a later re-encoder start: a keyframe
    /// starts the GOP over; a GOP beyond the bounds is dropped whole (a
    /// re-encoder must start on a keyframe).
    fn cache_source(&mut self, avcc: &Bytes, dts_ms: i64, cts_ms: i32, keyframe: bool) {
        if keyframe {
            self.clear_source_gop();
        } else if self.source_gop.is_empty() {
            return; // no keyframe yet, or the GOP was too long
        }
        if self.source_gop.len() >= SOURCE_GOP_MAX_FRAMES || self.source_gop_bytes + avcc.len() > SOURCE_GOP_MAX_BYTES {
            self.clear_source_gop();
            return;
        }
        self.source_gop_bytes += avcc.len();
        self.source_gop.push(SourceFrame { avcc: avcc.clone(), dts_ms, cts_ms });
    }

    /// Packetizes one re-encoded (B-frame free) access unit. `live`: it came
    /// from a live input (not from the source GOP a starting re-encoder
    /// decodes first), so it anchors stream time to the wall clock.
    pub fn on_reencoded(&mut self, nalus: &[Bytes], pts_ms: u64, keyframe: bool, live: bool, now: Instant, out: &mut Vec<Bytes>) {
        let Some(t) = self.transcoder.as_ref() else { return };
        let refs: Vec<&[u8]> = nalus.iter().map(|n| n.as_ref()).collect();
        let rtp_ts = pts_ms.wrapping_mul(90) as u32;
        let first = out.len();
        let sets = (t.sps.as_slice(), t.pps.as_slice());
        if self.packetizer.packetize(rtp_ts, &refs, Some(sets), out).is_err() {
            return;
        }
        self.record_video(&out[first..], keyframe);
        if live {
            self.anchor = Some((now, pts_ms as i64));
            self.anchor_held = Duration::ZERO;
        }
    }

    /// Bookkeeping for freshly packetized video: the GOP cache (restarted on
    /// a keyframe) and the sender-report counters.
    fn record_video(&mut self, produced: &[Bytes], keyframe: bool) {
        if keyframe {
            self.gop.clear();
            self.gop_valid = true;
        }
        self.cache(produced);
        for p in produced {
            self.video_packets += 1;
            self.video_octets += p.len().saturating_sub(12) as u64;
        }
    }

    /// Wraps one Opus packet (already in stream time, 48 kHz) as RTP.
    pub fn on_opus(&mut self, opus: &[u8], rtp_ts: u32) -> Bytes {
        let mut p = Vec::with_capacity(12 + opus.len());
        p.resize(12, 0);
        rts_rtp::write_rtp_header(&mut p, true, SHARED_AUDIO_PT, self.audio_seq, rtp_ts, self.audio_ssrc);
        p.extend_from_slice(opus);
        self.audio_seq = self.audio_seq.wrapping_add(1);
        self.audio_packets += 1;
        self.audio_octets += opus.len() as u64;
        self.audio_frames += 1;
        Bytes::from(p)
    }

    /// Replica side: packets of one track relayed from the home shard.
    pub fn on_relay(&mut self, kind: Kind, packets: &[Bytes], keyframe: bool, anchor: Option<(Instant, i64)>) {
        if keyframe {
            self.gop.clear();
            self.gop_valid = true;
        }
        if kind == Kind::Video {
            self.cache(packets);
        }
        let octets: u64 = packets.iter().map(|p| p.len().saturating_sub(12) as u64).sum();
        match kind {
            Kind::Video => {
                self.video_packets += packets.len() as u64;
                self.video_octets += octets;
                self.video_frames += 1;
            }
            Kind::Audio => {
                self.audio_packets += packets.len() as u64;
                self.audio_octets += octets;
                self.audio_frames += packets.len() as u64;
            }
        }
        if anchor.is_some() {
            self.anchor = anchor;
            self.anchor_held = Duration::ZERO;
        }
    }

    /// Replica side: the home shard's GOP cache, to start viewers at once.
    pub fn on_snapshot(&mut self, gop: Vec<Bytes>, anchor: Option<(Instant, i64)>, clocks: (SendClock, SendClock)) {
        self.gop_valid = !gop.is_empty();
        self.gop = gop;
        if anchor.is_some() {
            self.anchor = anchor;
            self.anchor_held = Duration::ZERO;
        }
        // A replica not fed yet starts from its home's send clocks (the
        // same stream, a ring hop earlier); its own deliveries refine them.
        let (video, audio) = clocks;
        if !self.video_clock.is_set() {
            self.video_clock = video;
        }
        if !self.audio_clock.is_set() {
            self.audio_clock = audio;
        }
    }

    /// What a replicating shard starts replica `replica` from: the GOP
    /// cache, the clock anchor, the FLV start and the send clocks.
    pub fn snapshot(&self, replica: StreamId) -> crate::relay::RelayMsg {
        crate::relay::RelayMsg::Snapshot {
            stream: replica,
            gop: self.gop_cache().to_vec(),
            anchor: self.anchor(),
            flv: Box::new(self.flv.clone()),
            clocks: Box::new((self.video_clock.clone(), self.audio_clock.clone())),
        }
    }

    fn cache(&mut self, packets: &[Bytes]) {
        if !self.gop_valid || packets.is_empty() {
            return;
        }
        if self.gop.len() + packets.len() > GOP_CACHE_MAX_PACKETS {
            // Too long to replay usefully: wait for the next keyframe.
            self.gop.clear();
            self.gop_valid = false;
            return;
        }
        self.gop.extend(packets.iter().cloned());
    }

    /// The cached video packet with sequence number `seq` (the GOP cache
    /// holds consecutive numbers from its keyframe on).
    fn gop_packet(&self, seq: u16) -> Option<&Bytes> {
        let first = self.gop_cache().first().filter(|p| p.len() >= 12)?;
        let i = seq.wrapping_sub(u16::from_be_bytes([first[2], first[3]])) as usize;
        self.gop.get(i).filter(|p| p.len() >= 12 && u16::from_be_bytes([p[2], p[3]]) == seq)
    }

    /// New live packets of `kind` leave for the viewers at `now`: kept in
    /// the retransmission history, counted for the stream's rate (the
    /// repair budget), and one lateness sample (of the first packet) for
    /// the A/V lag.
    pub fn on_delivered(&mut self, kind: Kind, packets: &[Bytes], keyframe: bool, now: Instant) {
        let history = match kind {
            Kind::Video => &mut self.video_history,
            Kind::Audio => &mut self.audio_history,
        };
        let mut bytes = 0;
        for p in packets {
            history.record(p, now);
            bytes += p.len();
        }
        if keyframe {
            self.keyframe_bytes = bytes;
        }
        self.rate.add(bytes, now);
        let Some(p) = packets.first().filter(|p| p.len() >= 12) else { return };
        let ts = u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
        // Against the anchor frame's arrival, with video's own hold taken
        // off: the publisher's and transcoder's lag, whatever the hold.
        let held = if kind == Kind::Video { self.released_hold } else { Duration::ZERO };
        let arrival_anchor = self.anchor.map(|(at, ms)| (at.checked_sub(self.anchor_held).unwrap_or(at), ms));
        self.av_lag.on_sent(kind == Kind::Video, ts, arrival_anchor, now, held);
        match kind {
            Kind::Video => self.video_clock.on_sent(ts, now),
            Kind::Audio => {
                self.audio_clock.on_sent(ts, now);
                self.last_audio = Some(now);
            }
        }
    }

    /// The shared packet `seq` of `kind`, if still in the history at `now`
    /// or (video) in the GOP cache, which a new viewer's replay sends later
    /// than it was first delivered.
    pub fn history_packet(&self, kind: Kind, seq: u16, now: Instant) -> Option<&Bytes> {
        match kind {
            Kind::Video => self.video_history.get(seq, now).or_else(|| self.gop_packet(seq)),
            Kind::Audio => self.audio_history.get(seq, now),
        }
    }

    /// Up to `max` video packets delivered at or after `since`, newest
    /// first, from the one before `before` back (stream numbering).
    pub fn recent_video(&self, before: u16, since: Instant, max: usize) -> impl Iterator<Item = (u16, &Bytes)> + '_ {
        self.video_history.recent_before(before, since, max)
    }

    /// A new source of packets (another home shard, or a publisher here
    /// after being a replica): old sequence numbers mean nothing now.
    fn reset_history(&mut self) {
        self.video_history = History::video();
        self.audio_history = History::audio();
    }

    /// The most retransmission budget a viewer can hold (bytes): the
    /// latest keyframe (a lost keyframe is repaired at once) and
    /// [`BURST_MEDIA`] of the stream (an outage that long is repaired in
    /// one round trip), at least [`MIN_BURST_BYTES`].
    pub fn repair_burst(&self) -> f64 {
        (self.keyframe_bytes as f64).max(self.rate.bytes_per_s() * BURST_MEDIA.as_secs_f64()).max(MIN_BURST_BYTES)
    }

    /// How much later than video this stream's audio leaves (ms), once
    /// both were measured (lipsync.rs).
    pub fn av_lag_ms(&self) -> Option<f64> {
        self.av_lag.lag_ms()
    }

    /// Budget a second copy of a first resend must leave (bytes): the
    /// latest keyframe, so that one lost whole can still be repaired at
    /// once, and at least half of [`Stream::repair_burst`].
    pub fn repair_reserve(&self) -> f64 {
        (self.keyframe_bytes as f64).max(self.repair_burst() / 2.0)
    }

    /// The RED versions (RFC 2198) of Opus packets just delivered: each with
    /// up to [`RED_DISTANCE`] earlier Opus frames from the history, same
    /// sequence number and timestamp as the plain packet, payload type
    /// [`SHARED_RED_PT`] (block type [`SHARED_AUDIO_PT`]). Call after
    /// [`Stream::on_delivered`] recorded them.
    pub fn red_versions(&self, packets: &[Bytes], now: Instant) -> Arc<[Bytes]> {
        let mut out: Vec<Bytes> = Vec::with_capacity(packets.len());
        for p in packets {
            if p.len() < 12 {
                out.push(p.clone());
                continue;
            }
            let seq = u16::from_be_bytes([p[2], p[3]]);
            let ts = u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
            let mut earlier: [(u32, &[u8]); RED_DISTANCE] = [(0, &[]); RED_DISTANCE];
            let mut n = 0;
            for back in (1..=RED_DISTANCE as u16).rev() {
                let Some(e) = self.audio_history.get(seq.wrapping_sub(back), now).filter(|e| e.len() > 12) else { continue };
                let ets = u32::from_be_bytes([e[4], e[5], e[6], e[7]]);
                earlier[n] = (ts.wrapping_sub(ets), &e[12..]);
                n += 1;
            }
            let mut red = Vec::with_capacity(p.len() + n * 4 + earlier[..n].iter().map(|e| e.1.len()).sum::<usize>() + 1);
            red.extend_from_slice(&p[..12]);
            red[1] = (red[1] & 0x80) | SHARED_RED_PT;
            rts_rtp::red::write(SHARED_AUDIO_PT, &p[12..], &earlier[..n], &mut red);
            out.push(Bytes::from(red));
        }
        Arc::from(out)
    }

    /// Stream time "now" for a sender report: the last video frame's time
    /// advanced by the wall time since it arrived. Both tracks use it, so
    /// their SRs map to one NTP clock.
    pub fn stream_ms_at(&self, now: Instant) -> Option<i64> {
        self.anchor.map(|(t, ms)| ms + now.saturating_duration_since(t).as_millis() as i64)
    }

    /// The RTP time (90 kHz video, 48 kHz audio) of the packet of `kind`
    /// this stream sends at `now` if on time (send_clock.rs). Two streams'
    /// send clocks put a switch's first packets where the receiver expects
    /// the next ones. Before this stream sent any packet of that kind: the
    /// clock anchor's time at `now`, less (audio) the slow end of the
    /// transcoder's lag, so a switch's first audio reaches the receiver
    /// early rather than late (late audio grows a receiver's jitter
    /// buffer, early only fills it).
    pub fn send_rtp_at(&self, kind: Kind, now: Instant) -> Option<u32> {
        let clock = match kind {
            Kind::Video => &self.video_clock,
            Kind::Audio => &self.audio_clock,
        };
        clock.rtp_at(now).or_else(|| {
            let (at, ms) = self.anchor?;
            let (rate, late) = match kind {
                Kind::Video => (90.0, 0.0),
                Kind::Audio => (48.0, UNMEASURED_AUDIO_LATE_MS),
            };
            let ms = ms as f64 + now.saturating_duration_since(at).as_secs_f64() * 1000.0 - late;
            Some((ms.max(0.0) * rate).round() as u64 as u32)
        })
    }

    pub fn has_transcoder(&self) -> bool {
        self.transcoder.is_some()
    }

    /// The audio loss (percent) the Opus encoder should protect against.
    pub fn set_audio_loss_hint(&mut self, pct: u8) {
        if let Some(t) = self.transcoder.as_mut() {
            t.set_loss_hint(pct);
        }
    }

    /// Next transcoder output (Opus audio, re-encoded video), if any.
    pub fn poll_transcoder(&mut self, now: Instant) -> Option<Transcoded> {
        let out = self.transcoder.as_mut()?.poll(now);
        // Counted here, not in the transcoder: it stops and starts with
        // WebRTC demand, and the stream's histogram must not go back.
        match &out {
            Some(Transcoded::Opus { added_us: Some(us), .. }) => self.hists.audio_transcode.record(&TRANSCODE_BOUNDS_US, *us),
            Some(Transcoded::Video { added_us: Some(us), .. }) => self.hists.video_transcode.record(&TRANSCODE_BOUNDS_US, *us),
            _ => {}
        }
        out
    }

    /// A viewer lost video: only a re-encoded stream can make a keyframe on
    /// demand (RTMP has no way to ask the publisher). Returns whether one
    /// was asked for.
    pub fn request_keyframe(&mut self) -> bool {
        match self.transcoder.as_mut().filter(|t| t.video) {
            Some(t) => {
                t.request_keyframe();
                true
            }
            None => false,
        }
    }

    /// Audio pairing: holds `packet` for its pair; returns both once the
    /// pair is complete.
    pub fn pair_audio(&mut self, packet: Bytes, now: Instant) -> Option<[Bytes; 2]> {
        match self.audio_hold.take() {
            None => {
                self.audio_hold = Some((packet, now));
                None
            }
            Some((held, _)) => Some([held, packet]),
        }
    }

    /// A held Opus packet whose pair did not come in time (DTX, end).
    pub fn flush_audio_hold(&mut self, now: Instant) -> Option<Bytes> {
        if self.audio_hold.as_ref().is_some_and(|(_, at)| now.saturating_duration_since(*at) >= AUDIO_HOLD) {
            return self.audio_hold.take().map(|(p, _)| p);
        }
        None
    }

    /// Queues transcoded audio for its even pace (pacer.rs).
    pub fn pace_audio(&mut self, packet: Bytes, rtp_ts: u32, now: Instant) {
        self.audio_pacer.push(packet, rtp_ts, now);
    }

    pub fn pop_paced_audio(&mut self, now: Instant) -> Option<Bytes> {
        self.audio_pacer.pop_due(now)
    }

    /// Whether the publisher's video waits for its audio here
    /// (`[webrtc] hold_video_for_audio`, video_hold.rs).
    pub fn set_video_hold(&mut self, enabled: bool) {
        self.video_hold.set_enabled(enabled);
    }

    /// A video tag from the publisher at `now`: back at once to go on as
    /// it came, or None while it waits for its audio (see
    /// [`Stream::pop_held_video`]). Each tag moves the hold a step toward
    /// the measured A/V lag. A room with AAC whose audio has not been
    /// transcoded yet (no WebRTC viewer so far) has no lag of its own: its
    /// hold moves toward `prior` (the lag of this shard's other rooms, or
    /// `video_hold::DEFAULT_LAG_MS`), so that a viewer switching in finds
    /// the hold near where its audio will put it instead of ramping up
    /// from 0 under the viewer's eyes.
    pub fn hold_video(&mut self, timestamp_ms: u32, data: Bytes, now: Instant, prior: f64) -> Option<(u32, Bytes)> {
        let lag = self.av_lag.lag_ms().or_else(|| self.aac_config.is_some().then_some(prior));
        self.video_hold.follow(lag);
        self.av_lag.set_video_hold(self.video_hold.hold_ms());
        let passed = self.video_hold.push(timestamp_ms, data, now);
        if passed.is_some() {
            self.released_hold = Duration::ZERO;
        }
        passed
    }

    /// The next held video tag due at `now`.
    pub fn pop_held_video(&mut self, now: Instant) -> Option<(u32, Bytes)> {
        let (ts, data, held) = self.video_hold.pop_due(now)?;
        self.released_hold = held;
        Some((ts, data))
    }

    /// When the next held video tag is due.
    pub fn video_due(&self) -> Option<Instant> {
        self.video_hold.next_due()
    }

    /// When this stream's held or paced audio is next due.
    pub fn audio_due(&self) -> Option<Instant> {
        let hold = self.audio_hold.as_ref().map(|(_, at)| *at + AUDIO_HOLD);
        match (hold, self.audio_pacer.next_due()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The figures control shows for this stream on shard `shard`.
    pub fn stats(&self, shard: u32) -> StreamStats {
        let l = self.latency.summary();
        let t = self.transcoder.as_ref();
        StreamStats {
            shard,
            app: self.app.clone(),
            stream: self.name.clone(),
            publishing: self.publisher.is_some(),
            viewers: (self.viewers.len() + self.flv_viewers.len()) as u32,
            video_frames: self.video_frames,
            audio_frames: self.audio_frames,
            b_frames: self.saw_b_frames,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            latency_us_p50: l.p50_us,
            latency_us_p99: l.p99_us,
            latency_us_max: l.max_us,
            latency_samples: l.samples,
            audio_transcode_us_p50: t.map_or(0, |t| t.audio_delay.summary().p50_us),
            audio_transcode_us_p99: t.map_or(0, |t| t.audio_delay.summary().p99_us),
            video_transcode_us_p50: t.map_or(0, |t| t.video_delay.summary().p50_us),
            video_transcode_us_p99: t.map_or(0, |t| t.video_delay.summary().p99_us),
            transcoder_dropped: t.map_or(0, |t| t.dropped_jobs),
            av_lag_ms: self.av_lag.lag_ms().map(|l| l.round() as i32),
            playout_delay_min_ms: u32::from(self.av_lag.settled_min()) * 10,
            video_hold_ms: self.video_hold.hold_ms().round() as u32,
            latency_hist: self.hists.latency,
            audio_transcode_hist: self.hists.audio_transcode,
            video_transcode_hist: self.hists.video_transcode,
            first_frame_hist: self.hists.first_frame,
        }
    }

    /// The periodic log line of a watched stream.
    pub fn log_stats(&self, shard: usize) {
        let l = self.latency.summary();
        tracing::info!(shard, stream = %self.key(), viewers = self.viewers.len(), frames = self.video_frames,
            server_latency_p50_us = l.p50_us, server_latency_p99_us = l.p99_us, server_latency_max_us = l.max_us,
            "stream stats");
        if let Some(t) = &self.transcoder {
            let (a, v) = (t.audio_delay.summary(), t.video_delay.summary());
            tracing::info!(shard, stream = %self.key(), audio_added_p50_us = a.p50_us, audio_added_p99_us = a.p99_us,
                video_added_p50_us = v.p50_us, video_added_p99_us = v.p99_us, dropped = t.dropped_jobs, errors = t.errors,
                "transcoder delay");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_time_is_continuous_across_reconnects_and_jumps() {
        let mut s = Stream::new("live", "t", 1200);
        assert_eq!(s.stream_time(1000), 1000);
        assert_eq!(s.stream_time(1033), 1033);
        // Publisher reconnects: its clock restarts at 0.
        s.on_publish_start(1);
        let t = s.stream_time(0);
        assert_eq!(t, 1033 + REBASE_STEP_MS);
        assert_eq!(s.stream_time(33), t + 33);
        // A rollback of 10 s and a jump of 1 hour are both smoothed.
        let base = s.stream_time(66);
        assert_eq!(s.stream_time(20_066), base + REBASE_STEP_MS, "a 20 s forward jump re-bases too");
        let before = s.stream_time(20_099);
        let after_rollback = s.stream_time(20_099 - 10_000);
        assert_eq!(after_rollback, before + REBASE_STEP_MS);
        let after_jump = s.stream_time(3_600_000);
        assert_eq!(after_jump, after_rollback + REBASE_STEP_MS);
        // Small reordering (B-frame DTS never goes back, but tolerate it).
        let x = s.stream_time(3_600_033);
        assert_eq!(s.stream_time(3_600_000), x - 33);
    }

    fn video_tag(keyframe: bool, cts: i32, nalus: &[&[u8]]) -> Bytes {
        let mut t = vec![if keyframe { 0x17 } else { 0x27 }, 1];
        t.extend_from_slice(&cts.to_be_bytes()[1..]);
        for n in nalus {
            t.extend_from_slice(&(n.len() as u32).to_be_bytes());
            t.extend_from_slice(n);
        }
        Bytes::from(t)
    }

    fn seq_header(sps: &[u8], pps: &[u8]) -> Bytes {
        let mut t = vec![0x17, 0, 0, 0, 0, 1, sps[1], sps[2], sps[3], 0xff, 0xe1];
        t.extend_from_slice(&(sps.len() as u16).to_be_bytes());
        t.extend_from_slice(sps);
        t.push(1);
        t.extend_from_slice(&(pps.len() as u16).to_be_bytes());
        t.extend_from_slice(pps);
        Bytes::from(t)
    }

    const SPS: &[u8] = &[0x67, 0x42, 0xc0, 0x1e, 0xda, 0x02, 0x80];
    const SPS2: &[u8] = &[0x67, 0x42, 0xc0, 0x1e, 0xda, 0x05, 0x00];
    const PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];

    #[test]
    fn publisher_problems_no_keyframe_yet_and_parameter_set_change() {
        let now = Instant::now();
        let mut s = Stream::new("live", "p", 1200);
        let mut out = Vec::new();
        // Frames before any sequence header produce nothing.
        assert!(matches!(s.on_video(0, &video_tag(true, 0, &[&[0x65, 1, 2]]), now, &mut out), Ok(VideoOutcome::Nothing)));
        s.on_video(0, &seq_header(SPS, PPS), now, &mut out).unwrap();
        // No keyframe yet: P-frames are sent to nobody's cache.
        s.on_video(33, &video_tag(false, 0, &[&[0x41, 1, 2]]), now, &mut out).unwrap();
        assert!(s.gop_cache().is_empty(), "a new viewer must not start on a P-frame");
        s.on_video(66, &video_tag(true, 0, &[&[0x65, 1, 2]]), now, &mut out).unwrap();
        let cached = s.gop_cache().len();
        assert!(cached >= 2, "keyframe (with STAP-A SPS/PPS) cached: {cached}");
        // New SPS (resolution change): the cache no longer decodes.
        s.on_video(99, &seq_header(SPS2, PPS), now, &mut out).unwrap();
        assert!(s.gop_cache().is_empty());
        s.on_video(99, &video_tag(true, 0, &[&[0x65, 3]]), now, &mut out).unwrap();
        let first = rts_rtp::RtpHeader::parse(&s.gop_cache()[0]).unwrap();
        let stap = &s.gop_cache()[0][first.payload_offset..];
        assert_eq!(stap[0] & 0x1f, 24, "IDR after the change starts with a STAP-A");
        assert_eq!(&stap[3..3 + SPS2.len()], SPS2, "carrying the new SPS");
        // Garbage tags are errors, not panics.
        assert!(s.on_video(100, &Bytes::from_static(&[0x17, 1, 0]), now, &mut out).is_err());
    }

    #[test]
    fn b_frame_source_is_kept_for_the_reencoder_never_served() {
        let now = Instant::now();
        let mut s = Stream::new("live", "b", 1200);
        let mut out = Vec::new();
        s.on_video(0, &seq_header(SPS, PPS), now, &mut out).unwrap();
        // Before any B-frame the stream passes through: its GOP is cached.
        s.on_video(0, &video_tag(true, 0, &[&[0x65, 1, 2]]), now, &mut out).unwrap();
        s.on_video(33, &video_tag(false, 0, &[&[0x41, 1]]), now, &mut out).unwrap();
        assert!(!s.gop_cache().is_empty());
        assert_eq!(s.source_gop_frames(), 2, "the publisher's GOP so far");
        // The first B-frame (composition time != 0): the packets cached so far
        // are not for WebRTC viewers, and nothing more is packetized from the
        // source while no re-encoder runs (no viewer here).
        out.clear();
        s.on_video(66, &video_tag(false, 66, &[&[0x41, 2]]), now, &mut out).unwrap();
        assert!(s.gop_cache().is_empty(), "a viewer must not start on the source's B-frame GOP");
        assert!(out.is_empty(), "no source packets while no re-encoder runs");
        assert_eq!(s.source_gop_frames(), 3);
        // A keyframe starts the source GOP over.
        s.on_video(99, &video_tag(true, 33, &[&[0x65, 3]]), now, &mut out).unwrap();
        assert_eq!(s.source_gop_frames(), 1);
        assert!(out.is_empty() && s.gop_cache().is_empty());
        // A GOP longer than the bound is dropped whole (a re-encoder must
        // start on a keyframe) until the next keyframe.
        for i in 0..SOURCE_GOP_MAX_FRAMES as u32 {
            s.on_video(132 + 33 * i, &video_tag(false, 33, &[&[0x41, 4]]), now, &mut out).unwrap();
        }
        assert_eq!(s.source_gop_frames(), 0);
        s.on_video(100_000, &video_tag(false, 33, &[&[0x41, 4]]), now, &mut out).unwrap();
        assert_eq!(s.source_gop_frames(), 0, "not without a keyframe");
        s.on_video(100_033, &video_tag(true, 33, &[&[0x65, 5]]), now, &mut out).unwrap();
        assert_eq!(s.source_gop_frames(), 1);
        // A new sequence header (new SPS) forgets it too.
        s.on_video(100_066, &seq_header(SPS2, PPS), now, &mut out).unwrap();
        assert_eq!(s.source_gop_frames(), 0);
    }

    #[test]
    fn a_catch_up_ends_when_the_output_comes_at_the_live_pace() {
        // A cold re-encoder's output as recorded in tests/swipe_audio.rs
        // (ms after the worker's first output, media time in ms): the
        // catch-up's IDR, the worker's end of the catch-up, a burst of
        // frames already decoded (3-15 ms apart for 33 ms of media each),
        // then the live pace (~31 ms apart). The catch-up ends at the first
        // frame of the live pace, 17100, not before.
        let t0 = Instant::now();
        let at = |ms: f64| t0 + Duration::from_secs_f64(ms / 1000.0);
        let mut s = Stream::new("live", "c", 1200);
        assert!(!s.end_reencode_catchup(16967, t0), "no catch-up, nothing to end");
        s.reencode_catchup = Some(ReencodeCatchUp::default());
        assert!(!s.end_reencode_catchup(16967, at(0.0)));
        s.note_reencode_caught_up(at(0.0));
        for (ms, pts) in [(3.2, 17000), (6.8, 17034), (21.5, 17067)] {
            assert!(!s.end_reencode_catchup(pts, at(ms)), "{pts} is in the burst");
            assert!(s.reencode_catching_up());
        }
        assert!(s.end_reencode_catchup(17100, at(52.6)));
        assert!(!s.reencode_catching_up());
        assert!(!s.reencode_live_overdue(at(1000.0)), "ended: nothing overdue");
        // Output at the live pace before the worker's end does not end it:
        // the catch-up's frames are not out yet.
        s.reencode_catchup = Some(ReencodeCatchUp::default());
        assert!(!s.end_reencode_catchup(100, at(0.0)));
        assert!(!s.end_reencode_catchup(133, at(40.0)));
        assert!(s.reencode_catching_up());
    }

    #[test]
    fn a_catch_up_without_output_at_the_live_pace_ends_after_its_bounds() {
        let t0 = Instant::now();
        let mut s = Stream::new("live", "c", 1200);
        // The worker ended its catch-up and nothing came after (a publisher
        // that paused): it ends REENCODE_LIVE_WAIT later.
        s.reencode_catchup = Some(ReencodeCatchUp::default());
        assert!(!s.end_reencode_catchup(1000, t0));
        s.note_reencode_caught_up(t0);
        assert!(!s.reencode_live_overdue(t0 + REENCODE_LIVE_WAIT));
        assert!(s.reencode_catching_up());
        assert!(s.reencode_live_overdue(t0 + REENCODE_LIVE_WAIT + Duration::from_millis(1)));
        assert!(!s.reencode_catching_up());
        // No end from the worker (a re-encoder that dropped the inputs): it
        // ends REENCODE_CATCHUP_MAX after its first output.
        s.reencode_catchup = Some(ReencodeCatchUp::default());
        let first = t0 + Duration::from_secs(10);
        assert!(!s.end_reencode_catchup(2000, first));
        assert!(!s.end_reencode_catchup(2033, first + REENCODE_CATCHUP_MAX));
        assert!(!s.reencode_live_overdue(first + REENCODE_CATCHUP_MAX * 2), "no end from the worker: not this bound");
        assert!(s.end_reencode_catchup(2066, first + REENCODE_CATCHUP_MAX + Duration::from_millis(1)));
    }

    #[test]
    fn a_transcoder_lingers_after_its_last_viewer_then_stops() {
        let t0 = Instant::now();
        let mut s = Stream::new("live", "l", 1200);
        s.on_publish_start(1);
        s.set_transcoder_policy(false, Duration::from_secs(15));
        // AAC LC, 44.1 kHz, stereo: an AAC→Opus transcoder once watched.
        assert!(matches!(s.on_audio(0, &Bytes::from_static(&[0xaf, 0x00, 0x12, 0x10]), t0), AudioOutcome::ConfigChanged));
        s.update_transcoder();
        assert!(!s.has_transcoder(), "nobody watches yet");
        s.add_viewer(7, false);
        assert!(s.has_transcoder());
        s.remove_viewer(7, false);
        assert!(s.has_transcoder(), "the last viewer left: it lingers");
        assert!(!s.stop_idle_transcoder(t0));
        assert!(!s.stop_idle_transcoder(t0 + Duration::from_secs(14)));
        // A viewer back within the linger finds it running, and the linger
        // starts over when it leaves.
        s.add_viewer(8, false);
        assert!(!s.stop_idle_transcoder(t0 + Duration::from_secs(16)));
        s.remove_viewer(8, false);
        assert!(!s.stop_idle_transcoder(t0 + Duration::from_secs(20)));
        assert!(!s.stop_idle_transcoder(t0 + Duration::from_secs(34)));
        assert!(s.stop_idle_transcoder(t0 + Duration::from_secs(35)));
        assert!(!s.has_transcoder());
        // Without a linger it stops with the last viewer; and a lingering
        // one stops with the publisher.
        s.set_transcoder_policy(false, Duration::ZERO);
        s.add_viewer(9, false);
        s.remove_viewer(9, false);
        assert!(!s.has_transcoder());
        s.set_transcoder_policy(false, Duration::from_secs(15));
        s.add_viewer(10, false);
        s.remove_viewer(10, false);
        assert!(s.has_transcoder());
        let _ = s.on_publish_end();
        assert!(!s.has_transcoder());
    }

    #[test]
    fn enhanced_rtmp_opus_passes_through() {
        let now = Instant::now();
        let mut s = Stream::new("live", "o", 1200);
        let mut tag = vec![0x91];
        tag.extend_from_slice(b"Opus");
        tag.extend_from_slice(&[0xfc, 1, 2, 3]);
        let AudioOutcome::Packet(p) = s.on_audio(1000, &Bytes::from(tag), now) else { panic!("Opus frame expected") };
        let h = rts_rtp::RtpHeader::parse(&p).unwrap();
        assert_eq!((h.payload_type, h.timestamp, h.ssrc), (SHARED_AUDIO_PT, 48_000, s.audio_ssrc()));
        assert_eq!(&p[h.payload_offset..], &[0xfc, 1, 2, 3]);
        let mut head = vec![0x90];
        head.extend_from_slice(b"OpusHead");
        assert!(matches!(s.on_audio(1000, &Bytes::from(head), now), AudioOutcome::Nothing));
        assert!(matches!(s.on_audio(1000, &Bytes::from_static(&[0x2f, 1]), now), AudioOutcome::Nothing), "MP3 is ignored");
    }

    #[test]
    fn opus_packets_share_the_stream_sequence_and_cache_after_keyframe() {
        let mut s = Stream::new("live", "a", 1200);
        let p1 = s.on_opus(&[1, 2, 3], 960);
        let p2 = s.on_opus(&[4], 1920);
        let h1 = rts_rtp::RtpHeader::parse(&p1).unwrap();
        let h2 = rts_rtp::RtpHeader::parse(&p2).unwrap();
        assert_eq!(h2.sequence, h1.sequence.wrapping_add(1));
        assert_eq!((h1.ssrc, h1.payload_type, h2.timestamp), (s.audio_ssrc(), SHARED_AUDIO_PT, 1920));
        assert!(s.gop_cache().is_empty(), "no keyframe yet: nothing cached");
    }
}
