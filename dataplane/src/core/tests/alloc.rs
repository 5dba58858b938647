//! The per-frame path allocates nothing per viewer or per subscriber shard:
//! allocations are counted (per thread, so other tests running at the same
//! time do not disturb the count) while one frame goes through the core.

use super::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

fn allocations() -> u64 {
    ALLOCATIONS.try_with(Cell::get).unwrap_or(0)
}

// SAFETY: forwards every call to the system allocator unchanged; counting
// touches only a thread-local cell (const-initialised, no destructor).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Allocations while 10 P-frames (after 30 to warm up) go from RTMP bytes
/// to sent datagrams and relay messages, with `viewers` local viewers and
/// `subscribers` replicating shards.
fn allocations_for_ten_frames(viewers: u16, subscribers: usize) -> u64 {
    let mut rig = Rig::shard(0, 1 + subscribers, "", Instant::now());
    let mut p = publish(&mut rig, 1, "live", "s", 0);
    for n in 1..=viewers {
        Viewer::join(&mut rig, n, "live", "s");
    }
    for sub in 1..=subscribers {
        rig.core.handle_relay(rig.now, sub, RelayMsg::Subscribe { key: "live/s".into(), from: sub, replica: StreamId::DANGLING });
        rig.drain();
    }
    rig.advance(ms(200));
    rig.take_relay();
    let frames: Vec<Vec<u8>> = (1..=40).map(|i| p.encode_video(33 * i, frame(false, 2_500, i as u8))).collect();
    let mut relayed = Vec::with_capacity(1024);
    let mut total = 0;
    for (i, bytes) in frames.iter().enumerate() {
        let before = allocations();
        rig.core.handle_rtmp_data(rig.now, p.conn, bytes);
        let mut datagrams = 0;
        while let Some(t) = rig.core.poll_transmit() {
            datagrams += t.iter().map(|m| m.contents.len().div_ceil(m.segment)).sum::<usize>();
        }
        while let Some(r) = rig.core.poll_relay() {
            relayed.push(r);
        }
        rig.core.handle_parked(rig.now);
        let after = allocations();
        assert_eq!(datagrams, 3 * usize::from(viewers), "every viewer got the frame");
        assert_eq!(relayed.len(), 2 * subscribers, "per subscriber: the packets and the FLV tag");
        relayed.clear();
        if i >= 30 {
            total += after - before;
        }
    }
    total
}

#[test]
fn the_per_frame_path_allocates_nothing_per_viewer_or_subscriber() {
    let alone = allocations_for_ten_frames(1, 0);
    let crowd = allocations_for_ten_frames(200, 2);
    assert_eq!(alone, crowd, "allocations for 10 frames: 1 viewer {alone}, 200 viewers and 2 subscriber shards {crowd}");
    // What a frame does cost: RTMP chunk parsing, one buffer per packet
    // (3), one shared packet list, and the FLV tag's encoding.
    assert!(alone <= 10 * 14, "{alone} allocations for 10 frames");
}

/// A NACK, and its answer held for the next frame and sent at the head of
/// the viewer's message, allocate nothing once the viewer's queues have
/// grown: ten NACKs (after 30 to warm up), each for the first packet of
/// the frame just sent, read in place (no decoded RTCP lists).
#[test]
fn nacks_and_their_answers_allocate_nothing() {
    let mut rig = Rig::new("");
    let mut p = publish(&mut rig, 1, "live", "s", 0);
    let mut v = Viewer::join(&mut rig, 1, "live", "s");
    rig.advance(ms(200));
    v.recv(&rig);
    let ssrc = v.video()[0].ssrc;
    // 20 ms away, as its receiver reports would say: answers are held.
    set_rtt(&mut rig, &v, Some(ms(20)));
    // 10,000-byte frames (nine packets) earn the viewer's retransmission
    // budget faster than one resend a frame (two copies) spends it.
    let frames: Vec<Vec<u8>> = (1..=40).map(|i| p.encode_video(33 * i, frame(false, 10_000, i as u8))).collect();
    let mut nack_allocations = 0;
    let mut answers_allocations = 0;
    for (i, bytes) in frames.iter().enumerate() {
        rig.advance(ms(33)); // timers run: holds end
        let before = allocations();
        rig.core.handle_rtmp_data(rig.now, p.conn, bytes);
        while let Some(t) = rig.core.poll_transmit() {
            let _ = t.messages();
        }
        let frame_allocations = allocations() - before;
        rig.core.handle_parked(rig.now);
        // The frame's first packet: nine packets a frame, numbered on
        // from the GOP replay's last.
        let first = v.video().last().unwrap().seq.wrapping_add(1 + 9 * i as u16);
        let mut nack = v.nack_datagram(ssrc, &[first]);
        let before = allocations();
        rig.core.handle_datagram(rig.now, v.addr, Some(std::net::IpAddr::V4(SERVER_IP)), &mut nack);
        while rig.core.poll_transmit().is_some() {}
        let after = allocations();
        if i >= 30 {
            nack_allocations += after - before;
            // The answer leaves with this frame: it may cost no more than
            // the previous frame did without one.
            answers_allocations += frame_allocations;
        }
    }
    assert_eq!(nack_allocations, 0, "allocations for 10 NACKs");
    assert!(answers_allocations <= 10 * 14, "{answers_allocations} allocations for 10 frames carrying answers");
    rig.advance(ms(40)); // the last answer's hold ends
    let idx = rig.core.by_id[&v.session];
    let stats = rig.core.sessions[idx].media.as_ref().unwrap().repair.stats;
    // Each an isolated loss: two copies of an answer while the budget
    // keeps its reserve (it starts lower and fills as frames go out).
    let c = rig.core.counters();
    assert_eq!((c.nacked, c.resent), (40, 40 + stats.doubled_resends), "{stats:?}");
    assert!(stats.doubled_resends >= 20, "{stats:?}");
}
