//! Replication between cores: subscribe, snapshot, shared packets,
//! unsubscribe, end of publish, stale ids.

use super::*;

fn join_remote(rig: &mut Rig, n: u16, stream: &str, home: Option<u32>) -> Viewer {
    let v = Viewer::new(n);
    rig.control(v.add_msg("live", stream, home));
    v.check(rig);
    rig.control(v.start_msg());
    v
}

fn packets_to(relay: &[(usize, RelayMsg)]) -> Vec<(usize, Arc<[Bytes]>)> {
    relay
        .iter()
        .filter_map(|(to, m)| match m {
            RelayMsg::Packets { packets, .. } => Some((*to, packets.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn subscribe_snapshot_shared_packets_unsubscribe_and_end() {
    let t0 = Instant::now();
    let (mut home, mut r1, mut r2) = (Rig::shard(0, 3, "", t0), Rig::shard(1, 3, "", t0), Rig::shard(2, 3, "", t0));
    let mut p = publish(&mut home, 1, "live", "s", 2);
    let mut v1 = join_remote(&mut r1, 1, "s", Some(0));
    let mut v2 = join_remote(&mut r2, 2, "s", Some(0));
    exchange(&mut [&mut home, &mut r1, &mut r2]);
    for r in [&mut home, &mut r1, &mut r2] {
        r.advance(ms(50));
    }
    v1.recv(&r1);
    v2.recv(&r2);
    assert_eq!(v1.video().len(), 10, "the home's GOP via the snapshot");
    assert_eq!(v2.video().len(), 10);

    // A live frame: one message per subscriber, sharing one packet list.
    p.video(&mut home, 99, frame(false, 2_500, 4));
    let relay = home.take_relay();
    let pk = packets_to(&relay);
    assert_eq!(pk.iter().map(|(to, _)| *to).collect::<Vec<_>>(), vec![1, 2]);
    assert!(Arc::ptr_eq(&pk[0].1, &pk[1].1), "subscribers share the packets, no copy each");
    for (to, msg) in relay {
        let r = if to == 1 { &mut r1 } else { &mut r2 };
        r.core.handle_relay(r.now, 0, msg);
        r.drain();
    }
    v1.recv(&r1);
    v2.recv(&r2);
    assert_eq!((v1.video().len(), v2.video().len()), (13, 13));
    assert_consecutive(&v1.video(), "replica viewer");
    assert_eq!(v1.video()[0].ssrc, v2.video()[0].ssrc);

    // v1 leaves: shard 1's replica lingers ([transcode] linger_s, 15 s),
    // still fed, for a viewer swiping back; then shard 1 drops it and
    // unsubscribes.
    r1.control(ControlToShard::RemoveSession { session: v1.session, reason: "bye".into() });
    assert!(r1.core.streams.lookup("live/s").is_some(), "the replica lingers");
    exchange(&mut [&mut home, &mut r1, &mut r2]);
    p.video(&mut home, 132, frame(false, 2_500, 5));
    let pk = packets_to(&home.relay);
    assert_eq!(pk.iter().map(|(to, _)| *to).collect::<Vec<_>>(), vec![1, 2], "the lingering replica is fed");
    exchange(&mut [&mut home, &mut r1, &mut r2]);
    r1.advance(Duration::from_secs(14));
    assert!(r1.core.streams.lookup("live/s").is_some(), "14 s: still lingering");
    r1.advance(Duration::from_millis(1_200));
    assert!(r1.core.streams.is_empty(), "15 s without viewers: dropped");
    exchange(&mut [&mut home, &mut r1, &mut r2]);
    p.video(&mut home, 165, frame(false, 2_500, 5));
    let pk = packets_to(&home.relay);
    assert_eq!(pk.iter().map(|(to, _)| *to).collect::<Vec<_>>(), vec![2], "only shard 2 still subscribes");
    exchange(&mut [&mut home, &mut r1, &mut r2]);
    v2.recv(&r2);
    assert_eq!(v2.video().len(), 19);

    // The publisher leaves: the replica is no longer live but keeps its viewer.
    p.drop_connection(&mut home);
    assert!(home.ctl.iter().any(|m| matches!(m, ShardToControl::StreamEnded { .. })));
    exchange(&mut [&mut home, &mut r1, &mut r2]);
    let id = r2.core.streams.lookup("live/s").unwrap();
    let s = r2.core.streams.get(id).unwrap();
    assert!(!s.is_live() && s.viewers().len() == 1);
    assert!(home.core.streams.is_empty(), "nothing left at home");
}

#[test]
fn a_waiting_viewer_replicates_once_the_stream_goes_live_elsewhere() {
    let t0 = Instant::now();
    let (mut home, mut r1) = (Rig::shard(0, 2, "", t0), Rig::shard(1, 2, "", t0));
    let mut v = join_remote(&mut r1, 1, "s", None);
    let _p = publish(&mut home, 1, "live", "s", 1);
    assert!(home.ctl.iter().any(|m| matches!(m, ShardToControl::StreamStarted { .. })));
    // Control tells every other shard where the stream went live.
    r1.control(ControlToShard::StreamHome { app: "live".into(), stream: "s".into(), shard: 0 });
    r1.control(ControlToShard::StreamHome { app: "live".into(), stream: "s".into(), shard: 0 }); // repeated
    let subs = r1.relay.iter().filter(|(_, m)| matches!(m, RelayMsg::Subscribe { .. })).count();
    assert_eq!(subs, 1, "one subscription");
    exchange(&mut [&mut home, &mut r1]);
    r1.advance(ms(50));
    v.recv(&r1);
    assert_eq!(v.video().len(), 7, "starts from the snapshot");
    // StreamHome for a stream nobody waits for creates nothing.
    r1.control(ControlToShard::StreamHome { app: "live".into(), stream: "other".into(), shard: 0 });
    assert!(r1.core.streams.lookup("live/other").is_none());
}

#[test]
fn a_viewer_switching_to_a_stream_homed_elsewhere_starts_from_the_snapshot() {
    // A viewer playing stream a on shard 1 switches to b, published on
    // shard 0: shard 1 subscribes, and the snapshot (b's GOP) must start the
    // viewer at once, although its video started long ago (on a).
    let t0 = Instant::now();
    let (mut home, mut r1) = (Rig::shard(0, 2, "", t0), Rig::shard(1, 2, "", t0));
    let mut a = publish(&mut r1, 1, "live", "a", 2);
    let _b = publish(&mut home, 1, "live", "b", 4);
    let mut v = Viewer::join(&mut r1, 1, "live", "a");
    r1.advance(ms(50));
    a.video(&mut r1, 3 * 33, frame(false, 2_500, 3));
    v.recv(&r1);
    let before = v.video().len();
    assert!(before > 0);
    r1.control(ControlToShard::SwitchStream { session: v.session, app: "live".into(), stream: "b".into(), home_shard: Some(0) });
    assert!(r1.ctl.iter().any(|m| matches!(m, ShardToControl::SwitchDone { ok: true, .. })));
    exchange(&mut [&mut home, &mut r1]);
    r1.advance(ms(50));
    v.recv(&r1);
    let after = &v.video()[before..];
    // b's GOP cache at home: its keyframe and 4 P-frames.
    let cached = home.core.streams.lookup("live/b").and_then(|id| home.core.streams.get(id)).unwrap().gop_cache().len();
    assert_eq!(after.len(), cached, "the whole snapshot, without waiting for b's next keyframe");
    assert_eq!(after[0].payload[0] & 0x1f, 24, "starting with b's keyframe (STAP-A with SPS/PPS)");
}

#[test]
fn a_switch_to_a_replica_not_fed_yet_goes_on_by_the_homes_clocks() {
    // v plays a on shard 1; b is published on shard 0, not replicated on
    // shard 1. a's and b's last audio leave at the same instant, on time.
    let t0 = Instant::now();
    let (mut home, mut r1) = (Rig::shard(0, 2, "", t0), Rig::shard(1, 2, "", t0));
    let mut a = publish(&mut r1, 1, "live", "a", 2);
    let mut b = publish(&mut home, 1, "live", "b", 2);
    let mut v = Viewer::join(&mut r1, 1, "live", "a");
    for r in [&mut home, &mut r1] {
        r.advance(ms(100));
    }
    a.audio(&mut r1, 100, opus(1));
    b.audio(&mut home, 7_000, opus(2));
    v.recv(&r1);
    let last_a = v.audio().last().map(|p| p.ts).unwrap();
    // 40 ms later v switches to b: shard 1 subscribes; the snapshot brings
    // b's GOP and the home's send clocks.
    for r in [&mut home, &mut r1] {
        r.advance(ms(40));
    }
    r1.control(ControlToShard::SwitchStream { session: v.session, app: "live".into(), stream: "b".into(), home_shard: Some(0) });
    exchange(&mut [&mut home, &mut r1]);
    // b's next audio (20 ms of media on) comes 200 ms later: 180 ms late by
    // b's clock. It goes where b's clock puts it on v's timeline, 20 ms
    // after a's last packet (both left on time at the same instant), not
    // where it arrives (taken as on time, it would be 240 ms on).
    for r in [&mut home, &mut r1] {
        r.advance(ms(200));
    }
    b.audio(&mut home, 7_020, opus(3));
    exchange(&mut [&mut home, &mut r1]);
    v.recv(&r1);
    let first_b = v.audio().last().map(|p| p.ts).unwrap();
    assert_eq!(first_b.wrapping_sub(last_a), 20 * 48, "b's first audio on v's timeline");
}

#[test]
fn stale_relay_messages_are_ignored() {
    let t0 = Instant::now();
    let (mut home, mut r1) = (Rig::shard(0, 2, "", t0), Rig::shard(1, 2, "", t0));
    let mut p = publish(&mut home, 1, "live", "s", 0);
    let _q = publish(&mut home, 2, "live", "u", 0);
    let v = join_remote(&mut r1, 1, "s", Some(0));
    exchange(&mut [&mut home, &mut r1]);
    let old = r1.core.streams.lookup("live/s").unwrap();
    // The viewer leaves; its unsubscription is lost in flight, so the home
    // still sends to the replica's old id. Meanwhile shard 1 makes a replica
    // of another stream of the same home, which takes the freed slot: only
    // the id's generation tells the two apart.
    r1.control(ControlToShard::RemoveSession { session: v.session, reason: "bye".into() });
    r1.take_relay();
    let mut w = join_remote(&mut r1, 2, "u", Some(0));
    exchange(&mut [&mut home, &mut r1]);
    let new = r1.core.streams.lookup("live/u").unwrap();
    assert_ne!(old, new);
    r1.advance(ms(50));
    w.recv(&r1);
    let before = w.video().len();
    assert_eq!(before, 4, "u's snapshot");
    p.video(&mut home, 33, frame(false, 2_500, 9));
    let relay = home.take_relay();
    assert!(matches!(relay.as_slice(), [(1, RelayMsg::FlvTag { stream: a, .. }), (1, RelayMsg::Packets { stream: b, .. })] if *a == old && *b == old), "sent to the stale id");
    for (_, msg) in relay {
        r1.core.handle_relay(r1.now, 0, msg);
        r1.drain();
    }
    w.recv(&r1);
    assert_eq!(w.video().len(), before, "s's packets reached nobody");
    // Messages from a shard that is not the stream's home are ignored too.
    let _t = publish(&mut r1, 7, "live", "t", 0);
    assert!(matches!(r1.take_relay().as_slice(), [(0, RelayMsg::Home { home: Some(1), .. })]), "the publish is announced");
    let t = r1.core.streams.lookup("live/t").unwrap();
    r1.core.handle_relay(r1.now, 0, RelayMsg::Ended { stream: t });
    assert!(r1.core.streams.get(t).unwrap().is_published());
    r1.core.handle_relay(r1.now, 0, RelayMsg::Subscribe { key: "live/missing".into(), from: 0, replica: StreamId::DANGLING });
    r1.drain();
    assert!(matches!(r1.take_relay().as_slice(), [(0, RelayMsg::Ended { .. })]), "subscribing to a stream not published here ends at once");
}

#[test]
fn full_relay_queues_drop_media_and_retry_the_rest() {
    let mut rig = Rig::shard(0, 2, "", Instant::now());
    rig.core.handle_relay_full(1, RelayMsg::Packets { stream: StreamId::DANGLING, kind: Kind::Video, packets: Arc::from([]), keyframe: false, anchor: None });
    rig.core.handle_relay_full(1, RelayMsg::Unsubscribe { key: "live/s".into(), from: 0 });
    assert_eq!((rig.core.counters().relay_dropped, rig.core.counters().relay_retried), (1, 1));
    rig.advance(ms(2));
    assert!(matches!(rig.take_relay().as_slice(), [(1, RelayMsg::Unsubscribe { .. })]), "retried");
}
