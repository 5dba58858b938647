//! Video tags: classic (`codec_id` 7, AVC) and Enhanced-RTMP (`IsExHeader`, FourCC `avc1`).

use bytes::Bytes;

use crate::error::FlvError;

/// FLV codec id of AVC/H.264.
pub const CODEC_AVC: u8 = 7;
/// Codec id reported for Enhanced-RTMP HEVC (`hvc1`), matching the legacy FLV extension.
pub const CODEC_HEVC: u8 = 12;
/// Codec id reported for Enhanced-RTMP AV1 (`av01`), matching the legacy FLV extension.
pub const CODEC_AV1: u8 = 13;

const FRAME_KEY: u8 = 1;
const FRAME_COMMAND: u8 = 5;

/// A parsed video tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoTag {
    /// AVCDecoderConfigurationRecord: SPS/PPS and the NALU length size for what follows.
    AvcSequenceHeader(AvcConfig),
    /// One access unit.
    AvcNalus {
        /// Frame type 1 (IDR / key frame).
        keyframe: bool,
        /// PTS - DTS in ms (signed 24-bit; negative with some B-frame encoders).
        composition_time_ms: i32,
        /// AVCC: NALUs each prefixed by a `nal_length_size`-byte big-endian length
        /// (split with [`AvccNalus`]).
        data: Bytes,
    },
    /// End of sequence.
    AvcEndOfSequence,
    /// Anything that is not an AVC frame or configuration: other codecs, video command
    /// frames, Enhanced-RTMP metadata/multitrack packets. Skip it. For Enhanced-RTMP tags
    /// `codec_id` is [`CODEC_HEVC`] / [`CODEC_AV1`] / [`CODEC_AVC`], or 0 for other FourCCs.
    Unsupported {
        /// FLV codec id.
        codec_id: u8,
    },
}

/// AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.2.4.1), trailing high-profile
/// extension fields ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcConfig {
    /// AVCProfileIndication (66 baseline, 77 main, 100 high).
    pub profile: u8,
    /// profile_compatibility (constraint flags).
    pub compat: u8,
    /// AVCLevelIndication.
    pub level: u8,
    /// Bytes of each NALU length prefix in the frames that follow: 1, 2 or 4.
    pub nal_length_size: usize,
    /// Sequence parameter sets, each a NALU without a length prefix.
    pub sps: Vec<Vec<u8>>,
    /// Picture parameter sets, each a NALU without a length prefix.
    pub pps: Vec<Vec<u8>>,
}

/// Parses a video tag body (the RTMP video message payload).
pub fn parse_video_tag(data: &Bytes) -> Result<VideoTag, FlvError> {
    let &first = data
        .first()
        .ok_or(FlvError::Truncated("video tag header"))?;
    if first & 0x80 != 0 {
        return parse_ex_header(first, data);
    }
    let frame_type = first >> 4;
    let codec_id = first & 0x0f;
    if codec_id != CODEC_AVC || frame_type == FRAME_COMMAND {
        return Ok(VideoTag::Unsupported { codec_id });
    }
    if data.len() < 5 {
        return Err(FlvError::Truncated("AVC packet header"));
    }
    let composition_time_ms = si24([data[2], data[3], data[4]]);
    match data[1] {
        0 => Ok(VideoTag::AvcSequenceHeader(AvcConfig::parse(&data[5..])?)),
        1 => Ok(VideoTag::AvcNalus {
            keyframe: frame_type == FRAME_KEY,
            composition_time_ms,
            data: data.slice(5..),
        }),
        2 => Ok(VideoTag::AvcEndOfSequence),
        t => Err(FlvError::AvcPacketType(t)),
    }
}

/// Enhanced RTMP (veovera enhanced-rtmp v1): `[1 IsExHeader | 3 FrameType | 4 PacketType]`,
/// FourCC, then a body that depends on the packet type.
fn parse_ex_header(first: u8, data: &Bytes) -> Result<VideoTag, FlvError> {
    let frame_type = (first >> 4) & 0x07;
    let packet_type = first & 0x0f;
    if data.len() < 5 {
        return Err(FlvError::Truncated("enhanced video FourCC"));
    }
    let fourcc = [data[1], data[2], data[3], data[4]];
    let codec_id = match &fourcc {
        b"avc1" => CODEC_AVC,
        b"hvc1" => {
            return Ok(VideoTag::Unsupported {
                codec_id: CODEC_HEVC,
            })
        }
        b"av01" => {
            return Ok(VideoTag::Unsupported {
                codec_id: CODEC_AV1,
            })
        }
        _ => return Ok(VideoTag::Unsupported { codec_id: 0 }),
    };
    if frame_type == FRAME_COMMAND {
        return Ok(VideoTag::Unsupported { codec_id });
    }
    let keyframe = frame_type == FRAME_KEY;
    match packet_type {
        // SequenceStart
        0 => Ok(VideoTag::AvcSequenceHeader(AvcConfig::parse(&data[5..])?)),
        // CodedFrames: SI24 composition time, then AVCC
        1 => {
            if data.len() < 8 {
                return Err(FlvError::Truncated("enhanced composition time"));
            }
            Ok(VideoTag::AvcNalus {
                keyframe,
                composition_time_ms: si24([data[5], data[6], data[7]]),
                data: data.slice(8..),
            })
        }
        // SequenceEnd
        2 => Ok(VideoTag::AvcEndOfSequence),
        // CodedFramesX: composition time implied 0
        3 => Ok(VideoTag::AvcNalus {
            keyframe,
            composition_time_ms: 0,
            data: data.slice(5..),
        }),
        // Metadata, MPEG2TSSequenceStart, Multitrack, reserved.
        _ => Ok(VideoTag::Unsupported { codec_id }),
    }
}

fn si24(b: [u8; 3]) -> i32 {
    // Place the 24 bits at the top of an i32, then arithmetic-shift to sign-extend.
    i32::from_be_bytes([b[0], b[1], b[2], 0]) >> 8
}

struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn u8(&mut self, what: &'static str) -> Result<u8, FlvError> {
        let (&b, rest) = self.data.split_first().ok_or(FlvError::Truncated(what))?;
        self.data = rest;
        Ok(b)
    }
    fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], FlvError> {
        if self.data.len() < n {
            return Err(FlvError::Truncated(what));
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Ok(head)
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, FlvError> {
        let b = self.bytes(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    /// `count` parameter sets, each a u16 length then the NALU.
    fn parameter_sets(&mut self, count: u8, what: &'static str) -> Result<Vec<Vec<u8>>, FlvError> {
        let mut sets = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let len = usize::from(self.u16(what)?);
            if len == 0 {
                return Err(FlvError::EmptyParameterSet);
            }
            sets.push(self.bytes(len, what)?.to_vec());
        }
        Ok(sets)
    }
}

impl AvcConfig {
    /// Parses an AVCDecoderConfigurationRecord.
    pub fn parse(record: &[u8]) -> Result<Self, FlvError> {
        let mut r = Reader { data: record };
        let version = r.u8("configurationVersion")?;
        if version != 1 {
            return Err(FlvError::AvcConfigVersion(version));
        }
        let profile = r.u8("AVCProfileIndication")?;
        let compat = r.u8("profile_compatibility")?;
        let level = r.u8("AVCLevelIndication")?;
        let nal_length_size = usize::from(r.u8("lengthSizeMinusOne")? & 0x03) + 1;
        if nal_length_size == 3 {
            return Err(FlvError::NalLengthSize(nal_length_size));
        }
        let num_sps = r.u8("numOfSequenceParameterSets")? & 0x1f;
        let sps = r.parameter_sets(num_sps, "sequenceParameterSet")?;
        let num_pps = r.u8("numOfPictureParameterSets")?;
        let pps = r.parameter_sets(num_pps, "pictureParameterSet")?;
        Ok(Self {
            profile,
            compat,
            level,
            nal_length_size,
            sps,
            pps,
        })
    }
}

/// Iterator over the NALUs of an AVCC buffer; yields an error (then stops) when a length
/// prefix runs past the end, so a corrupt frame cannot make the packetizer over-read.
#[derive(Debug, Clone)]
pub struct AvccNalus<'a> {
    data: &'a [u8],
    nal_length_size: usize,
}

impl<'a> AvccNalus<'a> {
    /// `nal_length_size` comes from [`AvcConfig::nal_length_size`] (1, 2 or 4).
    pub fn new(data: &'a [u8], nal_length_size: usize) -> Self {
        Self {
            data,
            nal_length_size,
        }
    }
}

impl<'a> Iterator for AvccNalus<'a> {
    type Item = Result<&'a [u8], FlvError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.data.is_empty() {
            return None;
        }
        let n = self.nal_length_size;
        if n == 0 || n > 4 || self.data.len() < n {
            let remaining = self.data.len();
            self.data = &[];
            return Some(Err(FlvError::NaluOverrun { len: n, remaining }));
        }
        let len = self.data[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        let rest = &self.data[n..];
        if rest.len() < len {
            self.data = &[];
            return Some(Err(FlvError::NaluOverrun {
                len,
                remaining: rest.len(),
            }));
        }
        let (nalu, tail) = rest.split_at(len);
        self.data = tail;
        Some(Ok(nalu))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What ffmpeg + libx264 `-profile:v baseline`, 320x240, writes as the first video tag.
    const X264_BASELINE_320X240: &[u8] = &[
        0x17, 0x00, 0x00, 0x00, 0x00, // keyframe|AVC, seq header, cts 0
        0x01, 0x42, 0xc0, 0x0d, 0xff,
        0xe1, // v1, baseline, constraint 0xc0, level 1.3, 4-byte NALU lengths, 1 SPS
        0x00, 0x18, 0x67, 0x42, 0xc0, 0x0d, 0xd9, 0x01, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03,
        0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x42, 0xa4, 0x80, // SPS (24 bytes)
        0x01, 0x00, 0x05, 0x68, 0xcb, 0x83, 0xcb, 0x20, // 1 PPS (5 bytes)
    ];

    fn b(v: &[u8]) -> Bytes {
        Bytes::copy_from_slice(v)
    }

    #[test]
    fn x264_sequence_header() {
        let tag = parse_video_tag(&b(X264_BASELINE_320X240)).expect("parse");
        let VideoTag::AvcSequenceHeader(cfg) = tag else {
            panic!("not a sequence header: {tag:?}");
        };
        assert_eq!((cfg.profile, cfg.compat, cfg.level), (66, 0xc0, 13));
        assert_eq!(cfg.nal_length_size, 4);
        assert_eq!(cfg.sps.len(), 1);
        assert_eq!(cfg.sps[0].len(), 24);
        assert_eq!(cfg.sps[0][0] & 0x1f, 7, "SPS NAL type");
        assert_eq!(cfg.pps, vec![vec![0x68, 0xcb, 0x83, 0xcb, 0x20]]);
    }

    #[test]
    fn every_truncation_of_the_sequence_header_is_an_error() {
        for n in 0..X264_BASELINE_320X240.len() {
            assert!(
                parse_video_tag(&b(&X264_BASELINE_320X240[..n])).is_err(),
                "prefix of {n} bytes parsed"
            );
        }
    }

    #[test]
    fn nalus_with_positive_and_negative_composition_time() {
        let body = [
            0x00, 0x00, 0x00, 0x02, 0x65, 0x88, 0x00, 0x00, 0x00, 0x01, 0x06,
        ];
        let mut tag = vec![0x17, 0x01, 0x00, 0x00, 0x50];
        tag.extend_from_slice(&body);
        let parsed = parse_video_tag(&b(&tag)).expect("parse");
        assert_eq!(
            parsed,
            VideoTag::AvcNalus {
                keyframe: true,
                composition_time_ms: 80,
                data: b(&body),
            }
        );

        let tag = [0x27, 0x01, 0xff, 0xff, 0xd8, 0x00, 0x00, 0x00, 0x01, 0x41];
        let VideoTag::AvcNalus {
            keyframe,
            composition_time_ms,
            data,
        } = parse_video_tag(&b(&tag)).expect("parse")
        else {
            panic!("not NALUs");
        };
        assert!(!keyframe);
        assert_eq!(composition_time_ms, -40);
        let nalus: Vec<_> = AvccNalus::new(&data, 4).collect();
        assert_eq!(nalus, vec![Ok(&[0x41][..])]);
    }

    #[test]
    fn si24_extremes() {
        assert_eq!(si24([0x7f, 0xff, 0xff]), 8_388_607);
        assert_eq!(si24([0x80, 0x00, 0x00]), -8_388_608);
        assert_eq!(si24([0xff, 0xff, 0xff]), -1);
    }

    #[test]
    fn truncated_and_invalid_tags() {
        assert_eq!(
            parse_video_tag(&Bytes::new()),
            Err(FlvError::Truncated("video tag header"))
        );
        assert!(parse_video_tag(&b(&[0x17])).is_err());
        assert!(parse_video_tag(&b(&[0x17, 0x01, 0x00, 0x00])).is_err());
        assert_eq!(
            parse_video_tag(&b(&[0x17, 0x03, 0, 0, 0])),
            Err(FlvError::AvcPacketType(3))
        );
        // configurationVersion 0
        assert_eq!(
            parse_video_tag(&b(&[
                0x17, 0x00, 0, 0, 0, 0x00, 0x42, 0, 0x1e, 0xff, 0xe0, 0x00
            ])),
            Err(FlvError::AvcConfigVersion(0))
        );
        // lengthSizeMinusOne == 2
        assert_eq!(
            parse_video_tag(&b(&[
                0x17, 0x00, 0, 0, 0, 0x01, 0x42, 0, 0x1e, 0xfe, 0xe0, 0x00
            ])),
            Err(FlvError::NalLengthSize(3))
        );
        assert_eq!(
            parse_video_tag(&b(&[0x17, 0x02, 0, 0, 0])),
            Ok(VideoTag::AvcEndOfSequence)
        );
    }

    #[test]
    fn other_codecs_are_unsupported_not_errors() {
        // Sorenson H.263 and a classic HEVC extension tag.
        assert_eq!(
            parse_video_tag(&b(&[0x22, 0x00])),
            Ok(VideoTag::Unsupported { codec_id: 2 })
        );
        assert_eq!(
            parse_video_tag(&b(&[0x1c, 0x00, 0, 0, 0])),
            Ok(VideoTag::Unsupported { codec_id: 12 })
        );
        // Video command frame (frame type 5) on AVC carries no AVC packet.
        assert_eq!(
            parse_video_tag(&b(&[0x57, 0x00])),
            Ok(VideoTag::Unsupported { codec_id: 7 })
        );
    }

    #[test]
    fn enhanced_rtmp_avc1() {
        // SequenceStart with the x264 record.
        let mut tag = vec![0x90, b'a', b'v', b'c', b'1'];
        tag.extend_from_slice(&X264_BASELINE_320X240[5..]);
        let plain = parse_video_tag(&b(X264_BASELINE_320X240)).expect("classic");
        assert_eq!(parse_video_tag(&b(&tag)).expect("enhanced"), plain);

        // CodedFrames (keyframe) with composition time -2.
        let tag = [
            0x91, b'a', b'v', b'c', b'1', 0xff, 0xff, 0xfe, 0, 0, 0, 1, 0x65,
        ];
        assert_eq!(
            parse_video_tag(&b(&tag)),
            Ok(VideoTag::AvcNalus {
                keyframe: true,
                composition_time_ms: -2,
                data: b(&[0, 0, 0, 1, 0x65]),
            })
        );
        // CodedFramesX (inter frame): no composition time field.
        let tag = [0xa3, b'a', b'v', b'c', b'1', 0, 0, 0, 1, 0x41];
        assert_eq!(
            parse_video_tag(&b(&tag)),
            Ok(VideoTag::AvcNalus {
                keyframe: false,
                composition_time_ms: 0,
                data: b(&[0, 0, 0, 1, 0x41]),
            })
        );
        assert_eq!(
            parse_video_tag(&b(&[0x92, b'a', b'v', b'c', b'1'])),
            Ok(VideoTag::AvcEndOfSequence)
        );
        assert_eq!(
            parse_video_tag(&b(&[0x90, b'h', b'v', b'c', b'1', 1])),
            Ok(VideoTag::Unsupported {
                codec_id: CODEC_HEVC
            })
        );
        assert!(parse_video_tag(&b(&[0x91, b'a', b'v', b'c', b'1', 0, 0])).is_err());
        assert!(parse_video_tag(&b(&[0x90, b'a', b'v'])).is_err());
    }

    #[test]
    fn avcc_split_detects_overrun() {
        let data = [0, 1, 0xaa, 0, 2, 0xbb, 0xcc, 0, 9, 0xdd];
        let got: Vec<_> = AvccNalus::new(&data, 2).collect();
        assert_eq!(
            got,
            vec![
                Ok(&[0xaa][..]),
                Ok(&[0xbb, 0xcc][..]),
                Err(FlvError::NaluOverrun {
                    len: 9,
                    remaining: 1
                })
            ]
        );
        assert_eq!(AvccNalus::new(&[0, 0], 4).count(), 1);
        assert!(AvccNalus::new(&[0, 0], 4).all(|r| r.is_err()));
        assert_eq!(AvccNalus::new(&[], 4).count(), 0);
    }
}
