//! H.264 over RTP (RFC 6184), packetization-mode 1: single NAL unit
//! packets, STAP-A aggregation and FU-A fragmentation.

mod avcc;
mod depacketizer;
mod packetizer;

pub use avcc::{avcc_nalus, AvccIter};
pub use depacketizer::{Frame, H264Depacketizer};
pub use packetizer::{H264Packetizer, ParameterSets};

/// NAL unit type of an IDR slice (the start of a keyframe).
pub const NAL_IDR: u8 = 5;
/// NAL unit type of SEI.
pub const NAL_SEI: u8 = 6;
/// NAL unit type of a sequence parameter set.
pub const NAL_SPS: u8 = 7;
/// NAL unit type of a picture parameter set.
pub const NAL_PPS: u8 = 8;
/// NAL unit type of an access unit delimiter (dropped by the packetizer).
pub const NAL_AUD: u8 = 9;
/// NAL unit type of filler data (dropped by the packetizer).
pub const NAL_FILLER: u8 = 12;
/// RTP payload type of a STAP-A aggregation packet.
pub const NAL_STAP_A: u8 = 24;
/// RTP payload type of an FU-A fragment.
pub const NAL_FU_A: u8 = 28;

/// The `nal_unit_type` of a NAL unit, `None` for an empty slice.
pub fn nal_type(nalu: &[u8]) -> Option<u8> {
    nalu.first().map(|b| b & 0x1f)
}

/// True if any NAL unit is an IDR slice (type 5).
pub fn is_keyframe(nalus: &[&[u8]]) -> bool {
    nalus.iter().any(|n| nal_type(n) == Some(NAL_IDR))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyframe_detection() {
        assert!(is_keyframe(&[&[0x67, 1], &[0x68, 2], &[0x65, 3]]));
        assert!(!is_keyframe(&[&[0x41, 1], &[], &[0x06]]));
        assert!(!is_keyframe(&[]));
    }
}
