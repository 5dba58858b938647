//! RTCP writers. Each checks the caller's buffer up front, so a short
//! buffer yields an error and leaves nothing half written that matters.

use super::{ReportBlock, PT_BYE, PT_PSFB, PT_RR, PT_RTPFB, PT_SDES, PT_SR};
use crate::Error;

const SDES_CNAME: u8 = 1;
const FMT_NACK: u8 = 1;
const FMT_PLI: u8 = 1;
const FMT_FIR: u8 = 4;
const MAX_COUNT: usize = 31;

fn check_room(out: &[u8], needed: usize) -> Result<(), Error> {
    if out.len() < needed {
        return Err(Error::BufferTooSmall {
            needed,
            have: out.len(),
        });
    }
    Ok(())
}

/// Writes the 4-byte common header; `len` is the whole packet in bytes (a
/// multiple of 4, at most 2^18).
fn write_header(out: &mut [u8], count: u8, pt: u8, len: usize) -> Result<(), Error> {
    let words = u16::try_from(len / 4 - 1)
        .map_err(|_| Error::InvalidArgument("RTCP packet longer than 256 KiB"))?;
    out[0] = 0x80 | (count & 0x1f);
    out[1] = pt;
    out[2..4].copy_from_slice(&words.to_be_bytes());
    Ok(())
}

fn put_u32(out: &mut [u8], at: usize, v: u32) {
    out[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

fn write_block(out: &mut [u8], b: &ReportBlock) {
    put_u32(out, 0, b.ssrc);
    let lost = b.cumulative_lost.clamp(-0x80_0000, 0x7f_ffff) as u32 & 0x00ff_ffff;
    put_u32(out, 4, (u32::from(b.fraction_lost) << 24) | lost);
    put_u32(out, 8, b.highest_seq);
    put_u32(out, 12, b.jitter);
    put_u32(out, 16, b.lsr);
    put_u32(out, 20, b.dlsr);
}

/// Writes a Sender Report (RFC 3550 §6.4.1) with no report blocks followed
/// by an SDES CNAME chunk, the minimal compound packet RFC 3550 §6.1
/// requires. Returns the bytes written.
pub fn write_sender_report(
    out: &mut [u8],
    ssrc: u32,
    ntp: u64,
    rtp_ts: u32,
    packet_count: u32,
    octet_count: u32,
    cname: &str,
) -> Result<usize, Error> {
    const SR_LEN: usize = 28;
    check_room(out, SR_LEN + sdes_cname_len(cname)?)?;
    write_header(out, 0, PT_SR, SR_LEN)?;
    put_u32(out, 4, ssrc);
    out[8..16].copy_from_slice(&ntp.to_be_bytes());
    put_u32(out, 16, rtp_ts);
    put_u32(out, 20, packet_count);
    put_u32(out, 24, octet_count);
    Ok(SR_LEN + write_sdes_cname(&mut out[SR_LEN..], ssrc, cname)?)
}

fn sdes_cname_len(cname: &str) -> Result<usize, Error> {
    if cname.len() > 255 {
        return Err(Error::InvalidArgument("CNAME longer than 255 bytes"));
    }
    // header + SSRC + type + length + text + at least one null, padded.
    Ok(4 + (4 + 2 + cname.len() + 1).next_multiple_of(4))
}

/// Writes an SDES packet with one chunk holding one CNAME item. Use it to
/// complete a compound packet after [`write_receiver_report`].
pub fn write_sdes_cname(out: &mut [u8], ssrc: u32, cname: &str) -> Result<usize, Error> {
    let len = sdes_cname_len(cname)?;
    check_room(out, len)?;
    write_header(out, 1, PT_SDES, len)?;
    put_u32(out, 4, ssrc);
    out[8] = SDES_CNAME;
    out[9] = cname.len() as u8; // <= 255, checked above
    out[10..10 + cname.len()].copy_from_slice(cname.as_bytes());
    out[10 + cname.len()..len].fill(0);
    Ok(len)
}

/// Writes a Receiver Report with up to 31 report blocks.
pub fn write_receiver_report(
    out: &mut [u8],
    sender_ssrc: u32,
    blocks: &[ReportBlock],
) -> Result<usize, Error> {
    if blocks.len() > MAX_COUNT {
        return Err(Error::InvalidArgument("more than 31 report blocks"));
    }
    let len = 8 + 24 * blocks.len();
    check_room(out, len)?;
    write_header(out, blocks.len() as u8, PT_RR, len)?;
    put_u32(out, 4, sender_ssrc);
    for (i, b) in blocks.iter().enumerate() {
        write_block(&mut out[8 + 24 * i..], b);
    }
    Ok(len)
}

/// Packs sequence numbers into generic NACK FCI entries (PID, BLP): bit i
/// of BLP means PID + i + 1 is lost too (RFC 4585 §6.2.1). Input is taken
/// in order; a number outside the current entry's 17-packet window starts
/// a new entry, so ascending input packs tightest.
#[derive(Clone)]
struct NackPairs<'a> {
    lost: &'a [u16],
}

impl Iterator for NackPairs<'_> {
    type Item = (u16, u16);

    fn next(&mut self) -> Option<(u16, u16)> {
        let (&pid, rest) = self.lost.split_first()?;
        let mut blp = 0u16;
        let mut taken = 0;
        for &seq in rest {
            let d = seq.wrapping_sub(pid);
            if !(1..=16).contains(&d) {
                break;
            }
            blp |= 1 << (d - 1);
            taken += 1;
        }
        self.lost = &rest[taken..];
        Some((pid, blp))
    }
}

/// Writes a generic NACK (RTPFB FMT 1) for the `lost` sequence numbers.
pub fn write_nack(
    out: &mut [u8],
    sender_ssrc: u32,
    media_ssrc: u32,
    lost: &[u16],
) -> Result<usize, Error> {
    if lost.is_empty() {
        return Err(Error::InvalidArgument("NACK without sequence numbers"));
    }
    let pairs = NackPairs { lost };
    let len = 12 + 4 * pairs.clone().count();
    check_room(out, len)?;
    write_header(out, FMT_NACK, PT_RTPFB, len)?;
    put_u32(out, 4, sender_ssrc);
    put_u32(out, 8, media_ssrc);
    for (i, (pid, blp)) in pairs.enumerate() {
        put_u32(out, 12 + 4 * i, (u32::from(pid) << 16) | u32::from(blp));
    }
    Ok(len)
}

/// Writes a Picture Loss Indication (PSFB FMT 1).
pub fn write_pli(out: &mut [u8], sender_ssrc: u32, media_ssrc: u32) -> Result<usize, Error> {
    check_room(out, 12)?;
    write_header(out, FMT_PLI, PT_PSFB, 12)?;
    put_u32(out, 4, sender_ssrc);
    put_u32(out, 8, media_ssrc);
    Ok(12)
}

/// Writes a Full Intra Request (PSFB FMT 4, RFC 5104 §4.3.1) with one FCI
/// entry. The header's media SSRC is 0 as the RFC requires; the target is
/// in the FCI.
pub fn write_fir(
    out: &mut [u8],
    sender_ssrc: u32,
    media_ssrc: u32,
    seq_nr: u8,
) -> Result<usize, Error> {
    check_room(out, 20)?;
    write_header(out, FMT_FIR, PT_PSFB, 20)?;
    put_u32(out, 4, sender_ssrc);
    put_u32(out, 8, 0);
    put_u32(out, 12, media_ssrc);
    put_u32(out, 16, u32::from(seq_nr) << 24);
    Ok(20)
}

/// Writes a BYE for up to 31 sources, without a reason.
pub fn write_bye(out: &mut [u8], ssrcs: &[u32]) -> Result<usize, Error> {
    if ssrcs.len() > MAX_COUNT {
        return Err(Error::InvalidArgument("more than 31 SSRCs in BYE"));
    }
    let len = 4 + 4 * ssrcs.len();
    check_room(out, len)?;
    write_header(out, ssrcs.len() as u8, PT_BYE, len)?;
    for (i, &s) in ssrcs.iter().enumerate() {
        put_u32(out, 4 + 4 * i, s);
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nack_blp_packing() {
        let mut buf = [0u8; 64];
        let n = write_nack(&mut buf, 1, 2, &[100, 101, 105, 116, 117]).unwrap();
        assert_eq!(n, 20);
        assert_eq!(&buf[..4], &[0x81, 205, 0, 4]);
        // PID 100, BLP bits 0 (101), 4 (105), 15 (116); 117 is 17 away.
        assert_eq!(&buf[12..16], &[0, 100, 0x80, 0x11]);
        assert_eq!(&buf[16..20], &[0, 117, 0, 0]);
    }

    #[test]
    fn nack_across_wrap() {
        let mut buf = [0u8; 16];
        let n = write_nack(&mut buf, 1, 2, &[65535, 0, 1]).unwrap();
        assert_eq!(n, 16);
        assert_eq!(&buf[12..16], &[0xff, 0xff, 0, 0b11]);
    }

    #[test]
    fn sender_report_layout() {
        let mut buf = [0u8; 64];
        let n = write_sender_report(
            &mut buf,
            0x0102_0304,
            0x1122_3344_5566_7788,
            9,
            10,
            11,
            "ab",
        )
        .unwrap();
        // SR 28 + SDES (4 + 4 + 2 + 2 + 1 null -> 16).
        assert_eq!(n, 28 + 16);
        assert_eq!(&buf[..4], &[0x80, 200, 0, 6]);
        assert_eq!(
            &buf[8..16],
            &[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]
        );
        assert_eq!(
            &buf[28..44],
            &[0x81, 202, 0, 3, 1, 2, 3, 4, 1, 2, b'a', b'b', 0, 0, 0, 0]
        );
    }

    #[test]
    fn sdes_always_has_a_null_terminator() {
        let mut buf = [0xffu8; 32];
        // 4 + 2 + 2 = 8: exactly aligned text still needs a null word.
        let n = write_sdes_cname(&mut buf, 7, "xy").unwrap();
        assert_eq!(n, 16);
        assert_eq!(&buf[12..16], &[0, 0, 0, 0]);
        let n = write_sdes_cname(&mut buf, 7, "x").unwrap();
        assert_eq!(n, 12);
        assert_eq!(buf[11], 0);
    }

    #[test]
    fn errors() {
        let mut small = [0u8; 11];
        assert!(matches!(
            write_pli(&mut small, 1, 2),
            Err(Error::BufferTooSmall {
                needed: 12,
                have: 11
            })
        ));
        assert!(matches!(
            write_nack(&mut [0u8; 64], 1, 2, &[]),
            Err(Error::InvalidArgument(_))
        ));
        let long = "x".repeat(256);
        assert!(matches!(
            write_sender_report(&mut [0u8; 400], 1, 0, 0, 0, 0, &long),
            Err(Error::InvalidArgument(_))
        ));
        let blocks = [ReportBlock::default(); 32];
        assert!(matches!(
            write_receiver_report(&mut [0u8; 1024], 1, &blocks),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn cumulative_lost_is_clamped_to_24_bits() {
        let mut buf = [0u8; 32];
        let b = ReportBlock {
            cumulative_lost: -1,
            fraction_lost: 0x40,
            ..Default::default()
        };
        write_receiver_report(&mut buf, 1, &[b]).unwrap();
        assert_eq!(&buf[12..16], &[0x40, 0xff, 0xff, 0xff]);
        let b = ReportBlock {
            cumulative_lost: i32::MAX,
            ..Default::default()
        };
        write_receiver_report(&mut buf, 1, &[b]).unwrap();
        assert_eq!(&buf[12..16], &[0, 0x7f, 0xff, 0xff]);
    }
}
