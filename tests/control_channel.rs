//! The control ↔ dataplane channel loses nothing that changes state (issue
//! 11): a real dataplane (two shards, their io_uring loops) and a control
//! engine in this process, with deliberately tiny rings (8 slots), driven
//! through 20,000 add → start → close cycles. Control is killed in the
//! middle (its in-memory backlog dies with it) and a new one attaches.
//! At the end both sides hold the same sessions: the ones the test kept
//! open, plus at most the ones whose close was still in the dead control's
//! backlog (adopted by the new control, not leaked), and every request was
//! acknowledged.

use rts_common::config::Config;
use rts_common::ipc::{self, ControlToShard};
use rts_control::engine::{Engine, MediaParams, NewSession};
use rts_dataplane::Dataplane;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const CYCLES: u64 = 20_000;
/// Every 10th session stays open.
const KEEP_EVERY: u64 = 10;

fn config(shm: &str, udp_base: u16) -> Arc<Config> {
    let toml = format!(
        "[rtmp]\nlisten = \"127.0.0.1:0\"\n[webrtc]\ncandidate_ip = \"127.0.0.1\"\nudp_bind_ip = \"127.0.0.1\"\nudp_port_base = {udp_base}\n\
         [dataplane]\nshards = 2\nshm_path = \"{shm}\"\nring_slots = 8\nring_slot_size = 2048\n"
    );
    Arc::new(Config::parse(&toml).expect("config"))
}

struct Control {
    engine: Arc<Engine>,
    pump: JoinHandle<()>,
    _region: rts_common::shm::ShmRegion,
}

fn attach(cfg: &Arc<Config>) -> Control {
    let (engine, consumers, region) = Engine::attach(cfg.clone(), Duration::from_secs(10)).expect("attach");
    let e = engine.clone();
    let pump = std::thread::spawn(move || e.pump(consumers));
    Control { engine, pump, _region: region }
}

impl Control {
    /// Kills the pump and drops everything control held in memory.
    fn kill(self) -> usize {
        let lost = self.engine.backlog_len();
        self.engine.stop();
        let _ = self.pump.join();
        lost
    }
}

fn wait_settled(engine: &Engine, what: &str) {
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let (inflight, oldest) = engine.inflight();
        if engine.backlog_len() == 0 && inflight == 0 {
            return;
        }
        assert!(Instant::now() < end, "{what}: backlog {} inflight {inflight} (oldest {oldest:?})", engine.backlog_len());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn retry<E: std::fmt::Debug>(mut f: impl FnMut() -> Result<(), E>) {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        match f() {
            Ok(()) => return,
            Err(e) => {
                assert!(Instant::now() < end, "still refused after 30 s: {e:?}");
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }
}

fn new_session(i: u64) -> NewSession {
    // Kept sessions (every 10th) on both shards too.
    let shard = ((i >> 1) % 2) as usize;
    NewSession {
        session: ipc::make_session_id(shard, i + 1),
        app: "live".into(),
        stream: "s".into(),
        domain: "example.com".into(),
        local_ufrag: format!("u{i}"),
        local_pwd: format!("password-for-session-{i:08}"),
        remote_ufrag: "r".into(),
        remote_fingerprint: None,
        media: MediaParams { video_pt: Some(102), audio_pt: Some(111), ..Default::default() },
        home_shard: None,
        client_ip: None,
    }
}

fn start_media(session: u64) -> ControlToShard {
    ControlToShard::StartMedia {
        session,
        srtp_profile: 0x0007,
        local_key: vec![1; 16],
        local_salt: vec![2; 12],
        remote_key: vec![3; 16],
        remote_salt: vec![4; 12],
        video_pt: Some(102),
        audio_pt: Some(111),
        video_playout_delay_id: None,
        video_rtx: None,
        video_nack: true,
        audio_red_pt: None,
    }
}

#[test]
fn session_cycles_through_tiny_rings_lose_nothing_across_a_control_kill() {
    let shm = format!("/dev/shm/rts-channel-test-{}", std::process::id());
    let udp_base = 40_000 + (std::process::id() % 10_000) as u16 * 2;
    let cfg = config(&shm, udp_base);
    let dataplane = Dataplane::start(cfg.clone()).expect("dataplane");
    let mut control = attach(&cfg);
    let mut kept = BTreeSet::new();
    let mut closed_before_kill = BTreeSet::new();
    let mut before_kill = BTreeSet::new();
    let mut lost_backlog = 0;
    let mut backlogged = 0;
    for i in 0..CYCLES {
        if i == CYCLES / 2 {
            backlogged += control.engine.counters().0.ring_backlogged;
            lost_backlog = control.kill();
            control = attach(&cfg);
        }
        let s = new_session(i);
        let (session, shard) = (s.session, ipc::session_shard(s.session));
        // A full backlog answers RingFull (503 to a client): try again, as
        // a client would.
        retry(|| control.engine.add_session(new_session(i)));
        retry(|| control.engine.send(shard, start_media(session)).map(|_| ()));
        if i % KEEP_EVERY == 0 {
            kept.insert(session);
        } else {
            retry(|| control.engine.remove_session(session, "cycle"));
            if i < CYCLES / 2 {
                closed_before_kill.insert(session);
            }
        }
        if i < CYCLES / 2 {
            before_kill.insert(session);
        }
    }
    wait_settled(&control.engine, "after the cycles");
    // A fresh reconciliation: both sides compare their lists.
    control.engine.reconcile_all();
    wait_settled(&control.engine, "after reconciling");
    let (counters, _, _) = control.engine.counters();
    backlogged += counters.ring_backlogged;
    let known: BTreeSet<u64> = control.engine.session_ids().into_iter().collect();

    assert!(backlogged > 1_000, "the tiny rings were full and messages waited: {backlogged}");
    // What differs from the test's intent is only what died in the killed
    // control's backlog: kept sessions whose add never reached a shard, and
    // closed ones whose close did not (adopted by the new control).
    let missing: BTreeSet<u64> = kept.difference(&known).copied().collect();
    let extra: BTreeSet<u64> = known.difference(&kept).copied().collect();
    assert!(missing.is_subset(&before_kill), "kept sessions from after the kill missing: {}", missing.difference(&before_kill).count());
    assert!(extra.is_subset(&closed_before_kill), "sessions nobody kept: {:?}", extra.iter().take(5).collect::<Vec<_>>());
    assert!(
        missing.len() + extra.len() <= lost_backlog,
        "{} missing + {} left over, only {lost_backlog} messages died with control",
        missing.len(),
        extra.len()
    );
    // ...and those were the last ones before the kill: each cycle is at
    // least one message, so nothing older than `lost_backlog` cycles.
    let cycle = |s: &u64| s & 0xffff_ffff_ffff;
    let oldest_affected = (CYCLES / 2).saturating_sub(lost_backlog as u64);
    let old: Vec<u64> = missing.iter().chain(&extra).map(cycle).filter(|&c| c <= oldest_affected).collect();
    assert!(old.is_empty(), "sessions from long before the kill affected: {:?}", &old[..old.len().min(5)]);

    // The shards' own count, from a stats report taken after the settling.
    let end = Instant::now() + Duration::from_secs(10);
    let shard_sessions = loop {
        std::thread::sleep(Duration::from_millis(200));
        let stats = control.engine.shard_stats();
        let total: u64 = stats.iter().map(|s| s.counters.sessions).sum();
        if stats.len() == 2 && total == known.len() as u64 {
            break total;
        }
        assert!(Instant::now() < end, "shards hold {total} sessions, control knows {}", known.len());
    };
    assert_eq!(shard_sessions, known.len() as u64);
    println!(
        "channel: {CYCLES} cycles, {} kept; the kill lost {lost_backlog} queued messages: {} kept sessions never created, {} closed ones adopted instead; {backlogged} messages waited for ring space; reconciliation adopted {}, removed {} mid-handshake",
        kept.len(),
        missing.len(),
        extra.len(),
        counters.reconciled_adopted,
        counters.reconciled_removed
    );
    control.kill();
    dataplane.stop();
    dataplane.join();
    let _ = std::fs::remove_file(&shm);
}
