//! STUN for an ICE-lite WebRTC server (RFC 8489/5389, RFC 8445 ICE-lite,
//! RFC 7675 consent freshness), the client side a load generator needs,
//! and RFC 7983 first-byte demultiplexing of the shared media port.
//!
//! Sans-IO: no sockets, no clocks. ICE-lite keeps no per-check state, so
//! the server path is a pure function: [`classify`] the datagram,
//! [`StunMessage::parse`] it, look up the local ufrag from
//! [`split_username`], [`StunMessage::verify_integrity`] with that
//! session's ice-pwd, then [`write_binding_success`] into a caller buffer.
//! Consent checks (RFC 7675) are ordinary Binding requests and take the
//! same path; the caller records their arrival time for its own timeout.

#![forbid(unsafe_code)]

mod attr;
mod demux;
mod error;
mod integrity;
mod message;
mod writer;

pub use demux::{classify, PacketKind};
pub use error::Error;
pub use message::{Class, StunMessage};
pub use writer::{
    split_username, write_binding_error, write_binding_request, write_binding_success,
    BindingRequest, BINDING_SUCCESS_MAX_LEN,
};

/// Fixed STUN magic cookie (RFC 8489 §5); also the XOR mask for addresses.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// The only method ICE uses.
pub const METHOD_BINDING: u16 = 0x001;
/// STUN header size.
pub const HEADER_LEN: usize = 20;
