//! Shared-memory SPSC rings between the dataplane and the control process.
//!
//! The dataplane creates one file (normally under `/dev/shm`) holding a
//! versioned header and, per shard, two fixed-slot rings: `ctl_to_shard[i]`
//! and `shard_to_ctl[i]`. Control attaches to it. Because the ring indices
//! live in the shared memory, control can die and a restarted control
//! re-attaches and continues: nothing is lost or duplicated except that a
//! message being read at the moment of death is delivered again.
//!
//! Messages are opaque bytes (the caller encodes them); each slot carries a
//! u32 length prefix. Pushing never blocks and never drops: a full ring
//! returns [`PushError::Full`] and the caller keeps the message.
//!
//! Layout (all offsets 128-byte aligned, little-endian):
//! ```text
//! header (128 B): magic "RTSSHM01" | version u32 | shards u32 | slots u32 |
//!                 slot_size u32 | generation u64 | dataplane pid u32 | pad |
//!                 total length u64 | pad | control doorbell u32 (at 64),
//!                 control waiters u32: every shard_to_ctl producer rings it,
//!                 so control sleeps once for all shards (`wait_any`)
//! ring × (2 × shards), ctl_to_shard[i] then shard_to_ctl[i]:
//!   head u64 (own 128 B) | tail u64 (own 128 B) | doorbell u32, waiters u32
//!   (own 128 B) | slots × slot_size, each [len u32 | payload]
//! ```
//!
//! `unsafe` is confined to the atomic views of the mapping, the two slot
//! copies and the futex syscalls, each with its justification.

mod futex;
mod layout;
mod region;
mod ring;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use region::ShmRegion;
pub use ring::{wait_any, Consumer, Producer, PushError};

/// Layout version in the header; bump on any incompatible layout change.
/// Layout version of the region, combined with the message-set version so a
/// control built from another release refuses to attach instead of misreading.
pub const SHM_VERSION: u32 = 1000 + crate::ipc::IPC_VERSION;

/// Geometry of a region, chosen by the dataplane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingConfig {
    /// Shards; each gets one ring per direction (1..=4096).
    pub shards: usize,
    /// Slots per ring; a non-zero power of two so an index maps to a slot by
    /// masking.
    pub slots: u32,
    /// Bytes per slot including the u32 length prefix, e.g. 4096; at least 8.
    /// The largest message is `slot_size - 4`. Slots are accessed bytewise,
    /// so no alignment is required.
    pub slot_size: u32,
}

/// Errors from creating or attaching a region.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShmError {
    /// An OS call on the region file failed.
    #[error("shm {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The dataplane's [`RingConfig`] is unusable.
    #[error("invalid shm ring config: {0}")]
    InvalidConfig(&'static str),
    /// The file does not start with the rts magic.
    #[error("not an rts shm region (bad magic)")]
    BadMagic,
    /// The region was created by an incompatible build.
    #[error("shm layout version {found}, this build expects {expected}")]
    VersionMismatch { found: u32, expected: u32 },
    /// The header's geometry is invalid or inconsistent.
    #[error("shm header invalid: {0}")]
    BadHeader(&'static str),
    /// The file is shorter than its header says (or than a header).
    #[error("shm file truncated: {actual} bytes, expected {expected}")]
    Truncated { expected: u64, actual: u64 },
    /// Another control process holds the attach lock.
    #[error("another control process is attached to this shm region")]
    AlreadyAttached,
}
