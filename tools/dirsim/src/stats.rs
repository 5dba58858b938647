//! Percentiles of recorded durations (microseconds). Every sample is kept:
//! a 30 s full-size run records ~300,000, a few MB, and exact percentiles
//! need no histogram to argue about.

use serde::Serialize;

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub count: usize,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `samples` (sorted in place).
    pub fn of(samples: &mut [u64]) -> Percentiles {
        if samples.is_empty() {
            return Percentiles::default();
        }
        samples.sort_unstable();
        let rank = |p: f64| samples[((p / 100.0 * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1];
        Percentiles { count: samples.len(), p50_us: rank(50.0), p99_us: rank(99.0), max_us: samples[samples.len() - 1] }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let mut v: Vec<u64> = (1..=100).rev().collect();
        assert_eq!(Percentiles::of(&mut v), Percentiles { count: 100, p50_us: 50, p99_us: 99, max_us: 100 });
        assert_eq!(Percentiles::of(&mut [7]), Percentiles { count: 1, p50_us: 7, p99_us: 7, max_us: 7 });
        assert_eq!(Percentiles::of(&mut []).count, 0);
    }
}
