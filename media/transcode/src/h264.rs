//! H.264 bitstream helpers: avcC parsing, AVCC <-> Annex B, and a best-effort SPS
//! reader for B-frame detection (ITU-T H.264 §7.3.2.1.1 and Annex E.1.1).

use crate::Error;

/// The parts of an AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.3.3.1) we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcConfig {
    /// NAL length prefix size in bytes (1, 2 or 4).
    pub nal_length_size: usize,
    /// Sequence parameter sets, each with its NAL header byte.
    pub sps: Vec<Vec<u8>>,
    /// Picture parameter sets, each with its NAL header byte.
    pub pps: Vec<Vec<u8>>,
}

/// Parses an AVCDecoderConfigurationRecord (the FLV AVCPacketType=0 payload).
pub fn parse_avc_config(rec: &[u8]) -> Result<AvcConfig, Error> {
    let bad = Error::BadAvcConfig;
    if rec.len() < 7 {
        return Err(bad("shorter than 7 bytes"));
    }
    if rec[0] != 1 {
        return Err(bad("configurationVersion != 1"));
    }
    let nal_length_size = usize::from(rec[4] & 0x03) + 1;
    if nal_length_size == 3 {
        return Err(bad("3-byte NAL length"));
    }
    let mut pos = 5;
    let read_sets = |count: usize, pos: &mut usize| -> Result<Vec<Vec<u8>>, Error> {
        let mut sets = Vec::with_capacity(count);
        for _ in 0..count {
            let len_bytes = rec.get(*pos..*pos + 2).ok_or(bad("truncated set length"))?;
            let len = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
            let set = rec
                .get(*pos + 2..*pos + 2 + len)
                .ok_or(bad("truncated parameter set"))?;
            if set.is_empty() {
                return Err(bad("empty parameter set"));
            }
            sets.push(set.to_vec());
            *pos += 2 + len;
        }
        Ok(sets)
    };
    let n_sps = usize::from(rec[pos] & 0x1f);
    pos += 1;
    let sps = read_sets(n_sps, &mut pos)?;
    let n_pps = usize::from(*rec.get(pos).ok_or(bad("missing PPS count"))?);
    pos += 1;
    let pps = read_sets(n_pps, &mut pos)?;
    if sps.is_empty() || pps.is_empty() {
        return Err(bad("no SPS or no PPS"));
    }
    Ok(AvcConfig {
        nal_length_size,
        sps,
        pps,
    })
}

/// Appends the NAL units of an AVCC frame to `out` as Annex B (start code + NAL).
pub fn avcc_to_annexb(avcc: &[u8], nal_length_size: usize, out: &mut Vec<u8>) -> Result<(), Error> {
    let mut pos = 0;
    while pos < avcc.len() {
        let len_bytes = avcc
            .get(pos..pos + nal_length_size)
            .ok_or(Error::BadAvcc("truncated NAL length"))?;
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        pos += nal_length_size;
        let nal = avcc
            .get(pos..pos + len)
            .ok_or(Error::BadAvcc("NAL runs past the frame"))?;
        if nal.is_empty() {
            return Err(Error::BadAvcc("empty NAL unit"));
        }
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(nal);
        pos += len;
    }
    Ok(())
}

/// The NAL units of an AVCC frame in order, each with whether it is whole:
/// the last may be cut short by the end of the frame, and nothing follows
/// it. Malformed framing simply ends the walk; `avcc_to_annexb` reports it.
fn avcc_units(avcc: &[u8], nal_length_size: usize) -> impl Iterator<Item = (&[u8], bool)> {
    let mut rest = avcc;
    std::iter::from_fn(move || {
        let len = rest
            .get(..nal_length_size)?
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        let body = &rest[nal_length_size..];
        if len <= body.len() {
            let (nal, tail) = body.split_at(len);
            rest = tail;
            Some((nal, true))
        } else {
            rest = &[];
            Some((body, false))
        }
    })
}

/// Whether an AVCC frame contains an IDR slice (NAL type 5), including a
/// last unit cut short whose header byte is there.
pub fn avcc_has_idr(avcc: &[u8], nal_length_size: usize) -> bool {
    avcc_units(avcc, nal_length_size).any(|(nal, _)| nal.first().is_some_and(|h| h & 0x1f == 5))
}

/// The whole SEI NAL units (type 6) of an AVCC frame, copied.
pub fn avcc_sei_nals(avcc: &[u8], nal_length_size: usize) -> Vec<bytes::Bytes> {
    avcc_units(avcc, nal_length_size)
        .filter(|&(nal, whole)| whole && nal.first().is_some_and(|h| h & 0x1f == 6))
        .map(|(nal, _)| bytes::Bytes::copy_from_slice(nal))
        .collect()
}

/// Splits an Annex B byte stream into NAL units (without start codes).
pub fn split_annexb(data: &[u8]) -> Vec<&[u8]> {
    let mut nals = Vec::new();
    let mut i = 0;
    let mut start: Option<usize> = None;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            if let Some(s) = start {
                let mut end = i;
                while end > s && data[end - 1] == 0 {
                    end -= 1;
                }
                nals.push(&data[s..end]);
            }
            i += 3;
            start = Some(i);
        } else {
            i += 1;
        }
    }
    if let Some(s) = start {
        if s < data.len() {
            nals.push(&data[s..]);
        }
    }
    nals
}

/// Exp-Golomb bit reader over an RBSP (emulation prevention bytes already removed).
struct Rbsp {
    data: Vec<u8>,
    pos: usize,
}

impl Rbsp {
    fn new(nal_payload: &[u8]) -> Self {
        let mut data = Vec::with_capacity(nal_payload.len());
        let mut zeros = 0;
        for &b in nal_payload {
            if zeros >= 2 && b == 3 {
                zeros = 0;
                continue;
            }
            zeros = if b == 0 { zeros + 1 } else { 0 };
            data.push(b);
        }
        Self { data, pos: 0 }
    }
    fn bit(&mut self) -> Option<u32> {
        let byte = *self.data.get(self.pos / 8)?;
        let b = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Some(u32::from(b))
    }
    fn bits(&mut self, n: u32) -> Option<u32> {
        let mut v = 0;
        for _ in 0..n {
            v = (v << 1) | self.bit()?;
        }
        Some(v)
    }
    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        Some((1u64 << zeros) as u32 - 1 + self.bits(zeros)?)
    }
    fn se(&mut self) -> Option<i32> {
        let k = self.ue()?;
        Some(if k % 2 == 1 {
            (k / 2 + 1) as i32
        } else {
            -((k / 2) as i32)
        })
    }
}

/// What an SPS says before its VUI.
struct SpsHead {
    poc_type: u32,
    width: u32,
    height: u32,
}

/// Reads an SPS body (after the NAL header byte) up to
/// `vui_parameters_present_flag`, which the returned reader is at.
fn sps_head(body: &[u8]) -> Option<(SpsHead, Rbsp)> {
    let profile = *body.first()?;
    let mut r = Rbsp::new(body.get(3..)?);
    let _sps_id = r.ue()?;
    let mut chroma = 1;
    if matches!(profile, 100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135) {
        chroma = r.ue()?;
        if chroma == 3 {
            r.bit()?;
        }
        r.ue()?;
        r.ue()?;
        r.bit()?;
        if r.bit()? == 1 {
            for i in 0..if chroma == 3 { 12 } else { 8 } {
                if r.bit()? == 1 {
                    skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    let poc_type = r.ue()?;
    match poc_type {
        0 => {
            r.ue()?;
        }
        1 => {
            r.bit()?;
            r.se()?;
            r.se()?;
            for _ in 0..r.ue()?.min(255) {
                r.se()?;
            }
        }
        2 => {}
        _ => return None,
    }
    r.ue()?; // max_num_ref_frames
    r.bit()?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = r.ue()?.checked_add(1)?;
    let height_units = r.ue()?.checked_add(1)?;
    let frame_mbs_only = r.bit()?;
    if frame_mbs_only == 0 {
        r.bit()?; // mb_adaptive_frame_field_flag
    }
    r.bit()?; // direct_8x8_inference_flag
    let (mut crop_x, mut crop_y) = (0, 0);
    if r.bit()? == 1 {
        let (left, right, top, bottom) = (r.ue()?, r.ue()?, r.ue()?, r.ue()?);
        // Crop units (H.264 7.4.2.1.1): chroma subsampling and field coding.
        let (unit_x, unit_y) = match chroma {
            1 => (2, 2),
            2 => (2, 1),
            _ => (1, 1),
        };
        let unit_y = unit_y * (2 - frame_mbs_only);
        crop_x = left.saturating_add(right).saturating_mul(unit_x);
        crop_y = top.saturating_add(bottom).saturating_mul(unit_y);
    }
    let width = width_mbs.checked_mul(16)?.checked_sub(crop_x)?;
    let height = height_units.checked_mul(16)?.checked_mul(2 - frame_mbs_only)?.checked_sub(crop_y)?;
    Some((SpsHead { poc_type, width, height }, r))
}

/// The picture size an SPS declares (cropping applied); the NAL header
/// byte is optional. None when it cannot be parsed.
pub fn sps_dimensions(sps: &[u8]) -> Option<(u32, u32)> {
    let body = match sps.first() {
        Some(h) if h & 0x1f == 7 => &sps[1..],
        _ => sps,
    };
    sps_head(body).map(|(h, _)| (h.width, h.height))
}

/// Best-effort: can a stream with this SPS contain B-frames (frames whose output
/// order differs from decode order)?
///
/// `Some(false)` for (constrained) baseline, for `pic_order_cnt_type == 2` (output order
/// equals decode order) and for a VUI with `max_num_reorder_frames == 0`;
/// `Some(true)` when the VUI says frames are reordered; `None` when the SPS does not
/// say (Main/High without bitstream_restriction) or cannot be parsed. The NAL header
/// byte is optional. The dataplane also watches FLV composition time != 0.
pub fn has_b_frames(sps: &[u8]) -> Option<bool> {
    let body = match sps.first() {
        Some(h) if h & 0x1f == 7 => &sps[1..],
        _ => sps,
    };
    if *body.first()? == 66 {
        return Some(false);
    }
    let (head, mut r) = sps_head(body)?;
    if head.poc_type == 2 {
        return Some(false);
    }
    if r.bit()? == 0 {
        return None; // no VUI
    }
    if r.bit()? == 1 && r.bits(8)? == 255 {
        r.bits(32)?;
    }
    if r.bit()? == 1 {
        r.bit()?;
    }
    if r.bit()? == 1 {
        r.bits(4)?;
        if r.bit()? == 1 {
            r.bits(24)?;
        }
    }
    if r.bit()? == 1 {
        r.ue()?;
        r.ue()?;
    }
    if r.bit()? == 1 {
        r.bits(32)?;
        r.bits(32)?;
        r.bit()?;
    }
    let nal_hrd = r.bit()? == 1;
    if nal_hrd {
        skip_hrd(&mut r)?;
    }
    let vcl_hrd = r.bit()? == 1;
    if vcl_hrd {
        skip_hrd(&mut r)?;
    }
    if nal_hrd || vcl_hrd {
        r.bit()?;
    }
    r.bit()?; // pic_struct_present_flag
    if r.bit()? == 0 {
        return None; // no bitstream_restriction: the SPS does not say
    }
    r.bit()?;
    for _ in 0..4 {
        r.ue()?;
    }
    let max_num_reorder_frames = r.ue()?;
    Some(max_num_reorder_frames > 0)
}

fn skip_scaling_list(r: &mut Rbsp, size: usize) -> Option<()> {
    let (mut last, mut next) = (8i32, 8i32);
    for _ in 0..size {
        if next != 0 {
            next = (last + r.se()? + 256) % 256;
        }
        if next != 0 {
            last = next;
        }
    }
    Some(())
}

fn skip_hrd(r: &mut Rbsp) -> Option<()> {
    let cpb_cnt = r.ue()?.min(31) + 1;
    r.bits(8)?;
    for _ in 0..cpb_cnt {
        r.ue()?;
        r.ue()?;
        r.bit()?;
    }
    r.bits(20)?;
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sps_dimensions_of_x264_streams() {
        // SPS of one frame each from `ffmpeg -f lavfi -i testsrc2=size=WxH -c:v libx264 -profile:v P`
        // (360 and 180 are not multiples of 16: cropped).
        let sps = |h: &str| hex::decode(h).unwrap();
        assert_eq!(sps_dimensions(&sps("6742c01ed900a02ff970110000030001000003003c0f162e48")), Some((640, 360)));
        assert_eq!(sps_dimensions(&sps("6764001facd9405005bb0110000003001000000303c0f1831960")), Some((1280, 720)));
        assert_eq!(sps_dimensions(&sps("674d400deca0a0cfcf8088000003000800000301e078a14cb0")), Some((320, 180)));
        assert_eq!(sps_dimensions(&sps("6742c01e")), None);
        assert_eq!(sps_dimensions(&[]), None);
    }

    /// avcC from x264 320x240 High profile (-bf 3): SPS with VUI bitstream_restriction.
    fn sample_avcc(sps: &[u8], pps: &[u8]) -> Vec<u8> {
        let mut v = vec![1, sps[1], sps[2], sps[3], 0xff, 0xe1];
        v.extend_from_slice(&(sps.len() as u16).to_be_bytes());
        v.extend_from_slice(sps);
        v.push(1);
        v.extend_from_slice(&(pps.len() as u16).to_be_bytes());
        v.extend_from_slice(pps);
        v
    }

    #[test]
    fn avc_config_roundtrip() {
        let sps = [0x67, 0x42, 0xc0, 0x1e, 0xda];
        let pps = [0x68, 0xce, 0x3c, 0x80];
        let c = parse_avc_config(&sample_avcc(&sps, &pps)).unwrap();
        assert_eq!(c.nal_length_size, 4);
        assert_eq!(c.sps, vec![sps.to_vec()]);
        assert_eq!(c.pps, vec![pps.to_vec()]);
    }

    #[test]
    fn avc_config_garbage() {
        assert!(parse_avc_config(&[]).is_err());
        assert!(parse_avc_config(&[1, 2, 3, 4, 5, 6, 7]).is_err());
        assert!(parse_avc_config(&[1, 0x64, 0, 0x1f, 0xff, 0xe1, 0x00, 0x40, 0x67]).is_err());
        let mut ok = sample_avcc(&[0x67, 0x42, 0xc0, 0x1e], &[0x68, 0xce]);
        ok.truncate(ok.len() - 1);
        assert!(parse_avc_config(&ok).is_err());
    }

    #[test]
    fn avcc_annexb() {
        let avcc = [0, 0, 0, 2, 0x65, 0xaa, 0, 0, 0, 1, 0x41];
        let mut out = Vec::new();
        avcc_to_annexb(&avcc, 4, &mut out).unwrap();
        assert_eq!(out, [0, 0, 0, 1, 0x65, 0xaa, 0, 0, 0, 1, 0x41]);
        assert_eq!(split_annexb(&out), vec![&[0x65, 0xaa][..], &[0x41][..]]);
        assert!(avcc_to_annexb(&[0, 0, 0, 9, 0x65], 4, &mut out).is_err());
        assert!(avcc_to_annexb(&[0, 0], 4, &mut out).is_err());
        assert!(avcc_has_idr(&avcc, 4));
        assert!(!avcc_has_idr(&[0, 0, 0, 1, 0x41, 0, 0, 0, 1, 0x41], 4));
        assert!(!avcc_has_idr(&[0, 0, 0, 200, 0x41], 4));
    }

    #[test]
    fn baseline_has_no_b_frames() {
        assert_eq!(has_b_frames(&[0x67, 0x42, 0xc0, 0x1e]), Some(false));
        assert_eq!(has_b_frames(&[0x42, 0xc0, 0x1e]), Some(false));
        assert_eq!(has_b_frames(&[]), None);
        assert_eq!(has_b_frames(&[0x67, 0x64]), None);
    }
}
