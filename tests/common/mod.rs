//! Integration-test harness shared by every file under `tests/`.
//!
//! Each test file pulls it in with `mod common;`. The pieces are independent:
//!
//! - [`netns`]: move the *current test thread* into a fresh network namespace with a veth
//!   pair (10.200.0.1/24 + 10.200.0.2/24), so headless Chromium gathers a real host
//!   candidate and tests cannot see each other's ports.
//! - [`process`]: child processes killed (whole process group) on drop, with their
//!   stdout/stderr captured line by line so tests wait on log lines instead of sleeping.
//! - [`server`]: the `rts` binary under test.
//! - [`publisher`]: an ffmpeg RTMP publisher (test pattern + sine tone).
//! - [`chromium`]: headless Chromium driven over the DevTools protocol.
//! - [`http`]: a tiny blocking HTTP server for serving fixture pages and faking endpoints.
//!
//! Everything here is blocking on purpose: a tokio worker thread would live in the
//! original network namespace, not the test thread's.
#![allow(dead_code, unused_imports)] // each test file uses a different subset

pub mod chromium;
pub mod http;
pub mod netns;
pub mod probe;
pub mod process;
pub mod publisher;
pub mod server;

pub use chromium::Chromium;
pub use http::{HttpRequest, HttpResponse, TestHttpServer};
pub use netns::{enter_fresh_netns, nft, NetNs, PEER_IP, PEER_IP6, SERVER_IP, SERVER_IP6};
pub use process::{wait_for_tcp, ChildGuard, LogBuffer};
pub use publisher::{PublishOpts, Publisher};
pub use server::ServerProcess;

/// Harness result type; test failures carry a readable chain of context.
pub type Result<T> = anyhow::Result<T>;

/// Path of the web player page, relative to the workspace root (served by control).
pub const PLAYER_HTML: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/control/assets/player.html");
/// The player engine the page inlines where it says `__PLAYER_JS__`.
pub const PLAYER_JS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/control/assets/player.js");

/// The player page as control serves it (player.js inlined), for fixtures.
pub fn player_page() -> std::io::Result<Vec<u8>> {
    let page = std::fs::read_to_string(PLAYER_HTML)?;
    let js = std::fs::read_to_string(PLAYER_JS)?;
    Ok(page.replacen("__PLAYER_JS__", &js, 1).into_bytes())
}
