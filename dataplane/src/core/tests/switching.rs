//! Channel switch on one session: continuity, and refusals.

use super::*;

fn switch(rig: &mut Rig, v: &Viewer, stream: &str, home: Option<u32>) -> (bool, String) {
    rig.control(ControlToShard::SwitchStream { session: v.session, app: "live".into(), stream: stream.into(), home_shard: home });
    match rig.ctl.iter().rev().find(|m| matches!(m, ShardToControl::SwitchDone { .. })) {
        Some(ShardToControl::SwitchDone { ok, reason, .. }) => (*ok, reason.clone()),
        _ => panic!("no SwitchDone"),
    }
}

#[test]
fn switch_keeps_ssrc_sequence_and_time_continuous_and_starts_on_a_keyframe() {
    let mut rig = Rig::new("");
    let mut a = publish(&mut rig, 1, "live", "a", 4);
    let mut b = Publisher::connect(&mut rig, 2, "live", "b");
    // Stream b's clock is far from a's.
    b.gop(&mut rig, 500_000, 2);
    let mut v = Viewer::join(&mut rig, 1, "live", "a");
    rig.advance(ms(50));
    a.video(&mut rig, 5 * 33, frame(false, 2_500, 5));
    a.audio(&mut rig, 5 * 33, opus(1));
    v.recv(&rig);
    let before = v.rtp.len();
    let (last_v, last_a) = (v.video().last().map(|p| (*p).clone()).unwrap(), v.audio().last().map(|p| (*p).clone()).unwrap());

    assert_eq!(switch(&mut rig, &v, "b", None), (true, String::new()));
    rig.advance(ms(50));
    b.video(&mut rig, 500_000 + 3 * 33, frame(false, 2_500, 7));
    b.audio(&mut rig, 500_000 + 3 * 33, opus(2));
    // Stream a goes on; its packets must not reach the viewer any more.
    a.video(&mut rig, 6 * 33, frame(false, 2_500, 6));
    v.recv(&rig);
    let after: Vec<&Rtp> = v.rtp[before..].iter().collect();
    let video: Vec<&&Rtp> = after.iter().filter(|p| p.pt == VIDEO_PT).collect();
    assert_eq!(video.len(), 4 + 2 * 3 + 3, "b's GOP then its live frame");
    assert!(video.iter().all(|p| p.ssrc == last_v.ssrc), "the answer's SSRC stays");
    assert_eq!(video[0].seq, last_v.seq.wrapping_add(1), "sequence continues across the switch");
    for w in video.windows(2) {
        assert_eq!(w[1].seq, w[0].seq.wrapping_add(1));
    }
    // b's GOP replay right after the last frame of a, squeezed (session.rs
    // `Squeeze`, whose arithmetic session.rs's tests check) up to where the
    // clocks put b's frames. b's GOP (three frames, 500_000-500_066 ms)
    // arrived at once, 50 ms before a's last frame: by the clocks b's
    // frames belong before a's last one, so they go right after it, as
    // close as distinct times allow (6 units for 66 ms of GOP), its live
    // frame of 500_099 ms too.
    let after_last = |p: &Rtp| p.ts.wrapping_sub(last_v.ts);
    assert_eq!(video[0].ts, last_v.ts.wrapping_add(1), "time goes on from a's last frame, not b's clock");
    assert!((2..=7).contains(&after_last(video[4 + 2 * 3 - 1])), "b's newest cached frame right after a's last: {}", after_last(video[4 + 2 * 3 - 1]));
    assert!((3..=7).contains(&after_last(video[4 + 2 * 3])), "b's live frame, before a's last by the clocks, squeezed too: {}", after_last(video[4 + 2 * 3]));
    assert!(video.windows(2).all(|w| w[1].ts >= w[0].ts), "time never goes back");
    assert_eq!(video[0].payload[0] & 0x1f, 24, "starts with b's keyframe (STAP-A with SPS/PPS)");
    assert!(video.iter().all(|p| p.payload.len() < 3 || p.payload[2..].iter().all(|&x| x != 6)), "nothing of a after the switch");
    let audio: Vec<&&Rtp> = after.iter().filter(|p| p.pt == AUDIO_PT).collect();
    assert_eq!(audio.len(), 1);
    assert_eq!((audio[0].ssrc, audio[0].seq), (last_a.ssrc, last_a.seq.wrapping_add(1)));
    // b had no audio yet at the switch, so a's audio would have gone on
    // (an audio tail; a sent none); b's first audio ends it, re-based by
    // the two streams' audio clocks then: a's last audio (165 ms) left on
    // time 50 ms before, and b's first packet is on time by b's clock, so
    // it comes 50 ms of a's time after a's last.
    assert_eq!(audio[0].ts, last_a.ts.wrapping_add(50 * 48));
    let vs = rig.core.streams.lookup("live/b").and_then(|id| rig.core.streams.get(id)).unwrap();
    assert_eq!(vs.viewers().len(), 1);
    let va = rig.core.streams.lookup("live/a").and_then(|id| rig.core.streams.get(id)).unwrap();
    assert!(va.viewers().is_empty());
}

#[test]
fn switch_to_a_stream_that_is_not_live_is_refused_and_changes_nothing() {
    let mut rig = Rig::new("");
    let mut a = publish(&mut rig, 1, "live", "a", 0);
    let mut v = Viewer::join(&mut rig, 1, "live", "a");
    assert_eq!(switch(&mut rig, &v, "nobody", None), (false, "stream is not live".to_string()));
    assert_eq!(switch(&mut rig, &v, "nobody", Some(0)), (false, "stream is not live".to_string()), "home here but not published");
    assert!(rig.core.streams.lookup("live/nobody").is_none(), "no stream entry left behind");
    rig.advance(ms(50));
    let n = {
        v.recv(&rig);
        v.video().len()
    };
    a.video(&mut rig, 33, frame(false, 2_500, 3));
    v.recv(&rig);
    assert_eq!(v.video().len(), n + 3, "still playing a");
    // A session that is not playing yet cannot switch.
    let w = Viewer::new(2);
    rig.control(w.add_msg("live", "a", None));
    assert_eq!(switch(&mut rig, &w, "a", None), (false, "session is not playing yet".to_string()));
}

#[test]
fn repeated_switches_leave_the_viewer_on_exactly_one_stream() {
    let mut rig = Rig::new("");
    let _a = publish(&mut rig, 1, "live", "a", 0);
    let _b = publish(&mut rig, 2, "live", "b", 0);
    let v = Viewer::join(&mut rig, 1, "live", "a");
    for _ in 0..3 {
        assert!(switch(&mut rig, &v, "b", None).0);
        assert!(switch(&mut rig, &v, "a", None).0);
    }
    // Published streams stay; the viewer is on exactly one of them.
    let viewers = |k: &str| rig.core.streams.lookup(k).and_then(|id| rig.core.streams.get(id)).map(|s| s.viewers().len());
    assert_eq!((viewers("live/a"), viewers("live/b")), (Some(1), Some(0)));
}

/// Stream a with audio (its latest packet at 200 ms of its time, just
/// sent), stream b with video only, and a viewer of a.
fn audio_room_and_silent_room(rig: &mut Rig) -> (Publisher, Publisher, Viewer) {
    let mut a = publish(rig, 1, "live", "a", 4);
    let mut b = Publisher::connect(rig, 2, "live", "b");
    b.gop(rig, 10_000, 2);
    let v = Viewer::join(rig, 1, "live", "a");
    a.audio(rig, 200, opus(1));
    (a, b, v)
}

/// A switch to a stream whose audio does not flow yet (its transcoder
/// starting, a replica not fed yet) keeps the old stream's audio going to
/// the viewer until the new stream's first audio packet, on one sequence
/// and timeline: no gap for the receiver to conceal (issue 18).
#[test]
fn the_old_audio_goes_on_until_the_new_stream_has_audio() {
    let mut rig = Rig::new("");
    let (mut a, mut b, mut v) = audio_room_and_silent_room(&mut rig);
    rig.advance(ms(20));
    a.audio(&mut rig, 220, opus(1));
    v.recv(&rig);
    let last_a = v.audio().last().map(|p| (*p).clone()).unwrap();
    assert_eq!(switch(&mut rig, &v, "b", None), (true, String::new()));
    // a's audio goes on to the viewer, one sequence, a's own spacing.
    for i in 1..=3u32 {
        rig.advance(ms(20));
        a.audio(&mut rig, 220 + 20 * i, opus(1));
    }
    v.recv(&rig);
    let tail: Vec<Rtp> = v.audio().iter().filter(|p| p.seq.wrapping_sub(last_a.seq) as i16 > 0).map(|p| (*p).clone()).collect();
    assert_eq!(tail.len(), 3, "a's audio after the switch");
    for (i, p) in tail.iter().enumerate() {
        assert_eq!(p.seq, last_a.seq.wrapping_add(i as u16 + 1));
        assert_eq!(p.ts, last_a.ts.wrapping_add((i as u32 + 1) * 20 * 48));
        assert_eq!(p.payload[1..], [1, 1, 1], "a's audio");
    }
    let id_a = rig.core.streams.lookup("live/a").unwrap();
    assert_eq!(rig.core.streams.get(id_a).and_then(|s| s.audio_tail_shared()).map(|t| t.len()), Some(1));
    // b's first audio takes over: right after a's last on the sequence,
    // 20 ms of a's time later (b's first packet is on time by b's clock);
    // a's audio no longer reaches the viewer.
    rig.advance(ms(20));
    b.audio(&mut rig, 10_100, opus(2));
    a.audio(&mut rig, 300, opus(1));
    rig.advance(ms(20));
    a.audio(&mut rig, 320, opus(1));
    v.recv(&rig);
    let after: Vec<Rtp> = v.audio().iter().filter(|p| p.seq.wrapping_sub(tail[2].seq) as i16 > 0).map(|p| (*p).clone()).collect();
    assert_eq!(after.len(), 1, "only b's audio: {after:?}");
    assert_eq!(after[0].payload[1..], [2, 2, 2], "b's audio");
    assert_eq!(after[0].seq, tail[2].seq.wrapping_add(1));
    assert_eq!(after[0].ts, tail[2].ts.wrapping_add(20 * 48));
    assert!(rig.core.streams.get(id_a).and_then(|s| s.audio_tail_shared()).is_none(), "the tail ended");
    assert!(rig.core.audio_tails.is_empty());
}

/// A new stream whose audio does not come within `AUDIO_TAIL_MAX` (a room
/// without sound): the old stream's audio stops then.
#[test]
fn an_audio_tail_ends_at_its_deadline() {
    let mut rig = Rig::new("");
    let (mut a, _b, mut v) = audio_room_and_silent_room(&mut rig);
    let t0 = rig.now;
    assert_eq!(switch(&mut rig, &v, "b", None), (true, String::new()));
    let mut got = Vec::new();
    for i in 1..=20u32 {
        rig.at(t0 + ms(20 * u64::from(i)));
        a.audio(&mut rig, 200 + 20 * i, opus(1));
        v.recv(&rig);
        got.push((20 * i, v.audio().len()));
    }
    v.recv(&rig);
    let n = |ms: u32| got.iter().find(|(t, _)| *t == ms).map(|(_, n)| *n).unwrap();
    assert!(n(240) > n(20), "a's audio goes on for a while");
    // Housekeeping every 100 ms ends the tail 250-350 ms after the switch.
    assert_eq!(n(400), n(360), "no audio of a after the deadline");
    assert!(rig.core.audio_tails.is_empty());
    let id_a = rig.core.streams.lookup("live/a").unwrap();
    assert!(rig.core.streams.get(id_a).and_then(|s| s.audio_tail_shared()).is_none());
}
