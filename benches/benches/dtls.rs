//! DTLS handshakes: the server side's CPU time per handshake, and how the
//! rate scales from one handshake worker to two (issue 11: ≤ 500 µs of
//! server CPU per handshake, two workers ≥ ×1.8 of one).
//!
//! Each worker thread runs its own handshakes end to end (a client endpoint
//! and a server endpoint from the shared contexts, records passed in
//! memory, P-256 ECDSA certificates, X25519, mutual authentication, as
//! control and a browser do). The server side is timed alone with the
//! thread's CPU clock; the client side is the browser's cost and is left
//! out. Control's workers share nothing but the `DtlsContext`, so the
//! scaling run shows whether the TLS library itself lets threads run apart.
//!
//! `cargo bench -p rts-benches --bench dtls` (env: RTS_BENCH_HANDSHAKES per
//! worker, default 1000; RTS_BENCH_WORKERS, default 2; RTS_BENCH_ROUNDS,
//! default 5).

use rts_dtls::{DtlsCert, DtlsContext, DtlsEndpoint, DtlsEvent, Role};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: out-pointer to a live timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// `n` handshakes; returns the server side's CPU time.
fn handshakes(n: usize, cctx: &DtlsContext, sctx: &DtlsContext) -> Duration {
    let mut server = Duration::ZERO;
    for _ in 0..n {
        let mut c = DtlsEndpoint::new(cctx).expect("client");
        let t = thread_cpu();
        let mut s = DtlsEndpoint::new(sctx).expect("server");
        server += thread_cpu() - t;
        c.start(Instant::now()).expect("start");
        loop {
            let mut moved = false;
            while let Some(d) = c.poll_datagram() {
                moved = true;
                let t = thread_cpu();
                s.handle_datagram(&d, Instant::now()).expect("server record");
                while s.poll_event().is_some() {}
                server += thread_cpu() - t;
            }
            let t = thread_cpu();
            let out: Vec<Vec<u8>> = std::iter::from_fn(|| s.poll_datagram()).collect();
            server += thread_cpu() - t;
            for d in out {
                moved = true;
                c.handle_datagram(&d, Instant::now()).expect("client record");
            }
            while let Some(e) = c.poll_event() {
                assert!(matches!(e, DtlsEvent::Connected(_)), "{e:?}");
            }
            if c.is_connected() && s.is_connected() {
                break;
            }
            assert!(moved, "handshake stalled");
        }
    }
    server
}

/// `workers` threads at once, each `n` handshakes: (server µs per
/// handshake, handshakes per wall-clock second over all threads).
fn run(workers: usize, n: usize, cctx: &Arc<DtlsContext>, sctx: &Arc<DtlsContext>) -> (f64, f64) {
    let barrier = Arc::new(Barrier::new(workers + 1));
    let threads: Vec<_> = (0..workers)
        .map(|w| {
            let (b, c, s) = (barrier.clone(), cctx.clone(), sctx.clone());
            std::thread::spawn(move || {
                core_affinity::set_for_current(core_affinity::CoreId { id: w });
                b.wait();
                handshakes(n, &c, &s)
            })
        })
        .collect();
    barrier.wait();
    let t0 = Instant::now();
    let cpu: Duration = threads.into_iter().map(|t| t.join().expect("worker")).sum();
    let wall = t0.elapsed();
    let total = (workers * n) as f64;
    (cpu.as_secs_f64() * 1e6 / total, total / wall.as_secs_f64())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n = env_usize("RTS_BENCH_HANDSHAKES", 1000);
    let workers = env_usize("RTS_BENCH_WORKERS", 2).max(1);
    let rounds = env_usize("RTS_BENCH_ROUNDS", 5).max(1);
    let cctx = Arc::new(DtlsContext::new(&DtlsCert::generate().expect("cert"), Role::Client).expect("client ctx"));
    let sctx = Arc::new(DtlsContext::new(&DtlsCert::generate().expect("cert"), Role::Server).expect("server ctx"));
    println!("dtls bench: {n} handshakes per worker, {rounds} rounds (1 and {workers} workers interleaved), server CPU time measured alone");
    let (mut one_us, mut one_rate, mut many_us, mut many_rate) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let (us, rate) = run(1, n, &cctx, &sctx);
        one_us.push(us);
        one_rate.push(rate);
        let (us, rate) = run(workers, n, &cctx, &sctx);
        many_us.push(us);
        many_rate.push(rate);
    }
    let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    println!(
        "1 worker:  server {:.0} µs per handshake (median; best {:.0}) = {:.0} handshakes/s per core; {:.0}/s wall with the client side in the same thread",
        median(one_us.clone()),
        best(&one_us),
        1e6 / median(one_us.clone()),
        median(one_rate.clone())
    );
    println!(
        "{workers} workers: server {:.0} µs per handshake (median; best {:.0}); {:.0}/s wall: x{:.2} of one worker (median of rounds)",
        median(many_us.clone()),
        best(&many_us),
        median(many_rate.clone()),
        median(many_rate.iter().zip(&one_rate).map(|(m, o)| m / o).collect())
    );
}
