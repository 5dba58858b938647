//! `rts-loadgen`: opens N real WebRTC viewer sessions (ICE as controlling
//! agent, DTLS client, SRTP) against a WHEP, RTS-JSON or SRS endpoint and
//! reports what viewers experienced.
//!
//! Most viewers are *light*: they keep their session alive (consent
//! freshness, RTCP RR) and count packets from the datagram headers without
//! decrypting, so one core drives thousands. A sample (`--verify-share`)
//! decrypts, checks sequence continuity, reassembles H.264 frames and
//! measures first-frame time, jitter, stalls and, when the publisher stamps
//! frames (see [`sei`]), end-to-end latency.
//!
//! Entry point: [`run`]. The binary adds the progress line, table, JSON file
//! and exit code.
// `sys` is the one module allowed `unsafe` (recvmmsg and a socket option).
#![deny(unsafe_code)]

mod cli;
mod engine;
mod error;
pub mod repair;
mod report;
pub mod sei;
pub mod signaling;
pub mod stats;
pub mod swipe;
mod sys;
pub mod tcp;
pub mod viewer;

pub use cli::{Options, Protocol, Signaling};
pub use error::Error;
pub use report::{FailureKind, Report, RunFacts, ServerLatency, Tally};

use engine::{NewSession, Shared, SignalingJob};
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most signaling threads a run uses; each holds one HTTP request at a time.
const MAX_SIGNALING_THREADS: usize = 16;

/// Runs the whole load test and returns its report. Always returns by
/// [`Options::deadline`] after it starts (plus a second of teardown slack),
/// whatever the server does. Errors only for bad options or local set-up.
pub fn run(opts: &Options) -> Result<Report, Error> {
    opts.validate()?;
    let t0 = Instant::now();
    let deadline = t0 + opts.deadline();
    let cpu0 = cpu_seconds();
    let target = signaling::Target::parse(&opts.url, opts.signaling)?;
    let cert = rts_dtls::DtlsCert::generate()?;
    let ctx = engine::Contexts {
        client: rts_dtls::DtlsContext::new(&cert, rts_dtls::Role::Client)?,
        server: rts_dtls::DtlsContext::new(&cert, rts_dtls::Role::Server)?,
    };
    let wake_interval = Duration::from_micros(opts.wake_interval_us);
    let shared = Arc::new(Shared::default());

    let threads = opts.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let gro = !opts.no_gro;
    // Swipe mode: HTTP threads for the switch requests, enough for the
    // switch rate at ~100 ms per request.
    let swipe = match opts.switch_every {
        Some(every) => {
            let targets = Arc::new(opts.switch_targets()?);
            let (jobs, rx) = crossbeam_channel::unbounded();
            let n = ((opts.viewers as f64 / every / 10.0).ceil() as usize).clamp(2, MAX_SIGNALING_THREADS);
            for i in 0..n {
                let (rx, timeout) = (rx.clone(), Duration::from_secs_f64(opts.connect_timeout));
                // Detached like the signaling threads; each ends when the workers drop their senders.
                std::thread::Builder::new().name(format!("loadgen-sw{i}")).spawn(move || engine::switch_thread(rx, timeout))?;
            }
            Some(engine::SwipeLink { jobs, targets })
        }
        None => None,
    };
    let swipe_start = swipe.as_ref().and_then(|s| s.targets.iter().position(|t| t.app == target.app && t.stream == target.stream));
    let mut senders = Vec::new();
    let mut workers = Vec::new();
    for i in 0..threads {
        let (tx, rx) = crossbeam_channel::unbounded::<NewSession>();
        senders.push(tx);
        let (ctx, shared, swipe) = (ctx.clone(), shared.clone(), swipe.clone());
        workers.push(
            std::thread::Builder::new()
                .name(format!("loadgen-w{i}"))
                .spawn(move || engine::worker(rx, ctx, shared, deadline, wake_interval, gro, swipe))?,
        );
    }
    drop(swipe);

    // Enough signaling threads to keep up with the ramp at ~100 ms per request.
    let n_sig = ((opts.ramp / 10.0).ceil() as usize).clamp(2, MAX_SIGNALING_THREADS).min(opts.viewers.max(1) as usize);
    let next = Arc::new(AtomicU64::new(0));
    for i in 0..n_sig {
        let job = SignalingJob {
            opts: opts.clone(),
            target: target.clone(),
            fingerprint: cert.fingerprint_sha256(),
            t0,
            next: next.clone(),
            workers: senders.clone(),
            shared: shared.clone(),
            swipe_start,
        };
        // Detached: a thread stuck in HTTP is abandoned at the deadline, never joined.
        std::thread::Builder::new().name(format!("loadgen-sig{i}")).spawn(move || engine::signaling_thread(job))?;
    }
    drop(senders);

    let progress = !opts.quiet && std::io::stderr().is_terminal();
    let agent = signaling::agent(Duration::from_secs(2));
    let hold = Duration::from_secs_f64(opts.duration);
    let mut hit_deadline = false;
    let mut last_bytes = (t0, 0u64);
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = Instant::now();
        if progress && now >= last_bytes.0 + Duration::from_millis(500) {
            let b = shared.bytes.load(Relaxed);
            let kbps = (b - last_bytes.1) as f64 * 8.0 / 1000.0 / (now - last_bytes.0).as_secs_f64();
            last_bytes = (now, b);
            eprint!(
                "\r[{:6.1}s] connected {}/{}  failed {}  {:.0} kbit/s  stalls {}   ",
                (now - t0).as_secs_f64(),
                shared.connected.load(Relaxed),
                opts.viewers,
                shared.failed.load(Relaxed),
                kbps,
                shared.stalls.load(Relaxed)
            );
        }
        if now >= deadline {
            hit_deadline = true;
            break;
        }
        if shared.first_start.get().is_some_and(|f| now >= *f + hold) {
            break;
        }
        let signaling_over = shared.signaling_done.load(Relaxed) as usize == n_sig;
        if signaling_over && shared.active.load(Relaxed) <= 0 {
            break;
        }
    }
    // Server-side delay while the viewers are still attached (rts targets only).
    let server_latency_us = if shared.connected.load(Relaxed) > 0 && Instant::now() + Duration::from_secs(2) < deadline {
        signaling::server_latency(&agent, &target)
    } else {
        None
    };
    let hold_end = Instant::now();
    shared.stop.store(true, Relaxed);
    if progress {
        eprintln!();
    }

    let mut tally = Tally::default();
    for w in workers {
        if let Ok(Ok(t)) = w.join() {
            tally.merge(t);
        }
    }
    tally.merge(std::mem::take(&mut *shared.signaling_failures.lock().unwrap_or_else(|e| e.into_inner())));
    let locations = std::mem::take(&mut *shared.locations.lock().unwrap_or_else(|e| e.into_inner()));
    delete_all(locations, deadline);

    let hold_s = shared.first_start.get().map_or(0.0, |f| hold_end.saturating_duration_since(*f).as_secs_f64());
    let wall_s = t0.elapsed().as_secs_f64();
    let facts = RunFacts {
        opts,
        started: shared.started.load(Relaxed),
        wall_s,
        hold_s,
        cpu_s: cpu_seconds().zip(cpu0).map_or(0.0, |(b, a)| b - a),
        server_latency_us,
        hit_deadline,
    };
    Ok(Report::build(tally, &facts))
}

/// WHEP DELETE for every session, from a few threads, abandoned at the deadline.
fn delete_all(locations: Vec<String>, deadline: Instant) {
    if locations.is_empty() {
        return;
    }
    let chunks: Vec<Vec<String>> = locations.chunks(locations.len().div_ceil(8)).map(<[String]>::to_vec).collect();
    let (done_tx, done_rx) = crossbeam_channel::unbounded();
    let n = chunks.len();
    for chunk in chunks {
        let done = done_tx.clone();
        std::thread::spawn(move || {
            let agent = signaling::agent(Duration::from_secs(2));
            for l in chunk {
                if Instant::now() + Duration::from_secs(2) > deadline {
                    break;
                }
                signaling::delete(&agent, &l);
            }
            let _ = done.send(());
        });
    }
    for _ in 0..n {
        if done_rx.recv_deadline(deadline.max(Instant::now() + Duration::from_millis(100))).is_err() {
            break;
        }
    }
}

/// This process's user + system CPU time, from /proc/self/stat (USER_HZ is
/// 100 on Linux). Avoids `unsafe` getrusage; 10 ms resolution is plenty for
/// runs of seconds.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Writes the report as pretty JSON.
pub fn write_json(report: &impl serde::Serialize, path: &std::path::Path) -> std::io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    serde_json::to_writer_pretty(&mut f, report).map_err(std::io::Error::other)?;
    f.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    #[test]
    fn cpu_time_is_readable_and_monotonic() {
        let a = super::cpu_seconds().unwrap();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(super::cpu_seconds().unwrap() >= a);
    }
}
