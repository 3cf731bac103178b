//! RDY and backoff: a pure state machine (no IO, no tasks, no clock reads).
//!
//! The consumer feeds it events (a connection came or went, a message arrived or was answered,
//! a timer fired) together with the current time, and sends the [`SendRdy`] commands it returns,
//! in order. [`Rdy::next_deadline`] says when [`Rdy::tick`] must be called next.
//!
//! The rules follow go-nsq (`NSQ.md` §3.3, §3.4), fixed where its users complained (§5.1, §5.2):
//!
//! * **Budget.** `Σ rdy ≤ max_in_flight` after every call, each conn's RDY is capped by the
//!   `max_rdy_count` nsqd announced, and the returned list lowers RDY before it raises any, so
//!   the running sum never goes over the budget while the commands go out. A raise also never
//!   lets `Σ max(rdy, in_flight)` exceed the budget: a conn lowered below what it already has in
//!   flight keeps that part of the budget until those messages are answered.
//! * **Fair share** (`max_in_flight ≥` conns): each conn gets `floor(mif / n)`, the remainder
//!   goes `+1` to the earliest conns (go-nsq wastes it), and whatever a conn cannot take because of
//!   its `max_rdy_count` is spread over the others.
//! * **Rotation** (`max_in_flight <` conns): conns hold RDY 1 in turn, in connection order. A holder
//!   idle for [`RdyConfig::idle_rotate`] passes it on; a holder busy for longer than
//!   [`RdyConfig::max_hold`] gets RDY 0 at once and its slot is reassigned when its in-flight
//!   messages are done. go-nsq waits 10–30 s and then picks at random.
//! * **Backoff**: see [`Rdy::message_done`]. The level never sticks: a probe that cannot be placed
//!   (no conn) waits for the next conn, and a probe conn that gets nothing rotates like any holder.

use std::time::Duration;

use tokio::time::Instant;

/// Identifies one nsqd connection of a consumer; chosen by the consumer, unique while open.
pub(crate) type ConnId = u64;

/// A command to send: `RDY <count>` on connection `conn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SendRdy {
    /// The connection to send it on.
    pub(crate) conn: ConnId,
    /// The new RDY count; never equal to the count last sent on that conn.
    pub(crate) count: u32,
}

/// How the application answered a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// `FIN`: a success, which lowers the backoff level while probing.
    Finished,
    /// `REQ`: with `backoff: true` a failure that raises the backoff level; with `false` it
    /// changes nothing (go-nsq `RequeueWithoutBackoff`).
    Requeued {
        /// Whether this requeue counts as a failure for backoff.
        backoff: bool,
    },
}

/// Settings of the RDY controller. [`Default`] gives go-nsq's values for the shared knobs.
#[derive(Debug, Clone)]
pub(crate) struct RdyConfig {
    /// The most messages in flight across every conn (go-nsq default 1). 0 pauses.
    pub(crate) max_in_flight: u32,
    /// When conns outnumber `max_in_flight`, a conn holding RDY with nothing in flight and no
    /// activity (RDY granted, message received, last message answered) for this long gives its
    /// RDY to the next conn waiting for one. Default 100 ms.
    pub(crate) idle_rotate: Duration,
    /// When conns outnumber `max_in_flight`, a conn that has held RDY this long while others wait
    /// is set to RDY 0; its slot goes to the next conn once its in-flight messages are done.
    /// Default 1 s.
    pub(crate) max_hold: Duration,
    /// Backoff at level `l` lasts `backoff_multiplier × 2^l` (capped). Default 1 s.
    pub(crate) backoff_multiplier: Duration,
    /// The longest backoff wait. Default 2 min, and unlike go-nsq it is reached (go-nsq stops at
    /// the largest power of two below it: 64 s).
    pub(crate) max_backoff: Duration,
    /// Full jitter: wait a random time in `[0, duration)` instead of `duration`. Default false.
    pub(crate) backoff_jitter: bool,
}

impl Default for RdyConfig {
    fn default() -> Self {
        Self {
            max_in_flight: 1,
            idle_rotate: Duration::from_millis(100),
            max_hold: Duration::from_secs(1),
            backoff_multiplier: Duration::from_secs(1),
            max_backoff: Duration::from_secs(120),
            backoff_jitter: false,
        }
    }
}

/// What the controller knows about one connection.
#[derive(Debug, Clone)]
struct Conn {
    /// The consumer's id for it.
    id: ConnId,
    /// Connection order: rotation goes round in this order.
    seq: u64,
    /// `max_rdy_count` from the IDENTIFY response; RDY never goes above it.
    max_rdy: u32,
    /// The RDY count last sent (0 before any).
    rdy: u32,
    /// Messages received and not yet answered.
    in_flight: u32,
    /// When RDY last went from 0 to more than 0.
    held_since: Instant,
    /// Last activity: RDY granted, message received, or in-flight back to 0.
    idle_since: Instant,
    /// Rotation took its RDY while messages were in flight: it keeps its slot until they are done.
    draining: bool,
}

impl Conn {
    /// Whether, as a rotation holder, it should give RDY up to a waiting conn.
    fn expired(&self, config: &RdyConfig, now: Instant) -> bool {
        (self.in_flight == 0
            && now.saturating_duration_since(self.idle_since) >= config.idle_rotate)
            || now.saturating_duration_since(self.held_since) >= config.max_hold
    }

    /// When it will become [`Conn::expired`], as a holder.
    fn expires_at(&self, config: &RdyConfig) -> Instant {
        let hold = self.held_since + config.max_hold;
        if self.in_flight == 0 {
            hold.min(self.idle_since + config.idle_rotate)
        } else {
            hold
        }
    }

    /// Whether it may hold RDY at all (nsqd announced a `max_rdy_count` of at least 1).
    fn eligible(&self) -> bool {
        self.max_rdy > 0
    }
}

/// The RDY and backoff controller of one consumer. See the module docs for the rules.
#[derive(Debug)]
pub(crate) struct Rdy {
    /// Settings; `max_in_flight` is changed by [`Rdy::set_max_in_flight`].
    config: RdyConfig,
    /// Open conns, in connection order.
    conns: Vec<Conn>,
    /// Sequence number for the next conn.
    next_seq: u64,
    /// `seq` of the conn that last went from RDY 0 to more; rotation grants start after it.
    cursor: u64,
    /// Backoff level; 0 = not in backoff.
    level: u32,
    /// While `Some`, a backoff wait is pending: RDY 0 everywhere and results are ignored.
    backoff_until: Option<Instant>,
    /// The highest level (the first whose duration reaches `max_backoff`).
    max_level: u32,
    /// Source of the jitter.
    rng: fastrand::Rng,
}

impl Rdy {
    /// A controller with no conns; `seed` seeds the backoff jitter.
    pub(crate) fn new(config: RdyConfig, seed: u64) -> Self {
        let max_level = max_level(&config);
        Self {
            config,
            conns: Vec::new(),
            next_seq: 0,
            cursor: 0,
            level: 0,
            backoff_until: None,
            max_level,
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// A conn finished its handshake; nsqd allows it at most `max_rdy_count`. It gets its share
    /// (after the others shrink, in the same list). Called again for a known id, it updates the cap.
    pub(crate) fn connected(
        &mut self,
        conn: ConnId,
        max_rdy_count: u32,
        now: Instant,
    ) -> Vec<SendRdy> {
        if let Some(c) = self.conn_mut(conn) {
            c.max_rdy = max_rdy_count;
        } else {
            self.next_seq += 1;
            self.conns.push(Conn {
                id: conn,
                seq: self.next_seq,
                max_rdy: max_rdy_count,
                rdy: 0,
                in_flight: 0,
                held_since: now,
                idle_since: now,
                draining: false,
            });
        }
        self.rebalance(now)
    }

    /// A conn is gone: forget it, its RDY and its in-flight count, and hand its RDY to others.
    pub(crate) fn closed(&mut self, conn: ConnId, now: Instant) -> Vec<SendRdy> {
        self.conns.retain(|c| c.id != conn);
        self.rebalance(now)
    }

    /// `count` messages arrived on `conn` (one socket read's worth): that many more in flight.
    pub(crate) fn message_received(
        &mut self,
        conn: ConnId,
        count: u32,
        now: Instant,
    ) -> Vec<SendRdy> {
        let Some(c) = self.conn_mut(conn) else {
            return Vec::new();
        };
        c.in_flight = c.in_flight.saturating_add(count);
        c.idle_since = now;
        self.rebalance(now)
    }

    /// `count` messages of `conn` were answered with `outcome`, in a row: that many fewer in
    /// flight, and the backoff rules once per message, in order.
    ///
    /// * While a backoff wait is pending, the outcome is ignored (one result per window).
    /// * `Requeued { backoff: true }`: level + 1 (up to the level whose duration reaches
    ///   `max_backoff`), RDY 0 everywhere, wait `duration(level)`.
    /// * `Finished` while in backoff (probing): level − 1; at 0 backoff ends and the normal
    ///   distribution resumes, otherwise RDY 0 everywhere and wait `duration(level)`.
    /// * `Requeued { backoff: false }` changes nothing.
    ///
    /// The outcome counts even if `conn` has already closed.
    pub(crate) fn message_done(
        &mut self,
        conn: ConnId,
        outcome: Outcome,
        count: u32,
        now: Instant,
    ) -> Vec<SendRdy> {
        if let Some(c) = self.conn_mut(conn) {
            c.in_flight = c.in_flight.saturating_sub(count);
            if c.in_flight == 0 {
                c.draining = false;
                c.idle_since = now;
            }
        }
        for _ in 0..count {
            // The first outcome that starts a wait makes the rest of the run ignored.
            if self.backoff_until.is_some() {
                break;
            }
            match outcome {
                Outcome::Finished if self.level > 0 => {
                    self.level -= 1;
                    if self.level > 0 {
                        self.start_backoff_wait(now);
                    }
                }
                Outcome::Finished | Outcome::Requeued { backoff: false } => break,
                Outcome::Requeued { backoff: true } => {
                    self.level = (self.level + 1).min(self.max_level);
                    self.start_backoff_wait(now);
                }
            }
        }
        self.rebalance(now)
    }

    /// Time has passed: ends an expired backoff wait (the probe starts) and rotates RDY.
    pub(crate) fn tick(&mut self, now: Instant) -> Vec<SendRdy> {
        if self.backoff_until.is_some_and(|until| now >= until) {
            self.backoff_until = None;
        }
        self.rebalance(now)
    }

    /// When [`Rdy::tick`] must next be called: the end of the backoff wait, or the moment a
    /// rotation holder must give RDY up to a waiting conn. `None` when nothing is due.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        if let Some(until) = self.backoff_until {
            return Some(until);
        }
        let eff = self.effective_max();
        if eff == 0 || !self.rotating(eff) {
            return None;
        }
        let waiting = self
            .conns
            .iter()
            .any(|c| c.eligible() && c.rdy == 0 && !c.draining);
        if !waiting {
            return None;
        }
        self.conns
            .iter()
            .filter(|c| c.rdy > 0)
            .map(|c| c.expires_at(&self.config))
            .min()
    }

    /// Changes the budget; 0 pauses (RDY 0 everywhere), and any other value resumes.
    pub(crate) fn set_max_in_flight(&mut self, max_in_flight: u32, now: Instant) -> Vec<SendRdy> {
        self.config.max_in_flight = max_in_flight;
        self.rebalance(now)
    }

    /// Σ RDY last sent over every open conn.
    pub(crate) fn total_rdy(&self) -> u32 {
        self.conns.iter().map(|c| c.rdy).sum()
    }

    /// RDY last sent on `conn`, `None` if unknown.
    pub(crate) fn rdy(&self, conn: ConnId) -> Option<u32> {
        self.conn(conn).map(|c| c.rdy)
    }

    /// Messages in flight on `conn`, `None` if unknown.
    pub(crate) fn in_flight(&self, conn: ConnId) -> Option<u32> {
        self.conn(conn).map(|c| c.in_flight)
    }

    /// The backoff level; 0 = not in backoff.
    pub(crate) fn backoff_level(&self) -> u32 {
        self.level
    }

    /// go-nsq `IsStarved`: some conn has messages in flight and at least 85 % of its RDY
    /// (rounded down) of them, so more workers would not get more messages.
    pub(crate) fn is_starved(&self) -> bool {
        self.conns
            .iter()
            .any(|c| c.in_flight > 0 && u64::from(c.in_flight) >= u64::from(c.rdy) * 85 / 100)
    }

    /// The conn with id `conn`.
    fn conn(&self, conn: ConnId) -> Option<&Conn> {
        self.conns.iter().find(|c| c.id == conn)
    }

    /// The conn with id `conn`, mutably.
    fn conn_mut(&mut self, conn: ConnId) -> Option<&mut Conn> {
        self.conns.iter_mut().find(|c| c.id == conn)
    }

    /// How much RDY may be out now: 0 while paused or waiting out a backoff, 1 while probing.
    fn effective_max(&self) -> u32 {
        if self.backoff_until.is_some() {
            0
        } else if self.level > 0 {
            self.config.max_in_flight.min(1)
        } else {
            self.config.max_in_flight
        }
    }

    /// Whether conns that may hold RDY outnumber the budget `eff`, so they take turns.
    fn rotating(&self, eff: u32) -> bool {
        let eligible = self.conns.iter().filter(|c| c.eligible()).count();
        eligible > eff as usize
    }

    /// Starts a backoff wait of `duration(level)` (or a jittered part of it).
    fn start_backoff_wait(&mut self, now: Instant) {
        let full = backoff_duration(&self.config, self.level);
        let wait = if self.config.backoff_jitter {
            let nanos = u64::try_from(full.as_nanos()).unwrap_or(u64::MAX);
            Duration::from_nanos(if nanos == 0 {
                0
            } else {
                self.rng.u64(0..nanos)
            })
        } else {
            full
        };
        self.backoff_until = Some(now + wait);
    }

    /// Computes the RDY every conn should have now and returns the commands to get there.
    fn rebalance(&mut self, now: Instant) -> Vec<SendRdy> {
        let eff = self.effective_max();
        let targets = if eff == 0 {
            for c in &mut self.conns {
                c.draining = false;
            }
            vec![0; self.conns.len()]
        } else if self.rotating(eff) {
            self.rotation_targets(eff, now)
        } else {
            for c in &mut self.conns {
                c.draining = false;
            }
            let mut targets = self.fair_targets(eff);
            self.hold_raises_for_in_flight(&mut targets, eff);
            targets
        };
        self.apply(&targets, now)
    }

    /// Fair share: `eff` split as evenly as the caps allow; remainders go to the earliest conns.
    fn fair_targets(&self, eff: u32) -> Vec<u32> {
        let n = self.conns.len();
        let mut targets = vec![0u32; n];
        let mut open: Vec<usize> = (0..n).collect();
        let mut left = eff;
        // Water-filling: conns whose cap is below the even share take their cap, the rest split
        // what is left; repeat until nobody is capped.
        loop {
            if open.is_empty() {
                break;
            }
            let share = left / open.len() as u32;
            let (capped, rest): (Vec<usize>, Vec<usize>) =
                open.iter().partition(|&&i| self.conns[i].max_rdy <= share);
            if capped.is_empty() {
                let extra = left - share * rest.len() as u32;
                for (k, &i) in rest.iter().enumerate() {
                    targets[i] = share + u32::from((k as u32) < extra);
                }
                break;
            }
            for &i in &capped {
                targets[i] = self.conns[i].max_rdy;
                left -= self.conns[i].max_rdy;
            }
            open = rest;
        }
        targets
    }

    /// Cuts raises so that `Σ max(rdy, in_flight) ≤ eff`: a conn whose RDY was lowered below
    /// what it already has in flight still uses that budget, and the others get it as those
    /// messages are answered. Without this, a conn that took a full budget before a second conn
    /// arrived would leave `max_in_flight` plus the new conn's share in flight.
    fn hold_raises_for_in_flight(&self, targets: &mut [u32], eff: u32) {
        let used: u32 = self
            .conns
            .iter()
            .zip(targets.iter())
            .map(|(c, &t)| t.min(c.rdy).max(c.in_flight))
            .fold(0, u32::saturating_add);
        let mut left = eff.saturating_sub(used);
        for (c, t) in self.conns.iter().zip(targets.iter_mut()) {
            if *t <= c.rdy {
                continue;
            }
            let base = c.rdy.max(c.in_flight);
            if *t <= base {
                continue;
            }
            let raise = (*t - base).min(left);
            left -= raise;
            *t = base + raise;
        }
    }

    /// Rotation: RDY 1 on at most `eff` conns, passed on in connection order.
    fn rotation_targets(&mut self, eff: u32, now: Instant) -> Vec<u32> {
        let n = self.conns.len();
        let mut targets: Vec<u32> = self
            .conns
            .iter()
            .map(|c| if c.eligible() { c.rdy.min(1) } else { 0 })
            .collect();
        let mut revoked = vec![false; n];
        let waiting = self
            .conns
            .iter()
            .filter(|c| c.eligible() && c.rdy == 0 && !c.draining)
            .count();

        // Holders idle or held too long give RDY up, oldest first, as many as conns wait.
        let mut expired: Vec<usize> = (0..n)
            .filter(|&i| targets[i] > 0 && self.conns[i].expired(&self.config, now))
            .collect();
        expired.sort_by_key(|&i| (self.conns[i].held_since, self.conns[i].seq));
        for (k, &i) in expired.iter().enumerate() {
            let c = &mut self.conns[i];
            if k < waiting {
                targets[i] = 0;
                revoked[i] = true;
                c.draining = c.in_flight > 0;
            } else {
                // Nobody to take it: its turn starts over.
                c.held_since = now;
                c.idle_since = now;
            }
        }

        // A holder keeps a slot, and so does a conn draining the messages it got before losing RDY.
        let occupied = |conns: &[Conn], targets: &[u32]| {
            (0..n)
                .filter(|&i| targets[i] > 0 || conns[i].draining)
                .count()
        };
        // The budget shrank: take RDY back, idle holders first, then the oldest.
        while occupied(&self.conns, &targets) > eff as usize {
            let Some(i) = (0..n)
                .filter(|&i| targets[i] > 0)
                .min_by_key(|&i| (self.conns[i].in_flight, self.conns[i].held_since))
            else {
                break;
            };
            targets[i] = 0;
            revoked[i] = true;
            self.conns[i].draining = self.conns[i].in_flight > 0;
        }

        // Free slots go round-robin from the conn after the last one served: first to conns
        // that were waiting, then (if slots are left) back to the ones just rotated out.
        let mut free = (eff as usize).saturating_sub(occupied(&self.conns, &targets));
        let start = self
            .conns
            .iter()
            .position(|c| c.seq > self.cursor)
            .unwrap_or(0);
        for second_pass in [false, true] {
            for k in 0..n {
                if free == 0 {
                    break;
                }
                let i = (start + k) % n;
                let c = &self.conns[i];
                if targets[i] == 0 && c.eligible() && !c.draining && revoked[i] == second_pass {
                    targets[i] = 1;
                    free -= 1;
                }
            }
        }
        targets
    }

    /// Records `targets` as sent and returns the commands: decreases first, then increases,
    /// skipping conns whose RDY does not change.
    fn apply(&mut self, targets: &[u32], now: Instant) -> Vec<SendRdy> {
        let mut decreases = Vec::new();
        let mut increases = Vec::new();
        for (c, &count) in self.conns.iter_mut().zip(targets) {
            if count == c.rdy {
                continue;
            }
            let send = SendRdy { conn: c.id, count };
            if count < c.rdy {
                decreases.push(send);
            } else {
                if c.rdy == 0 {
                    c.held_since = now;
                    c.idle_since = now;
                    self.cursor = c.seq;
                }
                increases.push(send);
            }
            c.rdy = count;
        }
        decreases.extend(increases);
        decreases
    }
}

/// `min(multiplier × 2^level, max_backoff)`, without overflow.
fn backoff_duration(config: &RdyConfig, level: u32) -> Duration {
    2u32.checked_pow(level)
        .and_then(|factor| config.backoff_multiplier.checked_mul(factor))
        .map_or(config.max_backoff, |d| d.min(config.max_backoff))
}

/// The first level whose uncapped duration reaches `max_backoff` (at least 1, at most 31), so
/// the longest wait is `max_backoff` itself.
fn max_level(config: &RdyConfig) -> u32 {
    (1..31)
        .find(|&level| {
            2u32.checked_pow(level)
                .and_then(|factor| config.backoff_multiplier.checked_mul(factor))
                .is_none_or(|d| d >= config.max_backoff)
        })
        .unwrap_or(31)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// A controller plus a model of what the consumer has sent, checking every invariant on
    /// every returned list.
    struct Harness {
        rdy: Rdy,
        /// conn -> (RDY last sent as seen by applying the lists, max_rdy_count)
        sent: BTreeMap<ConnId, (u32, u32)>,
        now: Instant,
    }

    impl Harness {
        fn new(config: RdyConfig) -> Self {
            Self {
                rdy: Rdy::new(config, 7),
                sent: BTreeMap::new(),
                now: Instant::now(),
            }
        }

        fn mif(&self) -> u32 {
            self.rdy.config.max_in_flight
        }

        /// Applies `sends` in order to the model and checks the invariants.
        fn check(&mut self, sends: Vec<SendRdy>) -> Vec<SendRdy> {
            let mif = self.mif();
            let mut sum: u32 = self.sent.values().map(|v| v.0).sum();
            let mut seen_increase = false;
            let mut conns_seen = Vec::new();
            for s in &sends {
                assert!(
                    !conns_seen.contains(&s.conn),
                    "two sends for one conn: {sends:?}"
                );
                conns_seen.push(s.conn);
                let entry = self.sent.get_mut(&s.conn).expect("send to an unknown conn");
                assert_ne!(entry.0, s.count, "duplicate RDY {s:?}");
                if s.count > entry.0 {
                    seen_increase = true;
                } else {
                    assert!(!seen_increase, "a decrease after an increase: {sends:?}");
                }
                sum = sum - entry.0 + s.count;
                // A decrease may start above a just-lowered budget; an increase never ends above it.
                if s.count > entry.0 {
                    assert!(
                        sum <= mif,
                        "running Σ {sum} > max_in_flight {mif}: {sends:?}"
                    );
                }
                assert!(s.count <= entry.1, "{s:?} above max_rdy_count {}", entry.1);
                entry.0 = s.count;
            }
            assert_eq!(self.rdy.total_rdy(), sum);
            assert!(self.rdy.total_rdy() <= mif);
            assert_eq!(self.rdy.conns.len(), self.sent.len());
            for (&id, &(count, cap)) in &self.sent {
                assert_eq!(self.rdy.rdy(id), Some(count), "model and controller differ");
                assert!(count <= cap);
            }
            sends
        }

        fn advance(&mut self, d: Duration) {
            self.now += d;
        }

        fn connect(&mut self, id: ConnId, cap: u32) -> Vec<SendRdy> {
            let out = self.rdy.connected(id, cap, self.now);
            let old = self.sent.get(&id).map_or(0, |v| v.0);
            self.sent.insert(id, (old, cap));
            self.check(out)
        }

        fn close(&mut self, id: ConnId) -> Vec<SendRdy> {
            let out = self.rdy.closed(id, self.now);
            self.sent.remove(&id);
            self.check(out)
        }

        fn receive(&mut self, id: ConnId) -> Vec<SendRdy> {
            self.receive_n(id, 1)
        }

        fn receive_n(&mut self, id: ConnId, n: u32) -> Vec<SendRdy> {
            let out = self.rdy.message_received(id, n, self.now);
            self.check(out)
        }

        fn done(&mut self, id: ConnId, outcome: Outcome) -> Vec<SendRdy> {
            self.done_n(id, outcome, 1)
        }

        fn done_n(&mut self, id: ConnId, outcome: Outcome, n: u32) -> Vec<SendRdy> {
            let out = self.rdy.message_done(id, outcome, n, self.now);
            self.check(out)
        }

        fn tick(&mut self) -> Vec<SendRdy> {
            let out = self.rdy.tick(self.now);
            self.check(out)
        }

        fn set_mif(&mut self, mif: u32) -> Vec<SendRdy> {
            let out = self.rdy.set_max_in_flight(mif, self.now);
            self.check(out)
        }

        /// Moves time to the next deadline and ticks.
        fn tick_at_deadline(&mut self) -> Vec<SendRdy> {
            let deadline = self.rdy.next_deadline().expect("a deadline");
            assert!(deadline >= self.now, "deadline in the past");
            self.now = deadline;
            self.tick()
        }

        /// The one conn holding RDY (the probe during backoff).
        fn holder(&self) -> ConnId {
            let holders: Vec<ConnId> = self
                .sent
                .iter()
                .filter(|(_, v)| v.0 > 0)
                .map(|(&id, _)| id)
                .collect();
            assert_eq!(holders.len(), 1, "expected exactly one holder");
            holders[0]
        }

        fn rdys(&self) -> Vec<u32> {
            self.sent.values().map(|v| v.0).collect()
        }
    }

    fn config(mif: u32) -> RdyConfig {
        RdyConfig {
            max_in_flight: mif,
            ..RdyConfig::default()
        }
    }

    /// Conns 1 and 2 with `max_in_flight = mif`, one backoff failure, and the first probe out.
    fn probing(mif: u32) -> (Harness, ConnId) {
        let mut h = Harness::new(config(mif));
        h.connect(1, 2500);
        h.connect(2, 2500);
        h.done(1, Outcome::Requeued { backoff: true });
        h.tick_at_deadline();
        let probe = h.holder();
        (h, probe)
    }

    fn send(conn: ConnId, count: u32) -> SendRdy {
        SendRdy { conn, count }
    }

    #[test]
    fn remainder_is_handed_out() {
        let mut h = Harness::new(config(5));
        assert_eq!(h.connect(1, 2500), vec![send(1, 5)]);
        h.connect(2, 2500);
        h.connect(3, 2500);
        assert_eq!(h.rdys(), vec![2, 2, 1]);
        assert_eq!(h.rdy.total_rdy(), 5);
    }

    #[test]
    fn max_rdy_count_caps_and_the_rest_goes_elsewhere() {
        let mut h = Harness::new(config(10));
        assert_eq!(h.connect(1, 3), vec![send(1, 3)]);
        h.connect(2, 100);
        assert_eq!(h.rdys(), vec![3, 7]);
        h.connect(3, 1);
        assert_eq!(h.rdys(), vec![3, 6, 1]);
    }

    #[test]
    fn new_conn_gets_its_share_after_others_shrink() {
        let mut h = Harness::new(config(4));
        h.connect(1, 2500);
        h.connect(2, 2500);
        assert_eq!(h.rdys(), vec![2, 2]);
        // 4 / 3 = 1 rest 1: conn 1 keeps 2, conn 2 goes down to 1 before conn 3 goes up.
        assert_eq!(h.connect(3, 2500), vec![send(2, 1), send(3, 1)]);
        // Closing conn 1 frees 2: both others rise.
        assert_eq!(h.close(1), vec![send(2, 2), send(3, 2)]);
        assert_eq!(h.rdy.rdy(1), None);
        assert_eq!(h.rdy.in_flight(1), None);
        // Connecting a known id again (new cap) changes only what must change.
        assert_eq!(h.connect(2, 2500), vec![]);
    }

    #[test]
    fn a_new_conn_waits_for_the_budget_others_still_have_in_flight() {
        let mut h = Harness::new(config(10));
        h.connect(1, 2500);
        for _ in 0..10 {
            h.receive(1);
        }
        // Conn 1 goes down to 5 but still has 10 in flight: conn 2 gets nothing yet.
        assert_eq!(h.connect(2, 2500), vec![send(1, 5)]);
        // Each answer on conn 1 frees one unit of budget, until conn 2 has its share.
        for k in 1..=5 {
            assert_eq!(h.done(1, Outcome::Finished), vec![send(2, k)]);
        }
        assert_eq!(h.done(1, Outcome::Finished), vec![]);
        assert_eq!(h.rdys(), vec![5, 5]);
    }

    #[test]
    fn idle_holder_rotates_after_idle_rotate() {
        let mut h = Harness::new(config(1));
        let t0 = h.now;
        h.connect(1, 2500);
        h.connect(2, 2500);
        h.connect(3, 2500);
        assert_eq!(h.rdys(), vec![1, 0, 0]);
        assert_eq!(h.rdy.next_deadline(), Some(t0 + 100 * MS));
        h.advance(99 * MS);
        assert_eq!(h.tick(), vec![]);
        h.advance(MS);
        assert_eq!(h.tick(), vec![send(1, 0), send(2, 1)]);
        assert_eq!(h.tick_at_deadline(), vec![send(2, 0), send(3, 1)]);
        assert_eq!(h.tick_at_deadline(), vec![send(3, 0), send(1, 1)]);
        assert_eq!(h.now, t0 + 300 * MS);
    }

    #[test]
    fn a_message_postpones_idle_rotation() {
        let mut h = Harness::new(config(1));
        h.connect(1, 2500);
        h.connect(2, 2500);
        h.advance(60 * MS);
        h.receive(1);
        h.advance(60 * MS);
        assert_eq!(h.tick(), vec![]);
        h.done(1, Outcome::Finished);
        // Idle counts from the answer; the hold limit counts from the grant.
        assert_eq!(h.rdy.next_deadline(), Some(h.now + 100 * MS));
        h.advance(100 * MS);
        assert_eq!(h.tick(), vec![send(1, 0), send(2, 1)]);
    }

    #[test]
    fn busy_holder_gives_up_after_max_hold_and_slot_waits_for_in_flight() {
        let mut h = Harness::new(config(1));
        let t0 = h.now;
        h.connect(1, 2500);
        h.connect(2, 2500);
        h.receive(1);
        // Keep conn 1 busy: a message always in flight.
        for _ in 0..9 {
            h.advance(100 * MS);
            h.receive(1);
            assert_eq!(h.done(1, Outcome::Finished), vec![]);
        }
        assert_eq!(h.rdy.next_deadline(), Some(t0 + Duration::from_secs(1)));
        h.advance(100 * MS);
        // RDY 0 at once, but conn 2 waits until conn 1 has nothing in flight.
        assert_eq!(h.tick(), vec![send(1, 0)]);
        assert_eq!(h.rdy.in_flight(1), Some(1));
        assert_eq!(h.rdy.next_deadline(), None);
        h.advance(30 * MS);
        assert_eq!(h.done(1, Outcome::Finished), vec![send(2, 1)]);
    }

    #[test]
    fn no_rotation_when_nobody_waits() {
        let mut h = Harness::new(config(2));
        h.connect(1, 2500);
        h.connect(2, 2500);
        assert_eq!(h.rdy.next_deadline(), None);
        h.advance(Duration::from_secs(10));
        assert_eq!(h.tick(), vec![]);
        assert_eq!(h.rdys(), vec![1, 1]);
    }

    #[test]
    fn every_idle_conn_holds_rdy_within_n_idle_rotations() {
        for n in 2..8u64 {
            let mut h = Harness::new(config(1));
            let t0 = h.now;
            for id in 0..n {
                h.connect(id, 2500);
            }
            let mut held = vec![false; n as usize];
            while h.now <= t0 + 100 * MS * n as u32 {
                for (id, &(count, _)) in &h.sent {
                    held[*id as usize] |= count > 0;
                }
                h.tick_at_deadline();
            }
            assert!(held.iter().all(|&x| x), "n={n}: {held:?}");
        }
    }

    #[test]
    fn backoff_enter_ignore_probe_recover() {
        let mut h = Harness::new(config(4));
        h.connect(1, 2500);
        h.connect(2, 2500);
        h.receive(1);
        h.receive(2);
        assert_eq!(
            h.done(1, Outcome::Requeued { backoff: true }),
            vec![send(1, 0), send(2, 0)]
        );
        assert_eq!(h.rdy.backoff_level(), 1);
        let until = h.now + Duration::from_secs(2);
        assert_eq!(h.rdy.next_deadline(), Some(until));
        // Results while the timer is pending do not count.
        h.receive(1);
        h.done(2, Outcome::Requeued { backoff: true });
        h.done(1, Outcome::Finished);
        assert_eq!(h.rdy.backoff_level(), 1);
        h.advance(Duration::from_millis(1999));
        assert_eq!(h.tick(), vec![]);
        h.advance(MS);
        // Probe: RDY 1 on one conn.
        assert_eq!(h.tick().len(), 1);
        assert_eq!(h.rdy.total_rdy(), 1);
        let probe = h.holder();
        h.receive(probe);
        // Requeue without backoff changes nothing.
        assert_eq!(h.done(probe, Outcome::Requeued { backoff: false }), vec![]);
        assert_eq!(h.rdy.backoff_level(), 1);
        h.receive(probe);
        // Success: level 0, normal distribution.
        h.done(probe, Outcome::Finished);
        assert_eq!(h.rdy.backoff_level(), 0);
        assert_eq!(h.rdys(), vec![2, 2]);
        assert_eq!(h.rdy.next_deadline(), None);
    }

    #[test]
    fn backoff_steps_down_one_level_per_success_and_rotates_the_probe() {
        let (mut h, first) = probing(4);
        h.receive(first);
        h.done(first, Outcome::Requeued { backoff: true });
        assert_eq!(h.rdy.backoff_level(), 2);
        assert_eq!(h.rdy.next_deadline(), Some(h.now + Duration::from_secs(4)));
        h.tick_at_deadline();
        let second = h.holder();
        assert_ne!(first, second, "the probe moves to the next conn");
        h.receive(second);
        assert_eq!(h.done(second, Outcome::Finished), vec![send(second, 0)]);
        assert_eq!(h.rdy.backoff_level(), 1);
        assert_eq!(h.rdy.next_deadline(), Some(h.now + Duration::from_secs(2)));
        h.tick_at_deadline();
        let third = h.holder();
        h.receive(third);
        h.done(third, Outcome::Finished);
        assert_eq!(h.rdy.backoff_level(), 0);
        assert_eq!(h.rdys(), vec![2, 2]);
    }

    #[test]
    fn idle_probe_moves_to_another_conn() {
        let (mut h, first) = probing(4);
        assert_eq!(h.rdy.next_deadline(), Some(h.now + 100 * MS));
        let out = h.tick_at_deadline();
        assert_eq!(out.len(), 2);
        assert_eq!(h.rdy.rdy(first), Some(0));
        assert_eq!(h.rdy.total_rdy(), 1);
    }

    #[test]
    fn backoff_level_caps_where_duration_reaches_max_backoff() {
        let cfg = RdyConfig::default();
        assert_eq!(max_level(&cfg), 7);
        assert_eq!(backoff_duration(&cfg, 6), Duration::from_secs(64));
        assert_eq!(backoff_duration(&cfg, 7), Duration::from_secs(120));
        assert_eq!(backoff_duration(&cfg, 40), Duration::from_secs(120));
        let mut h = Harness::new(config(1));
        h.connect(1, 2500);
        for _ in 0..12 {
            h.done(1, Outcome::Requeued { backoff: true });
            h.tick_at_deadline();
        }
        assert_eq!(h.rdy.backoff_level(), 7);
        h.done(1, Outcome::Requeued { backoff: true });
        assert_eq!(
            h.rdy.next_deadline(),
            Some(h.now + Duration::from_secs(120))
        );
        // Multiplier above the maximum: still one level, waits max_backoff.
        let odd = RdyConfig {
            backoff_multiplier: Duration::from_secs(10),
            max_backoff: Duration::from_secs(5),
            ..RdyConfig::default()
        };
        assert_eq!(max_level(&odd), 1);
        assert_eq!(backoff_duration(&odd, 1), Duration::from_secs(5));
    }

    #[test]
    fn jitter_waits_less_than_the_full_duration() {
        let mut h = Harness::new(RdyConfig {
            backoff_jitter: true,
            ..config(2)
        });
        h.connect(1, 2500);
        let mut waits = Vec::new();
        for _ in 0..20 {
            h.done(1, Outcome::Requeued { backoff: true });
            let full = backoff_duration(&h.rdy.config, h.rdy.backoff_level());
            let wait = h.rdy.next_deadline().unwrap() - h.now;
            assert!(wait < full);
            waits.push(wait);
            h.tick_at_deadline();
        }
        waits.dedup();
        assert!(waits.len() > 1);
    }

    #[test]
    fn no_conn_when_timer_expires_probes_on_next_connect() {
        let mut h = Harness::new(config(3));
        h.connect(1, 2500);
        h.done(1, Outcome::Requeued { backoff: true });
        h.close(1);
        h.advance(Duration::from_secs(5));
        assert_eq!(h.tick(), vec![]);
        assert_eq!(h.rdy.backoff_level(), 1);
        assert_eq!(h.rdy.next_deadline(), None);
        assert_eq!(h.connect(2, 2500), vec![send(2, 1)]);
        h.receive(2);
        assert_eq!(h.done(2, Outcome::Finished), vec![send(2, 3)]);
        assert_eq!(h.rdy.backoff_level(), 0);
    }

    #[test]
    fn probe_conn_closing_moves_the_probe() {
        let (mut h, probe) = probing(3);
        let other = if probe == 1 { 2 } else { 1 };
        assert_eq!(h.close(probe), vec![send(other, 1)]);
    }

    #[test]
    fn max_in_flight_zero_pauses_and_resumes() {
        let mut h = Harness::new(config(4));
        h.connect(1, 2500);
        h.connect(2, 2500);
        assert_eq!(h.set_mif(0), vec![send(1, 0), send(2, 0)]);
        h.connect(3, 2500);
        h.advance(Duration::from_secs(5));
        assert_eq!(h.tick(), vec![]);
        assert_eq!(h.rdy.next_deadline(), None);
        assert_eq!(h.set_mif(0), vec![]);
        h.set_mif(6);
        assert_eq!(h.rdys(), vec![2, 2, 2]);
        assert_eq!(h.set_mif(2), vec![send(1, 0), send(2, 1), send(3, 1)]);
    }

    #[test]
    fn is_starved_like_go_nsq() {
        let mut h = Harness::new(config(10));
        h.connect(1, 2500);
        assert!(!h.rdy.is_starved());
        for _ in 0..7 {
            h.receive(1);
        }
        assert!(!h.rdy.is_starved(), "7 < floor(10 × 0.85)");
        h.receive(1);
        assert!(h.rdy.is_starved());
        h.done(1, Outcome::Finished);
        assert!(!h.rdy.is_starved());
        h.close(1);
        assert!(!h.rdy.is_starved());
    }

    #[test]
    fn in_flight_saturates_and_unknown_conns_are_ignored() {
        let mut h = Harness::new(config(1));
        h.connect(1, 2500);
        h.done(1, Outcome::Finished);
        assert_eq!(h.rdy.in_flight(1), Some(0));
        assert_eq!(h.receive(9), vec![]);
        assert_eq!(h.rdy.in_flight(9), None);
    }

    /// One step of the random scenario.
    #[derive(Debug, Clone)]
    enum Op {
        Connect(ConnId, u32),
        Close(ConnId),
        Receive(ConnId),
        Done(ConnId, Outcome),
        Tick(u64),
        TickAtDeadline,
        SetMif(u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        let id = 0..6u64;
        let outcome = prop_oneof![
            Just(Outcome::Finished),
            Just(Outcome::Requeued { backoff: true }),
            Just(Outcome::Requeued { backoff: false }),
        ];
        prop_oneof![
            (id.clone(), 0..5u32).prop_map(|(c, cap)| Op::Connect(c, cap)),
            id.clone().prop_map(Op::Close),
            id.clone().prop_map(Op::Receive),
            (id, outcome).prop_map(|(c, o)| Op::Done(c, o)),
            (0..3000u64).prop_map(Op::Tick),
            Just(Op::TickAtDeadline),
            (0..8u32).prop_map(Op::SetMif),
        ]
    }

    proptest! {
        #[test]
        fn invariants_hold_after_every_step(
            mif in 0..8u32,
            jitter in any::<bool>(),
            ops in proptest::collection::vec(op(), 1..120),
        ) {
            let mut h = Harness::new(RdyConfig {
                backoff_multiplier: Duration::from_millis(50),
                max_backoff: Duration::from_millis(700),
                backoff_jitter: jitter,
                ..config(mif)
            });
            for op in ops {
                match op {
                    Op::Connect(c, cap) => { h.connect(c, cap); }
                    Op::Close(c) => { h.close(c); }
                    Op::Receive(c) => { h.receive(c); }
                    Op::Done(c, o) => { h.done(c, o); }
                    Op::Tick(ms) => { h.advance(Duration::from_millis(ms)); h.tick(); }
                    Op::TickAtDeadline => {
                        if h.rdy.next_deadline().is_some() {
                            h.tick_at_deadline();
                        }
                    }
                    Op::SetMif(m) => { h.set_mif(m); }
                }
                prop_assert!(h.rdy.backoff_level() <= h.rdy.max_level);
            }
        }

        /// A run of `n` receipts or answers reported at once leaves the controller where `n`
        /// reported one by one would: same in-flight counts, backoff level and backoff wait.
        /// (RDY may differ: a raise held back for messages in flight depends on the RDY sent
        /// in between; both paths keep every invariant, which the harness checks.)
        #[test]
        fn a_batch_equals_its_messages_one_by_one(
            mif in 1..8u32,
            steps in proptest::collection::vec((0..3u64, 0..4u8, 1..6u32, 0..200u64), 1..60),
        ) {
            let outcome = |k: u8| match k {
                0 => Outcome::Requeued { backoff: true },
                1 => Outcome::Requeued { backoff: false },
                _ => Outcome::Finished,
            };
            let cfg = RdyConfig {
                backoff_multiplier: Duration::from_millis(50),
                max_backoff: Duration::from_millis(700),
                ..config(mif)
            };
            let (mut batched, mut single) = (Harness::new(cfg.clone()), Harness::new(cfg));
            single.now = batched.now;
            for id in 0..3 {
                batched.connect(id, 2500);
                single.connect(id, 2500);
            }
            for (conn, kind, n, ms) in steps {
                batched.advance(Duration::from_millis(ms));
                single.advance(Duration::from_millis(ms));
                batched.tick();
                single.tick();
                if kind == 3 {
                    batched.receive_n(conn, n);
                    for _ in 0..n {
                        single.receive(conn);
                    }
                } else {
                    batched.done_n(conn, outcome(kind), n);
                    for _ in 0..n {
                        single.done(conn, outcome(kind));
                    }
                }
                prop_assert_eq!(batched.rdy.backoff_level(), single.rdy.backoff_level());
                prop_assert_eq!(batched.rdy.backoff_until, single.rdy.backoff_until);
                for id in 0..3 {
                    prop_assert_eq!(batched.rdy.in_flight(id), single.rdy.in_flight(id));
                }
            }
        }

        #[test]
        fn idle_conns_all_get_rdy_within_the_bound(
            caps in proptest::collection::vec(1..5u32, 2..9),
            mif_pick in any::<u32>(),
            early in proptest::collection::vec(0..100u64, 0..20),
        ) {
            let n = caps.len() as u32;
            let mif = 1 + mif_pick % (n - 1);
            let mut h = Harness::new(config(mif));
            let t0 = h.now;
            for (id, &cap) in caps.iter().enumerate() {
                h.connect(id as ConnId, cap);
            }
            let bound = t0 + RdyConfig::default().idle_rotate * n;
            let mut held = vec![false; caps.len()];
            let mut early = early.into_iter();
            while h.now <= bound {
                for (id, &(count, _)) in &h.sent {
                    held[*id as usize] |= count > 0;
                }
                let deadline = h.rdy.next_deadline();
                prop_assert!(deadline.is_some(), "rotation stopped while conns wait");
                // Extra ticks before the deadline must not disturb the rotation.
                if let Some(ms) = early.next() {
                    let at = h.now + Duration::from_millis(ms);
                    if at < deadline.unwrap() {
                        h.now = at;
                        h.tick();
                        continue;
                    }
                }
                h.tick_at_deadline();
            }
            prop_assert!(held.iter().all(|&x| x), "not every conn held RDY: {:?}", held);
        }
    }
}
