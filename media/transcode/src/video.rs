//! H.264 (any profile, B-frames allowed) -> constrained-baseline H.264 without
//! B-frames, via libavcodec's h264 decoder and libx264 (`zerolatency`).
//!
//! The decoder is the only source of delay: it must hold frames until they can be
//! output in presentation order (the stream's reorder depth, typically 1-2 frames with
//! `-bf 3`). x264 with `tune=zerolatency` has no lookahead, no B-frames and sliced
//! threads, so each decoded frame comes back encoded in the same call.

use std::collections::VecDeque;
use std::sync::Once;

use bytes::Bytes;
use ff::format::Pixel;
use ff::software::scaling;
use ff::{codec, decoder, encoder, frame, picture, threading, Dictionary, Packet, Rational};
use ffmpeg_next as ff;

use crate::h264::{
    avcc_has_idr, avcc_sei_nals, avcc_to_annexb, parse_avc_config, split_annexb, AvcConfig,
};
use crate::Error;

/// Re-encode settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReencodeOptions {
    /// Target (and VBV max) bitrate of the new stream.
    pub bitrate_bps: u32,
    /// Longest allowed distance between keyframes, in ms; capped at 2000.
    pub max_keyframe_interval_ms: u32,
    /// Slice threads for decoder and encoder (slice threading adds no frame delay).
    pub threads: u32,
}

impl Default for ReencodeOptions {
    fn default() -> Self {
        Self {
            bitrate_bps: 2_000_000,
            max_keyframe_interval_ms: 2000,
            threads: 2,
        }
    }
}

/// One re-encoded access unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedFrame {
    /// NAL units without start codes or length prefixes: the source frame's SEI
    /// first (user data such as timestamps or product cards rides through), then
    /// the new slices. The encoder's own SPS/PPS, SEI and AUD are removed:
    /// parameter sets come from [`H264Reencoder::parameter_sets`].
    pub nalus: Vec<Bytes>,
    /// Presentation time in ms (FLV dts + cts, unwrapped past 2^32 ms).
    pub pts_ms: u64,
    /// An IDR picture: decodable without earlier frames.
    pub keyframe: bool,
}

/// Source frames whose SEI waits for its re-encoded frame (the decoder holds a
/// few frames for reordering; a frame it never outputs is forgotten here).
const MAX_SEI_FRAMES: usize = 32;

static FFMPEG_INIT: Once = Once::new();

fn init_ffmpeg() {
    FFMPEG_INIT.call_once(|| {
        // Registration is a no-op on FFmpeg >= 4; the log level keeps libavcodec's
        // per-frame warnings about publisher garbage off stderr.
        let _ = ff::init();
        ff::util::log::set_level(ff::util::log::Level::Fatal);
    });
}

/// Synchronous re-encoder for one video stream (owned by the worker thread).
pub struct H264Reencoder {
    opts: ReencodeOptions,
    config: AvcConfig,
    decoder: decoder::Video,
    encoder: Option<Encoder>,
    /// Annex B scratch for the packet sent to the decoder.
    annexb: Vec<u8>,
    /// Whether the in-band SPS/PPS have been sent ahead of the first frame.
    sent_headers: bool,
    decoded: frame::Video,
    packet: Packet,
    out_sps: Vec<Vec<u8>>,
    out_pps: Vec<Vec<u8>>,
    force_keyframe: bool,
    last_key_pts: Option<i64>,
    /// Unwrapped dts of the previous frame (FLV timestamps wrap at 2^32 ms).
    last_dts: Option<(u32, i64)>,
    /// (pts, arrival dts) of frames inside the decoder, to measure their delay.
    in_flight: VecDeque<(i64, i64)>,
    /// (pts, SEI NAL units) of source frames inside the decoder, for the
    /// re-encoded frame of the same pts.
    sei: VecDeque<(i64, Vec<Bytes>)>,
    current_dts: i64,
    delay_sum_ms: f64,
    delay_count: u64,
    /// Between [`H264Reencoder::begin_catch_up`] and its end: decoded
    /// pictures are kept (the newest in `held`), not encoded.
    catching_up: bool,
    held: frame::Video,
    held_pts: Option<i64>,
}

/// An open libx264 encoder plus the pixel conversion it may need.
struct Encoder {
    enc: encoder::video::Encoder,
    width: u32,
    height: u32,
    src_format: Pixel,
    scaler: Option<(scaling::Context, frame::Video)>,
}

impl H264Reencoder {
    /// Opens the decoder for a stream described by its AVCDecoderConfigurationRecord.
    /// The encoder is opened on the first decoded frame, when the size is known.
    pub fn new(avc_decoder_config: &[u8], opts: &ReencodeOptions) -> Result<Self, Error> {
        init_ffmpeg();
        let config = parse_avc_config(avc_decoder_config)?;
        let mut opts = *opts;
        opts.max_keyframe_interval_ms = opts.max_keyframe_interval_ms.clamp(100, 2000);
        opts.threads = opts.threads.clamp(1, 16);
        let codec = decoder::find(codec::Id::H264)
            .ok_or_else(|| Error::Unsupported("libavcodec has no h264 decoder".into()))?;
        let mut ctx = codec::Context::new_with_codec(codec);
        // Slice threads only: frame threads would add (threads - 1) frames of delay.
        ctx.set_threading(threading::Config {
            kind: threading::Type::Slice,
            count: opts.threads as usize,
            ..Default::default()
        });
        let decoder = ctx.decoder().video()?;
        Ok(Self {
            opts,
            config,
            decoder,
            encoder: None,
            annexb: Vec::with_capacity(64 * 1024),
            sent_headers: false,
            decoded: frame::Video::empty(),
            packet: Packet::empty(),
            out_sps: Vec::new(),
            out_pps: Vec::new(),
            force_keyframe: false,
            last_key_pts: None,
            last_dts: None,
            in_flight: VecDeque::with_capacity(32),
            sei: VecDeque::with_capacity(MAX_SEI_FRAMES),
            current_dts: 0,
            delay_sum_ms: 0.0,
            delay_count: 0,
            catching_up: false,
            held: frame::Video::empty(),
            held_pts: None,
        })
    }

    /// One FLV AVC NALU frame (AVCC, length-prefixed). Appends the frames that became
    /// ready, in presentation order, to `out`.
    pub fn push(
        &mut self,
        avcc: &[u8],
        dts_ms: u32,
        cts_ms: i32,
        out: &mut Vec<EncodedFrame>,
    ) -> Result<(), Error> {
        self.annexb.clear();
        if !self.sent_headers || avcc_has_idr(avcc, self.config.nal_length_size) {
            // libavcodec's safe API has no extradata setter: in-band parameter sets
            // configure the decoder just as well. Repeating them before every IDR lets
            // the decoder recover if garbage NAL units overwrote them.
            for set in self.config.sps.iter().chain(&self.config.pps) {
                self.annexb.extend_from_slice(&[0, 0, 0, 1]);
                self.annexb.extend_from_slice(set);
            }
        }
        avcc_to_annexb(avcc, self.config.nal_length_size, &mut self.annexb)?;
        if self.annexb.is_empty() {
            return Ok(());
        }
        let dts = self.unwrap_dts(dts_ms);
        let pts = dts + i64::from(cts_ms);
        self.current_dts = dts;
        let mut pkt = Packet::copy(&self.annexb);
        pkt.set_dts(Some(dts));
        pkt.set_pts(Some(pts));
        self.decoder.send_packet(&pkt)?;
        self.sent_headers = true;
        if self.in_flight.len() == self.in_flight.capacity() {
            self.in_flight.pop_front();
        }
        self.in_flight.push_back((pts, dts));
        let sei = avcc_sei_nals(avcc, self.config.nal_length_size);
        if !sei.is_empty() {
            if self.sei.len() == MAX_SEI_FRAMES {
                self.sei.pop_front();
            }
            self.sei.push_back((pts, sei));
        }
        self.drain_decoder(out)
    }

    /// End of stream: drains the frames the decoder still holds for reordering.
    /// The re-encoder cannot be used afterwards.
    pub fn flush(&mut self, out: &mut Vec<EncodedFrame>) -> Result<(), Error> {
        self.decoder.send_eof()?;
        self.drain_decoder(out)?;
        if let Some(e) = &mut self.encoder {
            e.enc.send_eof()?;
        }
        self.drain_encoder(out)
    }

    /// SPS and PPS of the re-encoded stream, each with its NAL header; empty until the
    /// first frame has been encoded. They change only when the resolution changes.
    pub fn parameter_sets(&self) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        (self.out_sps.clone(), self.out_pps.clone())
    }

    /// Starts a catch-up: the frames pushed until [`Self::end_catch_up`] (a
    /// GOP in progress that a re-encoder starting now must decode first, its
    /// keyframe on) are decoded but not encoded. Encoding them all only to
    /// reach the present picture cost ~4x the decoding (x264 is most of a
    /// re-encoder's time), and a viewer waited for all of it (decision 031).
    pub fn begin_catch_up(&mut self) {
        self.catching_up = true;
        self.held_pts = None;
    }

    /// Ends a catch-up: the newest picture decoded so far goes out as an IDR,
    /// the present picture of the stream, decodable on its own. Pictures the
    /// decoder still holds for reordering follow it as usual. Returns
    /// whether there was a picture (none when the catch-up decoded nothing).
    pub fn end_catch_up(&mut self, out: &mut Vec<EncodedFrame>) -> Result<bool, Error> {
        self.catching_up = false;
        let Some(pts) = self.held_pts.take() else { return Ok(false) };
        std::mem::swap(&mut self.decoded, &mut self.held);
        // Releases the picture `decoded` held before (a decoder buffer).
        self.held = frame::Video::empty();
        self.force_keyframe = true;
        self.encode_decoded(pts)?;
        self.drain_encoder(out)?;
        Ok(true)
    }

    /// Makes the next encoded frame an IDR (PLI/FIR, new viewer).
    pub fn request_keyframe(&mut self) {
        self.force_keyframe = true;
    }

    /// Mean time frames spend in the re-encoder, in stream time (ms): the decoder's
    /// reorder hold. Encoding CPU time comes on top (see the crate docs for measured
    /// figures); 0 until the first frame comes out.
    pub fn added_delay_ms(&self) -> f64 {
        if self.delay_count == 0 {
            return 0.0;
        }
        self.delay_sum_ms / self.delay_count as f64
    }

    fn unwrap_dts(&mut self, dts: u32) -> i64 {
        let ext = match self.last_dts {
            None => i64::from(dts),
            Some((raw, ext)) => ext + i64::from(dts.wrapping_sub(raw) as i32),
        };
        self.last_dts = Some((dts, ext));
        ext
    }

    fn drain_decoder(&mut self, out: &mut Vec<EncodedFrame>) -> Result<(), Error> {
        loop {
            match self.decoder.receive_frame(&mut self.decoded) {
                Ok(()) => {}
                Err(ff::Error::Other { errno }) if errno == ff::error::EAGAIN => return Ok(()),
                Err(ff::Error::Eof) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
            let pts = self
                .decoded
                .timestamp()
                .or(self.decoded.pts())
                .unwrap_or(self.current_dts);
            if let Some(i) = self.in_flight.iter().position(|&(p, _)| p == pts) {
                let (_, arrival) = self.in_flight[i];
                self.delay_sum_ms += (self.current_dts - arrival).max(0) as f64;
                self.delay_count += 1;
                self.in_flight.drain(..=i);
            }
            if self.catching_up {
                // Keep the newest picture; the one it replaces is released
                // by the next receive_frame (which unrefs its target).
                std::mem::swap(&mut self.decoded, &mut self.held);
                self.held_pts = Some(pts);
                continue;
            }
            self.encode_decoded(pts)?;
            self.drain_encoder(out)?;
        }
    }

    fn encode_decoded(&mut self, pts: i64) -> Result<(), Error> {
        let (w, h, fmt) = (
            self.decoded.width(),
            self.decoded.height(),
            self.decoded.format(),
        );
        let reopen = match &self.encoder {
            Some(e) => e.width != w || e.height != h || e.src_format != fmt,
            None => true,
        };
        if reopen {
            // Resolution or format change: a fresh encoder starts with an IDR and new
            // parameter sets, which the caller picks up from `parameter_sets()`.
            self.encoder = Some(self.open_encoder(w, h, fmt)?);
            self.last_key_pts = None;
        }
        let Some(e) = &mut self.encoder else {
            return Err(Error::Misuse("encoder missing"));
        };
        let max_gap = i64::from(self.opts.max_keyframe_interval_ms);
        // Keyframe cadence by time, not frame count: the publisher's frame rate may not
        // match what the SPS says, and the 2 s bound must hold regardless. Forcing a
        // frame early (half a frame of margin at 60 fps) keeps the gap under the bound.
        let due = self.last_key_pts.is_none_or(|k| pts - k >= max_gap - 17);
        let kind = if self.force_keyframe || due {
            picture::Type::I
        } else {
            picture::Type::None
        };
        self.force_keyframe = false;
        let frame = match &mut e.scaler {
            Some((sws, dst)) => {
                sws.run(&self.decoded, dst)?;
                dst
            }
            None => &mut self.decoded,
        };
        frame.set_pts(Some(pts));
        frame.set_kind(kind);
        e.enc.send_frame(frame)?;
        Ok(())
    }

    fn open_encoder(&self, width: u32, height: u32, src_format: Pixel) -> Result<Encoder, Error> {
        if width == 0 || height == 0 || !width.is_multiple_of(2) || !height.is_multiple_of(2) {
            return Err(Error::Unsupported(format!("{width}x{height} picture")));
        }
        let codec = encoder::find_by_name("libx264")
            .ok_or_else(|| Error::Unsupported("libavcodec built without libx264".into()))?;
        let mut ctx = codec::Context::new_with_codec(codec);
        ctx.set_threading(threading::Config {
            kind: threading::Type::Slice,
            count: self.opts.threads as usize,
            ..Default::default()
        });
        let mut enc = ctx.encoder().video()?;
        let fps = self
            .decoder
            .frame_rate()
            .filter(|r| r.numerator() > 0 && r.denominator() > 0 && f64::from(*r) <= 240.0)
            .unwrap_or(Rational(30, 1));
        let gop = (f64::from(fps) * f64::from(self.opts.max_keyframe_interval_ms) / 1000.0).floor();
        enc.set_width(width);
        enc.set_height(height);
        enc.set_format(Pixel::YUV420P);
        enc.set_time_base(Rational(1, 1000));
        enc.set_frame_rate(Some(fps));
        enc.set_bit_rate(self.opts.bitrate_bps as usize);
        enc.set_max_bit_rate(self.opts.bitrate_bps as usize);
        enc.set_gop(gop.max(1.0) as u32);
        enc.set_max_b_frames(0);
        let mut dict = Dictionary::new();
        dict.set("preset", "veryfast");
        dict.set("tune", "zerolatency");
        dict.set("profile", "baseline");
        dict.set("forced-idr", "1");
        // A one-second VBV keeps the rate smooth enough for congestion control.
        let kbps = (self.opts.bitrate_bps / 1000).max(100);
        dict.set(
            "x264-params",
            &format!("vbv-maxrate={kbps}:vbv-bufsize={kbps}:repeat-headers=1"),
        );
        let enc = enc.open_with(dict)?;
        let scaler = if matches!(src_format, Pixel::YUV420P | Pixel::YUVJ420P) {
            None
        } else {
            let ctx = scaling::Context::get(
                src_format,
                width,
                height,
                Pixel::YUV420P,
                width,
                height,
                scaling::Flags::FAST_BILINEAR,
            )?;
            Some((ctx, frame::Video::new(Pixel::YUV420P, width, height)))
        };
        tracing::debug!(
            width,
            height,
            ?src_format,
            fps = f64::from(fps),
            "libx264 re-encoder opened"
        );
        Ok(Encoder {
            enc,
            width,
            height,
            src_format,
            scaler,
        })
    }

    fn drain_encoder(&mut self, out: &mut Vec<EncodedFrame>) -> Result<(), Error> {
        let Some(e) = &mut self.encoder else {
            return Ok(());
        };
        loop {
            match e.enc.receive_packet(&mut self.packet) {
                Ok(()) => {}
                Err(ff::Error::Other { errno }) if errno == ff::error::EAGAIN => return Ok(()),
                Err(ff::Error::Eof) => return Ok(()),
                Err(err) => return Err(err.into()),
            }
            let Some(data) = self.packet.data() else {
                continue;
            };
            let keyframe = self.packet.is_key();
            let pts = self.packet.pts().unwrap_or(0);
            // Frames come out in pts order: earlier SEI has lost its frame.
            while self.sei.front().is_some_and(|&(p, _)| p < pts) {
                self.sei.pop_front();
            }
            let mut nalus = match self.sei.front() {
                Some(&(p, _)) if p == pts => self.sei.pop_front().map(|(_, s)| s).unwrap_or_default(),
                _ => Vec::new(),
            };
            let (mut sps, mut pps) = (Vec::new(), Vec::new());
            for nal in split_annexb(data) {
                match nal.first().map(|h| h & 0x1f) {
                    Some(7) => sps.push(nal.to_vec()),
                    Some(8) => pps.push(nal.to_vec()),
                    Some(6) | Some(9) | None => {}
                    Some(_) => nalus.push(Bytes::copy_from_slice(nal)),
                }
            }
            if !sps.is_empty() && !pps.is_empty() {
                self.out_sps = sps;
                self.out_pps = pps;
            }
            if keyframe {
                self.last_key_pts = Some(pts);
            }
            out.push(EncodedFrame {
                nalus,
                pts_ms: pts.max(0) as u64,
                keyframe,
            });
        }
    }
}
