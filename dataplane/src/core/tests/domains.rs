//! Streaming domains (`[[domain]]`) in the shard: the keys of the domain a
//! client asked for (HTTP Host, RTMP tcUrl), and unknown domains refused.

use super::*;

const DOMAINS: &str = "[auth]\ningest_key = \"default-ingest\"\n\
    [[domain]]\nname = \"a.example.com\"\nplay_key = \"pa\"\ningest_key = \"ia\"\n\
    [[domain]]\nname = \"b.example.com\"\nplay_key = \"pb\"\ningest_key = \"ib\"\n";

const UNIX: u64 = 1_700_000_000;

fn token(key: &str) -> String {
    rts_common::auth::sign_path("/live/s", key, UNIX, "r", "0")
}

#[test]
fn a_publisher_needs_the_key_of_its_tcurl_domain() {
    let mut rig = Rig::new(DOMAINS);
    let a = Publisher::connect_to(&mut rig, 1, Some("rtmp://a.example.com/live"), "live", &format!("s?auth_key={}", token("ia")));
    assert!(a.accepted(), "A's key on A: {:?}", a.events);
    let b = Publisher::connect_to(&mut rig, 2, Some("rtmp://a.example.com:1935/live"), "live", &format!("t?auth_key={}", rts_common::auth::sign_path("/live/t", "ib", UNIX, "r", "0")));
    assert!(!b.accepted(), "B's key on A is refused");
    let unknown = Publisher::connect_to(&mut rig, 3, Some("rtmp://c.example.com/live"), "live", &format!("u?auth_key={}", token("ia")));
    assert!(!unknown.accepted(), "an unknown domain is refused");
    // An address (no domain name): the top-level [auth].
    let default = Publisher::connect_to(&mut rig, 4, Some("rtmp://10.200.0.1/live"), "live", &format!("v?auth_key={}", rts_common::auth::sign_path("/live/v", "default-ingest", UNIX, "r", "0")));
    assert!(default.accepted(), "{:?}", default.events);
}

#[test]
fn an_flv_viewer_needs_the_play_key_of_its_host() {
    let mut rig = Rig::new(DOMAINS);
    let _a = Publisher::connect_to(&mut rig, 1, Some("rtmp://a.example.com/live"), "live", &format!("s?auth_key={}", token("ia")));
    let _b = Publisher::connect_to(&mut rig, 2, Some("rtmp://b.example.com/live"), "live", &format!("t?auth_key={}", rts_common::auth::sign_path("/live/t", "ib", UNIX, "r", "0")));
    rig.advance(ms(10));
    let mut status = |conn: usize, host: &str, stream: &str, key: &str| {
        rig.core.handle_http_open(rig.now, conn, None);
        let token = rts_common::auth::sign_path(&format!("/live/{stream}"), key, UNIX, "r", "0");
        let req = format!("HEAD /live/{stream}.flv?auth_key={token} HTTP/1.1\r\nHost: {host}:8088\r\n\r\n");
        rig.core.handle_tcp_data(rig.now, conn, req.as_bytes());
        rig.drain();
        let out = rig.tcp.remove(&conn).unwrap_or_default();
        String::from_utf8_lossy(&out).lines().next().unwrap_or("").to_string()
    };
    assert_eq!(status(100, "a.example.com", "s", "pa"), "HTTP/1.1 200 OK");
    assert_eq!(status(101, "a.example.com", "s", "pb"), "HTTP/1.1 403 Forbidden", "B's key on A");
    assert_eq!(status(102, "B.example.com", "t", "pb"), "HTTP/1.1 200 OK");
    assert_eq!(status(103, "b.example.com", "t", "pa"), "HTTP/1.1 403 Forbidden", "A's key on B");
    assert_eq!(status(104, "c.example.com", "s", "pa"), "HTTP/1.1 404 Not Found", "unknown domain");
}

#[test]
fn the_same_name_on_two_domains_is_two_streams() {
    let mut rig = Rig::new(DOMAINS);
    let mut a = Publisher::connect_to(&mut rig, 1, Some("rtmp://a.example.com/live"), "live", &format!("s?auth_key={}", token("ia")));
    let mut b = Publisher::connect_to(&mut rig, 2, Some("rtmp://b.example.com/live"), "live", &format!("s?auth_key={}", token("ib")));
    assert!(a.accepted() && b.accepted(), "both publish live/s: {:?} {:?}", a.events, b.events);
    a.gop(&mut rig, 0, 1);
    b.gop(&mut rig, 0, 1);
    let mut body_of = |conn: usize, host: &str, key: &str| {
        rig.core.handle_http_open(rig.now, conn, None);
        let req = format!("GET /live/s.flv?auth_key={} HTTP/1.1\r\nHost: {host}\r\n\r\n", token(key));
        rig.core.handle_tcp_data(rig.now, conn, req.as_bytes());
        rig.drain();
        rig.tcp.remove(&conn).unwrap_or_default()
    };
    let from_a = body_of(100, "a.example.com", "pa");
    let from_b = body_of(101, "b.example.com", "pb");
    // testkit's keyframes carry fill byte 1 and P-frames 2 for both; tell
    // them apart by a frame each publisher sends now.
    assert!(from_a.starts_with(b"HTTP/1.1 200") && from_b.starts_with(b"HTTP/1.1 200"));
    a.video(&mut rig, 33 * 2, frame(false, 600, 0xaa));
    b.video(&mut rig, 33 * 2, frame(false, 600, 0xbb));
    let (to_a, to_b) = (rig.tcp.remove(&100).unwrap_or_default(), rig.tcp.remove(&101).unwrap_or_default());
    let has = |out: &[u8], fill: u8| out.windows(64).any(|w| w.iter().all(|&x| x == fill));
    assert!(has(&to_a, 0xaa) && !has(&to_a, 0xbb), "A's viewer gets A's stream only");
    assert!(has(&to_b, 0xbb) && !has(&to_b, 0xaa), "B's viewer gets B's stream only");
}
