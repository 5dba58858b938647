//! The admin listing and cuts in the shard.

use super::*;
use rts_common::ipc::{ClientEntry, Protocol};

fn clients(rig: &mut Rig) -> Vec<ClientEntry> {
    rig.control(ControlToShard::ListClients { req: 7 });
    let mut out = Vec::new();
    let mut last = false;
    for m in rig.take_ctl() {
        if let ShardToControl::Clients { req, clients, last: l } = m {
            assert_eq!(req, 7);
            assert!(!last, "nothing after the last chunk");
            out.extend(clients);
            last = l;
        }
    }
    assert!(last, "the answer ends with a last chunk");
    out
}

fn cut_done(rig: &mut Rig) -> Option<bool> {
    rig.take_ctl().into_iter().find_map(|m| match m {
        ShardToControl::CutDone { found, .. } => Some(found),
        _ => None,
    })
}

#[test]
fn clients_are_listed_and_cut_by_session_and_a_publisher_by_stream() {
    let mut rig = Rig::new("");
    assert!(clients(&mut rig).is_empty(), "an empty shard answers with one empty last chunk");
    let mut p = publish(&mut rig, 1, "live", "s", 1);
    let mut player = Player::connect(&mut rig, 2, "live", "s");
    player.read(&mut rig);
    let peer: std::net::SocketAddr = "10.200.0.2:50000".parse().unwrap();
    rig.core.handle_http_open(rig.now, 100, Some(peer));
    rig.core.handle_tcp_data(rig.now, 100, b"GET /live/s.flv HTTP/1.1\r\nHost: x\r\n\r\n");
    rig.drain();
    // A connection that asked for nothing yet is not listed.
    rig.core.handle_http_open(rig.now, 101, None);
    rig.drain();

    let list = clients(&mut rig);
    let kinds: Vec<(Protocol, &str, &str)> = list.iter().map(|c| (c.protocol, c.app.as_str(), c.stream.as_str())).collect();
    assert_eq!(kinds.len(), 3, "{list:?}");
    for k in [(Protocol::Publish, "live", "s"), (Protocol::Rtmp, "live", "s"), (Protocol::Flv, "live", "s")] {
        assert!(kinds.contains(&k), "{k:?} in {list:?}");
    }
    let flv = list.iter().find(|c| c.protocol == Protocol::Flv).unwrap();
    assert_eq!(flv.peer, Some(peer));
    let sent = rig.tcp.get(&100).map_or(0, |b| b.len()) as u64;
    assert_eq!(flv.bytes_out, sent, "bytes as handed to the shell");
    let publisher = list.iter().find(|c| c.protocol == Protocol::Publish).unwrap();
    assert!(publisher.bytes_in > 1000, "{publisher:?}");

    // Cut the FLV viewer by its session id.
    rig.control(ControlToShard::Cut { session: flv.session });
    assert_eq!(cut_done(&mut rig), Some(true));
    assert!(rig.closed.contains(&100));
    rig.control(ControlToShard::Cut { session: flv.session });
    assert_eq!(cut_done(&mut rig), Some(false), "gone already");

    // Cut the publisher by its stream: its connection closes, the stream ends.
    rig.control(ControlToShard::CutPublisher { app: "live".into(), stream: "s".into() });
    let ctl = rig.take_ctl();
    assert!(ctl.iter().any(|m| matches!(m, ShardToControl::CutDone { found: true, .. })), "{ctl:?}");
    assert!(ctl.iter().any(|m| matches!(m, ShardToControl::StreamEnded { .. })), "{ctl:?}");
    assert!(rig.closed.contains(&1));
    assert_eq!(rig.core.counters().admin_cuts, 2);
    p.video(&mut rig, 99, frame(false, 100, 1)); // into a closed connection: ignored
    rig.control(ControlToShard::CutPublisher { app: "live".into(), stream: "nobody".into() });
    assert_eq!(cut_done(&mut rig), Some(false));
}
