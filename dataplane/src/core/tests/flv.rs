//! HTTP-FLV viewers on the media listener: the answer and its start,
//! refusals, slow readers (skip to a keyframe, then disconnect), and a
//! viewer on a shard that replicates the stream.

use super::*;
use rts_rtmp::flv::file::{read_file, FileTag, TAG_AUDIO, TAG_VIDEO};

const REQUEST: &str = "GET /live/s.flv HTTP/1.1\r\nHost: edge.example.com:8088\r\n\r\n";

fn request(rig: &mut Rig, conn: usize, raw: &str) {
    rig.core.handle_http_open(rig.now, conn, Some("10.200.0.2:50000".parse().unwrap()));
    rig.drain();
    rig.core.handle_tcp_data(rig.now, conn, raw.as_bytes());
    rig.drain();
}

/// The response head and the bytes after it.
fn response(rig: &Rig, conn: usize) -> (String, Vec<u8>) {
    let out = rig.tcp.get(&conn).cloned().unwrap_or_default();
    let end = out.windows(4).position(|w| w == b"\r\n\r\n").map_or(out.len(), |i| i + 4);
    (String::from_utf8_lossy(&out[..end]).into_owned(), out[end..].to_vec())
}

/// The FLV tags of a body (which starts with the file header).
fn tags(body: &[u8]) -> Vec<FileTag> {
    let (tags, err) = read_file(&Bytes::copy_from_slice(body));
    assert_eq!(err, None, "the body is a well-formed FLV stream");
    tags
}

fn aac_header() -> Bytes {
    Bytes::from_static(&[0xaf, 0, 0x12, 0x10])
}

fn aac(fill: u8) -> Bytes {
    Bytes::from(vec![0xaf, 1, fill, fill])
}

/// Video tag kinds as (type, timestamp, first body bytes) for asserts.
fn summary(tags: &[FileTag]) -> Vec<(u8, u32, u8, u8)> {
    tags.iter().map(|t| (t.tag_type, t.timestamp_ms, t.body[0], t.body[1])).collect()
}

#[test]
fn a_viewer_gets_the_answer_the_headers_and_the_gop_then_live_tags() {
    let mut rig = Rig::new("");
    let mut p = Publisher::connect(&mut rig, 1, "live", "s");
    p.audio(&mut rig, 0, aac_header());
    p.gop(&mut rig, 0, 2); // AVC header, keyframe at 0, P at 33 and 66
    p.audio(&mut rig, 40, aac(7));
    request(&mut rig, 100, REQUEST);
    let (head, body) = response(&rig, 100);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("\r\nContent-Type: video/x-flv\r\n"), "{head}");
    assert!(head.contains("\r\nAccess-Control-Allow-Origin: *\r\n"), "CORS on media: {head}");
    assert_eq!(&body[..13], &[b'F', b'L', b'V', 1, 5, 0, 0, 0, 9, 0, 0, 0, 0], "FLV header, audio and video");
    // Headers first (stamped at the keyframe), then the GOP in publish order.
    assert_eq!(
        summary(&tags(&body)),
        vec![(TAG_VIDEO, 0, 0x17, 0), (TAG_AUDIO, 0, 0xaf, 0), (TAG_VIDEO, 0, 0x17, 1), (TAG_VIDEO, 33, 0x27, 1), (TAG_VIDEO, 66, 0x27, 1), (TAG_AUDIO, 40, 0xaf, 1)]
    );
    // Live tags follow, as published.
    p.video(&mut rig, 99, frame(false, 500, 9));
    p.audio(&mut rig, 63, aac(8));
    let (_, body) = response(&rig, 100);
    let all = tags(&body);
    assert_eq!(summary(&all[6..]), vec![(TAG_VIDEO, 99, 0x27, 1), (TAG_AUDIO, 63, 0xaf, 1)]);
    assert_eq!(all[6].body, frame(false, 500, 9), "the publisher's tag body, untouched");
    assert!(rig.closed.is_empty());
    assert_eq!(rig.core.counters.flv_viewers, 1);
    // The stream's traffic counts the viewer's bytes.
    let id = rig.core.streams.lookup("live/s").unwrap();
    assert_eq!(rig.core.streams.get(id).unwrap().bytes_out(), rig.tcp[&100].len() as u64);

    // The viewer goes: the stream forgets it.
    rig.core.handle_tcp_closed(rig.now, 100, "peer closed");
    rig.drain();
    assert_eq!(rig.core.counters.flv_viewers, 0);
    assert!(rig.core.streams.get(id).unwrap().flv_viewers.is_empty());
}

#[test]
fn a_viewer_before_the_first_keyframe_waits_for_it() {
    let mut rig = Rig::new("");
    let mut p = Publisher::connect(&mut rig, 1, "live", "s");
    p.video(&mut rig, 0, seq_header());
    p.video(&mut rig, 0, frame(false, 300, 1)); // no keyframe yet
    request(&mut rig, 100, REQUEST);
    let (head, body) = response(&rig, 100);
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert_eq!(body.len(), 13, "only the FLV header until a keyframe");
    p.video(&mut rig, 33, frame(false, 300, 2));
    assert_eq!(response(&rig, 100).1.len(), 13, "P-frames are not a start");
    p.video(&mut rig, 66, frame(true, 300, 3));
    p.video(&mut rig, 99, frame(false, 300, 4));
    let (_, body) = response(&rig, 100);
    assert_eq!(summary(&tags(&body)), vec![(TAG_VIDEO, 66, 0x17, 0), (TAG_VIDEO, 66, 0x17, 1), (TAG_VIDEO, 99, 0x27, 1)]);
}

#[test]
fn refusals_answer_with_a_status_and_close() {
    let mut rig = Rig::new("[auth]\nplay_key = \"k1\"\n");
    let _p = publish(&mut rig, 1, "live", "s", 1);
    let unix = 1_700_000_000;
    let good = rts_common::auth::sign_path("/live/s", "k1", unix, "r", "0");
    let cases: Vec<(usize, String, &str)> = vec![
        (100, "GET /live/s.flv HTTP/1.1\r\n\r\n".into(), "HTTP/1.1 403 "),
        (101, "GET /live/s.flv?auth_key=1700000000-r-0-00000000000000000000000000000000 HTTP/1.1\r\n\r\n".into(), "HTTP/1.1 403 "),
        (102, format!("GET /live/other.flv?auth_key={} HTTP/1.1\r\n\r\n", rts_common::auth::sign_path("/live/other", "k1", unix, "r", "0")), "HTTP/1.1 404 "),
        (103, "POST /live/s.flv HTTP/1.1\r\n\r\n".into(), "HTTP/1.1 405 "),
        (104, "GET /live/s.mp4 HTTP/1.1\r\n\r\n".into(), "HTTP/1.1 404 "),
        (105, "GARBAGE\u{1}\r\n\r\n".into(), "HTTP/1.1 400 "),
        (106, "OPTIONS /live/s.flv HTTP/1.1\r\nOrigin: http://a\r\n\r\n".into(), "HTTP/1.1 204 "),
        (107, format!("HEAD /live/s.flv?auth_key={good} HTTP/1.1\r\n\r\n"), "HTTP/1.1 200 "),
    ];
    for (conn, raw, status) in &cases {
        request(&mut rig, *conn, raw);
        let (head, body) = response(&rig, *conn);
        assert!(head.starts_with(status), "{raw:?}: {head}");
        assert!(head.contains("Access-Control-Allow-Origin: *"), "{raw:?}: {head}");
        assert!(rig.closed.contains(conn), "{raw:?} closes");
        assert!(!body.starts_with(b"FLV"), "{raw:?}: no media");
    }
    assert_eq!(rig.core.counters.http_refused, 6);
    // A signed request over the path with its extension plays too.
    let with_ext = rts_common::auth::sign_path("/live/s.flv", "k1", unix, "r", "0");
    request(&mut rig, 110, &format!("GET /live/s.flv?auth_key={with_ext} HTTP/1.1\r\n\r\n"));
    assert!(response(&rig, 110).0.starts_with("HTTP/1.1 200 "));
    assert!(response(&rig, 110).1.starts_with(b"FLV"));
    assert!(!rig.closed.contains(&110));
    assert_eq!(rig.core.counters.flv_viewers, 1);
}

#[test]
fn a_request_head_arrives_in_pieces_and_an_endless_one_is_refused() {
    let mut rig = Rig::new("");
    let _p = publish(&mut rig, 1, "live", "s", 1);
    rig.core.handle_http_open(rig.now, 100, None);
    for piece in REQUEST.as_bytes().chunks(5) {
        assert!(!rig.tcp.contains_key(&100), "nothing before the head is complete");
        rig.core.handle_tcp_data(rig.now, 100, piece);
        rig.drain();
    }
    assert!(response(&rig, 100).0.starts_with("HTTP/1.1 200 "));
    // Bytes after the head are ignored (no second answer).
    rig.core.handle_tcp_data(rig.now, 100, REQUEST.as_bytes());
    rig.drain();
    assert_eq!(response(&rig, 100).0.matches("HTTP/1.1").count(), 1);

    rig.core.handle_http_open(rig.now, 101, None);
    rig.core.handle_tcp_data(rig.now, 101, b"GET /live/s.flv HTTP/1.1\r\n");
    for _ in 0..3 {
        rig.core.handle_tcp_data(rig.now, 101, &[b'x'; 4096]);
        rig.drain();
    }
    assert!(response(&rig, 101).0.starts_with("HTTP/1.1 431 "), "{}", response(&rig, 101).0);
    assert!(rig.closed.contains(&101));
}

#[test]
fn a_slow_reader_skips_to_a_keyframe_and_one_that_stays_behind_is_closed() {
    let mut rig = Rig::new("");
    let mut p = publish(&mut rig, 1, "live", "s", 0);
    request(&mut rig, 100, REQUEST);
    request(&mut rig, 101, REQUEST);
    rig.stalled.insert(100);
    // 100 reads nothing: 30 frames of 50 kB are over the 1 MiB limit.
    for i in 1..=30u32 {
        p.video(&mut rig, i * 33, frame(false, 50_000, 5));
    }
    assert_eq!(rig.core.counters.flv_skips, 1);
    let stuck = response(&rig, 100).1.len();
    let keeps_up = response(&rig, 101).1.len();
    assert!(stuck < keeps_up, "the slow reader stopped getting tags: {stuck} vs {keeps_up}");
    let (h100, _) = response(&rig, 100);
    assert!(h100.starts_with("HTTP/1.1 200"));
    // It catches up (the shell wrote everything): a P-frame is not where it
    // resumes, the next keyframe is, after the sequence header.
    rig.stalled.remove(&100);
    let queued = rig.tcp[&100].len();
    rig.core.handle_tcp_written(100, queued);
    p.video(&mut rig, 1_100, frame(false, 1_000, 6));
    assert_eq!(response(&rig, 100).1.len(), stuck, "no P-frame after a skip");
    p.video(&mut rig, 1_133, frame(true, 1_000, 7));
    let body = response(&rig, 100).1;
    let resumed = &body[stuck..];
    let mut file = rts_rtmp::flv::file::file_header(true, true).to_vec();
    file.extend_from_slice(resumed);
    assert_eq!(summary(&tags(&file)), vec![(TAG_VIDEO, 1_133, 0x17, 0), (TAG_VIDEO, 1_133, 0x17, 1)]);
    assert!(rig.closed.is_empty());

    // 101 stops reading; past the limit after ~3 s, and behind for 5 s
    // more: closed.
    rig.stalled.insert(101);
    for i in 0..70u32 {
        rig.advance(ms(150));
        p.video(&mut rig, 1_200 + i * 150, frame(false, 50_000, 8));
    }
    assert_eq!(rig.closed, vec![101], "closed after 5 s behind, the reader that caught up is not");
    assert_eq!(rig.core.counters.flv_slow_closed, 1);
    assert_eq!(rig.core.counters.flv_viewers, 1);
}

#[test]
fn a_long_start_is_not_taken_for_a_slow_reader() {
    let mut rig = Rig::new("");
    let mut p = Publisher::connect(&mut rig, 1, "live", "s");
    p.video(&mut rig, 0, seq_header());
    p.video(&mut rig, 0, frame(true, 100_000, 1));
    for i in 1..30u32 {
        p.video(&mut rig, i * 33, frame(false, 50_000, 2)); // a 1.5 MB GOP cached
    }
    rig.stalled.insert(100);
    request(&mut rig, 100, REQUEST);
    let start = response(&rig, 100).1.len();
    assert!(start > 1_500_000, "{start}");
    // Nothing written yet, 1.5 MB queued: live frames still go out while
    // the queue is within the limit plus the start.
    for i in 30..40u32 {
        p.video(&mut rig, i * 33, frame(false, 50_000, 3));
    }
    assert_eq!(rig.core.counters.flv_skips, 0, "the start alone is not falling behind");
    assert_eq!(response(&rig, 100).1.len(), start + 10 * (50_000 + 9 + 15));
    // Past the limit on top of the start: a skip.
    for i in 40..70u32 {
        p.video(&mut rig, i * 33, frame(false, 50_000, 4));
    }
    assert_eq!(rig.core.counters.flv_skips, 1);
    // Caught up once (everything written): the allowance is gone, so a
    // reader that stops now skips after 1 MiB, not after 1 MiB + the start.
    rig.stalled.remove(&100);
    let all = rig.tcp[&100].len();
    rig.core.handle_tcp_written(100, all);
    rig.stalled.insert(100);
    p.video(&mut rig, 70 * 33, frame(true, 50_000, 5)); // resumes here
    for i in 71..95u32 {
        p.video(&mut rig, i * 33, frame(false, 50_000, 6));
    }
    assert_eq!(rig.core.counters.flv_skips, 2, "1.2 MB after catching up is over the plain limit");
}

#[test]
fn the_end_of_the_publish_closes_its_viewers() {
    let mut rig = Rig::new("");
    let p = publish(&mut rig, 1, "live", "s", 1);
    request(&mut rig, 100, REQUEST);
    p.drop_connection(&mut rig);
    assert_eq!(rig.closed, vec![100]);
    assert!(rig.core.streams.is_empty());
    request(&mut rig, 101, REQUEST);
    assert!(response(&rig, 101).0.starts_with("HTTP/1.1 404 "));
}

#[test]
fn a_viewer_on_another_shard_gets_the_stream_through_replication() {
    let t0 = Instant::now();
    let (mut home, mut edge) = (Rig::shard(0, 2, "", t0), Rig::shard(1, 2, "", t0));
    let mut p = publish(&mut home, 1, "live", "s", 1);
    exchange(&mut [&mut home, &mut edge]); // the publish announcement
    // HEAD answers from the announcement, without replicating.
    request(&mut edge, 99, "HEAD /live/s.flv HTTP/1.1\r\n\r\n");
    assert!(response(&edge, 99).0.starts_with("HTTP/1.1 200 "));
    assert!(edge.core.streams.is_empty() && edge.take_relay().is_empty(), "no replica for a HEAD");
    request(&mut edge, 100, REQUEST);
    assert!(response(&edge, 100).0.starts_with("HTTP/1.1 200 "));
    exchange(&mut [&mut home, &mut edge]); // subscribe, snapshot
    let start = tags(&response(&edge, 100).1);
    assert_eq!(summary(&start), vec![(TAG_VIDEO, 0, 0x17, 0), (TAG_VIDEO, 0, 0x17, 1), (TAG_VIDEO, 33, 0x27, 1)]);
    // Live tags come relayed, their encoding shared with the home's.
    p.video(&mut home, 66, frame(false, 700, 3));
    let relay = home.take_relay();
    let wire = relay.iter().find_map(|(_, m)| match m {
        RelayMsg::FlvTag { tag, .. } => Some(tag.wire.clone()),
        _ => None,
    });
    let id = home.core.streams.lookup("live/s").unwrap();
    assert_eq!(wire.map(|w| w.as_ptr()), home.core.streams.get(id).unwrap().flv.start().last().map(|t| t.wire.as_ptr()), "one encoding, relayed by reference");
    for (_, msg) in relay {
        edge.core.handle_relay(edge.now, 0, msg);
        edge.drain();
    }
    assert_eq!(summary(&tags(&response(&edge, 100).1)[3..]), vec![(TAG_VIDEO, 66, 0x27, 1)]);

    // The publisher leaves: the edge's viewer is closed, and a new request
    // there finds nothing.
    p.drop_connection(&mut home);
    exchange(&mut [&mut home, &mut edge]);
    assert_eq!(edge.closed, vec![99, 100]);
    assert!(edge.core.streams.is_empty(), "the replica went with its last viewer");
    request(&mut edge, 101, REQUEST);
    assert!(response(&edge, 101).0.starts_with("HTTP/1.1 404 "));
}

// ------------------------------------------------------------ RTMP play

/// (video?, timestamp, first two body bytes) of a player's media.
fn played(p: &Player) -> Vec<(bool, u32, u8, u8)> {
    p.media().iter().map(|(v, ts, b)| (*v, *ts, b[0], b[1])).collect()
}

#[test]
fn an_rtmp_player_gets_the_answer_then_the_start_then_live_tags() {
    let mut rig = Rig::new("");
    let mut p = Publisher::connect(&mut rig, 1, "live", "s");
    p.audio(&mut rig, 0, aac_header());
    p.gop(&mut rig, 0, 1);
    let mut player = Player::connect(&mut rig, 50, "live", "s");
    let accepted = player.events.iter().position(|e| *e == rml_rtmp::sessions::ClientSessionEvent::PlaybackRequestAccepted);
    let first_media = player.events.iter().position(|e| matches!(e, rml_rtmp::sessions::ClientSessionEvent::VideoDataReceived { .. }));
    let kinds: Vec<String> = player.events.iter().map(|e| format!("{e:?}").chars().take(40).collect()).collect();
    assert!(accepted.is_some() && first_media.is_some() && accepted < first_media, "the answer, then media: {kinds:?}");
    assert_eq!(played(&player), vec![(true, 0, 0x17, 0), (false, 0, 0xaf, 0), (true, 0, 0x17, 1), (true, 33, 0x27, 1)]);
    p.video(&mut rig, 66, frame(false, 9_000, 4)); // three RTMP chunks
    p.audio(&mut rig, 50, aac(3));
    player.read(&mut rig);
    let media = player.media();
    assert_eq!(media[4], (true, 66, frame(false, 9_000, 4)), "the publisher's tag, untouched");
    assert_eq!(played(&player)[5..], [(false, 50, 0xaf, 1)]);
    assert_eq!(rig.core.counters.rtmp_players, 1);
    assert!(rig.core.counters.rtmp_play_bytes_out > 9_000);
    // The publisher leaves: the player is closed.
    p.drop_connection(&mut rig);
    assert_eq!(rig.closed, vec![50]);
    assert_eq!(rig.core.counters.rtmp_players, 0);
}

#[test]
fn a_refused_rtmp_play_gets_an_error_status_and_is_closed() {
    let mut rig = Rig::new("[auth]\nplay_key = \"k1\"\n");
    let _p = publish(&mut rig, 1, "live", "s", 1);
    let player = Player::connect(&mut rig, 50, "live", "s");
    assert!(
        player.events.iter().any(|e| matches!(e, rml_rtmp::sessions::ClientSessionEvent::UnhandleableOnStatusCode { code } if code == "NetStream.Play.StreamNotFound")),
        "{:?}",
        player.events
    );
    assert!(player.media().is_empty());
    assert_eq!(rig.closed, vec![50]);
    let key = rts_common::auth::sign_path("/live/s", "k1", 1_700_000_000, "r", "0");
    let player = Player::connect(&mut rig, 51, "live", &format!("s?auth_key={key}"));
    assert!(!player.media().is_empty(), "signed: plays");
    let player = Player::connect(&mut rig, 52, "live", &format!("nothing?auth_key={key}"));
    assert!(player.media().is_empty());
    assert_eq!(rig.closed, vec![50, 52]);
    assert_eq!(rig.core.counters.rtmp_play_refused, 2);
}
