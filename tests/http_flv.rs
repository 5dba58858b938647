//! HTTP-FLV from the dataplane's media listener (:8088), read by ffmpeg and
//! ffprobe as independent clients and by a raw TCP client that times the
//! first keyframe: codecs as published (H.264 High with B-frames, AAC),
//! monotonic timestamps, a keyframe first, CORS; and viewers spread over
//! two shards by SO_REUSEPORT all play a stream published on one of them.

mod common;
mod rig;

use anyhow::{Context, Result};
use bytes::Bytes;
use common::probe::run_tool;
use common::{PublishOpts, Publisher};
use rig::{Mode, Rig, RTMP};
use rts_rtmp::flv::file::{read_file, FileTag, TAG_AUDIO, TAG_VIDEO};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const MEDIA: &str = "10.200.0.1:8088";

/// What a raw client saw of `GET /{path}`: the response head, the tags of
/// the first `read_for`, and when the first video keyframe's tag was
/// complete (from the request).
struct Received {
    head: String,
    tags: Vec<FileTag>,
    first_keyframe: Option<Duration>,
}

fn get_flv(path: &str, read_for: Duration) -> Result<Received> {
    let mut s = TcpStream::connect(MEDIA)?;
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    let asked = Instant::now();
    write!(s, "GET {path} HTTP/1.1\r\nHost: edge.example.com:8088\r\nOrigin: http://10.200.0.1:8080\r\n\r\n")?;
    let mut buf = Vec::new();
    let mut first_keyframe = None;
    let mut chunk = [0u8; 64 * 1024];
    while asked.elapsed() < read_for {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted) => {}
            Err(e) => return Err(e.into()),
        }
        if first_keyframe.is_none() {
            if let Some(end) = head_end(&buf) {
                let (tags, _) = read_file(&Bytes::copy_from_slice(&buf[end..]));
                if tags.iter().any(is_video_keyframe) {
                    first_keyframe = Some(asked.elapsed());
                }
            }
        }
    }
    let end = head_end(&buf).with_context(|| format!("no response head in {} bytes", buf.len()))?;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    // The last tag may be cut by the end of reading: keep the whole ones.
    let (tags, _) = read_file(&Bytes::copy_from_slice(&buf[end..]));
    Ok(Received { head, tags, first_keyframe })
}

fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

fn is_video_keyframe(t: &FileTag) -> bool {
    t.tag_type == TAG_VIDEO && t.body.len() > 1 && t.body[0] >> 4 == 1 && t.body[1] == 1
}

fn publish(path: &str) -> Result<Publisher> {
    let opts = PublishOpts { audio: true, profile: "high".into(), bframes: Some(2), gop: 30, size: "320x240".into(), ..Default::default() };
    Publisher::start(&format!("{RTMP}/{path}"), &opts)
}

#[test]
fn ffmpeg_and_ffprobe_read_http_flv_as_published() -> Result<()> {
    let rig = Rig::start(Mode::Serve, "")?;
    let _publisher = publish("live/f")?;
    rig.wait_live("live", "f", Duration::from_secs(20))?;
    std::thread::sleep(Duration::from_millis(1500)); // a GOP in the cache

    // A raw client: the answer, the start, and how soon the keyframe came.
    let r = get_flv("/live/f.flv", Duration::from_secs(2))?;
    assert!(r.head.starts_with("HTTP/1.1 200 "), "{}", r.head);
    assert!(r.head.contains("\r\nContent-Type: video/x-flv\r\n"), "{}", r.head);
    assert!(r.head.contains("\r\nAccess-Control-Allow-Origin: *\r\n"), "CORS for players on other origins: {}", r.head);
    let first_video = r.tags.iter().find(|t| t.tag_type == TAG_VIDEO).context("no video tag")?;
    assert_eq!(&first_video.body[..2], &[0x17, 0], "the AVC sequence header first");
    let first_coded = r.tags.iter().find(|t| t.tag_type == TAG_VIDEO && t.body.get(1) == Some(&1)).context("no coded video")?;
    assert!(is_video_keyframe(first_coded), "the first coded frame is a keyframe");
    assert!(r.tags.iter().any(|t| t.tag_type == TAG_AUDIO && t.body.starts_with(&[0xaf, 0])), "the AAC sequence header: AAC stays AAC");
    let waited = r.first_keyframe.context("no keyframe in 2 s")?;
    println!("HTTP-FLV: first keyframe complete {} ms after the request", waited.as_millis());
    assert!(waited < Duration::from_millis(500), "first keyframe {waited:?} after the request, bound 500 ms");
    let video_dts: Vec<u32> = r.tags.iter().filter(|t| t.tag_type == TAG_VIDEO).map(|t| t.timestamp_ms).collect();
    assert!(video_dts.len() > 40, "2 s of 30 fps video: {}", video_dts.len());
    assert!(video_dts.windows(2).all(|w| w[1] >= w[0]), "monotonic video timestamps: {video_dts:?}");

    // ffprobe on the URL: the codecs as published.
    let url = format!("http://{MEDIA}/live/f.flv");
    common::probe::assert_high_with_b_frames_and_aac(&url)?;

    // ffmpeg reads 3 s of it (a copy, then every frame decoded).
    let file = rig.dir.join("copy.flv");
    let file = file.to_str().context("utf-8 path")?;
    run_tool("ffmpeg", &["-hide_banner", "-v", "error", "-nostdin", "-rw_timeout", "5000000", "-i", &url, "-t", "3", "-c", "copy", "-y", file])?;
    let packets = run_tool("ffprobe", &["-v", "error", "-show_entries", "packet=stream_index,dts_time,flags:stream=index,codec_type", "-of", "json", file])?;
    let packets: Value = serde_json::from_slice(&packets.stdout)?;
    let vi = packets["streams"].as_array().and_then(|a| a.iter().find(|s| s["codec_type"] == "video")).map(|s| s["index"].clone()).context("no video in the copy")?;
    let video: Vec<&Value> = packets["packets"].as_array().context("no packets")?.iter().filter(|p| p["stream_index"] == vi).collect();
    assert!(video.len() >= 80, "about 3 s of video: {}", video.len());
    assert!(video[0]["flags"].as_str().unwrap_or("").starts_with('K'), "the copy starts on a keyframe: {}", video[0]);
    let dts: Vec<f64> = video.iter().filter_map(|p| p["dts_time"].as_str()?.parse().ok()).collect();
    assert!(dts.windows(2).all(|w| w[1] >= w[0]), "monotonic: {dts:?}");
    let decoded = run_tool("ffprobe", &["-v", "error", "-count_frames", "-select_streams", "v", "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", file])?;
    assert_eq!(String::from_utf8_lossy(&decoded.stdout).trim(), video.len().to_string(), "every frame decodes");
    assert!(decoded.stderr.is_empty(), "decode errors: {}", String::from_utf8_lossy(&decoded.stderr));

    // A stream that is not live: 404, with CORS.
    let r = get_flv("/live/nothing.flv", Duration::from_millis(500))?;
    assert!(r.head.starts_with("HTTP/1.1 404 "), "{}", r.head);
    assert!(r.head.contains("Access-Control-Allow-Origin: *"), "{}", r.head);
    Ok(())
}

#[test]
fn flv_viewers_on_both_shards_play_a_stream_published_on_one() -> Result<()> {
    let rig = Rig::start(Mode::Serve, "[dataplane]\nshards = 2\n")?;
    let _publisher = publish("live/two")?;
    rig.wait_live("live", "two", Duration::from_secs(20))?;
    std::thread::sleep(Duration::from_millis(1500));
    // SO_REUSEPORT spreads the 12 connections over both shards (all on one
    // shard: 1 in 2,048).
    let clients: Vec<_> = (0..12).map(|_| std::thread::spawn(|| get_flv("/live/two.flv", Duration::from_secs(2)))).collect();
    for (i, c) in clients.into_iter().enumerate() {
        let r = c.join().map_err(|_| anyhow::anyhow!("client thread panicked"))??;
        assert!(r.head.starts_with("HTTP/1.1 200 "), "client {i}: {}", r.head);
        let first_coded = r.tags.iter().find(|t| t.tag_type == TAG_VIDEO && t.body.get(1) == Some(&1));
        assert!(first_coded.is_some_and(is_video_keyframe), "client {i} starts on a keyframe");
        assert!(r.tags.iter().filter(|t| t.tag_type == TAG_VIDEO).count() > 40, "client {i} got 2 s of video");
    }
    // Both shards served FLV (one of them through replication).
    std::thread::sleep(Duration::from_millis(1200)); // the shards' next stats
    let api = rig.api()?;
    let served: Vec<u64> = api["shards"].as_array().context("no shards")?.iter().map(|s| s["counters"]["flv_bytes_out"].as_u64().unwrap_or(0)).collect();
    assert_eq!(served.len(), 2);
    assert!(served.iter().all(|&b| b > 100_000), "FLV bytes per shard: {served:?}");
    Ok(())
}

/// The load generator's TCP viewers (issue 13's capacity tool) against
/// both outputs: all start on a keyframe and play without stalls, and a
/// slow reader among them (100 kbit/s of a ~300 kbit/s stream) does not
/// stall the others.
#[test]
fn loadgen_flv_and_rtmp_viewers_play_beside_a_slow_reader() -> Result<()> {
    let rig = Rig::start(Mode::Serve, "")?;
    let _publisher = publish("live/load")?;
    rig.wait_live("live", "load", Duration::from_secs(20))?;
    std::thread::sleep(Duration::from_millis(1500));
    for (protocol, url) in [(rts_loadgen::Protocol::Flv, format!("http://{MEDIA}/live/load.flv")), (rts_loadgen::Protocol::Rtmp, format!("{RTMP}/live/load"))] {
        let mut o = rts_loadgen::Options::new(&url);
        o.protocol = protocol;
        o.viewers = 21;
        o.ramp = 20.0;
        o.duration = 6.0;
        o.slow_readers = 1;
        o.slow_read_kbps = 100.0;
        let r = rts_loadgen::tcp::run(&o)?;
        println!("{protocol:?}:\n{}", r.summary_table());
        assert_eq!((r.viewers_connected, r.viewers_failed), (20, 0), "{protocol:?}: {:?}", r.failures);
        assert!(r.failures.is_empty(), "{protocol:?}: {:?}", r.failures);
        assert_eq!(r.slow_readers, 1);
        assert!(r.slow_bytes_received > 0);
        assert!(r.stall_ratio <= 0.005, "{protocol:?}: stall ratio {} beside a slow reader", r.stall_ratio);
        let p = r.first_frame_ms.context("first frames")?;
        assert!(p.p95 < 500.0, "{protocol:?}: first keyframe p95 {} ms", p.p95);
        // 20 viewers, ~5 s each from their request at 30 fps.
        assert!(r.frames > 20 * 120, "{protocol:?}: {} frames", r.frames);
    }
    Ok(())
}
