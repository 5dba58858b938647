//! AVC in FLV: the AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.2.4.1) and the FLV
//! video tag bodies RTMP carries (E.4.3 of the FLV spec: frame type/codec byte,
//! AVCPacketType, composition time, then data).

use crate::PublishError;

/// FLV codec id for AVC.
const CODEC_AVC: u8 = 7;

/// Builds an AVCDecoderConfigurationRecord with one SPS and one PPS and 4-byte NALU
/// lengths. Profile, compatibility and level are copied from the SPS (bytes 1–3).
pub fn avc_decoder_config(sps: &[u8], pps: &[u8]) -> Result<Vec<u8>, PublishError> {
    if sps.len() < 4 {
        return Err(PublishError::Bitstream(format!(
            "SPS too short ({} bytes)",
            sps.len()
        )));
    }
    let len16 = |n: &[u8]| {
        u16::try_from(n.len())
            .map_err(|_| PublishError::Bitstream("parameter set over 64 KiB".into()))
    };
    let (sps_len, pps_len) = (len16(sps)?, len16(pps)?);
    let mut out = Vec::with_capacity(11 + sps.len() + pps.len());
    out.extend_from_slice(&[1, sps[1], sps[2], sps[3]]); // version, profile, compat, level
    out.push(0xfc | 3); // 6 reserved bits, lengthSizeMinusOne = 3
    out.push(0xe0 | 1); // 3 reserved bits, numOfSequenceParameterSets = 1
    out.extend_from_slice(&sps_len.to_be_bytes());
    out.extend_from_slice(sps);
    out.push(1); // numOfPictureParameterSets
    out.extend_from_slice(&pps_len.to_be_bytes());
    out.extend_from_slice(pps);
    Ok(out)
}

/// FLV video tag body for a sequence header (AVCPacketType 0).
pub fn flv_sequence_header(config: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + config.len());
    out.extend_from_slice(&[0x10 | CODEC_AVC, 0, 0, 0, 0]);
    out.extend_from_slice(config);
    out
}

/// Starts an FLV video tag body for NAL units (AVCPacketType 1, composition time 0: the
/// baseline profile has no B-frames); append NALUs with [`push_avcc_nal`].
pub fn flv_nalu_header(keyframe: bool, out: &mut Vec<u8>) {
    let frame_type = if keyframe { 0x10 } else { 0x20 };
    out.extend_from_slice(&[frame_type | CODEC_AVC, 1, 0, 0, 0]);
}

/// Appends one NAL unit with a 4-byte big-endian length prefix.
pub fn push_avcc_nal(nal: &[u8], out: &mut Vec<u8>) {
    // A NAL unit from a pipe read cannot reach 4 GiB; saturate rather than wrap if it did.
    let len = u32::try_from(nal.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(nal);
}
