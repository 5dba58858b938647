//! RTMP play from the shards (`rtmp://host/{app}/{stream}`), read by ffmpeg
//! and ffprobe as independent clients and by rml_rtmp's client over TCP,
//! which times the first keyframe: codecs as published (H.264 High with
//! B-frames, AAC), a keyframe first, monotonic timestamps; a refused play
//! (not live) gets an error status.

mod common;
mod rig;

use anyhow::{bail, Context, Result};
use common::probe::run_tool;
use common::{PublishOpts, Publisher};
use rig::{Mode, Rig, RTMP};
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// What rml_rtmp's client saw of a play: its events, and when the first
/// video keyframe arrived (from the play request).
struct Played {
    events: Vec<ClientSessionEvent>,
    first_keyframe: Option<Duration>,
}

fn play(stream: &str, read_for: Duration) -> Result<Played> {
    let mut s = TcpStream::connect("10.200.0.1:1935")?;
    s.set_read_timeout(Some(Duration::from_millis(100)))?;
    let mut hs = Handshake::new(PeerType::Client);
    s.write_all(&hs.generate_outbound_p0_and_p1()?)?;
    let mut buf = vec![0u8; 64 * 1024];
    let end = Instant::now() + Duration::from_secs(5);
    let leftover = loop {
        if Instant::now() > end {
            bail!("RTMP handshake did not complete");
        }
        let n = match s.read(&mut buf) {
            Ok(0) => bail!("closed during the handshake"),
            Ok(n) => n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted) => continue,
            Err(e) => return Err(e.into()),
        };
        match hs.process_bytes(&buf[..n])? {
            HandshakeProcessResult::InProgress { response_bytes } => s.write_all(&response_bytes)?,
            HandshakeProcessResult::Completed { response_bytes, remaining_bytes } => {
                s.write_all(&response_bytes)?;
                break remaining_bytes;
            }
        }
    };
    let (mut client, initial) = ClientSession::new(ClientSessionConfig::new())?;
    let mut events = Vec::new();
    let send = |s: &mut TcpStream, results: Vec<ClientSessionResult>, events: &mut Vec<ClientSessionEvent>| -> Result<()> {
        for r in results {
            match r {
                ClientSessionResult::OutboundResponse(p) => s.write_all(&p.bytes)?,
                ClientSessionResult::RaisedEvent(e) => events.push(e),
                ClientSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
        Ok(())
    };
    send(&mut s, initial, &mut events)?;
    let r = client.request_connection("live".into())?;
    send(&mut s, vec![r], &mut events)?;
    let mut asked = None;
    let mut first_keyframe = None;
    let start = Instant::now();
    let mut input = leftover;
    while start.elapsed() < read_for {
        if !input.is_empty() {
            let results = client.handle_input(&input)?;
            input.clear();
            send(&mut s, results, &mut events)?;
        }
        if asked.is_none() && events.contains(&ClientSessionEvent::ConnectionRequestAccepted) {
            let r = client.request_playback(stream.into())?;
            send(&mut s, vec![r], &mut events)?;
            asked = Some(Instant::now());
        }
        if first_keyframe.is_none() {
            let key = events.iter().any(|e| matches!(e, ClientSessionEvent::VideoDataReceived { data, .. } if data.len() > 1 && data[0] >> 4 == 1 && data[1] == 1));
            if key {
                first_keyframe = asked.map(|a| a.elapsed());
            }
        }
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => input.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Played { events, first_keyframe })
}

#[test]
fn ffmpeg_and_ffprobe_read_rtmp_play_as_published() -> Result<()> {
    let rig = Rig::start(Mode::Serve, "")?;
    let opts = PublishOpts { audio: true, profile: "high".into(), bframes: Some(2), gop: 30, size: "320x240".into(), ..Default::default() };
    let _publisher = Publisher::start(&format!("{RTMP}/live/r"), &opts)?;
    rig.wait_live("live", "r", Duration::from_secs(20))?;
    std::thread::sleep(Duration::from_millis(1500)); // a GOP in the cache

    let p = play("r", Duration::from_secs(2))?;
    assert!(p.events.contains(&ClientSessionEvent::PlaybackRequestAccepted), "play accepted");
    let video: Vec<(u32, &[u8])> = p.events.iter().filter_map(|e| match e {
        ClientSessionEvent::VideoDataReceived { data, timestamp, .. } => Some((timestamp.value, &data[..])),
        _ => None,
    }).collect();
    assert_eq!(&video.first().context("no video")?.1[..2], &[0x17, 0], "the AVC sequence header first");
    let first_coded = video.iter().find(|(_, d)| d.get(1) == Some(&1)).context("no coded video")?;
    assert_eq!(first_coded.1[0] >> 4, 1, "the first coded frame is a keyframe");
    assert!(video.windows(2).all(|w| w[1].0 >= w[0].0), "monotonic video timestamps");
    assert!(video.len() > 40, "2 s of 30 fps video: {}", video.len());
    let aac_header = p.events.iter().any(|e| matches!(e, ClientSessionEvent::AudioDataReceived { data, .. } if data.starts_with(&[0xaf, 0])));
    assert!(aac_header, "the AAC sequence header: AAC stays AAC");
    let waited = p.first_keyframe.context("no keyframe in 2 s")?;
    println!("RTMP play: first keyframe {:.1} ms after the play request", waited.as_secs_f64() * 1e3);
    assert!(waited < Duration::from_millis(500), "first keyframe {waited:?} after the play request, bound 500 ms");

    let url = format!("{RTMP}/live/r");
    common::probe::assert_high_with_b_frames_and_aac(&url)?;

    let file = rig.dir.join("copy.flv");
    let file = file.to_str().context("utf-8 path")?;
    run_tool("ffmpeg", &["-hide_banner", "-v", "error", "-nostdin", "-rw_timeout", "5000000", "-i", &url, "-t", "3", "-c", "copy", "-y", file])?;
    let decoded = run_tool("ffprobe", &["-v", "error", "-count_frames", "-select_streams", "v", "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", file])?;
    let frames: u64 = String::from_utf8_lossy(&decoded.stdout).trim().parse().context("frame count")?;
    assert!(frames >= 80, "about 3 s of video decoded: {frames}");
    assert!(decoded.stderr.is_empty(), "decode errors: {}", String::from_utf8_lossy(&decoded.stderr));
    let first = run_tool("ffprobe", &["-v", "error", "-select_streams", "v", "-show_entries", "packet=flags", "-read_intervals", "%+#1", "-of", "csv=p=0", file])?;
    assert!(String::from_utf8_lossy(&first.stdout).trim().starts_with('K'), "the copy starts on a keyframe");

    // A stream that is not live: an error status, no media.
    let p = play("nothing", Duration::from_millis(800))?;
    assert!(p.events.iter().any(|e| matches!(e, ClientSessionEvent::UnhandleableOnStatusCode { code } if code == "NetStream.Play.StreamNotFound")), "refused");
    assert!(!p.events.iter().any(|e| matches!(e, ClientSessionEvent::VideoDataReceived { .. })));
    std::thread::sleep(Duration::from_millis(1200)); // the shards' next stats
    assert_eq!(rig.shard_counter("rtmp_play_refused")?, 1);
    Ok(())
}
