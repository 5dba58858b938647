//! A fresh server `DtlsEndpoint` per input, fed the input as datagrams framed
//! `len(u16 BE) bytes`. After each datagram everything queued is drained. Nothing may
//! panic; every datagram we emit fits the MTU, and once the endpoint is closed or
//! failed it refuses further input. OpenSSL itself is not instrumented, so coverage
//! guidance stops at the Rust side; the seeds (a real ClientHello flight) get the
//! fuzzer into the handshake.
#![no_main]

use std::sync::OnceLock;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use rts_dtls::{DtlsCert, DtlsContext, DtlsEndpoint, DtlsEvent, Error, Role, MTU};

fn server_ctx() -> &'static DtlsContext {
    static CTX: OnceLock<DtlsContext> = OnceLock::new();
    CTX.get_or_init(|| {
        let cert = DtlsCert::generate().expect("certificate");
        DtlsContext::new(&cert, Role::Server).expect("context")
    })
}

fuzz_target!(|data: &[u8]| {
    let mut ep = DtlsEndpoint::new(server_ctx()).expect("endpoint");
    let now = Instant::now();
    let mut done = false;
    let mut rest = data;
    while let [a, b, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*a, *b])).min(tail.len());
        let (datagram, tail) = tail.split_at(len);
        rest = tail;
        match ep.handle_datagram(datagram, now) {
            Ok(()) => assert!(!done, "input accepted after the session ended"),
            Err(Error::NotActive) => assert!(done, "NotActive while still active"),
            Err(_) => {}
        }
        let _ = ep.handle_timeout(now);
        while let Some(out) = ep.poll_datagram() {
            assert!(out.len() <= MTU, "{}-byte datagram exceeds MTU", out.len());
        }
        while let Some(ev) = ep.poll_event() {
            if matches!(ev, DtlsEvent::Closed | DtlsEvent::Failed(_)) {
                done = true;
            }
        }
    }
    ep.close();
    while ep.poll_datagram().is_some() {}
});
