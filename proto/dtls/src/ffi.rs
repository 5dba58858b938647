//! The only `unsafe` in the crate: the DTLS timer controls, which OpenSSL exposes
//! as `SSL_ctrl` macros (`DTLSv1_get_timeout`, `DTLSv1_handle_timeout`) that neither
//! `openssl` nor `openssl-sys` wrap.
#![allow(unsafe_code)]

use std::time::Duration;

use foreign_types::ForeignTypeRef;
use libc::c_int;
use openssl::ssl::SslRef;

/// `DTLS_CTRL_GET_TIMEOUT` from `<openssl/ssl.h>`.
const DTLS_CTRL_GET_TIMEOUT: c_int = 73;
/// `DTLS_CTRL_HANDLE_TIMEOUT` from `<openssl/ssl.h>`.
const DTLS_CTRL_HANDLE_TIMEOUT: c_int = 74;

/// `DTLSv1_get_timeout`: time left on the retransmission timer (zero when already
/// expired), or `None` when no timer runs. OpenSSL measures it on its own wall clock.
pub(crate) fn get_timeout(ssl: &SslRef) -> Option<Duration> {
    let mut tv = libc::timeval { tv_sec: 0, tv_usec: 0 };
    // SAFETY: `ssl.as_ptr()` is a live SSL* for the duration of the borrow; for this
    // command OpenSSL writes exactly one `struct timeval` through `parg`, which points
    // at the local `tv`, and keeps no reference to it.
    let running = unsafe {
        openssl_sys::SSL_ctrl(
            ssl.as_ptr(),
            DTLS_CTRL_GET_TIMEOUT,
            0,
            std::ptr::addr_of_mut!(tv).cast(),
        )
    };
    if running <= 0 {
        return None;
    }
    let secs = u64::try_from(tv.tv_sec).unwrap_or(0);
    let micros = u32::try_from(tv.tv_usec).unwrap_or(0).min(999_999);
    Some(Duration::new(secs, micros * 1000))
}

/// Outcome of `DTLSv1_handle_timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimeoutOutcome {
    /// The last flight was retransmitted (into the write BIO).
    Retransmitted,
    /// OpenSSL's timer had not expired (or none was running): nothing happened.
    NotDue,
    /// Too many retransmissions: the handshake is dead.
    GaveUp,
}

/// `DTLSv1_handle_timeout`: retransmits the buffered flight if OpenSSL's timer expired.
pub(crate) fn handle_timeout(ssl: &SslRef) -> TimeoutOutcome {
    // SAFETY: `ssl.as_ptr()` is a live SSL*; this command takes no pointer argument.
    // The method takes `&SslRef` like the `openssl` crate's own mutating wrappers of
    // SSL_ctrl do; callers hold the endpoint mutably, so nothing else touches the SSL.
    let r = unsafe {
        openssl_sys::SSL_ctrl(ssl.as_ptr(), DTLS_CTRL_HANDLE_TIMEOUT, 0, std::ptr::null_mut())
    };
    match r {
        r if r > 0 => TimeoutOutcome::Retransmitted,
        0 => TimeoutOutcome::NotDue,
        _ => TimeoutOutcome::GaveUp,
    }
}
