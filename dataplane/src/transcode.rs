//! Per-stream glue to `rts-transcode`: AAC -> Opus and B-frame H.264 ->
//! constrained baseline run on a worker thread, off the fan-out path. The
//! shard only ever `try_send`s jobs (a full queue is a counted drop) and
//! drains results once per loop iteration.
//!
//! A worker exists only while the stream has WebRTC demand (local viewers or
//! replicating shards) and something to transcode, as DESIGN.md §1 asks.

use crate::latency::LatencyWindow;
use bytes::Bytes;
use rts_transcode::{Job, Output, TranscodeWorker, WorkerOptions};
use std::collections::VecDeque;
use std::time::Instant;

/// Inputs remembered to measure the delay the transcoder adds.
const MAX_PENDING_INPUTS: usize = 512;

pub struct StreamTranscoder {
    /// Audio and video run on separate threads so a slow video encode never
    /// delays audio.
    audio_worker: Option<TranscodeWorker>,
    video_worker: Option<TranscodeWorker>,
    pub audio: bool,
    pub video: bool,
    audio_inputs: VecDeque<(i64, Instant)>,
    video_inputs: VecDeque<(i64, Instant)>,
    /// Parameter sets of the re-encoded video.
    pub sps: Vec<Vec<u8>>,
    pub pps: Vec<Vec<u8>>,
    pub audio_delay: LatencyWindow,
    pub video_delay: LatencyWindow,
    pub dropped_jobs: u64,
    pub errors: u64,
    /// The last loss hint sent to the audio worker.
    loss_hint: Option<u8>,
}

pub enum Transcoded {
    Opus { data: Bytes, rtp_ts: u32, added_us: Option<u32> },
    Video { nalus: Vec<Bytes>, pts_ms: u64, keyframe: bool, added_us: Option<u32> },
    /// The re-encoder's catch-up on the source GOP ended (its IDR, if any,
    /// came just before): `StreamTranscoder::catch_up`. It decoded `frames`
    /// in `took`.
    CaughtUp { frames: u32, took: std::time::Duration },
}

impl StreamTranscoder {
    /// Starts the workers; the video worker's job queue holds at least
    /// `video_backlog` frames more than usual (the source GOP it starts on,
    /// [`Self::catch_up`]).
    pub fn spawn(name: &str, audio: bool, video: bool, asc: Option<&Bytes>, avc_record: Option<&Bytes>, video_backlog: usize) -> std::io::Result<StreamTranscoder> {
        let audio_worker = if audio { Some(TranscodeWorker::spawn(&format!("{name}-a"), true, false, WorkerOptions::default())?) } else { None };
        // Two more for the catch-up's markers.
        let video_opts = WorkerOptions { input_capacity: WorkerOptions::default().input_capacity + video_backlog + 2, ..WorkerOptions::default() };
        let video_worker = if video { Some(TranscodeWorker::spawn(&format!("{name}-v"), false, true, video_opts)?) } else { None };
        let mut t = StreamTranscoder {
            audio_worker,
            video_worker,
            audio,
            video,
            audio_inputs: VecDeque::new(),
            video_inputs: VecDeque::new(),
            sps: Vec::new(),
            pps: Vec::new(),
            audio_delay: LatencyWindow::default(),
            video_delay: LatencyWindow::default(),
            dropped_jobs: 0,
            errors: 0,
            loss_hint: None,
        };
        if let (true, Some(a)) = (audio, asc) {
            t.send(Job::AudioConfig(a.clone()));
        }
        if let (true, Some(v)) = (video, avc_record) {
            t.send(Job::VideoConfig(v.clone()));
        }
        Ok(t)
    }

    pub fn send(&mut self, job: Job) {
        let worker = match job {
            Job::Audio { .. } | Job::AudioConfig(_) | Job::AudioLossHint(_) => self.audio_worker.as_ref(),
            _ => self.video_worker.as_ref(),
        };
        if worker.is_none_or(|w| w.try_send(job).is_err()) {
            self.dropped_jobs += 1;
        }
    }

    /// Feeds the source GOP so far (its keyframe first) to a re-encoder that
    /// just started: decoded only, its newest picture encoded as an IDR, then
    /// [`Transcoded::CaughtUp`]. Not remembered as inputs: their delay is not
    /// the live one.
    pub fn catch_up<'a>(&mut self, frames: impl Iterator<Item = (&'a Bytes, i64, i32)>) {
        self.send(Job::BeginCatchUp);
        for (avcc, dts_ms, cts_ms) in frames {
            self.send(Job::Video { avcc: avcc.clone(), dts_ms: dts_ms.max(0) as u32, cts_ms });
        }
        self.send(Job::EndCatchUp);
    }

    pub fn audio_frame(&mut self, aac: Bytes, stream_ms: i64, now: Instant) {
        remember(&mut self.audio_inputs, stream_ms, now);
        self.send(Job::Audio { aac, timestamp_ms: stream_ms.max(0) as u32 });
    }

    pub fn video_frame(&mut self, avcc: Bytes, dts_ms: i64, cts_ms: i32, now: Instant) {
        if self.video_inputs.len() >= MAX_PENDING_INPUTS {
            self.video_inputs.pop_front();
        }
        self.video_inputs.push_back((dts_ms + cts_ms as i64, now));
        self.send(Job::Video { avcc, dts_ms: dts_ms.max(0) as u32, cts_ms });
    }

    /// Tells the Opus encoder the loss its viewers see (percent), when it
    /// changed since the last hint.
    pub fn set_loss_hint(&mut self, pct: u8) {
        if self.audio && self.loss_hint != Some(pct) {
            self.loss_hint = Some(pct);
            self.send(Job::AudioLossHint(pct));
        }
    }

    pub fn request_keyframe(&mut self) {
        if self.video {
            self.send(Job::RequestKeyframe);
        }
    }

    /// Next result, with the delay it added (input arrival -> now).
    pub fn poll(&mut self, now: Instant) -> Option<Transcoded> {
        loop {
            let out = match self.audio_worker.as_ref().and_then(|w| w.try_recv()) {
                Some(o) => o,
                None => self.video_worker.as_ref()?.try_recv()?,
            };
            match out {
                Output::Opus(p) => {
                    let ms = (p.rtp_timestamp / 48) as i64;
                    let added_us = added(&mut self.audio_inputs, ms, now);
                    if let Some(us) = added_us {
                        self.audio_delay.record(us);
                    }
                    return Some(Transcoded::Opus { data: p.data, rtp_ts: p.rtp_timestamp, added_us });
                }
                Output::Video(f) => {
                    let added_us = added_exact(&mut self.video_inputs, f.pts_ms as i64, now);
                    if let Some(us) = added_us {
                        self.video_delay.record(us);
                    }
                    return Some(Transcoded::Video { nalus: f.nalus, pts_ms: f.pts_ms, keyframe: f.keyframe, added_us });
                }
                Output::CaughtUp { frames, took } => return Some(Transcoded::CaughtUp { frames, took }),
                Output::VideoConfig { sps, pps } => {
                    self.sps = sps;
                    self.pps = pps;
                }
                Output::Error(e) => {
                    self.errors += 1;
                    tracing::debug!(error = %e, "transcoder rejected a frame");
                }
            }
        }
    }
}

fn remember(q: &mut VecDeque<(i64, Instant)>, ms: i64, now: Instant) {
    if q.len() >= MAX_PENDING_INPUTS {
        q.pop_front();
    }
    q.push_back((ms, now));
}

/// Delay for an output covering stream time `ms`: since the arrival of the
/// latest input at or before `ms` (older inputs are consumed).
fn added(q: &mut VecDeque<(i64, Instant)>, ms: i64, now: Instant) -> Option<u32> {
    let mut found = None;
    while let Some(&(t, at)) = q.front() {
        if t > ms {
            break;
        }
        found = Some(at);
        q.pop_front();
    }
    found.map(|at| rts_common::histogram::micros_since(at, now))
}

/// Video: inputs arrive in decode order, outputs in presentation order, so
/// match the output's pts exactly.
fn added_exact(q: &mut VecDeque<(i64, Instant)>, pts: i64, now: Instant) -> Option<u32> {
    let i = q.iter().position(|&(t, _)| t == pts)?;
    let (_, at) = q.remove(i)?;
    Some(rts_common::histogram::micros_since(at, now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn added_delay_matches_the_covering_input() {
        let t0 = Instant::now();
        let mut q = VecDeque::new();
        remember(&mut q, 0, t0);
        remember(&mut q, 21, t0 + Duration::from_millis(21));
        remember(&mut q, 42, t0 + Duration::from_millis(42));
        // An output starting at 25 ms is covered by the input at 21 ms.
        assert_eq!(added(&mut q, 25, t0 + Duration::from_millis(61)), Some(40_000));
        assert_eq!(q.len(), 1);
        assert_eq!(added(&mut q, 30, t0 + Duration::from_millis(70)), None, "nothing new covers it");
    }

    #[test]
    fn video_delay_matches_pts_in_reordered_streams() {
        let t0 = Instant::now();
        let mut q = VecDeque::new();
        // Decode order I0 P99 B33 B66, 10 ms apart.
        for (i, pts) in [0i64, 99, 33, 66].iter().enumerate() {
            q.push_back((*pts, t0 + Duration::from_millis(10 * i as u64)));
        }
        let now = t0 + Duration::from_millis(100);
        assert_eq!(added_exact(&mut q, 33, now), Some(80_000));
        assert_eq!(added_exact(&mut q, 99, now), Some(90_000));
        assert_eq!(added_exact(&mut q, 7, now), None);
    }
}
