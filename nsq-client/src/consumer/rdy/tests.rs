//! The RDY controller's rules, one by one, and its invariants under random event sequences.

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

/// Expired holders give RDY up as many as conns wait; when the budget grows at the same
/// moment, a slot is left over and goes back to a holder that gave RDY up. That holder starts a
/// new turn, so the next rotation is a whole `idle_rotate` away, not already past.
#[test]
fn a_holder_given_its_rdy_back_starts_a_new_turn() {
    let mut h = Harness::new(config(2));
    for id in 1..=4 {
        h.connect(id, 2500);
    }
    assert_eq!(h.rdys(), vec![1, 1, 0, 0]);
    h.advance(101 * MS);
    // Conns 1 and 2 are idle past idle_rotate: both give RDY up to 3 and 4, and the third
    // slot goes back round to conn 1.
    assert_eq!(h.set_mif(3), vec![send(2, 0), send(3, 1), send(4, 1)]);
    assert_eq!(h.rdy.next_deadline(), Some(h.now + 100 * MS));
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
fn a_finished_duplicate_frees_its_place_but_leaves_the_backoff_level() {
    let (mut h, first) = probing(4);
    h.receive(first);
    h.done(first, Outcome::Requeued { backoff: true });
    assert_eq!(h.rdy.backoff_level(), 2);
    h.tick_at_deadline();
    let probe = h.holder();
    h.receive(probe);
    h.done(probe, Outcome::Duplicate);
    assert_eq!(
        h.rdy.backoff_level(),
        2,
        "a duplicate says nothing of the handler"
    );
    assert_eq!(
        h.rdy.in_flight(probe),
        Some(0),
        "its place in flight is free"
    );
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

    /// Skipping the rebalance while settled changes nothing: at every receipt or answer, a
    /// copy of the controller made to rebalance anyway sends the same RDY and ends in the
    /// same state.
    #[test]
    fn a_settled_controller_skips_only_rebalances_that_change_nothing(
        mif in 0..8u32,
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        let mut h = Harness::new(RdyConfig {
            backoff_multiplier: Duration::from_millis(50),
            max_backoff: Duration::from_millis(700),
            ..config(mif)
        });
        for op in ops {
            let mut full = h.rdy.clone();
            full.settled = false;
            let (ours, theirs) = match op {
                Op::Receive(c) => (h.receive(c), full.message_received(c, 1, h.now)),
                Op::Done(c, o) => (h.done(c, o), full.message_done(c, o, 1, h.now)),
                Op::Connect(c, cap) => { h.connect(c, cap); continue; }
                Op::Close(c) => { h.close(c); continue; }
                Op::Tick(ms) => { h.advance(Duration::from_millis(ms)); h.tick(); continue; }
                Op::TickAtDeadline => {
                    if h.rdy.next_deadline().is_some() {
                        h.tick_at_deadline();
                    }
                    continue;
                }
                Op::SetMif(m) => { h.set_mif(m); continue; }
            };
            prop_assert_eq!(ours, theirs);
            let state = |r: &Rdy| r.conns.iter().map(|c| (c.id, c.rdy, c.in_flight, c.draining)).collect::<Vec<_>>();
            prop_assert_eq!(state(&h.rdy), state(&full));
            prop_assert_eq!((h.rdy.level, h.rdy.backoff_until), (full.level, full.backoff_until));
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
