//! Cluster mode end to end (issue 14, decision 022): a real Redis
//! (Debian's redis-server) and several rts nodes side by side in one
//! network namespace, each on its own address (10.200.0.11, .12, .13 on
//! the veth): every listener, the UDP media ports and the shm region are
//! the node's own.
//!
//! - three nodes: publish to A, 300 loadgen viewers at B, Chromium at C;
//!   the extra latency of the hop measured against viewers of A (SEI);
//! - capacity: B takes 100 viewers and redirects the rest to C;
//! - failures: Redis down and back, the origin killed (viewers resume when
//!   the publisher comes back on another node), an edge killed (the other
//!   edge's viewers do not notice).

mod common;

use anyhow::{bail, ensure, Context, Result};
use common::{enter_fresh_netns, wait_for_tcp, Chromium, NetNs, ServerProcess};
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// One cluster test at a time: each runs several servers, a publisher and
/// hundreds of viewers on a 2-core box.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

const REDIS: &str = "10.200.0.1:6379";
/// A Chrome offer (H.264, Opus, a data channel), recvonly, for raw signaling requests.
const OFFER: &str = include_str!("../proto/sdp/tests/fixtures/chrome_av_datachannel_recvonly.sdp");

struct Node {
    name: &'static str,
    ip: String,
    config: PathBuf,
    shm: PathBuf,
    server: Option<ServerProcess>,
}

impl Node {
    fn http(&self) -> String {
        format!("http://{}:8080", self.ip)
    }

    fn rtmp(&self, path: &str) -> String {
        format!("rtmp://{}:1935/{path}", self.ip)
    }

    fn start(&mut self) -> Result<()> {
        let cfg = self.config.to_str().context("utf-8 path")?.to_string();
        let mut s = ServerProcess::start(&["--config", &cfg, "serve"], &[("RUST_LOG", "info")])?;
        s.wait_for_tcp(format!("{}:1935", self.ip).parse()?, Duration::from_secs(20))?;
        s.wait_for_log("control listening", Duration::from_secs(20))?;
        s.wait_for_log("cluster directory: registered", Duration::from_secs(10))?;
        self.server = Some(s);
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut s) = self.server.take() {
            s.kill();
        }
        let _ = std::fs::remove_file(&self.shm);
    }

    fn logs(&self) -> String {
        self.server.as_ref().map(|s| s.logs().tail(40)).unwrap_or_default()
    }

    fn api(&self) -> Result<Value> {
        let body = ureq::get(&format!("{}/api/v1/streams", self.http())).timeout(Duration::from_secs(5)).call()?.into_string()?;
        Ok(serde_json::from_str(&body)?)
    }

    fn stream(&self, app: &str, stream: &str) -> Result<Option<Value>> {
        let api = self.api()?;
        Ok(api["streams"].as_array().and_then(|a| a.iter().find(|s| s["app"] == app && s["stream"] == stream)).cloned())
    }

    /// Waits until the node has app/stream live (published or pulled).
    fn wait_live(&self, app: &str, stream: &str, timeout: Duration) -> Result<()> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if self.stream(app, stream)?.is_some_and(|s| s["publishing"] == true) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("{app}/{stream} not live on {} after {timeout:?}; logs:\n{}", self.name, self.logs())
    }

    fn counter(&self, key: &str) -> Result<u64> {
        let api = self.api()?;
        let shards = api["shards"].as_array().context("no shards")?;
        shards.iter().map(|s| s["counters"][key].as_u64().with_context(|| format!("no counter {key}"))).sum()
    }

    /// WebRTC sessions this node holds.
    fn sessions(&self) -> Result<usize> {
        let body = ureq::get(&format!("{}/api/v1/sessions", self.http())).timeout(Duration::from_secs(5)).call()?.into_string()?;
        let v: Value = serde_json::from_str(&body)?;
        Ok(v["sessions"].as_array().map_or(0, |a| a.len()))
    }
}

struct Cluster {
    dir: PathBuf,
    nodes: Vec<Node>,
    redis: Option<ServerProcess>,
    _ns: NetNs,
    _serial: std::sync::MutexGuard<'static, ()>,
}

impl Cluster {
    /// Redis and nodes `names` ("a" -> 10.200.0.11, ...), each with its
    /// `[cluster]` lines `extra(name)`.
    fn start(names: &[&'static str], extra: impl Fn(&str) -> String) -> Result<Cluster> {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let ns = enter_fresh_netns()?;
        let id = format!("{}-{:x}", std::process::id(), rand::random::<u32>());
        let dir = std::env::temp_dir().join(format!("rts-cluster-{id}"));
        std::fs::create_dir_all(&dir)?;
        let mut c = Cluster { dir, nodes: Vec::new(), redis: None, _ns: ns, _serial: serial };
        c.start_redis()?;
        for (i, &name) in names.iter().enumerate() {
            let ip = format!("10.200.0.{}", 11 + i);
            common::netns::run_ip(&["addr", "add", &format!("{ip}/24"), "dev", "rtsv0"])?;
            let shm = PathBuf::from(format!("/dev/shm/rts-cluster-{id}-{name}"));
            let config = c.dir.join(format!("{name}.toml"));
            let text = format!(
                "[rtmp]\nlisten = \"{ip}:1935\"\n\
                 [http]\nlisten = \"{ip}:8080\"\nmedia_listen = \"{ip}:8088\"\n\
                 [https]\nlisten = \"{ip}:8443\"\nmedia_listen = \"{ip}:8444\"\n\
                 [admin]\nlisten = \"{ip}:8081\"\n\
                 [webrtc]\ncandidate_ip = \"{ip}\"\nudp_bind_ip = \"{ip}\"\n\
                 [dataplane]\nshm_path = \"{}\"\nshards = {}\n\
                 [billing]\npath = \"{}\"\ninterval_s = 1\n\
                 [cluster]\nredis = \"redis://{REDIS}\"\nnode_id = \"{name}\"\nheartbeat_ms = 300\nttl_ms = 1200\npull_linger_s = 3\n{}\n",
                shm.display(),
                if name == "b" { 2 } else { 1 },
                c.dir.join(format!("usage-{name}")).display(),
                extra(name)
            );
            std::fs::write(&config, text)?;
            c.nodes.push(Node { name, ip, config, shm, server: None });
        }
        for n in &mut c.nodes {
            n.start()?;
        }
        Ok(c)
    }

    fn start_redis(&mut self) -> Result<()> {
        let s = ServerProcess::start_program("redis-server", &["--bind", "10.200.0.1", "--port", "6379", "--save", "", "--appendonly", "no", "--protected-mode", "no"], &[])
            .context("redis-server (Debian package redis-server; scripts/install-test-deps.sh installs it)")?;
        wait_for_tcp(REDIS.parse()?, Duration::from_secs(10))?;
        self.redis = Some(s);
        Ok(())
    }

    fn node(&self, name: &str) -> &Node {
        self.nodes.iter().find(|n| n.name == name).expect("node")
    }

    fn node_mut(&mut self, name: &str) -> &mut Node {
        self.nodes.iter_mut().find(|n| n.name == name).expect("node")
    }

    fn logs(&self) -> String {
        self.nodes.iter().map(|n| format!("--- {}\n{}", n.name, n.logs())).collect::<Vec<_>>().join("\n")
    }

    /// A Redis command's reply (redis-cli), as lines.
    fn redis(&self, args: &[&str]) -> Result<Vec<String>> {
        let out = std::process::Command::new("redis-cli").args(["-h", "10.200.0.1", "-p", "6379"]).args(args).output()?;
        ensure!(out.status.success(), "redis-cli {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        Ok(String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.is_empty()).map(str::to_string).collect())
    }

    /// The directory's live holders of `key` (`node;hop;upstream`).
    fn holders(&self, key: &str) -> Result<Vec<String>> {
        let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis().to_string();
        let mut v = self.redis(&["ZRANGEBYSCORE", &format!("rts:stream:{key}"), &now_ms, "+inf"])?;
        v.sort();
        Ok(v)
    }

    fn wait_holders(&self, key: &str, want: &[&str], timeout: Duration) -> Result<()> {
        let end = Instant::now() + timeout;
        loop {
            let got = self.holders(key)?;
            if got == want {
                return Ok(());
            }
            if Instant::now() > end {
                bail!("holders of {key}: {got:?}, want {want:?}\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.kill();
        }
        if let Some(mut r) = self.redis.take() {
            r.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// rts-publish (H.264 with a wall-clock SEI on every frame) to `url` for
/// `secs`, on a thread of this namespace.
fn publish(url: &str, secs: f64) -> std::thread::JoinHandle<Result<rts_publish::publisher::Summary, rts_publish::PublishError>> {
    let o = rts_publish::publisher::Options {
        url: url.to_string(),
        width: 640,
        height: 360,
        fps: 30,
        gop: 30,
        bitrate: "600k".into(),
        duration: Some(secs),
        ffmpeg: "ffmpeg".into(),
        sei_every: 1,
        preset: "ultrafast".into(),
    };
    std::thread::spawn(move || rts_publish::publisher::run(&o))
}

fn viewers(url: &str, n: u64, secs: f64, verify_share: f64) -> std::thread::JoinHandle<Result<rts_loadgen::Report, rts_loadgen::Error>> {
    let mut o = rts_loadgen::Options::new(url);
    o.viewers = n;
    o.ramp = 100.0;
    o.duration = secs;
    o.verify_share = verify_share;
    o.quiet = true;
    std::thread::spawn(move || rts_loadgen::run(&o))
}

fn report(h: std::thread::JoinHandle<Result<rts_loadgen::Report, rts_loadgen::Error>>) -> Result<rts_loadgen::Report> {
    h.join().map_err(|_| anyhow::anyhow!("loadgen panicked"))?.map_err(|e| anyhow::anyhow!("loadgen: {e}"))
}

fn p50(r: &rts_loadgen::Report) -> Result<f64> {
    Ok(r.e2e_latency_ms.as_ref().context("no SEI latency in the report")?.p50)
}

/// Issue 14's first "done when": origin A, 300 viewers at edge B, Chromium
/// at edge C; all connected, loss < 0.1 %, the hop adds < 20 ms.
#[test]
fn three_nodes_one_publisher_viewers_on_two_edges() -> Result<()> {
    let c = Cluster::start(&["a", "b", "c"], |n| if n == "a" { "redirect_target = false".into() } else { String::new() })?;
    let (a, b, cn) = (c.node("a"), c.node("b"), c.node("c"));
    let publisher = publish(&a.rtmp("live/s"), 40.0);
    a.wait_live("live", "s", Duration::from_secs(20))?;
    c.wait_holders("live/s", &["a;0;"], Duration::from_secs(3))?;

    // An HTTP-FLV viewer at C first: C has no stream, the viewer waits
    // while C pulls it from A, then gets the GOP and live tags.
    let flv = flv_read(&format!("{}:8088", cn.ip), "/live/s.flv", 150_000, Duration::from_secs(8))?;
    let (tags, _) = rts_rtmp::flv::file::read_file(&bytes::Bytes::from(flv));
    assert!(tags.iter().any(|t| t.tag_type == 9 && t.body.first() == Some(&0x17) && t.body.get(1) == Some(&1)), "a keyframe through C's pull: {} tags\n{}", tags.len(), c.logs());

    // Chromium at C through the web player: the same pull.
    let mut chrome = Chromium::launch()?;
    chrome.navigate(&format!("{}/play/live/s", cn.http()))?;
    chrome
        .wait_for("window.rts && (await window.rts.stats()).framesDecoded >= 60", Duration::from_secs(30))
        .with_context(|| format!("Chromium at C decoded no frames\n{}", c.logs()))?;

    // 300 viewers at B (the first pulls the stream; the others share the
    // pull) and 20 at A side by side for the latency baseline.
    let at_b = viewers(&format!("{}/whep/live/s", b.http()), 300, 15.0, 0.1);
    let at_a = viewers(&format!("{}/whep/live/s", a.http()), 20, 15.0, 1.0);
    let (rb, ra) = (report(at_b)?, report(at_a)?);
    println!("B: {}\nA: {}", rb.summary_table(), ra.summary_table());
    let jb = serde_json::to_value(&rb)?;
    assert_eq!(rb.viewers_connected, 300, "{jb:#}\n{}", c.logs());
    assert_eq!(rb.viewers_failed, 0, "{jb:#}");
    assert!(rb.loss_ratio < 0.001, "loss at B {}: {jb:#}", rb.loss_ratio);
    assert!(rb.frames_decoded > 0 && ra.frames_decoded > 0);
    let hop = p50(&rb)? - p50(&ra)?;
    println!("extra latency of one hop (p50 B - p50 A): {hop:.2} ms (A {:.2} ms, B {:.2} ms)", p50(&ra)?, p50(&rb)?);
    assert!(hop < 20.0, "one hop adds {hop:.2} ms");

    // One pull per edge, whatever its viewers and shards.
    c.wait_holders("live/s", &["a;0;", "b;1;a", "c;1;a"], Duration::from_secs(3))?;
    assert_eq!(a.counter("relays_served")?, 2, "A served one pull to B and one to C");
    assert_eq!(b.counter("pulls_started")?, 1);
    let cl = &b.api()?["cluster"];
    assert_eq!((cl["node"].as_str(), cl["directory_up"].as_bool()), (Some("b"), Some(true)), "{cl}");
    assert_eq!(cl["pulls"], serde_json::json!([{ "stream": "live/s", "from": "a", "live": true }]));
    assert!(metrics(b)?.contains("rts_cluster_pulls{state=\"live\"} 1\n"));
    let frames = chrome.eval("(async () => (await window.rts.stats()).framesDecoded)()")?.as_u64().unwrap_or(0);
    assert!(frames > 300, "Chromium at C kept playing: {frames} frames");
    assert_eq!(c.node("c").counter("pulls_started")?, 1, "the FLV viewer and Chromium at C share one pull");

    // The viewers leave (the player DELETEs its session); the edges stop
    // pulling after the linger (3 s).
    chrome.eval("(async () => await window.rts.stop())()")?;
    drop(chrome);
    let end = Instant::now() + Duration::from_secs(12);
    while b.counter("pulls_ended")? < 1 || cn.counter("pulls_ended")? < 1 {
        ensure!(Instant::now() < end, "pulls still running 12 s after the last viewer left\n{}", c.logs());
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(1500)); // the shards' next totals
    // Pull traffic is billed as relay on both ends: what A wrote to the
    // edges' pulls is what they read (bytes in flight at the stop aside),
    // their requests are what A read.
    let relay = |n: &Node| -> Result<(u64, u64)> {
        let body = ureq::get(&format!("http://{}:8081/api/v1/usage", n.ip)).call()?.into_string()?;
        let v: Value = serde_json::from_str(&body)?;
        let rows = v["usage"].as_array().context("usage rows")?;
        Ok(rows.iter().filter(|r| r["protocol"] == "relay").fold((0, 0), |(i, o), r| (i + r["bytes_in"].as_u64().unwrap_or(0), o + r["bytes_out"].as_u64().unwrap_or(0))))
    };
    let (ra, rb, rc) = (relay(a)?, relay(b)?, relay(cn)?);
    println!("relay bytes (in, out): A {ra:?} B {rb:?} C {rc:?}");
    assert!(ra.1 > 500_000, "A sent the edges {} bytes", ra.1);
    assert_eq!(ra.0, rb.1 + rc.1, "the pulls' requests");
    let read = (rb.0 + rc.0) as f64;
    assert!((ra.1 as f64 - read).abs() <= ra.1 as f64 * 0.02, "A wrote {} to the pulls, they read {read}", ra.1);
    drop(publisher);
    Ok(())
}

/// B takes 100 viewers; the next 150 asked of B go to C (307, followed by
/// the loadgen), none fails.
#[test]
fn a_node_at_capacity_redirects_to_one_with_room() -> Result<()> {
    let c = Cluster::start(&["a", "b", "c"], |n| match n {
        "a" => "redirect_target = false".into(),
        "b" => "capacity_viewers = 100".into(),
        _ => String::new(),
    })?;
    let (a, b, cn) = (c.node("a"), c.node("b"), c.node("c"));
    let _publisher = publish(&a.rtmp("live/s"), 40.0);
    a.wait_live("live", "s", Duration::from_secs(20))?;
    let h = viewers(&format!("{}/whep/live/s", b.http()), 250, 20.0, 0.05);
    // Counted while they play.
    std::thread::sleep(Duration::from_secs(8));
    let (on_b, on_c, on_a) = (b.sessions()?, cn.sessions()?, a.sessions()?);
    assert_eq!((on_b, on_c, on_a), (100, 150, 0), "sessions on B, C and A (A takes no redirects)\n{}", c.logs());
    // The web player follows the redirect too (fetch repeats the POST on
    // C; the session resource is C's).
    let mut chrome = Chromium::launch()?;
    chrome.navigate(&format!("{}/play/live/s", b.http()))?;
    chrome
        .wait_for("window.rts && (await window.rts.stats()).framesDecoded >= 30", Duration::from_secs(30))
        .with_context(|| format!("the player redirected from B decoded no frames: {:?}\n{}", chrome.console(), c.logs()))?;
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!((b.sessions()?, cn.sessions()?), (100, 151), "the browser plays from C");
    let r = report(h)?;
    let j = serde_json::to_value(&r)?;
    assert_eq!(r.viewers_connected, 250, "{j:#}\n{}", c.logs());
    assert_eq!(r.viewers_failed, 0, "{j:#}");
    Ok(())
}

/// Redis goes away: nodes keep serving what they have, a stream only
/// another node has cannot be looked up (503 with the reason); Redis comes
/// back: the nodes register again and the lookup works.
#[test]
fn redis_down_keeps_what_is_served_and_refuses_new_lookups() -> Result<()> {
    let mut c = Cluster::start(&["a", "b"], |_| String::new())?;
    let _s = publish(&c.node("a").rtmp("live/s"), 40.0);
    let _t = publish(&c.node("a").rtmp("live/t"), 40.0);
    c.node("a").wait_live("live", "s", Duration::from_secs(20))?;
    c.node("a").wait_live("live", "t", Duration::from_secs(20))?;
    c.wait_holders("live/t", &["a;0;"], Duration::from_secs(3))?;
    let watching = viewers(&format!("{}/whep/live/s", c.node("b").http()), 10, 14.0, 1.0);
    c.node("b").wait_live("live", "s", Duration::from_secs(10))?;

    assert!(metrics(c.node("b"))?.contains("rts_cluster_directory_up 1\n"));
    if let Some(mut r) = c.redis.take() {
        r.kill();
    }
    std::thread::sleep(Duration::from_secs(1));
    assert!(metrics(c.node("b"))?.contains("rts_cluster_directory_up 0\n"), "a failed heartbeat shows");
    // live/t is only on A: B cannot find it.
    let probe = rts_loadgen::Options { viewers: 1, duration: 2.0, quiet: true, ..rts_loadgen::Options::new(&format!("{}/whep/live/t", c.node("b").http())) };
    let r = rts_loadgen::run(&probe).map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(r.viewers_connected, 0, "no lookup without Redis");
    assert_eq!(r.failures.get("http_5xx").copied(), Some(1), "a 503: {:?}", r.failures);
    let status = ureq::post(&format!("{}/whep/live/t", c.node("b").http())).set("Content-Type", "application/sdp").send_string(OFFER);
    match status {
        Err(ureq::Error::Status(503, resp)) => {
            let body = resp.into_string()?;
            assert!(body.contains("cluster directory unavailable"), "{body}");
        }
        other => bail!("expected 503, got {other:?}"),
    }

    c.start_redis()?;
    c.wait_holders("live/t", &["a;0;"], Duration::from_secs(5))?;
    // A's heartbeat is back (its records above); B's own comes within its
    // next heartbeats, not necessarily before A's.
    wait_metric(c.node("b"), "rts_cluster_directory_up 1\n", Duration::from_secs(5))?;
    let later = viewers(&format!("{}/whep/live/t", c.node("b").http()), 3, 4.0, 1.0);
    let rl = report(later)?;
    assert_eq!(rl.viewers_connected, 3, "{}", c.logs());
    assert!(rl.frames_decoded > 0);

    // The viewers of live/s at B never noticed.
    let rw = report(watching)?;
    let j = serde_json::to_value(&rw)?;
    assert_eq!(rw.viewers_connected, 10, "{j:#}");
    assert!(rw.loss_ratio < 0.001 && rw.stall_count == 0, "{j:#}");
    Ok(())
}

/// The origin dies: B's viewers lose the stream; the publisher comes back
/// on C: B pulls from C and its viewers play again, in the same sessions.
/// Then edge B dies: C's own viewers do not notice, and B leaves the
/// directory within the TTL.
#[test]
fn origin_or_edge_killed() -> Result<()> {
    let mut c = Cluster::start(&["a", "b", "c"], |_| String::new())?;
    let first = publish(&c.node("a").rtmp("live/s"), 60.0);
    c.node("a").wait_live("live", "s", Duration::from_secs(20))?;
    let t0 = Instant::now();
    let at_b = viewers(&format!("{}/whep/live/s", c.node("b").http()), 10, 22.0, 1.0);
    c.node("b").wait_live("live", "s", Duration::from_secs(10))?;
    std::thread::sleep(Duration::from_secs(3));
    let frames_before = c.node("b").stream("live", "s")?.context("stream on B")?["stats"]["video_frames"].as_u64().unwrap_or(0);
    c.node_mut("a").kill();
    let _ = first.join();
    // B's pull ends; its viewers' sessions stay.
    let end = Instant::now() + Duration::from_secs(5);
    while c.node("b").stream("live", "s")?.is_some_and(|s| s["publishing"] == true) {
        ensure!(Instant::now() < end, "B still says live/s is live\n{}", c.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
    let gone_at = t0.elapsed();
    let _second = publish(&c.node("c").rtmp("live/s"), 30.0);
    c.node("c").wait_live("live", "s", Duration::from_secs(20))?;
    c.node("b").wait_live("live", "s", Duration::from_secs(5))?;
    let back_at = t0.elapsed();
    c.wait_holders("live/s", &["b;1;c", "c;0;"], Duration::from_secs(3))?;
    assert_eq!(c.node("b").sessions()?, 10, "the sessions lived through it");
    let r = report(at_b)?;
    let j = serde_json::to_value(&r)?;
    assert_eq!(r.viewers_connected, 10, "{j:#}");
    // Frames before the gap and after it: at 30 fps, most of both spans.
    let playing = (gone_at.as_secs_f64() - 1.0) + (22.0 - back_at.as_secs_f64());
    let per_viewer = r.frames_decoded as f64 / 10.0;
    assert!(per_viewer > 30.0 * playing * 0.7, "{per_viewer} frames per viewer in {playing:.1} s of playing time (gap {gone_at:?}..{back_at:?}); before the kill B had {frames_before}: {j:#}");

    // Edge B dies; C's own viewers carry on.
    let at_c = viewers(&format!("{}/whep/live/s", c.node("c").http()), 10, 8.0, 1.0);
    std::thread::sleep(Duration::from_secs(2));
    c.node_mut("b").kill();
    let killed = Instant::now();
    c.wait_holders("live/s", &["c;0;"], Duration::from_secs(3))?;
    let left_after = killed.elapsed();
    assert!(left_after < Duration::from_millis(1200 + 500), "B left the directory {left_after:?} after its death (TTL 1.2 s)");
    let rc = report(at_c)?;
    let j = serde_json::to_value(&rc)?;
    assert_eq!(rc.viewers_connected, 10, "{j:#}");
    assert!(rc.loss_ratio < 0.001 && rc.stall_count == 0, "C's viewers noticed B's death: {j:#}");
    Ok(())
}

fn metrics(n: &Node) -> Result<String> {
    Ok(ureq::get(&format!("{}/metrics", n.http())).timeout(Duration::from_secs(5)).call()?.into_string()?)
}

/// Waits until `n`'s `/metrics` holds `line`.
fn wait_metric(n: &Node, line: &str, timeout: Duration) -> Result<()> {
    let end = std::time::Instant::now() + timeout;
    loop {
        let text = metrics(n)?;
        if text.contains(line) {
            return Ok(());
        }
        if std::time::Instant::now() > end {
            bail!("{line:?} not in /metrics after {timeout:?}:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// GETs `path` from `addr` and reads up to `want` bytes of body (or what
/// came in `timeout`).
fn flv_read(addr: &str, path: &str, want: usize, timeout: Duration) -> Result<Vec<u8>> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n")?;
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    let end = Instant::now() + timeout;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    while buf.len() < want && Instant::now() < end {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n").context("no response head")? + 4;
    ensure!(buf.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..head_end]));
    Ok(buf[head_end..].to_vec())
}

/// A channel switch at an edge to a stream it does not hold pulls it, and
/// the switch starts from the pulled GOP like a local one.
#[test]
fn a_switch_at_an_edge_pulls_the_new_stream() -> Result<()> {
    let c = Cluster::start(&["a", "b"], |_| String::new())?;
    let a = c.node("a");
    let _s = publish(&a.rtmp("live/s"), 40.0);
    let _t = publish(&a.rtmp("live/t"), 40.0);
    a.wait_live("live", "s", Duration::from_secs(20))?;
    a.wait_live("live", "t", Duration::from_secs(20))?;
    let mut o = rts_loadgen::Options::new(&format!("{}/whep/live/s", c.node("b").http()));
    o.viewers = 2;
    o.ramp = 20.0;
    o.duration = 9.0;
    o.verify_share = 1.0;
    o.quiet = true;
    o.switch_every = Some(2.5);
    o.switch_streams = ["s", "t"].map(String::from).to_vec();
    let r = rts_loadgen::run(&o).map_err(|e| anyhow::anyhow!("{e}"))?;
    let j = serde_json::to_value(&r)?;
    assert_eq!((r.viewers_connected, r.viewers_failed), (2, 0), "{j:#}\n{}", c.logs());
    assert!(r.switches_ok >= 4, "{j:#}\n{}", c.logs());
    assert_eq!((r.switches_refused, r.switches_failed, r.switches_no_frame), (0, 0, 0), "{j:#}\n{}", c.logs());
    // The first switch to live/t waited for its pull (connect, answer, GOP).
    let sw = r.switch_ms.as_ref().context("switch times")?;
    println!("switch ms: p50 {:.1} p99 {:.1}", sw.p50, sw.p99);
    assert!(sw.p99 < 1000.0, "a switch that pulled took {:.0} ms", sw.p99);
    c.wait_holders("live/t", &["a;0;", "b;1;a"], Duration::from_secs(3))?;
    Ok(())
}

/// The origin serves one pull at most (capacity 1): the first edge pulls
/// from it, the second from the first edge (origin -> mid-tier -> edge),
/// and the mid-tier keeps pulling for the edge with no viewer of its own.
#[test]
fn pulls_chain_through_a_mid_tier_when_the_origin_is_full() -> Result<()> {
    let c = Cluster::start(&["a", "b", "c"], |n| if n == "a" { "capacity_viewers = 1\nredirect_target = false".into() } else { String::new() })?;
    let a = c.node("a");
    let _p = publish(&a.rtmp("live/s"), 40.0);
    a.wait_live("live", "s", Duration::from_secs(20))?;
    // One viewer at B for a few seconds: B pulls from A, which is then full.
    let at_b = viewers(&format!("{}/whep/live/s", c.node("b").http()), 1, 4.0, 1.0);
    c.wait_holders("live/s", &["a;0;", "b;1;a"], Duration::from_secs(5))?;
    // A is full once its entry counts B's pull (the shards report every
    // second, the heartbeat carries it): only then may C look.
    let end = Instant::now() + Duration::from_secs(5);
    while c.redis(&["HGET", "rts:node:a", "viewers"])?.first().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) < 1 {
        ensure!(Instant::now() < end, "A's entry never counted B's pull\n{}", c.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
    let at_c = viewers(&format!("{}/whep/live/s", c.node("c").http()), 5, 10.0, 1.0);
    c.wait_holders("live/s", &["a;0;", "b;1;a", "c;2;a,b"], Duration::from_secs(5))?;
    let rb = report(at_b)?;
    assert_eq!(rb.viewers_connected, 1);
    // B's own viewer left (its pull lingers 3 s): B goes on pulling for C.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(c.holders("live/s")?, ["a;0;", "b;1;a", "c;2;a,b"], "B still relays\n{}", c.logs());
    let rc = report(at_c)?;
    let j = serde_json::to_value(&rc)?;
    assert_eq!((rc.viewers_connected, rc.viewers_failed), (5, 0), "{j:#}\n{}", c.logs());
    assert!(rc.loss_ratio < 0.001 && rc.stall_count == 0, "{j:#}");
    println!("two hops: SEI end-to-end p50 {:.2} ms", p50(&rc)?);
    assert!(p50(&rc)? < 40.0, "two hops add {:.1} ms", p50(&rc)?);
    assert_eq!(a.counter("relays_served")?, 1, "the origin fed one pull");
    Ok(())
}
