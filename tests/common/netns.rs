//! Per-test network namespaces.
//!
//! Chromium refuses to gather ICE candidates on loopback, and parallel tests must not
//! collide on ports. `unshare(CLONE_NEWNET)` moves only the *calling thread* into a new
//! namespace; every process it spawns and every socket it opens afterwards inherit it.
//! `cargo test` runs each test on its own thread, so a test calls
//! [`enter_fresh_netns`] first and then starts the server, ffmpeg and Chromium as usual.

use std::fs::File;
use std::marker::PhantomData;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::process::Command;

use anyhow::{bail, Context};

use super::Result;

/// Address the server binds and advertises as `candidate_ip` (veth end `rtsv0`).
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
/// The other veth end (`rtsv1`); also the default gateway inside the namespace.
pub const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);

/// The IPv6 addresses of the same veth ends (unique-local, added without
/// duplicate address detection so they work at once).
pub const SERVER_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x200, 0, 0, 0, 0, 0, 1);
pub const PEER_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x200, 0, 0, 0, 0, 0, 2);

/// Guard for a thread that has entered a fresh network namespace.
///
/// Dropping it moves the thread back to the namespace it came from; the fresh namespace
/// disappears once no process or socket uses it any more. Not `Send`: the namespace
/// belongs to the thread that entered it.
#[must_use = "the thread leaves the namespace when the guard is dropped"]
pub struct NetNs {
    original: File,
    _not_send: PhantomData<*const ()>,
}

impl std::fmt::Debug for NetNs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetNs")
            .field("server_ip", &SERVER_IP)
            .finish()
    }
}

/// Moves the current thread into a new network namespace with `lo` up and the veth pair
/// `rtsv0` (10.200.0.1/24, fd00:200::1/64) / `rtsv1` (10.200.0.2/24, fd00:200::2/64),
/// default routes via 10.200.0.2 and out of `rtsv0` (IPv6 refuses a gateway that is a
/// local address).
///
/// Needs root (CAP_SYS_ADMIN + CAP_NET_ADMIN). Use only blocking I/O on this thread.
pub fn enter_fresh_netns() -> Result<NetNs> {
    // `thread-self`, not `self`: `self` is the thread-group leader, which may sit elsewhere.
    let original = File::open("/proc/thread-self/ns/net").context("open current netns")?;
    unshare_net()?;
    let guard = NetNs {
        original,
        _not_send: PhantomData,
    };
    let server = format!("{SERVER_IP}/24");
    let peer = format!("{PEER_IP}/24");
    let gateway = PEER_IP.to_string();
    let server6 = format!("{SERVER_IP6}/64");
    let peer6 = format!("{PEER_IP6}/64");
    let steps: [&[&str]; 10] = [
        &["link", "set", "lo", "up"],
        &[
            "link", "add", "rtsv0", "type", "veth", "peer", "name", "rtsv1",
        ],
        &["addr", "add", &server, "dev", "rtsv0"],
        &["addr", "add", &peer, "dev", "rtsv1"],
        &["link", "set", "rtsv0", "up"],
        &["link", "set", "rtsv1", "up"],
        &["route", "add", "default", "via", &gateway],
        &["-6", "addr", "add", &server6, "dev", "rtsv0", "nodad"],
        &["-6", "addr", "add", &peer6, "dev", "rtsv1", "nodad"],
        &["-6", "route", "add", "default", "dev", "rtsv0"],
    ];
    for args in steps {
        run_ip(args)?;
    }
    Ok(guard)
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // SAFETY: plain syscall on a namespace fd we own; affects only this thread.
        let rc = unsafe { libc::setns(self.original.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc != 0 {
            // The thread is about to end with its test anyway; just say so.
            eprintln!(
                "setns back to the original netns: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

fn unshare_net() -> Result<()> {
    // SAFETY: plain syscall without pointers; CLONE_NEWNET affects only the calling thread.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        bail!("unshare(CLONE_NEWNET) failed (tests need root): {err}");
    }
    Ok(())
}

/// Runs `ip ARGS` (inherits this thread's namespace) and fails with its stderr.
pub fn run_ip(args: &[&str]) -> Result<String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("spawn `ip` (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {} {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `nft -f -` with `script` (in this thread's network namespace).
pub fn nft(script: &str) -> Result<()> {
    use std::io::Write as _;
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("spawn nft (apt install nftables; scripts/install-test-deps.sh)")?;
    child.stdin.take().context("nft stdin")?.write_all(script.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("nft: {} {}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}
