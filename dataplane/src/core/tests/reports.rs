//! RTCP: the sender-report schedule and clock mapping; feedback counted.

use super::*;

#[test]
fn sender_reports_come_fast_for_two_seconds_then_every_second_on_one_clock() {
    let mut rig = Rig::new("");
    let mut p = publish(&mut rig, 1, "live", "s", 0);
    p.audio(&mut rig, 0, opus(1));
    let mut v = Viewer::join(&mut rig, 1, "live", "s");
    let t0 = rig.t0;
    p.audio(&mut rig, 20, opus(2)); // the audio track starts for the viewer
    rig.at(t0 + Duration::from_millis(5_500));
    v.recv(&rig);
    let video_ssrc = v.video()[0].ssrc;
    let audio_ssrc = v.audio()[0].ssrc;
    let times = |ssrc: u32| -> Vec<u64> { v.srs.iter().filter(|s| s.1 == ssrc).map(|s| s.0.duration_since(t0).as_millis() as u64).collect() };
    let expected: Vec<u64> = (0..10).map(|i| 100 + 200 * i).chain([2_100, 3_100, 4_100, 5_100]).collect();
    assert_eq!(times(video_ssrc), expected, "every 200 ms while young, then every second");
    assert_eq!(times(audio_ssrc), expected, "both tracks reported together");
    for (at, ssrc, ntp, rtp) in &v.srs {
        let since = at.duration_since(t0);
        // NTP time: the wall clock at that instant (the rig started at a
        // fixed Unix time).
        assert_eq!(*ntp, rts_rtp::unix_micros_to_ntp(1_700_000_000_000_000 + since.as_micros() as u64));
        // RTP time: stream time now (the keyframe at 0 ms arrived at t0),
        // in each track's clock, so both map to the same instant.
        let stream_ms = since.as_millis() as u32;
        let rate = if *ssrc == video_ssrc { 90 } else { 48 };
        assert_eq!(*rtp, stream_ms * rate, "{ssrc:x} at {since:?}");
    }
}

#[test]
fn a_switch_brings_a_report_at_once_then_fast_ones_for_two_seconds() {
    // The receiver's lip sync maps each track by the reports; after a
    // switch they carry the new stream's mapping, soon and often (its
    // estimator fits the last 20 reports, so one a second would leave the
    // old stream's mapping weighing for many seconds).
    let mut rig = Rig::new("");
    let mut a = publish(&mut rig, 1, "live", "a", 0);
    let _b = publish(&mut rig, 2, "live", "b", 0);
    a.audio(&mut rig, 0, opus(1));
    let mut v = Viewer::join(&mut rig, 1, "live", "a");
    let t0 = rig.t0;
    rig.at(t0 + Duration::from_millis(5_050));
    rig.control(ControlToShard::SwitchStream { session: v.session, app: "live".into(), stream: "b".into(), home_shard: None });
    rig.at(t0 + Duration::from_millis(8_500));
    v.recv(&rig);
    let video_ssrc = v.video()[0].ssrc;
    let times: Vec<u64> = v.srs.iter().filter(|s| s.1 == video_ssrc).map(|s| s.0.duration_since(t0).as_millis() as u64).filter(|&ms| ms > 4_200).collect();
    // Before the switch one a second (4_100; 5_100 next); the switch at
    // 5_050 makes the next due at 5_150, sent at the 5_200 housekeeping
    // tick, then every 200 ms while young (until 7_050: the one at 7_000
    // is still young), then every second.
    let expected: Vec<u64> = (0..10).map(|i| 5_200 + 200 * i).chain([7_200, 8_200]).collect();
    assert_eq!(times, expected, "a report 100 ms after the switch, every 200 ms for 2 s, then every second");
}

#[test]
fn no_reports_before_media_or_for_tracks_that_did_not_start() {
    let mut rig = Rig::new("");
    let _p = publish(&mut rig, 1, "live", "s", 0); // video only
    let mut v = Viewer::join(&mut rig, 1, "live", "s");
    let w = Viewer::new(2);
    rig.control(w.add_msg("live", "s", None));
    w.check(&mut rig); // never starts media
    rig.advance(Duration::from_secs(3));
    v.recv(&rig);
    assert!(!v.srs.is_empty());
    let video_ssrc = v.video()[0].ssrc;
    assert!(v.srs.iter().all(|s| s.1 == video_ssrc), "no audio report without audio");
    let to_w = rig.sent.iter().filter(|s| s.dst == w.addr).count();
    assert_eq!(to_w, 1, "only the STUN answer reaches a session without media");
}

#[test]
fn feedback_is_decrypted_and_counted_and_bad_srtcp_is_dropped() {
    let mut rig = Rig::new("");
    let _p = publish(&mut rig, 1, "live", "s", 0);
    let mut v = Viewer::join(&mut rig, 1, "live", "s");
    rig.advance(ms(50));
    v.recv(&rig);
    let ssrc = v.video()[0].ssrc;
    let mut buf = [0u8; 128];
    let n = rts_rtp::rtcp::write_nack(&mut buf, 1, ssrc, &[1, 2, 3]).unwrap();
    v.rtcp(&mut rig, &buf[..n]);
    let n = rts_rtp::rtcp::write_pli(&mut buf, 1, ssrc).unwrap();
    v.rtcp(&mut rig, &buf[..n]);
    let c = *rig.core.counters();
    assert_eq!((c.rtcp_in, c.nacks_in, c.plis_in), (2, 1, 1));
    // Tampered SRTCP is dropped and counted.
    let mut out = vec![0u8; 256];
    let n = rts_rtp::rtcp::write_pli(&mut buf, 1, ssrc).unwrap();
    let mut tx = SrtpContext::new(Profile::AeadAes128Gcm, &[0; 16], &[0; 12]).unwrap();
    let m = tx.protect_rtcp(&buf[..n], &mut out).unwrap();
    rig.datagram(v.addr, &out[..m]);
    assert_eq!(rig.core.counters().srtcp_failed, 1);
}

#[test]
fn a_round_of_reports_still_going_out_is_not_started_again() {
    // The shell sends a slice of batches per input: with one batch per
    // turn a round to 100 viewers (16 per batch) lasts longer than the
    // 200 ms between rounds of young viewers.
    let mut rig = Rig::new("");
    let _p = publish(&mut rig, 1, "live", "s", 0);
    let mut viewers: Vec<Viewer> = (1..=100).map(|n| Viewer::join(&mut rig, n, "live", "s")).collect();
    rig.slice = Some(1);
    rig.advance(Duration::from_secs(3));
    rig.slice = None;
    rig.drain();
    for v in &mut viewers {
        v.recv(&rig);
        let times: Vec<Instant> = v.srs.iter().map(|s| s.0).collect();
        assert!(times.len() >= 2, "viewer {}: {} reports in 3 s", v.session, times.len());
        for w in times.windows(2) {
            assert!(w[1] - w[0] >= ms(100), "viewer {}: two reports {:?} apart", v.session, w[1] - w[0]);
        }
    }
}
