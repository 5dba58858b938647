//! Cluster mode (`[cluster]`, docs/decisions/022): this node's part of the
//! origin/edge cascade. A thread heartbeats the node and the streams it
//! holds into the Redis directory; a viewer asking for a stream this node
//! does not have makes it pull the stream from a node that has it (one pull
//! per stream per node, on the shard where that stream's viewers meet, the
//! other shards replicate as for a local publisher); a pull stops a while
//! after its last viewer here left; a node over capacity redirects new
//! viewers. Media never passes through here: pulls are the shards' own TCP
//! connections.

pub mod directory;

use crate::engine::Engine;
use directory::{DirError, Directory, Holder, NodeEntry};
use rts_common::config::{ClusterConfig, Config};
use rts_common::ipc::{self, ControlToShard};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Redis operations wait at most this long (a lookup blocks a signaling
/// request, the heartbeat the directory thread).
const REDIS_TIMEOUT: Duration = Duration::from_millis(500);
/// How soon a wanted stream is looked up again (not found yet, or its pull
/// ended).
const RETRY: Duration = Duration::from_millis(500);

/// One stream this node pulls, or wants to (viewers wait for it).
#[derive(Debug, Clone)]
struct Pull {
    app: String,
    stream: String,
    /// The holder pulled from, while a pull is asked for or running.
    source: Option<Holder>,
    /// The pull delivers (the shard announced the stream).
    live: bool,
    retry_at: Instant,
    /// No viewer of it here since.
    idle_since: Option<Instant>,
}

#[derive(Default)]
struct State {
    pulls: HashMap<String, Pull>,
    /// The directory answered the last heartbeat.
    up: bool,
    /// Its being unreachable was logged.
    warned: bool,
    /// What the last heartbeat registered: stream key -> holder entry.
    registered: HashMap<String, Holder>,
    /// Alive nodes, as read at most one heartbeat ago (steering).
    nodes: Option<(Instant, Vec<NodeEntry>)>,
}

pub struct Cluster {
    pub node_id: String,
    cfg: ClusterConfig,
    url: String,
    media: SocketAddr,
    dir: Directory,
    state: Mutex<State>,
    /// Streams the shards' media viewers asked for (`StreamWanted`), for
    /// the directory thread (the ring pump must not wait for Redis).
    wanted: Mutex<Vec<(String, String)>>,
    wake: std::sync::Condvar,
}

/// Why a viewer is not served here.
#[derive(Debug, Clone, PartialEq)]
pub enum Steer {
    /// Serve here.
    Here,
    /// Send the viewer to this node's signaling base URL.
    Redirect(String),
    /// Full, and no node can take the viewer.
    Full(String),
}

pub fn unix_ms() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The holder to pull from: not this node, not one downstream of it, at
/// most `max_hops` from the ingest once pulled, alive. Nodes with room
/// first, then the fewest hops (so edges pull from the origin until it is
/// full, then from mid-tier nodes), then the least loaded.
pub fn choose_source<'a>(me: &str, holders: &'a [Holder], nodes: &'a [NodeEntry], max_hops: u32) -> Option<(&'a Holder, &'a NodeEntry)> {
    holders
        .iter()
        .filter(|h| h.node != me && !h.upstream.iter().any(|u| u == me) && h.hop < max_hops)
        .filter_map(|h| nodes.iter().find(|n| n.id == h.node).map(|n| (h, n)))
        .min_by(|(ha, na), (hb, nb)| (na.full(), ha.hop).cmp(&(nb.full(), hb.hop)).then(na.load().total_cmp(&nb.load())))
}

/// Where a viewer of a stream held by `holders` goes when this node is
/// full: the least loaded node with room that already has the stream,
/// else the least loaded node with room that takes redirects.
pub fn choose_redirect<'a>(me: &str, holders: &[Holder], nodes: &'a [NodeEntry]) -> Option<&'a NodeEntry> {
    let open = || nodes.iter().filter(|n| n.id != me && n.redirect_target && !n.full());
    let least = |it: &mut dyn Iterator<Item = &'a NodeEntry>| it.min_by(|a, b| a.load().total_cmp(&b.load()));
    least(&mut open().filter(|n| holders.iter().any(|h| h.node == n.id))).or_else(|| least(&mut open()))
}

impl Cluster {
    pub fn new(cfg: &Config) -> anyhow::Result<Option<Arc<Cluster>>> {
        let Some(c) = cfg.cluster.clone() else { return Ok(None) };
        let dir = Directory::new(&c.redis, c.ttl_ms, REDIS_TIMEOUT).map_err(|e| anyhow::anyhow!("[cluster] redis: {e}"))?;
        Ok(Some(Arc::new(Cluster { node_id: cfg.node_id(), url: cfg.advertise_url(), media: cfg.advertise_media(), cfg: c, dir, state: Mutex::new(State::default()), wanted: Mutex::new(Vec::new()), wake: std::sync::Condvar::new() })))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The `[cluster]` settings now (a reload may have changed the limits).
    fn live(&self, engine: &Engine) -> ClusterConfig {
        engine.cfg().cluster.clone().unwrap_or_else(|| self.cfg.clone())
    }

    /// This node's entry as the directory should have it now.
    fn entry(&self, engine: &Engine) -> NodeEntry {
        let stats = engine.shard_stats();
        let live = self.live(engine);
        NodeEntry {
            id: self.node_id.clone(),
            url: self.url.clone(),
            media: self.media.to_string(),
            viewers: engine.viewer_count(),
            capacity: live.capacity_viewers,
            redirect_target: live.redirect_target,
            draining: engine.draining(),
            busy: stats.iter().map(|s| f64::from(s.busy_permille) / 1000.0).collect(),
            streams: self.state().registered.len() as u64,
        }
    }

    /// Whether this node takes no more viewers.
    fn full(&self, engine: &Engine) -> bool {
        let cap = self.live(engine).capacity_viewers;
        cap > 0 && engine.viewer_count() >= cap
    }

    /// Signaling asks where a new viewer of app/stream (the server's
    /// names) goes.
    pub fn steer(&self, engine: &Engine, app: &str, stream: &str) -> Steer {
        let draining = engine.draining();
        if !draining && !self.full(engine) {
            return Steer::Here;
        }
        let why = if draining { "server draining" } else { "over capacity" };
        let key = format!("{app}/{stream}");
        let now_ms = unix_ms();
        let nodes = {
            let cached = self.state().nodes.clone().filter(|(at, _)| at.elapsed() < Duration::from_millis(self.cfg.heartbeat_ms));
            match cached {
                Some((_, n)) => n,
                None => match self.dir.alive_nodes(now_ms) {
                    Ok(n) => {
                        self.state().nodes = Some((Instant::now(), n.clone()));
                        n
                    }
                    Err(e) => return Steer::Full(format!("{why}; {e}")),
                },
            }
        };
        let holders = self.dir.holders(&key, now_ms).unwrap_or_default();
        match choose_redirect(&self.node_id, &holders, &nodes) {
            Some(n) => Steer::Redirect(n.url.clone()),
            None => Steer::Full(format!("{why} and no other node has room")),
        }
    }

    /// A viewer here wants app/stream (the server's names; `domain` the
    /// domain it asked for): if no publisher or pull here has it, find a
    /// node that does and pull it. Not found anywhere: the viewer waits,
    /// and the stream is looked for again until it appears or the viewers
    /// leave. Ok(true): the stream is here or a pull of it runs or was
    /// asked for; Err: the directory cannot be asked (503).
    pub fn want(&self, engine: &Engine, app: &str, stream: &str) -> Result<bool, DirError> {
        let key = format!("{app}/{stream}");
        if engine.stream_shard(app, stream).is_some() || self.state().pulls.get(&key).is_some_and(|p| p.source.is_some()) {
            return Ok(true);
        }
        if self.state().pulls.contains_key(&key) {
            return Ok(false); // looked for again by the directory thread
        }
        let holders = self.dir.holders(&key, unix_ms())?;
        let ids: Vec<String> = holders.iter().map(|h| h.node.clone()).collect();
        let nodes = self.dir.nodes(&ids)?;
        let mut st = self.state();
        if let Some(p) = st.pulls.get(&key) {
            return Ok(p.source.is_some()); // another viewer got there first
        }
        let mut pull = Pull { app: app.into(), stream: stream.into(), source: None, live: false, retry_at: Instant::now() + RETRY, idle_since: None };
        if let Some((h, n)) = choose_source(&self.node_id, &holders, &nodes, self.live(engine).max_hops) {
            pull.source = self.start_pull(engine, app, stream, h, n).then(|| h.clone());
        }
        let pulling = pull.source.is_some();
        st.pulls.insert(key, pull);
        Ok(pulling)
    }

    /// Asks the stream's meeting shard to pull it from `node`.
    fn start_pull(&self, engine: &Engine, app: &str, stream: &str, holder: &Holder, node: &NodeEntry) -> bool {
        let Ok(source) = node.media.parse::<SocketAddr>() else {
            tracing::warn!(node = %node.id, media = %node.media, "cluster node with a bad media address");
            return false;
        };
        let (domain, plain_app) = rts_common::config::split_stream_app(app);
        let mut path = format!("/{plain_app}/{stream}.flv?relay={}", self.node_id);
        // Nodes share the domains' keys: the pull signs itself like a viewer.
        if let Some(key) = engine.cfg().play_auth_for(domain).and_then(|a| a.key) {
            let token = rts_common::auth::sign_path(&format!("/{plain_app}/{stream}"), &key, rts_common::config::unix_now(), &format!("{:016x}", rand::random::<u64>()), "0");
            path.push_str("&auth_key=");
            path.push_str(&token);
        }
        let host = if domain.is_empty() { node.media.clone() } else { domain.to_string() };
        let shard = engine.meeting_shard(app, stream);
        let msg = ControlToShard::Pull { app: app.into(), stream: stream.into(), domain: domain.into(), source, host, path };
        match engine.send(shard, msg) {
            Ok(_) => {
                tracing::info!(stream = %format!("{app}/{stream}"), from = %holder.node, hop = holder.hop + 1, shard, "pulling");
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot ask a shard to pull");
                false
            }
        }
    }

    /// A shard announced app/stream: a pull of it delivers.
    pub fn on_stream_started(&self, app: &str, stream: &str) {
        if let Some(p) = self.state().pulls.get_mut(&format!("{app}/{stream}")) {
            p.live = p.source.is_some();
        }
    }

    /// A shard's pull of app/stream ended: looked up again soon (its
    /// publisher may come back on any node) while viewers wait here.
    pub fn on_pull_ended(&self, app: &str, stream: &str, reason: &str) {
        let key = format!("{app}/{stream}");
        let mut st = self.state();
        if reason == "published here" {
            st.pulls.remove(&key);
            return;
        }
        if let Some(p) = st.pulls.get_mut(&key) {
            tracing::info!(stream = %key, from = ?p.source.as_ref().map(|h| &h.node), reason, "pull ended");
            p.source = None;
            p.live = false;
            p.retry_at = Instant::now() + RETRY;
        }
    }

    /// A media-listener viewer on a shard wants app/stream: looked up
    /// and pulled by the directory thread at once.
    pub fn wanted(&self, app: String, stream: String) {
        self.wanted.lock().unwrap_or_else(|e| e.into_inner()).push((app, stream));
        self.wake.notify_one();
    }

    /// The directory thread: heartbeats, pulls to retry or stop, and the
    /// streams media viewers want (as they come).
    pub fn run(self: Arc<Self>, engine: Arc<Engine>) {
        let period = Duration::from_millis(self.cfg.heartbeat_ms);
        let mut next_tick = Instant::now();
        while !engine.stopped() {
            if Instant::now() >= next_tick {
                self.tick(&engine, Instant::now());
                next_tick = Instant::now() + period;
            }
            let wants = {
                let mut w = self.wanted.lock().unwrap_or_else(|e| e.into_inner());
                if w.is_empty() {
                    let wait = next_tick.saturating_duration_since(Instant::now()).min(Duration::from_millis(100));
                    w = self.wake.wait_timeout(w, wait).map(|(g, _)| g).unwrap_or_else(|e| e.into_inner().0);
                }
                std::mem::take(&mut *w)
            };
            for (app, stream) in wants {
                if let Err(e) = self.want(&engine, &app, &stream) {
                    tracing::info!(stream = %format!("{app}/{stream}"), error = %e, "wanted stream not looked up");
                }
            }
        }
    }

    fn tick(&self, engine: &Engine, now: Instant) {
        // What this node holds: its publishers (hop 0) and live pulls.
        let mut holding: HashMap<String, Holder> = HashMap::new();
        for (app, stream) in engine.published_streams() {
            let key = format!("{app}/{stream}");
            let holder = match self.state().pulls.get(&key) {
                Some(Pull { source: Some(src), live: true, .. }) => {
                    let mut upstream = src.upstream.clone();
                    upstream.push(src.node.clone());
                    Holder { node: self.node_id.clone(), hop: src.hop + 1, upstream }
                }
                Some(_) => continue, // a pull not delivering yet
                None => Holder { node: self.node_id.clone(), hop: 0, upstream: Vec::new() },
            };
            holding.insert(key, holder);
        }
        let entry = self.entry(engine);
        let streams: Vec<(String, Holder)> = holding.iter().map(|(k, h)| (k.clone(), h.clone())).collect();
        let now_ms = unix_ms();
        let result = self.dir.heartbeat(&entry, &streams, now_ms);
        let gone: Vec<(String, Holder)> = {
            let st = self.state();
            st.registered.iter().filter(|(k, h)| holding.get(*k) != Some(*h)).map(|(k, h)| (k.clone(), h.clone())).collect()
        };
        match result {
            Ok(()) => {
                for (k, h) in &gone {
                    let _ = self.dir.remove_holder(k, h);
                }
                let mut st = self.state();
                st.warned = false;
                if !st.up {
                    tracing::info!(node = %self.node_id, streams = holding.len(), "cluster directory: registered");
                }
                st.up = true;
                st.registered = holding;
            }
            Err(e) => {
                let mut st = self.state();
                if st.up || !st.warned {
                    tracing::warn!(node = %self.node_id, error = %e, "cluster directory unreachable; serving what this node has");
                }
                st.warned = true;
                st.up = false;
                // Entries written before expire meanwhile; every heartbeat
                // writes them all again once it answers.
                st.registered.clear();
            }
        }
        self.tend_pulls(engine, now);
    }

    /// Pulls without viewers for `pull_linger_s` stop; pulls that ended or
    /// never found a source are looked up again.
    fn tend_pulls(&self, engine: &Engine, now: Instant) {
        let live = self.live(engine);
        let linger = Duration::from_secs(live.pull_linger_s);
        let viewers = engine.viewers_by_stream();
        let mut stop = Vec::new();
        let mut retry = Vec::new();
        {
            let mut st = self.state();
            st.pulls.retain(|key, p| {
                if viewers.get(key).copied().unwrap_or(0) > 0 {
                    p.idle_since = None;
                } else if now.duration_since(*p.idle_since.get_or_insert(now)) >= linger {
                    if p.source.is_some() {
                        stop.push((p.app.clone(), p.stream.clone()));
                    }
                    tracing::info!(stream = %key, "pull stopped: no viewers");
                    return false;
                }
                if p.source.is_none() && now >= p.retry_at {
                    p.retry_at = now + RETRY;
                    retry.push((key.clone(), p.app.clone(), p.stream.clone()));
                }
                true
            });
        }
        for (app, stream) in stop {
            let _ = engine.send(engine.meeting_shard(&app, &stream), ControlToShard::StopPull { app, stream });
        }
        for (key, app, stream) in retry {
            let pulling = self.state().pulls.get(&key).is_some_and(|p| p.source.is_some());
            if engine.stream_shard(&app, &stream).is_some() && !pulling {
                // Published here meanwhile.
                self.state().pulls.remove(&key);
                continue;
            }
            let Ok(holders) = self.dir.holders(&key, unix_ms()) else { continue };
            let ids: Vec<String> = holders.iter().map(|h| h.node.clone()).collect();
            let Ok(nodes) = self.dir.nodes(&ids) else { continue };
            if let Some((h, n)) = choose_source(&self.node_id, &holders, &nodes, live.max_hops) {
                if self.start_pull(engine, &app, &stream, h, n) {
                    if let Some(p) = self.state().pulls.get_mut(&key) {
                        p.source = Some(h.clone());
                    }
                }
            }
        }
    }

    /// Pulls this node runs or waits for: (stream, source node, live).
    pub fn pulls(&self) -> Vec<(String, Option<String>, bool)> {
        let mut v: Vec<_> = self.state().pulls.iter().map(|(k, p)| (k.clone(), p.source.as_ref().map(|h| h.node.clone()), p.live)).collect();
        v.sort();
        v
    }

    pub fn directory_up(&self) -> bool {
        self.state().up
    }
}

/// The shard a stream's viewers meet on before it is live (and where its
/// pull runs), as `Engine::place` puts them.
pub fn meeting_shard(app: &str, stream: &str, shards: usize) -> usize {
    (ipc::stream_ssrc(app, stream, 0) as usize) % shards.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, viewers: u64, capacity: u64) -> NodeEntry {
        NodeEntry { id: id.into(), url: format!("http://{id}"), media: "10.0.0.1:8088".into(), viewers, capacity, redirect_target: true, ..Default::default() }
    }

    fn holder(id: &str, hop: u32, upstream: &[&str]) -> Holder {
        Holder { node: id.into(), hop, upstream: upstream.iter().map(|s| s.to_string()).collect() }
    }

    #[test]
    fn the_source_is_the_origin_until_it_is_full_then_the_least_loaded_mid_tier() {
        let holders = [holder("origin", 0, &[]), holder("mid-1", 1, &["origin"]), holder("mid-2", 1, &["origin"])];
        let mut nodes = vec![node("origin", 10, 50), node("mid-1", 40, 100), node("mid-2", 20, 100)];
        assert_eq!(choose_source("edge", &holders, &nodes, 3).unwrap().0.node, "origin");
        nodes[0].viewers = 50; // the origin's pulls fill it
        assert_eq!(choose_source("edge", &holders, &nodes, 3).unwrap().0.node, "mid-2");
        // Hops are bounded: with max 1 only the origin qualifies, full or not.
        assert_eq!(choose_source("edge", &holders, &nodes, 1).unwrap().0.node, "origin");
        // A holder the directory has no live node entry for is skipped.
        assert_eq!(choose_source("edge", &holders, &nodes[1..], 1), None);
    }

    #[test]
    fn a_node_never_pulls_from_itself_or_its_own_downstream() {
        // edge-2 pulls from mid-1; if mid-1 had to look again it must not
        // pick edge-2 (a cycle), even when edge-2 is the least loaded.
        let holders = [holder("mid-1", 1, &["origin"]), holder("edge-2", 2, &["origin", "mid-1"])];
        let nodes = vec![node("mid-1", 0, 0), node("edge-2", 0, 0)];
        assert_eq!(choose_source("mid-1", &holders, &nodes, 5), None);
        assert_eq!(choose_source("edge-3", &holders, &nodes, 5).unwrap().0.node, "mid-1");
    }

    #[test]
    fn a_full_node_redirects_to_a_holder_with_room_else_the_least_loaded() {
        let mut nodes = vec![node("b", 100, 100), node("c", 30, 0), node("d", 5, 0), node("a", 0, 0)];
        nodes[3].redirect_target = false; // the origin takes no viewers
        let holders = [holder("a", 0, &[]), holder("c", 1, &["a"])];
        assert_eq!(choose_redirect("b", &holders, &nodes).unwrap().id, "c", "c has the stream");
        assert_eq!(choose_redirect("b", &[], &nodes).unwrap().id, "d", "nobody has it: least loaded");
        nodes[1].capacity = 30;
        assert_eq!(choose_redirect("b", &holders, &nodes).unwrap().id, "d", "c is full too");
        nodes[2].draining = true;
        assert_eq!(choose_redirect("b", &holders, &nodes), None, "nowhere to go");
    }
}
