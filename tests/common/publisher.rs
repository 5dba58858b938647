//! An ffmpeg RTMP publisher: 640x360@30 test pattern (H.264) plus a 440 Hz tone (AAC).

use std::process::{Command, ExitStatus};
use std::time::Duration;

use super::process::ChildGuard;
use super::Result;

/// What the publisher sends.
#[derive(Clone, Debug)]
pub struct PublishOpts {
    /// Add the `sine` audio input, encoded as AAC.
    pub audio: bool,
    /// x264 profile. B-frames need `main` or `high`: x264 silently drops them for `baseline`.
    pub profile: String,
    /// `-bf N` when set.
    pub bframes: Option<u32>,
    /// Keyframe interval in frames (`-g`).
    pub gop: u32,
    /// Picture size of the test pattern, `WxH`.
    pub size: String,
    /// Inserted just before `-f flv <url>` (output options such as `-t 5` or `-b:v 2M`).
    pub extra_args: Vec<String>,
    /// Encode this many seconds to a file first, then publish that file in
    /// a loop at its native rate without re-encoding (`-stream_loop -1 -re
    /// -c copy`), as a broadcaster's encoder on another machine would: no
    /// x264 on the box beside Chromium and the server. Pick a multiple of
    /// the GOP so the loop keeps the keyframe spacing. The clip is cached by
    /// its encode arguments under the tests' temporary directory.
    pub prerender_s: Option<u32>,
}

impl Default for PublishOpts {
    fn default() -> Self {
        PublishOpts {
            audio: true,
            profile: "baseline".into(),
            bframes: None,
            gop: 60,
            size: "640x360".into(),
            extra_args: Vec::new(),
            prerender_s: None,
        }
    }
}

impl PublishOpts {
    /// The full ffmpeg argument list for publishing to `url`.
    pub fn ffmpeg_args(&self, url: &str) -> Vec<String> {
        self.encode_args(None, url)
    }

    /// The encode: read live (`-re`) to `url`, or, given a length in
    /// seconds, as fast as x264 goes to a file.
    fn encode_args(&self, file_seconds: Option<u32>, url: &str) -> Vec<String> {
        let live = file_seconds.is_none();
        let mut args: Vec<String> = ["-hide_banner", "-loglevel", "error", "-nostdin"]
            .map(String::from)
            .to_vec();
        // `-re` is an input option: each live source is read at its native rate.
        let re = if live { &["-re"][..] } else { &[][..] };
        args.extend(re.iter().map(|s| s.to_string()));
        args.extend(["-f", "lavfi", "-i"].map(String::from));
        args.push(format!("testsrc2=size={}:rate=30", self.size));
        if self.audio {
            args.extend(re.iter().map(|s| s.to_string()));
            args.extend(
                [
                    "-f",
                    "lavfi",
                    "-i",
                    "sine=frequency=440:sample_rate=48000",
                ]
                .map(String::from),
            );
        }
        args.extend(
            [
                "-c:v",
                "libx264",
                "-profile:v",
                &self.profile,
                "-tune",
                "zerolatency",
            ]
            .map(String::from),
        );
        args.extend([
            "-g".to_string(),
            self.gop.to_string(),
            "-pix_fmt".into(),
            "yuv420p".into(),
        ]);
        if let Some(n) = self.bframes {
            args.extend(["-bf".to_string(), n.to_string()]);
        }
        if self.audio {
            args.extend(["-c:a", "aac"].map(String::from));
        }
        args.extend(self.extra_args.iter().cloned());
        if let Some(seconds) = file_seconds {
            args.extend(["-t".to_string(), seconds.to_string()]);
        }
        args.extend(["-f".to_string(), "flv".into(), url.to_string()]);
        args
    }

    /// The pre-rendered clip for [`PublishOpts::prerender_s`], encoded once
    /// per set of encode arguments (written under a temporary name and
    /// renamed, so tests running side by side never read half a file).
    fn prerendered_clip(&self, seconds: u32) -> Result<std::path::PathBuf> {
        use std::hash::{Hash, Hasher};
        let key = self.encode_args(Some(seconds), "-");
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("publisher-clips");
        std::fs::create_dir_all(&dir)?;
        let clip = dir.join(format!("{:016x}.flv", h.finish()));
        if clip.exists() {
            return Ok(clip);
        }
        let part = dir.join(format!("{:016x}.{}.part", h.finish(), std::process::id()));
        // A leftover of an earlier run under this pid (ffmpeg with -nostdin
        // refuses to overwrite).
        let _ = std::fs::remove_file(&part);
        let out = Command::new("ffmpeg").args(self.encode_args(Some(seconds), &part.to_string_lossy())).output()?;
        if !out.status.success() {
            anyhow::bail!("encoding the publisher's clip failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::fs::rename(&part, &clip)?;
        Ok(clip)
    }

    /// Publishing the pre-rendered clip in a loop, as read at its native
    /// rate, without re-encoding.
    fn looped_args(clip: &std::path::Path, url: &str) -> Vec<String> {
        let mut args: Vec<String> = ["-hide_banner", "-loglevel", "error", "-nostdin", "-stream_loop", "-1", "-re", "-i"]
            .map(String::from)
            .to_vec();
        args.push(clip.to_string_lossy().into_owned());
        args.extend(["-c", "copy", "-f", "flv"].map(String::from));
        args.push(url.to_string());
        args
    }
}

/// A running ffmpeg publisher, killed on drop. A refused publish shows up as ffmpeg
/// exiting non-zero: see [`Publisher::wait_exit`] and [`Publisher::stderr`].
#[derive(Debug)]
pub struct Publisher {
    child: ChildGuard,
}

impl Publisher {
    pub fn start(rtmp_url: &str, opts: &PublishOpts) -> Result<Publisher> {
        let mut cmd = Command::new("ffmpeg");
        match opts.prerender_s {
            Some(seconds) => cmd.args(PublishOpts::looped_args(&opts.prerendered_clip(seconds)?, rtmp_url)),
            None => cmd.args(opts.ffmpeg_args(rtmp_url)),
        };
        Ok(Publisher {
            child: ChildGuard::spawn(&mut cmd)?,
        })
    }

    pub fn is_running(&mut self) -> bool {
        self.child.is_running()
    }

    /// The exit status once ffmpeg has exited, without blocking.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_status()
    }

    /// Waits for ffmpeg to exit (e.g. after the server refused the publish).
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        self.child.wait_exit(timeout)
    }

    /// Everything ffmpeg printed so far (stderr; stdout is unused), one line per line.
    pub fn stderr(&self) -> String {
        self.child.logs().lines().join("\n")
    }

    pub fn kill(&mut self) {
        self.child.kill();
    }
}
