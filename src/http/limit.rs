//! The per-client rate limit: a token bucket per remote address.
//!
//! It guards against abuse, not against a busy desk: the default allows thousands
//! of requests a second from one address. Past the limit a client gets 429
//! `rate_limited` and a `Retry-After`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Requests a second one client may make, by default.
pub const RATE_PER_CLIENT_DEFAULT: u32 = 4_000;
/// Clients remembered at once; beyond, the idle ones are forgotten.
pub const CLIENTS_TRACKED_MAX: usize = 10_000;

/// The rejection of a request over its client's rate.
#[derive(Debug)]
pub struct RateLimited;

impl warp::reject::Reject for RateLimited {}

#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    /// `per_second` requests a second, in bursts of up to one second's worth; 0 for no limit
    /// (a load test from one address, or a proxy in front that limits on its own).
    pub fn new(per_second: u32) -> RateLimiter {
        RateLimiter { per_second: f64::from(per_second), buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one token for `client`; false when it has none left.
    pub fn allow(&self, client: Option<IpAddr>, now: Instant) -> bool {
        let Some(client) = client else { return true };
        if self.per_second == 0.0 {
            return true;
        }
        let mut buckets = self.buckets.lock().expect("the rate limiter's lock");
        if buckets.len() >= CLIENTS_TRACKED_MAX && !buckets.contains_key(&client) {
            buckets.retain(|_, bucket| now.duration_since(bucket.last).as_secs_f64() < 1.0);
        }
        let bucket = buckets.entry(client).or_insert(Bucket { tokens: self.per_second, last: now });
        let refill = now.duration_since(bucket.last).as_secs_f64() * self.per_second;
        bucket.tokens = (bucket.tokens + refill).min(self.per_second);
        bucket.last = now;
        if bucket.tokens < 1.0 {
            return false;
        }
        bucket.tokens -= 1.0;
        true
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_client_gets_its_rate_and_no_more_and_others_are_not_held_back() {
        let limiter = RateLimiter::new(10);
        let start = Instant::now();
        let (one, two) = (Some("127.0.0.1".parse().unwrap()), Some("127.0.0.2".parse().unwrap()));
        assert!((0..10).all(|_| limiter.allow(one, start)));
        assert!(!limiter.allow(one, start), "the eleventh in the same instant");
        assert!(limiter.allow(two, start), "another client has its own bucket");
        assert!(limiter.allow(one, start + Duration::from_millis(100)), "a tenth of a second brings one back");
        assert!(!limiter.allow(one, start + Duration::from_millis(100)));
        assert!((0..10).all(|_| limiter.allow(one, start + Duration::from_secs(5))), "refilled, to the burst only");
        assert!(!limiter.allow(one, start + Duration::from_secs(5)));
        let unlimited = RateLimiter::new(0);
        assert!((0..100_000).all(|_| unlimited.allow(one, start)), "0 is no limit");
    }
}
