//! Per-client rate limits (`rate_limit { requests = N; per = 1s; burst = B; }`).
//!
//! A token bucket per client (`burst` tokens, refilled at `requests` per
//! `per`), in a fixed table allocated once: memory does not grow with the
//! number of clients. A client not in the table takes the slot, among the
//! few its hash may use, whose bucket is fullest after refill (the one
//! whose eviction forgets the least). A refused request gets 429 with
//! `Retry-After` in whole seconds.

use alloc::vec;
use alloc::vec::Vec;

use crate::Response;

/// Slots a client's hash may use.
const WAYS: usize = 4;
/// One token, in the fixed-point unit buckets count in.
const UNIT: u64 = 1 << 20;

#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    client: u64,
    used: bool,
    /// Tokens × UNIT.
    tokens: u64,
    /// When `tokens` was last brought up to date (ns).
    at: u64,
}

/// The limiter.
#[derive(Clone, Debug)]
pub struct RateLimiter {
    slots: Vec<Slot>,
    /// Nanoseconds per token.
    interval: u64,
    burst: u64,
}

impl RateLimiter {
    /// `requests` per `per_ns` nanoseconds with bursts of `burst`, for up to
    /// `clients` clients tracked at once (rounded up to a power of two).
    pub fn new(requests: u32, per_ns: u64, burst: u32, clients: usize) -> RateLimiter {
        let n = clients.max(WAYS).next_power_of_two();
        RateLimiter {
            slots: vec![Slot::default(); n],
            interval: (per_ns / u64::from(requests.max(1))).max(1),
            burst: u64::from(burst.max(1)),
        }
    }

    fn refill(&self, s: &Slot, now: u64) -> u64 {
        let elapsed = now.saturating_sub(s.at);
        let gained =
            (elapsed as u128 * UNIT as u128 / self.interval as u128).min(u64::MAX as u128) as u64;
        s.tokens.saturating_add(gained).min(self.burst * UNIT)
    }

    /// Takes a token for `client` at `now` (ns): `Err(seconds)` to wait when
    /// none is left.
    pub fn check(&mut self, client: u64, now: u64) -> Result<(), u64> {
        let mask = self.slots.len() - 1;
        let h = (client.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 17) as usize;
        let mut pick = None;
        let mut fullest = (0u64, h & mask);
        for w in 0..WAYS {
            let i = (h + w) & mask;
            let s = &self.slots[i];
            if s.used && s.client == client {
                pick = Some(i);
                break;
            }
            let level = if s.used {
                self.refill(s, now)
            } else {
                u64::MAX
            };
            if level >= fullest.0 {
                fullest = (level, i);
            }
        }
        let i = match pick {
            Some(i) => i,
            None => {
                let i = fullest.1;
                self.slots[i] = Slot {
                    client,
                    used: true,
                    tokens: self.burst * UNIT,
                    at: now,
                };
                i
            }
        };
        let tokens = self.refill(&self.slots[i], now);
        let s = &mut self.slots[i];
        s.at = now.max(s.at);
        if tokens >= UNIT {
            s.tokens = tokens - UNIT;
            Ok(())
        } else {
            s.tokens = tokens;
            let wait_ns = (UNIT - tokens) as u128 * self.interval as u128 / UNIT as u128;
            Err(wait_ns.div_ceil(1_000_000_000).max(1) as u64)
        }
    }

    /// 429 with `Retry-After`.
    pub fn refusal(retry_after: u64) -> Response {
        Response::error(429, "rate limit exceeded")
            .with_header("Retry-After", alloc::format!("{retry_after}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn burst_then_refill() {
        let mut l = RateLimiter::new(2, S, 3, 16);
        for _ in 0..3 {
            assert_eq!(l.check(7, 0), Ok(()));
        }
        assert_eq!(l.check(7, 0), Err(1));
        // Another client has its own bucket.
        assert_eq!(l.check(8, 0), Ok(()));
        // Half a second later, one token (2 per second).
        assert_eq!(l.check(7, S / 2), Ok(()));
        assert_eq!(l.check(7, S / 2), Err(1));
        // Ten seconds idle: back to the burst, not more.
        for _ in 0..3 {
            assert_eq!(l.check(7, 11 * S), Ok(()));
        }
        assert!(l.check(7, 11 * S).is_err());
    }

    #[test]
    fn slow_rates_say_how_long() {
        let mut l = RateLimiter::new(1, 60 * S, 1, 4);
        assert_eq!(l.check(1, 0), Ok(()));
        assert_eq!(l.check(1, 0), Err(60));
        assert_eq!(l.check(1, 30 * S), Err(30));
        let r = RateLimiter::refusal(30);
        assert_eq!((r.status, r.headers[0].1.as_str()), (429, "30"));
    }

    #[test]
    fn the_table_stays_fixed_and_a_crowd_does_not_lock_out_a_client() {
        let mut l = RateLimiter::new(1, S, 2, 8);
        let before = l.slots.len();
        for c in 0..10_000u64 {
            let _ = l.check(c, c);
        }
        assert_eq!(l.slots.len(), before);
        // A returning client evicted meanwhile starts with a full bucket
        // (a forgotten client is not punished).
        assert_eq!(l.check(3, 20_000), Ok(()));
    }
}
