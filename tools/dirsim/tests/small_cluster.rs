//! The directory simulation at CI size against a Redis of its own
//! (Debian's `redis-server`): 50 nodes, 5,000 streams (10 % also pulled),
//! 500 lookups/s for 3 s. Every expected figure is derived here from the
//! options, and the directory's content is read from Redis directly while
//! the simulation runs and after it, so a simulator that skipped work or
//! miscounted fails this test instead of passing its own check.

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NODES: u64 = 50;
const STREAMS: u64 = 5_000;
const PULLED: u64 = 500; // --pulled-share 0.1
const LOOKUPS_PER_S: u64 = 500;
const DURATION_S: u64 = 3;
/// Shorter than a real node's 1 s, with the TTL at 3 periods as there, so
/// the entries must be refreshed within the run to survive it.
const HEARTBEAT_MS: u64 = 500;
const TTL_MS: u64 = 1_500;

/// A child process killed and reaped when dropped, also when the test
/// fails half-way.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A fresh redis-server on a free loopback port, answering PING.
fn start_redis() -> Result<(Killed, String)> {
    let port = free_port()?;
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .context("redis-server (Debian package redis-server; scripts/install-test-deps.sh installs it)")?;
    let guard = Killed(child);
    let url = format!("redis://127.0.0.1:{port}");
    let client = redis::Client::open(url.as_str())?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut c) = client.get_connection_with_timeout(Duration::from_millis(200)) {
            if redis::cmd("PING").query::<String>(&mut c).is_ok() {
                return Ok((guard, url));
            }
        }
        ensure!(Instant::now() < deadline, "redis-server on port {port} did not answer");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn num(v: &Value, path: &str) -> f64 {
    path.split('.').fold(v, |v, k| &v[k]).as_f64().unwrap_or(f64::NAN)
}

#[test]
fn fifty_nodes_heartbeat_and_are_found_then_expire() -> Result<()> {
    let (_redis, url) = start_redis()?;
    let json = std::env::temp_dir().join(format!("rts-dirsim-{}.json", std::process::id()));
    let sim = Command::new(env!("CARGO_BIN_EXE_rts-dirsim"))
        .args(["--redis", &url, "--nodes", &NODES.to_string(), "--streams", &STREAMS.to_string(), "--pulled-share", "0.1"])
        .args(["--heartbeat-ms", &HEARTBEAT_MS.to_string(), "--ttl-ms", &TTL_MS.to_string(), "--lookups", &LOOKUPS_PER_S.to_string()])
        .args(["--duration", &DURATION_S.to_string(), "--threads", "2", "--expiry-sample", "5000", "--json"])
        .arg(&json)
        .stdout(Stdio::piped())
        .spawn()?;
    let mut sim = Killed(sim);

    // While it runs, Redis holds every node, every stream, and one member
    // per holder: read directly, not from the tool, once registered and
    // again more than a TTL later (so only refreshed entries count).
    let mut c = redis::Client::open(url.as_str())?.get_connection_with_timeout(Duration::from_secs(2))?;
    let deadline = Instant::now() + Duration::from_secs(DURATION_S);
    let (mut keys, mut own_commands) = (0, 0);
    while Instant::now() < deadline {
        keys = redis::cmd("DBSIZE").query::<u64>(&mut c)?;
        own_commands += 1;
        if keys == NODES + STREAMS + 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(keys, NODES + STREAMS + 1, "node hashes + stream sets + rts:nodes once registered");
    std::thread::sleep(Duration::from_millis(TTL_MS + 400));
    let keys: u64 = redis::cmd("DBSIZE").query(&mut c)?;
    own_commands += 1;
    assert_eq!(keys, NODES + STREAMS + 1, "node hashes + stream sets + rts:nodes a TTL later");
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64;
    let alive: Vec<String> = redis::cmd("ZRANGEBYSCORE").arg("rts:nodes").arg(now_ms).arg("+inf").query(&mut c)?;
    assert_eq!(alive.len() as u64, NODES, "alive nodes");
    let mut p = redis::pipe();
    for i in 0..STREAMS {
        p.cmd("ZCARD").arg(format!("rts:stream:live/s{i}"));
    }
    let cards: Vec<u64> = p.query(&mut c)?;
    own_commands += 1 + STREAMS;
    assert_eq!(cards.iter().sum::<u64>(), STREAMS + PULLED, "holder members: one per stream, two for the pulled ones");
    assert_eq!(cards.iter().filter(|&&n| n == 2).count() as u64, PULLED);

    let status = sim.0.wait()?;
    let mut out = String::new();
    if let Some(mut o) = sim.0.stdout.take() {
        std::io::Read::read_to_string(&mut o, &mut out)?;
    }
    println!("{out}");
    let text = std::fs::read_to_string(&json).with_context(|| format!("no report at {}; output:\n{out}", json.display()))?;
    let _ = std::fs::remove_file(&json);
    let r: Value = serde_json::from_str(&text)?;
    assert!(status.success(), "rts-dirsim exited {status}:\n{out}");

    // Exact counts from the options: every node heartbeats once per period
    // of the run (after registering once), every scheduled lookup runs.
    let heartbeats = NODES * DURATION_S * 1000 / HEARTBEAT_MS;
    let lookups = LOOKUPS_PER_S * DURATION_S;
    assert_eq!(num(&r, "heartbeats.registrations"), NODES as f64, "{text}");
    assert_eq!(num(&r, "heartbeats.done"), heartbeats as f64, "{text}");
    assert_eq!(num(&r, "heartbeats.failed"), 0.0, "{text}");
    assert_eq!(num(&r, "lookups.done"), lookups as f64, "{text}");
    assert_eq!(num(&r, "lookups.failed"), 0.0, "{text}");
    assert_eq!(num(&r, "lookups.missing_expected_holder"), 0.0, "{text}");
    let wall = num(&r, "wall_s");
    let rate = lookups as f64 / wall;
    assert!((rate - LOOKUPS_PER_S as f64).abs() <= 0.1 * LOOKUPS_PER_S as f64, "achieved {rate:.1} lookups/s over {wall:.2} s against {LOOKUPS_PER_S}");

    // Redis' own command count matches the directory schema: a heartbeat
    // is HSET, PEXPIRE, ZADD, ZREMRANGEBYSCORE and 2 per stream held; a
    // lookup 2 plus one HGETALL per holder (1 or 2 here); this test's own
    // reads above may fall in the measured phase too.
    let per_round = NODES * 4 + 2 * (STREAMS + PULLED);
    let hb_commands = per_round * DURATION_S * 1000 / HEARTBEAT_MS;
    let commands = num(&r, "redis.load.commands") as u64;
    let (low, high) = (hb_commands + 3 * lookups, hb_commands + 4 * lookups + own_commands + 10);
    assert!((low..=high).contains(&commands), "Redis counted {commands} commands, the schema says {low}..{high}");

    // After the TTL nothing is left but the nodes' sorted set (whose
    // members' scores are past: no node is alive).
    assert_eq!(r["expiry"]["passed"], Value::Bool(true), "{text}");
    let left: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut c)?;
    assert!(left == ["rts:nodes"], "{} keys left after the TTL, e.g. {:?}", left.len(), &left[..left.len().min(5)]);
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64;
    let alive: Vec<String> = redis::cmd("ZRANGEBYSCORE").arg("rts:nodes").arg(now_ms).arg("+inf").query(&mut c)?;
    assert!(alive.is_empty(), "nodes still alive after the TTL: {alive:?}");
    Ok(())
}
