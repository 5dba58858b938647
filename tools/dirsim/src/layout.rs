//! Who holds what: a fixed, computable layout, so every lookup knows the
//! holders it must find (a lookup that does not find them is a directory
//! bug or an expiry, not noise) and a test can derive the same figures
//! without asking the tool.
//!
//! Stream `i` is `live/s{i}`, ingested (hop 0) by node `i mod nodes`. The
//! first `pulled` streams are also pulled (hop 1, upstream = the ingest)
//! by `pullers` other nodes each, spread over the rest of the nodes (one
//! stream pulled by every other node is the directory's side of a single
//! stream with a huge audience).

use rts_control::cluster::directory::{Holder, NodeEntry};

/// The directory key of stream `i` (app/stream, as the server names it).
pub fn stream_key(i: usize) -> String {
    format!("live/s{i}")
}

/// The id of node `n`.
pub fn node_id(n: usize) -> String {
    format!("sim-{n}")
}

#[derive(Debug, Clone, Copy)]
pub struct Layout {
    pub nodes: usize,
    pub streams: usize,
    /// Streams `0..pulled` are also held at hop 1 ...
    pub pulled: usize,
    /// ... by this many other nodes each (at most nodes − 1).
    pub pullers: usize,
}

impl Layout {
    /// The node ingesting stream `i`.
    pub fn owner(&self, i: usize) -> usize {
        i % self.nodes
    }

    /// The nodes pulling stream `i`: none if it is not pulled, else
    /// `pullers` distinct nodes, never its owner.
    pub fn pullers(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        let k = if i < self.pulled { self.pullers.min(self.nodes.saturating_sub(1)) } else { 0 };
        (0..k).map(move |j| (self.owner(i) + 1 + (i / self.nodes + j) % (self.nodes - 1)) % self.nodes)
    }

    /// The holders stream `i` has in the directory while every node
    /// heartbeats.
    pub fn expected(&self, i: usize) -> Vec<Holder> {
        let owner = self.owner(i);
        let mut v = vec![Holder { node: node_id(owner), hop: 0, upstream: Vec::new() }];
        v.extend(self.pullers(i).map(|p| Holder { node: node_id(p), hop: 1, upstream: vec![node_id(owner)] }));
        v
    }

    /// Every node's streams, as its heartbeat registers them.
    pub fn holdings(&self) -> Vec<Vec<(String, Holder)>> {
        let mut by_node: Vec<Vec<(String, Holder)>> = vec![Vec::new(); self.nodes];
        for i in 0..self.streams {
            let nodes = std::iter::once(self.owner(i)).chain(self.pullers(i));
            for (n, h) in nodes.zip(self.expected(i)) {
                by_node[n].push((stream_key(i), h));
            }
        }
        by_node
    }

    /// Node `n`'s entry: plausible figures of a node with `shards` shards
    /// (the hash's size is what Redis stores and sends back per lookup).
    pub fn entry(&self, n: usize, shards: usize, streams: usize) -> NodeEntry {
        let ip = format!("10.{}.{}.{}", (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff);
        NodeEntry {
            id: node_id(n),
            url: format!("http://{ip}:8080"),
            media: format!("{ip}:8088"),
            viewers: (n as u64 * 37) % 2000,
            capacity: 2500,
            redirect_target: true,
            draining: false,
            busy: (0..shards).map(|s| ((n + s) % 10) as f64 / 10.0).collect(),
            streams: streams as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_spread_evenly_and_pulls_never_land_on_the_owner() {
        let l = Layout { nodes: 7, streams: 100, pulled: 30, pullers: 1 };
        let h = l.holdings();
        let total: usize = h.iter().map(Vec::len).sum();
        assert_eq!(total, 130);
        for i in 0..100 {
            for p in l.pullers(i) {
                assert_ne!(p, l.owner(i));
            }
        }
        let hop0: Vec<usize> = h.iter().map(|v| v.iter().filter(|(_, h)| h.hop == 0).count()).collect();
        assert!(hop0.iter().all(|&c| c == 14 || c == 15), "{hop0:?}");
        assert_eq!(l.expected(3)[1].upstream, vec![node_id(3)]);
        assert_eq!(l.expected(50).len(), 1);
        for (n, streams) in h.iter().enumerate() {
            assert!(streams.iter().all(|(_, h)| h.node == node_id(n)), "node {n} registers only itself");
        }
    }

    #[test]
    fn one_stream_pulled_by_every_other_node() {
        let l = Layout { nodes: 5, streams: 1, pulled: 1, pullers: 9 };
        let mut nodes: Vec<String> = l.expected(0).into_iter().map(|h| h.node).collect();
        nodes.sort();
        assert_eq!(nodes, (0..5).map(node_id).collect::<Vec<_>>());
        assert!(l.holdings().iter().all(|v| v.len() == 1));
    }
}
