//! Cross-process futex on a word inside the shared mapping.
//!
//! The shared (non-`FUTEX_PRIVATE_FLAG`) operations key the wait queue on the
//! physical page, so a waiter in control and a waker in the dataplane meet
//! even though the word sits at different virtual addresses.

use std::sync::atomic::AtomicU32;
use std::time::Duration;

/// Sleeps while `*word == expected`, at most `timeout`. Returns on wake,
/// timeout, signal or value mismatch alike; the caller re-checks its
/// condition, so the result is deliberately not reported.
pub(super) fn wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        // Always < 1e9, fits every c_long.
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `word` is a live, 4-byte-aligned atomic inside a MAP_SHARED
    // mapping that outlives this call; `ts` outlives the call; the kernel only
    // reads both. FUTEX_WAIT ignores the last two arguments.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

/// Wakes up to `n` waiters sleeping on `word`.
pub(super) fn wake(word: &AtomicU32, n: i32) {
    // SAFETY: `word` is a live, aligned atomic inside the shared mapping; the
    // kernel does not dereference it for FUTEX_WAKE beyond hashing its page.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            n,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}
