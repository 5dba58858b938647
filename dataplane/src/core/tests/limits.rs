//! `[limits]` in the shard: connections per address, and clients that do
//! not say what they want in time.

use super::*;

fn open_http(rig: &mut Rig, conn: usize, peer: &str) {
    rig.core.handle_http_open(rig.now, conn, Some(peer.parse().unwrap()));
    rig.drain();
}

#[test]
fn an_address_holds_at_most_conns_per_ip_connections() {
    let mut rig = Rig::new("[limits]\nconns_per_ip = 2\n");
    open_http(&mut rig, 1, "10.0.0.9:1000");
    open_http(&mut rig, 2, "10.0.0.9:1001");
    open_http(&mut rig, 3, "10.0.0.9:1002");
    assert_eq!(rig.closed, [3], "the third from one address is closed at once");
    open_http(&mut rig, 4, "10.0.0.8:1000");
    rig.core.handle_rtmp_open(rig.now, 5, Some("10.0.0.9:1003".parse().unwrap()));
    rig.drain();
    assert_eq!(rig.closed, [3, 5], "RTMP counts too; another address is not affected");
    assert_eq!(rig.core.counters().conns_refused_per_ip, 2);
    // One leaves: room for one more.
    rig.core.handle_tcp_closed(rig.now, 1, "peer closed");
    rig.drain();
    open_http(&mut rig, 6, "10.0.0.9:1004");
    assert!(!rig.closed.contains(&6));
}

#[test]
fn silent_connections_are_closed_after_their_limit_and_working_ones_are_not() {
    let mut rig = Rig::new("[limits]\nrtmp_handshake_s = 10\nhttp_idle_s = 15\n");
    let _p = publish(&mut rig, 1, "live", "s", 1);
    rig.core.handle_rtmp_open(rig.now, 2, Some("10.0.0.9:2000".parse().unwrap()));
    open_http(&mut rig, 3, "10.0.0.9:2001");
    rig.core.handle_tcp_data(rig.now, 3, b"GET /live/s.flv HTTP/1.1\r\n"); // a head that never ends
    open_http(&mut rig, 4, "10.0.0.9:2002");
    rig.core.handle_tcp_data(rig.now, 4, b"GET /live/s.flv HTTP/1.1\r\nHost: x\r\n\r\n");
    rig.drain();
    rig.advance(ms(9_000));
    assert!(rig.closed.is_empty(), "{:?}", rig.closed);
    rig.advance(ms(2_000));
    assert_eq!(rig.closed, [2], "the RTMP connection that neither published nor played");
    rig.advance(ms(5_000));
    assert_eq!(rig.closed, [2, 3], "the endless head");
    assert_eq!(rig.core.counters().slow_clients_closed, 2);
    rig.advance(ms(30_000));
    assert!(!rig.closed.contains(&1) && !rig.closed.contains(&4), "the publisher and the FLV viewer stay");
}
