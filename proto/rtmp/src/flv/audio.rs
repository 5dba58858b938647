//! Audio tags: AAC (sound format 10) parsed; everything else passed through.

use bytes::Bytes;

use crate::error::FlvError;

/// FLV SoundFormat of AAC.
pub const SOUND_FORMAT_AAC: u8 = 10;

/// ISO/IEC 14496-3 samplingFrequencyIndex table (indices 13, 14 reserved; 15 = explicit).
const AAC_SAMPLE_RATES: [u32; 13] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
    7_350,
];

/// A parsed audio tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioTag {
    /// AudioSpecificConfig: what the AAC -> Opus transcoder needs to open a decoder.
    AacSequenceHeader {
        /// audioObjectType (2 = AAC-LC, 5 = SBR, 29 = PS), escape (31) resolved.
        object_type: u8,
        /// Hz, from the index table or the explicit 24-bit field.
        sample_rate: u32,
        /// channelConfiguration (0 = defined in the bitstream's PCE).
        channels: u8,
    },
    /// One raw AAC frame (no ADTS header).
    AacRaw(Bytes),
    /// Any other sound format (MP3, G.711, Enhanced-RTMP ex-header, ...), body after the
    /// first byte.
    Other {
        /// FLV SoundFormat (upper 4 bits of the first byte).
        sound_format: u8,
        /// Tag body after the first byte.
        data: Bytes,
    },
}

/// Parses an audio tag body (the RTMP audio message payload).
pub fn parse_audio_tag(data: &Bytes) -> Result<AudioTag, FlvError> {
    let &first = data
        .first()
        .ok_or(FlvError::Truncated("audio tag header"))?;
    let sound_format = first >> 4;
    if sound_format != SOUND_FORMAT_AAC {
        return Ok(AudioTag::Other {
            sound_format,
            data: data.slice(1..),
        });
    }
    match data.get(1) {
        None => Err(FlvError::Truncated("AACPacketType")),
        Some(0) => parse_audio_specific_config(&data[2..]),
        Some(1) => Ok(AudioTag::AacRaw(data.slice(2..))),
        Some(&t) => Err(FlvError::AacPacketType(t)),
    }
}

/// MSB-first bit reader over a byte slice.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn read(&mut self, n: usize) -> Result<u32, FlvError> {
        let mut v = 0u32;
        for _ in 0..n {
            let byte = self
                .data
                .get(self.pos / 8)
                .ok_or(FlvError::Truncated("AudioSpecificConfig"))?;
            let bit = (byte >> (7 - self.pos % 8)) & 1;
            v = (v << 1) | u32::from(bit);
            self.pos += 1;
        }
        Ok(v)
    }
}

/// AudioSpecificConfig header fields (ISO/IEC 14496-3 1.6.2.1); the rest (GASpecificConfig,
/// SBR/PS sync extensions) is not needed to pick a decoder.
fn parse_audio_specific_config(asc: &[u8]) -> Result<AudioTag, FlvError> {
    let mut r = Bits { data: asc, pos: 0 };
    let mut object_type = r.read(5)?;
    if object_type == 31 {
        object_type = 32 + r.read(6)?;
    }
    let index = r.read(4)?;
    let sample_rate = match index {
        15 => r.read(24)?,
        i => *AAC_SAMPLE_RATES
            .get(i as usize)
            .ok_or(FlvError::AacSampleRateIndex(i as u8))?,
    };
    let channels = r.read(4)?;
    Ok(AudioTag::AacSequenceHeader {
        // Both fit: object_type <= 32 + 63, channels <= 15.
        object_type: object_type as u8,
        sample_rate,
        channels: channels as u8,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(v: &[u8]) -> Bytes {
        Bytes::copy_from_slice(v)
    }

    #[test]
    fn ffmpeg_aac_lc_44100_stereo() {
        // First audio tag ffmpeg's native AAC encoder writes to FLV (with its SBR sync
        // extension 0x56e5 0x00 trailing).
        let tag = b(&[0xaf, 0x00, 0x12, 0x10, 0x56, 0xe5, 0x00]);
        assert_eq!(
            parse_audio_tag(&tag),
            Ok(AudioTag::AacSequenceHeader {
                object_type: 2,
                sample_rate: 44_100,
                channels: 2
            })
        );
    }

    #[test]
    fn escape_object_type_and_explicit_rate() {
        // object type 31 -> escape 6 bits = 0 -> 32; index 15 -> explicit 24-bit 48000; 1 ch.
        let bits = format!("{:05b}{:06b}{:04b}{:024b}{:04b}", 31, 0, 15, 48_000, 1);
        let mut bytes = vec![0xaf, 0x00];
        let mut padded = bits;
        while padded.len() % 8 != 0 {
            padded.push('0');
        }
        for chunk in padded.as_bytes().chunks(8) {
            let s = std::str::from_utf8(chunk).expect("ascii");
            bytes.push(u8::from_str_radix(s, 2).expect("binary"));
        }
        assert_eq!(
            parse_audio_tag(&b(&bytes)),
            Ok(AudioTag::AacSequenceHeader {
                object_type: 32,
                sample_rate: 48_000,
                channels: 1
            })
        );
    }

    #[test]
    fn raw_and_other_formats() {
        assert_eq!(
            parse_audio_tag(&b(&[0xaf, 0x01, 0x21, 0x4c])),
            Ok(AudioTag::AacRaw(b(&[0x21, 0x4c])))
        );
        // MP3 (format 2)
        assert_eq!(
            parse_audio_tag(&b(&[0x2f, 0xff, 0xfb])),
            Ok(AudioTag::Other {
                sound_format: 2,
                data: b(&[0xff, 0xfb])
            })
        );
    }

    #[test]
    fn truncated_and_invalid() {
        assert!(parse_audio_tag(&Bytes::new()).is_err());
        assert_eq!(
            parse_audio_tag(&b(&[0xaf])),
            Err(FlvError::Truncated("AACPacketType"))
        );
        assert!(parse_audio_tag(&b(&[0xaf, 0x00])).is_err());
        assert!(parse_audio_tag(&b(&[0xaf, 0x00, 0x12])).is_err());
        assert_eq!(
            parse_audio_tag(&b(&[0xaf, 0x02])),
            Err(FlvError::AacPacketType(2))
        );
        // index 13 is reserved: 00010 1101 ...
        assert_eq!(
            parse_audio_tag(&b(&[0xaf, 0x00, 0x16, 0x90])),
            Err(FlvError::AacSampleRateIndex(13))
        );
    }
}
