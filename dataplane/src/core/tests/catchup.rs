//! GOP catch-up: a new viewer gets the cached GOP at 5,000 packets/s, with
//! live video queued behind it and live audio at once.

use super::*;

#[test]
fn gop_replay_is_paced_with_live_video_behind_and_audio_at_once() {
    let mut rig = Rig::new("");
    // A GOP of 1 + 3 + 99 x 3 = 301 packets.
    let mut p = publish(&mut rig, 1, "live", "s", 99);
    let gop = rig.core.streams.get(rig.core.streams.lookup("live/s").unwrap()).unwrap().gop_cache().len();
    assert_eq!(gop, 301);
    let mut v = Viewer::join(&mut rig, 1, "live", "s");
    let t0 = rig.now;
    // Live media during the replay: a P-frame after 20 ms, audio too.
    rig.at(t0 + ms(20));
    p.video(&mut rig, 3_300, frame(false, 2_500, 9));
    p.audio(&mut rig, 3_300, opus(1));
    let audio_at = rig.now;
    rig.at(t0 + ms(200));
    v.recv(&rig);

    let video = v.video();
    assert_eq!(video.len(), 301 + 3, "the whole GOP, then the live frame");
    assert_consecutive(&video, "video");
    // FU-A payloads: indicator, header, then the slice bytes (the fill).
    assert!(video[300].payload[2..].iter().all(|&b| b == 2), "the GOP's last P-frame");
    assert!(video[301..].iter().all(|p| p.payload[2..].iter().all(|&b| b == 9)), "then the live frame");
    // Paced: never more than 5 packets per 1 ms step, 301 packets over
    // ~60 ms (5,000/s), not in one burst.
    let start = video[0].at;
    let done = video[300].at;
    let took = done.duration_since(start);
    assert!((ms(55)..=ms(65)).contains(&took), "GOP replay took {took:?}");
    let mut per_ms: HashMap<Instant, usize> = HashMap::new();
    for p in &video[..301] {
        *per_ms.entry(p.at).or_default() += 1;
    }
    assert!(per_ms.values().all(|&n| n <= 5), "at most 5 packets per step: {:?}", per_ms.values().max());
    // Audio was not queued behind the replay.
    let audio = v.audio();
    assert_eq!(audio.len(), 1);
    assert_eq!(audio[0].at, audio_at, "audio goes out at once");
    assert!(audio[0].at < done);
}

#[test]
fn without_gop_cache_a_viewer_waits_for_the_next_keyframe() {
    let mut rig = Rig::new("[webrtc]\ngop_cache = false\n");
    let mut p = publish(&mut rig, 1, "live", "s", 5);
    let mut v = Viewer::join(&mut rig, 1, "live", "s");
    rig.advance(ms(100));
    v.recv(&rig);
    assert!(v.video().is_empty(), "nothing replayed");
    // A P-frame before the next keyframe would not decode: not sent.
    p.video(&mut rig, 166, frame(false, 2_500, 9));
    v.recv(&rig);
    assert!(v.video().is_empty(), "no P-frame before the first keyframe");
    p.video(&mut rig, 200, frame(true, 2_500, 1));
    p.video(&mut rig, 233, frame(false, 2_500, 2));
    v.recv(&rig);
    assert_eq!(v.video().len(), 4 + 3, "live from the keyframe (STAP-A + 3), then its P-frames");
    assert_consecutive(&v.video(), "from the keyframe on");

    // A switch without a GOP cache: the new stream's P-frames wait for its
    // keyframe too, while the old stream no longer reaches the viewer.
    let mut b = Publisher::connect(&mut rig, 2, "live", "b");
    b.gop(&mut rig, 1_000, 1);
    let before = v.video().len();
    rig.control(ControlToShard::SwitchStream { session: v.session, app: "live".into(), stream: "b".into(), home_shard: None });
    b.video(&mut rig, 1_066, frame(false, 2_500, 3));
    p.video(&mut rig, 266, frame(false, 2_500, 4));
    v.recv(&rig);
    assert_eq!(v.video().len(), before, "nothing between the switch and b's next keyframe");
    b.video(&mut rig, 1_100, frame(true, 2_500, 5));
    v.recv(&rig);
    let after = &v.video()[before..];
    assert_eq!(after.len(), 4);
    assert_eq!(after[0].payload[0] & 0x1f, 24, "b's keyframe (STAP-A with SPS/PPS) first");
}

#[test]
fn a_viewer_leaving_during_its_replay_stops_it() {
    let mut rig = Rig::new("");
    let _p = publish(&mut rig, 1, "live", "s", 99);
    let v = Viewer::join(&mut rig, 1, "live", "s");
    rig.advance(ms(10));
    let sent = rig.sent.iter().filter(|s| s.dst == v.addr).count();
    assert!((40..=60).contains(&sent), "{sent} packets in 10 ms");
    rig.control(ControlToShard::RemoveSession { session: v.session, reason: "bye".into() });
    rig.advance(ms(200));
    assert_eq!(rig.sent.iter().filter(|s| s.dst == v.addr).count(), sent, "nothing after removal");
    assert!(rig.core.catchup.is_empty());
}

#[test]
fn replay_pace_holds_when_a_step_spans_the_shells_slices() {
    let mut rig = Rig::new("");
    let _p = publish(&mut rig, 1, "live", "s", 99); // a GOP of 301 packets
    // 40 viewers join at once; with one batch (16 messages) per turn a step
    // to all of them lasts longer than the 1 ms between steps.
    rig.slice = Some(1);
    let mut viewers: Vec<Viewer> = (1..=40).map(|n| Viewer::join(&mut rig, n, "live", "s")).collect();
    let t0 = rig.now;
    rig.at(t0 + ms(300));
    rig.slice = None;
    rig.drain();
    for v in &mut viewers {
        v.recv(&rig);
        let video = v.video();
        assert_eq!(video.len(), 301, "viewer {}", v.session);
        assert_consecutive(&video, "video");
        let took = video[300].at.duration_since(video[0].at);
        assert!(took >= ms(55), "viewer {}: 301 packets in {took:?}, faster than 5,000/s", v.session);
    }
}
