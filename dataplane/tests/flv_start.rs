//! An FLV viewer's start from the tag GOP cache (`flv_gop.rs`), checked by
//! ffmpeg's own tools: ffmpeg publishes-to-file an FLV (H.264 high profile
//! with B-frames, 1 s GOPs, AAC 44.1 kHz); the tags up to 2.5 s go through
//! the cache as a publisher's would, a viewer joining then gets the
//! cache's start and every tag after it, written as a file with
//! `FlvTag::wire`; ffprobe must find the published codecs, a first video
//! packet that is the 2 s keyframe, monotonic decode times and every frame
//! from there, and decode all of them without an error.

use bytes::Bytes;
use rts_dataplane::flv_gop::{FlvGop, FlvTag};
use rts_rtmp::flv::file::{file_header, read_file, TAG_SCRIPT, TAG_VIDEO};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("rts-flv-start-{}-{name}", std::process::id()))
}

fn run(program: &str, args: &[&str]) -> std::process::Output {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program} not found ({e}): run scripts/install-test-deps.sh"));
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

#[test]
fn a_viewer_joining_mid_gop_gets_a_decodable_stream_from_the_last_keyframe() {
    let source = temp("source.flv");
    let src = source.to_str().unwrap();
    run(
        "ffmpeg",
        &[
            "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
            "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30",
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
            "-t", "4", "-c:v", "libx264", "-profile:v", "high", "-bf", "2", "-g", "30", "-keyint_min", "30", "-sc_threshold", "0",
            "-pix_fmt", "yuv420p", "-c:a", "aac", "-ar", "44100", "-f", "flv", src,
        ],
    );
    let data = Bytes::from(std::fs::read(&source).unwrap());
    let _ = std::fs::remove_file(&source);
    let (tags, err) = read_file(&data);
    assert_eq!(err, None, "ffmpeg's FLV reads whole");
    let published_video = tags.iter().filter(|t| t.tag_type == TAG_VIDEO && t.body.get(1) == Some(&1)).count();
    assert_eq!(published_video, 120, "4 s at 30 fps");

    // The publisher's tags up to 2.5 s go through the cache; the viewer
    // joins then.
    let join = tags.iter().position(|t| t.timestamp_ms >= 2_500).unwrap();
    let mut gop = FlvGop::default();
    for t in &tags[..join] {
        gop.on_tag(FlvTag::new(t.tag_type, t.timestamp_ms, t.body.clone()));
    }
    assert!(gop.ready());
    let mut out = file_header(true, true).to_vec();
    // What a viewer gets is each tag's shared encoding (`FlvTag::wire`).
    for t in gop.start() {
        out.extend_from_slice(&t.wire);
    }
    for t in tags[join..].iter().filter(|t| t.tag_type != TAG_SCRIPT) {
        out.extend_from_slice(&FlvTag::new(t.tag_type, t.timestamp_ms, t.body.clone()).wire);
    }
    let viewer = temp("viewer.flv");
    std::fs::write(&viewer, &out).unwrap();
    let v = viewer.to_str().unwrap();

    let probe = run("ffprobe", &["-v", "error", "-show_entries", "stream=index,codec_type,codec_name,profile,has_b_frames:packet=stream_index,dts_time,pts_time,flags", "-of", "json", v]);
    let probe: Value = serde_json::from_slice(&probe.stdout).unwrap();
    let streams = probe["streams"].as_array().unwrap();
    let video = streams.iter().find(|s| s["codec_type"] == "video").expect("a video stream");
    let audio = streams.iter().find(|s| s["codec_type"] == "audio").expect("an audio stream");
    assert_eq!((video["codec_name"].as_str(), video["profile"].as_str()), (Some("h264"), Some("High")), "as published: {video}");
    assert!(video["has_b_frames"].as_u64().unwrap_or(0) > 0, "B-frames stay: {video}");
    assert_eq!(audio["codec_name"], "aac", "AAC stays: {audio}");
    let (vi, ai) = (video["index"].as_u64(), audio["index"].as_u64());
    let packets = probe["packets"].as_array().unwrap();
    let of = |i: Option<u64>| packets.iter().filter(move |p| p["stream_index"].as_u64() == i);
    let secs = |p: &Value, k: &str| p[k].as_str().and_then(|s| s.parse::<f64>().ok());
    let first = of(vi).next().unwrap();
    assert!(first["flags"].as_str().unwrap_or("").starts_with('K'), "the first video packet is a keyframe: {first}");
    assert!((secs(first, "dts_time").unwrap() - 2.0).abs() < 0.1, "the 2 s keyframe, not a later one: {first}");
    assert_eq!(of(vi).count(), 60, "every frame from the 2 s keyframe to the end");
    for i in [vi, ai] {
        let dts: Vec<f64> = of(i).filter_map(|p| secs(p, "dts_time")).collect();
        assert!(dts.windows(2).all(|w| w[1] >= w[0]), "monotonic decode times in stream {i:?}: {dts:?}");
        assert!(dts.first().is_some_and(|&d| d >= 1.9), "nothing from before the keyframe in stream {i:?}: {dts:?}");
    }
    // Every video frame decodes, without a decoder error (a start on a
    // non-key frame or a missing sequence header would print "no frame!"
    // or "non-existing PPS" and drop frames).
    let decode = run("ffprobe", &["-v", "error", "-count_frames", "-select_streams", "v", "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", v]);
    assert_eq!(String::from_utf8_lossy(&decode.stdout).trim(), "60", "decoded frames");
    assert!(decode.stderr.is_empty(), "decode errors: {}", String::from_utf8_lossy(&decode.stderr));
    let _ = std::fs::remove_file(&viewer);
}
