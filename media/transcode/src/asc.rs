//! MPEG-4 AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1), the FLV AACPacketType=0 payload.

use crate::Error;

/// What the transcoder needs from the AudioSpecificConfig.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioConfig {
    /// Sampling rate in Hz (from the index table or the explicit 24-bit field).
    pub sample_rate: u32,
    /// channelConfiguration (1 = mono, 2 = stereo, ...; 0 = defined in-band, unsupported).
    pub channels: u8,
    /// audioObjectType (2 = AAC-LC, 5 = SBR, 29 = PS, ...).
    pub object_type: u8,
}

const SAMPLE_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// MSB-first bit reader over a short slice; running out of bits is an error, not a panic.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn read(&mut self, n: u32) -> Result<u32, Error> {
        let mut v = 0u32;
        for _ in 0..n {
            let byte = *self
                .data
                .get(self.pos / 8)
                .ok_or(Error::BadAudioConfig("truncated"))?;
            let bit = (byte >> (7 - (self.pos % 8))) & 1;
            v = (v << 1) | u32::from(bit);
            self.pos += 1;
        }
        Ok(v)
    }
}

/// Parses the fields of an AudioSpecificConfig that matter for decoding.
///
/// Only the header (object type, rate, channel configuration) is read; the
/// GASpecificConfig that follows is left to the decoder.
pub fn parse_audio_specific_config(asc: &[u8]) -> Result<AudioConfig, Error> {
    let mut b = Bits { data: asc, pos: 0 };
    let mut object_type = b.read(5)?;
    if object_type == 31 {
        object_type = 32 + b.read(6)?;
    }
    let sf_index = b.read(4)?;
    let sample_rate = if sf_index == 15 {
        b.read(24)?
    } else {
        *SAMPLE_RATES
            .get(sf_index as usize)
            .ok_or(Error::BadAudioConfig("reserved sampling frequency index"))?
    };
    let channels = b.read(4)? as u8;
    if object_type == 0 {
        return Err(Error::BadAudioConfig("object type 0 (null)"));
    }
    if sample_rate == 0 {
        return Err(Error::BadAudioConfig("sample rate 0"));
    }
    Ok(AudioConfig {
        sample_rate,
        channels,
        object_type: u8::try_from(object_type).unwrap_or(u8::MAX),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lc_44100_stereo() {
        // 0x12 0x10: object type 2, index 4 (44100), channel config 2.
        let c = parse_audio_specific_config(&[0x12, 0x10]).unwrap();
        assert_eq!(
            c,
            AudioConfig {
                sample_rate: 44100,
                channels: 2,
                object_type: 2
            }
        );
    }

    #[test]
    fn lc_48000_mono() {
        // 0x11 0x88: object type 2, index 3 (48000), channel config 1.
        let c = parse_audio_specific_config(&[0x11, 0x88]).unwrap();
        assert_eq!(
            c,
            AudioConfig {
                sample_rate: 48000,
                channels: 1,
                object_type: 2
            }
        );
    }

    #[test]
    fn explicit_rate_and_escape_object_type() {
        // object type escape 31 + 6 bits (value 10 -> 42), index 15 + 24-bit 48000, ch 2.
        let mut bits: u128 = 0;
        let mut n = 0;
        for (v, w) in [(31u128, 5), (10, 6), (15, 4), (48000, 24), (2, 4)] {
            bits = (bits << w) | v;
            n += w;
        }
        let pad = (8 - n % 8) % 8;
        bits <<= pad;
        let len = (n + pad) / 8;
        let bytes: Vec<u8> = (0..len).rev().map(|i| (bits >> (8 * i)) as u8).collect();
        let c = parse_audio_specific_config(&bytes).unwrap();
        assert_eq!(
            c,
            AudioConfig {
                sample_rate: 48000,
                channels: 2,
                object_type: 42
            }
        );
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse_audio_specific_config(&[]).is_err());
        assert!(parse_audio_specific_config(&[0x12]).is_err());
        assert!(parse_audio_specific_config(&[0x00, 0x00]).is_err());
        assert!(parse_audio_specific_config(&[0x16, 0x80]).is_err()); // index 13: reserved
    }
}
