//! `rts-publish`: publish a synthetic H.264 stream with wall-clock SEI stamps over RTMP.
//! Exit codes: 0 done, 3 the server refused the connect/publish, 1 anything else.

use clap::Parser;
use rts_publish::publisher::{run, Options};
use rts_publish::PublishError;

/// Test publisher: ffmpeg testsrc2 → H.264 baseline with a timestamp SEI per frame → RTMP.
#[derive(Parser, Debug)]
#[command(name = "rts-publish", version)]
struct Cli {
    /// rtmp://host[:port]/app/stream[?auth_key=...]
    #[arg(long)]
    url: String,
    /// Frame size WxH.
    #[arg(long, default_value = "640x360")]
    size: String,
    /// Frames per second.
    #[arg(long, default_value_t = 30)]
    fps: u32,
    /// Keyframe interval, frames.
    #[arg(long, default_value_t = 60)]
    gop: u32,
    /// Video bitrate (ffmpeg syntax: 2M, 800k).
    #[arg(long, default_value = "2M")]
    bitrate: String,
    /// Stop after this many seconds (default: run until interrupted).
    #[arg(long)]
    duration: Option<f64>,
    /// ffmpeg executable.
    #[arg(long, default_value = "ffmpeg")]
    ffmpeg: String,
    /// Put the timestamp SEI on one frame in this many (1: every frame).
    #[arg(long, default_value_t = 1)]
    sei_every: u32,
    /// x264 preset (ultrafast: cheapest; the stream is synthetic anyway).
    #[arg(long, default_value = "ultrafast")]
    preset: String,
}

fn main() {
    let cli = Cli::parse();
    let Some((w, h)) = cli
        .size
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
    else {
        eprintln!("rts-publish: --size must be WxH, got {:?}", cli.size);
        std::process::exit(2);
    };
    let opts = Options {
        url: cli.url,
        width: w,
        height: h,
        fps: cli.fps,
        gop: cli.gop,
        bitrate: cli.bitrate,
        duration: cli.duration,
        ffmpeg: cli.ffmpeg,
        sei_every: cli.sei_every,
        preset: cli.preset,
    };
    match run(&opts) {
        Ok(s) => eprintln!(
            "rts-publish: sent {} frames ({} keyframes, {} bytes)",
            s.frames, s.keyframes, s.bytes
        ),
        Err(e @ PublishError::Refused(_)) => {
            eprintln!("rts-publish: {e}");
            std::process::exit(3);
        }
        Err(e) => {
            eprintln!("rts-publish: {e}");
            std::process::exit(1);
        }
    }
}
