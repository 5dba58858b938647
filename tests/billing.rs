//! Traffic records end to end (issue 13, "records reconcile"): WebRTC,
//! RTMP-play and HTTP-FLV viewers from the load generator and an LL-HLS
//! player on two shards (the stream replicated), control killed with `kill -9` mid-run and
//! started again. The records in the files must add up, per protocol, to
//! what the viewers received (within 1 %), equal the shards' totals on the
//! admin listener, name no record twice, and the totals must never
//! decrease while a control runs.

mod common;
mod rig;

use anyhow::{Context, Result};
use rig::{Mode, Rig, HTTP, RTMP};
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

const MEDIA: &str = "10.200.0.1:8088";

fn loadgen(protocol: rts_loadgen::Protocol, url: &str, viewers: u64, duration: f64) -> rts_loadgen::Options {
    let mut o = rts_loadgen::Options::new(url);
    o.protocol = protocol;
    o.viewers = viewers;
    o.ramp = 20.0;
    o.duration = duration;
    o.quiet = true;
    o
}

/// Every record line in the usage files.
fn read_records(dir: &Path) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let path = e?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("").to_string();
        assert!(name.starts_with("usage-") && name.ends_with(".jsonl"), "unexpected file {name}");
        let text = std::fs::read_to_string(&path)?;
        assert!(text.is_empty() || text.ends_with('\n'), "{name} ends in a half line");
        for line in text.lines() {
            out.push(serde_json::from_str(line).with_context(|| format!("{name}: {line}"))?);
        }
    }
    Ok(out)
}

/// (bytes_in, bytes_out) per protocol.
type Totals = BTreeMap<String, (u64, u64)>;

/// An LL-HLS player for `secs`: the playlist and its newest part every
/// 300 ms, each on a new connection; the bytes it read (heads and bodies).
fn hls_player(secs: u64) -> Result<u64> {
    let mut read = 0u64;
    let t0 = Instant::now();
    let get = |path: &str, read: &mut u64| -> Result<String> {
        let mut s = std::net::TcpStream::connect(MEDIA)?;
        write!(s, "GET {path} HTTP/1.1\r\nHost: 10.200.0.1:8088\r\nConnection: close\r\n\r\n")?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf)?;
        *read += buf.len() as u64;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    while t0.elapsed() < Duration::from_secs(secs) {
        let text = get("/live/bill.m3u8", &mut read)?;
        if let Some(uri) = text.lines().rev().find_map(|l| l.strip_prefix("#EXT-X-PART:")).and_then(|l| l.split("URI=\"").nth(1)).and_then(|u| u.split('"').next()) {
            get(&format!("/live/{uri}"), &mut read)?;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    Ok(read)
}

/// (bytes_in, bytes_out) per protocol from the admin API, for stream `s`.
fn admin_totals(rig: &Rig, stream: &str) -> Result<Totals> {
    let v: Value = serde_json::from_str(&rig.admin("/api/v1/usage")?)?;
    let mut out = BTreeMap::new();
    for r in v["usage"].as_array().context("usage")? {
        if r["stream"] == stream {
            let p = r["protocol"].as_str().unwrap_or("").to_string();
            out.insert(p, (r["bytes_in"].as_u64().unwrap_or(0), r["bytes_out"].as_u64().unwrap_or(0)));
        }
    }
    Ok(out)
}

fn stream_bytes_out(rig: &Rig, stream: &str) -> Result<u64> {
    Ok(rig.stream("live", stream)?.and_then(|s| s["bytes_out"].as_u64()).unwrap_or(0))
}

#[test]
fn records_add_up_to_what_viewers_received_across_a_control_kill() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("rts-usage-{}-{:x}", std::process::id(), rand::random::<u32>()));
    let toml = format!("[billing]\npath = \"{}\"\ninterval_s = 2\n[dataplane]\nshards = 2\nspread_after = 0\n", dir.display());
    let mut rig = Rig::start(Mode::Split, &toml)?;
    let _publisher = rig.publish("live/bill")?;
    rig.wait_live("live", "bill", Duration::from_secs(20))?;
    std::thread::sleep(Duration::from_millis(1500));

    let runs = [
        (rts_loadgen::Protocol::Webrtc, format!("{HTTP}/whep/live/bill")),
        (rts_loadgen::Protocol::Flv, format!("http://{MEDIA}/live/bill.flv")),
        (rts_loadgen::Protocol::Rtmp, format!("{RTMP}/live/bill")),
    ];
    let threads: Vec<_> = runs
        .into_iter()
        .map(|(protocol, url)| {
            let o = loadgen(protocol, &url, 4, 14.0);
            // (connected, failed, failures, bytes received)
            std::thread::spawn(move || -> Result<(rts_loadgen::Protocol, (u64, u64, String, u64))> {
                let r = match protocol {
                    rts_loadgen::Protocol::Webrtc => {
                        let r = rts_loadgen::run(&o)?;
                        (r.viewers_connected, r.viewers_failed, format!("{:?}", r.failures), r.bytes_received)
                    }
                    _ => {
                        let r = rts_loadgen::tcp::run(&o)?;
                        (r.viewers_connected, r.viewers_failed, format!("{:?}", r.failures), r.bytes_received)
                    }
                };
                Ok((protocol, r))
            })
        })
        .collect();

    // Totals sampled while the viewers play; control is killed at 4 s and
    // back at 8 s (an interval boundary or two pass while it is down).
    let t0 = Instant::now();
    let hls = std::thread::spawn(|| hls_player(13));
    let mut runs_samples: Vec<Vec<(Totals, u64)>> = vec![Vec::new()];
    let mut killed = false;
    while t0.elapsed() < Duration::from_secs(14) {
        if !killed && t0.elapsed() > Duration::from_secs(4) {
            rig.servers[1].kill();
            killed = true;
            std::thread::sleep(Duration::from_secs(4));
            rig.start_control()?;
            runs_samples.push(Vec::new());
            std::thread::sleep(Duration::from_millis(1500)); // its first reports
        }
        if let (Ok(t), Ok(s)) = (admin_totals(&rig, "bill"), stream_bytes_out(&rig, "bill")) {
            runs_samples.last_mut().unwrap().push((t, s));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let mut received: BTreeMap<String, u64> = BTreeMap::new();
    for t in threads {
        let (protocol, r) = t.join().expect("loadgen thread")?;
        let name = match protocol {
            rts_loadgen::Protocol::Webrtc => "webrtc",
            rts_loadgen::Protocol::Flv => "flv",
            rts_loadgen::Protocol::Rtmp => "rtmp",
        };
        assert_eq!((r.0, r.1), (4, 0), "{name}: {}\n{}", r.2, rig.logs());
        received.insert(name.to_string(), r.3);
    }
    let hls_read = hls.join().expect("hls thread")?;
    // The viewers' final records are cut at their end, written, acknowledged.
    std::thread::sleep(Duration::from_secs(3));

    let records = read_records(&dir)?;
    let ids: Vec<&str> = records.iter().map(|r| r["id"].as_str().unwrap_or("")).collect();
    let unique: HashSet<&&str> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "a record written twice");
    let mut by_protocol: BTreeMap<String, (u64, u64, usize)> = BTreeMap::new();
    let mut finals: BTreeMap<String, usize> = BTreeMap::new();
    for r in &records {
        assert_eq!((r["app"].as_str(), r["stream"].as_str()), (Some("live"), Some("bill")), "{r}");
        assert_eq!(r["domain"], "10.200.0.1", "the domain the clients asked for: {r}");
        assert!(r["start"].as_str() <= r["end"].as_str(), "{r}");
        let p = r["protocol"].as_str().unwrap_or("").to_string();
        let e = by_protocol.entry(p.clone()).or_default();
        e.0 += r["bytes_in"].as_u64().unwrap_or(0);
        e.1 += r["bytes_out"].as_u64().unwrap_or(0);
        e.2 += 1;
        if r["kind"] == "final" {
            *finals.entry(p).or_default() += 1;
        }
    }
    println!("records per protocol (in, out, lines): {by_protocol:?}\nviewers received: {received:?}\nfinal records: {finals:?}");
    let totals = admin_totals(&rig, "bill")?;
    for (p, got) in &received {
        let (_, out, lines) = by_protocol.get(p).copied().unwrap_or_default();
        assert!(lines >= 4 * 3, "{p}: interim records every 2 s for 4 viewers: {lines}");
        assert_eq!(finals.get(p).copied(), Some(4), "{p}: one final record per viewer");
        let err = (out as f64 - *got as f64).abs() / *got as f64;
        assert!(err <= 0.01, "{p}: records say {out} bytes out, the viewers received {got} ({:.2} %)", err * 100.0);
        // The shards' counters, summed by the new control from its start.
        assert_eq!(totals.get(p).map(|t| t.1), Some(out), "{p}: admin totals {totals:?}");
    }
    // The HLS player's session is still open (it ends 30 s after its last
    // request); its interim records have every byte since the last cut.
    let (_, hls_out, hls_lines) = by_protocol.get("hls").copied().unwrap_or_default();
    assert!(hls_lines >= 3, "HLS interim records: {hls_lines}");
    assert_eq!(hls_out, hls_read, "the HLS player's bytes");
    assert_eq!(totals.get("hls").map(|t| t.1), Some(hls_out));
    let publish = by_protocol.get("publish").context("publish records")?;
    assert!(publish.0 > 500_000, "the publisher's bytes in: {publish:?}");
    // Within each control run the totals only grow (the stream is
    // replicated: two shards report it).
    for samples in &runs_samples {
        assert!(samples.len() >= 3, "samples: {}", samples.len());
        for w in samples.windows(2) {
            assert!(w[1].1 >= w[0].1, "stream bytes_out went back: {} -> {}", w[0].1, w[1].1);
            for (p, (i, o)) in &w[0].0 {
                let (i2, o2) = w[1].0.get(p).copied().unwrap_or_default();
                assert!(i2 >= *i && o2 >= *o, "{p} totals went back: {:?} -> {:?}", (i, o), (i2, o2));
            }
        }
    }
    let per_stream = stream_bytes_out(&rig, "bill")?;
    let viewers_out: u64 = received.keys().filter_map(|p| by_protocol.get(p)).map(|t| t.1).sum();
    println!("stream bytes_out (public API, since the new control): {per_stream}, viewer records: {viewers_out}");
    // The admin metrics carry the same totals; the public ones do not.
    let metrics = rig.admin("/metrics")?;
    assert!(metrics.contains("rts_usage_bytes_out_total{domain=\"10.200.0.1\",app=\"live\",stream=\"bill\",protocol=\"flv\"}"), "{metrics}");
    let public = ureq::get(&format!("{HTTP}/metrics")).call()?.into_string()?;
    assert!(!public.contains("rts_usage_"), "billing totals on the public port");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
