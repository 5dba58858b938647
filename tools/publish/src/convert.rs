//! Annex B access unit → FLV video tags, with the timestamp SEI inserted. Pure: the caller
//! supplies the wall-clock time.

use crate::annexb::{is_vcl, nal_type, split_nals, NAL_IDR, NAL_PPS, NAL_SPS};
use crate::avcc::{avc_decoder_config, flv_nalu_header, flv_sequence_header, push_avcc_nal};
use crate::sei::write_timestamp_sei;
use crate::PublishError;

/// FLV tags produced for one access unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tags {
    /// A sequence-header tag body, when the SPS/PPS first appear or change.
    pub sequence_header: Option<Vec<u8>>,
    /// The frame's tag body.
    pub frame: Vec<u8>,
    /// The access unit contains an IDR slice.
    pub keyframe: bool,
}

/// Remembers the parameter sets so the sequence header is sent once, and again on change.
#[derive(Debug, Default)]
pub struct Converter {
    sps: Option<Vec<u8>>,
    pps: Option<Vec<u8>>,
    sent_config: Option<Vec<u8>>,
    sei: Vec<u8>,
    /// Stamp one access unit in this many (1: every one).
    sei_every: u64,
    /// Access units converted so far.
    count: u64,
}

impl Converter {
    /// A converter that has seen no parameter sets yet.
    pub fn new() -> Self {
        Self::with_sei_every(1)
    }

    /// A converter that stamps only every `n`-th access unit (the first
    /// included). A timestamp SEI is a NAL unit of its own, i.e. one more
    /// small RTP packet per frame; a server that sends a frame's packets as
    /// one GSO batch (equal sizes, a shorter last) then needs two sends per
    /// frame. Real encoders mostly emit one slice per frame and no per-frame
    /// SEI, so capacity runs stamp a few frames per second, not every one.
    pub fn with_sei_every(n: u32) -> Self {
        Converter { sei_every: u64::from(n.max(1)), ..Self::default() }
    }

    /// Converts one Annex B access unit. NAL units are kept in order (AUD, SPS/PPS and the
    /// encoder's own SEI included) and our timestamp SEI is inserted right before the first
    /// slice, which is where H.264 7.4.1.2.3 allows SEI. Returns `Ok(None)` for an access
    /// unit with no slice, or one before any SPS/PPS (a decoder could not use it).
    pub fn convert(&mut self, au: &[u8], unix_us: u64) -> Result<Option<Tags>, PublishError> {
        let mut keyframe = false;
        let mut has_slice = false;
        for nal in split_nals(au) {
            match nal_type(nal) {
                NAL_SPS => self.sps = Some(nal.to_vec()),
                NAL_PPS => self.pps = Some(nal.to_vec()),
                t => {
                    keyframe |= t == NAL_IDR;
                    has_slice |= is_vcl(nal);
                }
            }
        }
        let (Some(sps), Some(pps)) = (&self.sps, &self.pps) else {
            return Ok(None);
        };
        if !has_slice {
            return Ok(None);
        }
        let config = avc_decoder_config(sps, pps)?;
        let sequence_header = if self.sent_config.as_ref() != Some(&config) {
            let tag = flv_sequence_header(&config);
            self.sent_config = Some(config);
            Some(tag)
        } else {
            None
        };

        let stamp = self.count.is_multiple_of(self.sei_every);
        self.count += 1;
        self.sei.clear();
        if stamp {
            write_timestamp_sei(unix_us, &mut self.sei);
        }
        let mut frame = Vec::with_capacity(au.len() + 64);
        flv_nalu_header(keyframe, &mut frame);
        let mut inserted = false;
        for nal in split_nals(au) {
            if !inserted && is_vcl(nal) {
                if stamp {
                    push_avcc_nal(&self.sei, &mut frame);
                }
                inserted = true;
            }
            push_avcc_nal(nal, &mut frame);
        }
        Ok(Some(Tags {
            sequence_header,
            frame,
            keyframe,
        }))
    }
}
