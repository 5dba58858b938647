//! Per-address limits on the public listener (`[limits]`): signaling
//! requests per second (a token bucket per client address, burst twice
//! the rate; over it: 429 with Retry-After), so a flood from one address
//! costs a bounded amount of control's time and cannot crowd out others.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Addresses tracked at most; beyond, idle ones are dropped first.
const MAX_ADDRESSES: usize = 100_000;

struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl RateLimiter {
    /// Whether `ip` may make one more request at `now` at `per_s` requests
    /// per second (0: no limit).
    pub fn allow(&self, ip: IpAddr, per_s: u32, now: Instant) -> bool {
        if per_s == 0 {
            return true;
        }
        let rate = f64::from(per_s);
        let burst = rate * 2.0;
        let mut b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if b.len() >= MAX_ADDRESSES && !b.contains_key(&ip) {
            // Full buckets are idle addresses: forgetting them changes nothing.
            b.retain(|_, k| k.tokens + now.saturating_duration_since(k.at).as_secs_f64() * rate < burst);
        }
        let k = b.entry(ip).or_insert(Bucket { tokens: burst, at: now });
        k.tokens = (k.tokens + now.saturating_duration_since(k.at).as_secs_f64() * rate).min(burst);
        k.at = now;
        if k.tokens >= 1.0 {
            k.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_of_twice_the_rate_then_the_rate() {
        let l = RateLimiter::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        let allowed = (0..100).filter(|_| l.allow(ip, 10, t0)).count();
        assert_eq!(allowed, 20, "burst = 2 x rate");
        assert!(l.allow(other, 10, t0), "another address has its own bucket");
        // 1 s later: 10 more.
        let allowed = (0..100).filter(|_| l.allow(ip, 10, t0 + Duration::from_secs(1))).count();
        assert_eq!(allowed, 10);
        assert!((0..1000).all(|_| l.allow(ip, 0, t0)), "0 = no limit");
    }
}
