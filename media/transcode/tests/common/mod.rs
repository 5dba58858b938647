//! Shared by the integration tests: run the ffmpeg CLI into a temp file, read
//! the AAC and AVC tags of an FLV file, and open a libavcodec H.264 decoder.
// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// A libavcodec H.264 decoder, to check what goes into or out of ours.
pub fn h264_decoder() -> ffmpeg_next::decoder::Video {
    let _ = ffmpeg_next::init();
    let codec = ffmpeg_next::decoder::find(ffmpeg_next::codec::Id::H264).expect("h264 decoder");
    ffmpeg_next::codec::Context::new_with_codec(codec)
        .decoder()
        .video()
        .expect("open h264 decoder")
}

/// Runs `ffmpeg <args> <tmpfile>` and returns the file's bytes.
pub fn ffmpeg(name: &str, args: &[&str]) -> Vec<u8> {
    let path: PathBuf =
        std::env::temp_dir().join(format!("rts-transcode-{}-{name}", std::process::id()));
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
        .args(args)
        .arg(&path)
        .status()
        .expect("ffmpeg CLI not found: run scripts/install-test-deps.sh");
    assert!(status.success(), "ffmpeg {args:?} failed");
    let data = std::fs::read(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    data
}

/// One AVC frame tag.
pub struct VideoFrame {
    /// AVCC payload (length-prefixed NAL units).
    pub avcc: Vec<u8>,
    pub dts: u32,
    /// Composition time offset (ms).
    pub cts: i32,
}

/// The AAC and AVC content of an FLV file.
pub struct Flv {
    /// AudioSpecificConfig (empty when there is no AAC).
    pub asc: Vec<u8>,
    /// (raw AAC frame, FLV timestamp ms)
    pub audio: Vec<(Vec<u8>, u32)>,
    /// AVCDecoderConfigurationRecord (empty when there is no AVC).
    pub avc_config: Vec<u8>,
    pub video: Vec<VideoFrame>,
}

/// A minimal FLV tag reader (FLV spec v10.1 §E.4): AAC and AVC tags only.
pub fn parse_flv(data: &[u8]) -> Flv {
    assert_eq!(&data[..3], b"FLV");
    let header = u32::from_be_bytes(data[5..9].try_into().unwrap()) as usize;
    let mut pos = header + 4;
    let mut out = Flv {
        asc: Vec::new(),
        audio: Vec::new(),
        avc_config: Vec::new(),
        video: Vec::new(),
    };
    while pos + 11 <= data.len() {
        let t = &data[pos..];
        let size = (usize::from(t[1]) << 16) | (usize::from(t[2]) << 8) | usize::from(t[3]);
        let ts = (u32::from(t[7]) << 24)
            | (u32::from(t[4]) << 16)
            | (u32::from(t[5]) << 8)
            | u32::from(t[6]);
        let body = &t[11..11 + size];
        match t[0] {
            8 if body[0] >> 4 == 10 => match body[1] {
                0 => out.asc = body[2..].to_vec(),
                1 => out.audio.push((body[2..].to_vec(), ts)),
                _ => {}
            },
            9 if body[0] & 0x0f == 7 => {
                let cts = ((i32::from(body[2]) << 24)
                    | (i32::from(body[3]) << 16)
                    | (i32::from(body[4]) << 8))
                    >> 8;
                match body[1] {
                    0 => out.avc_config = body[5..].to_vec(),
                    1 => out.video.push(VideoFrame {
                        avcc: body[5..].to_vec(),
                        dts: ts,
                        cts,
                    }),
                    _ => {}
                }
            }
            _ => {}
        }
        pos += 11 + size + 4;
    }
    out
}
