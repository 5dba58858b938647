//! A live stream on its home shard: the RTMP publisher's H.264 turned into
//! RTP packets once per frame, shared by every viewer (`Bytes`), plus the
//! GOP cache a new viewer starts from.

use crate::latency::LatencyWindow;
use bytes::Bytes;
use rts_rtmp::flv::{self, AvcConfig, VideoTag};
use rts_rtp::h264::{self, H264Packetizer};
use std::time::Instant;

/// Packets kept for a new viewer: everything since the last keyframe, up to
/// this bound (a 2 s GOP at 8 Mbit/s is ~1,700 packets).
const GOP_CACHE_MAX_PACKETS: usize = 4096;

/// Payload type used inside the shared packets; each viewer's copy gets its
/// negotiated PT patched in before SRTP.
pub const SHARED_VIDEO_PT: u8 = 96;

pub struct Stream {
    pub app: String,
    pub name: String,
    pub publisher: Option<usize>,
    pub video_ssrc: u32,
    avc: Option<AvcConfig>,
    packetizer: H264Packetizer,
    gop: Vec<Bytes>,
    gop_valid: bool,
    /// Session slab indices of playing viewers.
    pub viewers: Vec<usize>,
    pub last_rtp_ts: u32,
    pub last_frame_at: Option<Instant>,
    pub latency: LatencyWindow,
    pub video_frames: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub packets_out_shared: u64,
    pub octets_out_shared: u64,
}

/// What a video tag produced.
pub enum VideoOutcome {
    /// New packets (appended to the caller's vec) to fan out.
    Packets,
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
            avc: None,
            packetizer: H264Packetizer::new(video_ssrc, SHARED_VIDEO_PT, max_packet, rand::random()),
            gop: Vec::new(),
            gop_valid: false,
            viewers: Vec::new(),
            last_rtp_ts: 0,
            last_frame_at: None,
            latency: LatencyWindow::default(),
            video_frames: 0,
            bytes_in: 0,
            bytes_out: 0,
            packets_out_shared: 0,
            octets_out_shared: 0,
        }
    }

    pub fn key(app: &str, name: &str) -> String {
        format!("{app}/{name}")
    }

    /// Packets a viewer joining now starts from (empty until a keyframe).
    pub fn gop_cache(&self) -> &[Bytes] {
        if self.gop_valid {
            &self.gop
        } else {
            &[]
        }
    }

    /// One FLV video tag body from the publisher.
    pub fn on_video(&mut self, timestamp_ms: u32, data: &Bytes, now: Instant, out: &mut Vec<Bytes>) -> Result<VideoOutcome, StreamError> {
        self.bytes_in += data.len() as u64;
        match flv::parse_video_tag(data).map_err(|e| StreamError::Flv(e.to_string()))? {
            VideoTag::AvcSequenceHeader(cfg) => {
                tracing::info!(stream = %Stream::key(&self.app, &self.name), profile = cfg.profile, level = cfg.level,
                    sps = cfg.sps.len(), pps = cfg.pps.len(), "AVC sequence header");
                self.avc = Some(cfg);
                Ok(VideoOutcome::Nothing)
            }
            VideoTag::AvcNalus { composition_time_ms, data, .. } => {
                let Some(cfg) = &self.avc else {
                    // Frames before the sequence header cannot be decoded.
                    return Ok(VideoOutcome::Nothing);
                };
                let mut nalus: Vec<&[u8]> = Vec::with_capacity(8);
                for n in h264::avcc_nalus(&data, cfg.nal_length_size) {
                    nalus.push(n.map_err(|e| StreamError::H264(e.to_string()))?);
                }
                if nalus.is_empty() {
                    return Ok(VideoOutcome::Nothing);
                }
                let pts_ms = (timestamp_ms as i64 + composition_time_ms as i64).max(0) as u64;
                let rtp_ts = (pts_ms.wrapping_mul(90)) as u32;
                let keyframe = h264::is_keyframe(&nalus);
                let first = out.len();
                self.packetizer
                    .packetize(rtp_ts, &nalus, Some((&cfg.sps, &cfg.pps)), out)
                    .map_err(|e| StreamError::H264(e.to_string()))?;
                let produced = &out[first..];
                if keyframe {
                    self.gop.clear();
                    self.gop_valid = true;
                }
                if self.gop_valid {
                    if self.gop.len() + produced.len() > GOP_CACHE_MAX_PACKETS {
                        // Too long to replay usefully: wait for the next keyframe.
                        self.gop.clear();
                        self.gop_valid = false;
                    } else {
                        self.gop.extend_from_slice(produced);
                    }
                }
                for p in produced {
                    self.packets_out_shared += 1;
                    self.octets_out_shared += (p.len() - 12) as u64;
                }
                self.last_rtp_ts = rtp_ts;
                self.last_frame_at = Some(now);
                self.video_frames += 1;
                Ok(if produced.is_empty() { VideoOutcome::Nothing } else { VideoOutcome::Packets })
            }
            VideoTag::AvcEndOfSequence | VideoTag::Unsupported { .. } => Ok(VideoOutcome::Nothing),
        }
    }

    /// RTP timestamp "now" for a sender report: the last frame's timestamp
    /// advanced by the wall time since it arrived.
    pub fn rtp_ts_at(&self, now: Instant) -> u32 {
        match self.last_frame_at {
            Some(t) => self.last_rtp_ts.wrapping_add((now.saturating_duration_since(t).as_micros() as u64 * 90 / 1000) as u32),
            None => self.last_rtp_ts,
        }
    }
}
