//! Wire-level lip sync, no browser: is the audio *content* where its RTP timestamps
//! say it is, relative to the video?
//!
//! ffmpeg renders the same flash + beep source as `tests/media_sync.rs` (a white
//! frame and a 1 kHz beep, both 100 ms every 2 s, at the same source time) to an FLV
//! file, H.264 + AAC 48 kHz, exactly as it would publish it over RTMP. Then:
//!
//! - video: each AVC frame is decoded with libavcodec (ffmpeg-next); a flash onset is
//!   the first bright frame after a dark one, at its FLV presentation time
//!   (dts + composition time) — the time the dataplane puts in the video RTP
//!   timestamp (`pts * 90`);
//! - audio: the AAC frames go through [`AacToOpus`] with their FLV timestamps, as the
//!   transcode worker gets them from `dataplane/src/transcode.rs`; every Opus packet
//!   is decoded with libopus and its samples are laid out on the 48 kHz RTP timeline
//!   (sample `i` of a packet plays at `rtp_timestamp + i`, which is what a WebRTC
//!   receiver does). A beep onset is the first sample above a threshold after 0.5 s
//!   of quiet, converted back to FLV ms as `rtp / 48` — the dataplane's sender
//!   reports map RTP time to NTP with `ms * 48` for audio and `ms * 90` for video
//!   from the same stream clock, so this is the time a synchronising receiver
//!   renders that sample at, relative to the video.
//!
//! audio onset − video onset is then the A/V offset our server puts on the wire.
//! Run with `--nocapture` to see the numbers.

use ffmpeg_next as ff;
use rts_transcode::{parse_avc_config, AacToOpus, OpusPacket, WorkerOptions, OPUS_RATE};

mod common;
use common::{ffmpeg, h264_decoder, parse_flv, Flv, VideoFrame};

/// Same lavfi graphs as tests/media_sync.rs.
const VIDEO: &str = "color=black:s=320x240:r=30,drawbox=x=0:y=0:w=iw:h=ih:color=white:t=fill:enable='lt(mod(t,2),0.1)'";
const AUDIO: &str = "sine=frequency=1000:sample_rate=48000:samples_per_frame=480,volume='if(lt(mod(t,2),0.1),1,0)':eval=frame";
/// The bound on |audio − video| at the wire. One video frame is 33 ms, but the flash
/// is frame-exact in the source (t = 0, 2, 4 ... s fall on frames), and AAC/Opus keep
/// the beep onset to within a few ms (pre-echo), so anything beyond this is a bug.
const MAX_WIRE_OFFSET_MS: f64 = 10.0;

fn flash_beep_flv(extra: &[&str], tag: &str) -> Flv {
    let mut args = vec!["-f", "lavfi", "-i", VIDEO, "-f", "lavfi", "-i", AUDIO];
    args.extend_from_slice(&["-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "60"]);
    args.extend_from_slice(&["-c:a", "aac", "-ar", "48000", "-t", "7"]);
    // Last, so they override the defaults above.
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-f", "flv"]);
    let flv = parse_flv(&ffmpeg(&format!("av-alignment-{tag}.flv"), &args));
    assert!(
        !flv.asc.is_empty() && !flv.avc_config.is_empty(),
        "no AAC/AVC sequence headers"
    );
    flv
}

/// Flash onsets (FLV presentation ms): decode every frame, first bright one after a
/// dark one.
fn flash_onsets(flv: &Flv) -> Vec<f64> {
    let cfg = parse_avc_config(&flv.avc_config).unwrap();
    let mut dec = h264_decoder();
    let mut frame = ff::frame::Video::empty();
    let mut onsets = Vec::new();
    let mut bright = true; // an onset needs a dark frame first
    let mut check = |dec: &mut ff::decoder::Video, onsets: &mut Vec<f64>| {
        while dec.receive_frame(&mut frame).is_ok() {
            let pts = frame.pts().expect("frame pts");
            // Mean of the Y plane (the source is full-frame black or white).
            let (w, h, stride) = (
                frame.width() as usize,
                frame.height() as usize,
                frame.stride(0),
            );
            let y = frame.data(0);
            let sum: u64 = (0..h)
                .flat_map(|r| &y[r * stride..r * stride + w])
                .map(|&v| u64::from(v))
                .sum();
            let is_bright = sum as f64 / (w * h) as f64 > 128.0;
            if is_bright && !bright {
                onsets.push(pts as f64);
            }
            bright = is_bright;
        }
    };
    for (i, VideoFrame { avcc, dts, cts }) in flv.video.iter().enumerate() {
        // Annex B with the parameter sets in front of the first frame.
        let mut annexb = Vec::new();
        if i == 0 {
            for set in cfg.sps.iter().chain(&cfg.pps) {
                annexb.extend_from_slice(&[0, 0, 0, 1]);
                annexb.extend_from_slice(set);
            }
        }
        let mut p = 0;
        while p + cfg.nal_length_size <= avcc.len() {
            let len = avcc[p..p + cfg.nal_length_size]
                .iter()
                .fold(0usize, |a, &b| (a << 8) | usize::from(b));
            p += cfg.nal_length_size;
            annexb.extend_from_slice(&[0, 0, 0, 1]);
            annexb.extend_from_slice(&avcc[p..p + len]);
            p += len;
        }
        let mut pkt = ff::Packet::copy(&annexb);
        pkt.set_dts(Some(i64::from(*dts)));
        pkt.set_pts(Some(i64::from(*dts) + i64::from(*cts)));
        dec.send_packet(&pkt).unwrap();
        check(&mut dec, &mut onsets);
    }
    dec.send_eof().unwrap();
    check(&mut dec, &mut onsets);
    onsets
}

/// The AAC frames through the transcoder, as the worker runs it.
fn transcode(flv: &Flv) -> (Vec<OpusPacket>, u16) {
    let mut t = AacToOpus::new(&flv.asc, WorkerOptions::default().opus_bitrate_bps).unwrap();
    let mut out = Vec::new();
    for (aac, ts) in &flv.audio {
        t.push(aac, *ts, &mut out).unwrap();
    }
    t.flush(&mut out);
    (out, u16::from(t.config().channels))
}

/// Beep onsets (FLV ms = RTP / 48): decode each Opus packet with libopus and place
/// its samples at the packet's RTP timestamp.
fn beep_onsets(packets: &[OpusPacket], channels: u16) -> Vec<f64> {
    let ch = if channels == 1 {
        opus::Channels::Mono
    } else {
        opus::Channels::Stereo
    };
    let mut dec = opus::Decoder::new(OPUS_RATE, ch).unwrap();
    let mut pcm = vec![0f32; 5760 * usize::from(channels)];
    let mut onsets = Vec::new();
    let mut quiet = 0usize;
    let mut expected_rtp = packets[0].rtp_timestamp;
    for p in packets {
        assert_eq!(
            p.rtp_timestamp, expected_rtp,
            "RTP timeline is continuous for a gapless source"
        );
        expected_rtp = p.rtp_timestamp.wrapping_add(p.samples);
        let n = dec.decode_float(&p.data, &mut pcm, false).unwrap();
        for i in 0..n {
            let x = pcm[i * usize::from(channels)];
            if x.abs() > 0.03 {
                if quiet > OPUS_RATE as usize / 2 {
                    // The first packets may carry RTP times "before zero" (lookahead
                    // compensation): interpret as signed.
                    let rtp = p.rtp_timestamp.wrapping_add(i as u32) as i32;
                    onsets.push(f64::from(rtp) * 1000.0 / f64::from(OPUS_RATE));
                }
                quiet = 0;
            } else {
                quiet += 1;
            }
        }
    }
    onsets
}

fn measure(extra: &[&str], tag: &str) -> Vec<f64> {
    let flv = flash_beep_flv(extra, tag);
    let flashes = flash_onsets(&flv);
    let (packets, channels) = transcode(&flv);
    let beeps = beep_onsets(&packets, channels);
    println!(
        "[{tag}] first FLV timestamps: audio {} ms, video {} ms",
        flv.audio[0].1, flv.video[0].dts
    );
    println!("[{tag}] flash onsets (FLV ms): {flashes:?}");
    println!("[{tag}] beep onsets  (FLV ms): {beeps:.2?}");
    // The source has events at 0, 2, 4, 6 s; the one at 0 has no dark frame or quiet
    // before it, so 2, 4 and 6 s are measured.
    assert_eq!(flashes.len(), 3, "flash onsets: {flashes:?}");
    assert_eq!(beeps.len(), 3, "beep onsets: {beeps:?}");
    let offsets: Vec<f64> = flashes.iter().zip(&beeps).map(|(f, b)| b - f).collect();
    println!("[{tag}] wire A/V offsets, audio minus video (ms; + = audio late): {offsets:.2?}");
    offsets
}

/// Every beep within [`MAX_WIRE_OFFSET_MS`] of its flash.
fn assert_aligned(offsets: &[f64]) {
    for o in offsets {
        assert!(
            o.abs() <= MAX_WIRE_OFFSET_MS,
            "wire A/V offset {o:.2} ms outside ±{MAX_WIRE_OFFSET_MS} ms: {offsets:.2?}"
        );
    }
}

#[test]
fn opus_rtp_timeline_matches_video_at_the_wire() {
    // What tests/media_sync.rs publishes: baseline, no B-frames.
    let offsets = measure(
        &["-profile:v", "baseline", "-tune", "zerolatency"],
        "baseline",
    );
    assert_aligned(&offsets);
}

#[test]
fn opus_rtp_timeline_matches_video_with_b_frames() {
    // x264 defaults (B-frames): ffmpeg shifts timestamps for the negative DTS, which
    // must not move audio against video.
    let offsets = measure(&["-bf", "3"], "bframes");
    assert_aligned(&offsets);
}

#[test]
fn opus_rtp_timeline_matches_video_from_44k1_stereo() {
    // 44.1 kHz goes through the resampler, whose group delay the transcoder trims.
    let offsets = measure(
        &[
            "-profile:v",
            "baseline",
            "-tune",
            "zerolatency",
            "-ar",
            "44100",
            "-ac",
            "2",
        ],
        "44k1",
    );
    assert_aligned(&offsets);
}
