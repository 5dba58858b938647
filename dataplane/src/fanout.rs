//! The per-viewer hot path: rewrite the shared packet's header for this
//! viewer, SRTP-protect it into the GSO batch buffer, send batches. This is
//! the only work done per viewer per packet (DESIGN.md §2); it is public so
//! the benchmarks in `benches/` measure exactly the shipped code.

use crate::lipsync::PlayoutHint;
use crate::session::{Media, Session, RTP_HEADER_MAX};
use crate::stream::{Kind, Stream};
use crate::udp::{GsoBatch, UdpSender};
use bytes::Bytes;
use slab::Slab;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Instant;

/// Sends one stream's new live packets to all its viewers: one message per
/// viewer, up to 16 viewers per `sendmmsg`. A viewer still replaying its GOP
/// cache gets new video queued behind the cache, in order. The send is also
/// the stream's A/V lag sample (lipsync.rs).
pub fn fan_out(stream: &mut Stream, sessions: &mut Slab<Session>, kind: Kind, packets: &[Bytes], sender: &mut UdpSender, batch: &mut GsoBatch) -> u64 {
    let now = Instant::now();
    stream.on_delivered(kind, packets, now);
    let stream = &*stream;
    let mut bytes = 0;
    let hint = stream.av_lag.hint(now);
    for &v in &stream.viewers {
        let Some(sess) = sessions.get_mut(v) else { continue };
        let (Some(peer), local) = (sess.peer, sess.local_ip) else { continue };
        let Some(media) = sess.media.as_mut() else { continue };
        // Video queues behind a GOP replay in progress (decode order);
        // audio is never replayed and goes out live at once, so the
        // receiver's audio jitter buffer does not start with a backlog.
        if kind == Kind::Video && !media.pending.is_empty() {
            media.pending.extend(packets.iter().map(|p| (kind, p.clone())));
            continue;
        }
        bytes += send_items(media, peer, local, packets.iter().map(|p| (kind, p)), hint, sender, batch);
    }
    batch.flush(sender);
    bytes
}

/// Protects packets for one viewer into `batch` as GSO messages. Returns the
/// bytes protected. Each shared packet is copied once into the send buffer
/// (SRTP output differs per viewer) with this viewer's header rewritten;
/// `hint` is the stream's playout-delay hint, for viewers whose video
/// carries the extension.
/// The messages leave when the batch is full or at the caller's
/// [`GsoBatch::flush`], which every caller does before it returns to the
/// event loop.
pub fn send_items<'a>(
    media: &mut Media,
    peer: SocketAddrV4,
    local: Option<Ipv4Addr>,
    items: impl Iterator<Item = (Kind, &'a Bytes)>,
    hint: PlayoutHint,
    sender: &mut UdpSender,
    batch: &mut GsoBatch,
) -> u64 {
    let overhead = media.profile.rtp_overhead();
    let playout_min = hint.min_units(media.started_at);
    let mut sent = 0u64;
    for (kind, p) in items {
        if p.len() < 12 {
            continue;
        }
        let mut header = [0u8; RTP_HEADER_MAX];
        let Some(hlen) = media.track(kind).rewrite(&p[..12], &mut header, playout_min) else {
            continue;
        };
        let len = hlen + p.len() - 12 + overhead;
        if !batch.fits(len) {
            batch.end_message(peer, local);
            if !batch.fits(len) {
                batch.flush(sender);
            }
        }
        let out = batch.spare(len);
        match media.tx.protect_rtp(&header[..hlen], &p[12..], out) {
            Ok(n) => {
                batch.commit(len, n);
                sent += n as u64;
                media.packets_out += 1;
            }
            Err(_) => batch.rollback(len),
        }
    }
    batch.end_message(peer, local);
    media.bytes_out += sent;
    sent
}
