//! The stream directory in Redis (docs/decisions/022): which nodes are up,
//! their load and addresses, and which nodes hold each stream. Every entry
//! carries its expiry, refreshed by the holder's heartbeat, so a dead node's
//! entries stop counting within the TTL with nobody cleaning up after it.
//!
//! Keys (all under `rts:`):
//! - `rts:node:{id}`: hash of the node's entry, `PEXPIRE` TTL.
//! - `rts:nodes`: sorted set of node ids scored by their expiry (Unix ms).
//! - `rts:stream:{app}/{stream}` (the server's names, so the domain is in
//!   the app, decision 021): sorted set of `{node};{hop};{upstream,...}`
//!   scored by expiry, `PEXPIRE` TTL. Hop 0 is the node that ingests it;
//!   the upstream list names the nodes the stream passes through on its way
//!   here (origin first), so a node never pulls from its own downstream.
//!
//! A heartbeat is one pipeline: the node's hash, its score, and per stream
//! one `ZADD` and one `PEXPIRE`. A lookup is one pipeline of two commands.
//! Synchronous on purpose: it runs on the cluster thread and on signaling's
//! blocking pool, with short timeouts.

use redis::{Connection, RedisResult};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// One node's entry.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeEntry {
    pub id: String,
    /// Signaling base URL (`http://host:8080`).
    pub url: String,
    /// Where to pull HTTP-FLV from (`host:port`).
    pub media: String,
    /// Viewers now (WebRTC sessions and TCP viewers).
    pub viewers: u64,
    /// `[cluster] capacity_viewers` (0 = no limit).
    pub capacity: u64,
    /// Other nodes may redirect viewers here.
    pub redirect_target: bool,
    pub draining: bool,
    /// Busy share of each shard (0..1).
    pub busy: Vec<f64>,
    /// Streams it holds (ingested or pulled).
    pub streams: u64,
}

impl NodeEntry {
    /// Whether it takes no more viewers.
    pub fn full(&self) -> bool {
        self.draining || (self.capacity > 0 && self.viewers >= self.capacity)
    }

    /// Load for ordering: the share of its capacity in use, or its viewer
    /// count against a nominal 10,000 when it has no limit.
    pub fn load(&self) -> f64 {
        self.viewers as f64 / if self.capacity > 0 { self.capacity as f64 } else { 10_000.0 }
    }

    fn fields(&self) -> Vec<(&'static str, String)> {
        let busy = self.busy.iter().map(|b| format!("{b:.3}")).collect::<Vec<_>>().join(",");
        vec![
            ("url", self.url.clone()),
            ("media", self.media.clone()),
            ("viewers", self.viewers.to_string()),
            ("capacity", self.capacity.to_string()),
            ("target", u8::from(self.redirect_target).to_string()),
            ("draining", u8::from(self.draining).to_string()),
            ("busy", busy),
            ("streams", self.streams.to_string()),
        ]
    }

    fn from_fields(id: &str, f: &HashMap<String, String>) -> Option<NodeEntry> {
        let num = |k: &str| f.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        Some(NodeEntry {
            id: id.to_string(),
            url: f.get("url")?.clone(),
            media: f.get("media")?.clone(),
            viewers: num("viewers"),
            capacity: num("capacity"),
            redirect_target: num("target") == 1,
            draining: num("draining") == 1,
            busy: f.get("busy").map(|b| b.split(',').filter_map(|x| x.parse().ok()).collect()).unwrap_or_default(),
            streams: num("streams"),
        })
    }
}

/// A node holding a stream, as the directory has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub node: String,
    /// 0: it ingests the stream; n: n pulls from the ingest.
    pub hop: u32,
    /// The nodes upstream of it, origin first.
    pub upstream: Vec<String>,
}

impl Holder {
    pub fn member(&self) -> String {
        format!("{};{};{}", self.node, self.hop, self.upstream.join(","))
    }

    pub fn parse(member: &str) -> Option<Holder> {
        let mut parts = member.splitn(3, ';');
        let node = parts.next().filter(|n| !n.is_empty())?.to_string();
        let hop = parts.next()?.parse().ok()?;
        let upstream = parts.next()?.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect();
        Some(Holder { node, hop, upstream })
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cluster directory unavailable: {0}")]
pub struct DirError(pub String);

impl From<redis::RedisError> for DirError {
    fn from(e: redis::RedisError) -> Self {
        DirError(e.to_string())
    }
}

pub fn node_key(id: &str) -> String {
    format!("rts:node:{id}")
}

pub fn stream_key(key: &str) -> String {
    format!("rts:stream:{key}")
}

const NODES: &str = "rts:nodes";

/// A connection to the directory, made again after any error.
pub struct Directory {
    client: redis::Client,
    conn: Mutex<Option<Connection>>,
    ttl_ms: u64,
    timeout: Duration,
}

impl Directory {
    /// `url` is `redis://…`; entries written live `ttl_ms`.
    pub fn new(url: &str, ttl_ms: u64, timeout: Duration) -> Result<Directory, DirError> {
        Ok(Directory { client: redis::Client::open(url)?, conn: Mutex::new(None), ttl_ms, timeout })
    }

    /// Runs `f` on the connection (made if needed); an error drops the
    /// connection so the next call starts clean.
    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> RedisResult<T>) -> Result<T, DirError> {
        let mut guard = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            let c = self.client.get_connection_with_timeout(self.timeout)?;
            c.set_read_timeout(Some(self.timeout))?;
            c.set_write_timeout(Some(self.timeout))?;
            *guard = Some(c);
        }
        let Some(c) = guard.as_mut() else { return Err(DirError("no connection".into())) };
        let r = f(c);
        if r.is_err() {
            *guard = None;
        }
        Ok(r?)
    }

    /// Writes `node`'s entry and its `streams` (each as a [`Holder`] of
    /// this node) with expiry `now_ms` + TTL, in one round trip.
    pub fn heartbeat(&self, node: &NodeEntry, streams: &[(String, Holder)], now_ms: u64) -> Result<(), DirError> {
        let expiry = now_ms + self.ttl_ms;
        let mut p = redis::pipe();
        let nk = node_key(&node.id);
        p.cmd("HSET").arg(&nk).arg(node.fields()).ignore();
        p.cmd("PEXPIRE").arg(&nk).arg(self.ttl_ms).ignore();
        p.cmd("ZADD").arg(NODES).arg(expiry).arg(&node.id).ignore();
        p.cmd("ZREMRANGEBYSCORE").arg(NODES).arg("-inf").arg(now_ms).ignore();
        for (key, holder) in streams {
            let sk = stream_key(key);
            p.cmd("ZADD").arg(&sk).arg(expiry).arg(holder.member()).ignore();
            p.cmd("PEXPIRE").arg(&sk).arg(self.ttl_ms).ignore();
        }
        self.with(|c| p.query::<()>(c))
    }

    /// Takes `holder` off stream `key` at once (the stream ended here).
    pub fn remove_holder(&self, key: &str, holder: &Holder) -> Result<(), DirError> {
        self.with(|c| redis::cmd("ZREM").arg(stream_key(key)).arg(holder.member()).query::<()>(c))
    }

    /// The live holders of stream `key` (expired members are dropped on
    /// the way).
    pub fn holders(&self, key: &str, now_ms: u64) -> Result<Vec<Holder>, DirError> {
        let sk = stream_key(key);
        let mut p = redis::pipe();
        p.cmd("ZREMRANGEBYSCORE").arg(&sk).arg("-inf").arg(now_ms).ignore();
        p.cmd("ZRANGEBYSCORE").arg(&sk).arg(now_ms).arg("+inf");
        let (members,): (Vec<String>,) = self.with(|c| p.query(c))?;
        Ok(members.iter().filter_map(|m| Holder::parse(m)).collect())
    }

    /// The entries of nodes `ids` that are still alive.
    pub fn nodes(&self, ids: &[String]) -> Result<Vec<NodeEntry>, DirError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut p = redis::pipe();
        for id in ids {
            p.cmd("HGETALL").arg(node_key(id));
        }
        let maps: Vec<HashMap<String, String>> = self.with(|c| p.query(c))?;
        Ok(ids.iter().zip(maps).filter_map(|(id, f)| NodeEntry::from_fields(id, &f)).collect())
    }

    /// Every node alive at `now_ms`.
    pub fn alive_nodes(&self, now_ms: u64) -> Result<Vec<NodeEntry>, DirError> {
        let ids: Vec<String> = self.with(|c| redis::cmd("ZRANGEBYSCORE").arg(NODES).arg(now_ms).arg("+inf").query(c))?;
        self.nodes(&ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holder_members_round_trip_and_bad_ones_are_skipped() {
        let h = Holder { node: "edge-1".into(), hop: 2, upstream: vec!["origin".into(), "mid-3".into()] };
        assert_eq!(h.member(), "edge-1;2;origin,mid-3");
        assert_eq!(Holder::parse(&h.member()), Some(h));
        let origin = Holder { node: "a".into(), hop: 0, upstream: vec![] };
        assert_eq!(origin.member(), "a;0;");
        assert_eq!(Holder::parse("a;0;"), Some(origin));
        assert_eq!(Holder::parse(";0;"), None);
        assert_eq!(Holder::parse("a;x;"), None);
        assert_eq!(Holder::parse("a;1"), None);
    }

    #[test]
    fn node_entries_round_trip_through_their_hash_fields() {
        let n = NodeEntry {
            id: "b".into(),
            url: "http://10.0.0.2:8080".into(),
            media: "10.0.0.2:8088".into(),
            viewers: 120,
            capacity: 100,
            redirect_target: true,
            draining: false,
            busy: vec![0.25, 0.5],
            streams: 3,
        };
        let fields: HashMap<String, String> = n.fields().into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        assert_eq!(NodeEntry::from_fields("b", &fields), Some(n.clone()));
        assert!(n.full(), "120 of 100");
        assert!((n.load() - 1.2).abs() < 1e-9);
        let unlimited = NodeEntry { capacity: 0, viewers: 5000, ..n };
        assert!(!unlimited.full());
        assert_eq!(NodeEntry::from_fields("x", &HashMap::new()), None, "an expired hash reads empty");
    }
}
