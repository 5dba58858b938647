//! RTP payload for redundant audio data, RED (RFC 2198): a packet carries
//! earlier frames next to the current one, so a receiver that lost a packet
//! finds its frame in the next one. Each redundant block has a 4-byte
//! header (F=1, block payload type, 14-bit timestamp offset back from the
//! packet's timestamp, 10-bit length), the primary block a 1-byte header
//! (F=0, payload type); the data follows in header order, primary last.

use crate::error::Error;

/// Largest timestamp offset a block header can carry (14 bits).
pub const MAX_TS_OFFSET: u32 = (1 << 14) - 1;
/// Largest redundant block (10-bit length).
pub const MAX_BLOCK_LEN: usize = (1 << 10) - 1;

/// One block of a RED payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block<'a> {
    /// Payload type of the block's data (e.g. Opus).
    pub pt: u8,
    /// How far before the packet's timestamp the block's data lies (0 for
    /// the primary block).
    pub ts_offset: u16,
    /// The block's data.
    pub data: &'a [u8],
}

/// Appends to `out` a RED payload: the `redundant` blocks (timestamp
/// offset, data; oldest first) then `primary`, all of payload type `pt`.
/// A redundant block whose offset or length does not fit its header field
/// is left out (the packet stays valid, with less redundancy).
pub fn write(pt: u8, primary: &[u8], redundant: &[(u32, &[u8])], out: &mut Vec<u8>) {
    let pt = pt & 0x7f;
    let fits = |&&(off, d): &&(u32, &[u8])| off <= MAX_TS_OFFSET && d.len() <= MAX_BLOCK_LEN;
    for &(off, d) in redundant.iter().filter(fits) {
        let len = d.len() as u32;
        out.push(0x80 | pt);
        out.push((off >> 6) as u8);
        out.push((((off & 0x3f) << 2) | (len >> 8)) as u8);
        out.push(len as u8);
    }
    out.push(pt);
    for &(_, d) in redundant.iter().filter(fits) {
        out.extend_from_slice(d);
    }
    out.extend_from_slice(primary);
}

/// Splits a RED payload into its blocks, primary last.
pub fn parse(payload: &[u8]) -> Result<Vec<Block<'_>>, Error> {
    let mut headers = Vec::new();
    let mut i = 0;
    loop {
        let b = *payload.get(i).ok_or(Error::TooShort { needed: i + 1, have: payload.len() })?;
        if b & 0x80 == 0 {
            headers.push((b & 0x7f, 0u16, None));
            i += 1;
            break;
        }
        let h = payload.get(i..i + 4).ok_or(Error::TooShort { needed: i + 4, have: payload.len() })?;
        let off = (u16::from(h[1]) << 6) | u16::from(h[2] >> 2);
        let len = (usize::from(h[2] & 0x03) << 8) | usize::from(h[3]);
        headers.push((h[0] & 0x7f, off, Some(len)));
        i += 4;
    }
    let mut blocks = Vec::with_capacity(headers.len());
    for (pt, ts_offset, len) in headers {
        let end = match len {
            Some(l) => i + l,
            None => payload.len(),
        };
        let data = payload.get(i..end).ok_or(Error::Malformed("RED block length"))?;
        blocks.push(Block { pt, ts_offset, data });
        i = end;
    }
    Ok(blocks)
}

/// Rewrites the payload type of every block header in place (a viewer that
/// numbers Opus differently from the shared packets).
pub fn set_block_pt(payload: &mut [u8], pt: u8) -> Result<(), Error> {
    let mut i = 0;
    loop {
        let b = payload.get_mut(i).ok_or(Error::Malformed("RED header"))?;
        let last = *b & 0x80 == 0;
        *b = (*b & 0x80) | (pt & 0x7f);
        if last {
            return Ok(());
        }
        if i + 4 > payload.len() {
            return Err(Error::Malformed("RED header"));
        }
        i += 4;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_2198_layout() {
        // RFC 2198 §3 example shape: one redundant block 640 back, 3 bytes,
        // then a 2-byte primary, payload type 111.
        let mut out = Vec::new();
        write(111, &[9, 9], &[(640, &[1, 2, 3])], &mut out);
        // F=1|111, offset 640 = 0b00_1010_0000_00 over 14 bits, length 3 over 10.
        assert_eq!(out, vec![0x80 | 111, 0x0a, 0x00, 0x03, 111, 1, 2, 3, 9, 9]);
        let blocks = parse(&out).unwrap();
        assert_eq!(
            blocks,
            vec![Block { pt: 111, ts_offset: 640, data: &[1, 2, 3] }, Block { pt: 111, ts_offset: 0, data: &[9, 9] }]
        );
    }

    #[test]
    fn two_redundant_blocks_and_limits() {
        let mut out = Vec::new();
        let big = vec![7u8; MAX_BLOCK_LEN + 1];
        write(100, b"now", &[(1920, b"old"), (960, b"prev"), (MAX_TS_OFFSET + 1, b"far"), (10, &big)], &mut out);
        let blocks = parse(&out).unwrap();
        let got: Vec<(u8, u16, &[u8])> = blocks.iter().map(|b| (b.pt, b.ts_offset, b.data)).collect();
        assert_eq!(got, vec![(100, 1920, &b"old"[..]), (100, 960, &b"prev"[..]), (100, 0, &b"now"[..])], "unfit blocks left out");
        set_block_pt(&mut out, 63).unwrap();
        assert!(parse(&out).unwrap().iter().all(|b| b.pt == 63));
    }

    #[test]
    fn malformed_payloads_are_errors() {
        assert!(parse(&[]).is_err());
        assert!(parse(&[0x80, 0, 0]).is_err(), "truncated block header");
        assert!(parse(&[0x80, 0, 0, 5, 111, 1]).is_err(), "block longer than the payload");
        assert_eq!(parse(&[111]).unwrap(), vec![Block { pt: 111, ts_offset: 0, data: &[] }]);
        assert!(set_block_pt(&mut [0x80, 0], 1).is_err());
        assert!(set_block_pt(&mut [], 1).is_err());
    }
}
