//! `to_nsq --rate`: at most N messages a second, as nsq's token bucket (one message may go
//! at once, and at most one second of unused capacity builds up).

use std::time::{Duration, Instant};

/// A token bucket refilled at `rate` tokens a second, holding at most `rate`, starting with one.
///
/// ```
/// use std::time::{Duration, Instant};
/// let start = Instant::now();
/// let mut throttle = nsq_tools::throttle::Throttle::new(10, start).expect("a rate");
/// assert_eq!(throttle.take(start), None); // the first goes at once
/// assert_eq!(throttle.take(start), Some(Duration::from_millis(100))); // the next in 1/10 s
/// ```
#[derive(Debug, Clone)]
pub struct Throttle {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl Throttle {
    /// A bucket for `rate` messages a second; `None` for 0 (no throttling).
    pub fn new(rate: u64, now: Instant) -> Option<Self> {
        (rate > 0).then_some(Self {
            rate: rate as f64,
            tokens: 1.0,
            last: now,
        })
    }

    /// Takes a token at `now` (`None`), or says how long until there is one.
    pub fn take(&mut self, now: Instant) -> Option<Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate.max(1.0));
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            None
        } else {
            Some(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }

    /// Waits until a token can be taken, and takes it.
    pub async fn acquire(&mut self) {
        while let Some(wait) = self.take(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_holds_over_a_second() {
        let start = Instant::now();
        let mut t = Throttle::new(4, start).unwrap();
        let mut now = start;
        let mut sent = 0;
        while now < start + Duration::from_secs(1) {
            match t.take(now) {
                None => sent += 1,
                Some(wait) => now += wait,
            }
        }
        // One at once, then one every 250 ms.
        assert_eq!(sent, 4);
    }

    #[test]
    fn at_most_one_second_of_capacity_builds_up() {
        let start = Instant::now();
        let mut t = Throttle::new(5, start).unwrap();
        let later = start + Duration::from_secs(60);
        let burst = (0..100).take_while(|_| t.take(later).is_none()).count();
        assert_eq!(burst, 5);
    }

    #[test]
    fn zero_is_no_throttle() {
        assert!(Throttle::new(0, Instant::now()).is_none());
    }
}
