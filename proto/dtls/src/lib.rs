//! Sans-IO DTLS 1.2 endpoint for DTLS-SRTP (RFC 5764), built on OpenSSL.
//!
//! The control process runs the server side of every viewer's handshake: DTLS records
//! arrive from the dataplane over a ring, replies go back the same way, and once the
//! handshake completes the exported SRTP keys ([`SrtpExport`]) go to the dataplane.
//! The load generator uses the client side. No sockets and no clock reads here: the
//! caller passes `now` (see [`DtlsEndpoint`] for the one OpenSSL timer caveat).
//!
//! ```no_run
//! # fn main() -> Result<(), rts_dtls::Error> {
//! use rts_dtls::{DtlsCert, DtlsContext, DtlsEndpoint, Role};
//! let cert = DtlsCert::generate()?;                      // once, at start-up
//! let ctx = DtlsContext::new(&cert, Role::Server)?;      // once
//! let mut ep = DtlsEndpoint::new(&ctx)?;                 // per session
//! # let datagram = [0u8; 0]; let now = std::time::Instant::now();
//! ep.handle_datagram(&datagram, now)?;
//! while let Some(out) = ep.poll_datagram() { /* send */ let _ = out; }
//! while let Some(ev) = ep.poll_event() { /* Connected / Closed / Failed */ let _ = ev; }
//! # Ok(()) }
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod cert;
mod context;
mod endpoint;
mod error;
mod export;
mod ffi;
mod fingerprint;
mod io;
mod record;

pub use cert::DtlsCert;
pub use context::{DtlsContext, Role, SrtpProfile};
pub use endpoint::{DtlsEndpoint, DtlsEvent, MTU};
pub use error::Error;
pub use export::{
    SrtpExport, EXPORTER_LABEL, PROFILE_AEAD_AES_128_GCM, PROFILE_AES128_CM_SHA1_80,
};
pub use fingerprint::{certificate_fingerprint, HashFunction};
