//! SPSC ring halves over a ring inside the shared mapping.
//!
//! Protocol: the producer owns `head`, the consumer owns `tail`; both are
//! monotonically increasing u64 message counts (no ABA, no wrap in practice),
//! and a slot is `index & (slots - 1)`. The producer fills a slot and then
//! Release-stores `head`; the consumer Acquire-loads `head`, reads the slot
//! and then Release-stores `tail`, which hands the slot back. Both halves
//! load their own index from shared memory when created, so a restarted
//! process continues exactly where the previous one stopped.
//!
//! The other side is a different process that may be buggy, so the consumer
//! never trusts a slot's length prefix or the distance between the indices:
//! both only ever select bytes *inside* this ring's slot array.

use std::ptr;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::futex;
use super::layout::{LEN_PREFIX, OFF_CTL_DOORBELL, OFF_CTL_WAITERS, RING_DOORBELL, RING_HEAD, RING_SLOTS, RING_TAIL, RING_WAITERS};
use super::region::Inner;

/// Why a message was not enqueued. The caller still owns the bytes, so
/// nothing is dropped silently; it decides whether to retry or shed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// Every slot is occupied; the consumer is behind.
    #[error("ring is full")]
    Full,
    /// The message exceeds [`Producer::max_message_len`]; it can never fit.
    #[error("message larger than a ring slot")]
    TooLarge,
}

/// One ring of the region: a handle on the mapping plus the ring's offset.
#[derive(Debug)]
pub(super) struct RingRef {
    inner: Arc<Inner>,
    off: usize,
    /// A `shard_to_ctl` ring: its producer also rings the region's control
    /// doorbell, which [`wait_any`] sleeps on.
    grouped: bool,
}

impl RingRef {
    pub(super) fn new(inner: Arc<Inner>, off: usize, grouped: bool) -> RingRef {
        RingRef { inner, off, grouped }
    }

    fn group_doorbell(&self) -> &AtomicU32 {
        self.inner.atomic_u32(OFF_CTL_DOORBELL)
    }

    fn group_waiters(&self) -> &AtomicU32 {
        self.inner.atomic_u32(OFF_CTL_WAITERS)
    }

    fn head(&self) -> &AtomicU64 {
        self.inner.atomic_u64(self.off + RING_HEAD)
    }

    fn tail(&self) -> &AtomicU64 {
        self.inner.atomic_u64(self.off + RING_TAIL)
    }

    fn doorbell(&self) -> &AtomicU32 {
        self.inner.atomic_u32(self.off + RING_DOORBELL)
    }

    fn waiters(&self) -> &AtomicU32 {
        self.inner.atomic_u32(self.off + RING_WAITERS)
    }

    fn slots(&self) -> u64 {
        u64::from(self.inner.layout.slots)
    }

    fn max_message_len(&self) -> usize {
        self.inner.layout.max_message_len()
    }

    /// Start of the slot for message `index`. The mask keeps any index,
    /// however corrupt, inside this ring's slot array.
    fn slot(&self, index: u64) -> *mut u8 {
        let l = &self.inner.layout;
        let i = (index & (u64::from(l.slots) - 1)) as usize;
        let off = self.off + RING_SLOTS + i * l.slot_size as usize;
        debug_assert!(off + l.slot_size as usize <= self.inner.map_len());
        self.inner.base().wrapping_add(off)
    }
}

/// Blocks up to `timeout` until any of `consumers` (the `shard_to_ctl`
/// rings of one region: control's side) has a message; returns true if one
/// does. One futex word for all of them, rung by every shard's producer while
/// our waiter flag is set (the same handshake as [`Consumer::wait`]).
pub fn wait_any(consumers: &[Consumer], timeout: Duration) -> bool {
    let Some(first) = consumers.first() else { return false };
    let ready = || consumers.iter().any(|c| !c.is_empty());
    if ready() {
        return true;
    }
    let deadline = Instant::now().checked_add(timeout);
    let (doorbell, waiters) = (first.ring.group_doorbell(), first.ring.group_waiters());
    let got = loop {
        let seq = doorbell.load(Ordering::Acquire);
        waiters.store(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if ready() {
            break true;
        }
        let remaining = match deadline {
            Some(d) => d.saturating_duration_since(Instant::now()),
            None => Duration::from_secs(3600),
        };
        if remaining.is_zero() {
            break false;
        }
        futex::wait(doorbell, seq, remaining);
    };
    waiters.store(0, Ordering::Relaxed);
    got || ready()
}

/// Writing half of a ring. `Send` so it can move to its shard's thread; not
/// `Clone`, because a second writer would break the single-producer protocol.
#[derive(Debug)]
pub struct Producer {
    ring: RingRef,
    /// Our copy of `head` (we are its only writer).
    head: u64,
    /// Last `tail` seen; refreshed only when the ring looks full, so the
    /// common push touches no line the consumer writes.
    cached_tail: u64,
}

impl Producer {
    pub(super) fn new(ring: RingRef) -> Producer {
        let head = ring.head().load(Ordering::Acquire);
        let cached_tail = ring.tail().load(Ordering::Acquire);
        Producer {
            ring,
            head,
            cached_tail,
        }
    }

    /// Copies `msg` into the next slot and publishes it. Wakes a sleeping
    /// consumer only if one announced itself, so the fast path makes no
    /// syscall.
    pub fn try_push(&mut self, msg: &[u8]) -> Result<(), PushError> {
        if msg.len() > self.ring.max_message_len() {
            return Err(PushError::TooLarge);
        }
        let slots = self.ring.slots();
        // `wrapping_sub` plus `>=` also treats a corrupt tail (ahead of head)
        // as full rather than overwriting unread slots.
        if self.head.wrapping_sub(self.cached_tail) >= slots {
            self.cached_tail = self.ring.tail().load(Ordering::Acquire);
            if self.head.wrapping_sub(self.cached_tail) >= slots {
                return Err(PushError::Full);
            }
        }
        let slot = self.ring.slot(self.head);
        // Fits: len <= slot_size - 4 < u32::MAX.
        let len = (msg.len() as u32).to_le_bytes();
        // SAFETY: `slot` points at `slot_size` bytes inside the live mapping
        // (kept alive by `self.ring.inner`), and LEN_PREFIX + msg.len() <=
        // slot_size was checked above. The consumer released this slot (we
        // Acquire-loaded a tail past it) and will not read it before the
        // Release store of `head` below, so no one else touches these bytes.
        unsafe {
            ptr::copy_nonoverlapping(len.as_ptr(), slot, LEN_PREFIX);
            ptr::copy_nonoverlapping(msg.as_ptr(), slot.add(LEN_PREFIX), msg.len());
        }
        self.head = self.head.wrapping_add(1);
        self.ring.head().store(self.head, Ordering::Release);
        self.notify();
        Ok(())
    }

    /// Dekker-style handshake with [`Consumer::wait`]: our head store and the
    /// consumer's waiter-flag store are each followed by a SeqCst fence
    /// before reading the other's, so at least one side sees the other and a
    /// wake-up cannot be lost.
    fn notify(&self) {
        fence(Ordering::SeqCst);
        if self.ring.waiters().load(Ordering::Relaxed) != 0 {
            self.ring.doorbell().fetch_add(1, Ordering::Release);
            futex::wake(self.ring.doorbell(), i32::MAX);
        }
        if self.ring.grouped && self.ring.group_waiters().load(Ordering::Relaxed) != 0 {
            self.ring.group_doorbell().fetch_add(1, Ordering::Release);
            futex::wake(self.ring.group_doorbell(), i32::MAX);
        }
    }

    /// Slots free right now (reads the consumer's tail).
    pub fn free_slots(&self) -> u32 {
        let tail = self.ring.tail().load(Ordering::Acquire);
        let used = self.head.wrapping_sub(tail);
        // A corrupt tail reads as "no space", matching `try_push`.
        self.ring.slots().saturating_sub(used) as u32
    }

    /// Largest message [`Producer::try_push`] accepts: `slot_size - 4`.
    pub fn max_message_len(&self) -> usize {
        self.ring.max_message_len()
    }
}

/// Reading half of a ring. `Send`, not `Clone` (single consumer).
#[derive(Debug)]
pub struct Consumer {
    ring: RingRef,
    /// Our copy of `tail` (we are its only writer).
    tail: u64,
    /// Last `head` seen; refreshed only when we have caught up with it.
    cached_head: u64,
    /// Slots skipped because their contents or the indices were invalid.
    corrupt: u64,
}

impl Consumer {
    pub(super) fn new(ring: RingRef) -> Consumer {
        let tail = ring.tail().load(Ordering::Acquire);
        Consumer {
            ring,
            tail,
            cached_head: tail,
            corrupt: 0,
        }
    }

    /// Calls `f` with the next message (borrowed from shared memory, no copy)
    /// and then releases the slot. Slots whose length prefix is impossible are
    /// skipped, logged and counted in [`Consumer::corrupt_skipped`]. If `f`
    /// panics (or the process dies inside it) the slot is not released, so
    /// the message is delivered again to the next reader.
    pub fn pop_with<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        loop {
            if self.tail == self.cached_head {
                self.cached_head = self.ring.head().load(Ordering::Acquire);
                if self.tail == self.cached_head {
                    return None;
                }
                let avail = self.cached_head.wrapping_sub(self.tail);
                if avail > self.ring.slots() {
                    // The producer published an impossible head (behind us
                    // or more than a ring ahead). Nothing in between can be
                    // trusted; resynchronise on its head.
                    tracing::warn!(
                        head = self.cached_head,
                        tail = self.tail,
                        "shm ring: producer index out of range, resynchronising"
                    );
                    self.corrupt += 1;
                    self.tail = self.cached_head;
                    self.ring.tail().store(self.tail, Ordering::Release);
                    return None;
                }
            }
            let slot = self.ring.slot(self.tail);
            // SAFETY: the first LEN_PREFIX bytes of the slot lie inside the
            // mapping (slot_size >= 8); [u8; 4] has alignment 1.
            let raw_len = unsafe { ptr::read(slot.cast::<[u8; LEN_PREFIX]>()) };
            let len = u32::from_le_bytes(raw_len) as usize;
            if len > self.ring.max_message_len() {
                tracing::warn!(
                    index = self.tail,
                    len,
                    "shm ring: corrupt length prefix, skipping slot"
                );
                self.corrupt += 1;
                self.release();
                continue;
            }
            // SAFETY: LEN_PREFIX + len <= slot_size, so the range is inside
            // this slot of the live mapping. The producer published it with a
            // Release store of `head` that we Acquire-loaded, and will not
            // write it again until `release` hands it back. The borrow cannot
            // escape: `f` is generic over the slice's lifetime.
            let msg = unsafe { std::slice::from_raw_parts(slot.add(LEN_PREFIX), len) };
            let r = f(msg);
            self.release();
            return Some(r);
        }
    }

    fn release(&mut self) {
        self.tail = self.tail.wrapping_add(1);
        self.ring.tail().store(self.tail, Ordering::Release);
    }

    /// True if no message is waiting.
    pub fn is_empty(&self) -> bool {
        self.ring.head().load(Ordering::Acquire) == self.tail
    }

    /// Number of slots skipped as corrupt since this half was created.
    pub fn corrupt_skipped(&self) -> u64 {
        self.corrupt
    }

    /// Blocks up to `timeout` until the ring is non-empty; returns true if a
    /// message is available. Sleeps on a shared futex word that producers
    /// only ring while our waiter flag is set. Reads the monotonic clock,
    /// which is fine here: this is the I/O edge, not protocol code.
    pub fn wait(&self, timeout: Duration) -> bool {
        if !self.is_empty() {
            return true;
        }
        let deadline = Instant::now().checked_add(timeout);
        let doorbell = self.ring.doorbell();
        let waiters = self.ring.waiters();
        let ready = loop {
            let seq = doorbell.load(Ordering::Acquire);
            waiters.store(1, Ordering::Relaxed);
            fence(Ordering::SeqCst);
            if !self.is_empty() {
                break true;
            }
            let remaining = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            if remaining.is_zero() {
                break false;
            }
            // Returns at once if a producer rang since we read `seq`.
            futex::wait(doorbell, seq, remaining);
        };
        waiters.store(0, Ordering::Relaxed);
        ready || !self.is_empty()
    }
}
