//! Annex B byte-stream splitting (H.264 B.1): NAL units between `00 00 01` start codes, and
//! access units between access unit delimiters (NAL type 9, which ffmpeg emits with
//! `-x264-params aud=1`, so no slice-header parsing is needed to find frame boundaries).

/// NAL unit type of an access unit delimiter.
pub const NAL_AUD: u8 = 9;
/// NAL unit type of an SEI.
pub const NAL_SEI: u8 = 6;
/// NAL unit type of a sequence parameter set.
pub const NAL_SPS: u8 = 7;
/// NAL unit type of a picture parameter set.
pub const NAL_PPS: u8 = 8;
/// NAL unit type of an IDR slice.
pub const NAL_IDR: u8 = 5;

/// `nal_unit_type` of a NAL unit (its first byte's low 5 bits); 0 for an empty slice.
pub fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| b & 0x1f)
}

/// True for coded-slice NAL units (types 1–5), the ones an SEI must precede.
pub fn is_vcl(nal: &[u8]) -> bool {
    (1..=5).contains(&nal_type(nal))
}

/// Position of the next `00 00 01` at or after `from`.
fn find_start_code(data: &[u8], from: usize) -> Option<usize> {
    data.get(from..)?
        .windows(3)
        .position(|w| w == [0, 0, 1])
        .map(|p| p + from)
}

/// Iterates the NAL units of an Annex B buffer, without start codes. Trailing zero bytes
/// (the first byte of a following 4-byte start code, or `trailing_zero_8bits`) are trimmed;
/// bytes before the first start code are ignored.
pub fn split_nals(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut next = find_start_code(data, 0).map(|p| p + 3);
    std::iter::from_fn(move || loop {
        let start = next?;
        let end = find_start_code(data, start);
        next = end.map(|e| e + 3);
        let mut nal = &data[start..end.unwrap_or(data.len())];
        while let [rest @ .., 0] = nal {
            nal = rest;
        }
        if !nal.is_empty() {
            return Some(nal);
        }
    })
}

/// Incremental access-unit splitter for a byte stream read in arbitrary chunks.
///
/// An access unit is complete when the *next* AUD arrives (Annex B has no length field), so
/// each AU is released one frame interval after its first byte; [`AuSplitter::finish`]
/// releases the last one at end of stream.
#[derive(Debug, Default)]
pub struct AuSplitter {
    buf: Vec<u8>,
    /// Where the AUD search resumes (bytes before it were already scanned).
    scanned: usize,
}

impl AuSplitter {
    /// An empty splitter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes read from the encoder.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes buffered but not yet released.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete access unit (Annex B bytes, its first NAL the AUD), if any.
    pub fn next_au(&mut self) -> Option<Vec<u8>> {
        // The current AU starts at the first AUD; the next AUD after it ends it.
        let first = self.find_aud(0)?;
        let from = self.scanned.max(first + 4);
        match self.find_aud(from) {
            Some(next) => {
                // Leading bytes (a 4-byte start code's zero) stay with the AU: lossless.
                let au = self.buf[..next].to_vec();
                self.buf.drain(..next);
                self.scanned = 0;
                Some(au)
            }
            None => {
                // Keep the last 3 bytes unscanned: a start code may straddle the boundary.
                self.scanned = self.buf.len().saturating_sub(3).max(from);
                None
            }
        }
    }

    /// Releases whatever is left at end of stream (the last AU), if it holds any NAL.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        let au = std::mem::take(&mut self.buf);
        self.scanned = 0;
        let has_nal = split_nals(&au).next().is_some();
        has_nal.then_some(au)
    }

    fn find_aud(&self, mut from: usize) -> Option<usize> {
        loop {
            let sc = find_start_code(&self.buf, from)?;
            match self.buf.get(sc + 3) {
                Some(&b) if b & 0x1f == NAL_AUD => return Some(sc),
                Some(_) => from = sc + 3,
                None => return None,
            }
        }
    }
}
