//! Receiver side (players, test tools): RTP H.264 packets in, access units
//! out.

use std::collections::VecDeque;

use super::{nal_type, NAL_FU_A, NAL_IDR, NAL_STAP_A};
use crate::RtpHeader;

/// A frame's NAL payload is capped so a peer that never sets the marker
/// bit or changes the timestamp cannot grow memory without bound.
const MAX_FRAME_BYTES: usize = 16 << 20;

/// One reassembled access unit.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frame {
    /// RTP timestamp shared by the frame's packets.
    pub timestamp: u32,
    /// NAL units without start codes, in arrival order.
    pub nalus: Vec<Vec<u8>>,
    /// Any NAL unit is an IDR slice.
    pub keyframe: bool,
    /// No sequence gap, no broken FU-A, no malformed payload, and the frame
    /// ended with the marker bit. An incomplete frame is still reported so
    /// callers can count it or request a keyframe, but must not be decoded
    /// as if it were whole.
    pub complete: bool,
}

/// Reassembles single NAL, STAP-A and FU-A packets (RFC 6184, mode 1).
///
/// Packets are expected in sequence order: there is no jitter buffer here.
/// Duplicates and packets older than the last one seen are dropped; a
/// forward jump in sequence numbers marks the frame in progress (and a frame
/// starting right after the jump) incomplete.
///
/// A frame ends at its marker bit, or, if the marker was lost, when a packet
/// with a new timestamp arrives. One `push` can therefore finish two frames;
/// `push` returns the first and [`H264Depacketizer::poll_frame`] the rest.
#[derive(Debug, Default)]
pub struct H264Depacketizer {
    last_sequence: Option<u16>,
    current: Option<Partial>,
    ready: VecDeque<Frame>,
}

#[derive(Debug)]
struct Partial {
    timestamp: u32,
    nalus: Vec<Vec<u8>>,
    /// FU-A reassembly in progress (starts with the rebuilt NAL header).
    fragment: Option<Vec<u8>>,
    bytes: usize,
    broken: bool,
}

impl Partial {
    fn new(timestamp: u32, broken: bool) -> Self {
        Partial {
            timestamp,
            nalus: Vec::new(),
            fragment: None,
            bytes: 0,
            broken,
        }
    }

    fn add(&mut self, nalu: Vec<u8>) {
        if nalu.is_empty() {
            self.broken = true;
            return;
        }
        self.bytes += nalu.len();
        if self.bytes > MAX_FRAME_BYTES {
            self.broken = true;
            self.nalus.clear();
            return;
        }
        self.nalus.push(nalu);
    }

    fn finish(self, marker: bool) -> Frame {
        let keyframe = self.nalus.iter().any(|n| nal_type(n) == Some(NAL_IDR));
        Frame {
            timestamp: self.timestamp,
            complete: marker && !self.broken && self.fragment.is_none(),
            keyframe,
            nalus: self.nalus,
        }
    }

    fn push_payload(&mut self, payload: &[u8]) {
        let Some(&first) = payload.first() else {
            self.broken = true;
            return;
        };
        match first & 0x1f {
            1..=23 => {
                self.drop_fragment();
                self.add(payload.to_vec());
            }
            NAL_STAP_A => {
                self.drop_fragment();
                self.push_stap_a(&payload[1..]);
            }
            NAL_FU_A => self.push_fu_a(payload),
            // 0, 25..=27 (STAP-B, MTAPs), 29 (FU-B), 30, 31: not mode 1.
            _ => self.broken = true,
        }
    }

    /// A fragment left open when another packet type arrives lost its end.
    fn drop_fragment(&mut self) {
        if self.fragment.take().is_some() {
            self.broken = true;
        }
    }

    fn push_stap_a(&mut self, mut rest: &[u8]) {
        if rest.is_empty() {
            self.broken = true;
        }
        while !rest.is_empty() {
            let Some((len, tail)) = rest.split_first_chunk::<2>() else {
                self.broken = true;
                return;
            };
            let len = usize::from(u16::from_be_bytes(*len));
            let Some((nalu, tail)) = tail.split_at_checked(len) else {
                self.broken = true;
                return;
            };
            self.add(nalu.to_vec());
            rest = tail;
        }
    }

    fn push_fu_a(&mut self, payload: &[u8]) {
        let [indicator, fu_header, body @ ..] = payload else {
            self.broken = true;
            return;
        };
        let start = fu_header & 0x80 != 0;
        let end = fu_header & 0x40 != 0;
        if start {
            self.drop_fragment();
            let mut nalu = Vec::with_capacity(1 + body.len());
            nalu.push((indicator & 0xe0) | (fu_header & 0x1f));
            nalu.extend_from_slice(body);
            self.fragment = Some(nalu);
        } else if let Some(fragment) = self.fragment.as_mut() {
            if self.bytes + fragment.len() + body.len() > MAX_FRAME_BYTES {
                self.fragment = None;
                self.broken = true;
                return;
            }
            fragment.extend_from_slice(body);
        } else {
            // Middle or end without a start: the start was lost.
            self.broken = true;
            return;
        }
        if end {
            if let Some(nalu) = self.fragment.take() {
                self.add(nalu);
            }
        }
    }
}

impl H264Depacketizer {
    /// An empty depacketizer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one packet (`payload` is the RTP payload, padding removed).
    /// Returns a frame when this packet finished one.
    pub fn push(&mut self, header: &RtpHeader, payload: &[u8]) -> Option<Frame> {
        let gap = match self.last_sequence {
            Some(last) => {
                let delta = header.sequence.wrapping_sub(last) as i16;
                if delta <= 0 {
                    return self.ready.pop_front(); // duplicate or late
                }
                delta > 1
            }
            None => false,
        };
        self.last_sequence = Some(header.sequence);

        if self
            .current
            .as_ref()
            .is_some_and(|p| p.timestamp != header.timestamp)
        {
            if let Some(done) = self.current.take() {
                self.ready.push_back(done.finish(false));
            }
        }
        let partial = match &mut self.current {
            Some(p) => {
                p.broken |= gap;
                p
            }
            None => self.current.insert(Partial::new(header.timestamp, gap)),
        };
        partial.push_payload(payload);
        if header.marker {
            if let Some(done) = self.current.take() {
                self.ready.push_back(done.finish(true));
            }
        }
        self.ready.pop_front()
    }

    /// Frames finished by the last `push` beyond the one it returned.
    pub fn poll_frame(&mut self) -> Option<Frame> {
        self.ready.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(seq: u16, ts: u32, marker: bool) -> RtpHeader {
        RtpHeader {
            marker,
            sequence: seq,
            timestamp: ts,
            ..Default::default()
        }
    }

    #[test]
    fn stap_a_is_split() {
        let mut d = H264Depacketizer::new();
        let f = d
            .push(
                &header(1, 9, true),
                &[0x78, 0, 2, 0x67, 1, 0, 1, 0x68, 0, 2, 0x65, 2],
            )
            .unwrap();
        assert_eq!(f.nalus, vec![vec![0x67, 1], vec![0x68], vec![0x65, 2]]);
        assert!(f.complete && f.keyframe);
    }

    #[test]
    fn malformed_payloads_make_the_frame_incomplete() {
        let bad: [&[u8]; 5] = [
            &[],                 // empty payload
            &[0x78, 0, 5, 0x67], // STAP-A size past the end
            &[0x78, 0],          // STAP-A truncated size
            &[0x7c],             // FU-A without FU header
            &[0x79, 0, 0],       // STAP-B: not packetization-mode 1
        ];
        for (i, payload) in bad.iter().enumerate() {
            let mut d = H264Depacketizer::new();
            let f = d.push(&header(i as u16, 1, true), payload).unwrap();
            assert!(!f.complete, "case {i}");
        }
    }

    #[test]
    fn unterminated_fragment_is_incomplete() {
        let mut d = H264Depacketizer::new();
        assert!(d.push(&header(1, 5, false), &[0x7c, 0x85, 1, 2]).is_none());
        let f = d.push(&header(2, 5, true), &[0x41, 9]).unwrap();
        assert!(!f.complete);
        assert_eq!(f.nalus, vec![vec![0x41, 9]]);
        // FU-A start, end in the next packet: rebuilt NAL header.
        assert!(d.push(&header(3, 6, false), &[0x7c, 0x85, 1, 2]).is_none());
        let f = d.push(&header(4, 6, true), &[0x7c, 0x45, 3]).unwrap();
        assert!(f.complete && f.keyframe);
        assert_eq!(f.nalus, vec![vec![0x65, 1, 2, 3]]);
    }
}
