//! The `rts` binary under test.

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::process::{Command, ExitStatus};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};

use super::process::{wait_for_tcp, ChildGuard, LogBuffer};
use super::Result;

/// A running server process: SIGKILLed (with its process group, so a supervised
/// dataplane/control pair dies too) on drop, or earlier via [`ServerProcess::kill`].
#[derive(Debug)]
pub struct ServerProcess {
    child: ChildGuard,
}

impl ServerProcess {
    /// Starts the `rts` binary built for this test run (or the one
    /// `RTS_TEST_BIN` names: A/B runs against another build) with `args` and
    /// extra `env`. The environment is otherwise inherited (so `RUST_LOG` set
    /// by the caller applies).
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Result<ServerProcess> {
        Self::start_program(std::env::var("RTS_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_rts").to_string()), args, env)
    }

    /// Starts any program with the same supervision (used by the harness self-test).
    pub fn start_program(
        program: impl AsRef<OsStr>,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<ServerProcess> {
        let mut cmd = Command::new(program);
        cmd.args(args).envs(env.iter().copied());
        Ok(ServerProcess {
            child: ChildGuard::spawn(&mut cmd)?,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Captured stdout + stderr lines.
    pub fn logs(&self) -> &Arc<LogBuffer> {
        self.child.logs()
    }

    /// Waits for an output line containing `needle` (searching from the first line) and
    /// returns it. Fails early if the server closes its output (exits) first.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> Result<String> {
        Ok(self.child.logs().wait_for_line(0, needle, timeout)?.1)
    }

    /// Like [`ServerProcess::wait_for_log`] but only lines with index `>= from`
    /// (take `from` from `self.logs().len()` before triggering the event).
    pub fn wait_for_log_since(
        &self,
        from: usize,
        needle: &str,
        timeout: Duration,
    ) -> Result<String> {
        Ok(self.child.logs().wait_for_line(from, needle, timeout)?.1)
    }

    /// Waits until `addr` accepts TCP connections; fails early if the server died.
    pub fn wait_for_tcp(&mut self, addr: SocketAddr, timeout: Duration) -> Result<()> {
        let result = wait_for_tcp(addr, timeout);
        if let Some(status) = self.child.try_status() {
            bail!(
                "server exited ({status}) while waiting for {addr}; logs:\n{}",
                self.logs().tail(30)
            );
        }
        result.with_context(|| format!("server logs:\n{}", self.logs().tail(30)))
    }

    pub fn is_running(&mut self) -> bool {
        self.child.is_running()
    }

    /// SIGTERM, then wait up to `timeout` for a clean exit (SIGKILL after that).
    pub fn stop(&mut self, timeout: Duration) -> Result<ExitStatus> {
        self.child.terminate();
        let result = self.child.wait_exit(timeout);
        self.child.kill();
        result
    }

    /// Waits up to `timeout` for the server to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        self.child.wait_exit(timeout)
    }

    /// SIGKILL the server and its process group now.
    pub fn kill(&mut self) {
        self.child.kill();
    }
}
