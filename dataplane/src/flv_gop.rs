//! The start for a stream's FLV-tag viewers (HTTP-FLV and RTMP play,
//! `core/flv_viewers.rs`):
//! the publisher's own tags, untouched (AAC
//! stays AAC, B-frames stay: players of these protocols take them), from
//! the last video keyframe on, after the sequence headers a decoder needs
//! first. The tag bodies are the `Bytes` the RTMP parser hands over, kept
//! by reference: no copy per stream or per viewer. Bounded like the RTP GOP
//! cache: a GOP too long to keep is dropped whole and the cache waits for
//! the next keyframe. Sans-IO; `dataplane/tests/flv_start.rs` checks a
//! start with ffprobe.

use bytes::{Bytes, BytesMut};
use rts_rtmp::flv::file::{write_tag, MAX_TAG_BODY, TAG_AUDIO, TAG_OVERHEAD, TAG_VIDEO};
use rts_rtmp::media::encode_media_message;

/// Tags kept since the keyframe (a 10 s GOP at 60 fps plus its audio).
pub const MAX_GOP_TAGS: usize = 1_500;
/// Bytes kept since the keyframe.
pub const MAX_GOP_BYTES: usize = 16 << 20;

/// One FLV tag as published, with its encoding in an FLV byte stream:
/// made once per stream (and shared with the shards replicating it) and
/// written to every viewer as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlvTag {
    pub tag_type: u8,
    /// Stream time, ms.
    pub timestamp_ms: u32,
    pub body: Bytes,
    /// Tag header, body and PreviousTagSize (`flv::file::write_tag`).
    pub wire: Bytes,
    /// The tag as an RTMP message on message stream [`FlvTag::RTMP_STREAM_ID`]
    /// (`media::encode_media_message`); empty for types RTMP play does not
    /// carry here.
    pub rtmp: Bytes,
}

impl FlvTag {
    /// The message stream of a player's first `createStream` (ours number
    /// from 1): the one the shared RTMP encoding is made for.
    pub const RTMP_STREAM_ID: u32 = 1;

    /// A tag and its encoding. A body over the format's 16 MiB limit
    /// (RTMP's own limit is the same) gets an empty encoding: written as
    /// nothing.
    pub fn new(tag_type: u8, timestamp_ms: u32, body: Bytes) -> FlvTag {
        let mut wire = BytesMut::with_capacity(body.len().min(MAX_TAG_BODY) + TAG_OVERHEAD);
        if write_tag(&mut wire, tag_type, timestamp_ms, &body).is_err() {
            wire.clear();
        }
        let rtmp = encode_media_message(tag_type, timestamp_ms, FlvTag::RTMP_STREAM_ID, &body);
        FlvTag { tag_type, timestamp_ms, body, wire: wire.freeze(), rtmp }
    }

    /// Whether this is a video keyframe (a viewer may start or resume here).
    pub fn is_keyframe(&self) -> bool {
        role(self.tag_type, &self.body) == Role::Keyframe
    }
}

#[derive(Debug, Default, Clone)]
pub struct FlvGop {
    video_header: Option<FlvTag>,
    audio_header: Option<FlvTag>,
    /// Tags since the last video keyframe (keyframe first), in arrival
    /// order; empty while no keyframe came since the last reset.
    gop: Vec<FlvTag>,
    gop_bytes: usize,
}

/// What a tag is to the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Header,
    Keyframe,
    Frame,
    /// Nothing a player needs to start (end of sequence, video info
    /// frames, script data).
    Skip,
}

fn role(tag_type: u8, body: &[u8]) -> Role {
    match (tag_type, body) {
        // Enhanced RTMP: [1 | 3 frame type | 4 packet type], FourCC.
        (TAG_VIDEO, [first, ..]) if first & 0x80 != 0 => match (first >> 4 & 0x07, first & 0x0f) {
            (_, 0) => Role::Header,
            (5, _) | (_, 2) => Role::Skip, // command frame, sequence end
            (1, 1 | 3) => Role::Keyframe,
            (_, 1 | 3) => Role::Frame,
            _ => Role::Skip,
        },
        // Classic: [4 frame type | 4 codec id], AVCPacketType.
        (TAG_VIDEO, [first, packet_type, ..]) => match (first >> 4, packet_type) {
            (5, _) | (_, 2) => Role::Skip,
            (_, 0) => Role::Header,
            (1, _) => Role::Keyframe,
            _ => Role::Frame,
        },
        // AAC: [4 format 10 | rate, size, type], AACPacketType 0 = config.
        (TAG_AUDIO, [first, 0, ..]) if first >> 4 == 10 => Role::Header,
        (TAG_AUDIO, [_, ..]) => Role::Frame,
        _ => Role::Skip,
    }
}

impl FlvGop {
    /// A tag the publisher sent.
    pub fn on_tag(&mut self, tag: FlvTag) {
        match role(tag.tag_type, &tag.body) {
            Role::Header if tag.tag_type == TAG_VIDEO => self.video_header = Some(tag),
            Role::Header => self.audio_header = Some(tag),
            Role::Keyframe => {
                self.clear();
                self.push(tag);
            }
            Role::Frame if !self.gop.is_empty() => self.push(tag),
            Role::Frame | Role::Skip => {}
        }
    }

    fn push(&mut self, tag: FlvTag) {
        if self.gop.len() >= MAX_GOP_TAGS || self.gop_bytes + tag.body.len() > MAX_GOP_BYTES {
            self.clear(); // too long to replay usefully: wait for the next keyframe
            return;
        }
        self.gop_bytes += tag.body.len();
        self.gop.push(tag);
    }

    fn clear(&mut self) {
        self.gop.clear();
        self.gop_bytes = 0;
    }

    /// A new publisher: nothing of the old one's is valid.
    pub fn reset(&mut self) {
        *self = FlvGop::default();
    }

    /// The sequence headers (video, then audio) restamped to `timestamp_ms`:
    /// what a viewer resuming at a keyframe after skipped tags gets first,
    /// in case the publisher's configuration changed meanwhile.
    pub fn headers_at(&self, timestamp_ms: u32) -> Vec<FlvTag> {
        [&self.video_header, &self.audio_header].into_iter().flatten().map(|h| FlvTag::new(h.tag_type, timestamp_ms, h.body.clone())).collect()
    }

    /// Whether a viewer can start now (a keyframe is cached).
    pub fn ready(&self) -> bool {
        !self.gop.is_empty()
    }

    /// What a new viewer gets first: the sequence headers (video, then
    /// audio), stamped with the keyframe's time so its timeline starts
    /// there, then the cached tags. Empty until a keyframe came.
    pub fn start(&self) -> Vec<FlvTag> {
        let Some(first) = self.gop.first() else { return Vec::new() };
        let headers = [&self.video_header, &self.audio_header].into_iter().flatten().map(|h| FlvTag::new(h.tag_type, first.timestamp_ms, h.body.clone()));
        headers.chain(self.gop.iter().cloned()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(tag_type: u8, ts: u32, body: &'static [u8]) -> FlvTag {
        FlvTag::new(tag_type, ts, Bytes::from_static(body))
    }

    const AVC_HEADER: &[u8] = &[0x17, 0, 0, 0, 0, 1, 0x64];
    const AVC_KEY: &[u8] = &[0x17, 1, 0, 0, 0, 0xaa];
    const AVC_INTER: &[u8] = &[0x27, 1, 0, 0, 0x21, 0xbb];
    const AAC_HEADER: &[u8] = &[0xaf, 0, 0x12, 0x10];
    const AAC_RAW: &[u8] = &[0xaf, 1, 0x21];

    #[test]
    fn starts_with_the_headers_then_the_last_keyframe_on() {
        let mut g = FlvGop::default();
        g.on_tag(tag(TAG_VIDEO, 0, AVC_HEADER));
        g.on_tag(tag(TAG_AUDIO, 0, AAC_HEADER));
        assert!(!g.ready() && g.start().is_empty(), "no keyframe yet");
        // Frames before any keyframe are not kept.
        g.on_tag(tag(TAG_AUDIO, 10, AAC_RAW));
        g.on_tag(tag(TAG_VIDEO, 33, AVC_INTER));
        assert!(!g.ready());
        g.on_tag(tag(TAG_VIDEO, 1000, AVC_KEY));
        g.on_tag(tag(TAG_AUDIO, 990, AAC_RAW)); // interleaved a little out of time order: kept in order
        g.on_tag(tag(TAG_VIDEO, 1033, AVC_INTER));
        g.on_tag(tag(TAG_VIDEO, 1066, &[0x27, 2, 0, 0, 0])); // end of sequence: skipped
        g.on_tag(tag(18, 1070, b"onMetaData")); // script data: skipped
        assert_eq!(
            g.start(),
            vec![tag(TAG_VIDEO, 1000, AVC_HEADER), tag(TAG_AUDIO, 1000, AAC_HEADER), tag(TAG_VIDEO, 1000, AVC_KEY), tag(TAG_AUDIO, 990, AAC_RAW), tag(TAG_VIDEO, 1033, AVC_INTER)]
        );
        // The next keyframe starts the GOP over; the headers stay.
        g.on_tag(tag(TAG_VIDEO, 2000, AVC_KEY));
        assert_eq!(g.start().iter().map(|t| t.timestamp_ms).collect::<Vec<_>>(), vec![2000, 2000, 2000]);
        g.reset();
        assert!(!g.ready() && g.start().is_empty());
    }

    #[test]
    fn a_tag_is_encoded_once_as_the_file_format_has_it() {
        let t = tag(TAG_VIDEO, 0x0102_0304, AVC_KEY);
        // Type 9, size 6, timestamp 0x020304 + extension 0x01, stream id 0,
        // the body, PreviousTagSize 17 (written out by hand).
        let want: &[u8] = &[9, 0, 0, 6, 0x02, 0x03, 0x04, 0x01, 0, 0, 0, 0x17, 1, 0, 0, 0, 0xaa, 0, 0, 0, 17];
        assert_eq!(&t.wire[..], want);
        assert!(t.is_keyframe());
        assert!(!tag(TAG_VIDEO, 0, AVC_INTER).is_keyframe());
        let mut g = FlvGop::default();
        g.on_tag(tag(TAG_VIDEO, 0, AVC_HEADER));
        g.on_tag(tag(TAG_AUDIO, 0, AAC_HEADER));
        let h = g.headers_at(500);
        assert_eq!(h.iter().map(|t| (t.tag_type, t.timestamp_ms)).collect::<Vec<_>>(), vec![(TAG_VIDEO, 500), (TAG_AUDIO, 500)]);
        assert_eq!(&h[0].wire[4..7], &[0, 0x01, 0xf4], "restamped in the encoding too");
    }

    #[test]
    fn enhanced_rtmp_video_is_classified_too() {
        // [1 | frame type | packet type] + "avc1".
        assert_eq!(role(TAG_VIDEO, &[0x90, b'a', b'v', b'c', b'1']), Role::Header);
        assert_eq!(role(TAG_VIDEO, &[0x91, b'a', b'v', b'c', b'1']), Role::Keyframe);
        assert_eq!(role(TAG_VIDEO, &[0xa3, b'a', b'v', b'c', b'1']), Role::Frame);
        assert_eq!(role(TAG_VIDEO, &[0x92, b'a', b'v', b'c', b'1']), Role::Skip);
        assert_eq!(role(TAG_VIDEO, &[0xd1, b'a', b'v', b'c', b'1']), Role::Skip, "command frame");
        assert_eq!(role(TAG_VIDEO, &[]), Role::Skip);
        assert_eq!(role(TAG_AUDIO, &[0x2f, 0]), Role::Frame, "MP3 has no sequence header");
    }

    #[test]
    fn a_gop_over_its_bounds_is_dropped_until_the_next_keyframe() {
        let mut g = FlvGop::default();
        g.on_tag(tag(TAG_VIDEO, 0, AVC_KEY));
        for i in 1..MAX_GOP_TAGS as u32 {
            g.on_tag(tag(TAG_AUDIO, i, AAC_RAW));
        }
        assert!(g.ready());
        g.on_tag(tag(TAG_AUDIO, 99_999, AAC_RAW));
        assert!(!g.ready(), "one tag too many: dropped whole");
        g.on_tag(tag(TAG_VIDEO, 100_000, AVC_INTER));
        assert!(!g.ready());
        g.on_tag(tag(TAG_VIDEO, 100_033, AVC_KEY));
        assert_eq!(g.start().len(), 1);
    }
}
