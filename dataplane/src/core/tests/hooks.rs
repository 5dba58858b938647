//! Hooks in the shard: a publish or an HTTP-FLV request waits for control's
//! verdict on `on_publish` / `on_play` (nothing else waits), the verdict
//! or the fail-open/closed policy at the deadline decides, and a client
//! that left meanwhile is not answered.

use super::*;

const HOOKS: &str = "[hooks]\non_publish = \"http://h/p\"\non_play = \"http://h/q\"\non_stop = \"http://h/s\"\ntimeout_ms = 1000\n";

fn hook_req(rig: &mut Rig, action: &str) -> Option<u64> {
    rig.take_ctl().into_iter().find_map(|m| match m {
        ShardToControl::Hook { req, call } if call.action == action => Some(req),
        _ => None,
    })
}

fn verdict(rig: &mut Rig, req: u64, allow: bool) {
    rig.control(ControlToShard::HookVerdict { req, allow, reason: if allow { String::new() } else { "hook answered 403".into() } });
}

#[test]
fn a_publish_waits_for_on_publish_and_follows_the_verdict() {
    let mut rig = Rig::new(HOOKS);
    let mut p = Publisher::connect(&mut rig, 1, "live", "s");
    assert!(!p.accepted(), "held while the hook decides");
    let req = hook_req(&mut rig, "on_publish").expect("on_publish asked");
    verdict(&mut rig, req, true);
    p.read(&mut rig);
    assert!(p.accepted(), "{:?}", p.events);

    let mut r = Publisher::connect(&mut rig, 2, "live", "t");
    let req = hook_req(&mut rig, "on_publish").unwrap();
    verdict(&mut rig, req, false);
    r.read(&mut rig);
    assert!(!r.accepted() && rig.closed.contains(&2), "{:?}", r.events);
    assert_eq!(rig.core.counters().hooks_refused, 1);
}

#[test]
fn without_a_verdict_the_policy_decides_at_the_deadline() {
    for (fail_open, want) in [(false, "HTTP/1.1 403 Forbidden"), (true, "HTTP/1.1 200 OK")] {
        let mut rig = Rig::new(&format!("{HOOKS}fail_open = {fail_open}\n"));
        publish_unhooked(&mut rig);
        rig.core.handle_http_open(rig.now, 100, None);
        rig.core.handle_tcp_data(rig.now, 100, b"GET /live/s.flv HTTP/1.1\r\nHost: x\r\n\r\n");
        rig.drain();
        assert!(hook_req(&mut rig, "on_play").is_some());
        rig.advance(ms(1400));
        assert!(rig.tcp.get(&100).is_none_or(|b| b.is_empty()), "nothing before timeout + margin");
        rig.advance(ms(200));
        let out = rig.tcp.remove(&100).unwrap_or_default();
        assert!(String::from_utf8_lossy(&out).starts_with(want), "fail_open {fail_open}: {}", String::from_utf8_lossy(&out[..out.len().min(40)]));
        assert_eq!(rig.core.counters().hooks_timed_out, 1);
    }
}

#[test]
fn a_client_that_left_while_held_is_not_answered_on_a_reused_connection_id() {
    let mut rig = Rig::new(HOOKS);
    publish_unhooked(&mut rig);
    rig.core.handle_http_open(rig.now, 100, None);
    rig.core.handle_tcp_data(rig.now, 100, b"GET /live/s.flv HTTP/1.1\r\nHost: x\r\n\r\n");
    rig.drain();
    let req = hook_req(&mut rig, "on_play").unwrap();
    rig.core.handle_tcp_closed(rig.now, 100, "peer closed");
    rig.drain();
    rig.core.handle_tcp_released(rig.now, 100);
    // The shell reuses id 100 for a new client that has sent nothing yet.
    rig.core.handle_http_open(rig.now, 100, None);
    rig.drain();
    rig.tcp.remove(&100);
    verdict(&mut rig, req, true);
    assert!(rig.tcp.get(&100).is_none_or(|b| b.is_empty()), "the verdict of the one who left goes nowhere");
}

/// Publishes live/s with the on_publish hook answered at once.
fn publish_unhooked(rig: &mut Rig) {
    let mut p = Publisher::connect(rig, 1, "live", "s");
    let req = hook_req(rig, "on_publish").unwrap();
    verdict(rig, req, true);
    p.read(rig);
    assert!(p.accepted());
    p.gop(rig, 0, 1);
}
