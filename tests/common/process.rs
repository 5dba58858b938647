//! Child processes for tests: killed with their whole process group on drop (also when
//! the test panics), with stdout/stderr captured line by line.
//!
//! Waiting on output is event-driven: reader threads push each line and notify a
//! condition variable, so `wait_for_line` wakes exactly when a line (or EOF) arrives.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

use super::Result;

/// How many trailing log lines error messages quote.
const TAIL_LINES: usize = 30;

/// Lines a child wrote to stdout and stderr (interleaved in arrival order).
#[derive(Debug, Default)]
pub struct LogBuffer {
    state: Mutex<LogState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct LogState {
    lines: Vec<String>,
    /// Streams still open; 0 means the child closed both (normally: it exited).
    open: usize,
}

impl LogBuffer {
    fn lock(&self) -> MutexGuard<'_, LogState> {
        // A reader thread cannot panic while holding the lock; recover anyway.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of every line so far.
    pub fn lines(&self) -> Vec<String> {
        self.lock().lines.clone()
    }

    /// Number of lines so far; pass it to [`LogBuffer::wait_for_line`] to ignore old lines.
    pub fn len(&self) -> usize {
        self.lock().lines.len()
    }

    /// Whether no line has arrived yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the child closed both stdout and stderr.
    pub fn closed(&self) -> bool {
        self.lock().open == 0
    }

    /// The last `n` lines joined with newlines, for error messages.
    pub fn tail(&self, n: usize) -> String {
        let state = self.lock();
        let start = state.lines.len().saturating_sub(n);
        state.lines[start..].join("\n")
    }

    /// Waits until a line with index `>= from` contains `needle`; returns `(index, line)`.
    /// Fails on timeout or when the child closed its output without printing it.
    pub fn wait_for_line(
        &self,
        from: usize,
        needle: &str,
        timeout: Duration,
    ) -> Result<(usize, String)> {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        let mut next = from;
        loop {
            if let Some(i) = state.lines[next.min(state.lines.len())..]
                .iter()
                .position(|l| l.contains(needle))
            {
                let index = next + i;
                return Ok((index, state.lines[index].clone()));
            }
            next = next.max(state.lines.len());
            if state.open == 0 {
                drop(state);
                bail!(
                    "output closed before a line containing {needle:?}; last lines:\n{}",
                    self.tail(TAIL_LINES)
                );
            }
            let now = Instant::now();
            if now >= deadline {
                drop(state);
                bail!(
                    "no line containing {needle:?} within {timeout:?}; last lines:\n{}",
                    self.tail(TAIL_LINES)
                );
            }
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Waits until the child closed both streams; false on timeout.
    pub fn wait_closed(&self, timeout: Duration) -> bool {
        let state = self.lock();
        let (state, _) = self
            .changed
            .wait_timeout_while(state, timeout, |s| s.open > 0)
            .unwrap_or_else(|e| e.into_inner());
        state.open == 0
    }

    fn push(&self, line: String) {
        self.lock().lines.push(line);
        self.changed.notify_all();
    }

    fn close_one(&self) {
        let mut state = self.lock();
        state.open = state.open.saturating_sub(1);
        drop(state);
        self.changed.notify_all();
    }

    fn pump(self: &Arc<Self>, stream: impl Read + Send + 'static) {
        let buf = Arc::clone(self);
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stream);
            let mut raw = Vec::with_capacity(256);
            loop {
                raw.clear();
                match reader.read_until(b'\n', &mut raw) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&raw);
                        buf.push(text.trim_end_matches(['\r', '\n']).to_owned());
                    }
                }
            }
            buf.close_one();
        });
    }
}

/// A child process (and its process group) that is SIGKILLed and reaped on drop.
#[derive(Debug)]
pub struct ChildGuard {
    child: Child,
    name: String,
    logs: Arc<LogBuffer>,
    status: Option<ExitStatus>,
}

impl ChildGuard {
    /// Spawns `cmd` in its own process group with stdin closed and stdout/stderr captured
    /// into one [`LogBuffer`].
    pub fn spawn(cmd: &mut Command) -> Result<ChildGuard> {
        let name = cmd.get_program().to_string_lossy().into_owned();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .with_context(|| format!("spawn {name}"))?;
        let logs = Arc::new(LogBuffer {
            state: Mutex::new(LogState {
                lines: Vec::new(),
                open: 2,
            }),
            changed: Condvar::new(),
        });
        let stdout = child.stdout.take().context("child stdout")?;
        let stderr = child.stderr.take().context("child stderr")?;
        logs.pump(stdout);
        logs.pump(stderr);
        Ok(ChildGuard {
            child,
            name,
            logs,
            status: None,
        })
    }

    /// Convenience for `ChildGuard::spawn(Command::new(program).args(args))`.
    pub fn run<S: AsRef<OsStr>>(program: &str, args: &[S]) -> Result<ChildGuard> {
        Self::spawn(Command::new(program).args(args))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn logs(&self) -> &Arc<LogBuffer> {
        &self.logs
    }

    /// The exit status if the child has exited (reaps it), without blocking.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    pub fn is_running(&mut self) -> bool {
        self.try_status().is_none()
    }

    /// Waits for the child to exit. The event is EOF on its output pipes; after that the
    /// status is collected with a short bounded retry (a process may close its pipes just
    /// before it exits).
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        if let Some(status) = self.try_status() {
            return Ok(status);
        }
        if !self.logs.wait_closed(timeout) {
            bail!(
                "{} still running after {timeout:?}; last lines:\n{}",
                self.name,
                self.logs.tail(TAIL_LINES)
            );
        }
        let mut backoff = Duration::from_millis(1);
        loop {
            if let Some(status) = self.try_status() {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} closed its output but did not exit within {timeout:?}",
                    self.name
                );
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_millis(50));
        }
    }

    /// SIGKILLs the process group and reaps the leader. Idempotent.
    pub fn kill(&mut self) {
        // The group id is the leader's pid, which stays reserved until the leader is
        // reaped, so signalling the group before `wait` cannot hit a recycled pid.
        if self.status.is_none() {
            let pgid = self.child.id() as libc::pid_t;
            // SAFETY: plain syscall; a negative pid addresses the child's process group.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
            self.status = self.child.wait().ok();
        }
    }

    /// Sends SIGTERM to the leader only (a graceful stop), without waiting.
    pub fn terminate(&mut self) {
        if self.try_status().is_none() {
            // SAFETY: plain syscall; the leader is not reaped yet, so its pid is still ours.
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // Once the leader is reaped its group id may be recycled, so an exited child is
        // left alone (Chromium's helpers exit by themselves when the browser dies).
        self.kill();
    }
}

/// Retries `connect(addr)` with a small backoff until it succeeds or `timeout` passes.
pub fn wait_for_tcp(addr: SocketAddr, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut backoff = Duration::from_millis(5);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let attempt = left
            .min(Duration::from_millis(500))
            .max(Duration::from_millis(1));
        let err = match TcpStream::connect_timeout(&addr, attempt) {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        if Instant::now() + backoff >= deadline {
            return Err(anyhow!(err))
                .with_context(|| format!("nothing accepts on {addr} within {timeout:?}"));
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_millis(100));
    }
}
