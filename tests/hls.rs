//! LL-HLS end to end (issue 13): ffprobe and ffmpeg read the playlist and
//! segments as published (H.264 High with B-frames, AAC), a raw client gets
//! an independent part soon after its request, and Chromium plays it
//! through the web player (hls.js) with its latency measured.

mod common;
mod rig;

use anyhow::{Context, Result};
use common::probe::run_tool;
use common::{PublishOpts, Publisher};
use rig::{Mode, Rig, HTTP, RTMP};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const MEDIA: &str = "10.200.0.1:8088";

fn publish(path: &str) -> Result<Publisher> {
    let opts = PublishOpts { audio: true, profile: "high".into(), bframes: Some(2), gop: 30, size: "320x240".into(), ..Default::default() };
    Publisher::start(&format!("{RTMP}/{path}"), &opts)
}

/// One GET on a new connection: (status line, head, body).
fn get(path: &str) -> Result<(String, String, Vec<u8>)> {
    let mut s = TcpStream::connect(MEDIA)?;
    s.set_read_timeout(Some(Duration::from_secs(15)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: edge.example.com:8088\r\nConnection: close\r\n\r\n")?;
    let mut buf = Vec::new();
    loop {
        let mut chunk = [0u8; 64 * 1024];
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").context("no response head")? + 4;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    Ok((head.lines().next().unwrap_or("").to_string(), head, buf[end..].to_vec()))
}

#[test]
fn ffmpeg_and_ffprobe_read_ll_hls_as_published() -> Result<()> {
    // Two shards: connections land on either; both serve one timeline.
    let rig = Rig::start(Mode::Serve, "[dataplane]\nshards = 2\n")?;
    let _publisher = publish("live/h")?;
    rig.wait_live("live", "h", Duration::from_secs(20))?;
    std::thread::sleep(Duration::from_millis(3000)); // a few segments

    let asked = Instant::now();
    let (status, head, body) = get("/live/h.m3u8")?;
    assert_eq!(status, "HTTP/1.1 200 OK", "{head}");
    assert!(head.contains("Content-Type: application/vnd.apple.mpegurl\r\n"), "{head}");
    assert!(head.contains("Access-Control-Allow-Origin: *\r\n"), "CORS: {head}");
    let playlist = String::from_utf8(body)?;
    assert!(playlist.contains("#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES"), "{playlist}");
    // The newest independent part: where a low-latency player starts.
    let part = playlist
        .lines()
        .rfind(|l| l.starts_with("#EXT-X-PART:") && l.ends_with("INDEPENDENT=YES"))
        .and_then(|l| l.split("URI=\"").nth(1))
        .and_then(|u| u.split('"').next())
        .context("no independent part")?
        .to_string();
    let (status, head, body) = get(&format!("/live/{part}"))?;
    let first_keyframe = asked.elapsed();
    assert_eq!(status, "HTTP/1.1 200 OK", "{head}");
    assert_eq!(&body[4..8], b"moof");
    println!("LL-HLS: playlist and its newest keyframe part {} ms after the request", first_keyframe.as_millis());
    assert!(first_keyframe < Duration::from_millis(500), "{first_keyframe:?}");

    // ffprobe: the codecs as published.
    let url = format!("http://{MEDIA}/live/h.m3u8");
    common::probe::assert_high_with_b_frames_and_aac(&url)?;

    // ffmpeg reads 3 s (a copy), then every frame decodes.
    let file = rig.dir.join("copy.mp4");
    let file = file.to_str().context("utf-8 path")?;
    run_tool("ffmpeg", &["-hide_banner", "-v", "error", "-nostdin", "-rw_timeout", "5000000", "-i", &url, "-t", "3", "-c", "copy", "-y", file])?;
    let packets = run_tool("ffprobe", &["-v", "error", "-show_entries", "packet=stream_index,dts_time,flags:stream=index,codec_type", "-of", "json", file])?;
    let packets: Value = serde_json::from_slice(&packets.stdout)?;
    let streams = packets["streams"].as_array().context("no streams")?;
    let vi = streams.iter().find(|s| s["codec_type"] == "video").map(|s| s["index"].clone()).context("no video in the copy")?;
    assert!(streams.iter().any(|s| s["codec_type"] == "audio"), "audio in the copy");
    let video: Vec<&Value> = packets["packets"].as_array().context("no packets")?.iter().filter(|p| p["stream_index"] == vi).collect();
    assert!(video.len() >= 80, "about 3 s of video: {}", video.len());
    assert!(video[0]["flags"].as_str().unwrap_or("").starts_with('K'), "the copy starts on a keyframe: {}", video[0]);
    let dts: Vec<f64> = video.iter().filter_map(|p| p["dts_time"].as_str()?.parse().ok()).collect();
    assert!(dts.windows(2).all(|w| w[1] > w[0]), "monotonic: {dts:?}");
    let decoded = run_tool("ffprobe", &["-v", "error", "-count_frames", "-select_streams", "v", "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", file])?;
    assert_eq!(String::from_utf8_lossy(&decoded.stdout).trim(), video.len().to_string(), "every frame decodes");
    assert!(decoded.stderr.is_empty(), "decode errors: {}", String::from_utf8_lossy(&decoded.stderr));

    let (status, head, _) = get("/live/nothing.m3u8")?;
    assert!(status.starts_with("HTTP/1.1 404"), "{head}");
    assert!(head.contains("Access-Control-Allow-Origin: *"), "{head}");
    Ok(())
}

#[test]
fn chromium_plays_ll_hls_through_the_web_player() -> Result<()> {
    let rig = Rig::start(Mode::Serve, "")?;
    // What Chromium's MSE decodes: H.264 (Main, no B-frames) and AAC.
    let opts = PublishOpts { audio: true, profile: "main".into(), gop: 30, size: "640x360".into(), ..Default::default() };
    let _publisher = Publisher::start(&format!("{RTMP}/live/web"), &opts)?;
    rig.wait_live("live", "web", Duration::from_secs(20))?;
    std::thread::sleep(Duration::from_millis(1500));
    let mut c = common::Chromium::launch()?;
    c.navigate(&format!("{HTTP}/play/live/web?protocol=hls"))?;
    if let Err(e) = c.wait_for("window.rts && (await window.rts.stats()).framesDecoded >= 60", Duration::from_secs(30)) {
        let state = c.eval("JSON.stringify({state: window.rts && window.rts.state, error: window.rts && String(window.rts.error)})");
        anyhow::bail!("no frames through hls.js: {e:#}; page: {state:?}; console: {:?}\nserver logs:\n{}", c.console(), rig.logs());
    }
    // Let it settle at its target latency, then sample for 10 s.
    std::thread::sleep(Duration::from_secs(4));
    let mut latencies = Vec::new();
    let mut last = Value::Null;
    for _ in 0..20 {
        let s = c.eval("(async () => await window.rts.stats())()")?;
        if let Some(l) = s["latencyMs"].as_f64() {
            latencies.push(l);
        }
        last = s;
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(last["state"], "playing", "{last}");
    assert_eq!((last["frameWidth"].as_u64(), last["frameHeight"].as_u64()), (Some(640), Some(360)), "{last}");
    assert!(latencies.len() >= 15, "latency samples: {latencies:?} ({last})");
    latencies.sort_by(|a, b| a.total_cmp(b));
    let median = latencies[latencies.len() / 2];
    let max = latencies[latencies.len() - 1];
    println!(
        "LL-HLS in Chromium (hls.js): latency from the server's receipt of a frame to it on screen: median {median:.0} ms, max {max:.0} ms; hls.js live-edge distance {} s, target {} s; {last}",
        last["liveEdgeLatencyS"], last["targetLatencyS"]
    );
    assert!(max < 6_000.0, "LL-HLS latency {max} ms, bound 6 s");
    let frames = last["framesDecoded"].as_u64().unwrap_or(0);
    let dropped = last["framesDropped"].as_u64().unwrap_or(0);
    assert!(frames > 300, "14 s of 30 fps: {frames}");
    assert!(dropped * 100 <= frames, "dropped {dropped} of {frames}");
    Ok(())
}
