//! RTMP ingest: the publish decision, and publishers that go away.

use super::*;

const KEYED: &str = "[auth]\ningest_key = \"secret\"\nvalidity_s = 1800\n";
/// The rig's wall clock starts at this Unix time.
const START_UNIX: u64 = 1_700_000_000;

fn refused(rig: &Rig) -> Vec<String> {
    rig.ctl
        .iter()
        .filter_map(|m| match m {
            ShardToControl::PublishRefused { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn publish_keys_are_checked_against_the_core_clock() {
    let mut rig = Rig::new(KEYED);
    let token = rts_common::auth::sign_path("/live/s", "secret", START_UNIX, "r1", "0");
    let p = Publisher::connect(&mut rig, 1, "live", &format!("s?auth_key={token}"));
    assert!(p.accepted(), "{:?}", p.events);
    p.drop_connection(&mut rig);

    let p = Publisher::connect(&mut rig, 2, "live", "s?auth_key=1-2-3-00112233445566778899aabbccddeeff");
    assert!(!p.accepted());
    let p = Publisher::connect(&mut rig, 3, "live", "s");
    assert!(!p.accepted());
    assert_eq!(refused(&rig), vec!["auth: bad_signature".to_string(), "auth: missing".to_string()]);
    assert_eq!(rig.closed, vec![2, 3], "refused connections are closed after the error status");

    // The same token half an hour later: expired (by the simulated clock).
    rig.advance(Duration::from_secs(1_801));
    let p = Publisher::connect(&mut rig, 4, "live", &format!("s?auth_key={token}"));
    assert!(!p.accepted());
    assert_eq!(refused(&rig).last().map(String::as_str), Some("auth: expired"));
    assert_eq!(rig.core.counters().rtmp_publish_refused, 3);
}

#[test]
fn a_second_publisher_of_a_live_stream_is_refused() {
    let mut rig = Rig::new("");
    let _first = publish(&mut rig, 1, "live", "s", 0);
    let second = Publisher::connect(&mut rig, 2, "live", "s");
    assert!(!second.accepted());
    assert_eq!(refused(&rig), vec!["stream already publishing".to_string()]);
    let other = Publisher::connect(&mut rig, 3, "live", "t");
    assert!(other.accepted(), "another stream is fine");
}

#[test]
fn a_publisher_that_disconnects_mid_gop_and_comes_back_keeps_viewers_continuous() {
    let mut rig = Rig::new("");
    let mut p = publish(&mut rig, 1, "live", "s", 3);
    let mut v = Viewer::join(&mut rig, 1, "live", "s");
    rig.advance(ms(50));
    p.video(&mut rig, 4 * 33, frame(false, 2_500, 4));
    // Gone in the middle of the GOP.
    p.drop_connection(&mut rig);
    assert!(rig.ctl.iter().any(|m| matches!(m, ShardToControl::StreamEnded { .. })));
    let id = rig.core.streams.lookup("live/s").expect("kept for its viewer");
    assert!(!rig.core.streams.get(id).unwrap().is_live());
    v.recv(&rig);
    let before = v.video().len();
    let last = v.video().last().map(|p| (*p).clone()).unwrap();
    rig.advance(Duration::from_secs(2));

    // It reconnects with its clock restarted at 0.
    let mut q = Publisher::connect(&mut rig, 2, "live", "s");
    assert!(q.accepted());
    assert_eq!(rig.core.streams.lookup("live/s"), Some(id), "the same stream");
    q.gop(&mut rig, 0, 1);
    v.recv(&rig);
    let video = v.video();
    assert_eq!(video.len(), before + 4 + 3);
    assert_consecutive(&video, "across the reconnect");
    let first_new = video[before];
    assert_eq!(first_new.payload[0] & 0x1f, 24, "resumes on a keyframe");
    // The stream clock re-bases one 33 ms frame after the last one.
    assert_eq!(first_new.ts.wrapping_sub(last.ts), 33 * 90, "RTP time continues, not from the publisher's 0");

    // And a viewer-less stream disappears with its publisher.
    let r = publish(&mut rig, 3, "live", "lonely", 0);
    r.drop_connection(&mut rig);
    assert!(rig.core.streams.lookup("live/lonely").is_none());
}

#[test]
fn rtmp_garbage_closes_that_connection_only() {
    let mut rig = Rig::new("");
    let mut p = publish(&mut rig, 1, "live", "s", 0);
    let mut v = Viewer::join(&mut rig, 1, "live", "s");
    rig.core.handle_rtmp_open(rig.now, 2, None);
    rig.core.handle_rtmp_data(rig.now, 2, &[3; 1537]);
    rig.core.handle_rtmp_data(rig.now, 2, &[0xff; 4000]);
    rig.drain();
    assert_eq!(rig.closed, vec![2]);
    assert_eq!(rig.core.counters().rtmp_errors, 1);
    // Data for unknown connections is ignored.
    rig.core.handle_rtmp_data(rig.now, 99, b"hello");
    rig.drain();
    rig.advance(ms(20));
    p.video(&mut rig, 33, frame(false, 2_500, 3));
    v.recv(&rig);
    assert_eq!(v.video().len(), 4 + 3, "the publisher and viewer carry on");
}

/// 3 s of a publisher whose audio comes 50 ms after its video (media time
/// `t` of both at `t` and `t + 50` ms) to one viewer; returns how much
/// later than its media time each of the last second's video packets
/// reached the viewer (ms), and the stream's figures.
fn audio_50_ms_late(hold: bool) -> (Vec<f64>, StreamStats) {
    let mut rig = Rig::new(&format!("[webrtc]\nhold_video_for_audio = {hold}\n"));
    let t0 = rig.now;
    let mut p = publish(&mut rig, 1, "live", "s", 0);
    let mut v = Viewer::join(&mut rig, 1, "live", "s");
    for step in 1..3_000u32 {
        rig.at(t0 + ms(u64::from(step)));
        if step % 33 == 0 {
            p.video(&mut rig, step, frame(false, 2_500, 2));
        }
        if step >= 50 && (step - 50) % 20 == 0 {
            p.audio(&mut rig, step - 50, opus(1));
        }
    }
    rig.advance(ms(200));
    v.recv(&rig);
    let late: Vec<f64> = v
        .video()
        .iter()
        .filter(|r| r.at >= t0 + ms(2_000))
        .map(|r| r.at.duration_since(t0).as_secs_f64() * 1000.0 - f64::from(r.ts) / 90.0)
        .collect();
    (late, stream_stats(&mut rig, "s"))
}

#[test]
fn video_waits_for_audio_that_leaves_later() {
    let (late, stats) = audio_50_ms_late(true);
    assert!(late.len() >= 60, "{} packets", late.len());
    // The hold reached the lag (within its 3 ms dead band) a millisecond a
    // frame, and every packet of the last second waited that long.
    let hold = stats.video_hold_ms;
    assert!((47..=50).contains(&hold), "hold {hold} ms: {stats:?}");
    for l in &late {
        assert!((46.0..=52.0).contains(l), "video {l:.1} ms after its media time; hold {hold} ms");
    }
    // The lag stays the publisher's; receivers are told only what is
    // left: the hint's floor (10 ms) plus the settled allowance (30 ms).
    assert!(stats.av_lag_ms.is_some_and(|l| (48..=52).contains(&l)), "{stats:?}");
    assert_eq!(stats.playout_delay_min_ms, 40, "{stats:?}");

    // Without the hold: video leaves as it comes, and the hint carries
    // the whole lag (50 ms + 30).
    let (late, stats) = audio_50_ms_late(false);
    assert_eq!(stats.video_hold_ms, 0);
    for l in &late {
        assert!((-0.5..=2.0).contains(l), "video {l:.1} ms after its media time without a hold");
    }
    assert_eq!(stats.playout_delay_min_ms, 80, "{stats:?}");
}

/// A room with AAC and no WebRTC viewer has no transcoded audio, so no A/V
/// lag of its own: its video hold starts from the lag the shard measured on
/// its other rooms (here 50 ms), or 40 ms when none has, ready for the
/// first viewer to switch in. A room without AAC (video only here) is not
/// held, and a room whose publisher left (its lag frozen, here about 0)
/// does not count.
#[test]
fn a_room_not_transcoded_yet_starts_its_hold_from_the_shards_lag() {
    let aac_header = Bytes::from_static(&[0xaf, 0, 0x12, 0x10]);
    // Alone on its shard: the default.
    let mut rig = Rig::new("[webrtc]\nhold_video_for_audio = true\n");
    let t0 = rig.now;
    let mut alone = publish(&mut rig, 1, "live", "alone", 0);
    alone.audio(&mut rig, 0, aac_header.clone());
    for step in 1..3_000u32 {
        rig.at(t0 + ms(u64::from(step)));
        if step % 33 == 0 {
            alone.video(&mut rig, step, frame(false, 2_500, 2));
        }
    }
    let stats = stream_stats(&mut rig, "alone");
    assert!((37..=40).contains(&stats.video_hold_ms), "hold {} ms: {stats:?}", stats.video_hold_ms);

    // Beside a room whose audio leaves 50 ms after its video.
    let mut rig = Rig::new("[webrtc]\nhold_video_for_audio = true\n");
    let t0 = rig.now;
    let mut p = publish(&mut rig, 1, "live", "s", 0);
    let _v = Viewer::join(&mut rig, 1, "live", "s");
    let mut cold = publish(&mut rig, 2, "live", "cold", 0);
    cold.audio(&mut rig, 0, aac_header);
    let mut mute = publish(&mut rig, 3, "live", "mute", 0);
    // Audio with its video (lag about 0) until its publisher leaves at
    // 500 ms; a viewer keeps the stream.
    let mut gone = Some(publish(&mut rig, 4, "live", "gone", 0));
    let _w = Viewer::join(&mut rig, 2, "live", "gone");
    for step in 1..3_000u32 {
        rig.at(t0 + ms(u64::from(step)));
        if step % 33 == 0 {
            for publisher in [&mut p, &mut cold, &mut mute] {
                publisher.video(&mut rig, step, frame(false, 2_500, 2));
            }
            if let Some(g) = gone.as_mut() {
                g.video(&mut rig, step, frame(false, 2_500, 2));
            }
        }
        if step >= 50 && (step - 50) % 20 == 0 {
            p.audio(&mut rig, step - 50, opus(1));
        }
        if let Some(g) = gone.as_mut().filter(|_| step % 20 == 0) {
            g.audio(&mut rig, step, opus(1));
        }
        if step == 500 {
            gone.take().expect("publishing").drop_connection(&mut rig);
        }
    }
    assert!(stream_stats(&mut rig, "gone").av_lag_ms.is_some_and(|l| l.abs() <= 5), "the room that left measured its lag");
    let stats = stream_stats(&mut rig, "cold");
    assert_eq!(stats.av_lag_ms, None, "no audio of its own yet: {stats:?}");
    assert!((47..=50).contains(&stats.video_hold_ms), "hold {} ms: {stats:?}", stats.video_hold_ms);
    assert_eq!(stream_stats(&mut rig, "mute").video_hold_ms, 0);
}
