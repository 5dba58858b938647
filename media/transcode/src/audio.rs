//! AAC-LC -> Opus 48 kHz, 20 ms frames.
//!
//! Pipeline: symphonia's AAC decoder (planar f32 at the source rate) -> rubato sinc
//! resampler when the source is not 48 kHz -> a FIFO of interleaved 48 kHz samples ->
//! libopus, one packet per 960 samples. The resampler's group delay is trimmed and the
//! Opus lookahead is subtracted from the RTP timestamps, so the Opus timeline lines up
//! with the FLV timeline (lip sync) even though both add a little latency.

use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::Bytes;
use rubato::{
    Resampler, SincFixedIn, SincInterpolationParameters, SincInterpolationType, WindowFunction,
};
use symphonia::core::audio::{AudioBufferRef, Signal};
use symphonia::core::codecs::{CodecParameters, Decoder, DecoderOptions, CODEC_TYPE_AAC};
use symphonia::core::formats::Packet;
use symphonia::default::codecs::AacDecoder;

use crate::asc::{parse_audio_specific_config, AudioConfig};
use crate::Error;

/// Opus always runs at 48 kHz here: WebRTC's Opus RTP clock is 48 kHz (RFC 7587).
pub const OPUS_RATE: u32 = 48_000;
/// 20 ms at 48 kHz: the WebRTC default packet time.
pub const OPUS_FRAME: usize = 960;
/// Largest Opus packet we accept from libopus (RFC 6716 caps a frame at 1275 bytes).
const MAX_OPUS_PACKET: usize = 1500;
/// Resampler input chunk: small, so a decoder frame that is not a multiple of it is
/// held for at most ~6 ms; AAC-LC's 1024-sample frames pass through with no hold.
const RESAMPLE_CHUNK: usize = 256;
/// A publisher timestamp that disagrees with the decoded sample count by more than
/// this is a gap (or a rollback after a reconnect): the bookkeeping is rebased.
const GAP_MS: i64 = 500;

/// One Opus packet ready for RTP packetisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpusPacket {
    /// The encoded packet (one 20 ms Opus frame).
    pub data: Bytes,
    /// 48 kHz RTP timestamp: the FLV timestamp of the first input sample times 48,
    /// then +960 per packet (continuous; jumps forward only across a publisher gap).
    pub rtp_timestamp: u32,
    /// Samples per channel in the packet (always 960).
    pub samples: u32,
}

/// Synchronous AAC -> Opus transcoder for one stream. Not thread-safe by design: the
/// worker owns it on its own thread.
pub struct AacToOpus {
    config: AudioConfig,
    channels: usize,
    decoder: AacDecoder,
    resampler: Option<SincFixedIn<f32>>,
    /// Decoded planar samples at the source rate awaiting a full resampler chunk.
    in_fifo: Vec<Vec<f32>>,
    /// Resampler output scratch (planar).
    resampled: Vec<Vec<f32>>,
    /// Interleaved 48 kHz samples awaiting a full Opus frame.
    out_fifo: Vec<f32>,
    /// Resampler output frames still to drop (its group delay).
    trim: usize,
    encoder: opus::Encoder,
    packet_buf: Vec<u8>,
    lookahead: u32,
    next_rtp: Option<u32>,
    /// FLV timestamp and decoded-sample count since the last (re)base, for gap checks.
    base_ts_ms: u32,
    frames_since_base: u64,
    /// Latency bookkeeping at 48 kHz: decoded input vs emitted output positions.
    input_pos_48: f64,
    emitted_pos_48: f64,
    delay_sum_ms: f64,
    delay_count: u64,
}

impl AacToOpus {
    /// Builds a transcoder from the FLV AACPacketType=0 payload (AudioSpecificConfig).
    pub fn new(asc: &[u8], opus_bitrate_bps: u32) -> Result<Self, Error> {
        let config = parse_audio_specific_config(asc)?;
        if config.object_type != 2 {
            return Err(Error::Unsupported(format!(
                "AAC object type {} (only AAC-LC = 2)",
                config.object_type
            )));
        }
        let channels = match config.channels {
            1 | 2 => usize::from(config.channels),
            n => return Err(Error::Unsupported(format!("{n} AAC channels"))),
        };
        if !(8_000..=96_000).contains(&config.sample_rate) {
            return Err(Error::Unsupported(format!(
                "sample rate {}",
                config.sample_rate
            )));
        }
        let mut params = CodecParameters::new();
        params
            .for_codec(CODEC_TYPE_AAC)
            .with_sample_rate(config.sample_rate)
            .with_extra_data(asc.to_vec().into_boxed_slice());
        let decoder = AacDecoder::try_new(&params, &DecoderOptions::default())
            .map_err(|e| Error::AacDecode(e.to_string()))?;

        let resampler = if config.sample_rate == OPUS_RATE {
            None
        } else {
            let p = SincInterpolationParameters {
                // 128 taps: ~64 input samples (1.5 ms at 44.1 kHz) of group delay, and a
                // transition band narrow enough to keep 20 kHz content.
                sinc_len: 128,
                f_cutoff: 0.95,
                oversampling_factor: 256,
                interpolation: SincInterpolationType::Linear,
                window: WindowFunction::BlackmanHarris2,
            };
            let ratio = f64::from(OPUS_RATE) / f64::from(config.sample_rate);
            Some(
                SincFixedIn::<f32>::new(ratio, 1.0, p, RESAMPLE_CHUNK, channels)
                    .map_err(|e| Error::Resample(e.to_string()))?,
            )
        };
        let trim = resampler.as_ref().map_or(0, |r| r.output_delay());
        let resampled = match &resampler {
            Some(r) => vec![vec![0.0; r.output_frames_max()]; channels],
            None => Vec::new(),
        };

        let opus_channels = if channels == 1 {
            opus::Channels::Mono
        } else {
            opus::Channels::Stereo
        };
        let mut encoder = opus::Encoder::new(OPUS_RATE, opus_channels, opus::Application::Audio)?;
        let bitrate = i32::try_from(opus_bitrate_bps.clamp(6_000, 510_000)).unwrap_or(128_000);
        encoder.set_bitrate(opus::Bitrate::Bits(bitrate))?;
        // Hard CBR: every 20 ms packet has the same size, so the shard can send
        // two of them to a viewer as one GSO sendmsg (audio is 50 of the 80
        // sends per viewer-second; docs/decisions/006-opus-encoder.md).
        encoder.set_vbr(false)?;
        let lookahead = u32::try_from(encoder.get_lookahead()?).unwrap_or(0);

        Ok(Self {
            config,
            channels,
            decoder,
            resampler,
            in_fifo: vec![Vec::with_capacity(4096); channels],
            resampled,
            out_fifo: Vec::with_capacity(8192),
            trim,
            encoder,
            packet_buf: vec![0; MAX_OPUS_PACKET],
            lookahead,
            next_rtp: None,
            base_ts_ms: 0,
            frames_since_base: 0,
            input_pos_48: 0.0,
            emitted_pos_48: 0.0,
            delay_sum_ms: 0.0,
            delay_count: 0,
        })
    }

    /// Tells the encoder how much loss its receivers see (percent): above 0 it
    /// adds Opus in-band FEC (LBRR: a low-rate copy of the previous frame)
    /// tuned to that loss. libopus carries LBRR in its SILK and hybrid
    /// modes only, so it shows at speech-like bitrates; at the default 96
    /// kbit/s the encoder stays in CELT and the hint changes nothing (RED,
    /// in the dataplane, protects that audio instead).
    pub fn set_loss_hint(&mut self, pct: u8) -> Result<(), Error> {
        let pct = pct.min(100);
        self.encoder.set_inband_fec(pct > 0)?;
        self.encoder.set_packet_loss_perc(i32::from(pct))?;
        Ok(())
    }

    /// The encoder's (in-band FEC on, packet loss percent), as set.
    pub fn loss_hint(&mut self) -> Result<(bool, u8), Error> {
        let fec = self.encoder.get_inband_fec()?;
        let pct = self.encoder.get_packet_loss_perc()?;
        Ok((fec, u8::try_from(pct).unwrap_or(0)))
    }

    /// The parsed AudioSpecificConfig.
    pub fn config(&self) -> AudioConfig {
        self.config
    }

    /// One raw AAC frame (FLV AACPacketType=1 payload) with its FLV timestamp in ms.
    /// Appends zero or more Opus packets to `out`.
    pub fn push(
        &mut self,
        aac: &[u8],
        timestamp_ms: u32,
        out: &mut Vec<OpusPacket>,
    ) -> Result<(), Error> {
        self.track_timestamp(timestamp_ms);
        let frames = self.decode_into_fifo(aac)?;
        self.frames_since_base += frames as u64;
        self.input_pos_48 +=
            frames as f64 * f64::from(OPUS_RATE) / f64::from(self.config.sample_rate);
        self.resample()?;
        self.encode(out)
    }

    /// Pushes out everything still buffered (resampler tail, Opus lookahead, a partial
    /// last frame padded with silence). Call at end of stream.
    pub fn flush(&mut self, out: &mut Vec<OpusPacket>) {
        if self.next_rtp.is_none() {
            return;
        }
        if let Some(r) = &self.resampler {
            let pad = r.output_delay() + RESAMPLE_CHUNK * 2;
            for ch in &mut self.in_fifo {
                ch.resize(ch.len() + pad, 0.0);
            }
        }
        if self.resample().is_err() {
            return;
        }
        let tail = self.lookahead as usize * self.channels;
        self.out_fifo.resize(self.out_fifo.len() + tail, 0.0);
        let frame = OPUS_FRAME * self.channels;
        let rem = self.out_fifo.len() % frame;
        if rem != 0 {
            self.out_fifo.resize(self.out_fifo.len() + frame - rem, 0.0);
        }
        // Encoding errors at the very end only lose the tail.
        let _ = self.encode(out);
    }

    /// Mean latency this transcoder adds, in ms, measured as the age of the last
    /// sample of each emitted packet relative to the newest decoded input sample:
    /// resampler group delay + Opus lookahead + 20 ms framing hold. Before any packet
    /// has been emitted it returns the configured (theoretical) figure.
    pub fn added_delay_ms(&self) -> f64 {
        if self.delay_count == 0 {
            let resampler = self.resampler.as_ref().map_or(0, |r| r.output_delay());
            return (resampler as f64 + f64::from(self.lookahead) + OPUS_FRAME as f64 / 2.0)
                * 1000.0
                / f64::from(OPUS_RATE);
        }
        self.delay_sum_ms / self.delay_count as f64
    }

    fn track_timestamp(&mut self, ts: u32) {
        let Some(next) = self.next_rtp else {
            // RTP timestamps start at the FLV time of the first sample, moved back by
            // the Opus lookahead so decoded audio lands at its FLV time.
            // No AAC priming correction: an encoder that primes (ffmpeg: 1024
            // samples) stamps each packet with the time of its first *decoded*
            // sample (the first packet at -priming, every stream shifted alike in
            // FLV), and the decoder outputs every frame, so decoded sample n sits at
            // ts + n / rate. tests/av_alignment.rs measures beep vs flash through
            // this transcoder at 0.4 ms (48 kHz) and -1.2 ms (44.1 kHz).
            self.next_rtp = Some(
                ts.wrapping_mul(OPUS_RATE / 1000)
                    .wrapping_sub(self.lookahead),
            );
            self.base_ts_ms = ts;
            return;
        };
        let expected = i64::from(self.base_ts_ms)
            + (self.frames_since_base * 1000 / u64::from(self.config.sample_rate)) as i64;
        let diff = i64::from(ts.wrapping_sub(expected as u32) as i32);
        if diff.abs() > GAP_MS {
            if diff > 0 {
                // Publisher gap (silence, dropped frames): keep the audio in sync with
                // video by jumping the RTP clock by whole frames.
                let frames = diff as u64 * u64::from(OPUS_RATE / 1000) / OPUS_FRAME as u64;
                self.next_rtp = Some(next.wrapping_add((frames * OPUS_FRAME as u64) as u32));
            }
            // Rollback (reconnect): stay continuous, just rebase the bookkeeping.
            tracing::debug!(diff_ms = diff, "aac timestamp discontinuity, rebased");
            self.base_ts_ms = ts;
            self.frames_since_base = 0;
        }
    }

    /// Decodes one AAC frame and appends its planar samples to `in_fifo`.
    fn decode_into_fifo(&mut self, aac: &[u8]) -> Result<usize, Error> {
        if aac.is_empty() {
            return Err(Error::AacDecode("empty frame".into()));
        }
        let packet = Packet::new_from_slice(0, 0, 1024, aac);
        let channels = self.channels;
        let decoder = &mut self.decoder;
        let fifo = &mut self.in_fifo;
        // symphonia is pure Rust but not fuzz-hardened for every AAC syntax element; a
        // publisher must not be able to take the worker down, so a panic is an error.
        let res = catch_unwind(AssertUnwindSafe(|| -> Result<usize, Error> {
            let decoded = decoder
                .decode(&packet)
                .map_err(|e| Error::AacDecode(e.to_string()))?;
            let AudioBufferRef::F32(buf) = decoded else {
                return Err(Error::Unsupported("non-f32 AAC decoder output".into()));
            };
            if buf.spec().channels.count() != channels {
                return Err(Error::AacDecode("channel count changed in-band".into()));
            }
            for (c, ch) in fifo.iter_mut().enumerate() {
                ch.extend_from_slice(buf.chan(c));
            }
            Ok(buf.frames())
        }));
        match res {
            Ok(r) => r,
            Err(_) => {
                self.decoder.reset();
                Err(Error::AacDecode(
                    "decoder panicked on malformed frame".into(),
                ))
            }
        }
    }

    /// Moves whole resampler chunks from `in_fifo` to `out_fifo` (interleaved, 48 kHz).
    fn resample(&mut self) -> Result<(), Error> {
        let Some(r) = &mut self.resampler else {
            let n = self.in_fifo[0].len();
            for i in 0..n {
                for ch in &self.in_fifo {
                    self.out_fifo.push(ch[i]);
                }
            }
            for ch in &mut self.in_fifo {
                ch.clear();
            }
            return Ok(());
        };
        while self.in_fifo[0].len() >= r.input_frames_next() {
            let need = r.input_frames_next();
            // At most two channels: a fixed array avoids a per-chunk allocation.
            let last = self.channels - 1;
            let inputs: [&[f32]; 2] = [&self.in_fifo[0][..need], &self.in_fifo[last][..need]];
            let (nin, nout) = r
                .process_into_buffer(&inputs[..self.channels], &mut self.resampled, None)
                .map_err(|e| Error::Resample(e.to_string()))?;
            for ch in &mut self.in_fifo {
                ch.drain(..nin);
            }
            let skip = self.trim.min(nout);
            self.trim -= skip;
            for i in skip..nout {
                for ch in &self.resampled {
                    self.out_fifo.push(ch[i]);
                }
            }
        }
        Ok(())
    }

    fn encode(&mut self, out: &mut Vec<OpusPacket>) -> Result<(), Error> {
        let frame = OPUS_FRAME * self.channels;
        let mut consumed = 0;
        let mut result = Ok(());
        while self.out_fifo.len() - consumed >= frame {
            let pcm = &self.out_fifo[consumed..consumed + frame];
            consumed += frame;
            let n = match self.encoder.encode_float(pcm, &mut self.packet_buf) {
                Ok(n) => n,
                Err(e) => {
                    result = Err(e.into());
                    break;
                }
            };
            let rtp = self.next_rtp.unwrap_or(0);
            self.next_rtp = Some(rtp.wrapping_add(OPUS_FRAME as u32));
            self.emitted_pos_48 += OPUS_FRAME as f64;
            // Age of this packet's last sample when it leaves: newest input position
            // minus (packet end - lookahead), in ms.
            let age = self.input_pos_48 - (self.emitted_pos_48 - f64::from(self.lookahead));
            self.delay_sum_ms += age.max(0.0) * 1000.0 / f64::from(OPUS_RATE);
            self.delay_count += 1;
            out.push(OpusPacket {
                data: Bytes::copy_from_slice(&self.packet_buf[..n]),
                rtp_timestamp: rtp,
                samples: OPUS_FRAME as u32,
            });
        }
        self.out_fifo.drain(..consumed);
        result
    }
}
