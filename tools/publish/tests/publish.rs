//! End to end: the real `rts-publish` binary (and ffmpeg) against an in-test RTMP server
//! built on the project's `rts-rtmp` crate.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rts_publish::annexb::nal_type;
use rts_publish::sei::parse_timestamp_sei;
use rts_rtmp::flv::{parse_video_tag, AvccNalus, VideoTag};
use rts_rtmp::{RtmpEvent, RtmpOutput, RtmpServerConn};

fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

#[derive(Default, Debug)]
struct Received {
    publish: Option<(String, String, String)>,
    sequence_headers: usize,
    /// (RTMP timestamp, SEI timestamp, receive time) per frame.
    frames: Vec<(u32, u64, u64)>,
}

/// Accepts one connection; accepts or rejects its publish; records video until EOF.
fn server(accept: bool) -> (u16, JoinHandle<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut conn = RtmpServerConn::new();
        let mut got = Received::default();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = sock.read(&mut buf).unwrap_or(0);
            if n == 0 {
                let _ = conn.handle_eof();
            } else if conn.handle_input(&buf[..n]).is_err() {
                break;
            }
            while let Some(out) = conn.poll_output() {
                match out {
                    RtmpOutput::Transmit(b) => {
                        let _ = sock.write_all(&b);
                    }
                    RtmpOutput::Event(RtmpEvent::PublishRequested {
                        request_id,
                        app,
                        stream,
                        query,
                    }) => {
                        got.publish = Some((app, stream, query));
                        if accept {
                            conn.accept_publish(request_id).unwrap();
                        } else {
                            conn.reject_publish(request_id, "bad auth_key").unwrap();
                        }
                    }
                    RtmpOutput::Event(RtmpEvent::Video { timestamp_ms, data }) => {
                        match parse_video_tag(&data).unwrap() {
                            VideoTag::AvcSequenceHeader(cfg) => {
                                assert_eq!(cfg.nal_length_size, 4);
                                assert_eq!(cfg.profile, 66);
                                got.sequence_headers += 1;
                            }
                            VideoTag::AvcNalus { data, .. } => {
                                let sei = AvccNalus::new(&data, 4)
                                    .map(|n| n.unwrap())
                                    .filter(|n| nal_type(n) == 6)
                                    .find_map(parse_timestamp_sei)
                                    .expect("every frame carries our SEI");
                                got.frames.push((timestamp_ms, sei, unix_us()));
                            }
                            other => panic!("unexpected tag {other:?}"),
                        }
                    }
                    RtmpOutput::Event(_) => {}
                }
            }
            if n == 0 {
                break;
            }
        }
        got
    });
    (port, h)
}

fn publish(port: u16, duration: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rts-publish"))
        .args([
            "--url",
            &format!("rtmp://127.0.0.1:{port}/live/s?auth_key=abc"),
        ])
        .args([
            "--size",
            "160x96",
            "--fps",
            "30",
            "--gop",
            "30",
            "--bitrate",
            "200k",
            "--duration",
            duration,
        ])
        .output()
        .unwrap()
}

#[test]
fn publishes_stamped_frames() {
    let (port, h) = server(true);
    let out = publish(port, "2");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = h.join().unwrap();
    assert_eq!(
        got.publish,
        Some(("live".into(), "s".into(), "auth_key=abc".into()))
    );
    assert_eq!(got.sequence_headers, 1);
    assert!(got.frames.len() >= 30, "{} frames", got.frames.len());
    for w in got.frames.windows(2) {
        assert!(w[1].0 > w[0].0, "RTMP timestamps increase");
        assert!(w[1].1 > w[0].1, "SEI timestamps increase");
    }
    for (i, &(ts, sei, rx)) in got.frames.iter().enumerate() {
        assert_eq!(ts, (i as u64 * 1000 / 30) as u32);
        assert!(
            sei <= rx && rx - sei < 1_000_000,
            "frame {i}: stamped {sei}, received {rx}"
        );
    }
}

#[test]
fn refused_publish_exits_3() {
    let (port, h) = server(false);
    let out = publish(port, "10");
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("BadName"));
    let got = h.join().unwrap();
    assert!(got.frames.is_empty());
}
