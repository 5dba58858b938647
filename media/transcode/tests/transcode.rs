//! End-to-end tests with real ffmpeg-generated AAC and H.264 (no network, no fixtures
//! checked in). Run with `--nocapture` to see the measured delays.

use std::time::{Duration, Instant};

use bytes::Bytes;
use rts_transcode::*;

mod common;
use common::{ffmpeg, parse_flv, Flv, VideoFrame};

// ---------------------------------------------------------------- input generation

/// A 440 Hz tone as ADTS AAC-LC, split into raw frames plus the matching ASC.
fn aac_tone(rate: u32, channels: u8, secs: u32) -> (Vec<u8>, Vec<Vec<u8>>) {
    let src = format!("sine=frequency=440:sample_rate={rate}:duration={secs}");
    let data = ffmpeg(
        &format!("{rate}-{channels}.aac"),
        &[
            "-f",
            "lavfi",
            "-i",
            &src,
            "-ac",
            &channels.to_string(),
            "-c:a",
            "aac",
            "-b:a",
            "128k",
            "-f",
            "adts",
        ],
    );
    split_adts(&data)
}

fn split_adts(data: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut frames = Vec::new();
    let mut asc = Vec::new();
    let mut pos = 0;
    while pos + 7 <= data.len() {
        let h = &data[pos..];
        assert!(h[0] == 0xff && h[1] & 0xf0 == 0xf0, "ADTS sync lost");
        let protection_absent = h[1] & 1 == 1;
        let object_type = ((h[2] >> 6) & 3) + 1;
        let sf_index = (h[2] >> 2) & 0xf;
        let ch = ((h[2] & 1) << 2) | (h[3] >> 6);
        let len = (usize::from(h[3] & 3) << 11) | (usize::from(h[4]) << 3) | usize::from(h[5] >> 5);
        let header = if protection_absent { 7 } else { 9 };
        if asc.is_empty() {
            let v: u16 =
                (u16::from(object_type) << 11) | (u16::from(sf_index) << 7) | (u16::from(ch) << 3);
            asc = v.to_be_bytes().to_vec();
        }
        frames.push(h[header..len].to_vec());
        pos += len;
    }
    (asc, frames)
}

fn h264_flv(name: &str, secs: u32, extra: &[&str]) -> Flv {
    let t = secs.to_string();
    let mut args = vec![
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x240:rate=30",
        "-t",
        &t,
        "-an",
        "-c:v",
        "libx264",
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-pix_fmt", "yuv420p", "-f", "flv"]);
    parse_flv(&ffmpeg(name, &args))
}

// ---------------------------------------------------------------- audio

fn audio_case(rate: u32, channels: u8) {
    let (asc, frames) = aac_tone(rate, channels, 2);
    let cfg = parse_audio_specific_config(&asc).unwrap();
    assert_eq!(
        (cfg.sample_rate, cfg.channels, cfg.object_type),
        (rate, channels, 2)
    );
    let mut t = AacToOpus::new(&asc, 96_000).unwrap();
    let frame_ms = 1024.0 * 1000.0 / f64::from(rate);
    let mut packets = Vec::new();
    // (packet index, arrival time in ms of the AAC frame whose push emitted it)
    let mut emitted_at = Vec::new();
    let start = Instant::now();
    for (i, f) in frames.iter().enumerate() {
        let ts = (i as u64 * 1024 * 1000 / u64::from(rate)) as u32;
        let before = packets.len();
        t.push(f, ts, &mut packets).unwrap();
        for _ in before..packets.len() {
            emitted_at.push(f64::from(ts) + frame_ms);
        }
    }
    let cpu = start.elapsed();
    let steady = emitted_at.len();
    t.flush(&mut packets);
    assert!(
        packets.len() >= 95 && packets.len() <= 110,
        "{} packets for 2 s",
        packets.len()
    );

    let rtp0 = packets[0].rtp_timestamp;
    let lookahead = 0u32.wrapping_sub(rtp0);
    assert!(
        lookahead < 480,
        "first RTP timestamp {rtp0} is not FLV time 0 minus the lookahead"
    );
    for (i, p) in packets.iter().enumerate() {
        assert_eq!(p.samples, 960);
        assert_eq!(
            p.rtp_timestamp,
            rtp0.wrapping_add(960 * i as u32),
            "RTP timestamps not continuous"
        );
    }

    // Latency: age of each packet's last sample when it is emitted, if the publisher
    // delivers AAC frames in real time.
    let mut max_age: f64 = 0.0;
    let mut sum = 0.0;
    for (i, at) in emitted_at.iter().enumerate() {
        let end_ms = (f64::from(960 * (i as u32 + 1)) - f64::from(lookahead)) / 48.0;
        let age = at - end_ms;
        max_age = max_age.max(age);
        sum += age;
    }
    let mean = sum / steady as f64;
    println!(
        "audio {rate} Hz x{channels}: {} packets, lookahead {lookahead} samples, added delay mean {mean:.1} ms max {max_age:.1} ms (self-reported {:.1} ms), CPU {:.2} ms per 20 ms packet (debug build)",
        packets.len(),
        t.added_delay_ms(),
        cpu.as_secs_f64() * 1000.0 / steady as f64
    );
    assert!(max_age < 60.0, "added audio delay {max_age} ms");
    assert!((t.added_delay_ms() - mean).abs() < 1.0);

    // Decode with libopus and check the tone survived on every channel.
    let och = if channels == 1 {
        opus::Channels::Mono
    } else {
        opus::Channels::Stereo
    };
    let mut dec = opus::Decoder::new(48_000, och).unwrap();
    let mut pcm = vec![0i16; 960 * usize::from(channels)];
    let mut all = Vec::new();
    for p in &packets {
        let n = dec.decode(&p.data, &mut pcm, false).unwrap();
        assert_eq!(n, 960);
        all.extend_from_slice(&pcm);
    }
    let ch = usize::from(channels);
    for c in 0..ch {
        let mono: Vec<i16> = all.iter().skip(c).step_by(ch).copied().collect();
        // Steady state only: skip AAC priming and the flush tail.
        let seg = &mono[4800..mono.len() - 9600];
        let crossings = seg.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
        let freq = crossings as f64 / 2.0 / (seg.len() as f64 / 48_000.0);
        let peak = seg.iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!((freq - 440.0).abs() < 4.0, "channel {c}: {freq} Hz");
        assert!(peak > 1000, "channel {c}: tone lost (peak {peak})");
    }
}

#[test]
fn aac_44100_mono() {
    audio_case(44_100, 1);
}
#[test]
fn aac_44100_stereo() {
    audio_case(44_100, 2);
}
#[test]
fn aac_48000_mono() {
    audio_case(48_000, 1);
}
#[test]
fn aac_48000_stereo() {
    audio_case(48_000, 2);
}

#[test]
fn aac_timestamp_gap_jumps_rtp_clock() {
    let (asc, frames) = aac_tone(48_000, 1, 1);
    let mut t = AacToOpus::new(&asc, 64_000).unwrap();
    let mut out = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        // A 2 s publisher gap after frame 20.
        let gap = if i > 20 { 2000 } else { 0 };
        t.push(f, (i as u32 * 1024 * 1000 / 48_000) + gap, &mut out)
            .unwrap();
    }
    let steps: Vec<u32> = out
        .windows(2)
        .map(|w| w[1].rtp_timestamp.wrapping_sub(w[0].rtp_timestamp))
        .collect();
    let jumps: Vec<&u32> = steps.iter().filter(|&&s| s != 960).collect();
    assert_eq!(jumps.len(), 1, "exactly one jump expected: {jumps:?}");
    let jump_ms = (*jumps[0] - 960) / 48;
    assert!((1980..=2000).contains(&jump_ms), "jump {jump_ms} ms");
}

// ---------------------------------------------------------------- video

fn annexb(nals: &[Vec<u8>], out: &mut Vec<u8>) {
    for n in nals {
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(n);
    }
}

#[test]
fn bframes_reencoded_to_constrained_baseline() {
    let src = h264_flv(
        "bf3.flv",
        4,
        &["-profile:v", "high", "-bf", "3", "-g", "30"],
    );
    let avc = parse_avc_config(&src.avc_config).unwrap();
    assert_eq!(
        has_b_frames(&avc.sps[0]),
        Some(true),
        "x264 -bf 3 SPS should announce reordering"
    );
    assert!(
        src.video.iter().any(|f| f.cts != 0),
        "input should have composition offsets"
    );
    let n_in = src.video.len();

    let opts = ReencodeOptions {
        bitrate_bps: 800_000,
        max_keyframe_interval_ms: 2000,
        threads: 2,
    };
    let mut r = H264Reencoder::new(&src.avc_config, &opts).unwrap();
    let mut out = Vec::new();
    let mut worst = Duration::ZERO;
    let start = Instant::now();
    for (i, VideoFrame { avcc, dts, cts }) in src.video.iter().enumerate() {
        let t0 = Instant::now();
        r.push(avcc, *dts, *cts, &mut out).unwrap();
        worst = worst.max(t0.elapsed());
        if i == 45 {
            r.request_keyframe();
        }
    }
    let cpu = start.elapsed();
    let delay = r.added_delay_ms();
    r.flush(&mut out).unwrap();
    println!(
        "video 320x240@30 high bf3 -> baseline: {n_in} in, {} out, reorder delay {delay:.1} ms, encode+decode mean {:.2} ms/frame, worst {:.2} ms (debug build of the Rust side)",
        out.len(),
        cpu.as_secs_f64() * 1000.0 / n_in as f64,
        worst.as_secs_f64() * 1000.0
    );
    assert!(
        out.len().abs_diff(n_in) <= 2,
        "{} frames in, {} out",
        n_in,
        out.len()
    );
    assert!(delay < 150.0, "added delay {delay} ms");

    let (sps, pps) = r.parameter_sets();
    assert_eq!(sps[0][1], 66, "profile_idc must be baseline");
    assert_ne!(
        sps[0][2] & 0x40,
        0,
        "constraint_set1_flag must be set (constrained baseline)"
    );
    assert_eq!(has_b_frames(&sps[0]), Some(false));

    assert!(out[0].keyframe);
    assert!(
        out.windows(2).all(|w| w[1].pts_ms > w[0].pts_ms),
        "pts not strictly increasing"
    );
    let keys: Vec<u64> = out
        .iter()
        .filter(|f| f.keyframe)
        .map(|f| f.pts_ms)
        .collect();
    assert!(
        keys.windows(2).all(|w| w[1] - w[0] <= 2000),
        "keyframe gap > 2 s: {keys:?}"
    );
    // The request after input frame 45 yields a keyframe close behind (within the
    // reorder depth), not at the 2 s cadence (which would be at ~2000 ms).
    assert!(
        keys.iter().any(|&k| (1400..1700).contains(&k)),
        "requested keyframe missing: {keys:?}"
    );
    // No parameter sets or AUDs in the frames; SEI only where the source frame of
    // the same pts had it (x264's version SEI in the first frame), byte for byte.
    let source_sei: std::collections::HashMap<i64, Vec<Vec<u8>>> = src
        .video
        .iter()
        .map(|f| (f.dts as i64 + f.cts as i64, sei_of(&f.avcc)))
        .collect();
    assert!(out.iter().all(|f| !f.nalus.is_empty()
        && f.nalus.iter().all(|n| !matches!(n[0] & 0x1f, 7..=9))));
    for f in &out {
        let sei: Vec<Vec<u8>> = f
            .nalus
            .iter()
            .filter(|n| n[0] & 0x1f == 6)
            .map(|n| n.to_vec())
            .collect();
        assert_eq!(Some(&sei), source_sei.get(&(f.pts_ms as i64)), "SEI of the frame at {} ms", f.pts_ms);
    }

    // Decode the output with libavcodec: every picture must be I or P.
    let decoded = decode_reencoded(&sps, &pps, &out);
    assert_eq!(decoded.len(), out.len());
    assert!(decoded.iter().all(|(k, _)| matches!(
        k,
        ffmpeg_next::picture::Type::I | ffmpeg_next::picture::Type::P
    )));
    // No reordering in the output: decode order == presentation order.
    let dec_pts: Vec<i64> = decoded.iter().map(|d| d.1).collect();
    let enc_pts: Vec<i64> = out.iter().map(|f| f.pts_ms as i64).collect();
    assert_eq!(dec_pts, enc_pts);
}

/// Decodes re-encoded frames (parameter sets first) with libavcodec and
/// returns each picture's type and pts, in output order.
fn decode_reencoded(sps: &[Vec<u8>], pps: &[Vec<u8>], frames: &[EncodedFrame]) -> Vec<(ffmpeg_next::picture::Type, i64)> {
    let mut dec = common::h264_decoder();
    let mut frame = ffmpeg_next::frame::Video::empty();
    let mut decoded = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        let mut buf = Vec::new();
        if i == 0 {
            annexb(sps, &mut buf);
            annexb(pps, &mut buf);
        }
        let nals: Vec<Vec<u8>> = f.nalus.iter().map(|b| b.to_vec()).collect();
        annexb(&nals, &mut buf);
        let mut pkt = ffmpeg_next::Packet::copy(&buf);
        pkt.set_pts(Some(f.pts_ms as i64));
        dec.send_packet(&pkt).unwrap();
        while dec.receive_frame(&mut frame).is_ok() {
            decoded.push((frame.kind(), frame.pts().unwrap()));
        }
    }
    dec.send_eof().unwrap();
    while dec.receive_frame(&mut frame).is_ok() {
        decoded.push((frame.kind(), frame.pts().unwrap()));
    }
    decoded
}

/// A re-encoder started mid-GOP catches up on the frames since the
/// keyframe by decoding them only: one IDR of the newest picture decoded,
/// then every later picture as usual (decision 031).
#[test]
fn a_catch_up_encodes_only_its_newest_picture() {
    // 3 s at 30 fps in one GOP (-g 90): the catch-up starts on frame 0.
    let src = h264_flv("bf3-catchup.flv", 3, &["-profile:v", "high", "-bf", "3", "-g", "90"]);
    assert_eq!(src.video.len(), 90);
    let opts = ReencodeOptions { bitrate_bps: 800_000, max_keyframe_interval_ms: 2000, threads: 2 };
    let mut r = H264Reencoder::new(&src.avc_config, &opts).unwrap();
    let mut out = Vec::new();
    r.begin_catch_up();
    let caught_up = 45;
    for VideoFrame { avcc, dts, cts } in &src.video[..caught_up] {
        r.push(avcc, *dts, *cts, &mut out).unwrap();
    }
    assert!(out.is_empty(), "nothing encoded during the catch-up: {} frames", out.len());
    assert!(r.end_catch_up(&mut out).unwrap());
    assert_eq!(out.len(), 1, "one frame at the catch-up's end");
    assert!(out[0].keyframe, "an IDR");
    let pts = |f: &VideoFrame| (f.dts as i64 + f.cts as i64) as u64;
    let fed: Vec<u64> = src.video[..caught_up].iter().map(pts).collect();
    let newest_fed = *fed.iter().max().unwrap();
    let idr = out[0].pts_ms;
    // The decoder holds pictures back for reordering (5 frames behind the
    // newest here, as for live frames): the IDR is a picture fed, at most 6
    // frame intervals (33.3 ms) before the newest, not the GOP's first.
    assert!(fed.contains(&idr) && idr + 6 * 34 >= newest_fed, "IDR at {idr} ms, newest picture fed at {newest_fed} ms");
    for VideoFrame { avcc, dts, cts } in &src.video[caught_up..] {
        r.push(avcc, *dts, *cts, &mut out).unwrap();
    }
    r.flush(&mut out).unwrap();
    // Every picture after the IDR, once each and in order; none before it.
    let mut later: Vec<u64> = src.video.iter().map(pts).filter(|&p| p > idr).collect();
    later.sort_unstable();
    let got: Vec<u64> = out[1..].iter().map(|f| f.pts_ms).collect();
    assert_eq!(got, later);
    // The output decodes from its first frame on, an I then P-frames.
    let (sps, pps) = r.parameter_sets();
    let decoded = decode_reencoded(&sps, &pps, &out);
    assert_eq!(decoded.len(), out.len(), "every frame decodes");
    assert_eq!(decoded[0], (ffmpeg_next::picture::Type::I, idr as i64));
    assert!(decoded[1..].iter().all(|(k, _)| *k == ffmpeg_next::picture::Type::P), "P-frames after the IDR (the next is due 2 s on, past the end)");
}

/// The worker marks a catch-up's end: the IDR (after the parameter sets),
/// then `CaughtUp`, and nothing else for the frames it decoded.
#[test]
fn worker_ends_a_catch_up_with_one_idr_then_caught_up() {
    let src = h264_flv("bf3-worker-catchup.flv", 1, &["-profile:v", "high", "-bf", "3", "-g", "90"]);
    let w = TranscodeWorker::spawn("rts-tc-catchup", false, true, WorkerOptions::default()).unwrap();
    w.try_send(Job::VideoConfig(Bytes::from(src.avc_config.clone()))).unwrap();
    w.try_send(Job::BeginCatchUp).unwrap();
    for VideoFrame { avcc, dts, cts } in &src.video[..20] {
        w.try_send(Job::Video { avcc: Bytes::from(avcc.clone()), dts_ms: *dts, cts_ms: *cts }).unwrap();
    }
    w.try_send(Job::EndCatchUp).unwrap();
    let got = recv_until(&w, |g| matches!(g.last(), Some(Output::CaughtUp { .. })));
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(matches!(got[2], Output::CaughtUp { frames: 20, .. }), "{:?}", got[2]);
    assert!(matches!(got[0], Output::VideoConfig { .. }), "{:?}", got[0]);
    assert!(matches!(&got[1], Output::Video(f) if f.keyframe), "{:?}", got[1]);
    // A catch-up on a stream without its config yet still ends.
    let w = TranscodeWorker::spawn("rts-tc-catchup2", false, true, WorkerOptions::default()).unwrap();
    w.try_send(Job::BeginCatchUp).unwrap();
    w.try_send(Job::EndCatchUp).unwrap();
    let got = recv_until(&w, |g| !g.is_empty());
    assert!(matches!(got[..], [Output::CaughtUp { frames: 0, .. }]), "{got:?}");
}

/// The SEI NAL units of an AVCC frame (4-byte lengths, as x264 writes them).
fn sei_of(avcc: &[u8]) -> Vec<Vec<u8>> {
    let mut sei = Vec::new();
    let mut pos = 0;
    while pos + 4 <= avcc.len() {
        let len = u32::from_be_bytes(avcc[pos..pos + 4].try_into().unwrap()) as usize;
        let nal = &avcc[pos + 4..pos + 4 + len];
        if nal[0] & 0x1f == 6 {
            sei.push(nal.to_vec());
        }
        pos += 4 + len;
    }
    sei
}

/// A user_data_unregistered SEI (H.264 D.1.6) written out by hand: NAL header
/// 0x06, payloadType 5, payloadSize 20 (16-byte UUID + a 4-byte counter), then
/// rbsp_trailing_bits. The counter's bytes avoid 00 00 (no emulation prevention).
fn stamp_sei(n: u8) -> Vec<u8> {
    let mut nal = vec![0x06, 0x05, 20];
    nal.extend_from_slice(b"rts-test-sei-id!");
    nal.extend_from_slice(&[0x11, 0x22, 0x33, n | 0x01]);
    nal.push(0x80);
    nal
}

#[test]
fn source_sei_rides_on_the_reencoded_frame() {
    // Live commerce syncs product cards with SEI; the loadgen's latency stamps
    // are SEI: a re-encoded stream must carry each frame's SEI on the new frame.
    let src = h264_flv("bf3-sei.flv", 3, &["-profile:v", "high", "-bf", "3", "-g", "30"]);
    let opts = ReencodeOptions { bitrate_bps: 800_000, max_keyframe_interval_ms: 2000, threads: 2 };
    let mut r = H264Reencoder::new(&src.avc_config, &opts).unwrap();
    let mut out = Vec::new();
    let mut stamped = std::collections::HashMap::new();
    for (i, f) in src.video.iter().enumerate() {
        let mut avcc = f.avcc.clone();
        if i % 5 == 2 {
            // Stamp every fifth frame (B-frames among them): SEI goes before the slices.
            let sei = stamp_sei(i as u8);
            let mut framed = (sei.len() as u32).to_be_bytes().to_vec();
            framed.extend_from_slice(&sei);
            framed.extend_from_slice(&avcc);
            avcc = framed;
            stamped.insert(f.dts as i64 + f.cts as i64, sei);
        }
        r.push(&avcc, f.dts, f.cts, &mut out).unwrap();
    }
    r.flush(&mut out).unwrap();
    assert!(out.len() + 2 >= src.video.len(), "{} in, {} out", src.video.len(), out.len());
    let mut carried = 0;
    for f in &out {
        let ours: Vec<&[u8]> = f
            .nalus
            .iter()
            .filter(|n| n[0] & 0x1f == 6 && n.get(3..19) == Some(b"rts-test-sei-id!".as_slice()))
            .map(|n| n.as_ref())
            .collect();
        match stamped.get(&(f.pts_ms as i64)) {
            Some(sei) => {
                assert_eq!(ours, vec![sei.as_slice()], "frame at {} ms", f.pts_ms);
                // Before the first slice (H.264 7.4.1.2.3).
                let first_slice = f.nalus.iter().position(|n| matches!(n[0] & 0x1f, 1 | 5)).unwrap();
                let sei_at = f.nalus.iter().position(|n| n.as_ref() == sei.as_slice()).unwrap();
                assert!(sei_at < first_slice);
                carried += 1;
            }
            None => assert!(ours.is_empty(), "frame at {} ms got a stamp it did not have", f.pts_ms),
        }
    }
    assert!(carried + 1 >= stamped.len(), "{carried} of {} stamps carried", stamped.len());
}

#[test]
fn high_profile_without_bframes_is_detected() {
    let src = h264_flv("bf0.flv", 1, &["-profile:v", "high", "-bf", "0"]);
    let avc = parse_avc_config(&src.avc_config).unwrap();
    assert_eq!(avc.sps[0][1], 100);
    assert_eq!(has_b_frames(&avc.sps[0]), Some(false));
    assert!(src.video.iter().all(|f| f.cts == 0));
}

// ---------------------------------------------------------------- worker

fn eventfd_count(fd: std::os::fd::RawFd) -> u64 {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap();
    let line = info
        .lines()
        .find(|l| l.starts_with("eventfd-count:"))
        .unwrap();
    u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
}

fn recv_until(w: &TranscodeWorker, mut done: impl FnMut(&[Output]) -> bool) -> Vec<Output> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = Vec::new();
    while !done(&got) {
        assert!(
            Instant::now() < deadline,
            "worker timed out; got {} outputs",
            got.len()
        );
        match w.try_recv() {
            Some(o) => got.push(o),
            None => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    got
}

#[test]
fn worker_full_queue_returns_job_then_round_trips() {
    let opts = WorkerOptions {
        input_capacity: 1,
        output_capacity: 1,
        ..Default::default()
    };
    let w = TranscodeWorker::spawn("rts-tc-test", true, true, opts).unwrap();
    assert_eq!(eventfd_count(w.wake_fd()), 0);

    // Nobody drains outputs: each bad config yields an Error output, the worker blocks
    // on the full output queue, the input queue fills, and try_send hands jobs back.
    let job = |i: u8| Job::VideoConfig(Bytes::from(vec![i; 3]));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut i = 0u8;
    let returned = loop {
        assert!(Instant::now() < deadline, "queue never filled");
        match w.try_send(job(i)) {
            Ok(()) => i += 1,
            Err(j) => break j,
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    assert_eq!(returned, job(i), "the refused job must come back unchanged");
    let errors = recv_until(&w, |g| g.len() == usize::from(i));
    assert!(errors.iter().all(|o| matches!(o, Output::Error(_))));
    assert!(eventfd_count(w.wake_fd()) >= 1);

    // Round trip: audio config + 1 s of AAC -> Opus; video config + frames -> H.264.
    let (asc, frames) = aac_tone(44_100, 2, 1);
    let mut got = Vec::new();
    // Like the shard: never block; when the queue is full, drain outputs and retry.
    let send = |j: Job, got: &mut Vec<Output>| {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut j = j;
        while let Err(back) = w.try_send(j) {
            assert!(Instant::now() < deadline, "worker stuck");
            j = back;
            while let Some(o) = w.try_recv() {
                got.push(o);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    send(Job::AudioConfig(Bytes::from(asc)), &mut got);
    for (n, f) in frames.iter().enumerate() {
        let timestamp_ms = (n as u64 * 1024 * 1000 / 44_100) as u32;
        send(
            Job::Audio {
                aac: Bytes::from(f.clone()),
                timestamp_ms,
            },
            &mut got,
        );
    }
    let src = h264_flv("worker.flv", 1, &["-profile:v", "high", "-bf", "2"]);
    send(
        Job::VideoConfig(Bytes::from(src.avc_config.clone())),
        &mut got,
    );
    for (
        n,
        VideoFrame {
            avcc,
            dts: dts_ms,
            cts: cts_ms,
        },
    ) in src.video.iter().enumerate()
    {
        send(
            Job::Video {
                avcc: Bytes::from(avcc.clone()),
                dts_ms: *dts_ms,
                cts_ms: *cts_ms,
            },
            &mut got,
        );
        if n == 10 {
            send(Job::RequestKeyframe, &mut got);
        }
    }
    send(Job::Stop, &mut got);
    let n_video = src.video.len();
    let mut rest = recv_until(&w, |g| {
        g.iter().filter(|o| matches!(o, Output::Video(_))).count()
            + got.iter().filter(|o| matches!(o, Output::Video(_))).count()
            >= n_video - 2
    });
    got.append(&mut rest);
    while let Some(o) = w.try_recv() {
        got.push(o);
    }
    assert!(
        got.iter().all(|o| !matches!(o, Output::Error(_))),
        "unexpected error: {got:?}"
    );
    let opus = got.iter().filter(|o| matches!(o, Output::Opus(_))).count();
    assert!((45..=60).contains(&opus), "{opus} Opus packets for 1 s");
    let first_video = got
        .iter()
        .position(|o| matches!(o, Output::Video(_)))
        .unwrap();
    let cfg = got
        .iter()
        .position(|o| matches!(o, Output::VideoConfig { .. }))
        .unwrap();
    assert!(
        cfg < first_video,
        "parameter sets must precede the first frame"
    );
    w.join();
}

// ---------------------------------------------------------------- garbage

struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    assert!(AacToOpus::new(&[], 64_000).is_err());
    assert!(AacToOpus::new(&[0x2b, 0x92, 0x08, 0x00], 64_000).is_err()); // HE-AAC (SBR)
    assert!(AacToOpus::new(&[0x12, 0x30], 64_000).is_err()); // 6 channels
    assert!(H264Reencoder::new(&[], &ReencodeOptions::default()).is_err());
    for _ in 0..200 {
        let len = (rng.next() % 64) as usize;
        let _ = parse_audio_specific_config(&rng.bytes(len));
        let _ = parse_avc_config(&rng.bytes(len));
        let _ = has_b_frames(&rng.bytes(len));
        let _ = AacToOpus::new(&rng.bytes(len), 64_000);
        let _ = H264Reencoder::new(&rng.bytes(len), &ReencodeOptions::default());
    }

    let mut aac = AacToOpus::new(&[0x12, 0x10], 64_000).unwrap();
    let mut out = Vec::new();
    assert!(aac.push(&[], 0, &mut out).is_err());
    let mut errors = 0;
    for i in 0..300 {
        let len = 1 + (rng.next() % 400) as usize;
        if aac.push(&rng.bytes(len), i * 23, &mut out).is_err() {
            errors += 1;
        }
    }
    assert!(
        errors > 250,
        "random bytes decoded as AAC {} times",
        300 - errors
    );

    let src = h264_flv("garbage.flv", 1, &["-profile:v", "main", "-bf", "2"]);
    let mut r = H264Reencoder::new(&src.avc_config, &ReencodeOptions::default()).unwrap();
    let mut frames = Vec::new();
    assert!(
        r.push(&[0, 0, 0, 9, 0x65], 0, 0, &mut frames).is_err(),
        "NAL length past the end"
    );
    for i in 0..200u32 {
        let len = 1 + (rng.next() % 2000) as usize;
        let mut avcc = (len as u32).to_be_bytes().to_vec();
        avcc.extend(rng.bytes(len));
        let _ = r.push(&avcc, i * 33, 0, &mut frames);
    }
    // Still usable with good input afterwards: a keyframe resynchronises it.
    let mut good = Vec::new();
    for VideoFrame { avcc, dts, cts } in &src.video {
        let _ = r.push(avcc, dts + 10_000, *cts, &mut good);
    }
    assert!(
        good.len() >= src.video.len() / 2,
        "{} frames after garbage",
        good.len()
    );
}

#[test]
fn loss_hint_switches_opus_in_band_fec() {
    let mut t = AacToOpus::new(&[0x12, 0x10], 64_000).unwrap();
    assert_eq!(t.loss_hint().unwrap(), (false, 0), "no FEC by default");
    t.set_loss_hint(12).unwrap();
    assert_eq!(t.loss_hint().unwrap(), (true, 12));
    t.set_loss_hint(0).unwrap();
    assert_eq!(t.loss_hint().unwrap(), (false, 0));
    t.set_loss_hint(250).unwrap();
    assert_eq!(t.loss_hint().unwrap(), (true, 100), "clamped to 100 %");
}
