//! RTP for the rts dataplane: packet headers, the H.264 payload format
//! (RFC 6184, packetization-mode 1), RTCP (RFC 3550, RFC 4585, RFC 5104) and
//! a depacketizer for players and test tools.
//!
//! Everything here is sans-IO: no sockets, no clock reads. Time (RTP
//! timestamps, NTP time for sender reports) is always passed in.
//!
//! The server packetizes each video frame once; every viewer receives the
//! same plaintext packets (same SSRC, sequence numbers and timestamps), so a
//! packet is one [`bytes::Bytes`] holding header and payload, and per-viewer
//! work is limited to [`set_payload_type`] on a copy plus SRTP.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
pub mod h264;
pub mod hdrext;
mod header;
mod ntp;
pub mod red;
pub mod rtcp;

pub use error::Error;
pub use header::{set_payload_type, write_rtp_header, RtpHeader, RTP_HEADER_LEN};
pub use ntp::unix_micros_to_ntp;
