//! The crate's one error type: only set-up problems. Per-viewer failures are
//! not errors of the run; they are counted by [`crate::FailureKind`].

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bad command line (exit code 2).
    #[error("usage: {0}")]
    Usage(String),
    /// `--url` is not `http://host[:port]/...`.
    #[error("bad --url {0:?}: {1}")]
    Url(String, &'static str),
    /// Certificate or DTLS context creation failed.
    #[error("DTLS set-up: {0}")]
    Dtls(#[from] rts_dtls::Error),
    /// Threads or the poller could not be created.
    #[error("I/O set-up: {0}")]
    Io(#[from] std::io::Error),
}
