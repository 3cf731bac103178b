//! A pool node's health: a circuit breaker over its publishes.
//!
//! A node that fails is skipped for a cooldown. When the cooldown ends, one publish (the
//! probe) goes to it while the others still skip it: its `OK` brings the node back, its
//! failure doubles the cooldown (up to a bound). A node that hangs without closing its
//! connection so costs one timed-out publish per cooldown, not one in every `N` publishes.

use std::time::Duration;

use tokio::time::Instant;

/// What a node is good for now (see [`Health::route`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    /// No recent failure: any publish may go to it.
    Healthy,
    /// Its cooldown ended and no probe is out: the next publish may go to it as the probe.
    Probe,
    /// Failed recently, or its probe is still out: a last resort.
    Cooling,
}

/// One node's failures and cooldown.
#[derive(Debug, Clone, Default)]
pub(super) struct Health {
    /// Skipped until then; `None` while healthy.
    down_until: Option<Instant>,
    /// Failed probes in a row: the cooldown is the base doubled this many times.
    level: u32,
    /// A probe went out and has not been answered.
    probing: bool,
}

/// Probes failed in a row past which the cooldown stops doubling (the base × 64).
const MAX_LEVEL: u32 = 6;

impl Health {
    /// What this node is good for at `now`.
    pub(super) fn route(&self, now: Instant) -> Route {
        match self.down_until {
            None => Route::Healthy,
            Some(until) if until <= now && !self.probing => Route::Probe,
            Some(_) => Route::Cooling,
        }
    }

    /// Whether it failed and has not answered `OK` since.
    pub(super) fn is_marked(&self) -> bool {
        self.down_until.is_some()
    }

    /// Whether it is skipped at `now` (cooling down or probing).
    pub(super) fn is_cooling(&self, now: Instant) -> bool {
        self.route(now) == Route::Cooling
    }

    /// A publish goes to it as its probe.
    pub(super) fn probe_sent(&mut self) {
        self.probing = true;
    }

    /// Its probe came back without an answer (refused before it was sent): another may go.
    pub(super) fn probe_returned(&mut self) {
        self.probing = false;
    }

    /// One of its publishes answered: `OK` clears every failure; a failure starts a cooldown
    /// of `base`, doubled for each failed probe before it.
    pub(super) fn record(&mut self, failed: bool, now: Instant, base: Duration) {
        if !failed {
            *self = Self::default();
            return;
        }
        // Only a failed probe lengthens the cooldown: the many publishes that were in flight
        // when the node went bad fail one after another and count once.
        if self.probing {
            self.level = (self.level + 1).min(MAX_LEVEL);
            self.probing = false;
        }
        let cooldown = base.saturating_mul(1 << self.level);
        self.down_until = Some(now + cooldown);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_millis(100);

    #[test]
    fn a_failure_cools_the_node_down_for_the_base_then_offers_one_probe() {
        let t0 = Instant::now();
        let mut h = Health::default();
        assert_eq!(h.route(t0), Route::Healthy);
        h.record(true, t0, BASE);
        assert!(h.is_marked());
        assert_eq!(
            h.route(t0 + BASE - Duration::from_millis(1)),
            Route::Cooling
        );
        assert_eq!(h.route(t0 + BASE), Route::Probe);
        h.probe_sent();
        // While the probe is out, nothing else goes there.
        assert_eq!(h.route(t0 + BASE * 5), Route::Cooling);
        h.record(false, t0 + BASE * 5, BASE);
        assert_eq!(h.route(t0 + BASE * 5), Route::Healthy);
        assert!(!h.is_marked());
    }

    #[test]
    fn failures_in_flight_count_once_and_failed_probes_double_the_cooldown() {
        let t0 = Instant::now();
        let mut h = Health::default();
        // Fifty publishes in flight fail together: one base cooldown from the last.
        for _ in 0..50 {
            h.record(true, t0, BASE);
        }
        assert_eq!(h.route(t0 + BASE), Route::Probe);
        let mut at = t0 + BASE;
        let mut expected = BASE;
        for _ in 0..10 {
            h.probe_sent();
            h.record(true, at, BASE);
            expected = (expected * 2).min(BASE * 64);
            assert_eq!(
                h.route(at + expected - Duration::from_millis(1)),
                Route::Cooling
            );
            assert_eq!(h.route(at + expected), Route::Probe);
            at += expected;
        }
        // One OK forgets it all.
        h.record(false, at, BASE);
        h.record(true, at, BASE);
        assert_eq!(h.route(at + BASE), Route::Probe);
    }
}
