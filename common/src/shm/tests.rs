use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::layout::{
    Dir, Layout, HEADER_LEN, OFF_MAGIC, OFF_SLOTS, OFF_TOTAL_LEN, OFF_VERSION, RING_HEAD,
    RING_SLOTS,
};
use super::*;

/// Unique file under /dev/shm, removed on drop (even when a test fails).
struct TempShm(PathBuf);

impl TempShm {
    fn new(tag: &str) -> TempShm {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        TempShm(PathBuf::from(format!(
            "/dev/shm/rts-shm-test-{}-{n}-{tag}",
            std::process::id()
        )))
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempShm {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn cfg(shards: usize, slots: u32, slot_size: u32) -> RingConfig {
    RingConfig {
        shards,
        slots,
        slot_size,
    }
}

fn pop_vec(c: &mut Consumer) -> Option<Vec<u8>> {
    c.pop_with(|m| m.to_vec())
}

/// Overwrites bytes of the file through the page cache, as a buggy or
/// hostile peer would.
fn poke(path: &Path, off: u64, bytes: &[u8]) {
    let f = OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, off).unwrap();
}

#[test]
fn endpoint_halves_are_send() {
    fn assert_send<T: Send>() {}
    assert_send::<Producer>();
    assert_send::<Consumer>();
    assert_send::<ShmRegion>();
}

#[test]
fn layout_offsets_are_line_aligned() {
    let l = Layout::new(&cfg(3, 8, 24)).unwrap();
    // 384 + 8 * 24 = 576 -> rounded up to 640.
    assert_eq!(l.ring_stride, 640);
    assert_eq!(l.total_len, HEADER_LEN + 6 * 640);
    assert_eq!(l.ring_offset(0, Dir::CtlToShard), 128);
    assert_eq!(l.ring_offset(0, Dir::ShardToCtl), 128 + 640);
    assert_eq!(l.ring_offset(2, Dir::ShardToCtl), 128 + 5 * 640);
    assert_eq!(l.max_message_len(), 20);
}

#[test]
fn invalid_configs_are_rejected() {
    let t = TempShm::new("badcfg");
    for bad in [
        cfg(0, 8, 64),
        cfg(1, 0, 64),
        cfg(1, 6, 64),
        cfg(1, 8, 4),
        cfg(1, 8, 7),
        cfg(5000, 8, 64),
    ] {
        let err = ShmRegion::create(t.path(), &bad).unwrap_err();
        assert!(matches!(err, ShmError::InvalidConfig(_)), "{bad:?}: {err}");
    }
    assert!(!t.path().exists());

    // Odd slot sizes are fine: slots are accessed bytewise.
    let r = ShmRegion::create(t.path(), &cfg(1, 2, 13)).unwrap();
    let (mut tx, mut rx) = r.dataplane_endpoints(0).unwrap();
    let (mut ctx, mut crx) = r.control_endpoints(0).unwrap();
    assert_eq!(tx.max_message_len(), 9);
    tx.try_push(b"123456789").unwrap();
    tx.try_push(b"abc").unwrap();
    assert_eq!(tx.try_push(b"x"), Err(PushError::Full));
    assert_eq!(pop_vec(&mut crx).unwrap(), b"123456789");
    assert_eq!(pop_vec(&mut crx).unwrap(), b"abc");
    ctx.try_push(b"down").unwrap();
    assert_eq!(pop_vec(&mut rx).unwrap(), b"down");
}

#[test]
fn push_pop_full_too_large_single_thread() {
    let t = TempShm::new("basic");
    let r = ShmRegion::create(t.path(), &cfg(1, 4, 64)).unwrap();
    let (mut tx, _rx_unused) = r.control_endpoints(0).unwrap();
    let (_tx_unused, mut rx) = r.dataplane_endpoints(0).unwrap();

    assert_eq!(tx.max_message_len(), 60);
    assert_eq!(tx.free_slots(), 4);
    assert!(rx.is_empty());
    assert_eq!(pop_vec(&mut rx), None);

    assert_eq!(tx.try_push(&[0u8; 61]), Err(PushError::TooLarge));
    tx.try_push(b"one").unwrap();
    tx.try_push(b"").unwrap();
    tx.try_push(&[7u8; 60]).unwrap();
    tx.try_push(b"four").unwrap();
    assert_eq!(tx.free_slots(), 0);
    assert_eq!(tx.try_push(b"five"), Err(PushError::Full));
    assert!(!rx.is_empty());

    assert_eq!(pop_vec(&mut rx).unwrap(), b"one");
    assert_eq!(tx.free_slots(), 1);
    tx.try_push(b"five").unwrap();
    assert_eq!(tx.try_push(b"six"), Err(PushError::Full));

    assert_eq!(pop_vec(&mut rx).unwrap(), b"");
    assert_eq!(pop_vec(&mut rx).unwrap(), vec![7u8; 60]);
    assert_eq!(rx.pop_with(|m| m.len()), Some(4));
    assert_eq!(pop_vec(&mut rx).unwrap(), b"five");
    assert_eq!(pop_vec(&mut rx), None);
    assert!(rx.is_empty());
    assert_eq!(tx.free_slots(), 4);
    assert_eq!(rx.corrupt_skipped(), 0);
}

#[test]
fn endpoints_taken_once_and_shard_range_checked() {
    let t = TempShm::new("once");
    let r = ShmRegion::create(t.path(), &cfg(2, 4, 64)).unwrap();
    assert_eq!(r.shards(), 2);
    assert!(r.dataplane_endpoints(1).is_some());
    assert!(r.dataplane_endpoints(1).is_none());
    assert!(r.dataplane_endpoints(2).is_none());
    assert!(r.control_endpoints(usize::MAX).is_none());
    assert!(r.control_endpoints(1).is_some());
    assert!(r.control_endpoints(1).is_none());
    assert!(r.control_endpoints(0).is_some());
}

/// Filler source: a message's filler is a slice of this starting at a
/// seq-dependent offset, so content errors show up in the checksum.
static PATTERN: [u8; 512] = {
    let mut p = [0u8; 512];
    let mut i = 0;
    while i < 512 {
        p[i] = (i * 31 + 7) as u8;
        i += 1;
    }
    p
};

/// Message `seq`: [seq u64][filler of seq-dependent length][checksum u64].
fn make_msg(seq: u64, buf: &mut Vec<u8>) {
    buf.clear();
    buf.extend_from_slice(&seq.to_le_bytes());
    let filler = (seq.wrapping_mul(2_654_435_761) % 237) as usize;
    let start = (seq % 256) as usize;
    buf.extend_from_slice(&PATTERN[start..start + filler]);
    let sum = checksum(buf);
    buf.extend_from_slice(&sum.to_le_bytes());
}

/// FNV-style mix over 8-byte words (word-wise so the 1M-message stress test
/// stays quick in debug builds); the tail is zero-padded.
fn checksum(b: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ b.len() as u64;
    for chunk in b.chunks(8) {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[test]
fn spsc_stress_two_threads_one_million() {
    const N: u64 = 1_000_000;
    let t = TempShm::new("stress");
    let r = ShmRegion::create(t.path(), &cfg(1, 256, 256)).unwrap();
    let (mut tx, _) = r.control_endpoints(0).unwrap();
    let (_, mut rx) = r.dataplane_endpoints(0).unwrap();
    drop(r); // endpoints keep the mapping alive

    let producer = thread::spawn(move || {
        let mut buf = Vec::with_capacity(256);
        for seq in 0..N {
            make_msg(seq, &mut buf);
            loop {
                match tx.try_push(&buf) {
                    Ok(()) => break,
                    Err(PushError::Full) => thread::yield_now(),
                    Err(PushError::TooLarge) => panic!("test message too large"),
                }
            }
        }
    });

    let mut expected = 0u64;
    let mut bytes = 0u64;
    while expected < N {
        let got = rx.pop_with(|m| {
            assert!(m.len() >= 16, "short message");
            let (body, sum) = m.split_at(m.len() - 8);
            assert_eq!(checksum(body).to_le_bytes(), sum, "checksum");
            let mut s = [0u8; 8];
            s.copy_from_slice(&body[..8]);
            (u64::from_le_bytes(s), m.len())
        });
        match got {
            Some((seq, len)) => {
                assert_eq!(seq, expected, "loss, duplicate or reorder");
                expected += 1;
                bytes += len as u64;
            }
            None => {
                rx.wait(Duration::from_millis(10));
            }
        }
    }
    producer.join().unwrap();
    assert_eq!(pop_vec(&mut rx), None);
    assert_eq!(rx.corrupt_skipped(), 0);
    assert!(bytes > N * 16);
}

#[test]
fn create_and_attach_exchange_both_ways() {
    let t = TempShm::new("xproc");
    let dp = ShmRegion::create(t.path(), &cfg(2, 8, 128)).unwrap();
    let ctl = ShmRegion::attach(t.path()).unwrap();
    assert_eq!(ctl.shards(), 2);
    assert_eq!(ctl.generation(), dp.generation());
    assert_ne!(dp.generation(), 0);
    assert_eq!(ctl.dataplane_pid(), std::process::id());
    assert_eq!(
        ShmRegion::peek_generation(t.path()).unwrap(),
        dp.generation()
    );

    for shard in 0..2 {
        let (mut dp_tx, mut dp_rx) = dp.dataplane_endpoints(shard).unwrap();
        let (mut ctl_tx, mut ctl_rx) = ctl.control_endpoints(shard).unwrap();
        let up = format!("stats from shard {shard}");
        let down = format!("AddViewer to shard {shard}");
        dp_tx.try_push(up.as_bytes()).unwrap();
        ctl_tx.try_push(down.as_bytes()).unwrap();
        assert_eq!(pop_vec(&mut ctl_rx).unwrap(), up.as_bytes());
        assert_eq!(pop_vec(&mut dp_rx).unwrap(), down.as_bytes());
        assert_eq!(pop_vec(&mut ctl_rx), None);
        assert_eq!(pop_vec(&mut dp_rx), None);
    }
}

#[test]
fn second_attach_refused_until_first_is_gone() {
    let t = TempShm::new("lock");
    let _dp = ShmRegion::create(t.path(), &cfg(1, 4, 64)).unwrap();
    let first = ShmRegion::attach(t.path()).unwrap();
    assert!(matches!(
        ShmRegion::attach(t.path()),
        Err(ShmError::AlreadyAttached)
    ));
    // An endpoint outliving its region keeps the lock.
    let endpoints = first.control_endpoints(0).unwrap();
    drop(first);
    assert!(matches!(
        ShmRegion::attach(t.path()),
        Err(ShmError::AlreadyAttached)
    ));
    drop(endpoints);
    let second = ShmRegion::attach(t.path()).unwrap();
    assert!(second.control_endpoints(0).is_some());
}

#[test]
fn attach_rejects_bad_files() {
    let t = TempShm::new("bad");
    let c = cfg(1, 4, 64);
    let total = Layout::new(&c).unwrap().total_len as u64;

    // Missing file.
    assert!(matches!(
        ShmRegion::attach(t.path()),
        Err(ShmError::Io { op: "open", .. })
    ));

    // Shorter than a header.
    std::fs::write(t.path(), b"RTSSHM01").unwrap();
    assert!(matches!(
        ShmRegion::attach(t.path()),
        Err(ShmError::Truncated {
            expected: 128,
            actual: 8
        })
    ));

    // Wrong magic.
    drop(ShmRegion::create(t.path(), &c).unwrap());
    poke(t.path(), OFF_MAGIC as u64, b"NOTRTS!!");
    assert!(matches!(
        ShmRegion::attach(t.path()),
        Err(ShmError::BadMagic)
    ));
    assert!(matches!(
        ShmRegion::peek_generation(t.path()),
        Err(ShmError::BadMagic)
    ));

    // Wrong version.
    drop(ShmRegion::create(t.path(), &c).unwrap());
    poke(t.path(), OFF_VERSION as u64, &99u32.to_le_bytes());
    assert!(matches!(
        ShmRegion::attach(t.path()),
        Err(ShmError::VersionMismatch {
            found: 99,
            expected: SHM_VERSION
        })
    ));

    // Geometry not a power of two.
    drop(ShmRegion::create(t.path(), &c).unwrap());
    poke(t.path(), OFF_SLOTS as u64, &3u32.to_le_bytes());
    assert!(matches!(
        ShmRegion::attach(t.path()),
        Err(ShmError::BadHeader(_))
    ));

    // Total length inconsistent with geometry.
    drop(ShmRegion::create(t.path(), &c).unwrap());
    poke(t.path(), OFF_TOTAL_LEN as u64, &(total * 2).to_le_bytes());
    assert!(matches!(
        ShmRegion::attach(t.path()),
        Err(ShmError::BadHeader(_))
    ));

    // File cut short.
    drop(ShmRegion::create(t.path(), &c).unwrap());
    OpenOptions::new()
        .write(true)
        .open(t.path())
        .unwrap()
        .set_len(total - 1)
        .unwrap();
    match ShmRegion::attach(t.path()) {
        Err(ShmError::Truncated { expected, actual }) => {
            assert_eq!(expected, total);
            assert_eq!(actual, total - 1);
        }
        other => panic!("expected Truncated, got {other:?}"),
    }
}

#[test]
fn control_crash_then_reattach_continues() {
    let t = TempShm::new("crash");
    let dp = ShmRegion::create(t.path(), &cfg(1, 16, 64)).unwrap();
    let (mut up_tx, mut down_rx) = dp.dataplane_endpoints(0).unwrap();
    for i in 0u8..10 {
        up_tx.try_push(&[i]).unwrap();
    }

    let ctl = ShmRegion::attach(t.path()).unwrap();
    let (mut down_tx, mut up_rx) = ctl.control_endpoints(0).unwrap();
    for i in 0u8..4 {
        assert_eq!(pop_vec(&mut up_rx).unwrap(), [i]);
    }
    down_tx.try_push(b"a").unwrap();
    down_tx.try_push(b"b").unwrap();
    // Dies while handling message 4: it must be delivered again.
    let died = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        up_rx.pop_with(|m| {
            assert_eq!(m, [4]);
            panic!("control crashed mid-message")
        })
    }));
    assert!(died.is_err());
    drop((down_tx, up_rx, ctl));

    // Media kept flowing while control was gone.
    for i in 10u8..12 {
        up_tx.try_push(&[i]).unwrap();
    }

    let ctl = ShmRegion::attach(t.path()).unwrap();
    let (mut down_tx, mut up_rx) = ctl.control_endpoints(0).unwrap();
    for i in 4u8..12 {
        assert_eq!(pop_vec(&mut up_rx).unwrap(), [i]);
    }
    assert_eq!(pop_vec(&mut up_rx), None);
    down_tx.try_push(b"c").unwrap();
    for m in [b"a", b"b", b"c"] {
        assert_eq!(pop_vec(&mut down_rx).unwrap(), m);
    }
    assert_eq!(pop_vec(&mut down_rx), None);
}

#[test]
fn recreate_replaces_stale_region_with_new_generation() {
    let t = TempShm::new("recreate");
    let old = ShmRegion::create(t.path(), &cfg(1, 4, 64)).unwrap();
    let stale_ctl = ShmRegion::attach(t.path()).unwrap();
    let (mut old_tx, _) = old.dataplane_endpoints(0).unwrap();
    old_tx.try_push(b"from the old run").unwrap();

    let new = ShmRegion::create(t.path(), &cfg(2, 8, 64)).unwrap();
    assert_ne!(new.generation(), old.generation());
    assert_eq!(
        ShmRegion::peek_generation(t.path()).unwrap(),
        new.generation()
    );
    // The old control's mapping is still valid (no SIGBUS) and shows the
    // old generation, so comparing with peek_generation detects the restart.
    assert_eq!(stale_ctl.generation(), old.generation());
    let (_, mut stale_rx) = stale_ctl.control_endpoints(0).unwrap();
    assert_eq!(pop_vec(&mut stale_rx).unwrap(), b"from the old run");

    // The new file is not locked by the stale control and starts empty.
    let ctl = ShmRegion::attach(t.path()).unwrap();
    assert_eq!(ctl.shards(), 2);
    let (_, mut rx) = ctl.control_endpoints(0).unwrap();
    assert_eq!(pop_vec(&mut rx), None);
    assert!(!PathBuf::from(format!("{}.tmp.{}", t.path().display(), std::process::id())).exists());
}

#[test]
fn wait_wakes_on_push_and_times_out_when_idle() {
    let t = TempShm::new("wait");
    let r = ShmRegion::create(t.path(), &cfg(1, 4, 64)).unwrap();
    let (mut tx, _) = r.control_endpoints(0).unwrap();
    let (_, mut rx) = r.dataplane_endpoints(0).unwrap();

    let start = Instant::now();
    assert!(!rx.wait(Duration::from_millis(50)));
    assert!(start.elapsed() >= Duration::from_millis(50));

    let pusher = thread::spawn(move || {
        thread::sleep(Duration::from_millis(30));
        tx.try_push(b"wake").unwrap();
        tx
    });
    let start = Instant::now();
    assert!(rx.wait(Duration::from_secs(10)));
    assert!(start.elapsed() < Duration::from_secs(5), "woken late");
    assert_eq!(pop_vec(&mut rx).unwrap(), b"wake");
    let _tx = pusher.join().unwrap();

    // Non-empty returns immediately, even with a zero timeout.
    let mut tx = _tx;
    tx.try_push(b"x").unwrap();
    assert!(rx.wait(Duration::ZERO));
}

#[test]
fn control_waits_on_every_shards_ring_at_once() {
    let t = TempShm::new("wait-any");
    let r = ShmRegion::create(t.path(), &cfg(3, 4, 64)).unwrap();
    let mut shard_tx = Vec::new();
    let mut ctl_rx = Vec::new();
    for i in 0..3 {
        let (tx, _) = r.dataplane_endpoints(i).unwrap();
        let (_, rx) = r.control_endpoints(i).unwrap();
        shard_tx.push(tx);
        ctl_rx.push(rx);
    }
    let start = Instant::now();
    assert!(!crate::shm::wait_any(&ctl_rx, Duration::from_millis(50)));
    assert!(start.elapsed() >= Duration::from_millis(50));
    // The last shard's ring wakes the one sleeper (not only shard 0's).
    let mut tx2 = shard_tx.pop().unwrap();
    let pusher = thread::spawn(move || {
        thread::sleep(Duration::from_millis(30));
        tx2.try_push(b"from shard 2").unwrap();
        tx2
    });
    let start = Instant::now();
    assert!(crate::shm::wait_any(&ctl_rx, Duration::from_secs(10)));
    assert!(start.elapsed() < Duration::from_secs(5), "woken late");
    assert_eq!(pop_vec(&mut ctl_rx[2]).unwrap(), b"from shard 2");
    let _ = pusher.join().unwrap();
    assert!(!crate::shm::wait_any(&ctl_rx, Duration::ZERO), "all read");
    assert!(!crate::shm::wait_any(&[], Duration::ZERO));
}

#[test]
fn corrupt_length_prefix_is_skipped_not_read() {
    let t = TempShm::new("corrupt");
    let c = cfg(1, 4, 64);
    let l = Layout::new(&c).unwrap();
    let r = ShmRegion::create(t.path(), &c).unwrap();
    let (mut tx, _) = r.control_endpoints(0).unwrap();
    let (_, mut rx) = r.dataplane_endpoints(0).unwrap();

    tx.try_push(b"victim").unwrap();
    tx.try_push(b"good").unwrap();
    let ring = l.ring_offset(0, Dir::CtlToShard);
    let slot0 = (ring + RING_SLOTS) as u64;
    poke(t.path(), slot0, &u32::MAX.to_le_bytes());
    assert_eq!(pop_vec(&mut rx).unwrap(), b"good");
    assert_eq!(rx.corrupt_skipped(), 1);

    // One past the maximum is also rejected; exactly the maximum is fine.
    tx.try_push(b"x").unwrap();
    tx.try_push(b"y").unwrap();
    let slot2 = slot0 + 2 * 64;
    let slot3 = slot0 + 3 * 64;
    poke(t.path(), slot2, &61u32.to_le_bytes());
    poke(t.path(), slot3, &60u32.to_le_bytes());
    assert_eq!(rx.pop_with(|m| m.len()), Some(60));
    assert_eq!(rx.corrupt_skipped(), 2);
    assert_eq!(pop_vec(&mut rx), None);
}

#[test]
fn corrupt_head_resynchronises_without_panic() {
    let t = TempShm::new("badhead");
    let c = cfg(1, 4, 64);
    let l = Layout::new(&c).unwrap();
    let r = ShmRegion::create(t.path(), &c).unwrap();
    let (mut tx, _) = r.control_endpoints(0).unwrap();
    let (_, mut rx) = r.dataplane_endpoints(0).unwrap();
    tx.try_push(b"a").unwrap();
    let head = (l.ring_offset(0, Dir::CtlToShard) + RING_HEAD) as u64;
    poke(t.path(), head, &u64::MAX.to_le_bytes());
    assert!(!rx.is_empty());
    assert_eq!(pop_vec(&mut rx), None);
    assert_eq!(rx.corrupt_skipped(), 1);
    // Whatever the indices say from now on, both halves stay inside the
    // slot array and never panic; recovery is a dataplane restart.
    for _ in 0..16 {
        let _ = tx.try_push(b"b");
        let _ = tx.free_slots();
        let _ = rx.is_empty();
        if let Some(len) = rx.pop_with(|m| m.len()) {
            assert!(len <= 60);
        }
    }
}
