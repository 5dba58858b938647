//! LL-HLS from the core: the playlist and what it names, blocking
//! reloads and parts, keep-alive, a shard serving another shard's stream,
//! and the players' traffic records.

use super::*;
use crate::hls::fmp4::tests::boxes;
use rts_common::ipc::{Protocol, UsageRecord};

const CLIENT: &str = "10.200.0.2:50000";

/// Sends a request on media connection `conn` (opening it first when new)
/// and returns what the core wrote to it since.
fn get(rig: &mut Rig, conn: usize, target: &str) -> Vec<u8> {
    if !rig.core_has_http(conn) {
        rig.core.handle_http_open(rig.now, conn, Some(CLIENT.parse().unwrap()));
        rig.drain();
    }
    rig.tcp.remove(&conn);
    let req = format!("GET {target} HTTP/1.1\r\nHost: edge.example.com:8088\r\n\r\n");
    rig.core.handle_tcp_data(rig.now, conn, req.as_bytes());
    rig.drain();
    rig.tcp.remove(&conn).unwrap_or_default()
}

/// (status line, headers, body) of one response.
fn parse(resp: &[u8]) -> (String, String, Vec<u8>) {
    let end = resp.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head") + 4;
    let head = String::from_utf8_lossy(&resp[..end]).into_owned();
    let len: usize = head.lines().find_map(|l| l.strip_prefix("Content-Length: ")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
    assert_eq!(resp.len() - end, len, "one whole response: {head}");
    let status = head.lines().next().unwrap_or("").to_string();
    (status, head, resp[end..].to_vec())
}

fn aac_header() -> Bytes {
    Bytes::from_static(&[0xaf, 0, 0x11, 0x90])
}

/// `secs` seconds of 30 fps video with a keyframe every second, and AAC.
fn play(rig: &mut Rig, p: &mut Publisher, from_frame: u32, frames: u32) {
    for i in from_frame..from_frame + frames {
        rig.advance(ms(33));
        let ts = i * 1000 / 30;
        p.audio(rig, ts, Bytes::from_static(&[0xaf, 1, 0x21, 0x10, 4]));
        p.video(rig, ts, frame(i % 30 == 0, 1_500, i as u8));
    }
}

fn publisher(rig: &mut Rig) -> Publisher {
    let mut p = Publisher::connect(rig, 1, "live", "s");
    p.video(rig, 0, seq_header());
    p.audio(rig, 0, aac_header());
    p
}

fn playlist(rig: &mut Rig, conn: usize, target: &str) -> String {
    let (status, head, body) = parse(&get(rig, conn, target));
    assert_eq!(status, "HTTP/1.1 200 OK", "{head}");
    assert!(head.contains("Content-Type: application/vnd.apple.mpegurl\r\n"), "{head}");
    assert!(head.contains("Access-Control-Allow-Origin: *\r\n"), "{head}");
    String::from_utf8(body).unwrap()
}

#[test]
fn the_playlist_names_what_the_listener_serves() {
    let mut rig = Rig::new("");
    let mut p = publisher(&mut rig);
    play(&mut rig, &mut p, 0, 100);
    let text = playlist(&mut rig, 100, "/live/s.m3u8?auth_key=none");
    assert!(text.starts_with("#EXTM3U\n#EXT-X-VERSION:9\n"), "{text}");
    assert!(text.contains("#EXT-X-MAP:URI=\"s/init1.mp4?auth_key=none\"\n"), "{text}");
    assert!(text.contains("#EXT-X-PRELOAD-HINT:TYPE=PART"), "{text}");
    let uris: Vec<String> = text
        .lines()
        .filter_map(|l| if l.starts_with('#') { l.split("URI=\"").nth(1).map(|u| u.split('"').next().unwrap_or("").to_string()) } else { Some(l.to_string()) })
        .filter(|u| !u.contains(".m4s?auth_key=none\"") && !text.contains(&format!("PRELOAD-HINT:TYPE=PART,URI=\"{u}\"")))
        .collect();
    assert!(uris.len() > 5, "{uris:?}");
    // Every URI resolves, on the same (kept-alive) connection.
    for uri in &uris {
        let (status, head, body) = parse(&get(&mut rig, 100, &format!("/live/{uri}")));
        assert_eq!(status, "HTTP/1.1 200 OK", "{uri}: {head}");
        assert!(head.contains("Connection: keep-alive\r\n"));
        let kinds: Vec<[u8; 4]> = boxes(&body).iter().map(|(k, _)| *k).collect();
        if uri.contains("init") {
            assert_eq!(kinds, vec![*b"ftyp", *b"moov"], "{uri}");
        } else {
            assert!(!kinds.is_empty() && kinds.chunks(2).all(|c| c == [*b"moof", *b"mdat"]), "{uri}: {kinds:?}");
        }
    }
    // A segment is its parts, concatenated.
    let seg = parse(&get(&mut rig, 100, "/live/s/1.m4s")).2;
    let mut joined = Vec::new();
    for i in 0.. {
        let (status, _, body) = parse(&get(&mut rig, 100, &format!("/live/s/1.{i}.m4s")));
        if status != "HTTP/1.1 200 OK" {
            break;
        }
        joined.extend_from_slice(&body);
    }
    assert_eq!(seg, joined);
    let (status, _, _) = parse(&get(&mut rig, 100, "/live/s/99.m4s"));
    assert!(status.starts_with("HTTP/1.1 404"), "{status}");
    let (status, _, _) = parse(&get(&mut rig, 101, "/live/nope.m3u8"));
    assert!(status.starts_with("HTTP/1.1 404"), "{status}");
}

#[test]
fn a_blocking_reload_and_a_preload_hint_wait_for_the_next_part() {
    let mut rig = Rig::new("");
    let mut p = publisher(&mut rig);
    play(&mut rig, &mut p, 0, 40);
    let text = playlist(&mut rig, 100, "/live/s.m3u8");
    let hint = text.lines().find_map(|l| l.strip_prefix("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"")).unwrap().trim_end_matches('"').to_string();
    let (msn, part) = hint.trim_start_matches("s/").trim_end_matches(".m4s").split_once('.').unwrap();
    // Both wait: nothing is written until the part exists.
    assert!(get(&mut rig, 101, &format!("/live/s.m3u8?_HLS_msn={msn}&_HLS_part={part}")).is_empty());
    assert!(get(&mut rig, 102, &format!("/live/{hint}")).is_empty());
    // A request sent behind the held one on its connection is read after it.
    rig.core.handle_tcp_data(rig.now, 101, b"GET /live/s/init1.mp4 HTTP/1.1\r\n\r\n");
    rig.drain();
    rig.advance(ms(100));
    assert!(!rig.tcp.contains_key(&101), "still held");
    play(&mut rig, &mut p, 40, 12);
    let both = rig.tcp.remove(&101).expect("the playlist once the part exists");
    let first_len = {
        let end = both.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8_lossy(&both[..end]).into_owned();
        end + head.lines().find_map(|l| l.strip_prefix("Content-Length: ")).unwrap().trim().parse::<usize>().unwrap()
    };
    let (status, _, body) = parse(&both[..first_len]);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(String::from_utf8(body).unwrap().contains(&format!("URI=\"{hint}\"")));
    let (status, _, body) = parse(&both[first_len..]);
    assert_eq!(status, "HTTP/1.1 200 OK", "the request behind it");
    assert_eq!(boxes(&body)[0].0, *b"ftyp");
    let (status, _, body) = parse(&rig.tcp.remove(&102).expect("the part once made"));
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(boxes(&body)[0].0, *b"moof");
    // Too far ahead: refused at once.
    let (status, _, _) = parse(&get(&mut rig, 103, &format!("/live/s.m3u8?_HLS_msn={}", msn.parse::<u64>().unwrap() + 3)));
    assert!(status.starts_with("HTTP/1.1 400"), "{status}");
    // A held request times out into what there is.
    let text = playlist(&mut rig, 104, "/live/s.m3u8");
    let next = text.lines().find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:")).unwrap().parse::<u64>().unwrap() + 2;
    assert!(get(&mut rig, 105, &format!("/live/s.m3u8?_HLS_msn={next}")).is_empty());
    rig.advance(crate::core::hls_viewers::HOLD_LIMIT + ms(200));
    assert!(parse(&rig.tcp.remove(&105).expect("answered at the limit")).0.starts_with("HTTP/1.1 200"));
}

#[test]
fn a_shard_serves_another_shards_stream_from_its_snapshots() {
    let t0 = Instant::now();
    let mut home = Rig::shard(0, 2, "", t0);
    let mut edge = Rig::shard(1, 2, "", t0);
    let mut p = publisher(&mut home);
    exchange(&mut [&mut home, &mut edge]);
    play(&mut home, &mut p, 0, 70);
    edge.at(home.now);
    // The first request waits for the home's snapshot.
    assert!(get(&mut edge, 200, "/live/s.m3u8").is_empty());
    exchange(&mut [&mut home, &mut edge]);
    let (status, _, body) = parse(&edge.tcp.remove(&200).expect("answered once subscribed"));
    assert_eq!(status, "HTTP/1.1 200 OK");
    let edge_text = String::from_utf8(body).unwrap();
    let home_text = playlist(&mut home, 300, "/live/s.m3u8");
    assert_eq!(edge_text, home_text, "one timeline on both shards");
    // Updates follow: a part made at home is served at the edge.
    play(&mut home, &mut p, 70, 12);
    exchange(&mut [&mut home, &mut edge]);
    edge.at(home.now);
    let home_text = playlist(&mut home, 300, "/live/s.m3u8");
    assert_eq!(playlist(&mut edge, 200, "/live/s.m3u8"), home_text);
    let part = home_text.lines().rev().find_map(|l| l.strip_prefix("#EXT-X-PART:")).unwrap();
    let uri = part.split("URI=\"").nth(1).unwrap().split('"').next().unwrap();
    assert_eq!(parse(&get(&mut edge, 200, &format!("/live/{uri}"))).2, parse(&get(&mut home, 300, &format!("/live/{uri}"))).2);
    // The publish ends: the edge's view goes.
    p.drop_connection(&mut home);
    exchange(&mut [&mut home, &mut edge]);
    assert!(parse(&get(&mut edge, 201, "/live/s.m3u8")).0.starts_with("HTTP/1.1 404"));
}

#[test]
fn a_players_requests_are_one_usage_session() {
    let mut rig = Rig::new("[billing]\npath = \"/nonexistent\"\ninterval_s = 1\n");
    let mut p = publisher(&mut rig);
    play(&mut rig, &mut p, 0, 40);
    let mut written = 0;
    for conn in [100, 101] {
        // Two connections of one player (as a browser opens them).
        for target in ["/live/s.m3u8", "/live/s/init1.mp4", "/live/s/0.0.m4s"] {
            written += get(&mut rig, conn, target).len();
        }
        rig.core.handle_tcp_closed(rig.now, conn, "peer closed");
        rig.drain();
    }
    rig.advance(crate::core::hls_viewers::HLS_SESSION_IDLE + ms(1_200));
    let records: Vec<UsageRecord> = rig.ctl.iter().filter_map(|m| if let ShardToControl::Usage(r) = m { Some(r.clone()) } else { None }).flatten().collect();
    let mut hls: Vec<&UsageRecord> = records.iter().filter(|r| r.key.protocol == Some(Protocol::Hls)).collect();
    hls.sort_by_key(|r| r.seq);
    hls.dedup_by_key(|r| r.seq);
    assert!(hls.iter().all(|r| r.session == hls[0].session), "one session for the player");
    assert_eq!(hls.iter().map(|r| r.bytes_out).sum::<u64>(), written as u64);
    assert!(hls.iter().map(|r| r.bytes_in).sum::<u64>() > 100, "its requests");
    assert!(hls.last().unwrap().last, "ended after it went quiet");
    assert_eq!(hls[0].key.domain, "edge.example.com");
}

#[test]
fn signed_urls_apply_to_the_playlist_and_everything_it_names() {
    let mut rig = Rig::new("[auth]\nplay_key = \"k1\"\n");
    let mut p = publisher(&mut rig);
    play(&mut rig, &mut p, 0, 40);
    let unix = 1_700_000_000;
    let (status, _, _) = parse(&get(&mut rig, 100, "/live/s.m3u8"));
    assert!(status.starts_with("HTTP/1.1 403"), "unsigned: {status}");
    let (status, _, _) = parse(&get(&mut rig, 101, "/live/s/init1.mp4?auth_key=1700000000-r-0-00000000000000000000000000000000"));
    assert!(status.starts_with("HTTP/1.1 403"), "a bad signature on a segment: {status}");
    // Signed over /{app}/{stream}, or over the playlist's path with its extension.
    for (conn, path) in [(102, "/live/s"), (103, "/live/s.m3u8")] {
        let token = rts_common::auth::sign_path(path, "k1", unix, "r", "0");
        let text = playlist(&mut rig, conn, &format!("/live/s.m3u8?auth_key={token}&_HLS_msn=0"));
        assert!(text.contains(&format!("s/init1.mp4?auth_key={token}\"")), "the token rides on every URI: {text}");
        assert!(!text.contains("_HLS_msn"), "directives do not");
        let (status, _, _) = parse(&get(&mut rig, conn, &format!("/live/s/init1.mp4?auth_key={token}")));
        assert_eq!(status, "HTTP/1.1 200 OK", "{path}");
    }
}

#[test]
fn a_republished_stream_continues_its_numbering() {
    let mut rig = Rig::new("");
    let mut p = publisher(&mut rig);
    play(&mut rig, &mut p, 0, 70);
    let before = playlist(&mut rig, 100, "/live/s.m3u8");
    let hint = before.lines().rev().find_map(|l| l.strip_prefix("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"s/")).unwrap().to_string();
    let mut nums = hint.split('.').map(|n| n.parse::<u64>().unwrap_or(0));
    let (msn, part) = (nums.next().unwrap(), nums.next().unwrap());
    // The segment in progress keeps its number only if it had no part yet.
    let expected = if part == 0 { msn } else { msn + 1 };
    p.drop_connection(&mut rig);
    // The encoder reconnects (its clock starts over).
    let mut p = Publisher::connect(&mut rig, 2, "live", "s");
    p.video(&mut rig, 0, seq_header());
    p.audio(&mut rig, 0, aac_header());
    play(&mut rig, &mut p, 0, 70);
    let after = playlist(&mut rig, 101, "/live/s.m3u8");
    let first = after.lines().find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:")).unwrap().parse::<u64>().unwrap();
    assert_eq!(first, expected, "after the old publish's last segment: {after}");
    assert!(after.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1\n"), "{after}");
    assert!(after.contains("s/init2.mp4"), "{after}");
}
