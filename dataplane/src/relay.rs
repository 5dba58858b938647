//! Shard-to-shard stream replication (DESIGN.md §2): a stream lives on the
//! shard that accepted its RTMP connection (its home); a shard that has
//! viewers of it receives its packets once over a bounded queue and fans
//! them out locally. Packets are `Bytes`, so relaying costs a refcount, not
//! a copy.
//!
//! Each ordered pair of shards has one queue (single producer, single
//! consumer); each shard has an eventfd its producers write after pushing,
//! which its io_uring loop waits on, so relayed media is handled at once
//! instead of at the next tick.

use crate::core::stream::Kind;
use crate::core::streams::StreamId;
use crate::hls::HlsSnapshot;
use crate::send_clock::SendClock;
use crate::flv_gop::{FlvGop, FlvTag};
use bytes::Bytes;
use crossbeam_queue::ArrayQueue;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Instant;

/// Messages in flight between shards; bounded so a stuck shard cannot grow
/// another's memory.
const QUEUE_DEPTH: usize = 4096;

pub enum RelayMsg {
    /// Viewer shard -> home shard: start sending me this stream; address
    /// it to my stream `replica`.
    Subscribe { key: String, from: usize, replica: StreamId },
    /// Viewer shard -> home shard: I have no viewers of it any more.
    Unsubscribe { key: String, from: usize },
    /// Home -> subscriber, first answer to Subscribe: the GOP cache so the
    /// replica can start its viewers at once, and the home's send clocks
    /// (video, audio) so a viewer that switched to the replica before it
    /// was fed is re-based by them (`TrackOut::rebase_with`).
    Snapshot { stream: StreamId, gop: Vec<Bytes>, anchor: Option<(Instant, i64)>, flv: Box<FlvGop>, clocks: Box<(SendClock, SendClock)> },
    /// Home -> subscriber: new packets of one track (one frame, usually),
    /// shared with the home's own fan-out and every other subscriber.
    Packets { stream: StreamId, kind: Kind, packets: Arc<[Bytes]>, keyframe: bool, anchor: Option<(Instant, i64)> },
    /// Home -> subscriber: the stream is not (or no longer) published.
    Ended { stream: StreamId },
    /// Home -> subscriber: one of the publisher's FLV tags (its encoding
    /// shared, not copied), for the subscriber's FLV viewers and cache.
    FlvTag { stream: StreamId, tag: FlvTag },
    /// Publishing shard -> every other shard: stream `key` is published on
    /// `home` now (Some), or no longer (None). How a shard finds the home
    /// of a stream an HTTP-FLV viewer asks it for.
    Home { key: String, home: Option<usize> },
    /// Serving shard -> home shard: send me stream `key`'s LL-HLS
    /// snapshots (or stop).
    HlsSubscribe { key: String, from: usize },
    HlsUnsubscribe { key: String, from: usize },
    /// Home -> serving shards: what to serve of `key` now (shared, not
    /// copied); `live` false: the stream is not published (any more).
    HlsUpdate { key: String, snapshot: Option<Arc<HlsSnapshot>>, live: bool },
}

impl RelayMsg {
    /// Media can be dropped when a queue is full (the viewers see loss);
    /// every other message changes state on the other side and must not.
    pub fn is_media(&self) -> bool {
        matches!(self, RelayMsg::Packets { .. } | RelayMsg::FlvTag { .. })
    }
}

/// The queues and wake-up fds of all shards, shared read-only.
pub struct RelayMesh {
    shards: usize,
    /// queues[from * shards + to]
    queues: Vec<ArrayQueue<RelayMsg>>,
    wake: Vec<OwnedFd>,
}

impl RelayMesh {
    pub fn new(shards: usize) -> std::io::Result<Arc<RelayMesh>> {
        let mut wake = Vec::with_capacity(shards);
        for _ in 0..shards {
            // SAFETY: plain eventfd creation; the fd is owned right away.
            let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // SAFETY: fd is a fresh descriptor we own.
            wake.push(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let queues = (0..shards * shards).map(|_| ArrayQueue::new(QUEUE_DEPTH)).collect();
        Ok(Arc::new(RelayMesh { shards, queues, wake }))
    }

    pub fn shards(&self) -> usize {
        self.shards
    }

    pub fn wake_fd(&self, shard: usize) -> RawFd {
        self.wake[shard].as_raw_fd()
    }

    /// Queues a message for `to` and wakes it. Returns the message if the
    /// queue is full (the caller counts the drop).
    pub fn send(&self, from: usize, to: usize, msg: RelayMsg) -> Result<(), RelayMsg> {
        let Some(q) = self.queues.get(from * self.shards + to).filter(|_| from < self.shards && to < self.shards) else {
            return Err(msg);
        };
        q.push(msg)?;
        let one: u64 = 1;
        // SAFETY: writing 8 bytes from a live u64 to our eventfd.
        unsafe { libc::write(self.wake[to].as_raw_fd(), (&one as *const u64).cast(), 8) };
        Ok(())
    }

    /// Next message for shard `me` from any other shard.
    pub fn recv(&self, me: usize, from: usize) -> Option<RelayMsg> {
        self.queues.get(from * self.shards + me)?.pop()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queues_are_per_pair_and_bounded() {
        let mesh = RelayMesh::new(3).unwrap();
        let unsub = |key: &str| RelayMsg::Unsubscribe { key: key.into(), from: 0 };
        mesh.send(0, 2, unsub("a")).ok().unwrap();
        mesh.send(1, 2, unsub("b")).ok().unwrap();
        assert!(mesh.recv(2, 1).is_some_and(|m| matches!(m, RelayMsg::Unsubscribe { key, .. } if key == "b")));
        assert!(mesh.recv(2, 0).is_some_and(|m| matches!(m, RelayMsg::Unsubscribe { key, .. } if key == "a")));
        assert!(mesh.recv(2, 0).is_none());
        assert!(mesh.recv(0, 2).is_none(), "direction matters");
        // The wake fd was written.
        let mut v = 0u64;
        // SAFETY: reading 8 bytes into a live u64 from our eventfd.
        let n = unsafe { libc::read(mesh.wake_fd(2), (&mut v as *mut u64).cast(), 8) };
        assert_eq!((n, v), (8, 2));
        for i in 0..QUEUE_DEPTH {
            assert!(mesh.send(0, 1, unsub(&i.to_string())).is_ok());
        }
        assert!(mesh.send(0, 1, unsub("overflow")).is_err(), "full queue hands the message back");
        assert!(matches!(mesh.send(0, 7, unsub("x")), Err(RelayMsg::Unsubscribe { key, .. }) if key == "x"), "bad shard: message returned");
        assert!(!unsub("x").is_media());
        assert!(RelayMsg::Packets { stream: StreamId::DANGLING, kind: Kind::Audio, packets: Arc::from([]), keyframe: false, anchor: None }.is_media());
    }
}
