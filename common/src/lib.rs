//! Pieces shared by the dataplane and control processes: configuration,
//! signed-URL auth, the control<->dataplane message set and the shared-memory
//! rings that carry it, and the TLS certificates both serve.
pub mod auth;
pub mod config;
pub mod histogram;
pub mod ipc;
pub mod net;
pub mod shm;
pub mod signaling_body;
pub mod tls;
