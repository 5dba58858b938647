//! Traffic records from the core: each session's records add up to the
//! bytes it exchanged (counted here from what the core handed out), a
//! channel switch splits them between the streams, and records wait for
//! control's acknowledgement.

use super::*;
use rts_common::ipc::{Protocol, UsageRecord, UsageTotal};

const BILLING: &str = "[billing]\npath = \"/nonexistent\"\ninterval_s = 1\n";

fn records(rig: &Rig) -> Vec<UsageRecord> {
    rig.ctl.iter().filter_map(|m| if let ShardToControl::Usage(r) = m { Some(r.clone()) } else { None }).flatten().collect()
}

/// Each record once (the core sends unacknowledged ones again).
fn unique(mut r: Vec<UsageRecord>) -> Vec<UsageRecord> {
    r.sort_by_key(|r| r.seq);
    r.dedup_by_key(|r| r.seq);
    r
}

fn of(records: &[UsageRecord], session: u64) -> Vec<&UsageRecord> {
    records.iter().filter(|r| r.session == session).collect()
}

fn sum_out(records: &[&UsageRecord]) -> u64 {
    records.iter().map(|r| r.bytes_out).sum()
}

fn totals(rig: &Rig) -> Vec<UsageTotal> {
    let mut last: HashMap<String, UsageTotal> = HashMap::new();
    for m in &rig.ctl {
        if let ShardToControl::UsageTotals(t) = m {
            for t in t {
                last.insert(format!("{}/{:?}", t.key.stream, t.key.protocol), t.clone());
            }
        }
    }
    last.into_values().collect()
}

#[test]
fn a_webrtc_viewers_records_add_up_to_every_byte_sent_to_it() {
    let mut rig = Rig::new(BILLING);
    let mut p = publish(&mut rig, 1, "live", "s", 3);
    let v = Viewer::join(&mut rig, 1, "live", "s");
    for i in 0..90u32 {
        rig.advance(ms(33));
        p.video(&mut rig, 100 + i * 33, frame(i % 30 == 0, 3_000, i as u8));
        p.audio(&mut rig, 100 + i * 33, opus(i as u8));
        if i % 20 == 0 {
            v.check(&mut rig); // consent: STUN both ways
        }
    }
    rig.control(ControlToShard::RemoveSession { session: v.session, reason: "test".into() });
    rig.advance(ms(200));
    let sent: u64 = rig.sent.iter().filter(|s| s.dst == v.addr).map(|s| s.data.len() as u64).sum();
    let all = unique(records(&rig));
    let mine = of(&all, v.session);
    assert!(mine.len() >= 3, "interim records every second and a final one: {}", mine.len());
    assert_eq!(sum_out(&mine), sent, "every UDP payload byte sent to the viewer (STUN, SRTP, SRTCP), once");
    assert!(mine.iter().map(|r| r.bytes_in).sum::<u64>() > 0, "its checks count as received");
    assert_eq!(mine.iter().filter(|r| r.last).count(), 1);
    assert!(mine.last().unwrap().last, "the final record is the last");
    for r in &mine {
        assert_eq!((r.key.domain.as_str(), r.key.app.as_str(), r.key.stream.as_str(), r.key.protocol), ("play.example.com", "live", "s", Some(Protocol::Webrtc)));
        assert_eq!(r.client, Some(v.addr));
    }
    for w in mine.windows(2) {
        assert_eq!(w[0].end_us, w[1].start_us, "intervals follow each other");
    }
}

#[test]
fn a_channel_switch_bills_each_stream_its_own_bytes() {
    let mut rig = Rig::new(BILLING);
    let mut a = publish(&mut rig, 1, "live", "a", 3);
    let mut b = publish(&mut rig, 2, "live", "b", 3);
    let v = Viewer::join(&mut rig, 1, "live", "a");
    rig.advance(ms(300));
    a.video(&mut rig, 200, frame(false, 2_000, 1));
    let to_a: u64 = rig.sent.iter().filter(|s| s.dst == v.addr).map(|s| s.data.len() as u64).sum();
    let mark = rig.sent.len();
    rig.control(ControlToShard::SwitchStream { session: v.session, app: "live".into(), stream: "b".into(), home_shard: None });
    rig.advance(ms(100));
    b.video(&mut rig, 300, frame(false, 2_000, 2));
    a.video(&mut rig, 233, frame(false, 2_000, 3));
    rig.control(ControlToShard::RemoveSession { session: v.session, reason: "test".into() });
    rig.advance(ms(200));
    let to_b: u64 = rig.sent[mark..].iter().filter(|s| s.dst == v.addr).map(|s| s.data.len() as u64).sum();
    let all = unique(records(&rig));
    let mine = of(&all, v.session);
    let by = |s: &str| mine.iter().filter(|r| r.key.stream == s).map(|r| r.bytes_out).sum::<u64>();
    assert!(to_a > 0 && to_b > 0);
    assert_eq!((by("a"), by("b")), (to_a, to_b));
    assert!(mine.iter().filter(|r| r.key.stream == "a").all(|r| !r.last), "the switch cuts an interim record for a");
    assert!(mine.iter().any(|r| r.key.stream == "b" && r.last));
}

#[test]
fn flv_viewer_and_publisher_are_billed_from_the_tcp_bytes() {
    let mut rig = Rig::new(BILLING);
    let mut p = publish(&mut rig, 1, "live", "s", 3);
    let req = "GET /live/s.flv HTTP/1.1\r\nHost: Edge.Example.com:8088\r\n\r\n";
    rig.core.handle_http_open(rig.now, 100, Some("10.200.0.2:50000".parse().unwrap()));
    rig.core.handle_tcp_data(rig.now, 100, req.as_bytes());
    rig.drain();
    // A refused request is not billed.
    rig.core.handle_http_open(rig.now, 101, Some("10.200.0.2:50001".parse().unwrap()));
    rig.core.handle_tcp_data(rig.now, 101, b"GET /live/nope.flv HTTP/1.1\r\n\r\n");
    rig.drain();
    for i in 0..60u32 {
        rig.advance(ms(33));
        p.video(&mut rig, 100 + i * 33, frame(false, 1_000, i as u8));
    }
    rig.core.handle_tcp_closed(rig.now, 100, "peer closed");
    rig.drain();
    rig.advance(ms(200));
    let all = unique(records(&rig));
    let flv: Vec<&UsageRecord> = all.iter().filter(|r| r.key.protocol == Some(Protocol::Flv)).collect();
    assert!(flv.len() >= 2);
    assert_eq!(sum_out(&flv), rig.tcp[&100].len() as u64, "every byte written to the viewer");
    assert_eq!(flv.iter().map(|r| r.bytes_in).sum::<u64>(), req.len() as u64);
    assert!(flv.iter().all(|r| r.key.domain == "edge.example.com" && r.key.stream == "s"));
    assert!(flv.last().unwrap().last);
    assert_eq!(all.iter().filter(|r| r.key.stream == "nope").count(), 0);
    let publish: Vec<&UsageRecord> = all.iter().filter(|r| r.key.protocol == Some(Protocol::Publish)).collect();
    assert!(publish.iter().map(|r| r.bytes_in).sum::<u64>() > 60 * 1_000, "the publisher's bytes in");
    assert!(publish.iter().all(|r| !r.last), "still publishing");
    // The totals per key are what the records say (nothing is open but the publisher).
    let t = totals(&rig);
    let flv_total = t.iter().find(|t| t.key.protocol == Some(Protocol::Flv)).unwrap();
    assert_eq!(flv_total.bytes_out, sum_out(&flv));
}

#[test]
fn records_wait_for_control_and_go_again_to_a_new_one() {
    let mut rig = Rig::new(BILLING);
    let _p = publish(&mut rig, 1, "live", "s", 3);
    let v = Viewer::join(&mut rig, 1, "live", "s");
    rig.control(ControlToShard::RemoveSession { session: v.session, reason: "test".into() });
    rig.advance(ms(200));
    let first = unique(records(&rig));
    assert!(!first.is_empty());
    // Nobody acknowledges: sent again after 5 s.
    rig.ctl.clear();
    rig.advance(ms(5_200));
    let again = unique(records(&rig));
    assert!(first.iter().all(|r| again.contains(r)), "unacknowledged records go again");
    // Acknowledged: not again, even to a new control's snapshot.
    let seqs: Vec<u64> = again.iter().filter(|r| r.session == v.session).map(|r| r.seq).collect();
    rig.control(ControlToShard::UsageWritten { boot: again[0].boot, seqs });
    rig.ctl.clear();
    rig.control(ControlToShard::Snapshot);
    rig.advance(ms(200));
    let after = unique(records(&rig));
    assert!(after.iter().all(|r| r.session != v.session), "written records are forgotten");
    assert!(!after.is_empty(), "the publisher's unacknowledged records go to the new control at once");
}

#[test]
fn without_billing_no_records() {
    let mut rig = Rig::new("");
    let _p = publish(&mut rig, 1, "live", "s", 3);
    let v = Viewer::join(&mut rig, 1, "live", "s");
    rig.advance(ms(2_500));
    rig.control(ControlToShard::RemoveSession { session: v.session, reason: "test".into() });
    rig.advance(ms(200));
    assert!(records(&rig).is_empty());
    assert!(totals(&rig).is_empty());
}
