//! ICE-lite binding and consent.

use super::*;

#[test]
fn binding_selects_the_address_and_rejects_bad_integrity() {
    let mut rig = Rig::new("");
    let v = Viewer::new(1);
    rig.control(v.add_msg("live", "s", None));
    // Wrong password: 401, no address selected.
    rig.datagram(v.addr, &v.binding("not-the-password-at-all!", true, 1));
    // Unknown ufrag: dropped without an answer.
    let stranger = Viewer::new(2);
    rig.datagram(stranger.addr, &stranger.binding(&stranger.pwd, true, 2));
    let mut seen = Viewer::new(1);
    seen.recv(&rig);
    assert_eq!(seen.stun.len(), 1);
    assert!(!seen.stun[0].1, "an error response for bad integrity");
    assert_eq!(rig.core.counters().stun_rejected, 2);
    assert!(!rig.ctl.iter().any(|m| matches!(m, ShardToControl::IceConnected { .. })));
    assert_eq!(rig.sent.iter().filter(|s| s.dst == stranger.addr).count(), 0, "no answer to an unknown ufrag");

    v.check(&mut rig);
    seen.recv(&rig);
    assert!(seen.stun[1].1, "success response");
    assert_eq!(rig.core.counters().stun_ok, 1);
    let connected: Vec<_> = rig.ctl.iter().filter(|m| matches!(m, ShardToControl::IceConnected { .. })).collect();
    assert_eq!(connected.len(), 1);
    // A repeated check from the same address is answered, not re-announced.
    v.check(&mut rig);
    assert_eq!(rig.ctl.iter().filter(|m| matches!(m, ShardToControl::IceConnected { .. })).count(), 1);
}

#[test]
fn a_nominated_check_from_a_new_address_moves_media() {
    let mut rig = Rig::new("");
    let mut p = publish(&mut rig, 1, "live", "s", 0);
    let mut v = Viewer::join(&mut rig, 1, "live", "s");
    rig.advance(ms(50));
    v.recv(&rig);
    assert!(!v.video().is_empty(), "plays at the first address");
    // The viewer's network changes: a check from a new port, nominated.
    let old = v.addr;
    v.addr = SocketAddr::new(old.ip(), old.port() + 1);
    rig.datagram(v.addr, &v.binding(&v.pwd, true, 3));
    let before = rig.sent.len();
    p.video(&mut rig, 33, frame(false, 2_500, 3));
    let to_new = rig.sent[before..].iter().filter(|s| s.dst == v.addr).count();
    let to_old = rig.sent[before..].iter().filter(|s| s.dst == old).count();
    assert_eq!((to_new, to_old), (3, 0), "media follows the nominated address");
    // A non-nominated check from yet another address does not move it.
    let third = SocketAddr::new(old.ip(), old.port() + 2);
    rig.datagram(third, &v.binding(&v.pwd, false, 4));
    let before = rig.sent.len();
    p.video(&mut rig, 66, frame(false, 2_500, 4));
    assert_eq!(rig.sent[before..].iter().filter(|s| s.dst == v.addr).count(), 3);
}

#[test]
fn consent_expires_after_consent_timeout_s_without_checks() {
    let mut rig = Rig::new("[webrtc]\nconsent_timeout_s = 5\n");
    let _p = publish(&mut rig, 1, "live", "s", 0);
    let v = Viewer::join(&mut rig, 1, "live", "s");
    // Checks every 2 s keep it for a minute.
    for _ in 0..30 {
        rig.advance(Duration::from_secs(2));
        v.check(&mut rig);
    }
    assert!(rig.closed_sessions().is_empty(), "consent refreshed: {:?}", rig.closed_sessions());
    let last_check = rig.now;
    rig.at(last_check + Duration::from_millis(4_900));
    assert!(rig.closed_sessions().is_empty(), "expired early");
    rig.at(last_check + Duration::from_millis(5_200));
    assert_eq!(rig.closed_sessions(), vec![(v.session, "consent expired".to_string())]);
    assert_eq!(rig.core.viewers(), 0);
    // Its checks are no longer answered (the ufrag is forgotten).
    let before = rig.sent.len();
    v.check(&mut rig);
    assert_eq!(rig.sent.len(), before);
}

#[test]
fn a_session_that_never_completes_is_dropped_after_30_s() {
    let mut rig = Rig::new("[webrtc]\nconsent_timeout_s = 60\n");
    let v = Viewer::new(1);
    rig.control(v.add_msg("live", "s", None));
    v.check(&mut rig);
    rig.advance(Duration::from_secs(29));
    assert!(rig.closed_sessions().is_empty());
    rig.advance(Duration::from_millis(1_200));
    assert_eq!(rig.closed_sessions(), vec![(v.session, "ICE/DTLS did not complete".to_string())]);
}

#[test]
fn garbage_datagrams_are_counted_not_fatal() {
    let mut rig = Rig::new("");
    let src = SocketAddr::from(([10, 9, 9, 9], 1));
    for d in [&[][..], &[0u8], &[0x00, 0x01, 0, 8, 0x21, 0x12, 0xa4, 0x42], &[0x80, 200, 0, 1, 0, 0, 0, 0], &[22, 254, 253, 0, 0], &[0x80, 96, 0, 0]] {
        rig.datagram(src, d);
    }
    let c = rig.core.counters();
    assert_eq!(c.udp_datagrams_in, 6);
    assert_eq!(c.stun_rejected + c.unknown_dropped, 6, "{c:?}");
    assert!(rig.sent.is_empty());
}

#[test]
fn an_ice_restart_swaps_the_credentials_and_keeps_media() {
    let mut rig = Rig::new("");
    let mut p = publish(&mut rig, 1, "live", "s", 0);
    let mut v = Viewer::join(&mut rig, 1, "live", "s");
    rig.advance(ms(50));
    v.recv(&rig);
    assert!(!v.video().is_empty(), "plays before the restart");
    let (old_ufrag, old_pwd) = (v.ufrag.clone(), v.pwd.clone());
    rig.take_ctl();

    rig.control(ControlToShard::IceRestart {
        session: v.session,
        local_ufrag: "restarted".into(),
        local_pwd: "a-new-password-of-24-chars".into(),
        remote_ufrag: "theirs2".into(),
    });
    let answers: Vec<_> = rig.take_ctl().into_iter().filter(|m| matches!(m, ShardToControl::IceRestarted { .. })).collect();
    assert_eq!(answers, [ShardToControl::IceRestarted { session: v.session, local_ufrag: "restarted".into(), ok: true }]);

    // Media goes on to the selected address without a new check.
    let before = rig.sent.len();
    p.video(&mut rig, 33, frame(false, 2_500, 3));
    assert_eq!(rig.sent[before..].iter().filter(|s| s.dst == v.addr).count(), 3, "media continues");

    // The old credentials are gone: no answer to the old ufrag.
    let before = (rig.sent.len(), rig.core.counters().stun_ok);
    rig.datagram(v.addr, &v.binding(&old_pwd, true, 9));
    assert_eq!((rig.sent.len(), rig.core.counters().stun_ok), before, "a check with the old ufrag is dropped");

    // The new ones are answered, and a nominated check from a new address (the
    // network change that caused the restart) moves media there.
    v.ufrag = "restarted".into();
    v.pwd = "a-new-password-of-24-chars".into();
    let old_addr = v.addr;
    v.addr = SocketAddr::new(old_addr.ip(), old_addr.port() + 1);
    v.stun.clear();
    rig.datagram(v.addr, &v.binding(&old_pwd, true, 10));
    rig.datagram(v.addr, &v.binding(&v.pwd, true, 11));
    v.recv(&rig);
    let answered: Vec<bool> = v.stun.iter().map(|(_, ok)| *ok).collect();
    assert_eq!(answered, [false, true], "the old password fails integrity, the new one passes");
    let before = rig.sent.len();
    p.video(&mut rig, 66, frame(false, 2_500, 4));
    let to = |a| rig.sent[before..].iter().filter(|s| s.dst == a).count();
    assert_eq!((to(v.addr), to(old_addr)), (3, 0), "media follows the check with the new credentials");
    v.recv(&rig);
    assert!(v.video().len() >= 3, "same SRTP session after the restart");

    // A repeat is harmless; an unknown session or another session's ufrag is refused.
    let other = Viewer::join(&mut rig, 2, "live", "s");
    rig.take_ctl();
    for (session, ufrag, ok) in [(v.session, "restarted", true), (0xdead, "x", false), (v.session, other.ufrag.as_str(), false)] {
        rig.control(ControlToShard::IceRestart { session, local_ufrag: ufrag.into(), local_pwd: "p".repeat(24), remote_ufrag: "r".into() });
        let got: Vec<_> = rig.take_ctl().into_iter().filter(|m| matches!(m, ShardToControl::IceRestarted { .. })).collect();
        assert_eq!(got, [ShardToControl::IceRestarted { session, local_ufrag: ufrag.into(), ok }], "{ufrag}");
    }
    // The refused takeover left the other viewer's credentials working.
    let before = rig.core.counters().stun_ok;
    other.check(&mut rig);
    assert_eq!(rig.core.counters().stun_ok, before + 1);
    assert_ne!(old_ufrag, "restarted");
}
