//! Statistical tests of the model with fixed seeds.

use std::time::{Duration, Instant};

use crate::{Decision, DropReason, GilbertElliott, ImpairConfig, JitterDist, Model, RateLimit};

const N: usize = 100_000;

/// Feeds `n` packets of `len` bytes `gap` apart; returns (send time, decision) pairs.
fn run(
    cfg: ImpairConfig,
    seed: u64,
    n: usize,
    len: usize,
    gap: Duration,
) -> (Model, Vec<(Instant, Decision)>) {
    let mut m = Model::new(cfg, seed).unwrap();
    let t0 = Instant::now();
    let out = (0..n)
        .map(|i| {
            let now = t0 + gap * i as u32;
            (now, m.on_datagram(now, len))
        })
        .collect();
    (m, out)
}

#[test]
fn default_is_transparent() {
    let (m, out) = run(
        ImpairConfig::default(),
        1,
        1000,
        100,
        Duration::from_millis(1),
    );
    assert!(ImpairConfig::default().is_transparent());
    for (now, d) in out {
        assert_eq!(
            d,
            Decision::Deliver {
                at: now,
                duplicate_at: None
            }
        );
    }
    assert_eq!(m.stats().delivered, 1000);
}

#[test]
fn random_loss_converges() {
    let cfg = ImpairConfig {
        loss: 0.05,
        ..Default::default()
    };
    let (m, _) = run(cfg, 42, N, 100, Duration::from_millis(1));
    let ratio = m.stats().dropped_random as f64 / N as f64;
    assert!((0.04..=0.06).contains(&ratio), "loss {ratio}");
    assert_eq!(m.stats().delivered + m.stats().dropped(), N as u64);
}

#[test]
fn same_seed_same_decisions() {
    let cfg = ImpairConfig {
        loss: 0.2,
        jitter: Duration::from_millis(5),
        delay: Duration::from_millis(10),
        ..Default::default()
    };
    let (_, a) = run(cfg, 9, 1000, 100, Duration::from_millis(1));
    let (_, b) = run(cfg, 9, 1000, 100, Duration::from_millis(1));
    let (_, c) = run(cfg, 10, 1000, 100, Duration::from_millis(1));
    // Compare relative times since each run has its own t0.
    let rel = |v: &Vec<(Instant, Decision)>| -> Vec<Option<Duration>> {
        v.iter()
            .map(|(now, d)| match d {
                Decision::Deliver { at, .. } => Some(*at - *now),
                _ => None,
            })
            .collect()
    };
    assert_eq!(rel(&a), rel(&b));
    assert_ne!(rel(&a), rel(&c));
}

#[test]
fn gilbert_elliott_burst_length_is_one_over_r() {
    let (p, r) = (0.01, 0.25);
    let cfg = ImpairConfig {
        burst: Some(GilbertElliott::simple(p, r)),
        ..Default::default()
    };
    let (m, out) = run(cfg, 7, N, 100, Duration::from_millis(1));
    let lost: Vec<bool> = out
        .iter()
        .map(|(_, d)| matches!(d, Decision::Drop(DropReason::Burst)))
        .collect();
    let mut bursts = Vec::new();
    let mut cur = 0usize;
    for &l in &lost {
        if l {
            cur += 1;
        } else if cur > 0 {
            bursts.push(cur);
            cur = 0;
        }
    }
    let mean = bursts.iter().sum::<usize>() as f64 / bursts.len() as f64;
    assert!(
        (mean - 1.0 / r).abs() < 0.4,
        "mean burst {mean}, want {}",
        1.0 / r
    );
    let ratio = m.stats().dropped_burst as f64 / N as f64;
    let stationary = p / (p + r);
    assert!(
        (ratio - stationary).abs() < 0.01,
        "loss {ratio}, want {stationary}"
    );
}

#[test]
fn gilbert_elliott_partial_loss_in_states() {
    // Bad state loses half, good state loses 1 %: overall = π_b·0.5 + π_g·0.01.
    let ge = GilbertElliott {
        p: 0.05,
        r: 0.05,
        h: 0.99,
        k: 0.5,
    };
    let cfg = ImpairConfig {
        burst: Some(ge),
        ..Default::default()
    };
    let (m, _) = run(cfg, 3, N, 100, Duration::from_millis(1));
    let ratio = m.stats().dropped_burst as f64 / N as f64;
    assert!((ratio - 0.255).abs() < 0.03, "{ratio}");
}

#[test]
fn token_bucket_never_exceeds_rate() {
    let rate = RateLimit {
        bytes_per_sec: 125_000,
        burst_bytes: 3000,
        queue_bytes: 25_000,
    };
    let cfg = ImpairConfig {
        rate: Some(rate),
        ..Default::default()
    };
    // 1200-byte packets every 4 ms = 300 kB/s offered into a 125 kB/s link: must queue and drop.
    let (m, out) = run(cfg, 1, 5000, 1200, Duration::from_millis(4));
    let mut sent: Vec<(Instant, u64)> = out
        .iter()
        .filter_map(|(now, d)| match d {
            Decision::Deliver { at, .. } => {
                // Queueing delay bounded by queue / rate (+ one packet).
                assert!(*at - *now <= Duration::from_millis(210), "{:?}", *at - *now);
                Some((*at, 1200))
            }
            _ => None,
        })
        .collect();
    sent.sort();
    for i in 0..sent.len() {
        let mut bytes = 0u64;
        for j in i..sent.len() {
            bytes += sent[j].1;
            let w = (sent[j].0 - sent[i].0).as_secs_f64();
            let allowed = rate.burst_bytes as f64 + rate.bytes_per_sec as f64 * w + 1.0;
            assert!(
                bytes as f64 <= allowed,
                "window {w}s carried {bytes} > {allowed}"
            );
        }
    }
    let span = (sent.last().unwrap().0 - sent[0].0).as_secs_f64();
    let throughput = (sent.len() as f64 - 1.0) * 1200.0 / span;
    assert!(
        throughput > 0.97 * 125_000.0,
        "link underused: {throughput}"
    );
    assert!(m.stats().dropped_queue > 2000, "{:?}", m.stats());
}

#[test]
fn token_bucket_passes_under_rate_untouched() {
    let rate = RateLimit::from_kbps(10_000);
    let cfg = ImpairConfig {
        rate: Some(rate),
        ..Default::default()
    };
    let (m, out) = run(cfg, 1, 1000, 1000, Duration::from_millis(2)); // 4 Mbit/s
    assert_eq!(m.stats().dropped(), 0);
    for (now, d) in out {
        assert_eq!(
            d,
            Decision::Deliver {
                at: now,
                duplicate_at: None
            }
        );
    }
}

fn delays(out: &[(Instant, Decision)]) -> Vec<f64> {
    out.iter()
        .filter_map(|(now, d)| match d {
            Decision::Deliver { at, .. } => Some((*at - *now).as_secs_f64() * 1000.0),
            _ => None,
        })
        .collect()
}

#[test]
fn uniform_jitter_bounds_and_reordering() {
    let cfg = ImpairConfig {
        delay: Duration::from_millis(50),
        jitter: Duration::from_millis(10),
        ..Default::default()
    };
    let (_, out) = run(cfg, 5, N, 100, Duration::from_millis(2));
    let d = delays(&out);
    assert!(d.iter().all(|&x| (40.0..=60.0).contains(&x)));
    let mean = d.iter().sum::<f64>() / d.len() as f64;
    assert!((mean - 50.0).abs() < 0.2, "{mean}");
    // Jitter (±10 ms) > packet interval (2 ms): later packets overtake earlier ones.
    let ats: Vec<Instant> = out
        .iter()
        .filter_map(|(_, d)| match d {
            Decision::Deliver { at, .. } => Some(*at),
            _ => None,
        })
        .collect();
    let inversions = ats.windows(2).filter(|w| w[1] < w[0]).count();
    assert!(inversions > N / 10, "{inversions}");
}

#[test]
fn normal_jitter_std_and_clip() {
    let cfg = ImpairConfig {
        delay: Duration::from_millis(100),
        jitter: Duration::from_millis(10),
        jitter_dist: JitterDist::Normal,
        ..Default::default()
    };
    let (_, out) = run(cfg, 5, N, 100, Duration::from_millis(2));
    let d = delays(&out);
    assert!(d.iter().all(|&x| (70.0..=130.0).contains(&x)));
    let mean = d.iter().sum::<f64>() / d.len() as f64;
    let sd = (d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / d.len() as f64).sqrt();
    assert!(
        (mean - 100.0).abs() < 0.2 && (sd - 10.0).abs() < 0.3,
        "{mean} {sd}"
    );
}

#[test]
fn jitter_never_delivers_before_arrival() {
    let cfg = ImpairConfig {
        delay: Duration::from_millis(2),
        jitter: Duration::from_millis(10),
        ..Default::default()
    };
    let (_, out) = run(cfg, 5, 10_000, 100, Duration::from_millis(1));
    assert!(delays(&out).iter().all(|&x| (0.0..=12.0).contains(&x)));
}

#[test]
fn explicit_reorder_holds_packets_back() {
    let cfg = ImpairConfig {
        reorder: 0.01,
        reorder_gap: Duration::from_millis(20),
        ..Default::default()
    };
    let (m, out) = run(cfg, 11, N, 100, Duration::from_millis(1));
    let r = m.stats().reordered as f64 / N as f64;
    assert!((0.008..=0.012).contains(&r), "{r}");
    let held = delays(&out)
        .iter()
        .filter(|&&x| (x - 20.0).abs() < 1e-6)
        .count();
    assert_eq!(held as u64, m.stats().reordered);
}

#[test]
fn duplication_count() {
    let cfg = ImpairConfig {
        duplicate: 0.01,
        delay: Duration::from_millis(5),
        ..Default::default()
    };
    let (m, out) = run(cfg, 13, N, 100, Duration::from_millis(1));
    let dups = out
        .iter()
        .filter(|(_, d)| {
            matches!(
                d,
                Decision::Deliver {
                    duplicate_at: Some(_),
                    ..
                }
            )
        })
        .count();
    assert_eq!(dups as u64, m.stats().duplicated);
    assert!((800..=1200).contains(&dups), "{dups}");
}

#[test]
fn invalid_configs_rejected_and_specs_parse() {
    assert!(Model::new(
        ImpairConfig {
            loss: 1.5,
            ..Default::default()
        },
        1
    )
    .is_err());
    assert!(Model::new(
        ImpairConfig {
            rate: Some(RateLimit {
                bytes_per_sec: 0,
                burst_bytes: 0,
                queue_bytes: 0
            }),
            ..Default::default()
        },
        1
    )
    .is_err());
    let c = ImpairConfig::from_spec("loss=5 burst=1,25 delay-ms=20 jitter-ms=10 jitter=normal dup=1 reorder=2 rate-kbps=3000 queue-ms=50").unwrap();
    assert_eq!(c.loss, 0.05);
    assert_eq!(c.burst, Some(GilbertElliott::simple(0.01, 0.25)));
    assert_eq!(c.delay, Duration::from_millis(20));
    assert_eq!(c.jitter_dist, JitterDist::Normal);
    assert_eq!(c.rate.unwrap().bytes_per_sec, 375_000);
    assert_eq!(c.rate.unwrap().queue_bytes, 18_750);
    assert!(ImpairConfig::from_spec("loss=x").is_err());
    assert!(ImpairConfig::from_spec("nope=1").is_err());
    assert!(ImpairConfig::from_spec("burst=1").is_err());
    assert!(ImpairConfig::from_spec("delay-ms=-3").is_err());
}

#[test]
fn drop_runs_lose_exactly_n_consecutive_datagrams_every_interval() {
    let cfg = ImpairConfig::from_spec("drop-run=60,1000").unwrap();
    // 250 datagrams per second for 3.5 s.
    let (m, out) = run(cfg, 7, 875, 1200, Duration::from_millis(4));
    let lost: Vec<usize> = out
        .iter()
        .enumerate()
        .filter(|(_, (_, d))| matches!(d, Decision::Drop(DropReason::Run)))
        .map(|(i, _)| i)
        .collect();
    // Runs start at 1 s, 2 s, 3 s: datagrams 250.., 500.., 750.., 60 each.
    let expected: Vec<usize> = [250, 500, 750].iter().flat_map(|&s| s..s + 60).collect();
    assert_eq!(lost, expected);
    assert_eq!(m.stats().dropped_run, 180);
    assert_eq!(m.stats().dropped(), 180);
    assert!(ImpairConfig::from_spec("drop-run=60,0").is_err());
    assert!(ImpairConfig::from_spec("drop-run=60").is_err());
}
