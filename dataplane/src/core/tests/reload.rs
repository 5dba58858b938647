//! Configuration reloads in the shard: new keys apply once every part of a
//! generation arrived; publishers and viewers already admitted carry on.

use super::*;
use rts_common::config::{AuthSection, DomainConfig};

const UNIX: u64 = 1_700_000_000;

fn token(path: &str, key: &str) -> String {
    rts_common::auth::sign_path(path, key, UNIX, "r", "0")
}

fn auth(ingest: &str, play: &str) -> AuthSection {
    AuthSection { ingest_key: Some(ingest.into()), play_key: Some(play.into()), validity_s: 1800, ..Default::default() }
}

fn domain(name: &str, play: &str) -> DomainConfig {
    DomainConfig {
        name: name.into(),
        aliases: vec![],
        ingest_key: None,
        ingest_key_secondary: None,
        play_key: Some(play.into()),
        play_key_secondary: None,
        validity_s: None,
        rts: true,
    }
}

fn reload(generation: u64, part: u32, parts: u32, auth: AuthSection, domains: Vec<DomainConfig>) -> ControlToShard {
    ControlToShard::Reload { generation, part, parts, auth, domains, billing_interval_s: None, hooks: Default::default() }
}

fn flv_status(rig: &mut Rig, conn: usize, host: &str, key: &str) -> String {
    rig.core.handle_http_open(rig.now, conn, None);
    let req = format!("GET /live/s.flv?auth_key={} HTTP/1.1\r\nHost: {host}\r\n\r\n", token("/live/s", key));
    rig.core.handle_tcp_data(rig.now, conn, req.as_bytes());
    rig.drain();
    let out = rig.tcp.remove(&conn).unwrap_or_default();
    String::from_utf8_lossy(&out).lines().next().unwrap_or("").to_string()
}

#[test]
fn new_keys_apply_when_the_last_part_arrives_and_admitted_clients_carry_on() {
    let mut rig = Rig::new("[auth]\ningest_key = \"i1\"\nplay_key = \"p1\"\n");
    let mut p = Publisher::connect(&mut rig, 1, "live", &format!("s?auth_key={}", token("/live/s", "i1")));
    assert!(p.accepted());
    p.gop(&mut rig, 0, 1);
    assert_eq!(flv_status(&mut rig, 100, "10.0.0.1", "p1"), "HTTP/1.1 200 OK");

    // Part 0 of 2: nothing changes yet.
    rig.control(reload(1, 0, 2, auth("i2", "p2"), vec![domain("a.example.com", "pa")]));
    assert_eq!(flv_status(&mut rig, 101, "10.0.0.1", "p1"), "HTTP/1.1 200 OK", "half a reload is not applied");
    // No domains yet: every name is the default domain, checked with p1.
    assert_eq!(flv_status(&mut rig, 102, "a.example.com", "pa"), "HTTP/1.1 403 Forbidden", "no domain yet");
    rig.control(reload(1, 1, 2, auth("i2", "p2"), vec![domain("b.example.com", "pb")]));
    assert_eq!(rig.core.counters().reloads, 1);
    assert_eq!(flv_status(&mut rig, 103, "10.0.0.1", "p1"), "HTTP/1.1 403 Forbidden", "the old play key is gone");
    assert_eq!(flv_status(&mut rig, 104, "10.0.0.1", "p2"), "HTTP/1.1 200 OK");
    // Both parts' domains arrived: a's key passes (404: a's live/s is not
    // the default domain's), b's key is checked.
    assert_eq!(flv_status(&mut rig, 105, "a.example.com", "pa"), "HTTP/1.1 404 Not Found");
    assert_eq!(flv_status(&mut rig, 106, "b.example.com", "px"), "HTTP/1.1 403 Forbidden", "b's key applies");

    // The publisher admitted with i1 goes on; a new one needs i2.
    p.video(&mut rig, 99, frame(false, 400, 0x44));
    let got = rig.tcp.remove(&100).unwrap_or_default();
    assert!(got.windows(64).any(|w| w.iter().all(|&b| b == 0x44)), "the first FLV viewer still gets the publisher's frames");
    let old = Publisher::connect(&mut rig, 2, "live", &format!("t?auth_key={}", token("/live/t", "i1")));
    assert!(!old.accepted(), "the old ingest key is refused");
    let new = Publisher::connect(&mut rig, 3, "live", &format!("u?auth_key={}", token("/live/u", "i2")));
    assert!(new.accepted(), "{:?}", new.events);

    // An older generation, or a repeat of the applied one, changes nothing.
    rig.control(reload(1, 0, 1, auth("i1", "p1"), vec![]));
    assert_eq!(flv_status(&mut rig, 107, "10.0.0.1", "p1"), "HTTP/1.1 403 Forbidden");
    assert_eq!(rig.core.counters().reloads, 1);
}
