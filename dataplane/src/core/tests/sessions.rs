//! A session's life as control drives it, including the repeats and
//! reorderings a restarted or racing control produces.

use super::*;

fn closed(rig: &Rig, session: u64) -> usize {
    rig.closed_sessions().iter().filter(|(s, _)| *s == session).count()
}

#[test]
fn add_start_close_with_duplicate_and_out_of_order_messages() {
    let mut rig = Rig::new("");
    let _p = publish(&mut rig, 1, "live", "s", 2);
    let mut v = Viewer::new(1);

    // StartMedia and RemoveSession for a session the shard does not know
    // (they overtook AddSession, or belong to a dead control): ignored.
    rig.control(v.start_msg());
    rig.control(ControlToShard::RemoveSession { session: v.session, reason: "stale".into() });
    rig.control(ControlToShard::DtlsToPeer { session: v.session, data: vec![22; 40] });
    assert_eq!(closed(&rig, v.session), 0);
    assert!(rig.sent.is_empty());

    rig.control(v.add_msg("live", "s", None));
    rig.control(v.add_msg("live", "s", None)); // repeated: one session
    let other_with_same_ufrag = ControlToShard::AddSession {
        session: 0xdead,
        local_ufrag: v.ufrag.clone(),
        local_pwd: "x".repeat(24),
        remote_ufrag: "y".into(),
        app: "live".into(),
        stream: "s".into(),
        home_shard: None,
        domain: String::new(),
    };
    rig.control(other_with_same_ufrag); // a ufrag clash is refused
    v.check(&mut rig);
    rig.control(ControlToShard::DtlsToPeer { session: v.session, data: vec![22; 40] });
    v.recv(&rig);
    assert_eq!(rig.sent.iter().filter(|s| s.dst == v.addr && s.data == vec![22; 40]).count(), 1, "DTLS goes to the selected address");

    rig.control(v.start_msg());
    rig.advance(ms(100));
    v.recv(&rig);
    let first = v.video().len();
    assert_eq!(first, 1 + 3 + 2 * 3, "the GOP (STAP-A + 3 IDR + 2x3 P packets)");
    // A repeated StartMedia must not reset SRTP or replay the GOP.
    rig.control(v.start_msg());
    rig.advance(ms(100));
    v.recv(&rig);
    assert_eq!(v.video().len(), first, "no second GOP replay");
    assert_eq!(rig.core.viewers(), 1);
    assert_eq!(rig.core.sessions.len(), 1, "the clashing session was refused");

    rig.control(ControlToShard::RemoveSession { session: v.session, reason: "DELETE".into() });
    rig.control(ControlToShard::RemoveSession { session: v.session, reason: "DELETE".into() });
    assert_eq!(rig.closed_sessions(), vec![(v.session, "DELETE".to_string())], "closed once");
    assert_eq!(rig.core.viewers(), 0);
    // Late messages for the closed session change nothing.
    rig.control(v.start_msg());
    rig.control(ControlToShard::SwitchStream { session: v.session, app: "live".into(), stream: "s".into(), home_shard: None });
    assert_eq!(rig.core.sessions.len(), 0);
    assert!(matches!(rig.ctl.last(), Some(ShardToControl::SwitchDone { ok: false, .. })));
}

#[test]
fn unusable_keys_close_the_session_with_a_reason() {
    let mut rig = Rig::new("");
    let v = Viewer::new(1);
    rig.control(v.add_msg("live", "s", None));
    rig.control(v.start_with(|m| *m.srtp_profile = 0x0002));
    assert_eq!(rig.closed_sessions(), vec![(v.session, "unsupported SRTP profile".to_string())]);
    let w = Viewer::new(2);
    rig.control(w.add_msg("live", "s", None));
    rig.control(w.start_with(|m| *m.local_key = vec![1; 3]));
    assert_eq!(rig.closed_sessions()[1], (w.session, "bad SRTP keys".to_string()));
}

#[test]
fn snapshot_reports_live_streams_and_stats() {
    let mut rig = Rig::new("");
    let _a = publish(&mut rig, 1, "live", "a", 0);
    let _b = publish(&mut rig, 2, "live", "b", 0);
    let _v = Viewer::join(&mut rig, 1, "live", "a");
    rig.advance(ms(50));
    rig.take_ctl();
    rig.control(ControlToShard::Snapshot);
    let ctl = rig.take_ctl();
    let mut started: Vec<String> = ctl
        .iter()
        .filter_map(|m| match m {
            ShardToControl::StreamStarted { app, stream } => Some(format!("{app}/{stream}")),
            _ => None,
        })
        .collect();
    started.sort();
    assert_eq!(started, vec!["live/a", "live/b"]);
    let stats = ctl.iter().find_map(|m| match m {
        ShardToControl::Stats(s) => Some((**s).clone()),
        _ => None,
    });
    let stats = stats.expect("shard stats in the snapshot");
    assert_eq!((stats.counters.viewers, stats.counters.streams, stats.counters.rtmp_connections), (1, 2, 2));
    let a = ctl.iter().find_map(|m| match m {
        ShardToControl::StreamStats(s) if s.stream == "a" => Some((**s).clone()),
        _ => None,
    });
    let a = a.expect("stream stats for live/a");
    assert!(a.publishing && a.viewers == 1 && a.video_frames == 1 && a.bytes_out > 0, "{a:?}");
}

#[test]
fn requests_are_acknowledged_after_they_apply_and_a_snapshot_lists_every_session() {
    let mut rig = Rig::new("");
    let viewers: Vec<Viewer> = (1..=300).map(Viewer::new).collect();
    for (i, v) in viewers.iter().enumerate() {
        rig.core.handle_request(rig.now, rts_common::ipc::Request { id: 10 + i as u64, msg: v.add_msg("live", "s", None) });
    }
    rig.core.handle_request(rig.now, rts_common::ipc::Request { id: 0, msg: viewers[0].start_msg() });
    rig.core.handle_request(rig.now, rts_common::ipc::Request { id: 999, msg: ControlToShard::RemoveSession { session: viewers[1].session, reason: "x".into() } });
    rig.core.handle_request(rig.now, rts_common::ipc::Request { id: 1_000, msg: ControlToShard::Snapshot });
    rig.drain();
    let acks: Vec<u64> = rig.ctl.iter().filter_map(|m| if let ShardToControl::Ack { id } = m { Some(*id) } else { None }).collect();
    let expected: Vec<u64> = (10..310).chain([999, 1_000]).collect();
    assert_eq!(acks, expected, "every request with an id, in order; id 0 is not acknowledged");
    // The removal's SessionClosed comes before its ack.
    let closed = rig.ctl.iter().position(|m| matches!(m, ShardToControl::SessionClosed { .. })).unwrap();
    let ack999 = rig.ctl.iter().position(|m| matches!(m, ShardToControl::Ack { id: 999 })).unwrap();
    assert!(closed < ack999);
    // The snapshot: 299 sessions in chunks, the last marked, before its ack.
    let mut listed = Vec::new();
    let mut lasts = Vec::new();
    for m in &rig.ctl {
        if let ShardToControl::SessionList { snapshot, sessions, last } = m {
            assert_eq!(*snapshot, 1_000);
            listed.extend(sessions.iter().copied());
            lasts.push(*last);
        }
    }
    assert_eq!(listed.len(), 299);
    assert_eq!(lasts, vec![false, false, true]);
    assert_eq!(listed.iter().filter(|e| e.media).map(|e| e.session).collect::<Vec<_>>(), vec![viewers[0].session]);
    let last_list = rig.ctl.iter().rposition(|m| matches!(m, ShardToControl::SessionList { .. })).unwrap();
    let ack1000 = rig.ctl.iter().position(|m| matches!(m, ShardToControl::Ack { id: 1_000 })).unwrap();
    assert!(last_list < ack1000);
}
