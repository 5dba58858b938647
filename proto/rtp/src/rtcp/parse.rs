//! RTCP parsing: a borrowing iterator over the packets of a compound
//! packet, and a convenience that decodes them into [`RtcpPacket`]s.

use super::{ReportBlock, RtcpPacket, PT_BYE, PT_PSFB, PT_RR, PT_RTPFB, PT_SDES, PT_SR};
use crate::Error;

/// One packet of a compound RTCP packet, not yet decoded. Borrowing it
/// costs nothing, so hot paths can look at `pt`/`count` and decode only
/// what they need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawRtcp<'a> {
    /// Packet type (200 SR, 201 RR, 205 RTPFB, 206 PSFB, ...).
    pub pt: u8,
    /// The 5-bit RC/SC/FMT field.
    pub count: u8,
    /// Everything after the 4-byte header, padding removed.
    pub body: &'a [u8],
}

/// Iterator returned by [`iter_compound`]. A malformed header or length
/// yields one `Err`, after which the iterator ends.
#[derive(Debug, Clone)]
pub struct CompoundIter<'a> {
    rest: &'a [u8],
}

/// Walks the packets of a compound RTCP packet without allocating.
pub fn iter_compound(buf: &[u8]) -> CompoundIter<'_> {
    CompoundIter { rest: buf }
}

impl<'a> Iterator for CompoundIter<'a> {
    type Item = Result<RawRtcp<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let buf = std::mem::take(&mut self.rest); // an error ends iteration
        let Some(&[b0, pt, l0, l1]) = buf.first_chunk::<4>() else {
            return Some(Err(Error::TooShort {
                needed: 4,
                have: buf.len(),
            }));
        };
        if b0 >> 6 != 2 {
            return Some(Err(Error::BadVersion(b0 >> 6)));
        }
        let len = (usize::from(u16::from_be_bytes([l0, l1])) + 1) * 4;
        let Some((packet, rest)) = buf.split_at_checked(len) else {
            return Some(Err(Error::TooShort {
                needed: len,
                have: buf.len(),
            }));
        };
        let pad = if b0 & 0x20 != 0 {
            usize::from(packet[len - 1])
        } else {
            0
        };
        if b0 & 0x20 != 0 && (pad == 0 || pad > len - 4) {
            return Some(Err(Error::BadPadding));
        }
        self.rest = rest;
        Some(Ok(RawRtcp {
            pt,
            count: b0 & 0x1f,
            body: &packet[4..len - pad],
        }))
    }
}

impl std::iter::FusedIterator for CompoundIter<'_> {}

/// Parses a (compound) RTCP packet into its parts. Unknown packet types and
/// feedback formats become [`RtcpPacket::Other`]; a bad header, length or
/// padding, or a body too short for what its header announces, is an error.
/// An empty buffer is an error too (it is not an RTCP packet).
pub fn parse_compound(buf: &[u8]) -> Result<Vec<RtcpPacket>, Error> {
    if buf.is_empty() {
        return Err(Error::TooShort { needed: 4, have: 0 });
    }
    let mut out = Vec::new();
    for raw in iter_compound(buf) {
        raw?.decode_into(&mut out)?;
    }
    Ok(out)
}

fn be32(b: &[u8], at: usize) -> u32 {
    // Callers check lengths first; a short slice reads as zeros, no panic.
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_be_bytes)
}

fn need(body: &[u8], needed: usize) -> Result<(), Error> {
    if body.len() < needed {
        return Err(Error::TooShort {
            needed: needed + 4,
            have: body.len() + 4,
        });
    }
    Ok(())
}

fn report_blocks(b: &[u8], count: u8) -> Vec<ReportBlock> {
    b.chunks_exact(24)
        .take(usize::from(count))
        .map(|c| {
            let lost_word = be32(c, 4);
            ReportBlock {
                ssrc: be32(c, 0),
                fraction_lost: (lost_word >> 24) as u8,
                // Sign-extend the 24-bit field.
                cumulative_lost: ((lost_word << 8) as i32) >> 8,
                highest_seq: be32(c, 8),
                jitter: be32(c, 12),
                lsr: be32(c, 16),
                dlsr: be32(c, 20),
            }
        })
        .collect()
}

/// The sequence numbers a generic NACK's FCI entries name, in order: each
/// entry's PID, then PID + 1 + i for every bit i set in its BLP.
#[derive(Debug, Clone)]
pub struct NackLost<'a> {
    fci: std::slice::ChunksExact<'a, u8>,
    pid: u16,
    /// Bits of the current entry not yet yielded; bit 16 stands for the PID.
    left: u32,
}

impl<'a> NackLost<'a> {
    /// The numbers named by `fci`, a NACK's FCI entries (a partial last
    /// entry is ignored, as the decoder always did).
    fn new(fci: &'a [u8]) -> NackLost<'a> {
        NackLost { fci: fci.chunks_exact(4), pid: 0, left: 0 }
    }
}

impl Iterator for NackLost<'_> {
    type Item = u16;

    fn next(&mut self) -> Option<u16> {
        while self.left == 0 {
            let e = self.fci.next()?;
            self.pid = u16::from_be_bytes([e[0], e[1]]);
            self.left = (1 << 16) | u32::from(u16::from_be_bytes([e[2], e[3]]));
        }
        if self.left & (1 << 16) != 0 {
            self.left &= !(1 << 16);
            return Some(self.pid);
        }
        let i = self.left.trailing_zeros();
        self.left &= self.left - 1;
        Some(self.pid.wrapping_add(i as u16 + 1))
    }
}

impl<'a> RawRtcp<'a> {
    /// A generic NACK (RTPFB, FMT 1) as (media SSRC, lost sequence
    /// numbers), read in place: the same numbers [`RawRtcp::decode_into`]
    /// collects into a `Vec`, without allocating. None for other packets,
    /// and for a NACK too short for its two SSRCs.
    pub fn generic_nack(&self) -> Option<(u32, NackLost<'a>)> {
        if (self.pt, self.count) != (PT_RTPFB, 1) || self.body.len() < 8 {
            return None;
        }
        let body: &'a [u8] = self.body;
        Some((be32(body, 4), NackLost::new(&body[8..])))
    }
}

impl RawRtcp<'_> {
    /// Decodes this packet, appending to `out` (FIR can carry several
    /// requests, so one raw packet may give several entries, or none).
    pub fn decode_into(&self, out: &mut Vec<RtcpPacket>) -> Result<(), Error> {
        let b = self.body;
        let n = usize::from(self.count);
        match (self.pt, self.count) {
            (PT_SR, _) => {
                need(b, 24 + 24 * n)?;
                out.push(RtcpPacket::SenderReport {
                    ssrc: be32(b, 0),
                    ntp: (u64::from(be32(b, 4)) << 32) | u64::from(be32(b, 8)),
                    rtp_ts: be32(b, 12),
                    packet_count: be32(b, 16),
                    octet_count: be32(b, 20),
                    reports: report_blocks(&b[24..], self.count),
                });
            }
            (PT_RR, _) => {
                need(b, 4 + 24 * n)?;
                out.push(RtcpPacket::ReceiverReport {
                    ssrc: be32(b, 0),
                    reports: report_blocks(&b[4..], self.count),
                });
            }
            (PT_SDES, _) => out.push(RtcpPacket::Sdes),
            (PT_BYE, _) => {
                need(b, 4 * n)?;
                out.push(RtcpPacket::Bye {
                    ssrcs: b.chunks_exact(4).take(n).map(|c| be32(c, 0)).collect(),
                });
            }
            (PT_RTPFB, 1) => {
                need(b, 8)?;
                out.push(RtcpPacket::Nack {
                    sender_ssrc: be32(b, 0),
                    media_ssrc: be32(b, 4),
                    lost: NackLost::new(&b[8..]).collect(),
                });
            }
            (PT_PSFB, 1) => {
                need(b, 8)?;
                out.push(RtcpPacket::Pli {
                    sender_ssrc: be32(b, 0),
                    media_ssrc: be32(b, 4),
                });
            }
            (PT_PSFB, 4) => {
                need(b, 8)?;
                let sender_ssrc = be32(b, 0);
                out.extend(b[8..].chunks_exact(8).map(|fci| RtcpPacket::Fir {
                    sender_ssrc,
                    media_ssrc: be32(fci, 0),
                    seq_nr: fci[4],
                }));
            }
            (PT_PSFB, 15) if b.get(8..12) == Some(b"REMB") => {
                need(b, 16)?;
                let count = usize::from(b[12]);
                need(b, 16 + 4 * count)?;
                let exp = u32::from(b[13] >> 2);
                let mantissa =
                    (u64::from(b[13] & 3) << 16) | (u64::from(b[14]) << 8) | u64::from(b[15]);
                // mantissa < 2^18, exp < 64: u128 cannot overflow.
                let bitrate = (u128::from(mantissa) << exp).min(u128::from(u64::MAX)) as u64;
                out.push(RtcpPacket::Remb {
                    sender_ssrc: be32(b, 0),
                    bitrate_bps: bitrate,
                    ssrcs: b[16..16 + 4 * count]
                        .chunks_exact(4)
                        .map(|c| be32(c, 0))
                        .collect(),
                });
            }
            (pt, fmt) => out.push(RtcpPacket::Other { pt, fmt }),
        }
        Ok(())
    }
}
