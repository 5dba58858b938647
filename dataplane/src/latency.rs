//! Server-added latency per stream: from the moment the shard reaped the TCP
//! completion holding an RTMP video frame to the moment the last viewer's
//! packet of that frame left through `sendmsg`.
//!
//! The last 1,024 samples are kept and summarised once a second (sorting a
//! copy), which costs nothing on the per-packet path.

const WINDOW: usize = 1024;

#[derive(Debug, Clone)]
pub struct LatencyWindow {
    samples: Vec<u32>,
    next: usize,
    pub total: u64,
    pub max_us: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LatencySummary {
    pub p50_us: u32,
    pub p99_us: u32,
    pub max_us: u32,
    pub samples: u64,
}

impl Default for LatencyWindow {
    fn default() -> Self {
        LatencyWindow { samples: Vec::with_capacity(WINDOW), next: 0, total: 0, max_us: 0 }
    }
}

impl LatencyWindow {
    pub fn record(&mut self, us: u32) {
        if self.samples.len() < WINDOW {
            self.samples.push(us);
        } else {
            self.samples[self.next] = us;
        }
        self.next = (self.next + 1) % WINDOW;
        self.total += 1;
        self.max_us = self.max_us.max(us);
    }

    pub fn summary(&self) -> LatencySummary {
        if self.samples.is_empty() {
            return LatencySummary::default();
        }
        let mut s = self.samples.clone();
        s.sort_unstable();
        let pick = |q: f64| s[((s.len() - 1) as f64 * q).round() as usize];
        LatencySummary { p50_us: pick(0.5), p99_us: pick(0.99), max_us: self.max_us, samples: self.total }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let mut w = LatencyWindow::default();
        assert_eq!(w.summary(), LatencySummary::default());
        for i in 1..=100 {
            w.record(i);
        }
        let s = w.summary();
        assert_eq!((s.p50_us, s.p99_us, s.max_us, s.samples), (51, 99, 100, 100));
        for _ in 0..2000 {
            w.record(5);
        }
        let s = w.summary();
        assert_eq!((s.p50_us, s.p99_us, s.max_us, s.samples), (5, 5, 100, 2100));
    }
}
