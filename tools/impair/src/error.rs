//! The crate's single error type.

/// Everything that can go wrong configuring or running the relay.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImpairError {
    /// A configuration value is out of range or unparsable.
    #[error("invalid impairment config: {0}")]
    Config(String),
    /// Socket setup or polling failed (per-datagram send errors are counted, not returned).
    #[error("relay I/O: {0}")]
    Io(#[from] std::io::Error),
}
