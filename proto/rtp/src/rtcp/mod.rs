//! RTCP: sender/receiver reports and SDES (RFC 3550), generic NACK and PLI
//! (RFC 4585), FIR (RFC 5104) and REMB (draft-alvestrand-rmcat-remb).
//!
//! Writers fill caller buffers and return the bytes written; the parser
//! walks a compound packet and skips what it does not know.

mod parse;
mod write;

pub use parse::{iter_compound, parse_compound, CompoundIter, NackLost, RawRtcp};
pub use write::{
    write_bye, write_fir, write_nack, write_pli, write_receiver_report, write_sdes_cname,
    write_sender_report,
};

/// Packet type: sender report.
pub const PT_SR: u8 = 200;
/// Packet type: receiver report.
pub const PT_RR: u8 = 201;
/// Packet type: source description.
pub const PT_SDES: u8 = 202;
/// Packet type: goodbye.
pub const PT_BYE: u8 = 203;
/// Packet type: transport-layer feedback (NACK, TWCC).
pub const PT_RTPFB: u8 = 205;
/// Packet type: payload-specific feedback (PLI, FIR, REMB).
pub const PT_PSFB: u8 = 206;

/// One reception report block (RFC 3550 §6.4.1), 24 bytes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    /// Source this block reports on.
    pub ssrc: u32,
    /// Fraction lost since the last report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative packets lost, 24-bit signed on the wire (duplicates can
    /// make it negative); writers clamp to that range.
    pub cumulative_lost: i32,
    /// Extended highest sequence number received (cycles << 16 | seq).
    pub highest_seq: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP time of the last SR received.
    pub lsr: u32,
    /// Delay since that SR, in 1/65536 s.
    pub dlsr: u32,
}

/// One packet of a compound RTCP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RtcpPacket {
    /// Sender report (PT 200).
    SenderReport {
        /// Sender SSRC.
        ssrc: u32,
        /// NTP timestamp, 32.32 fixed point.
        ntp: u64,
        /// RTP timestamp corresponding to `ntp`.
        rtp_ts: u32,
        /// Sender's packet count.
        packet_count: u32,
        /// Sender's payload octet count.
        octet_count: u32,
        /// Reception report blocks.
        reports: Vec<ReportBlock>,
    },
    /// Receiver report (PT 201).
    ReceiverReport {
        /// Reporter SSRC.
        ssrc: u32,
        /// Reception report blocks.
        reports: Vec<ReportBlock>,
    },
    /// Generic NACK (PT 205, FMT 1), expanded to the lost sequence numbers.
    Nack {
        /// SSRC of the packet's sender.
        sender_ssrc: u32,
        /// SSRC of the media source the losses refer to.
        media_ssrc: u32,
        /// Lost sequence numbers in FCI order.
        lost: Vec<u16>,
    },
    /// Picture loss indication (PT 206, FMT 1).
    Pli {
        /// SSRC of the packet's sender.
        sender_ssrc: u32,
        /// SSRC of the media source that should send a keyframe.
        media_ssrc: u32,
    },
    /// Full intra request (PT 206, FMT 4); one per FCI entry.
    Fir {
        /// SSRC of the packet's sender.
        sender_ssrc: u32,
        /// SSRC of the media source asked for a keyframe (from the FCI).
        media_ssrc: u32,
        /// Command sequence number; a repeat with the same number is the
        /// same request.
        seq_nr: u8,
    },
    /// Receiver estimated maximum bitrate (PT 206, FMT 15, "REMB").
    Remb {
        /// SSRC of the packet's sender.
        sender_ssrc: u32,
        /// Estimated bitrate in bits per second (saturating).
        bitrate_bps: u64,
        /// Media SSRCs the estimate applies to.
        ssrcs: Vec<u32>,
    },
    /// Goodbye (PT 203).
    Bye {
        /// Sources leaving.
        ssrcs: Vec<u32>,
    },
    /// Source description (PT 202); contents are not needed by the server.
    Sdes,
    /// Anything else, e.g. transport-wide CC (205/15) or XR (207).
    Other {
        /// Packet type.
        pt: u8,
        /// FMT or RC field (low 5 bits of the first byte).
        fmt: u8,
    },
}
