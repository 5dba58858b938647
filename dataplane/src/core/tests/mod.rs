//! Deterministic tests of the core: no sockets, no threads, a simulated
//! clock that jumps from one timeout to the next. A publisher speaks real
//! RTMP (rml_rtmp's client) and viewers decrypt what the core sends with
//! their own SRTP contexts.

mod admin;
mod alloc;
mod billing;
mod catchup;
mod domains;
mod flv;
mod hls;
mod hooks;
mod ice;
mod ingest;
mod limits;
mod metrics;
mod repair;
mod replication;
mod reports;
mod sessions;
mod pull;
mod reload;
mod switching;
mod transmit;

pub use crate::testkit::*;

use super::stream::Kind;
use super::streams::StreamId;
use crate::relay::RelayMsg;
use bytes::Bytes;
use rts_common::ipc::{ControlToShard, ShardToControl};
use rts_srtp::{Profile, SrtpContext};
use rts_stun::PacketKind;
use rts_common::ipc::StreamStats;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Viewer `v`'s RTT as its receiver reports would have measured it (None:
/// not measured yet).
fn set_rtt(rig: &mut Rig, v: &Viewer, rtt: Option<Duration>) {
    let idx = rig.core.by_id[&v.session];
    if let Some(m) = rig.core.sessions[idx].media.as_mut() {
        m.repair.rtt = rtt;
    }
}

/// Stream `stream`'s figures from the next periodic stats (1.1 s later).
fn stream_stats(rig: &mut Rig, stream: &str) -> StreamStats {
    rig.take_ctl();
    rig.advance(ms(1_100));
    let mut stats = rig.take_ctl().into_iter().filter_map(|m| match m {
        ShardToControl::StreamStats(s) if s.stream == stream => Some(*s),
        _ => None,
    });
    stats.next_back().expect("the periodic stream stats")
}
