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
    /// `FIN` of a duplicate copy: frees its place in flight, and tells nothing about the
    /// handler, so the backoff level stays.
    Duplicate,
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
#[derive(Debug, Clone)]
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
    /// The last rebalance gave every conn its fair share, outside backoff and rotation, with
    /// no raise held back for messages in flight. Until something else changes, messages
    /// arriving and being answered cannot change any target, so they skip the rebalance (a
    /// walk over every conn, for each socket read and each run of answers).
    settled: bool,
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
            settled: false,
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
        if self.settled {
            return Vec::new();
        }
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
        let (level, waiting) = (self.level, self.backoff_until);
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
                Outcome::Finished | Outcome::Duplicate | Outcome::Requeued { backoff: false } => {
                    break
                }
                Outcome::Requeued { backoff: true } => {
                    self.level = (self.level + 1).min(self.max_level);
                    self.start_backoff_wait(now);
                }
            }
        }
        if self.settled && self.level == level && self.backoff_until == waiting {
            return Vec::new();
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
        self.settled = false;
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
            let fair = self.fair_targets(eff);
            let mut targets = fair.clone();
            self.hold_raises_for_in_flight(&mut targets, eff);
            self.settled = targets == fair && self.backoff_until.is_none();
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
                let c = &mut self.conns[i];
                if targets[i] == 0 && c.eligible() && !c.draining && revoked[i] == second_pass {
                    targets[i] = 1;
                    free -= 1;
                    if second_pass {
                        // It keeps the RDY it gave up, as nobody else took it: its turn
                        // starts over, or its expiry would already be past.
                        c.held_since = now;
                        c.idle_since = now;
                    }
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
mod tests;
