//! Client <-> server DTLS handshakes over an in-memory "network".

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rts_dtls::{
    DtlsCert, DtlsContext, DtlsEndpoint, DtlsEvent, Error, HashFunction, Role, SrtpExport,
    SrtpProfile, MTU, PROFILE_AEAD_AES_128_GCM, PROFILE_AES128_CM_SHA1_80,
};

struct Peer {
    ep: DtlsEndpoint,
    events: Vec<DtlsEvent>,
    sent: Vec<Vec<u8>>,
}

impl Peer {
    fn new(ctx: &DtlsContext) -> Self {
        Self { ep: DtlsEndpoint::new(ctx).expect("endpoint"), events: Vec::new(), sent: Vec::new() }
    }

    fn drain_events(&mut self) {
        while let Some(e) = self.ep.poll_event() {
            self.events.push(e);
        }
    }

    fn connected(&self) -> Option<&SrtpExport> {
        self.events.iter().find_map(|e| match e {
            DtlsEvent::Connected(x) => Some(x),
            _ => None,
        })
    }

    fn failed(&self) -> bool {
        self.events.iter().any(|e| matches!(e, DtlsEvent::Failed(_)))
    }
}

/// Moves every queued datagram from `from` to `to` unless `drop` says otherwise.
/// Returns how many were taken off `from`'s queue.
fn deliver(from: &mut Peer, to: &mut Peer, drop: &mut dyn FnMut(&[u8]) -> bool) -> usize {
    let mut n = 0;
    while let Some(d) = from.ep.poll_datagram() {
        n += 1;
        assert!(d.len() <= MTU, "datagram of {} bytes exceeds MTU", d.len());
        from.sent.push(d.clone());
        if !drop(&d) {
            to.ep.handle_datagram(&d, Instant::now()).expect("valid datagram accepted");
        }
    }
    from.drain_events();
    to.drain_events();
    n
}

struct Outcome {
    timeouts_fired: usize,
}

/// Runs until both sides report Connected (or a side fails / 20 s pass). OpenSSL's
/// retransmission timer runs on the real clock, so waiting for it means sleeping.
fn run(
    c: &mut Peer,
    s: &mut Peer,
    drop_c2s: &mut dyn FnMut(&[u8]) -> bool,
    drop_s2c: &mut dyn FnMut(&[u8]) -> bool,
) -> Outcome {
    let give_up = Instant::now() + Duration::from_secs(20);
    let mut timeouts_fired = 0;
    c.ep.start(Instant::now()).expect("start");
    while (c.connected().is_none() || s.connected().is_none()) && !c.failed() && !s.failed() {
        assert!(Instant::now() < give_up, "handshake did not finish");
        let moved = deliver(c, s, drop_c2s) + deliver(s, c, drop_s2c);
        if moved > 0 {
            continue;
        }
        let next = [c.ep.poll_timeout(), s.ep.poll_timeout()].into_iter().flatten().min();
        let next = next.expect("stalled with no timer running");
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        let now = Instant::now();
        for p in [&mut *c, &mut *s] {
            if p.ep.poll_timeout().is_some_and(|d| d <= now) {
                timeouts_fired += 1;
                p.ep.handle_timeout(now).expect("timeout");
            }
        }
    }
    Outcome { timeouts_fired }
}

fn keep(_: &[u8]) -> bool {
    false
}

struct Setup {
    client_cert: DtlsCert,
    server_cert: DtlsCert,
    client: Peer,
    server: Peer,
}

fn setup(client_profiles: &[SrtpProfile]) -> Setup {
    let client_cert = DtlsCert::generate().expect("cert");
    let server_cert = DtlsCert::generate().expect("cert");
    let cctx = DtlsContext::with_srtp_profiles(&client_cert, Role::Client, client_profiles)
        .expect("client ctx");
    let sctx = DtlsContext::new(&server_cert, Role::Server).expect("server ctx");
    let client = Peer::new(&cctx);
    let server = Peer::new(&sctx);
    Setup { client_cert, server_cert, client, server }
}

fn connected_pair(profiles: &[SrtpProfile]) -> Setup {
    let mut s = setup(profiles);
    run(&mut s.client, &mut s.server, &mut keep, &mut keep);
    assert!(s.client.ep.is_connected() && s.server.ep.is_connected());
    s
}

fn check_handshake(profile: SrtpProfile, expect_id: u16, expect_len: usize) {
    let mut s = setup(&[profile]);
    let out = run(&mut s.client, &mut s.server, &mut keep, &mut keep);
    assert_eq!(out.timeouts_fired, 0, "lossless handshake needs no retransmission");
    let ce = s.client.connected().expect("client connected").clone();
    let se = s.server.connected().expect("server connected").clone();
    assert_eq!(ce.profile_id, expect_id);
    assert_eq!(se.profile_id, expect_id);
    assert_eq!(ce.material.len(), expect_len);
    assert_eq!(ce.material, se.material, "both sides export identical material");
    assert!(ce.material.iter().any(|&b| b != 0));
    assert_eq!(ce.local_key_salt(Role::Client), se.remote_key_salt(Role::Server));
    assert_eq!(ce.remote_key_salt(Role::Client), se.local_key_salt(Role::Server));
    assert_ne!(ce.local_key_salt(Role::Client), ce.remote_key_salt(Role::Client));
    assert_eq!(ce.peer_fingerprint_sha256, s.server_cert.fingerprint_sha256());
    assert_eq!(se.peer_fingerprint_sha256, s.client_cert.fingerprint_sha256());
    // The exported certificate is the one those fingerprints name, so another hash of it
    // checks an offer's sha-384/512 fingerprint.
    let fp = |h, der: &[u8]| rts_dtls::certificate_fingerprint(h, der).unwrap();
    assert_eq!(fp(HashFunction::Sha256, &se.peer_certificate), s.client_cert.fingerprint_sha256());
    assert_eq!(fp(HashFunction::Sha256, &ce.peer_certificate), s.server_cert.fingerprint_sha256());
    assert_eq!(fp(HashFunction::Sha512, &se.peer_certificate).len(), 64 * 3 - 1);
    assert!(s.client.ep.is_connected() && s.server.ep.is_connected());
    // No cookie exchange: the server answers the ClientHello with a ServerHello
    // (handshake type 2), not a HelloVerifyRequest (3).
    let first = &s.server.sent[0];
    assert_eq!((first[0], first[13]), (22, 2));
    // Full handshake = client flight 1, server flight, client flight 2, server flight:
    // records are packed so a flight is one or two datagrams.
    assert!(s.server.sent.len() <= 4, "server sent {} datagrams", s.server.sent.len());
    // Once connected, the client has no retransmission timer.
    assert_eq!(s.client.ep.poll_timeout(), None);
}

#[test]
fn handshake_aead_aes_128_gcm() {
    check_handshake(SrtpProfile::AeadAes128Gcm, PROFILE_AEAD_AES_128_GCM, 56);
}

#[test]
fn handshake_aes128_cm_sha1_80() {
    check_handshake(SrtpProfile::Aes128CmSha1_80, PROFILE_AES128_CM_SHA1_80, 60);
}

#[test]
fn server_preference_picks_aead() {
    let s = connected_pair(&[SrtpProfile::AeadAes128Gcm, SrtpProfile::Aes128CmSha1_80]);
    // The server's preference order wins: AEAD first.
    assert_eq!(s.client.connected().expect("connected").profile_id, PROFILE_AEAD_AES_128_GCM);
    let reversed = connected_pair(&[SrtpProfile::Aes128CmSha1_80, SrtpProfile::AeadAes128Gcm]);
    assert_eq!(
        reversed.server.connected().expect("connected").profile_id,
        PROFILE_AEAD_AES_128_GCM
    );
}

#[test]
fn client_timer_runs_while_waiting() {
    let mut s = setup(&[SrtpProfile::AeadAes128Gcm]);
    let now = Instant::now();
    assert_eq!(s.client.ep.poll_timeout(), None);
    assert_eq!(s.server.ep.poll_timeout(), None);
    s.client.ep.start(now).expect("start");
    let deadline = s.client.ep.poll_timeout().expect("timer after ClientHello");
    assert!(deadline > now && deadline <= now + Duration::from_secs(2));
    // Not due yet: nothing is retransmitted.
    assert!(s.client.ep.poll_datagram().is_some());
    s.client.ep.handle_timeout(now).expect("early timeout");
    assert!(s.client.ep.poll_datagram().is_none());
    // The server side never starts a handshake by itself.
    s.server.ep.start(now).expect("server start is a no-op");
    assert!(s.server.ep.poll_datagram().is_none());
}

#[test]
fn lost_server_flight_recovers_through_timeout() {
    let mut s = setup(&[SrtpProfile::AeadAes128Gcm]);
    let mut dropped = 0;
    let mut dropping = true;
    let mut drop_first_flight = |d: &[u8]| {
        // The server's first flight starts with the ServerHello; drop datagrams until
        // the client's retransmission has caused anything else to be sent.
        if dropping && d[0] == 22 && d[13] == 2 {
            dropped += 1;
            dropping = false;
            return true;
        }
        false
    };
    let out = run(&mut s.client, &mut s.server, &mut keep, &mut drop_first_flight);
    assert_eq!(dropped, 1);
    assert!(out.timeouts_fired >= 1, "recovery must come from handle_timeout");
    let ce = s.client.connected().expect("client connected");
    let se = s.server.connected().expect("server connected");
    assert_eq!(ce.material, se.material);
}

#[test]
fn lost_final_server_flight_is_resent_after_connect() {
    // The server is already Connected when its last flight (CCS + Finished) is lost;
    // the client's retransmitted flight must make it resend from the connected state.
    let mut s = setup(&[SrtpProfile::AeadAes128Gcm]);
    let mut dropping = true;
    let mut drop_ccs_flight = |d: &[u8]| {
        if dropping && d[0] == 20 {
            dropping = false;
            return true;
        }
        false
    };
    let out = run(&mut s.client, &mut s.server, &mut keep, &mut drop_ccs_flight);
    assert!(!dropping, "the final flight was dropped once");
    assert!(out.timeouts_fired >= 1);
    let ce = s.client.connected().expect("client connected");
    let se = s.server.connected().expect("server connected");
    assert_eq!(ce.material, se.material);
    assert_eq!(s.server.events.len(), 1, "exactly one Connected on the server");
}

#[test]
fn close_notify_is_reported_by_peer() {
    let mut s = connected_pair(&[SrtpProfile::AeadAes128Gcm]);
    s.client.ep.close();
    assert!(!s.client.ep.is_connected());
    let alert = s.client.ep.poll_datagram().expect("close_notify queued");
    assert_eq!(alert[0], 21, "alert record");
    s.server.ep.handle_datagram(&alert, Instant::now()).expect("close_notify");
    assert_eq!(s.server.ep.poll_event(), Some(DtlsEvent::Closed));
    assert!(!s.server.ep.is_connected());
    // The server answers with its own close_notify; the client is already closed.
    let reply = s.server.ep.poll_datagram().expect("reply close_notify");
    assert!(matches!(
        s.client.ep.handle_datagram(&reply, Instant::now()),
        Err(Error::NotActive)
    ));
    assert!(s.client.ep.poll_event().is_none(), "the closing side gets no event");
}

#[test]
fn server_initiated_close() {
    let mut s = connected_pair(&[SrtpProfile::Aes128CmSha1_80]);
    s.server.ep.close();
    let alert = s.server.ep.poll_datagram().expect("close_notify queued");
    s.client.ep.handle_datagram(&alert, Instant::now()).expect("close_notify");
    assert_eq!(s.client.ep.poll_event(), Some(DtlsEvent::Closed));
}

#[test]
fn close_during_handshake_stops_quietly() {
    let mut s = setup(&[SrtpProfile::AeadAes128Gcm]);
    s.client.ep.start(Instant::now()).expect("start");
    let _ = s.client.ep.poll_datagram();
    s.client.ep.close();
    assert!(s.client.ep.poll_datagram().is_none());
    assert_eq!(s.client.ep.poll_timeout(), None);
    assert!(matches!(s.client.ep.start(Instant::now()), Err(Error::NotActive)));
}

/// Feeds `d` and checks the contract: an error or a Failed event or silent drop, never a panic.
/// Returns true when it produced an Err or a Failed event.
fn feed_garbage(ep: &mut DtlsEndpoint, d: &[u8]) -> bool {
    let r = ep.handle_datagram(d, Instant::now());
    let mut failed = false;
    while let Some(e) = ep.poll_event() {
        assert!(!matches!(e, DtlsEvent::Connected(_)), "garbage completed a handshake");
        failed |= matches!(e, DtlsEvent::Failed(_));
    }
    while ep.poll_datagram().is_some() {}
    r.is_err() || failed
}

#[test]
fn random_bytes_are_rejected() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let s = setup(&[SrtpProfile::AeadAes128Gcm]);
    let mut server = s.server;
    for _ in 0..2000 {
        let len = rng.gen_range(0..1500);
        let mut d: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        if d.first().is_some_and(|b| (20..=23).contains(b)) {
            d[0] = 0x80; // keep this loop about non-DTLS bytes; DTLS-shaped junk below
        }
        assert!(matches!(server.ep.handle_datagram(&d, Instant::now()), Err(Error::Malformed(_))));
    }
    assert!(server.ep.poll_event().is_none() && server.ep.poll_datagram().is_none());
}

#[test]
fn dtls_shaped_junk_never_panics() {
    // Valid record headers around random bodies reach OpenSSL itself.
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let cert = DtlsCert::generate().expect("cert");
    let ctx = DtlsContext::new(&cert, Role::Server).expect("ctx");
    for _ in 0..300 {
        let mut ep = DtlsEndpoint::new(&ctx).expect("ep");
        let body_len = rng.gen_range(0..600u16);
        let mut d = vec![rng.gen_range(20..=23), 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0];
        d.extend_from_slice(&body_len.to_be_bytes());
        d.extend((0..body_len).map(|_| rng.gen::<u8>()));
        feed_garbage(&mut ep, &d);
    }
}

#[test]
fn corrupted_client_hello_fails_or_is_dropped() {
    let cert = DtlsCert::generate().expect("cert");
    let sctx = DtlsContext::new(&cert, Role::Server).expect("ctx");
    let cctx = DtlsContext::new(&cert, Role::Client).expect("ctx");
    let mut client = DtlsEndpoint::new(&cctx).expect("client");
    client.start(Instant::now()).expect("start");
    let hello = client.poll_datagram().expect("ClientHello");
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let mut rejected = 0;
    for i in 0..400 {
        let mut d = hello.clone();
        // Flip bits anywhere (header included), sometimes truncate.
        for _ in 0..rng.gen_range(1..4) {
            let at = rng.gen_range(0..d.len());
            d[at] ^= 1 << rng.gen_range(0..8);
        }
        if i % 5 == 0 {
            d.truncate(rng.gen_range(0..d.len()));
        }
        let mut server = DtlsEndpoint::new(&sctx).expect("server");
        rejected += usize::from(feed_garbage(&mut server, &d));
    }
    // Most corruptions are caught (framing error, or OpenSSL's decode alert); the rest
    // hit fields OpenSSL tolerates (random, session id, padding) or are silently dropped.
    assert!(rejected > 100, "only {rejected} of 400 corrupted ClientHellos rejected");
}

#[test]
fn garbage_after_handshake_keeps_session() {
    let mut s = connected_pair(&[SrtpProfile::AeadAes128Gcm]);
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    // A fresh protected record to corrupt: the client's close_notify (epoch 1).
    s.client.ep.close();
    let alert = s.client.ep.poll_datagram().expect("close_notify");
    assert_eq!((alert[0], &alert[3..5]), (21, &[0u8, 1][..]), "encrypted alert record");
    let server = &mut s.server.ep;
    for _ in 0..50 {
        let d: Vec<u8> = (0..rng.gen_range(1..200)).map(|_| rng.gen()).collect();
        let _ = feed_garbage(server, &d);
    }
    for cut in [1, 5, 12, 13, 20, alert.len() - 1] {
        assert!(feed_garbage(server, &alert[..cut]), "truncated record accepted");
    }
    // Valid framing, flipped bits in the protected part (sequence number, body, tag):
    // RFC 6347 §4.1.2.7 requires a silent drop, so a forged or damaged record cannot
    // kill the session. The result is Ok with no event, never Closed.
    for _ in 0..100 {
        let mut d = alert.clone();
        let at = rng.gen_range(5..d.len());
        if (11..13).contains(&at) {
            continue; // length field: covered by the truncation cases
        }
        d[at] ^= 1 << rng.gen_range(0..8);
        let _ = feed_garbage(server, &d);
        assert!(server.is_connected(), "corrupted record broke an established session");
    }
    // The record layer still works: the genuine close_notify goes through.
    server.handle_datagram(&alert, Instant::now()).expect("alert");
    assert_eq!(server.poll_event(), Some(DtlsEvent::Closed));
}

#[test]
fn unexpected_message_fails_and_endpoint_rejects_input() {
    let cert = DtlsCert::generate().expect("cert");
    let cctx = DtlsContext::new(&cert, Role::Client).expect("ctx");
    let mut a = DtlsEndpoint::new(&cctx).expect("a");
    let mut b = DtlsEndpoint::new(&cctx).expect("b");
    a.start(Instant::now()).expect("start");
    b.start(Instant::now()).expect("start");
    let _ = a.poll_datagram();
    // A client waiting for a ServerHello receives a ClientHello: fatal unexpected_message.
    let hello = b.poll_datagram().expect("hello");
    a.handle_datagram(&hello, Instant::now()).expect("framing is fine");
    assert!(matches!(a.poll_event(), Some(DtlsEvent::Failed(_))));
    let alert = a.poll_datagram().expect("fatal alert queued");
    assert_eq!(alert[0], 21);
    assert!(!a.is_connected());
    assert_eq!(a.poll_timeout(), None);
    assert!(matches!(a.handle_datagram(&hello, Instant::now()), Err(Error::NotActive)));
    a.handle_timeout(Instant::now() + Duration::from_secs(5)).expect("timeout is a no-op");
    assert!(a.poll_datagram().is_none());
}

/// Release-mode measurement for docs/decisions/002-dtls-crate.md:
/// `cargo test --release -p rts-dtls -- --ignored handshake_rate --nocapture`
#[test]
#[ignore]
fn handshake_rate() {
    let client_cert = DtlsCert::generate().expect("cert");
    let server_cert = DtlsCert::generate().expect("cert");
    let cctx = DtlsContext::new(&client_cert, Role::Client).expect("ctx");
    let sctx = DtlsContext::new(&server_cert, Role::Server).expect("ctx");
    let n = 500;
    let mut server_time = Duration::ZERO;
    let total = Instant::now();
    for _ in 0..n {
        let mut c = DtlsEndpoint::new(&cctx).expect("c");
        let t = Instant::now();
        let mut s = DtlsEndpoint::new(&sctx).expect("s");
        server_time += t.elapsed();
        c.start(Instant::now()).expect("start");
        let mut done = false;
        while !done {
            let mut moved = false;
            while let Some(d) = c.poll_datagram() {
                moved = true;
                let t = Instant::now();
                s.handle_datagram(&d, t).expect("s");
                while s.poll_event().is_some() {}
                server_time += t.elapsed();
            }
            let t = Instant::now();
            let mut out = Vec::new();
            while let Some(d) = s.poll_datagram() {
                out.push(d);
            }
            server_time += t.elapsed();
            for d in out {
                moved = true;
                c.handle_datagram(&d, Instant::now()).expect("c");
            }
            while let Some(e) = c.poll_event() {
                assert!(matches!(e, DtlsEvent::Connected(_)));
            }
            done = c.is_connected() && s.is_connected();
            assert!(moved || done, "stalled");
        }
    }
    let total = total.elapsed();
    println!(
        "{n} handshakes: server side {:.0}/s per core ({:.0} us each), client+server {:.0}/s",
        n as f64 / server_time.as_secs_f64(),
        server_time.as_secs_f64() * 1e6 / n as f64,
        n as f64 / total.as_secs_f64()
    );
}
