//! Sans-IO RTMP ingest for rts: one [`RtmpServerConn`] per TCP connection, plus FLV
//! audio/video tag parsing ([`flv`]).
//!
//! The dataplane shard's io_uring loop feeds the bytes it reads into
//! [`RtmpServerConn::handle_input`] and writes every [`RtmpOutput::Transmit`] it gets back
//! from [`RtmpServerConn::poll_output`]. Nothing here does I/O or reads a clock; `rml_rtmp`
//! provides the handshake, chunking and AMF0 codecs, and this crate guards its known panics
//! and unbounded recursion so that hostile input becomes an [`RtmpError`].
//!
//! ```
//! use rts_rtmp::{RtmpEvent, RtmpOutput, RtmpServerConn};
//! let mut conn = RtmpServerConn::new();
//! conn.handle_input(&[3]).unwrap(); // C0; C1 follows
//! while let Some(out) = conn.poll_output() {
//!     match out {
//!         RtmpOutput::Transmit(_bytes) => { /* write to the socket */ }
//!         RtmpOutput::Event(RtmpEvent::PublishRequested { request_id, .. }) => {
//!             conn.accept_publish(request_id).unwrap();
//!         }
//!         RtmpOutput::Event(_) => {}
//!     }
//! }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod amf;
mod conn;
mod error;
pub mod flv;
pub mod media;
mod url;

pub use conn::{RtmpEvent, RtmpOutput, RtmpServerConn, CHUNK_SIZE, WINDOW_ACK_SIZE};
pub use error::{FlvError, RtmpError};

/// Decodes an AMF0 command message body as the server reads every command
/// (bounded size and nesting, then name, transaction id, object, arguments):
/// the command's name and argument count, or why not. For the fuzzer
/// (`fuzz/amf_command`) and diagnostics.
pub fn decode_amf_command(body: &[u8]) -> Result<(String, usize), RtmpError> {
    let c = amf::command(amf::decode(body)?)?;
    Ok((c.name, c.args.len()))
}
