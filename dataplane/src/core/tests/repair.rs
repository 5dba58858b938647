//! Loss repair with a simulated clock and simulated loss: NACK → RTX from
//! the shared history (across a switch), RTT suppression, the budget,
//! history expiry, RED, the GOP restart on PLI, and a browser-like NACK
//! loop recovering random loss.

use super::*;
use std::collections::BTreeSet;

/// Publishes `live/s` with a GOP of `p` P-frames and a joined viewer that
/// loses what `loss` says.
fn lossy(rig: &mut Rig, p: u32, loss: LossFn) -> (Publisher, Viewer) {
    let publisher = publish(rig, 1, "live", "s", p);
    let mut v = Viewer::join(rig, 1, "live", "s");
    v.loss = Some(loss);
    (publisher, v)
}

/// Viewer 1 plays `live/s` with its start message changed by `start` and
/// loses the 3rd video packet of the GOP replay: the viewer (taking in
/// everything again) and that packet's sequence number.
fn losing_the_third_packet(rig: &mut Rig, start: impl FnOnce(&mut StartMedia<'_>)) -> (Viewer, u16) {
    let mut v = Viewer::new(1);
    rig.control(v.add_msg("live", "s", None));
    v.check(rig);
    rig.control(v.start_with(start));
    let video_ssrc = rts_common::ipc::stream_ssrc("live", "s", 0);
    let lost_seq = std::rc::Rc::new(std::cell::Cell::new(None::<u16>));
    let l = lost_seq.clone();
    let mut n = 0;
    v.loss = Some(Box::new(move |ssrc, seq| {
        n += u32::from(ssrc == video_ssrc);
        if ssrc == video_ssrc && n == 3 {
            l.set(Some(seq));
            return true;
        }
        false
    }));
    rig.advance(ms(20));
    v.recv(rig);
    v.loss = None;
    let lost = lost_seq.get().expect("a packet was lost");
    (v, lost)
}

/// Answers leave at once instead of waiting for the viewer's next
/// delivery, and a first resend is one copy: the rules below are about
/// what is answered, not when or how often (the second copy of an
/// isolated loss has its own test).
const AT_ONCE: &str = "[webrtc]\nresend_hold_ms = 0\ndouble_first_resend = false\n";

fn stats(rig: &Rig, v: &Viewer) -> super::super::repair::RepairStats {
    let idx = rig.core.by_id[&v.session];
    rig.core.sessions[idx].media.as_ref().unwrap().repair.stats
}

#[test]
fn nacked_packets_come_back_as_rtx_with_their_original_sequence_number() {
    let mut rig = Rig::new(AT_ONCE);
    let (mut p, mut v) = lossy(&mut rig, 0, Box::new(|_, _| false));
    rig.advance(ms(20));
    v.recv(&rig);
    let ssrc = v.video()[0].ssrc;
    // The next frame loses its 2nd and 3rd packets.
    let next = v.video().last().unwrap().seq.wrapping_add(1);
    let lose: BTreeSet<u16> = [next.wrapping_add(1), next.wrapping_add(2)].into();
    let l2 = lose.clone();
    v.loss = Some(Box::new(move |s, seq| s == ssrc && l2.contains(&seq)));
    p.video(&mut rig, 33, frame(false, 2_500, 5));
    v.recv(&rig);
    assert_eq!(v.lost.len(), 2);
    v.loss = None;
    v.nack(&mut rig, ssrc, &lose.iter().copied().collect::<Vec<_>>());
    v.recv(&rig);
    let rtx: Vec<&Rtp> = v.rtp.iter().filter(|r| r.rtx.is_some()).collect();
    assert_eq!(rtx.len(), 2, "both lost packets resent");
    assert_eq!(rtx.iter().map(|r| r.seq).collect::<BTreeSet<_>>(), lose, "OSN = the lost sequence numbers");
    assert!(rtx.iter().all(|r| r.ssrc == RTX_SSRC && r.pt == RTX_PT));
    assert_eq!(rtx[1].rtx, rtx[0].rtx.map(|s| s.wrapping_add(1)), "RTX has its own consecutive numbering");
    assert!(rtx.iter().all(|r| r.payload[2..].iter().all(|&b| b == 5)), "the original payloads");
    let frame_ts = v.video().iter().find(|r| r.seq == next).unwrap().ts;
    assert!(rtx.iter().all(|r| r.ts == frame_ts), "the original timestamp");
    let s = stats(&rig, &v);
    assert_eq!((s.nacked, s.resent), (2, 2));
    assert_eq!(rig.core.counters().resent, 2);
}

#[test]
fn an_isolated_loss_is_resent_twice_at_first_and_a_burst_once() {
    let mut rig = Rig::new("[webrtc]\nresend_hold_ms = 0\n");
    let (mut p, mut v) = lossy(&mut rig, 0, Box::new(|_, _| false));
    // Twelve one-packet P-frames: small packets, so the budget stays above
    // its reserve (`Stream::repair_reserve`) throughout.
    for i in 1..=12u32 {
        rig.advance(ms(33));
        p.video(&mut rig, 33 * i, frame(false, 300, i as u8));
    }
    v.recv(&rig);
    let ssrc = v.video()[0].ssrc;
    let seqs: Vec<u16> = v.video().iter().rev().take(12).rev().map(|r| r.seq).collect();
    let rtx = |v: &Viewer| v.rtp.iter().filter(|r| r.rtx.is_some()).map(|r| (r.seq, r.rtx.unwrap())).collect::<Vec<_>>();
    // One packet named: two copies, each its own RTX number.
    v.nack(&mut rig, ssrc, &[seqs[1]]);
    v.recv(&rig);
    let one = rtx(&v);
    assert_eq!(one.iter().map(|r| r.0).collect::<Vec<_>>(), [seqs[1], seqs[1]]);
    assert_eq!(one[1].1, one[0].1.wrapping_add(1));
    // Four named: isolated still, two copies each.
    v.nack(&mut rig, ssrc, &seqs[2..6]);
    v.recv(&rig);
    assert_eq!(rtx(&v).len(), 2 + 8);
    // Five named in one NACK: a burst, one copy each.
    v.nack(&mut rig, ssrc, &seqs[6..11]);
    v.recv(&rig);
    assert_eq!(rtx(&v).len(), 2 + 8 + 5);
    // Asked again 100 ms later: a repeat is two copies either way.
    rig.advance(ms(100));
    v.nack(&mut rig, ssrc, &[seqs[1], seqs[6]]);
    v.recv(&rig);
    assert_eq!(rtx(&v).len(), 2 + 8 + 5 + 4);
    let s = stats(&rig, &v);
    assert_eq!((s.nacked, s.resent, s.doubled_resends), (12, 19, 5));
    assert_eq!(rig.core.counters().doubled_resends, 5);

    // Switched off: one copy.
    let mut rig = Rig::new(AT_ONCE);
    let (mut p, mut v) = lossy(&mut rig, 0, Box::new(|_, _| false));
    rig.advance(ms(33));
    p.video(&mut rig, 33, frame(false, 2_500, 1));
    v.recv(&rig);
    v.nack(&mut rig, v.video()[0].ssrc, &[v.video()[1].seq]);
    v.recv(&rig);
    assert_eq!(rtx(&v).len(), 1);
    assert_eq!(stats(&rig, &v).doubled_resends, 0);
}

#[test]
fn without_rtx_the_same_packet_is_resent_on_the_media_ssrc() {
    let mut rig = Rig::new(AT_ONCE);
    let _p = publish(&mut rig, 1, "live", "s", 1);
    let (mut v, lost) = losing_the_third_packet(&mut rig, |m| *m.video_rtx = None);
    let ssrc = v.video()[0].ssrc;
    v.nack(&mut rig, ssrc, &[lost]);
    v.recv(&rig);
    let video = v.video();
    let again: Vec<&&Rtp> = video.iter().filter(|r| r.seq == lost).collect();
    assert_eq!(again.len(), 1, "resent once, same sequence number, same SSRC");
    assert_eq!((again[0].ssrc, again[0].rtx), (ssrc, None));
}

#[test]
fn without_rtx_a_viewer_with_playout_delay_gets_its_original_bytes_again() {
    // The NACK itself raises this viewer's playout delay (loss seen), so
    // today's header differs from the one the lost packet had: the resend
    // must still repeat the original datagram, or the SRTP index would be
    // reused for other bytes.
    let mut rig = Rig::new(AT_ONCE);
    let mut p = publish(&mut rig, 1, "live", "s", 1);
    let (mut v, lost) = losing_the_third_packet(&mut rig, |m| {
        *m.video_rtx = None;
        *m.video_playout_delay_id = Some(5);
    });
    let ssrc = v.video()[0].ssrc;
    v.nack(&mut rig, ssrc, &[lost]);
    p.video(&mut rig, 100, frame(false, 3000, 9));
    rig.advance(ms(20));
    v.recv(&rig);
    let copies: Vec<&[u8]> = rig
        .sent
        .iter()
        .filter(|s| s.dst == v.addr)
        .filter(|s| rts_rtp::RtpHeader::parse(&s.data).is_ok_and(|h| h.ssrc == ssrc && h.sequence == lost))
        .map(|s| &s.data[..])
        .collect();
    assert_eq!(copies.len(), 2, "the original and one resend");
    assert_eq!(copies[0], copies[1], "the same datagram, byte for byte");
    assert_eq!(v.video().iter().filter(|r| r.seq == lost).count(), 1, "the viewer has the packet");
    let later = v.video().last().map(|r| r.seq).unwrap();
    let min = |seq: u16| {
        let d = &rig.sent.iter().rev().find(|s| s.dst == v.addr && rts_rtp::RtpHeader::parse(&s.data).is_ok_and(|h| h.ssrc == ssrc && h.sequence == seq)).unwrap().data;
        (u16::from(d[17]) << 4) | u16::from(d[18] >> 4)
    };
    assert!(min(later) > min(lost), "the frame after the NACK carries more playout delay ({} vs {})", min(later), min(lost));
    assert_eq!(stats(&rig, &v).unrepairable, 0);
}

#[test]
fn a_nack_from_before_a_switch_is_ignored_and_one_after_maps_to_the_new_stream() {
    let mut rig = Rig::new(AT_ONCE);
    let mut a = publish(&mut rig, 1, "live", "a", 2);
    let mut b = Publisher::connect(&mut rig, 2, "live", "b");
    b.gop(&mut rig, 90_000, 2);
    let mut v = Viewer::join(&mut rig, 1, "live", "a");
    rig.advance(ms(20));
    a.video(&mut rig, 99, frame(false, 2_500, 0xaa));
    v.recv(&rig);
    let ssrc = v.video()[0].ssrc;
    let before_switch = v.video().last().unwrap().seq;
    rig.control(ControlToShard::SwitchStream { session: v.session, app: "live".into(), stream: "b".into(), home_shard: None });
    rig.advance(ms(20));
    b.video(&mut rig, 90_000 + 99, frame(false, 2_500, 0xbb));
    v.recv(&rig);
    let after = v.video().last().unwrap().seq;
    // The viewer asks for one packet of each stream.
    v.nack(&mut rig, ssrc, &[before_switch, after]);
    v.recv(&rig);
    let rtx: Vec<&Rtp> = v.rtp.iter().filter(|r| r.rtx.is_some()).collect();
    assert_eq!(rtx.len(), 1, "only the packet of the current stream");
    assert_eq!(rtx[0].seq, after);
    assert!(rtx[0].payload[2..].iter().all(|&x| x == 0xbb), "b's packet, not a's packet with that number");
    assert_eq!(stats(&rig, &v).stale, 1);
}

#[test]
fn repeats_within_the_rtt_are_suppressed_and_three_resends_at_most() {
    let mut rig = Rig::new(AT_ONCE);
    let (_p, mut v) = lossy(&mut rig, 1, Box::new(|_, _| false));
    rig.advance(ms(20));
    v.recv(&rig);
    let (ssrc, seq) = (v.video()[0].ssrc, v.video()[2].seq);
    let resent = |v: &Viewer| v.rtp.iter().filter(|r| r.rtx.is_some()).count();
    v.nack(&mut rig, ssrc, &[seq]);
    v.nack(&mut rig, ssrc, &[seq]); // a duplicate at once: within the RTT
    rig.advance(ms(60));
    v.nack(&mut rig, ssrc, &[seq]); // 60 ms later: still within 3/4 of the default 100 ms
    v.recv(&rig);
    assert_eq!(resent(&v), 1);
    for _ in 0..4 {
        rig.advance(ms(101));
        v.nack(&mut rig, ssrc, &[seq]);
    }
    v.recv(&rig);
    assert_eq!(resent(&v), 1 + 2 + 2, "three resends at most, the later ones in two copies");
    let s = stats(&rig, &v);
    // Asking beyond the maximum got the viewer a GOP restart instead; the
    // restart starts a new sequence epoch, so the last ask is stale.
    assert_eq!((s.suppressed_rtt, s.over_max_resends, s.gop_restarts, s.stale), (2, 1, 1, 1));
}

#[test]
fn the_rtt_comes_from_receiver_reports_and_shortens_the_suppression() {
    let mut rig = Rig::new(AT_ONCE);
    let (_p, mut v) = lossy(&mut rig, 1, Box::new(|_, _| false));
    rig.advance(ms(150));
    v.recv(&rig);
    let (sr_sent, ssrc, ntp_at, _) = *v.srs.iter().find(|s| s.1 == v.video()[0].ssrc).expect("a sender report");
    // The report arrives 50 ms after we sent the SR, and the viewer says
    // it held the SR 30 ms before answering: RTT = 50 - 30 = 20 ms.
    let lsr = (ntp_at >> 16) as u32;
    let dlsr = (30 * 65_536 / 1_000) as u32;
    rig.at(sr_sent + ms(50));
    let block = rts_rtp::rtcp::ReportBlock { ssrc, fraction_lost: 13, cumulative_lost: 4, lsr, dlsr, ..Default::default() };
    let mut buf = [0u8; 128];
    let n = rts_rtp::rtcp::write_receiver_report(&mut buf, 1, &[block]).unwrap();
    v.rtcp(&mut rig, &buf[..n]);
    let idx = rig.core.by_id[&v.session];
    let r = &rig.core.sessions[idx].media.as_ref().unwrap().repair;
    let rtt = r.rtt.expect("measured").as_millis();
    assert!((19..=21).contains(&rtt), "50 ms - 30 ms held = 20 ms, got {rtt}");
    assert_eq!((r.fraction_lost, r.cumulative_lost), (13, 4));
    // Now a repeat 25 ms later is answered (the RTT is 20 ms, not 100).
    let seq = v.video()[2].seq;
    v.nack(&mut rig, ssrc, &[seq]);
    rig.advance(ms(25));
    v.nack(&mut rig, ssrc, &[seq]);
    v.recv(&rig);
    assert_eq!(v.rtp.iter().filter(|r| r.rtx.is_some()).count(), 1 + 2, "the second resend in two copies");
}

#[test]
fn a_lost_keyframe_is_repaired_at_once_and_a_storm_stays_within_the_budget() {
    let mut rig = Rig::new(AT_ONCE);
    let (mut p, mut v) = lossy(&mut rig, 0, Box::new(|_, _| false));
    // A second of 2 Mbit/s-ish video to measure the stream's rate.
    for i in 1..=31u32 {
        rig.advance(ms(33));
        p.video(&mut rig, 33 * i, frame(i % 30 == 0, if i % 30 == 0 { 40_000 } else { 6_000 }, 3));
    }
    v.recv(&rig);
    let ssrc = v.video()[0].ssrc;
    let idx = rig.core.by_id[&v.session];
    let sent_before = rig.core.sessions[idx].media.as_ref().unwrap().bytes_out;
    // The latest keyframe (frame 30: 34 FU-A packets + STAP-A) is lost whole.
    let key_first = v.video().iter().rev().find(|r| r.payload[0] & 0x1f == 24).unwrap().seq;
    let key: Vec<u16> = (0..35u16).map(|i| key_first.wrapping_add(i)).collect();
    v.nack(&mut rig, ssrc, &key);
    v.recv(&rig);
    assert_eq!(v.rtp.iter().filter(|r| r.rtx.is_some()).count(), 35, "the whole keyframe at once");
    // A storm: the viewer claims everything of the last second is lost.
    let all: Vec<u16> = v.video().iter().filter(|r| r.rtx.is_none()).map(|r| r.seq).filter(|s| !key.contains(s)).collect();
    for chunk in all.chunks(100) {
        v.nack(&mut rig, ssrc, chunk);
    }
    v.recv(&rig);
    let s = stats(&rig, &v);
    assert!(s.over_budget > 0, "the storm hit the budget");
    // All of it at one instant: what went out is what the viewer had
    // earned (16 kB to start with, 30 % of what it was sent), which is less
    // than the burst cap (half a second of the ~210 kB/s stream). The
    // budget counts the original packets; on the wire each RTX adds 18 bytes.
    let burst = rig.core.streams.get(rig.core.streams.lookup("live/s").unwrap()).unwrap().repair_burst();
    assert!((0.45..0.55).contains(&(burst / 210_000.0)), "half a second of the stream: {burst}");
    let earned = 16_384.0 + 0.3 * sent_before as f64;
    let original_bytes = (s.resent_bytes - 18 * s.resent) as f64;
    assert!(earned < burst);
    assert!(original_bytes <= earned && original_bytes > earned - 1_300.0, "{original_bytes} bytes resent, {earned} earned");
}

#[test]
fn a_lossy_viewer_gets_its_last_rtt_of_video_again_ahead_of_a_keyframe() {
    let mut rig = Rig::new(AT_ONCE);
    let (mut p, mut v) = lossy(&mut rig, 0, Box::new(|_, _| false));
    let mut clean = Viewer::join(&mut rig, 2, "live", "s");
    rig.advance(ms(20));
    v.recv(&rig);
    let ssrc = v.video()[0].ssrc;
    // A NACK at t = 20 ms makes the viewer lossy (RTT: the 100 ms default).
    v.nack(&mut rig, ssrc, &[v.video()[0].seq]);
    // P-frames 1..=15 (3 packets each, payload filled with their number)
    // at t = 20 + 33 i; frame 5's first packet is NACKed at t = 284.
    for i in 1..=15u32 {
        rig.advance(ms(33));
        p.video(&mut rig, 33 * i, frame(false, 2_500, i as u8));
        if i == 8 {
            v.recv(&rig);
            let f5 = v.video().iter().find(|r| r.rtx.is_none() && r.payload[2] == 5).unwrap().seq;
            v.nack(&mut rig, ssrc, &[f5]);
        }
    }
    // Frame 15's first packet is NACKed at t = 535: its resend is still in
    // flight when the keyframe goes out.
    rig.advance(ms(20));
    v.recv(&rig);
    let f15 = v.video().iter().find(|r| r.rtx.is_none() && r.payload[2] == 15).unwrap().seq;
    v.nack(&mut rig, ssrc, &[f15]);
    v.recv(&rig);
    clean.recv(&rig);
    let (mark, clean_mark) = (v.rtp.len(), clean.rtp.len());
    // The keyframe at t = 548: the guard covers what went out since
    // 548 - (RTT + 50 ms) = 398 (frames 12..=15, at 416 ... 515) and what
    // was resent since 548 - (RTT + 100 + 150 ms) = 198: frame 5's packet
    // (at 284) and frame 15's (at 535, within the RTT: sent anyway), each a
    // second resend, in two copies. The resend at t = 20 is too old.
    rig.advance(ms(13));
    p.video(&mut rig, 528, frame(true, 2_500, 0xee));
    v.recv(&rig);
    clean.recv(&rig);
    let new = &v.rtp[mark..];
    let key_at = new.iter().position(|r| r.rtx.is_none()).expect("the keyframe");
    assert!(new[key_at..].iter().all(|r| r.rtx.is_none()), "the guard goes out ahead of the keyframe");
    let mut fills: Vec<u8> = new[..key_at].iter().map(|r| r.payload[2]).collect();
    fills.sort();
    let mut want = vec![5, 5];
    for f in 12..=14 {
        want.extend([f; 3]);
    }
    want.extend([15; 4]);
    assert_eq!(fills, want);
    assert!(clean.rtp[clean_mark..].iter().all(|r| r.rtx.is_none()), "a viewer without loss gets nothing extra");
    let s = stats(&rig, &v);
    assert_eq!(s.keyframe_guard, 15);
    assert_eq!(rig.core.counters().keyframe_guard, 15);
    // Ten quiet seconds later the viewer is not lossy any more.
    rig.advance(ms(10_000));
    p.video(&mut rig, 10_561, frame(false, 2_500, 1));
    rig.advance(ms(33));
    p.video(&mut rig, 10_594, frame(true, 2_500, 0xee));
    let mark = v.rtp.len();
    v.recv(&rig);
    assert!(v.rtp[mark..].iter().all(|r| r.rtx.is_none()), "no guard after the quiet period");
    assert_eq!(stats(&rig, &v).keyframe_guard, 15);
}

#[test]
fn packets_older_than_the_history_are_not_resent() {
    let mut rig = Rig::new(AT_ONCE);
    let (mut p, mut v) = lossy(&mut rig, 0, Box::new(|_, _| false));
    rig.advance(ms(20));
    p.video(&mut rig, 33, frame(false, 2_500, 1));
    v.recv(&rig);
    let (ssrc, seq) = (v.video()[0].ssrc, v.video().last().unwrap().seq);
    // A new keyframe so the old one leaves the GOP cache, then 3.1 s.
    p.video(&mut rig, 66, frame(true, 2_500, 1));
    rig.advance(ms(3_100));
    v.nack(&mut rig, ssrc, &[seq]);
    v.recv(&rig);
    assert_eq!(v.rtp.iter().filter(|r| r.rtx.is_some()).count(), 0);
    assert_eq!(stats(&rig, &v).not_in_history, 1);
}

#[test]
fn a_viewer_that_did_not_offer_nack_gets_no_retransmissions() {
    let mut rig = Rig::new(AT_ONCE);
    let _p = publish(&mut rig, 1, "live", "s", 1);
    let mut v = Viewer::new(1);
    rig.control(v.add_msg("live", "s", None));
    v.check(&mut rig);
    rig.control(v.start_with(|m| *m.video_nack = false));
    rig.advance(ms(20));
    v.recv(&rig);
    v.nack(&mut rig, v.video()[0].ssrc, &[v.video()[1].seq]);
    v.recv(&rig);
    assert_eq!(v.rtp.iter().filter(|r| r.rtx.is_some()).count(), 0);
}

#[test]
fn nack_off_counts_but_does_not_resend() {
    let mut rig = Rig::new("[webrtc]\nnack = false\n");
    let (_p, mut v) = lossy(&mut rig, 1, Box::new(|_, _| false));
    rig.advance(ms(20));
    v.recv(&rig);
    v.nack(&mut rig, v.video()[0].ssrc, &[v.video()[1].seq]);
    v.recv(&rig);
    assert_eq!(v.rtp.iter().filter(|r| r.rtx.is_some()).count(), 0);
    assert_eq!((rig.core.counters().nacked, rig.core.counters().resent), (1, 0));
}

#[test]
fn a_pli_restarts_the_viewer_from_the_gop_at_most_once_a_second() {
    let mut rig = Rig::new(AT_ONCE);
    let (mut p, mut v) = lossy(&mut rig, 3, Box::new(|_, _| false));
    rig.advance(ms(50));
    p.video(&mut rig, 4 * 33, frame(false, 2_500, 4));
    v.recv(&rig);
    let ssrc = v.video()[0].ssrc;
    let last = v.video().last().map(|r| (*r).clone()).unwrap();
    let before = v.video().len();
    let mut buf = [0u8; 64];
    let n = rts_rtp::rtcp::write_pli(&mut buf, 1, ssrc).unwrap();
    v.rtcp(&mut rig, &buf[..n]);
    rig.advance(ms(50));
    v.recv(&rig);
    let after: Vec<&Rtp> = v.video()[before..].to_vec();
    assert_eq!(after.len(), 4 + 4 * 3, "the GOP again");
    assert_eq!(after[0].seq, last.seq.wrapping_add(1), "in sequence, as new packets");
    assert_eq!(after[0].payload[0] & 0x1f, 24, "starting with the keyframe");
    // The replay right after the last frame, squeezed (session.rs `Squeeze`).
    assert_eq!(after[0].ts, last.ts.wrapping_add(1));
    // A second PLI within the second is counted, not acted on.
    let n = rts_rtp::rtcp::write_fir(&mut buf, 1, ssrc, 1).unwrap();
    v.rtcp(&mut rig, &buf[..n]);
    rig.advance(ms(50));
    v.recv(&rig);
    assert_eq!(v.video().len() - before, 16);
    let s = stats(&rig, &v);
    assert_eq!((s.plis, s.gop_restarts, s.restarts_limited), (2, 1, 1));
    rig.advance(ms(1_000));
    v.rtcp(&mut rig, &buf[..n]);
    assert_eq!(stats(&rig, &v).gop_restarts, 2);
}

#[test]
fn red_carries_the_two_previous_opus_frames() {
    for opus_pt in [AUDIO_PT, 109] {
        let mut rig = Rig::new(AT_ONCE);
        let mut p = publish(&mut rig, 1, "live", "s", 0);
        let mut v = Viewer::new(1);
        rig.control(v.add_msg("live", "s", None));
        v.check(&mut rig);
        rig.control(v.start_with(|m| {
            *m.audio_pt = Some(opus_pt);
            *m.audio_red_pt = Some(RED_PT);
        }));
        let plain = Viewer::join(&mut rig, 2, "live", "s");
        for i in 0..4u8 {
            p.audio(&mut rig, 20 * u32::from(i), opus(i));
        }
        v.recv(&rig);
        let red: Vec<&Rtp> = v.rtp.iter().filter(|r| r.pt == RED_PT).collect();
        assert_eq!(red.len(), 4);
        let blocks: Vec<Vec<(u8, u16, Vec<u8>)>> = red
            .iter()
            .map(|r| rts_rtp::red::parse(&r.payload).unwrap().iter().map(|b| (b.pt, b.ts_offset, b.data.to_vec())).collect())
            .collect();
        let f = |i: u8| vec![0xfc, i, i, i];
        assert_eq!(blocks[0], vec![(opus_pt, 0, f(0))], "the first packet has nothing earlier");
        assert_eq!(blocks[1], vec![(opus_pt, 960, f(0)), (opus_pt, 0, f(1))]);
        assert_eq!(blocks[3], vec![(opus_pt, 1920, f(1)), (opus_pt, 960, f(2)), (opus_pt, 0, f(3))]);
        assert_consecutive(&red, "RED keeps the audio numbering");
        // The viewer without RED gets plain Opus.
        let mut plain = plain;
        plain.recv(&rig);
        assert_eq!(plain.audio().len(), 4);
        assert!(plain.audio().iter().all(|r| r.payload.len() == 4));
    }
}

/// A browser's NACK loop (libwebrtc's NackRequester, simplified): a gap is
/// NACKed at once, again every RTT (100 ms here), up to 10 times; answers
/// held for the next frame (the default) and sent at once.
#[test]
fn random_loss_is_recovered_by_a_browser_like_nack_loop() {
    browser_like_nack_loop("");
    browser_like_nack_loop(AT_ONCE);
}

fn browser_like_nack_loop(toml: &str) {
    let mut rig = Rig::new(toml);
    let (mut p, mut v) = lossy(&mut rig, 0, Box::new(|_, _| false));
    rig.advance(ms(20));
    v.recv(&rig);
    let ssrc = v.video()[0].ssrc;
    // 5 % random loss, seeded (originals and retransmissions alike).
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    v.loss = Some(Box::new(move |_, _| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % 100 < 5
    }));
    let mut missing: HashMap<u16, (Instant, u32)> = HashMap::new();
    let mut highest = v.video().last().unwrap().seq;
    let mut sent_seqs = BTreeSet::new();
    // 300 frames (10 s), then 20 rounds of NACKs only.
    for i in 1..=320u32 {
        rig.advance(ms(33));
        if i <= 300 {
            p.video(&mut rig, 33 * i, frame(i % 60 == 0, 4_000, (i % 200) as u8 + 1));
        }
        let got_before = v.rtp.len();
        v.recv(&rig);
        for r in &v.rtp[got_before..] {
            if r.ssrc != ssrc && r.rtx.is_none() {
                continue;
            }
            missing.remove(&r.seq);
            if r.rtx.is_none() {
                // New gaps below this packet.
                let mut s = highest.wrapping_add(1);
                while s != r.seq && r.seq.wrapping_sub(highest) < 1_000 {
                    missing.insert(s, (rig.now - ms(100), 0));
                    s = s.wrapping_add(1);
                }
                if r.seq.wrapping_sub(highest) < 1_000 {
                    highest = r.seq;
                }
            }
            sent_seqs.insert(r.seq);
        }
        let due: Vec<u16> = missing.iter().filter(|(_, (at, n))| rig.now.duration_since(*at) >= ms(100) && *n < 10).map(|(s, _)| *s).collect();
        for s in &due {
            let e = missing.get_mut(s).unwrap();
            *e = (rig.now, e.1 + 1);
        }
        if !due.is_empty() {
            v.nack(&mut rig, ssrc, &due);
        }
    }
    rig.advance(ms(500));
    let lost_originals = v.lost.len();
    assert!(lost_originals > 50, "the channel lost {lost_originals} packets");
    let unrecovered: Vec<u16> = missing.keys().copied().filter(|s| !sent_seqs.contains(s)).collect();
    assert!(unrecovered.len() <= 1, "unrecovered: {unrecovered:?} of {lost_originals} lost");
    let s = stats(&rig, &v);
    assert!(s.resent as usize >= lost_originals - 5, "{s:?}");
}

/// A viewer (RTX or not), 20 ms away, that lost a full-size packet and the short last
/// packet of frame 1 (2,500 bytes: FU-A packets of 1,200, 1,200 and 141
/// bytes) and NACKed both at t = 53 ms; a clean viewer beside it. Returns
/// the publisher, both viewers, the video SSRC and the two numbers.
fn two_lost_of_a_frame(rig: &mut Rig, rtx: bool) -> (Publisher, Viewer, Viewer, u32, [u16; 2]) {
    let p = publish(rig, 1, "live", "s", 0);
    let mut v = Viewer::new(1);
    rig.control(v.add_msg("live", "s", None));
    v.check(rig);
    rig.control(v.start_with(|m| {
        if !rtx {
            *m.video_rtx = None;
        }
    }));
    let mut clean = Viewer::join(rig, 2, "live", "s");
    let mut p = p;
    rig.advance(ms(20));
    v.recv(rig);
    clean.recv(rig);
    let ssrc = v.video()[0].ssrc;
    set_rtt(rig, &v, Some(ms(20)));
    let next = v.video().last().unwrap().seq.wrapping_add(1);
    let lost = [next, next.wrapping_add(2)];
    v.loss = Some(Box::new(move |s, seq| s == ssrc && lost.contains(&seq)));
    rig.advance(ms(33));
    p.video(rig, 33, frame(false, 2_500, 5));
    v.recv(rig);
    clean.recv(rig);
    v.loss = None;
    assert_eq!(v.lost.len(), 2);
    v.nack(rig, ssrc, &lost);
    v.recv(rig);
    (p, v, clean, ssrc, lost)
}

/// Answers to a NACK wait for the viewer's next frame and leave at the
/// head of its GSO message: the full-size packet's RTX (2 bytes longer
/// than the frame's full packets, which are padded up to it), then the
/// frame, whose short last packet ends the message unpadded. The short
/// packet's RTX, 1,061 bytes short of that size (padding holds 255 at
/// most), goes first in a message of its own.
#[test]
fn held_answers_leave_at_the_head_of_the_next_frames_message() {
    let mut rig = Rig::new("[webrtc]\ndouble_first_resend = false\n");
    let (mut p, mut v, mut clean, _, [full, short]) = two_lost_of_a_frame(&mut rig, true);
    assert!(v.rtp.iter().all(|r| r.rtx.is_none()), "held: nothing resent before the next frame");
    let mark = (v.rtp.len(), clean.rtp.len());
    rig.advance(ms(33));
    let frame_at = rig.now;
    p.video(&mut rig, 66, frame(false, 2_500, 6));
    v.recv(&rig);
    clean.recv(&rig);
    let new = &v.rtp[mark.0..];
    let rtx_of = |seq: u16| new.iter().find(|r| r.rtx.is_some() && r.seq == seq).unwrap_or_else(|| panic!("{seq} resent"));
    let (full_rtx, short_rtx) = (rtx_of(full), rtx_of(short));
    let fresh: Vec<&Rtp> = new.iter().filter(|r| r.rtx.is_none()).collect();
    assert_eq!(fresh.len(), 3);
    assert!(new.iter().all(|r| r.at == frame_at));
    assert!(short_rtx.msg < full_rtx.msg, "the short one first, on its own");
    assert!(fresh.iter().all(|r| r.msg == full_rtx.msg), "the full one's RTX and the frame: one message");
    assert_eq!(new.iter().filter(|r| r.msg == short_rtx.msg).count(), 1);
    assert_eq!((full_rtx.padding, short_rtx.padding), (0, 0));
    assert_eq!(fresh.iter().map(|r| r.padding).collect::<Vec<_>>(), [2, 2, 0]);
    // What the clean viewer got of the frame, byte for byte (its own
    // message had no RTX, so no padding).
    let clean_fresh = &clean.rtp[mark.1..];
    assert_eq!(clean_fresh.iter().map(|r| (r.padding, r.payload.len())).collect::<Vec<_>>(), [(0, 1_188), (0, 1_188), (0, 129)]);
    for (a, b) in fresh.iter().zip(clean_fresh) {
        assert_eq!((a.seq, &a.payload), (b.seq, &b.payload));
    }
    assert_eq!((full_rtx.payload.len(), full_rtx.payload[2..].iter().all(|&b| b == 5)), (1_188, true));
    let s = stats(&rig, &v);
    assert_eq!((s.nacked, s.resent), (2, 2));
    assert_eq!(rig.core.counters().resent, 2);
}

/// Without a delivery the hold ends after `resend_hold_ms`: the answers go
/// out then, in a message of their own. A viewer that leaves while its
/// answers are held gets nothing.
#[test]
fn a_hold_without_a_delivery_ends_after_resend_hold_ms() {
    let mut rig = Rig::new("[webrtc]\nresend_hold_ms = 25\ndouble_first_resend = false\n");
    let (_p, mut v, _clean, ssrc, [full, short]) = two_lost_of_a_frame(&mut rig, true);
    let nacked_at = rig.now;
    let mut w = Viewer::join(&mut rig, 3, "live", "s");
    rig.advance(ms(5)); // its GOP replay
    w.recv(&rig);
    let w_seq = w.video().last().unwrap().seq;
    set_rtt(&mut rig, &w, Some(ms(20)));
    w.nack(&mut rig, ssrc, &[w_seq]);
    rig.control(ControlToShard::RemoveSession { session: w.session, reason: "left".into() });
    let w_mark = rig.sent.iter().filter(|s| s.dst == w.addr).count();
    rig.at(nacked_at + ms(24));
    v.recv(&rig);
    assert!(v.rtp.iter().all(|r| r.rtx.is_none()), "still held at 24 ms");
    rig.at(nacked_at + ms(25));
    v.recv(&rig);
    let rtx: Vec<&Rtp> = v.rtp.iter().filter(|r| r.rtx.is_some()).collect();
    assert_eq!(rtx.iter().map(|r| r.seq).collect::<BTreeSet<_>>(), [full, short].into());
    assert!(rtx.iter().all(|r| r.at == nacked_at + ms(25) && r.padding == 0));
    let msgs: BTreeSet<usize> = rtx.iter().map(|r| r.msg).collect();
    assert!(rig.sent.iter().filter(|s| msgs.contains(&s.msg)).all(|s| s.dst == v.addr && s.data[8..12] == RTX_SSRC.to_be_bytes()), "nothing else in their messages");
    assert_eq!(rig.sent.iter().filter(|s| s.dst == w.addr).count(), w_mark, "nothing for the viewer that left");
    assert_eq!(rig.core.counters().resent, 2);
}

/// A P-frame of two NAL units of `a` and `b` bytes (filled with `fill`).
fn two_nals(a: usize, b: usize, fill: u8) -> Bytes {
    let mut t = vec![0x27, 1, 0, 0, 0];
    for len in [a, b] {
        t.extend_from_slice(&(len as u32).to_be_bytes());
        t.push(0x41);
        t.extend(std::iter::repeat_n(fill, len - 1));
    }
    Bytes::from(t)
}

/// Without RTX a resend repeats its original byte for byte (the SRTP index
/// repeats), so it is never padded, and neither is fresh video (a later
/// resend of it must repeat it exactly). The next frame is a 1,100-byte
/// NAL unit (one packet, 88 bytes short of a full one) and a 2,500-byte
/// one: the full-size resend and the short packet share a message, which
/// the short packet ends; the short lost packet's resend goes alone.
#[test]
fn without_rtx_nothing_is_padded_and_a_same_size_resend_joins_the_frame() {
    let mut rig = Rig::new("");
    let (mut p, mut v, _clean, ssrc, [full, short]) = two_lost_of_a_frame(&mut rig, false);
    let mark = v.rtp.len();
    rig.advance(ms(33));
    p.video(&mut rig, 66, two_nals(1_100, 2_500, 6));
    v.recv(&rig);
    let new = &v.rtp[mark..];
    assert!(new.iter().all(|r| r.ssrc == ssrc && r.rtx.is_none() && r.padding == 0));
    let again = |seq: u16| new.iter().find(|r| r.seq == seq).unwrap_or_else(|| panic!("{seq} resent"));
    let (full_again, short_again) = (again(full), again(short));
    let fresh: Vec<&Rtp> = new.iter().filter(|r| r.seq != full && r.seq != short).collect();
    assert_eq!(fresh.iter().map(|r| r.payload.len()).collect::<Vec<_>>(), [1_100, 1_188, 1_188, 129]);
    assert_eq!(fresh[0].msg, full_again.msg, "the same-size resend and the frame's first packet");
    assert!(fresh[1..].iter().all(|r| r.msg > full_again.msg), "which, shorter, ends that message");
    assert!(short_again.msg < full_again.msg);
    assert_eq!(rig.sent.iter().filter(|s| s.dst == v.addr && s.data[0] & 0x20 != 0).count(), 0, "no P bit on the wire");
}

/// A held answer must still arrive before the receiver asks again
/// (libwebrtc: 100 ms without an RTT of its own): a viewer 85 ms away
/// (100 - 85 - 20 ms margin < 0), like one whose RTT is not measured yet
/// (100 ms assumed), gets its answers at once; one 50 ms away holds them
/// 30 ms, not the configured 40.
#[test]
fn far_viewers_get_their_answers_at_once_and_near_ones_hold_them_less() {
    for (rtt, held) in [(Some(85), 0), (None, 0), (Some(50), 30)] {
        let mut rig = Rig::new("");
        let (_p, mut v, _clean, _, [full, short]) = two_lost_of_a_frame(&mut rig, true);
        // two_lost_of_a_frame set 20 ms and NACKed: NACK again under this RTT.
        set_rtt(&mut rig, &v, rtt.map(ms));
        rig.advance(ms(200)); // the first answers went out; the RTT rule allows a second
        v.recv(&rig);
        let before = v.rtp.iter().filter(|r| r.rtx.is_some()).count();
        let ssrc = v.video()[0].ssrc;
        let nacked_at = rig.now;
        v.nack(&mut rig, ssrc, &[full, short]);
        rig.at(nacked_at + ms(held));
        v.recv(&rig);
        let answers: Vec<&Rtp> = v.rtp.iter().filter(|r| r.rtx.is_some()).skip(before).collect();
        assert!(!answers.is_empty(), "rtt {rtt:?}: answered by {held} ms");
        assert!(answers.iter().all(|r| r.at == nacked_at + ms(held)), "rtt {rtt:?}: {:?}", answers.iter().map(|r| r.at - nacked_at).collect::<Vec<_>>());
    }
}
