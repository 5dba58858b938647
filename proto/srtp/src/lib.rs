//! Sans-IO SRTP/SRTCP for rts (RFC 3711, RFC 7714, keyed by RFC 5764).
//!
//! Two protection profiles: `AEAD_AES_128_GCM` (preferred) and
//! `AES_CM_128_HMAC_SHA1_80` (mandatory fallback), both on aws-lc-rs.
//!
//! This sits on the fan-out hot path — every outgoing packet is protected
//! once per viewer — so an [`SrtpContext`] expands all key schedules in
//! [`SrtpContext::new`], and the protect/unprotect calls work in
//! caller-provided buffers with no heap allocation (a `Vec` entry is only
//! added the first time an SSRC is seen). There is no I/O and no clock.
//!
//! ```
//! use rts_srtp::{Profile, SrtpContext};
//! let key = [7u8; 16];
//! let salt = [9u8; 12];
//! let mut tx = SrtpContext::new(Profile::AeadAes128Gcm, &key, &salt).unwrap();
//! let mut rx = SrtpContext::new(Profile::AeadAes128Gcm, &key, &salt).unwrap();
//! let header = [0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 42];
//! let mut buf = [0u8; 1500];
//! let n = tx.protect_rtp(&header, b"hello", &mut buf).unwrap();
//! let m = rx.unprotect_rtp(&mut buf[..n]).unwrap();
//! assert_eq!(&buf[12..m], b"hello");
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod context;
mod error;
mod header;
mod kdf;
mod profile;
mod replay;
mod transform;

#[cfg(test)]
mod tests;

pub use context::{SrtpContext, MAX_SSRCS};
pub use error::Error;
pub use header::rtp_header_len;
pub use profile::{KeyingMaterial, Profile};
