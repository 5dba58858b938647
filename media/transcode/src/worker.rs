//! One transcoding thread per stream, between bounded queues.
//!
//! The shard's io_uring loop must never block, so it only ever calls `try_send`
//! (which hands the job back when the queue is full, for the shard to count as a
//! drop) and `try_recv`. The worker blocks on its input queue, and on the output
//! queue when the shard falls behind: that back-pressure fills the input queue, so
//! overload shows up as counted drops at the shard, never as unbounded memory.
//! After each job that produced output the worker bumps an eventfd the shard polls.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::Bytes;
use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use rustix::event::{eventfd, EventfdFlags};

use crate::audio::{AacToOpus, OpusPacket};
use crate::video::{EncodedFrame, H264Reencoder, ReencodeOptions};

/// Work for the worker, in stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// One raw AAC frame (FLV AACPacketType=1) and its FLV timestamp.
    Audio { aac: Bytes, timestamp_ms: u32 },
    /// A new AudioSpecificConfig (FLV AACPacketType=0): (re)builds the audio path.
    AudioConfig(Bytes),
    /// One AVCC frame (FLV AVCPacketType=1) with its dts and composition time.
    Video {
        avcc: Bytes,
        dts_ms: u32,
        cts_ms: i32,
    },
    /// A new AVCDecoderConfigurationRecord: (re)builds the video path.
    VideoConfig(Bytes),
    /// Make the next video frame an IDR.
    RequestKeyframe,
    /// The video frames up to [`Job::EndCatchUp`] are a GOP in progress that
    /// a starting re-encoder decodes to reach the present: decoded only.
    BeginCatchUp,
    /// Ends the catch-up: its newest picture comes out as an IDR, then
    /// [`Output::CaughtUp`].
    EndCatchUp,
    /// The loss (percent) the audio's receivers see: Opus in-band FEC for it
    /// (see `AacToOpus::set_loss_hint`).
    AudioLossHint(u8),
    /// Flush the transcoders and end the thread.
    Stop,
}

/// Results for the shard, in production order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Opus(OpusPacket),
    Video(EncodedFrame),
    /// Parameter sets of the re-encoded stream; sent before the first frame that
    /// uses them (and again after a resolution change).
    VideoConfig {
        sps: Vec<Vec<u8>>,
        pps: Vec<Vec<u8>>,
    },
    /// A catch-up ended ([`Job::EndCatchUp`]); the IDR it produced, if any,
    /// came just before. `frames` video frames were decoded in `took` (from
    /// the worker taking [`Job::BeginCatchUp`] to the IDR).
    CaughtUp { frames: u32, took: std::time::Duration },
    /// A job failed (malformed input, missing config); the worker carries on.
    Error(String),
}

/// Worker settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerOptions {
    /// Capacity of the job queue (shard -> worker).
    pub input_capacity: usize,
    /// Capacity of the output queue (worker -> shard).
    pub output_capacity: usize,
    pub opus_bitrate_bps: u32,
    /// Initial loss hint for the Opus encoder, percent (0: no in-band FEC).
    pub opus_loss_hint_pct: u8,
    pub video: ReencodeOptions,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        // ~4 s of 30 fps video plus audio: rides out a slow encode without drops.
        Self {
            input_capacity: 256,
            output_capacity: 256,
            opus_bitrate_bps: 96_000,
            opus_loss_hint_pct: 0,
            video: ReencodeOptions::default(),
        }
    }
}

/// Handle to a transcoding thread. Dropping it closes the queues; the thread then
/// finishes its current job and exits without being joined (the shard must not wait).
pub struct TranscodeWorker {
    jobs: Sender<Job>,
    outputs: Receiver<Output>,
    wake: Arc<OwnedFd>,
    thread: Option<JoinHandle<()>>,
}

impl TranscodeWorker {
    /// Starts the thread `name`; `audio` / `video` select which jobs are transcoded
    /// (jobs for a disabled kind are ignored).
    pub fn spawn(
        name: &str,
        audio: bool,
        video: bool,
        opts: WorkerOptions,
    ) -> std::io::Result<Self> {
        let (jobs, job_rx) = bounded(opts.input_capacity.max(1));
        let (out_tx, outputs) = bounded(opts.output_capacity.max(1));
        let wake = Arc::new(eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?);
        let thread_wake = Arc::clone(&wake);
        // The transcoders hold libswscale contexts, which are not `Send`: the state is
        // built on the worker thread and never leaves it.
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let state = WorkerState {
                    audio: audio.then_some(None),
                    video: video.then_some(None),
                    opts,
                    out: out_tx,
                    wake: thread_wake,
                    opus: Vec::with_capacity(8),
                    frames: Vec::with_capacity(8),
                    last_sets: None,
                    catch_up: None,
                };
                state.run(job_rx)
            })?;
        Ok(Self {
            jobs,
            outputs,
            wake,
            thread: Some(thread),
        })
    }

    /// Queues a job without blocking; gives it back when the queue is full (or the
    /// thread is gone) so the caller can count the drop.
    pub fn try_send(&self, job: Job) -> Result<(), Job> {
        self.jobs.try_send(job).map_err(|e| match e {
            TrySendError::Full(j) | TrySendError::Disconnected(j) => j,
        })
    }

    /// Takes one result, if any. Drain until `None` after each eventfd wake-up.
    pub fn try_recv(&self) -> Option<Output> {
        self.outputs.try_recv().ok()
    }

    /// Non-blocking eventfd, readable after the worker produced output. Read it (8
    /// bytes) to re-arm; the worker owns the descriptor.
    pub fn wake_fd(&self) -> RawFd {
        self.wake.as_raw_fd()
    }

    /// Stops the thread after the queued jobs and waits for it (tests and shutdown
    /// paths that may block). Outputs produced on the way are discarded.
    pub fn join(mut self) {
        let _ = self.jobs.send(Job::Stop);
        let outputs = self.outputs.clone();
        if let Some(t) = self.thread.take() {
            while !t.is_finished() {
                // Keep draining so a worker blocked on a full output queue can finish.
                while outputs.try_recv().is_ok() {}
                std::thread::yield_now();
            }
            let _ = t.join();
        }
    }
}

impl Drop for TranscodeWorker {
    fn drop(&mut self) {
        // Best effort; if the queue is full, dropping the sender ends the thread too.
        let _ = self.jobs.try_send(Job::Stop);
    }
}

/// (SPS list, PPS list) of the re-encoded stream.
type ParameterSets = (Vec<Vec<u8>>, Vec<Vec<u8>>);

struct WorkerState {
    /// `None` = kind disabled; `Some(None)` = enabled, waiting for its config.
    audio: Option<Option<AacToOpus>>,
    video: Option<Option<H264Reencoder>>,
    opts: WorkerOptions,
    out: Sender<Output>,
    wake: Arc<OwnedFd>,
    opus: Vec<OpusPacket>,
    frames: Vec<EncodedFrame>,
    last_sets: Option<ParameterSets>,
    /// A catch-up in progress: since when, and the video frames it fed.
    catch_up: Option<(std::time::Instant, u32)>,
}

impl WorkerState {
    fn run(mut self, jobs: Receiver<Job>) {
        while let Ok(job) = jobs.recv() {
            let stop = job == Job::Stop;
            let produced = match self.handle(job) {
                Ok(n) => n,
                Err(()) => return, // shard side gone
            };
            if produced > 0 {
                // The counter saturates only after 2^64-2 wake-ups; EAGAIN is harmless.
                let _ = rustix::io::write(&*self.wake, &1u64.to_ne_bytes());
            }
            if stop {
                return;
            }
        }
    }

    /// Runs one job; returns how many outputs it sent, or Err when the receiver is gone.
    fn handle(&mut self, job: Job) -> Result<usize, ()> {
        let mut results: Vec<Output> = Vec::new();
        let mut caught_up = None;
        match job {
            Job::AudioConfig(asc) => {
                if let Some(slot) = &mut self.audio {
                    match AacToOpus::new(&asc, self.opts.opus_bitrate_bps) {
                        Ok(mut t) => {
                            if let Err(e) = t.set_loss_hint(self.opts.opus_loss_hint_pct) {
                                results.push(Output::Error(format!("audio loss hint: {e}")));
                            }
                            *slot = Some(t);
                        }
                        Err(e) => results.push(Output::Error(format!("audio config: {e}"))),
                    }
                }
            }
            Job::Audio { aac, timestamp_ms } => match &mut self.audio {
                Some(Some(t)) => {
                    if let Err(e) = t.push(&aac, timestamp_ms, &mut self.opus) {
                        results.push(Output::Error(format!("audio: {e}")));
                    }
                }
                Some(None) => {
                    results.push(Output::Error("audio before AudioSpecificConfig".into()))
                }
                None => {}
            },
            Job::VideoConfig(rec) => {
                if let Some(slot) = &mut self.video {
                    match H264Reencoder::new(&rec, &self.opts.video) {
                        Ok(t) => *slot = Some(t),
                        Err(e) => results.push(Output::Error(format!("video config: {e}"))),
                    }
                }
            }
            Job::Video {
                avcc,
                dts_ms,
                cts_ms,
            } => match &mut self.video {
                Some(Some(t)) => {
                    if let Some((_, n)) = &mut self.catch_up {
                        *n += 1;
                    }
                    if let Err(e) = t.push(&avcc, dts_ms, cts_ms, &mut self.frames) {
                        results.push(Output::Error(format!("video: {e}")));
                    }
                }
                Some(None) => results.push(Output::Error(
                    "video before AVCDecoderConfigurationRecord".into(),
                )),
                None => {}
            },
            Job::RequestKeyframe => {
                if let Some(Some(t)) = &mut self.video {
                    t.request_keyframe();
                }
            }
            Job::BeginCatchUp => {
                if let Some(Some(t)) = &mut self.video {
                    t.begin_catch_up();
                }
                self.catch_up = Some((std::time::Instant::now(), 0));
            }
            Job::EndCatchUp => {
                if let Some(Some(t)) = &mut self.video {
                    if let Err(e) = t.end_catch_up(&mut self.frames) {
                        results.push(Output::Error(format!("video catch-up: {e}")));
                    }
                }
                caught_up = Some(self.catch_up.take().map_or(
                    Output::CaughtUp { frames: 0, took: std::time::Duration::ZERO },
                    |(since, frames)| Output::CaughtUp { frames, took: since.elapsed() },
                ));
            }
            Job::AudioLossHint(pct) => {
                self.opts.opus_loss_hint_pct = pct;
                if let Some(Some(t)) = &mut self.audio {
                    if let Err(e) = t.set_loss_hint(pct) {
                        results.push(Output::Error(format!("audio loss hint: {e}")));
                    }
                }
            }
            Job::Stop => {
                if let Some(Some(t)) = &mut self.audio {
                    t.flush(&mut self.opus);
                }
                if let Some(Some(t)) = &mut self.video {
                    if let Err(e) = t.flush(&mut self.frames) {
                        results.push(Output::Error(format!("video flush: {e}")));
                    }
                }
            }
        }
        if !self.frames.is_empty() {
            if let Some(Some(t)) = &self.video {
                let sets = t.parameter_sets();
                if self.last_sets.as_ref() != Some(&sets) && !sets.0.is_empty() {
                    results.push(Output::VideoConfig {
                        sps: sets.0.clone(),
                        pps: sets.1.clone(),
                    });
                    self.last_sets = Some(sets);
                }
            }
        }
        results.extend(self.opus.drain(..).map(Output::Opus));
        results.extend(self.frames.drain(..).map(Output::Video));
        results.extend(caught_up);
        let n = results.len();
        for r in results {
            self.out.send(r).map_err(|_| ())?;
        }
        Ok(n)
    }
}
