//! The bandwidth cap of one direction of one connection: a token bucket that fills at the
//! rate, holds at most [`BURST`] worth of it, and says how long to wait rather than making
//! its caller poll.

use std::time::Duration;

use tokio::time::Instant;

/// How much of the rate the bucket holds: the longest burst, in time at that rate.
const BURST: Duration = Duration::from_millis(50);

/// Tokens are counted in bytes times [`NANOS`], so that a refill (nanoseconds times bytes per
/// second) is exact and a wait, rounded up to the nanosecond, always makes enough.
const NANOS: u128 = 1_000_000_000;

#[derive(Debug)]
pub(super) struct TokenBucket {
    /// Bytes times [`NANOS`]; `None` for a full bucket (whatever the rate turns out to be).
    tokens: Option<u128>,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub(super) fn new(now: Instant) -> Self {
        Self {
            tokens: None,
            last: now,
        }
    }

    /// The bucket's size at `rate` bytes per second: the most one [`take`](Self::take) gets.
    pub(super) fn burst(rate: u64) -> usize {
        let bytes = u128::from(rate) * BURST.as_millis() / 1000;
        usize::try_from(bytes).unwrap_or(usize::MAX).max(1)
    }

    /// Takes `n` bytes' worth of tokens (at most a burst) at `now`, filling at `rate` bytes
    /// per second since the last call; or, when there are too few, takes none and says how
    /// long until there are enough (never zero).
    pub(super) fn take(&mut self, n: usize, rate: u64, now: Instant) -> Result<(), Duration> {
        let size = Self::burst(rate) as u128 * NANOS;
        let rate = u128::from(rate.max(1));
        let refill = now.saturating_duration_since(self.last).as_nanos() * rate;
        let tokens = self
            .tokens
            .map_or(size, |t| t.saturating_add(refill).min(size));
        self.last = now;
        let need = (n as u128).min(size / NANOS) * NANOS;
        match tokens.checked_sub(need) {
            Some(left) => {
                self.tokens = Some(left);
                Ok(())
            }
            None => {
                self.tokens = Some(tokens);
                let nanos = (need - tokens).div_ceil(rate);
                Err(Duration::from_nanos(
                    u64::try_from(nanos).unwrap_or(u64::MAX),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u64 = 64 * 1024;

    #[test]
    fn a_full_bucket_gives_one_burst_then_makes_the_caller_wait_for_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(start);
        let burst = TokenBucket::burst(RATE);
        assert_eq!(burst, 3276, "50 ms at 64 KiB/s");
        assert_eq!(bucket.take(burst, RATE, start), Ok(()));
        let wait = bucket.take(1024, RATE, start).expect_err("empty");
        assert_eq!(
            wait,
            Duration::from_micros(15_625),
            "1024 bytes at 64 KiB/s"
        );
        assert!(bucket.take(1024, RATE, start + wait / 2).is_err());
        assert_eq!(bucket.take(1024, RATE, start + wait), Ok(()));
    }

    #[test]
    fn over_a_second_no_more_than_a_burst_plus_the_rate_goes_through() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(start);
        let (mut now, mut sent) = (start, 0usize);
        while now < start + Duration::from_secs(1) {
            match bucket.take(1000, RATE, now) {
                Ok(()) => sent += 1000,
                Err(wait) => {
                    assert!(wait > Duration::ZERO, "a wait of nothing would spin");
                    now += wait;
                }
            }
        }
        let most = TokenBucket::burst(RATE) + RATE as usize;
        assert!(sent <= most, "{sent} > {most}");
        assert!(sent + 2000 >= RATE as usize, "{sent}: the rate is reached");
    }

    #[test]
    fn idle_time_stores_no_more_than_a_burst() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(start);
        let burst = TokenBucket::burst(RATE);
        let later = start + Duration::from_secs(10);
        assert_eq!(bucket.take(burst, RATE, later), Ok(()));
        assert!(bucket.take(1, RATE, later).is_err(), "the burst was all");
    }

    #[test]
    fn a_take_larger_than_the_bucket_is_a_burst() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(start);
        assert_eq!(bucket.take(1 << 20, RATE, start), Ok(()));
        assert!(bucket.take(1, RATE, start).is_err());
    }
}
