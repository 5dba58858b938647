//! The crate's single error type.

/// Errors returned by this crate. Terminal protocol failures of an endpoint are
/// reported as [`crate::DtlsEvent::Failed`] instead, because they are outcomes
/// of the session the caller must act on (tear down), not misuse of the API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// OpenSSL refused an operation (context or certificate building, key export).
    #[error("openssl: {0}")]
    OpenSsl(#[from] openssl::error::ErrorStack),
    /// The datagram is not a well-formed sequence of DTLS records; it was
    /// dropped without touching the session.
    #[error("malformed DTLS datagram: {0}")]
    Malformed(&'static str),
    /// The endpoint is closed or failed and accepts no more input.
    #[error("DTLS endpoint is closed or failed")]
    NotActive,
    /// The system clock is before the Unix epoch (certificate validity cannot be set).
    #[error("system clock before Unix epoch")]
    Clock,
}
