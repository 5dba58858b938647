//! Sender side: one access unit in, RTP packets out.

use bytes::{Bytes, BytesMut};

use super::{is_keyframe, nal_type, NAL_AUD, NAL_FILLER, NAL_FU_A, NAL_PPS, NAL_SPS, NAL_STAP_A};
use crate::header::{write_rtp_header, RTP_HEADER_LEN};
use crate::Error;

/// `(sps_list, pps_list)` to send in front of keyframes that lack them.
pub type ParameterSets<'a> = (&'a [Vec<u8>], &'a [Vec<u8>]);

/// Smallest usable packet: RTP header + FU indicator + FU header + 1 byte.
const MIN_PACKET_SIZE: usize = RTP_HEADER_LEN + 3;

/// Stateful H.264 packetizer for one outgoing stream (one SSRC).
///
/// It runs once per frame for all viewers, so it owns the sequence numbers
/// and the SR counters. Each frame's packets share one allocation: they are
/// written back to back into a single `BytesMut` and split off as `Bytes`.
#[derive(Debug, Clone)]
pub struct H264Packetizer {
    ssrc: u32,
    payload_type: u8,
    max_packet_size: usize,
    next_sequence: u16,
    packets_sent: u64,
    octets_sent: u64,
}

/// NAL units that never go on the wire: empty ones, AUD and filler (useless
/// over RTP), and types 0 and 24..=31, which H.264 leaves unspecified and
/// RTP receivers would misread as aggregation or fragmentation packets.
fn keep(nalu: &&[u8]) -> bool {
    match nal_type(nalu) {
        None | Some(0) | Some(NAL_AUD) | Some(NAL_FILLER) => false,
        Some(t) => t < 24,
    }
}

impl H264Packetizer {
    /// `max_packet_size` is the whole RTP packet including the 12-byte
    /// header (e.g. 1200, leaving room for SRTP and UDP/IP under the MTU).
    pub fn new(ssrc: u32, payload_type: u8, max_packet_size: usize, initial_sequence: u16) -> Self {
        H264Packetizer {
            ssrc,
            payload_type,
            max_packet_size,
            next_sequence: initial_sequence,
            packets_sent: 0,
            octets_sent: 0,
        }
    }

    /// Packetizes one access unit and appends its packets to `out`.
    ///
    /// `nalus` are NAL units without start codes or length prefixes. When
    /// the frame holds an IDR, `parameter_sets` is `Some((sps, pps))` and the
    /// frame does not itself carry both an SPS and a PPS, the parameter sets
    /// go first (as one STAP-A when they fit). AUD and filler NALs are
    /// dropped. Consecutive NALs that fit together are aggregated into a
    /// STAP-A, a lone small NAL goes as a single NAL unit packet and a NAL
    /// larger than the payload room is split into FU-A fragments. The marker
    /// bit is set on the frame's last packet. A frame with nothing to send
    /// emits no packets.
    pub fn packetize(
        &mut self,
        rtp_timestamp: u32,
        nalus: &[&[u8]],
        parameter_sets: Option<ParameterSets<'_>>,
        out: &mut Vec<Bytes>,
    ) -> Result<(), Error> {
        if self.max_packet_size < MIN_PACKET_SIZE {
            return Err(Error::MaxPacketSizeTooSmall(self.max_packet_size));
        }
        let frame = nalus.iter().copied().filter(keep);
        let carries_ps = frame.clone().any(|n| nal_type(n) == Some(NAL_SPS))
            && frame.clone().any(|n| nal_type(n) == Some(NAL_PPS));
        let inject = match parameter_sets {
            Some((sps, pps)) if !carries_ps && is_keyframe(nalus) => Some((sps, pps)),
            _ => None,
        };
        let ps = inject
            .into_iter()
            .flat_map(|(sps, pps)| sps.iter().chain(pps.iter()))
            .map(Vec::as_slice)
            .filter(keep);

        let mut buf = BytesMut::with_capacity(self.capacity_hint(frame.clone().chain(ps.clone())));
        self.emit_nalus(ps, rtp_timestamp, &mut buf, out);
        self.emit_nalus(frame, rtp_timestamp, &mut buf, out);
        if !buf.is_empty() {
            // The last packet is still pending in `buf`: mark it and send.
            buf[1] |= 0x80;
            out.push(buf.split().freeze());
        }
        Ok(())
    }

    /// Sequence number the next packet will carry.
    pub fn next_sequence(&self) -> u16 {
        self.next_sequence
    }

    /// Overrides the next sequence number (e.g. to continue a stream).
    pub fn set_next_sequence(&mut self, seq: u16) {
        self.next_sequence = seq;
    }

    /// Packets emitted so far (RTCP SR sender's packet count).
    pub fn packets_sent(&self) -> u64 {
        self.packets_sent
    }

    /// Payload octets emitted so far, excluding RTP headers (RTCP SR
    /// sender's octet count).
    pub fn octets_sent(&self) -> u64 {
        self.octets_sent
    }

    /// Upper bound on the bytes a frame's packets need, so that one
    /// allocation holds the whole frame.
    fn capacity_hint<'a>(&self, nalus: impl Iterator<Item = &'a [u8]>) -> usize {
        let fu_room = self.max_packet_size - RTP_HEADER_LEN - 2;
        nalus
            .map(|n| n.len() + RTP_HEADER_LEN + 3 + (n.len() / fu_room + 1) * (RTP_HEADER_LEN + 2))
            .sum()
    }

    /// Starts a new packet in `buf`, first handing the previous (pending)
    /// one to `out`. The last packet stays pending so the caller can set
    /// its marker bit without knowing in advance which packet is last.
    fn begin_packet(&mut self, ts: u32, buf: &mut BytesMut, out: &mut Vec<Bytes>) {
        if !buf.is_empty() {
            out.push(buf.split().freeze());
        }
        let mut hdr = [0u8; RTP_HEADER_LEN];
        write_rtp_header(
            &mut hdr,
            false,
            self.payload_type,
            self.next_sequence,
            ts,
            self.ssrc,
        );
        buf.extend_from_slice(&hdr);
        self.next_sequence = self.next_sequence.wrapping_add(1);
        self.packets_sent += 1;
    }

    fn payload(&mut self, buf: &mut BytesMut, bytes: &[u8]) {
        buf.extend_from_slice(bytes);
        self.octets_sent += bytes.len() as u64;
    }

    /// Greedy packing: each NAL that fits a packet opens a STAP-A with as
    /// many following NALs as fit; if none fits beside it, it goes alone.
    fn emit_nalus<'a, I>(&mut self, mut nalus: I, ts: u32, buf: &mut BytesMut, out: &mut Vec<Bytes>)
    where
        I: Iterator<Item = &'a [u8]> + Clone,
    {
        let room = self.max_packet_size - RTP_HEADER_LEN;
        while let Some(first) = nalus.next() {
            if first.len() > room {
                self.emit_fu_a(first, ts, buf, out);
                continue;
            }
            // STAP-A NAL sizes are 16-bit; only relevant for jumbo MTUs.
            let fits_stap = |n: &[u8]| n.len() <= usize::from(u16::MAX);
            let mut size = 1 + 2 + first.len();
            let mut extra = 0usize;
            let (mut f, mut nri) = (first[0] & 0x80, first[0] & 0x60);
            if fits_stap(first) {
                for n in nalus.clone() {
                    if !fits_stap(n) || size + 2 + n.len() > room {
                        break;
                    }
                    size += 2 + n.len();
                    extra += 1;
                    f |= n[0] & 0x80;
                    nri = nri.max(n[0] & 0x60);
                }
            }
            self.begin_packet(ts, buf, out);
            if extra == 0 {
                self.payload(buf, first);
                continue;
            }
            // STAP-A: F = OR of F bits, NRI = max NRI (RFC 6184 §5.7).
            self.payload(buf, &[f | nri | NAL_STAP_A]);
            for n in std::iter::once(first).chain(nalus.by_ref().take(extra)) {
                let len = u16::try_from(n.len()).unwrap_or(u16::MAX); // checked by fits_stap
                self.payload(buf, &len.to_be_bytes());
                self.payload(buf, n);
            }
        }
    }

    /// FU-A (RFC 6184 §5.8): the NAL header is split into an FU indicator
    /// (F, NRI, type 28) and an FU header (S, E, original type); fragments
    /// are as large as the packet allows, the last one takes the rest.
    fn emit_fu_a(&mut self, nalu: &[u8], ts: u32, buf: &mut BytesMut, out: &mut Vec<Bytes>) {
        let indicator = (nalu[0] & 0xe0) | NAL_FU_A;
        let nal_type = nalu[0] & 0x1f;
        let body = &nalu[1..];
        let chunk = self.max_packet_size - RTP_HEADER_LEN - 2;
        let count = body.len().div_ceil(chunk);
        for (i, part) in body.chunks(chunk).enumerate() {
            let start = if i == 0 { 0x80 } else { 0 };
            let end = if i + 1 == count { 0x40 } else { 0 };
            self.begin_packet(ts, buf, out);
            self.payload(buf, &[indicator, start | end | nal_type]);
            self.payload(buf, part);
        }
    }
}
