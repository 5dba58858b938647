//! The transmit side: a delivery larger than one batch resumes where it
//! stopped, and every viewer gets every packet once, in order.

use super::*;
use crate::batch::SHARD_BATCH_MESSAGES;

/// FU-A packets of a NAL unit of `len` bytes at the default 1,200-byte
/// packets (12-byte RTP header, 2 FU bytes; the NAL header is not repeated).
fn fu_packets(len: usize) -> usize {
    (len - 1).div_ceil(1_200 - 12 - 2)
}

/// Viewers `ids` join `live/{stream}` and take in its GOP-cache replay.
fn watching(rig: &mut Rig, ids: std::ops::RangeInclusive<u16>, stream: &str) -> Vec<Viewer> {
    let mut viewers: Vec<Viewer> = ids.map(|n| Viewer::join(rig, n, "live", stream)).collect();
    rig.advance(ms(100));
    for v in &mut viewers {
        v.recv(rig);
    }
    viewers
}

#[test]
fn a_keyframe_to_many_viewers_spans_batches_without_loss_or_repeat() {
    let mut rig = Rig::new("");
    let mut p = publish(&mut rig, 1, "live", "s", 0);
    let mut viewers = watching(&mut rig, 1..=100, "s");
    rig.batches.clear();
    // A 40 KB keyframe and a P-frame to 100 viewers.
    let per_viewer = 1 + fu_packets(40_000) + fu_packets(2_500);
    p.video(&mut rig, 33, frame(true, 40_000, 7));
    p.video(&mut rig, 66, frame(false, 2_500, 8));
    assert!(rig.batches.len() > 10, "{} batches", rig.batches.len());
    for &(_, messages) in &rig.batches {
        assert!(messages <= SHARD_BATCH_MESSAGES, "{messages} messages in one batch");
    }
    let total: usize = rig.batches.iter().map(|b| b.0).sum();
    assert_eq!(total, 100 * per_viewer);
    for v in &mut viewers {
        let before = v.video().len();
        v.recv(&rig);
        let video = v.video();
        assert_eq!(video.len() - before, per_viewer, "viewer {}", v.session);
        assert_consecutive(&video, "one viewer");
        let key = &video[before + 1..before + 1 + fu_packets(40_000)];
        let payload: usize = key.iter().map(|p| p.payload.len() - 2).sum();
        assert_eq!(payload, 40_000 - 1, "the keyframe's bytes, once");
    }
}

#[test]
fn a_viewer_that_did_not_negotiate_audio_gets_video_only() {
    let mut rig = Rig::new("");
    let mut p = publish(&mut rig, 1, "live", "s", 0);
    let mut v = Viewer::new(1);
    rig.control(v.add_msg("live", "s", None));
    v.check(&mut rig);
    rig.control(v.start_with(|m| *m.audio_pt = None));
    rig.advance(ms(20));
    p.audio(&mut rig, 10, opus(1));
    p.video(&mut rig, 33, frame(false, 2_500, 2));
    v.recv(&rig);
    assert!(v.audio().is_empty());
    assert_eq!(v.video().len(), 4 + 3);
}

#[test]
fn the_playout_delay_extension_is_on_every_video_packet_of_a_viewer_that_asked() {
    let mut rig = Rig::new("");
    let mut p = publish(&mut rig, 1, "live", "s", 0);
    let v = Viewer::new(1);
    rig.control(v.add_msg("live", "s", None));
    v.check(&mut rig);
    rig.control(v.start_with(|m| *m.video_playout_delay_id = Some(6)));
    rig.advance(ms(20));
    p.video(&mut rig, 33, frame(false, 2_500, 2));
    let mut rx = SrtpContext::new(Profile::AeadAes128Gcm, &v.keys[0], &v.keys[1]).unwrap();
    let mut n = 0;
    for s in rig.sent.iter().filter(|s| s.dst == v.addr && rts_stun::classify(&s.data) == PacketKind::Rtp) {
        let mut d = s.data.clone();
        let len = rx.unprotect_rtp(&mut d).unwrap();
        let h = rts_rtp::RtpHeader::parse(&d[..len]).unwrap();
        let pd = rts_rtp::hdrext::one_byte_extension(&d[..len], &h, 6).and_then(rts_rtp::hdrext::PlayoutDelay::parse);
        assert_eq!(pd.map(|p| p.min), Some(1), "the 10 ms floor for a stream without audio");
        n += 1;
    }
    assert_eq!(n, 4 + 3);
}

#[test]
fn no_viewer_is_always_served_last() {
    let mut rig = Rig::new("");
    let mut p = publish(&mut rig, 1, "live", "s", 0);
    let viewers: Vec<Viewer> = (1..=10).map(|n| Viewer::join(&mut rig, n, "live", "s")).collect();
    rig.advance(ms(100));
    // Each viewer's place (0 = first) in the order of 90 deliveries.
    let mut places: Vec<Vec<usize>> = vec![Vec::new(); viewers.len()];
    for i in 1..=90u32 {
        let from = rig.sent.len();
        p.video(&mut rig, 33 * i, frame(false, 1_000, 1));
        let mut order: Vec<SocketAddr> = Vec::new();
        for s in &rig.sent[from..] {
            if !order.contains(&s.dst) {
                order.push(s.dst);
            }
        }
        assert_eq!(order.len(), viewers.len());
        for (k, v) in viewers.iter().enumerate() {
            places[k].push(order.iter().position(|d| *d == v.addr).unwrap());
        }
    }
    for (k, mut p) in places.into_iter().enumerate() {
        let last = p.iter().filter(|&&x| x == 9).count();
        p.sort_unstable();
        let median = p[p.len() / 2];
        assert!((2..=7).contains(&median), "viewer {k}: median place {median} of 0..9");
        assert!(last <= 20, "viewer {k} was last {last} times of 90");
    }
}

/// Packets sent to `addrs` among `sent`.
fn sent_to(sent: &[Sent], addrs: &[SocketAddr]) -> usize {
    sent.iter().filter(|s| addrs.contains(&s.dst)).count()
}

#[test]
fn another_streams_frame_does_not_wait_for_a_whole_keyframe() {
    let mut rig = Rig::new("");
    let mut a = publish(&mut rig, 1, "live", "a", 0);
    let mut b = publish(&mut rig, 2, "live", "b", 0);
    let mut on_a = watching(&mut rig, 1..=100, "a");
    let mut on_b = watching(&mut rig, 101..=200, "b");
    let from = rig.sent.len();
    // As the shell does: a slice of batches after each input. A's 40 KB
    // keyframe (~3,500 packets to its 100 viewers) comes first, then B's
    // P-frame (one packet each).
    rig.slice = Some(2);
    a.video(&mut rig, 33, frame(true, 40_000, 7));
    b.video(&mut rig, 33, frame(false, 1_000, 8));
    rig.slice = None;
    rig.drain();
    let sent = &rig.sent[from..];
    let a_addrs: Vec<SocketAddr> = on_a.iter().map(|v| v.addr).collect();
    let b_addrs: Vec<SocketAddr> = on_b.iter().map(|v| v.addr).collect();
    let a_total = 100 * (1 + fu_packets(40_000));
    assert_eq!(sent_to(sent, &a_addrs), a_total);
    assert_eq!(sent_to(sent, &b_addrs), 100);
    let b_last = sent.iter().rposition(|s| b_addrs.contains(&s.dst)).unwrap();
    let a_before = sent_to(&sent[..b_last], &a_addrs);
    // One turn of A (512 packets, rounded up to whole viewers and batches),
    // not all of it.
    assert!(a_before < a_total / 3, "{a_before} of A's {a_total} packets went out before B's frame was done");
    for v in on_a.iter_mut().chain(on_b.iter_mut()) {
        let before = v.video().len();
        v.recv(&rig);
        let video = v.video();
        assert_consecutive(&video, "one viewer");
        let expected = if a_addrs.contains(&v.addr) { 1 + fu_packets(40_000) } else { 1 };
        assert_eq!(video.len() - before, expected, "viewer {}", v.session);
    }
}

#[test]
fn viewers_leaving_and_joining_mid_delivery_change_nobody_elses_share() {
    let mut rig = Rig::new("");
    let mut p = publish(&mut rig, 1, "live", "s", 0);
    let mut viewers = watching(&mut rig, 1..=100, "s");
    rig.sent.clear();
    for v in &mut viewers {
        v.rtp.clear();
        v.reset_seen();
    }
    let per_viewer = 1 + fu_packets(40_000);
    rig.slice = Some(2);
    p.video(&mut rig, 33, frame(true, 40_000, 7));
    // Two viewers not served yet leave; a new one joins (taking a freed
    // slab slot) while the keyframe is still going out.
    let waiting: Vec<usize> = (0..viewers.len()).filter(|&i| !rig.sent.iter().any(|s| s.dst == viewers[i].addr)).collect();
    assert!(waiting.len() > 50, "the delivery had only begun: {} waiting", waiting.len());
    let gone: Vec<Viewer> = [waiting[5], waiting[20]].into_iter().rev().map(|i| viewers.remove(i)).collect();
    // No batches while these inputs come in: the places the delivery has
    // not reached (the freed slots among them) stay ahead of it.
    rig.slice = Some(0);
    for g in &gone {
        rig.control(ControlToShard::RemoveSession { session: g.session, reason: "left".into() });
    }
    let mut late = Viewer::join(&mut rig, 500, "live", "s");

    rig.slice = None;
    rig.drain();
    rig.advance(ms(200));
    for g in &gone {
        assert_eq!(sent_to(&rig.sent, &[g.addr]), 0, "a viewer that left got packets");
    }
    for v in &mut viewers {
        v.recv(&rig);
        let video = v.video();
        assert_eq!(video.len(), per_viewer, "viewer {}", v.session);
        assert_consecutive(&video, "one viewer");
        assert_eq!(v.replays, 0, "viewer {} got packets twice", v.session);
    }
    // The late viewer gets the keyframe once, from the GOP cache (the
    // delivery under way must not queue it again: SRTP replays).
    late.recv(&rig);
    let video = late.video();
    assert_eq!(video.len(), per_viewer, "late viewer");
    assert_consecutive(&video, "late viewer");
    assert_eq!(late.replays, 0, "the late viewer got the keyframe twice");
}
