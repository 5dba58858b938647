//! Real sockets on 127.0.0.1: client ⇄ relay ⇄ server, in lockstep (every expected datagram
//! is awaited with a blocking receive, so no sleeps and no socket-buffer overflow).

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rts_impair::relay::{client_seed, Direction, Relay, RelayConfig, RelayStats};
use rts_impair::{Decision, ImpairConfig, Model};

fn sock() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s
}

fn start(cfg: RelayConfig) -> (SocketAddr, Arc<AtomicBool>, JoinHandle<RelayStats>) {
    let mut relay = Relay::bind(cfg).unwrap();
    let addr = relay.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let h = std::thread::spawn(move || relay.run(&s, Duration::from_secs(5), |_| {}).unwrap());
    (addr, stop, h)
}

fn recv(s: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = [0u8; 2048];
    let (n, from) = s.recv_from(&mut buf).expect("datagram did not arrive");
    (buf[..n].to_vec(), from)
}

#[test]
fn transparent_both_directions_distinct_tuples() {
    let server = sock();
    let (relay, stop, h) = start(RelayConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        server.local_addr().unwrap(),
    ));
    let (a, b) = (sock(), sock());
    a.send_to(b"hello from a", relay).unwrap();
    let (msg, tuple_a) = recv(&server);
    assert_eq!(msg, b"hello from a");
    b.send_to(b"hello from b", relay).unwrap();
    let (msg, tuple_b) = recv(&server);
    assert_eq!(msg, b"hello from b");
    assert_ne!(
        tuple_a, tuple_b,
        "each client needs its own upstream 5-tuple"
    );

    for i in 0u32..200 {
        server.send_to(&i.to_be_bytes(), tuple_b).unwrap();
        let (msg, from) = recv(&b);
        assert_eq!(msg, i.to_be_bytes());
        assert_eq!(from, relay, "replies come from the relay address");
    }
    server.send_to(b"to a", tuple_a).unwrap();
    assert_eq!(recv(&a).0, b"to a");

    stop.store(true, Ordering::Relaxed);
    let stats = h.join().unwrap();
    assert_eq!(stats.clients_total, 2);
    assert_eq!(stats.up.delivered, 2);
    assert_eq!(stats.down.delivered, 201);
    assert_eq!(stats.sent, 203);
}

#[test]
fn downstream_loss_matches_model_and_keeps_order() {
    let server = sock();
    let down = ImpairConfig::from_spec("loss=20 burst=2,30").unwrap();
    let mut cfg = RelayConfig::new("127.0.0.1:0".parse().unwrap(), server.local_addr().unwrap());
    cfg.down = down;
    cfg.seed = 77;
    let (relay, stop, h) = start(cfg);

    let client = sock();
    client.send_to(b"open", relay).unwrap();
    let (_, tuple) = recv(&server);

    // Replay the relay's model for client 0, downstream, to know which datagrams survive.
    let mut model = Model::new(down, client_seed(77, 0, Direction::Down)).unwrap();
    let n = 2000u32;
    let mut expected_delivered = 0;
    for i in 0..n {
        server.send_to(&i.to_be_bytes(), tuple).unwrap();
        if let Decision::Deliver { .. } = model.on_datagram(Instant::now(), 4) {
            expected_delivered += 1;
            // In-order arrival of exactly this sequence number proves every datagram the
            // model dropped since the previous one really was dropped.
            assert_eq!(recv(&client).0, i.to_be_bytes());
        }
    }
    let loss = 1.0 - expected_delivered as f64 / n as f64;
    assert!((0.2..0.35).contains(&loss), "{loss}");

    stop.store(true, Ordering::Relaxed);
    let stats = h.join().unwrap();
    assert_eq!(stats.down.packets, n as u64);
    assert_eq!(stats.down.delivered, expected_delivered);
    assert_eq!(stats.up.delivered, 1);
}

#[test]
fn delay_is_applied_and_order_kept_without_jitter() {
    let server = sock();
    let mut cfg = RelayConfig::new("127.0.0.1:0".parse().unwrap(), server.local_addr().unwrap());
    cfg.up = ImpairConfig::from_spec("delay-ms=30").unwrap();
    let (relay, stop, h) = start(cfg);
    let client = sock();
    let t0 = Instant::now();
    for i in 0u32..20 {
        client.send_to(&i.to_be_bytes(), relay).unwrap();
    }
    for i in 0u32..20 {
        assert_eq!(recv(&server).0, i.to_be_bytes());
    }
    assert!(t0.elapsed() >= Duration::from_millis(30));
    stop.store(true, Ordering::Relaxed);
    h.join().unwrap();
}
