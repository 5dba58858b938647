//! Outgoing datagrams as the core builds them and the shell sends them:
//! many viewers' messages in one buffer, each message a run of packets of
//! one size (optionally ended by one shorter packet, the kernel's rule for
//! UDP_SEGMENT) to one destination. Pure memory, no syscalls: the core
//! fills a [`GsoBatch`], the shell hands its [`Transmit`]s to
//! `udp::UdpSender::send_many` (one `sendmmsg`) and clears it.

use std::net::{IpAddr, SocketAddr};

/// Kernel limit on segments per GSO send (UDP_MAX_SEGMENTS).
pub const MAX_GSO_SEGMENTS: usize = 64;
/// Keep a GSO super-datagram under the 64 KiB IP limit.
pub const MAX_GSO_BYTES: usize = 65_000;
/// Most messages handed to one `sendmmsg` (and held by one [`GsoBatch`]).
pub const MAX_MESSAGES: usize = 64;
/// Viewer messages per `sendmmsg` in the shard. More amortise the syscall
/// further, but the batch buffer (a ~8 KiB video frame per viewer) then
/// outgrows the L2 cache before the kernel copies it out.
pub const SHARD_BATCH_MESSAGES: usize = 16;
/// The shard's batch buffer: 16 frames of ~8 KiB plus room for one
/// largest message.
pub const SHARD_BATCH_BYTES: usize = 16 * 8192 + MESSAGE_ROOM;
/// Room a batch keeps for one more message of the largest size.
pub const MESSAGE_ROOM: usize = MAX_GSO_BYTES + 2048;

/// One message to send: `contents` leaves as `contents.len() / segment`
/// datagrams (the last may be shorter) from `src` (IP_PKTINFO) to `dst`.
#[derive(Debug, Clone, Copy)]
pub struct Transmit<'a> {
    pub dst: SocketAddr,
    pub src: Option<IpAddr>,
    pub contents: &'a [u8],
    pub segment: usize,
}

/// Packs protected packets into messages: each message (one viewer's
/// packets) is a GSO super-datagram of packets of one size, optionally
/// ended by one shorter packet. Many viewers' messages share one buffer and
/// leave in one `sendmmsg`.
pub struct GsoBatch {
    /// Fixed, zeroed once: `spare` hands out slices without re-zeroing
    /// (the SRTP output overwrites them anyway).
    buf: Box<[u8]>,
    /// Bytes used by closed messages and the open one.
    len: usize,
    max_messages: usize,
    closed_msgs: Vec<BatchMsg>,
    // The open message.
    start: usize,
    segment: usize,
    count: usize,
    closed: bool,
}

#[derive(Debug, Clone, Copy)]
struct BatchMsg {
    start: usize,
    end: usize,
    segment: usize,
    dst: SocketAddr,
    src: Option<IpAddr>,
}

impl GsoBatch {
    /// A batch of up to `max_messages` messages (1..=[`MAX_MESSAGES`]) in a
    /// buffer of `bytes` (at least room for one largest message).
    pub fn new(bytes: usize, max_messages: usize) -> GsoBatch {
        let max_messages = max_messages.clamp(1, MAX_MESSAGES);
        GsoBatch {
            buf: vec![0u8; bytes.max(MESSAGE_ROOM)].into_boxed_slice(),
            len: 0,
            max_messages,
            closed_msgs: Vec::with_capacity(max_messages),
            start: 0,
            segment: 0,
            count: 0,
            closed: false,
        }
    }

    /// The shard's batch: [`SHARD_BATCH_MESSAGES`] messages in
    /// [`SHARD_BATCH_BYTES`].
    pub fn for_shard() -> GsoBatch {
        GsoBatch::new(SHARD_BATCH_BYTES, SHARD_BATCH_MESSAGES)
    }

    /// Whether a packet of `len` bytes can join the open message. If not,
    /// the caller ends the message ([`GsoBatch::end_message`]); if it still
    /// does not fit, the batch is full: send it first.
    pub fn fits(&self, len: usize) -> bool {
        if self.count == 0 {
            return self.closed_msgs.len() < self.max_messages && self.len + len <= self.buf.len();
        }
        !self.closed
            && self.count < MAX_GSO_SEGMENTS
            && self.len - self.start + len <= MAX_GSO_BYTES
            && self.len + len <= self.buf.len()
            && len <= self.segment
    }

    /// Room for one more packet of up to `max_len` bytes; call
    /// [`GsoBatch::commit`] with the length written (or nothing).
    pub fn spare(&mut self, max_len: usize) -> &mut [u8] {
        let end = (self.len + max_len).min(self.buf.len());
        &mut self.buf[self.len..end]
    }

    /// Keeps `len` bytes of the last `spare` area as a packet.
    pub fn commit(&mut self, len: usize) {
        self.len = (self.len + len).min(self.buf.len());
        if self.count == 0 {
            self.segment = len;
        } else if len < self.segment {
            self.closed = true;
        }
        self.count += 1;
    }

    /// Writes one datagram as a message of its own to `dst` from `src`
    /// (`write` fills at most `max_len` bytes and returns the length, or
    /// None to send nothing). Returns false, writing nothing, when the
    /// batch has no room: send it first.
    pub fn datagram(&mut self, dst: SocketAddr, src: Option<IpAddr>, max_len: usize, write: impl FnOnce(&mut [u8]) -> Option<usize>) -> bool {
        self.end_message(dst, src);
        if !self.fits(max_len) {
            return false;
        }
        if let Some(n) = write(self.spare(max_len)) {
            self.commit(n.min(max_len));
            self.end_message(dst, src);
        }
        true
    }

    /// Whether `messages` more messages of `bytes` in all fit (no message
    /// may be open).
    pub fn room_for(&self, messages: usize, bytes: usize) -> bool {
        self.count == 0 && self.closed_msgs.len() + messages <= self.max_messages && self.len + bytes <= self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0 && self.closed_msgs.is_empty()
    }

    /// Bytes held (all messages).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Messages closed and ready to send.
    pub fn messages(&self) -> usize {
        self.closed_msgs.len()
    }

    /// Closes the open message: its packets go to `dst` from `src`.
    pub fn end_message(&mut self, dst: SocketAddr, src: Option<IpAddr>) {
        if self.count > 0 {
            self.closed_msgs.push(BatchMsg { start: self.start, end: self.len, segment: self.segment, dst, src });
        }
        self.start = self.len;
        self.count = 0;
        self.segment = 0;
        self.closed = false;
    }

    /// The closed messages (an open one is not included: end it first).
    pub fn transmits(&self) -> impl Iterator<Item = Transmit<'_>> + '_ {
        self.closed_msgs.iter().map(|m| Transmit { dst: m.dst, src: m.src, contents: &self.buf[m.start..m.end], segment: m.segment })
    }

    /// Empties the batch (after its transmits were sent).
    pub fn clear(&mut self) {
        self.closed_msgs.clear();
        self.len = 0;
        self.start = 0;
        self.count = 0;
        self.segment = 0;
        self.closed = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn push(b: &mut GsoBatch, len: usize, fill: u8) {
        let s = b.spare(1500);
        s[..len].fill(fill);
        b.commit(len);
    }

    #[test]
    fn batch_rules() {
        let mut b = GsoBatch::new(65536, 1);
        assert!(b.fits(1000));
        push(&mut b, 1000, 1);
        assert!(b.fits(1000));
        push(&mut b, 1000, 2);
        assert!(!b.fits(1001), "larger packet must start a new batch");
        assert!(b.fits(300));
        push(&mut b, 300, 3);
        assert!(!b.fits(300), "a short packet closes the batch");
        assert_eq!(b.len(), 2300);
    }

    /// A batch refuses a message beyond its message limit or its buffer, so
    /// the caller sends it instead of overrunning.
    #[test]
    fn batch_limits() {
        let dst = SocketAddr::from(([127, 0, 0, 1], 9));
        let mut b = GsoBatch::new(0, 2);
        push(&mut b, 1200, 0);
        b.end_message(dst, None);
        assert!(b.fits(1200));
        push(&mut b, 1200, 0);
        b.end_message(dst, None);
        assert!(!b.fits(100), "message limit reached");
        assert!(!b.datagram(dst, None, 100, |_| Some(100)), "no room for a datagram either");
        assert!(!b.room_for(1, 100));
        assert!(GsoBatch::new(0, 2).room_for(2, MESSAGE_ROOM) && !GsoBatch::new(0, 2).room_for(3, 10));
        assert_eq!(b.messages(), 2);
        let mut b = GsoBatch::new(0, MAX_MESSAGES);
        let mut n = 0;
        while b.fits(1200) {
            push(&mut b, 1200, 0);
            n += 1;
            if n % 7 == 0 {
                b.end_message(dst, None);
            }
        }
        assert!(b.len() <= MESSAGE_ROOM, "stayed inside the buffer");
        assert!(b.len() + 1200 > MESSAGE_ROOM || n % 7 == 0);
    }

    #[test]
    fn datagrams_are_messages_of_their_own() {
        let a = SocketAddr::from(([127, 0, 0, 1], 1));
        let c = SocketAddr::from(([127, 0, 0, 1], 2));
        let mut b = GsoBatch::new(0, 8);
        assert!(b.datagram(a, None, 100, |buf| {
            buf[..3].copy_from_slice(b"abc");
            Some(3)
        }));
        assert!(b.datagram(c, Some(IpAddr::from([127, 0, 0, 1])), 100, |_| None), "nothing written is not an error");
        assert!(b.datagram(c, None, 100, |buf| {
            buf[..2].copy_from_slice(b"de");
            Some(2)
        }));
        let t: Vec<(u16, Vec<u8>, usize)> = b.transmits().map(|t| (t.dst.port(), t.contents.to_vec(), t.segment)).collect();
        assert_eq!(t, vec![(1, b"abc".to_vec(), 3), (2, b"de".to_vec(), 2)]);
        b.clear();
        assert!(b.is_empty());
        assert_eq!(b.transmits().count(), 0);
    }
}
