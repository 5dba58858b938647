//! Cluster pulls (decision 022): one core serves a stream over HTTP-FLV to
//! another core that pulls it, byte for byte as the shells would carry them;
//! the puller's own viewers see what the origin's see. Refusals, stalls and
//! stops end the pull with a reason for control.

use super::*;
use rts_rtmp::flv::file::{read_file, FileTag};

const SOURCE: &str = "10.200.0.11:8088";
const PULL: usize = 500;

fn pull_msg() -> ControlToShard {
    ControlToShard::Pull {
        app: "live".into(),
        stream: "s".into(),
        domain: String::new(),
        source: SOURCE.parse().unwrap(),
        host: SOURCE.into(),
        path: "/live/s.flv?relay=edge-1".into(),
    }
}

/// The edge asks for the pull and the shell connects it as connection
/// [`PULL`]; returns the request the edge wrote.
fn connect_pull(edge: &mut Rig) -> String {
    edge.control(pull_msg());
    let (token, addr) = edge.connects.pop().expect("the core asks for a connection");
    assert_eq!(addr, SOURCE.parse().unwrap());
    edge.core.handle_pull_conn(edge.now, token, Some(PULL));
    edge.drain();
    assert!(!edge.tcp.contains_key(&PULL), "nothing is written before the connect completes");
    edge.core.handle_pull_connected(edge.now, PULL);
    edge.drain();
    String::from_utf8(edge.tcp.remove(&PULL).unwrap_or_default()).unwrap()
}

/// Hands `bytes` to the edge's pull connection in pieces of `piece`.
fn feed(edge: &mut Rig, bytes: &[u8], piece: usize) {
    for chunk in bytes.chunks(piece) {
        edge.core.handle_tcp_data(edge.now, PULL, chunk);
        edge.drain();
    }
}

/// An HTTP-FLV viewer's request on connection `conn`; the FLV tags it got.
fn flv_view(rig: &mut Rig, conn: usize) -> Vec<FileTag> {
    rig.core.handle_http_open(rig.now, conn, None);
    rig.core.handle_tcp_data(rig.now, conn, b"GET /live/s.flv HTTP/1.1\r\nHost: x\r\n\r\n");
    rig.drain();
    body_tags(rig.tcp.remove(&conn).unwrap_or_default())
}

fn body_tags(out: Vec<u8>) -> Vec<FileTag> {
    let end = out.windows(4).position(|w| w == b"\r\n\r\n").map_or(0, |i| i + 4);
    let (tags, err) = read_file(&Bytes::copy_from_slice(&out[end..]));
    assert_eq!(err, None, "well-formed FLV");
    tags
}

fn summary(tags: &[FileTag]) -> Vec<(u8, u32, Vec<u8>)> {
    tags.iter().map(|t| (t.tag_type, t.timestamp_ms, t.body.to_vec())).collect()
}

fn pull_ended(rig: &mut Rig) -> Option<String> {
    rig.take_ctl().into_iter().find_map(|m| match m {
        ShardToControl::PullEnded { reason, .. } => Some(reason),
        _ => None,
    })
}

#[test]
fn a_pulled_stream_reaches_the_edges_viewers_as_the_origin_sent_it() {
    let t0 = Instant::now();
    let mut origin = Rig::shard(0, 1, "", t0);
    let mut edge = Rig::shard(0, 1, "", t0);
    let mut p = publish(&mut origin, 1, "live", "s", 2);

    let request = connect_pull(&mut edge);
    assert!(request.starts_with("GET /live/s.flv?relay=edge-1 HTTP/1.1\r\n"), "{request}");
    assert!(request.contains(&format!("\r\nHost: {SOURCE}\r\n")), "{request}");

    // The origin answers it like any HTTP-FLV request; it counts a relay.
    origin.core.handle_http_open(origin.now, 100, None);
    origin.core.handle_tcp_data(origin.now, 100, request.as_bytes());
    origin.drain();
    let answer = origin.tcp.remove(&100).unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 200 OK"));
    assert_eq!(origin.core.counters().relays_served, 1);
    let origin_tags = body_tags(answer.clone());
    assert!(origin_tags.len() >= 4, "headers and the GOP: {}", origin_tags.len());

    // In odd pieces, as TCP may cut it: the stream starts on the edge.
    feed(&mut edge, &answer, 7);
    let started = edge.take_ctl().iter().any(|m| matches!(m, ShardToControl::StreamStarted { app, stream } if app == "live" && stream == "s"));
    assert!(started, "the edge announces the stream");

    // An edge viewer gets the origin's tags: the same bodies, timestamps, order.
    let edge_tags = flv_view(&mut edge, 600);
    assert_eq!(summary(&edge_tags), summary(&origin_tags));

    // Live frames flow on: origin publisher -> origin relay conn -> edge viewer.
    p.video(&mut origin, 99, frame(false, 700, 0x5a));
    let live = origin.tcp.remove(&100).unwrap();
    feed(&mut edge, &live, 1000);
    let got = edge.tcp.remove(&600).unwrap_or_default();
    assert!(got.windows(64).any(|w| w.iter().all(|&b| b == 0x5a)), "the live frame reached the edge's viewer");

    // The origin's publisher leaves: its relay connection closes, so does
    // the pull, and the edge's stream ends (its FLV viewer is closed).
    p.drop_connection(&mut origin);
    assert!(origin.closed.contains(&100), "the origin closes its relay connection");
    edge.core.handle_tcp_closed(edge.now, PULL, "peer closed");
    edge.drain();
    let ctl = edge.take_ctl();
    assert!(ctl.iter().any(|m| matches!(m, ShardToControl::StreamEnded { .. })), "{ctl:?}");
    assert!(ctl.iter().any(|m| matches!(m, ShardToControl::PullEnded { reason, .. } if reason.contains("peer closed"))), "{ctl:?}");
    assert!(edge.closed.contains(&600), "the edge's FLV viewer saw the end");
}

#[test]
fn a_refused_pull_ends_with_the_sources_status() {
    let mut edge = Rig::new("");
    connect_pull(&mut edge);
    feed(&mut edge, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", 5);
    let reason = pull_ended(&mut edge).expect("PullEnded");
    assert!(reason.contains("404"), "{reason}");
    assert!(edge.closed.contains(&PULL));
    assert_eq!(edge.core.counters().pulls_refused, 1);
}

#[test]
fn a_pull_that_stalls_or_never_connects_is_given_up_after_its_timeout() {
    let toml = "[cluster]\npull_timeout_ms = 2000\n";
    // Never connected.
    let mut edge = Rig::new(toml);
    edge.control(pull_msg());
    let (token, _) = edge.connects.pop().unwrap();
    edge.core.handle_pull_conn(edge.now, token, Some(PULL));
    edge.advance(ms(1900));
    assert_eq!(pull_ended(&mut edge), None, "not before the timeout");
    edge.advance(ms(200));
    assert_eq!(pull_ended(&mut edge).as_deref(), Some("connect timed out"));
    assert!(edge.closed.contains(&PULL));

    // Streaming, then silent: the stream ends with the pull.
    let t0 = Instant::now();
    let mut origin = Rig::shard(0, 1, "", t0);
    let mut edge = Rig::shard(0, 1, toml, t0);
    publish(&mut origin, 1, "live", "s", 1);
    let request = connect_pull(&mut edge);
    origin.core.handle_http_open(origin.now, 100, None);
    origin.core.handle_tcp_data(origin.now, 100, request.as_bytes());
    origin.drain();
    feed(&mut edge, &origin.tcp.remove(&100).unwrap(), 4096);
    edge.take_ctl();
    edge.advance(ms(1500));
    assert_eq!(pull_ended(&mut edge), None, "data 1.5 s ago is not a stall");
    edge.advance(ms(600));
    let ctl = edge.take_ctl();
    assert!(ctl.iter().any(|m| matches!(m, ShardToControl::PullEnded { reason, .. } if reason == "source stalled")), "{ctl:?}");
    assert!(ctl.iter().any(|m| matches!(m, ShardToControl::StreamEnded { .. })), "{ctl:?}");
}

#[test]
fn a_stop_or_a_local_publisher_ends_the_pull() {
    let mut edge = Rig::new("");
    connect_pull(&mut edge);
    let mut flv = rts_rtmp::flv::file::file_header(true, true).to_vec();
    rts_rtmp::flv::file::write_tag(&mut flv, rts_rtmp::flv::file::TAG_VIDEO, 0, &seq_header()).unwrap();
    let mut answer = b"HTTP/1.1 200 OK\r\nContent-Type: video/x-flv\r\n\r\n".to_vec();
    answer.extend_from_slice(&flv);
    feed(&mut edge, &answer, 3);
    edge.take_ctl();
    // A repeated request while it runs is the same pull.
    edge.control(pull_msg());
    assert!(edge.connects.is_empty(), "no second connection");
    edge.control(ControlToShard::StopPull { app: "live".into(), stream: "s".into() });
    let ctl = edge.take_ctl();
    assert!(ctl.iter().any(|m| matches!(m, ShardToControl::PullEnded { reason, .. } if reason == "stopped")), "{ctl:?}");
    assert!(ctl.iter().any(|m| matches!(m, ShardToControl::StreamEnded { .. })), "{ctl:?}");
    assert!(edge.closed.contains(&PULL));

    // A stream published here is not pulled.
    let _p = publish(&mut edge, 1, "live", "s", 1);
    edge.take_ctl();
    edge.control(pull_msg());
    assert!(edge.connects.is_empty());
    assert_eq!(pull_ended(&mut edge).as_deref(), Some("published here"));
}

#[test]
fn in_cluster_mode_a_media_viewer_of_an_unknown_stream_waits_for_its_pull() {
    let t0 = Instant::now();
    let toml = "[cluster]\npull_timeout_ms = 2000\n";
    let mut origin = Rig::shard(0, 1, "", t0);
    let mut edge = Rig::shard(0, 1, toml, t0);
    let mut p = publish(&mut origin, 1, "live", "s", 2);

    // The viewer asks first: control hears the want, the viewer waits.
    edge.core.handle_http_open(edge.now, 600, None);
    edge.core.handle_tcp_data(edge.now, 600, b"GET /live/s.flv HTTP/1.1\r\nHost: x\r\n\r\n");
    edge.drain();
    let ctl = edge.take_ctl();
    assert!(ctl.iter().any(|m| matches!(m, ShardToControl::StreamWanted { app, stream } if app == "live" && stream == "s")), "{ctl:?}");
    assert!(!edge.closed.contains(&600));
    // A second viewer within the second: no second message.
    edge.core.handle_http_open(edge.now, 602, None);
    edge.core.handle_tcp_data(edge.now, 602, b"GET /live/s.flv HTTP/1.1\r\nHost: x\r\n\r\n");
    edge.drain();
    assert!(edge.take_ctl().iter().all(|m| !matches!(m, ShardToControl::StreamWanted { .. })));

    // Control's pull arrives; the viewer gets the origin's tags.
    let request = connect_pull(&mut edge);
    origin.core.handle_http_open(origin.now, 100, None);
    origin.core.handle_tcp_data(origin.now, 100, request.as_bytes());
    origin.drain();
    let answer = origin.tcp.remove(&100).unwrap();
    let origin_tags = body_tags(answer.clone());
    feed(&mut edge, &answer, 500);
    assert_eq!(summary(&body_tags(edge.tcp.remove(&600).unwrap())), summary(&origin_tags));
    // Live past the wait's deadline (3 s): not closed.
    for (i, step) in [1500u64, 1600].into_iter().enumerate() {
        edge.advance(ms(step));
        origin.advance(ms(step));
        p.video(&mut origin, 1000 + 1600 * i as u32, frame(false, 300, 0x33));
        let live = origin.tcp.remove(&100).unwrap();
        feed(&mut edge, &live, 4096);
    }
    assert!(!edge.closed.contains(&600), "a live viewer stays");

    // A viewer of a stream nobody pulls gives up after the pull timeout and a second.
    edge.core.handle_http_open(edge.now, 601, None);
    edge.core.handle_tcp_data(edge.now, 601, b"GET /live/nowhere.flv HTTP/1.1\r\nHost: x\r\n\r\n");
    edge.drain();
    edge.advance(ms(2900));
    assert!(!edge.closed.contains(&601), "still waiting");
    edge.advance(ms(200));
    assert!(edge.closed.contains(&601), "given up after 3 s");
    assert_eq!(edge.core.counters().cluster_waits, 3);

    // Outside cluster mode the same request is a 404.
    let mut single = Rig::new("");
    single.core.handle_http_open(single.now, 700, None);
    single.core.handle_tcp_data(single.now, 700, b"GET /live/s.flv HTTP/1.1\r\nHost: x\r\n\r\n");
    single.drain();
    assert!(single.tcp.remove(&700).unwrap().starts_with(b"HTTP/1.1 404"));
    assert!(single.take_ctl().iter().all(|m| !matches!(m, ShardToControl::StreamWanted { .. })));
}
