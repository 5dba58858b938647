//! Byte layout of the shared region and validation of its geometry.
//!
//! Everything here is plain arithmetic on offsets; it never touches the
//! mapping. The header is read from an untrusted file on attach, so every
//! size is validated with checked arithmetic before anything is mapped.

use super::{RingConfig, ShmError};

/// `"RTSSHM01"`: identifies the file as an rts ring region.
pub(super) const MAGIC: [u8; 8] = *b"RTSSHM01";

/// Cache-line granule. 128 rather than 64 because adjacent-line prefetch on
/// x86 (and 128-byte lines on some ARM cores) pulls lines in pairs; head and
/// tail on separate 128-byte blocks avoids false sharing between the two
/// processes.
pub(super) const LINE: usize = 128;

/// The header occupies exactly one line so the first ring starts aligned.
pub(super) const HEADER_LEN: usize = LINE;

// Header field offsets (all little-endian, naturally aligned).
pub(super) const OFF_MAGIC: usize = 0; // u64 (8 magic bytes)
pub(super) const OFF_VERSION: usize = 8; // u32
pub(super) const OFF_SHARDS: usize = 12; // u32
pub(super) const OFF_SLOTS: usize = 16; // u32
pub(super) const OFF_SLOT_SIZE: usize = 20; // u32
pub(super) const OFF_GENERATION: usize = 24; // u64
pub(super) const OFF_PID: usize = 32; // u32
pub(super) const OFF_TOTAL_LEN: usize = 40; // u64
/// Group doorbell of all `shard_to_ctl` rings: control sleeps on it once
/// for every shard (futex word, and non-zero while control sleeps).
pub(super) const OFF_CTL_DOORBELL: usize = 64; // u32
pub(super) const OFF_CTL_WAITERS: usize = 68; // u32

// Ring-relative offsets: head, tail and the doorbell words each get their
// own line; slots follow.
pub(super) const RING_HEAD: usize = 0; // u64, written by the producer only
pub(super) const RING_TAIL: usize = LINE; // u64, written by the consumer only
pub(super) const RING_DOORBELL: usize = 2 * LINE; // u32 futex word
pub(super) const RING_WAITERS: usize = 2 * LINE + 4; // u32, non-zero while a consumer sleeps
pub(super) const RING_SLOTS: usize = 3 * LINE;

/// Bytes of length prefix at the start of every slot.
pub(super) const LEN_PREFIX: usize = 4;

/// Upper bound on shards: far above any core count, low enough that a corrupt
/// header cannot make us reserve an absurd endpoint table.
pub(super) const MAX_SHARDS: usize = 4096;

/// Smallest slot: the length prefix plus at least four payload bytes.
pub(super) const MIN_SLOT_SIZE: u32 = 8;

/// Which of the two rings of a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dir {
    CtlToShard,
    ShardToCtl,
}

/// Validated geometry of a region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Layout {
    pub shards: usize,
    pub slots: u32,
    pub slot_size: u32,
    /// Distance between consecutive rings; a multiple of [`LINE`].
    pub ring_stride: usize,
    pub total_len: usize,
}

impl Layout {
    /// Validates a geometry and computes offsets. Used both for the
    /// dataplane's own config and for an attached file's header.
    pub fn new(cfg: &RingConfig) -> Result<Layout, ShmError> {
        if cfg.shards == 0 || cfg.shards > MAX_SHARDS {
            return Err(ShmError::InvalidConfig("shards must be in 1..=4096"));
        }
        if cfg.slots == 0 || !cfg.slots.is_power_of_two() {
            return Err(ShmError::InvalidConfig(
                "slots must be a non-zero power of two",
            ));
        }
        if cfg.slot_size < MIN_SLOT_SIZE {
            return Err(ShmError::InvalidConfig("slot_size must be at least 8"));
        }
        let too_big = ShmError::InvalidConfig("region size overflows");
        let slot_bytes = (cfg.slots as usize)
            .checked_mul(cfg.slot_size as usize)
            .ok_or(too_big)?;
        let ring_stride = RING_SLOTS
            .checked_add(slot_bytes)
            .and_then(|n| n.checked_next_multiple_of(LINE))
            .ok_or(ShmError::InvalidConfig("region size overflows"))?;
        let total_len = ring_stride
            .checked_mul(cfg.shards * 2)
            .and_then(|n| n.checked_add(HEADER_LEN))
            // The header stores it as u64 and the file length is u64.
            .filter(|&n| u64::try_from(n).is_ok())
            .ok_or(ShmError::InvalidConfig("region size overflows"))?;
        Ok(Layout {
            shards: cfg.shards,
            slots: cfg.slots,
            slot_size: cfg.slot_size,
            ring_stride,
            total_len,
        })
    }

    /// Byte offset of a ring from the start of the mapping. Rings are
    /// interleaved per shard: `[ctl_to_shard[0], shard_to_ctl[0], ...]`.
    pub fn ring_offset(&self, shard: usize, dir: Dir) -> usize {
        let idx = shard * 2 + usize::from(dir == Dir::ShardToCtl);
        HEADER_LEN + idx * self.ring_stride
    }

    /// Largest message a slot can carry.
    pub fn max_message_len(&self) -> usize {
        self.slot_size as usize - LEN_PREFIX
    }
}

/// Header as read from a file, before it is trusted.
#[derive(Debug, Clone, Copy)]
pub(super) struct RawHeader {
    pub magic: [u8; 8],
    pub version: u32,
    pub shards: u32,
    pub slots: u32,
    pub slot_size: u32,
    pub generation: u64,
    pub pid: u32,
    pub total_len: u64,
}

impl RawHeader {
    /// Decodes the fixed header bytes (no validation).
    pub fn decode(b: &[u8; HEADER_LEN]) -> RawHeader {
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u64_at = |o: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[o..o + 8]);
            u64::from_le_bytes(a)
        };
        let mut magic = [0u8; 8];
        magic.copy_from_slice(&b[OFF_MAGIC..OFF_MAGIC + 8]);
        RawHeader {
            magic,
            version: u32_at(OFF_VERSION),
            shards: u32_at(OFF_SHARDS),
            slots: u32_at(OFF_SLOTS),
            slot_size: u32_at(OFF_SLOT_SIZE),
            generation: u64_at(OFF_GENERATION),
            pid: u32_at(OFF_PID),
            total_len: u64_at(OFF_TOTAL_LEN),
        }
    }

    /// Checks magic and version; the first thing any reader must do.
    pub fn check_identity(&self) -> Result<(), ShmError> {
        if self.magic != MAGIC {
            return Err(ShmError::BadMagic);
        }
        if self.version != super::SHM_VERSION {
            return Err(ShmError::VersionMismatch {
                found: self.version,
                expected: super::SHM_VERSION,
            });
        }
        Ok(())
    }

    /// Full validation against a file of `file_len` bytes.
    pub fn validate(&self, file_len: u64) -> Result<Layout, ShmError> {
        self.check_identity()?;
        let cfg = RingConfig {
            shards: self.shards as usize,
            slots: self.slots,
            slot_size: self.slot_size,
        };
        let layout = Layout::new(&cfg).map_err(|e| match e {
            ShmError::InvalidConfig(why) => ShmError::BadHeader(why),
            other => other,
        })?;
        if layout.total_len as u64 != self.total_len {
            return Err(ShmError::BadHeader(
                "total length does not match shards/slots/slot_size",
            ));
        }
        if file_len < self.total_len {
            return Err(ShmError::Truncated {
                expected: self.total_len,
                actual: file_len,
            });
        }
        Ok(layout)
    }
}
