//! rts-impair: a UDP impairment relay for tests where `tc netem` is unavailable.
//!
//! [`Model`] is the sans-IO core (seeded, no clock reads): feed it `(now, len)` and it answers
//! drop or deliver-at. [`relay`] wraps one model per client and direction around real
//! sockets in a single-threaded `mio` loop with a binary heap of pending deliveries.
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod config;
mod error;
mod model;
pub mod relay;
mod rng;

pub use config::{DropRun, GilbertElliott, ImpairConfig, JitterDist, RateLimit};
pub use error::ImpairError;
pub use model::{Decision, DropReason, Model, ModelStats};
pub use rng::Rng;

#[cfg(test)]
mod model_tests;
