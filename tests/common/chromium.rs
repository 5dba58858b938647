//! Headless Chromium driven over the DevTools protocol (CDP), without chromedriver.
//!
//! Chromium prints `DevTools listening on ws://127.0.0.1:PORT/...` on stderr; we read the
//! port from that line, look up the page target at `/json/list`, and speak CDP over a
//! blocking tungstenite socket. Launched from a test thread inside a network namespace,
//! the browser (and its DevTools port) live in that namespace.

use std::collections::VecDeque;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

use super::process::ChildGuard;
use super::Result;

const BINARY: &str = "/usr/bin/chromium";
/// Flags every test browser gets: headless, no network chatter, fake media permission
/// prompts, autoplay allowed (the player's `<audio>` must play without a gesture).
const FLAGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    "--remote-debugging-port=0",
];
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Most console/exception lines kept from the page (for failure messages).
const MAX_CONSOLE: usize = 500;
/// Most unconsumed CDP events kept.
const MAX_EVENTS: usize = 1000;

/// A headless Chromium with one page attached. Killed (process group) and its profile
/// directory removed on drop.
pub struct Chromium {
    ws: WebSocket<TcpStream>,
    next_id: u64,
    events: VecDeque<Value>,
    console: Vec<String>,
    call_timeout: Duration,
    devtools: SocketAddr,
    // Field order matters: the browser dies before its profile directory is removed.
    child: ChildGuard,
    profile: ProfileDir,
}

impl std::fmt::Debug for Chromium {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chromium")
            .field("devtools", &self.devtools)
            .field("pid", &self.child.pid())
            .finish()
    }
}

impl Chromium {
    /// Launches Chromium on `about:blank` with the standard flags.
    pub fn launch() -> Result<Chromium> {
        Self::launch_with(&[])
    }

    /// Launches with extra command-line flags appended.
    pub fn launch_with(extra_flags: &[&str]) -> Result<Chromium> {
        let profile = ProfileDir::create()?;
        let mut cmd = Command::new(BINARY);
        cmd.args(FLAGS)
            .args(extra_flags)
            .arg(format!("--user-data-dir={}", profile.0.display()))
            .arg("about:blank");
        let child = ChildGuard::spawn(&mut cmd)?;
        let (_, line) =
            child
                .logs()
                .wait_for_line(0, "DevTools listening on ws://", STARTUP_TIMEOUT)?;
        let devtools = parse_devtools_addr(&line)?;
        let page_ws = page_websocket_url(devtools)?;
        let stream =
            TcpStream::connect(devtools).with_context(|| format!("connect DevTools {devtools}"))?;
        stream.set_nodelay(true)?;
        let (ws, _) = tungstenite::client(page_ws.as_str(), stream)
            .map_err(|e| anyhow!("CDP websocket handshake: {e}"))?;
        let mut browser = Chromium {
            ws,
            next_id: 1,
            events: VecDeque::new(),
            console: Vec::new(),
            call_timeout: Duration::from_secs(30),
            devtools,
            child,
            profile,
        };
        browser.call("Page.enable", json!({}))?;
        browser.call("Runtime.enable", json!({}))?;
        Ok(browser)
    }

    /// Upper bound for one CDP call (default 30 s).
    pub fn set_call_timeout(&mut self, timeout: Duration) {
        self.call_timeout = timeout;
    }

    /// Loopback address of the DevTools HTTP/websocket endpoint.
    pub fn devtools_addr(&self) -> SocketAddr {
        self.devtools
    }

    /// Page console messages and uncaught exceptions seen so far.
    pub fn console(&self) -> &[String] {
        &self.console
    }

    /// Browser stderr (crash reasons, DevTools line).
    pub fn browser_log(&self) -> Vec<String> {
        self.child.logs().lines()
    }

    /// Navigates and waits for the page's load event. Fails on network errors
    /// (`errorText`); an HTTP error page still "loads", so check the content.
    pub fn navigate(&mut self, url: &str) -> Result<()> {
        self.events.clear();
        let result = self.call("Page.navigate", json!({ "url": url }))?;
        if let Some(err) = result
            .get("errorText")
            .and_then(Value::as_str)
            .filter(|e| !e.is_empty())
        {
            bail!("navigate {url}: {err}");
        }
        self.wait_event("Page.loadEventFired", self.call_timeout)
            .with_context(|| format!("load {url}"))?;
        Ok(())
    }

    /// Evaluates `js` in the page, awaiting it if it is a promise, and returns its value
    /// (`Null` for `undefined`). A thrown exception or rejected promise is an `Err`.
    pub fn eval(&mut self, js: &str) -> Result<Value> {
        let timeout = self.call_timeout;
        self.eval_within(js, timeout)
    }

    /// Polls the JS expression `predicate` every ~100 ms *inside the page* until it is
    /// truthy, and returns its value. Exceptions while polling count as "not yet" (the
    /// page may still be setting up); the last one is reported on timeout.
    pub fn wait_for(&mut self, predicate: &str, timeout: Duration) -> Result<Value> {
        let ms = timeout.as_millis();
        let js = format!(
            "new Promise((resolve, reject) => {{
                const end = Date.now() + {ms}; let last = null;
                const tick = async () => {{
                    try {{ const v = await (async () => ({predicate}))(); if (v) return resolve(v); }}
                    catch (e) {{ last = String(e && e.stack || e); }}
                    if (Date.now() >= end) return reject(new Error('timeout after {ms} ms' + (last ? '; last error: ' + last : '')));
                    setTimeout(tick, 100);
                }};
                tick();
            }})"
        );
        self.eval_within(&js, timeout + Duration::from_secs(5))
            .with_context(|| format!("wait_for({predicate})"))
    }

    /// Sends one CDP command to the page and returns its `result`.
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value> {
        let timeout = self.call_timeout;
        self.call_within(method, params, timeout)
    }

    fn eval_within(&mut self, js: &str, timeout: Duration) -> Result<Value> {
        let params = json!({ "expression": js, "awaitPromise": true, "returnByValue": true });
        let result = self.call_within("Runtime.evaluate", params, timeout)?;
        if let Some(details) = result.get("exceptionDetails") {
            let text = details
                .pointer("/exception/description")
                .and_then(Value::as_str)
                .or_else(|| details.get("text").and_then(Value::as_str))
                .unwrap_or("exception");
            bail!("JS exception: {text}");
        }
        Ok(result
            .pointer("/result/value")
            .cloned()
            .unwrap_or(Value::Null))
    }

    fn call_within(&mut self, method: &str, params: Value, timeout: Duration) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({ "id": id, "method": method, "params": params }).to_string();
        self.ws
            .send(Message::Text(msg))
            .with_context(|| format!("send {method}"))?;
        loop {
            let msg = self
                .read_message(deadline)
                .with_context(|| format!("waiting for {method} reply"))?;
            if msg.get("id").and_then(Value::as_u64) == Some(id) {
                if let Some(err) = msg.get("error") {
                    bail!("{method}: {err}");
                }
                return Ok(msg.get("result").cloned().unwrap_or(Value::Null));
            }
            self.on_event(msg);
        }
    }

    fn wait_event(&mut self, method: &str, timeout: Duration) -> Result<Value> {
        if let Some(pos) = self.events.iter().position(|e| e["method"] == method) {
            return Ok(self.events.remove(pos).unwrap_or_default());
        }
        let deadline = Instant::now() + timeout;
        loop {
            let msg = self
                .read_message(deadline)
                .with_context(|| format!("waiting for event {method}"))?;
            if msg["method"] == method {
                return Ok(msg);
            }
            self.on_event(msg);
        }
    }

    /// Reads the next CDP message, giving up at `deadline`.
    fn read_message(&mut self, deadline: Instant) -> Result<Value> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("CDP timeout; console:\n{}", self.console_tail());
            }
            self.ws.get_mut().set_read_timeout(Some(left))?;
            match self.ws.read() {
                Ok(Message::Text(text)) => {
                    return serde_json::from_str(&text).context("CDP message is not JSON")
                }
                Ok(_) => continue,
                // A signal can cut the read short (EINTR, seen once in CI;
                // which signal is not known): tungstenite keeps what it
                // had, so read on.
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) =>
                {
                    continue
                }
                Err(e) => bail!(
                    "CDP connection: {e}; browser log:\n{}",
                    self.child.logs().tail(20)
                ),
            }
        }
    }

    fn on_event(&mut self, msg: Value) {
        match msg["method"].as_str() {
            Some("Runtime.consoleAPICalled") => {
                let kind = msg
                    .pointer("/params/type")
                    .and_then(Value::as_str)
                    .unwrap_or("log");
                let args = msg
                    .pointer("/params/args")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let text: Vec<String> = args
                    .iter()
                    .map(|a| {
                        a.get("value")
                            .map_or_else(|| a["description"].to_string(), |v| v.to_string())
                    })
                    .collect();
                self.push_console(format!("console.{kind}: {}", text.join(" ")));
            }
            Some("Runtime.exceptionThrown") => {
                let text = msg
                    .pointer("/params/exceptionDetails/exception/description")
                    .or_else(|| msg.pointer("/params/exceptionDetails/text"))
                    .map(Value::to_string)
                    .unwrap_or_default();
                self.push_console(format!("uncaught: {text}"));
            }
            Some(m) if m.starts_with("Page.") => {
                if self.events.len() >= MAX_EVENTS {
                    self.events.pop_front();
                }
                self.events.push_back(msg);
            }
            _ => {}
        }
    }

    fn push_console(&mut self, line: String) {
        if self.console.len() < MAX_CONSOLE {
            self.console.push(line);
        }
    }

    fn console_tail(&self) -> String {
        let start = self.console.len().saturating_sub(20);
        self.console[start..].join("\n")
    }
}

fn parse_devtools_addr(line: &str) -> Result<SocketAddr> {
    let url = line
        .split("ws://")
        .nth(1)
        .context("no ws:// in DevTools line")?;
    let host_port = url.split('/').next().unwrap_or_default();
    host_port
        .parse()
        .with_context(|| format!("DevTools address in {line:?}"))
}

/// Finds the first page target's websocket URL.
fn page_websocket_url(devtools: SocketAddr) -> Result<String> {
    let body = ureq::get(&format!("http://{devtools}/json/list"))
        .timeout(Duration::from_secs(10))
        .call()
        .context("GET /json/list")?
        .into_string()?;
    let targets: Value = serde_json::from_str(&body)?;
    targets
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["type"] == "page")
        .and_then(|t| t["webSocketDebuggerUrl"].as_str())
        .map(str::to_owned)
        .with_context(|| format!("no page target in {body}"))
}

/// A fresh `--user-data-dir`, removed on drop.
struct ProfileDir(PathBuf);

impl ProfileDir {
    fn create() -> Result<ProfileDir> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "rts-chromium-{}-{}-{nanos}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        Ok(ProfileDir(dir))
    }
}

impl Drop for ProfileDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
