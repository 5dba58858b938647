//! End-to-end rig: an `rts` server (serve, or dataplane + control apart)
//! inside a fresh network namespace, with helpers to publish, play in
//! Chromium and read the admin API.
#![allow(dead_code)]

use crate::common::{enter_fresh_netns, Chromium, NetNs, PublishOpts, Publisher, ServerProcess, SERVER_IP};
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub const HTTP: &str = "http://10.200.0.1:8080";
pub const RTMP: &str = "rtmp://10.200.0.1:1935";

/// End-to-end tests in one test binary run one at a time: each runs a
/// server, an x264 publisher and a browser (plus transcoders), and two at
/// once on a 2-core CI box starve the audio path into concealment.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub struct Rig {
    pub dir: PathBuf,
    /// The dataplane's shared-memory file (removed with the rig).
    shm: PathBuf,
    pub config: PathBuf,
    pub servers: Vec<ServerProcess>,
    // Dropped last: processes above die before the thread leaves the namespace.
    _ns: NetNs,
    _serial: std::sync::MutexGuard<'static, ()>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `rts serve`: dataplane + supervised control.
    Serve,
    /// `rts dataplane` and `rts control` as two processes.
    Split,
}

impl Rig {
    /// `extra_toml` is appended to a config that pins the test's namespace
    /// address as the ICE candidate and gives the shm region a unique name.
    pub fn start(mode: Mode, extra_toml: &str) -> Result<Rig> {
        // A test that failed while holding the lock poisons it; the next one
        // still runs.
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let ns = enter_fresh_netns()?;
        let id = format!("{}-{:x}", std::process::id(), rand::random::<u32>());
        let dir = std::env::temp_dir().join(format!("rts-test-{id}"));
        std::fs::create_dir_all(&dir)?;
        let config = dir.join("rts.toml");
        // One [dataplane] table: merge the shm path into the caller's if any.
        let shm_path = PathBuf::from(format!("/dev/shm/rts-test-{id}"));
        let shm = format!("shm_path = \"{}\"\n", shm_path.display());
        let body = if extra_toml.contains("[dataplane]\n") {
            extra_toml.replacen("[dataplane]\n", &format!("[dataplane]\n{shm}"), 1)
        } else {
            format!("{extra_toml}\n[dataplane]\n{shm}")
        };
        // The caller's own candidate_ip (its keys land in [webrtc]) wins.
        let text = if body.starts_with("candidate_ip = ") || body.contains("\ncandidate_ip = ") {
            format!("[webrtc]\n{body}")
        } else {
            format!("[webrtc]\ncandidate_ip = \"{SERVER_IP}\"\n{body}")
        };
        std::fs::write(&config, text)?;
        let cfg = config.to_str().context("utf-8 path")?.to_string();
        let mut rig = Rig { dir, shm: shm_path, config, servers: Vec::new(), _ns: ns, _serial: serial };
        match mode {
            Mode::Serve => {
                let s = ServerProcess::start(&["--config", &cfg, "serve"], &[("RUST_LOG", "info")])?;
                rig.servers.push(s);
            }
            Mode::Split => {
                let d = ServerProcess::start(&["--config", &cfg, "dataplane"], &[("RUST_LOG", "info")])?;
                d.wait_for_log("shard ready", Duration::from_secs(20))?;
                rig.servers.push(d);
                rig.start_control()?;
            }
        }
        let s = &mut rig.servers[0];
        s.wait_for_tcp(SocketAddr::from(([10, 200, 0, 1], 1935)), Duration::from_secs(20))?;
        let last = rig.servers.len() - 1;
        rig.servers[last].wait_for_log("control listening", Duration::from_secs(20))?;
        Ok(rig)
    }

    /// Split mode: (re)starts the control process; it becomes servers[1].
    pub fn start_control(&mut self) -> Result<()> {
        let cfg = self.config.to_str().context("utf-8 path")?.to_string();
        let c = ServerProcess::start(&["--config", &cfg, "control"], &[("RUST_LOG", "info")])?;
        c.wait_for_log("control listening", Duration::from_secs(20))?;
        if self.servers.len() > 1 {
            self.servers[1] = c;
        } else {
            self.servers.push(c);
        }
        Ok(())
    }

    pub fn server(&mut self) -> &mut ServerProcess {
        &mut self.servers[0]
    }

    pub fn logs(&self) -> String {
        self.servers.iter().map(|s| s.logs().tail(60)).collect::<Vec<_>>().join("\n---\n")
    }

    pub fn publish(&self, path: &str) -> Result<Publisher> {
        let opts = PublishOpts { audio: false, ..Default::default() };
        Publisher::start(&format!("{RTMP}/{path}"), &opts)
    }

    pub fn api(&self) -> Result<Value> {
        let body = ureq::get(&format!("{HTTP}/api/v1/streams")).timeout(Duration::from_secs(5)).call()?.into_string()?;
        Ok(serde_json::from_str(&body)?)
    }

    /// GET `path` on the admin listener (127.0.0.1:8081 in the namespace).
    pub fn admin(&self, path: &str) -> Result<String> {
        Ok(ureq::get(&format!("http://127.0.0.1:8081{path}")).timeout(Duration::from_secs(5)).call()?.into_string()?)
    }

    /// Shard counter `key` (`shards[].counters`), summed over the shards
    /// (shards report every second: wait for the last report first).
    pub fn shard_counter(&self, key: &str) -> Result<u64> {
        let api = self.api()?;
        let shards = api["shards"].as_array().context("no shards in /api/v1/streams")?;
        shards.iter().map(|s| s["counters"][key].as_u64().with_context(|| format!("no counter {key}"))).sum()
    }

    pub fn stream(&self, app: &str, stream: &str) -> Result<Option<Value>> {
        let api = self.api()?;
        Ok(api["streams"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["app"] == app && s["stream"] == stream))
            .cloned())
    }

    /// Waits until control reports the stream as live (it learns that over
    /// the rings; there is no push channel to the test, so poll the API).
    pub fn wait_live(&self, app: &str, stream: &str, timeout: Duration) -> Result<Value> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(s) = self.stream(app, stream)? {
                if s["publishing"] == true {
                    return Ok(s);
                }
            }
            if Instant::now() > end {
                bail!("stream {app}/{stream} not live after {timeout:?}; logs:\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Opens the web player in a fresh Chromium and waits for `frames` decoded.
    pub fn play(&self, app: &str, stream: &str, query: &str, frames: u64) -> Result<Chromium> {
        let mut c = Chromium::launch()?;
        self.play_in(&mut c, app, stream, query, frames)?;
        Ok(c)
    }

    pub fn play_in(&self, c: &mut Chromium, app: &str, stream: &str, query: &str, frames: u64) -> Result<()> {
        c.navigate(&format!("{HTTP}/play/{app}/{stream}?{query}"))?;
        let pred = format!("window.rts && (await window.rts.stats()).framesDecoded >= {frames}");
        if let Err(e) = c.wait_for(&pred, Duration::from_secs(30)) {
            let state = c.eval("JSON.stringify({state: window.rts && window.rts.state, error: window.rts && String(window.rts.error)})");
            // What the receiver got: the video track's inbound-rtp record.
            let video = c.eval(
                "(async () => { let v = null; if (window.rts && window.rts.pc) (await window.rts.pc.getStats()).forEach((x) => { if (x.type === 'inbound-rtp' && x.kind === 'video') v = x; }); return JSON.stringify(v); })()",
            );
            bail!("no {frames} frames decoded: {e:#}; page: {state:?}; video inbound-rtp: {video:?}; console: {:?}\nserver logs:\n{}", c.console(), self.logs());
        }
        Ok(())
    }
}

pub fn frames_decoded(c: &mut Chromium) -> Result<u64> {
    let v = c.eval("(async () => (await window.rts.stats()).framesDecoded)()")?;
    v.as_u64().context("framesDecoded is not a number")
}

impl Drop for Rig {
    fn drop(&mut self) {
        for s in &mut self.servers {
            s.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(&self.shm);
    }
}
