//! A stream's LL-HLS muxer: the publisher's FLV tags in, CMAF parts and
//! segments out, once per stream (on its home shard). AAC stays AAC,
//! B-frames stay (composition offsets).
//!
//! - A video frame waits until the next one gives its duration, then goes
//!   into the current part; so does the AAC that arrived meanwhile.
//! - A part ends before it would pass the part target ([`PART_TARGET_MS`]).
//! - A segment ends at a keyframe once it is [`MIN_SEGMENT_MS`] long, or
//!   before it would pass the target duration ([`TARGET_DURATION_S`]);
//!   its parts, concatenated, are the segment.
//! - A new SPS/PPS or AudioSpecificConfig starts a new initialization
//!   segment: the next segment is a discontinuity.
//!
//! The result is an immutable [`HlsSnapshot`] (shared `Bytes`), handed to
//! the shards that serve it. Sans-IO: arrival times come from the caller.

use super::fmp4::{self, AudioConfig, Run, Sample, VideoConfig, AUDIO_TRACK, VIDEO_TRACK};
use bytes::Bytes;
use rts_rtmp::flv::{parse_audio_tag, parse_video_tag, AudioTag, VideoTag};
use std::collections::VecDeque;
use std::sync::Arc;

/// Longest part (EXT-X-PART-INF PART-TARGET), ms.
pub const PART_TARGET_MS: u32 = 334;
/// EXT-X-TARGETDURATION: no segment is longer.
pub const TARGET_DURATION_S: u32 = 4;
/// A keyframe starts a new segment once the current one is this long.
pub const MIN_SEGMENT_MS: u32 = 1_000;
/// Complete segments kept (and listed).
pub const WINDOW: usize = 6;
/// A gap between frames longer than this is not a duration (a publisher
/// pause or timestamp jump): the frame gets [`FALLBACK_FRAME_90K`].
const MAX_FRAME_GAP_90K: u64 = 90_000;
const FALLBACK_FRAME_90K: u64 = 3_000;
const AAC_FRAME: u32 = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub bytes: Bytes,
    /// Video duration of the part, in 90 kHz units.
    pub duration_90k: u64,
    /// Starts with a keyframe.
    pub independent: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Segment {
    /// Media sequence number.
    pub msn: u64,
    pub parts: Vec<Part>,
    /// Unix ms when its first frame reached the server
    /// (EXT-X-PROGRAM-DATE-TIME).
    pub pdt_ms: u64,
    /// Version of the initialization segment its parts need.
    pub init_version: u32,
}

impl Segment {
    pub fn duration_90k(&self) -> u64 {
        self.parts.iter().map(|p| p.duration_90k).sum()
    }
}

/// What the shards serve: immutable, shared.
#[derive(Debug, Clone)]
pub struct HlsSnapshot {
    /// Initialization segments by version, of the segments in the window.
    pub inits: Vec<(u32, Bytes)>,
    /// Complete segments, oldest first.
    pub segments: Vec<Arc<Segment>>,
    /// The segment being made (its parts so far).
    pub current: Segment,
    /// Discontinuities that left the window (EXT-X-DISCONTINUITY-SEQUENCE).
    pub discontinuity_seq: u64,
}

impl HlsSnapshot {
    pub fn init(&self, version: u32) -> Option<&Bytes> {
        self.inits.iter().find(|(v, _)| *v == version).map(|(_, b)| b)
    }

    pub fn latest_init(&self) -> Option<&(u32, Bytes)> {
        self.inits.last()
    }

    /// A complete segment of the window.
    pub fn segment(&self, msn: u64) -> Option<&Segment> {
        self.segments.iter().find(|s| s.msn == msn).map(|s| &**s)
    }

    /// Part `part` of segment `msn` (complete or current).
    pub fn part(&self, msn: u64, part: usize) -> Option<&Part> {
        if msn == self.current.msn {
            return self.current.parts.get(part);
        }
        self.segment(msn)?.parts.get(part)
    }

    /// The next part to be made (the preload hint).
    pub fn next_part(&self) -> (u64, usize) {
        (self.current.msn, self.current.parts.len())
    }

    /// Whether a playlist asked for with `_HLS_msn=msn` (and `_HLS_part`)
    /// can be answered: the segment is complete, or has that part.
    pub fn has(&self, msn: u64, part: Option<usize>) -> bool {
        match part {
            _ if msn < self.current.msn => true,
            Some(p) if msn == self.current.msn => p < self.current.parts.len(),
            _ => false,
        }
    }
}

struct HeldFrame {
    data: Bytes,
    dts: u64,
    cts_offset: i32,
    keyframe: bool,
    arrived_ms: u64,
}

#[derive(Default)]
pub struct HlsMuxer {
    video: Option<VideoConfig>,
    audio: Option<AudioConfig>,
    /// Initialization segments in use, by version.
    inits: Vec<(u32, Bytes)>,
    /// The init version of the segment being made; 0 = not started (waiting
    /// for a keyframe with a known configuration).
    version: u32,
    held: Option<HeldFrame>,
    last_dts: Option<u64>,
    part_video: Vec<Sample>,
    part_video_base: u64,
    part_video_90k: u64,
    part_audio: Vec<Sample>,
    part_audio_base: u64,
    /// Decode time of the next AAC frame, in its sample rate.
    audio_next: Option<u64>,
    fragment_seq: u32,
    segments: VecDeque<Arc<Segment>>,
    current: Segment,
    discontinuity_seq: u64,
    changed: bool,
    /// The first init version to make (after a resumed timeline).
    first_version: u32,
}

/// Where a stream's numbering stood when its publish ended: a new publish
/// of it goes on from there after a discontinuity, so players that keep
/// reloading the playlist continue instead of seeing the numbers restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    pub next_msn: u64,
    pub next_version: u32,
    pub discontinuity_seq: u64,
    pub fragment_seq: u32,
}

impl HlsMuxer {
    /// A muxer whose timeline continues `r` (a new publish of the stream):
    /// its first segment is the next number, a discontinuity with a new
    /// initialization segment.
    pub fn resume(r: Resume) -> HlsMuxer {
        let mut m = HlsMuxer { fragment_seq: r.fragment_seq, discontinuity_seq: r.discontinuity_seq + 1, first_version: r.next_version, ..Default::default() };
        m.current.msn = r.next_msn;
        m
    }

    /// Where the numbering stands, for [`HlsMuxer::resume`].
    pub fn resume_point(&self) -> Resume {
        let made = self.inits.last().map_or(self.first_version.max(1), |(v, _)| v + 1);
        let next_msn = if self.current.parts.is_empty() { self.current.msn } else { self.current.msn + 1 };
        Resume { next_msn, next_version: made, discontinuity_seq: self.discontinuity_seq, fragment_seq: self.fragment_seq }
    }

    /// A video tag body (FLV) with its timestamp, arrived at `now_ms` (Unix).
    pub fn on_video(&mut self, ts_ms: u32, body: &Bytes, now_ms: u64) {
        match parse_video_tag(body) {
            Ok(VideoTag::AvcSequenceHeader(cfg)) => {
                // A size the SPS parser cannot read is left to the decoder (0x0).
                let (w, h) = cfg.sps.first().and_then(|s| rts_transcode::sps_dimensions(s)).unwrap_or((0, 0));
                let v = VideoConfig { avcc: body.slice(5.min(body.len())..), width: w.min(0xffff) as u16, height: h.min(0xffff) as u16 };
                if self.video.as_ref() != Some(&v) {
                    self.video = Some(v);
                    self.restart();
                }
            }
            Ok(VideoTag::AvcNalus { keyframe, composition_time_ms, data }) => self.on_frame(ts_ms, keyframe, composition_time_ms, data, now_ms),
            _ => {}
        }
    }

    /// An audio tag body (FLV). Only AAC is muxed.
    pub fn on_audio(&mut self, ts_ms: u32, body: &Bytes) {
        match parse_audio_tag(body) {
            Ok(AudioTag::AacSequenceHeader { sample_rate, channels, .. }) => {
                let a = AudioConfig { asc: body.slice(2.min(body.len())..), sample_rate: sample_rate.max(1), channels };
                if self.audio.as_ref() != Some(&a) {
                    self.audio = Some(a);
                    self.restart();
                }
            }
            Ok(AudioTag::AacRaw(frame)) => {
                let (Some(a), true) = (&self.audio, self.version > 0) else { return };
                let rate = u64::from(a.sample_rate);
                let from_ts = u64::from(ts_ms) * rate / 1000;
                // Decode times run on by whole frames; a jump of more than
                // 100 ms (a gap, a reset) takes the tag's timestamp again.
                let next = match self.audio_next {
                    Some(n) if n.abs_diff(from_ts) <= rate / 10 => n,
                    _ => from_ts,
                };
                if self.part_audio.is_empty() {
                    self.part_audio_base = next;
                }
                self.part_audio.push(Sample { data: frame, duration: AAC_FRAME, sync: true, cts_offset: 0 });
                self.audio_next = Some(next + u64::from(AAC_FRAME));
            }
            _ => {}
        }
    }

    /// A configuration changed: what is made so far ends; the next keyframe
    /// starts segments of a new initialization segment.
    fn restart(&mut self) {
        if self.version > 0 {
            self.close_part();
            self.close_segment();
            self.current.parts.clear();
        }
        self.held = None;
        self.part_audio.clear();
        self.audio_next = None;
        self.version = 0;
    }

    fn on_frame(&mut self, ts_ms: u32, keyframe: bool, cts_ms: i32, data: Bytes, now_ms: u64) {
        if self.version == 0 {
            let Some(v) = self.video.as_ref().filter(|_| keyframe) else { return };
            let version = self.inits.last().map_or(self.first_version.max(1), |(n, _)| n + 1);
            self.inits.push((version, fmp4::init_segment(v, self.audio.as_ref())));
            self.version = version;
            self.current.init_version = version;
            self.current.pdt_ms = now_ms;
        }
        let mut dts = u64::from(ts_ms) * 90;
        if let Some(last) = self.last_dts {
            dts = dts.max(last + 1);
        }
        self.last_dts = Some(dts);
        if let Some(held) = self.held.take() {
            let gap = dts - held.dts;
            let duration = if gap > MAX_FRAME_GAP_90K { FALLBACK_FRAME_90K } else { gap };
            self.add_video(held, duration);
        }
        // This frame begins the next part; a keyframe may begin a segment.
        let segment_90k = self.current.duration_90k() + self.part_video_90k;
        if keyframe && segment_90k >= u64::from(MIN_SEGMENT_MS) * 90 {
            self.close_part();
            self.close_segment();
        }
        self.held = Some(HeldFrame { data, dts, cts_offset: cts_ms.saturating_mul(90), keyframe, arrived_ms: now_ms });
    }

    fn add_video(&mut self, f: HeldFrame, duration: u64) {
        let part_limit = u64::from(PART_TARGET_MS) * 90;
        let segment_limit = u64::from(TARGET_DURATION_S) * 90_000;
        if !self.part_video.is_empty() && self.part_video_90k + duration > part_limit {
            self.close_part();
        }
        if self.part_video.is_empty() && self.current.duration_90k() + duration > segment_limit {
            // No keyframe in time: the segment ends anyway.
            self.close_segment();
        }
        if self.current.parts.is_empty() && self.part_video.is_empty() {
            self.current.pdt_ms = f.arrived_ms;
        }
        if self.part_video.is_empty() {
            self.part_video_base = f.dts;
        }
        self.part_video_90k += duration;
        self.part_video.push(Sample { data: f.data, duration: duration as u32, sync: f.keyframe, cts_offset: f.cts_offset });
    }

    fn close_part(&mut self) {
        if self.part_video.is_empty() {
            return;
        }
        self.fragment_seq += 1;
        let mut runs = vec![Run { track: VIDEO_TRACK, base: self.part_video_base, samples: &self.part_video }];
        let has_audio_track = self.inits.last().is_some_and(|_| self.audio.is_some());
        if has_audio_track && !self.part_audio.is_empty() {
            runs.push(Run { track: AUDIO_TRACK, base: self.part_audio_base, samples: &self.part_audio });
        }
        let bytes = fmp4::fragment(self.fragment_seq, &runs);
        let independent = self.part_video[0].sync;
        self.current.parts.push(Part { bytes, duration_90k: self.part_video_90k, independent });
        self.part_video.clear();
        self.part_audio.clear();
        self.part_video_90k = 0;
        self.changed = true;
    }

    fn close_segment(&mut self) {
        if self.current.parts.is_empty() {
            return;
        }
        let next = Segment { msn: self.current.msn + 1, parts: Vec::new(), pdt_ms: 0, init_version: self.version.max(self.current.init_version) };
        let done = std::mem::replace(&mut self.current, next);
        self.segments.push_back(Arc::new(done));
        while self.segments.len() > WINDOW {
            if let Some(old) = self.segments.pop_front() {
                if self.segments.front().is_some_and(|n| n.init_version != old.init_version) {
                    self.discontinuity_seq += 1;
                }
            }
        }
        // Inits no segment in the window (or the current one) needs.
        let oldest = self.segments.front().map_or(self.current.init_version, |s| s.init_version);
        self.inits.retain(|(v, _)| *v >= oldest);
        self.changed = true;
    }

    /// Whether a part or segment was made since the last call.
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// What to serve now; None before the first part.
    pub fn snapshot(&self) -> Option<HlsSnapshot> {
        if self.segments.is_empty() && self.current.parts.is_empty() {
            return None;
        }
        Some(HlsSnapshot {
            inits: self.inits.clone(),
            segments: self.segments.iter().cloned().collect(),
            current: self.current.clone(),
            discontinuity_seq: self.discontinuity_seq,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::fmp4::tests::boxes;
    use super::*;

    /// SPS of x264 640x360 baseline (see rts-transcode's sps test) and a PPS.
    const SPS: &str = "6742c01ed900a02ff970110000030001000003003c0f162e48";
    const PPS: &[u8] = &[0x68, 0xce, 0x38, 0x80];

    fn seq_header(sps_hex: &str) -> Bytes {
        let sps = hex::decode(sps_hex).unwrap();
        let mut b = vec![0x17, 0, 0, 0, 0, 1, sps[1], sps[2], sps[3], 0xff, 0xe1];
        b.extend_from_slice(&(sps.len() as u16).to_be_bytes());
        b.extend_from_slice(&sps);
        b.extend_from_slice(&[1, 0, PPS.len() as u8]);
        b.extend_from_slice(PPS);
        Bytes::from(b)
    }

    fn frame(key: bool, cts_ms: i32, len: usize) -> Bytes {
        let mut b = vec![if key { 0x17 } else { 0x27 }, 1];
        b.extend_from_slice(&cts_ms.to_be_bytes()[1..]);
        b.extend_from_slice(&((len - 4) as u32).to_be_bytes());
        b.extend(std::iter::repeat_n(if key { 0x65 } else { 0x41 }, len - 4));
        Bytes::from(b)
    }

    fn aac_header() -> Bytes {
        Bytes::from_static(&[0xaf, 0, 0x11, 0x90]) // AAC-LC 48 kHz stereo
    }

    /// `frames` video frames at 30 fps (a keyframe every `gop`) with AAC
    /// every ~21.3 ms, timestamps from `t0_ms`.
    fn feed(m: &mut HlsMuxer, t0_ms: u32, frames: u32, gop: u32) {
        let mut audio_ms = 0.0f64;
        for i in 0..frames {
            let ts = t0_ms + (f64::from(i) * 1000.0 / 30.0).round() as u32;
            while audio_ms <= f64::from(ts - t0_ms) {
                m.on_audio(t0_ms + audio_ms as u32, &Bytes::from_static(&[0xaf, 1, 0x21, 0x10, 0x04]));
                audio_ms += 1024.0 / 48.0;
            }
            m.on_video(ts, &frame(i % gop == 0, 0, 2_000), 1_000_000 + u64::from(ts));
        }
    }

    fn tfdt(part: &Part, traf: usize) -> u64 {
        let moof = boxes(&part.bytes)[0].1;
        let trafs: Vec<&[u8]> = boxes(moof).into_iter().filter(|(k, _)| k == b"traf").map(|(_, b)| b).collect();
        let t = boxes(trafs[traf]).into_iter().find(|(k, _)| k == b"tfdt").unwrap().1;
        u64::from_be_bytes(t[4..12].try_into().unwrap())
    }

    #[test]
    fn parts_and_segments_follow_the_targets_and_keyframes() {
        let mut m = HlsMuxer::default();
        m.on_video(0, &seq_header(SPS), 0);
        m.on_audio(0, &aac_header());
        // Audio before the first keyframe has nothing to go with.
        feed(&mut m, 0, 30 * 10 + 1, 60); // 10 s, keyframes every 2 s
        let s = m.snapshot().unwrap();
        assert_eq!(s.segments.iter().map(|s| s.msn).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
        assert_eq!(s.current.msn, 5);
        for seg in &s.segments {
            // 2 s GOPs: each segment one GOP, starting on its keyframe.
            assert!(seg.duration_90k().abs_diff(180_000) <= 90, "{}", seg.duration_90k());
            assert!(seg.parts[0].independent);
            assert!(seg.parts[1..].iter().all(|p| !p.independent));
            for (i, p) in seg.parts.iter().enumerate() {
                assert!(p.duration_90k <= u64::from(PART_TARGET_MS) * 90, "part {} of {}: {}", i, seg.msn, p.duration_90k);
                if i + 1 < seg.parts.len() {
                    assert!(p.duration_90k * 100 >= u64::from(PART_TARGET_MS) * 90 * 85, "parts but the last are >= 85 % of the target");
                }
            }
        }
        // Decode times run on from part to part (video, then audio).
        let parts: Vec<&Part> = s.segments.iter().flat_map(|s| s.parts.iter()).collect();
        for w in parts.windows(2) {
            assert_eq!(tfdt(w[1], 0), tfdt(w[0], 0) + w[0].duration_90k);
            let (a0, a1) = (tfdt(w[0], 1), tfdt(w[1], 1));
            let audio_in_part = (a1 - a0) * 90_000 / 48_000;
            // Within two AAC frames (the parts are cut at video frames).
            assert!(audio_in_part.abs_diff(w[0].duration_90k) < 2 * 1920, "audio follows video: {audio_in_part} vs {}", w[0].duration_90k);
        }
        assert_eq!(s.segments[1].pdt_ms, 1_002_000, "the arrival of the segment's first frame");
        assert!(s.has(4, None) && !s.has(5, None) && s.has(5, Some(0)) != s.current.parts.is_empty());
        assert_eq!(s.next_part(), (5, s.current.parts.len()));
        assert_eq!(s.inits.len(), 1);
        // Parts concatenated are the segment: moof/mdat pairs, nothing else.
        let joined: Vec<u8> = s.segments[0].parts.iter().flat_map(|p| p.bytes.iter().copied()).collect();
        let kinds: Vec<[u8; 4]> = boxes(&joined).iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds.len(), 2 * s.segments[0].parts.len());
        assert!(kinds.chunks(2).all(|c| c == [*b"moof", *b"mdat"]));
    }

    #[test]
    fn a_long_gop_is_cut_at_the_target_duration_and_the_window_slides() {
        let mut m = HlsMuxer::default();
        m.on_video(0, &seq_header(SPS), 0);
        feed(&mut m, 0, 30 * 40, 30 * 40); // one keyframe in 40 s
        let s = m.snapshot().unwrap();
        assert_eq!(s.segments.len(), WINDOW);
        assert!(s.segments.iter().all(|seg| seg.duration_90k() <= u64::from(TARGET_DURATION_S) * 90_000));
        assert!(s.segments.iter().all(|seg| !seg.parts[0].independent), "no keyframe since the first");
        assert!(s.segment(0).is_none(), "old segments leave the window");
    }

    #[test]
    fn a_new_publish_goes_on_from_the_last_numbers_after_a_discontinuity() {
        let mut m = HlsMuxer::default();
        m.on_video(0, &seq_header(SPS), 0);
        feed(&mut m, 0, 30 * 5 + 1, 60);
        let before = m.snapshot().unwrap();
        let last_msn = before.current.msn;
        let r = m.resume_point();
        assert_eq!(r.next_msn, last_msn + 1, "the unfinished segment keeps its number");
        let mut again = HlsMuxer::resume(r);
        again.on_video(0, &seq_header(SPS), 0);
        feed(&mut again, 0, 30 * 3, 60); // the new publisher's clock starts at 0 again
        let after = again.snapshot().unwrap();
        assert_eq!(after.segments[0].msn, last_msn + 1);
        assert_eq!(after.discontinuity_seq, before.discontinuity_seq + 1, "the window starts after a discontinuity");
        assert_eq!(after.inits[0].0, 2, "a new initialization segment version");
        let text = super::super::playlist::render(&after, "s", "");
        assert!(text.contains(&format!("#EXT-X-MEDIA-SEQUENCE:{}", last_msn + 1)), "{text}");
        assert!(text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1"), "{text}");
        assert!(text.contains("s/init2.mp4"), "{text}");
    }

    #[test]
    fn a_new_sps_makes_a_new_init_and_a_discontinuity() {
        let mut m = HlsMuxer::default();
        m.on_video(0, &seq_header(SPS), 0);
        feed(&mut m, 0, 30 * 5, 60);
        m.on_video(5_000, &seq_header("6764001facd9405005bb0110000003001000000303c0f1831960"), 0); // 1280x720
        feed(&mut m, 5_000, 30 * 5, 60);
        let s = m.snapshot().unwrap();
        let versions: Vec<u32> = s.segments.iter().map(|s| s.init_version).collect();
        assert!(versions.windows(2).all(|w| w[0] <= w[1]) && versions.contains(&1) && versions.contains(&2), "{versions:?}");
        assert_eq!(s.inits.iter().map(|(v, _)| *v).collect::<Vec<_>>(), vec![1, 2]);
        let second = s.segments.iter().find(|s| s.init_version == 2).unwrap();
        assert!(second.parts[0].independent, "the new configuration starts on a keyframe");
        assert!(m.take_changed());
        assert!(!m.take_changed());
    }
}
