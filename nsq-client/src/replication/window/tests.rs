//! The window's decisions, one rule at a time and against a model of an exact set of keys.

use super::*;
use crate::consumer::message::tests::message_in;
use crate::consumer::message::{Ack, AckCommand};
use bytes::Bytes;
use std::time::Duration;

struct Setup {
    window: Arc<Window>,
    queue: mpsc::UnboundedReceiver<Vec<Message>>,
    _queue_tx: mpsc::UnboundedSender<Vec<Message>>,
    counters: Arc<Counters>,
}

type Answers = mpsc::UnboundedReceiver<AckCommand>;

impl Setup {
    fn new(dedup: Dedup) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters::default());
        Self {
            window: Window::new(dedup, tx.downgrade(), counters.clone()),
            queue: rx,
            _queue_tx: tx,
            counters,
        }
    }

    /// A copy of message `seq` (nsqd ID `id`) in its envelope, from a connection of
    /// this consumer.
    fn copy(&self, seq: u64, id: u64) -> (Message, Answers) {
        let body = envelope::envelope(MessageKey::new(1, seq), format!("m{seq}").as_bytes());
        self.raw(id, body)
    }

    /// A message with this body, from a connection of this consumer.
    fn raw(&self, id: u64, body: Bytes) -> (Message, Answers) {
        message_in(Some(self.window.clone()), 1, id, body)
    }

    /// Admits `msg` alone; `Some` when it goes to the user.
    fn admit(&self, msg: Message) -> Option<Message> {
        self.window.admit(msg, Instant::now())
    }

    fn delivered(&self, msg: Message) -> Message {
        self.admit(msg).expect("delivered, not absorbed")
    }

    fn absorbed(&self, msg: Message) {
        assert!(self.admit(msg).is_none(), "delivered, not absorbed");
    }

    /// The next answer sent for a message, taken as its connection takes it: resolving
    /// the window entry it answers for.
    fn answer(&self, acks: &mut Answers) -> Option<Ack> {
        let cmd = acks.try_recv().ok()?;
        cmd.resolve(Some(&self.window));
        Some(cmd.ack)
    }
}

#[tokio::test]
async fn a_copy_after_a_finished_one_is_finished_without_reaching_the_user() {
    let s = Setup::new(Dedup::envelope());
    let (first, mut first_acks) = s.copy(1, 10);
    let first = s.delivered(first);
    assert_eq!(
        &first.body()[..],
        b"m1",
        "the user sees the body without the envelope"
    );
    first.finish().unwrap();
    assert_eq!(s.answer(&mut first_acks), Some(Ack::Finish));

    let (twin, mut twin_acks) = s.copy(1, 20);
    s.absorbed(twin);
    assert_eq!(s.answer(&mut twin_acks), Some(Ack::FinishDuplicate));
    assert_eq!(s.counters.duplicates.load(Ordering::Relaxed), 1);

    let (other, _other_acks) = s.copy(2, 30);
    let other = s.delivered(other);
    assert_eq!(&other.body()[..], b"m2", "another key is another message");
    drop(other);
}

#[tokio::test]
async fn a_twin_arriving_during_handling_is_held_then_finished_with_the_first() {
    let s = Setup::new(Dedup::envelope());
    let (first, mut first_acks) = s.copy(1, 10);
    let first = s.delivered(first);
    let (twin, mut twin_acks) = s.copy(1, 20);
    s.absorbed(twin);
    assert_eq!(s.answer(&mut twin_acks), None, "held, not answered");
    assert_eq!(s.counters.duplicates_held.load(Ordering::Relaxed), 1);
    first.finish().unwrap();
    assert_eq!(
        s.answer(&mut twin_acks),
        None,
        "until the FIN reaches the connection"
    );
    assert_eq!(s.answer(&mut first_acks), Some(Ack::Finish));
    assert_eq!(s.answer(&mut twin_acks), Some(Ack::FinishDuplicate));
    assert_eq!(s.counters.duplicates_held.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn a_held_twin_takes_the_place_of_a_first_copy_that_is_requeued_or_dropped() {
    let mut s = Setup::new(Dedup::envelope());
    let (first, mut first_acks) = s.copy(1, 10);
    let first = s.delivered(first);
    let (twin, mut twin_acks) = s.copy(1, 20);
    s.absorbed(twin);
    let (third, mut third_acks) = s.copy(1, 30);
    s.absorbed(third);

    first.requeue(None).unwrap();
    assert!(matches!(
        s.answer(&mut first_acks),
        Some(Ack::Requeue { .. })
    ));
    assert_eq!(s.answer(&mut twin_acks), None);
    let twin = s
        .queue
        .try_recv()
        .expect("the twin goes to the user")
        .pop()
        .unwrap();
    assert_eq!(twin.id(), nsq_proto::MessageId::from_u64(20));
    assert_eq!(&twin.body()[..], b"m1");

    drop(twin); // unanswered: requeued, and the third copy is next
    assert!(matches!(
        s.answer(&mut twin_acks),
        Some(Ack::Requeue { .. })
    ));
    let third = s
        .queue
        .try_recv()
        .expect("the third copy goes to the user")
        .pop()
        .unwrap();
    third.finish().unwrap();
    assert_eq!(s.answer(&mut third_acks), Some(Ack::Finish));

    // The requeued first copy comes back: finished as a duplicate.
    let (again, mut again_acks) = s.copy(1, 10);
    s.absorbed(again);
    assert_eq!(s.answer(&mut again_acks), Some(Ack::FinishDuplicate));
}

#[tokio::test]
async fn a_requeued_message_without_twins_is_new_again() {
    let s = Setup::new(Dedup::envelope());
    let (first, mut acks) = s.copy(1, 10);
    s.delivered(first).requeue(None).unwrap();
    assert!(matches!(s.answer(&mut acks), Some(Ack::Requeue { .. })));
    let (back, mut back_acks) = s.copy(1, 10);
    s.delivered(back).finish().unwrap();
    assert_eq!(s.answer(&mut back_acks), Some(Ack::Finish));
    assert_eq!(s.counters.duplicates.load(Ordering::Relaxed), 0);
}

/// Delivers and finishes message `seq` (nsqd ID `id`).
fn finish_one(s: &Setup, seq: u64, id: u64) {
    let (m, mut acks) = s.copy(seq, id);
    s.delivered(m).finish().unwrap();
    assert_eq!(s.answer(&mut acks), Some(Ack::Finish));
}

#[tokio::test]
async fn the_oldest_finished_keys_leave_first_when_the_window_is_full() {
    // Two slots of 64 envelope keys.
    let s = Setup::new(Dedup::envelope().max_entries(128));
    for seq in [1, 65, 129] {
        finish_one(&s, seq, seq);
    }
    assert_eq!(s.window.slots(), 2);
    let (late, _acks) = s.copy(1, 1000);
    drop(s.delivered(late)); // the slot of key 1 was pushed out
    let (recent, mut recent_acks) = s.copy(129, 1001);
    s.absorbed(recent);
    assert_eq!(s.answer(&mut recent_acks), Some(Ack::FinishDuplicate));

    // User keys have a slot each: exactly the last `max_entries`.
    let s = Setup::new(Dedup::key_from(|body| body.get(..4)).max_entries(2));
    for (id, body) in [b"key1", b"key2", b"key3"].into_iter().enumerate() {
        let (m, mut acks) = s.raw(id as u64, Bytes::from_static(body));
        s.delivered(m).finish().unwrap();
        assert_eq!(s.answer(&mut acks), Some(Ack::Finish));
    }
    assert_eq!(s.window.slots(), 2);
    let (late, _acks) = s.raw(10, Bytes::from_static(b"key1"));
    drop(s.delivered(late));
    let (recent, mut recent_acks) = s.raw(11, Bytes::from_static(b"key2"));
    s.absorbed(recent);
    assert_eq!(s.answer(&mut recent_acks), Some(Ack::FinishDuplicate));
}

#[tokio::test]
async fn consecutive_sequences_share_a_slot_yet_are_told_apart() {
    let s = Setup::new(Dedup::envelope());
    for seq in (0..64).step_by(2) {
        finish_one(&s, seq, seq + 1);
    }
    assert_eq!(s.window.slots(), 1, "64 consecutive sequences, one slot");
    for seq in 0..64 {
        let (copy, mut acks) = s.copy(seq, 100 + seq);
        if seq % 2 == 0 {
            s.absorbed(copy);
            assert_eq!(s.answer(&mut acks), Some(Ack::FinishDuplicate), "{seq}");
        } else {
            // Its neighbours were finished, not it: it reaches the user.
            s.delivered(copy).finish().unwrap();
            assert_eq!(s.answer(&mut acks), Some(Ack::Finish), "{seq}");
        }
    }
    finish_one(&s, 64, 1000);
    assert_eq!(s.window.slots(), 2, "sequence 64 starts the next slot");
    // Another producer's sequences have slots of their own.
    let body = envelope::envelope(MessageKey::new(2, 3), b"other");
    let (other, _acks) = s.raw(2000, body);
    drop(s.delivered(other));
}

#[tokio::test(start_paused = true)]
async fn a_key_is_remembered_for_max_age_after_its_last_copy() {
    let s = Setup::new(Dedup::envelope().max_age(Duration::from_secs(60)));
    let (m, mut acks) = s.copy(1, 1);
    s.delivered(m).finish().unwrap();
    assert_eq!(s.answer(&mut acks), Some(Ack::Finish));

    tokio::time::advance(Duration::from_secs(50)).await;
    let (twin, mut acks) = s.copy(1, 2);
    s.absorbed(twin); // seen again at 50 s: remembered until 110 s
    assert_eq!(s.answer(&mut acks), Some(Ack::FinishDuplicate));

    tokio::time::advance(Duration::from_secs(50)).await; // 100 s
    let (twin, mut acks) = s.copy(1, 3);
    s.absorbed(twin);
    assert_eq!(s.answer(&mut acks), Some(Ack::FinishDuplicate));

    tokio::time::advance(Duration::from_secs(61)).await; // 161 s: 61 s after the last copy
    let (late, _acks) = s.copy(1, 4);
    drop(s.delivered(late)); // forgotten: it reaches the user again
}

#[tokio::test]
async fn messages_without_a_key_pass_untouched_and_are_counted() {
    let s = Setup::new(Dedup::envelope());
    let (plain, _acks) = s.raw(1, Bytes::from_static(b"{\"plain\":true}"));
    let plain = s.delivered(plain);
    assert_eq!(&plain.body()[..], b"{\"plain\":true}");
    assert_eq!(s.counters.unkeyed.load(Ordering::Relaxed), 1);
    drop(plain);
}

#[tokio::test]
async fn a_key_function_leaves_the_body_as_it_is() {
    let s = Setup::new(Dedup::key_from(|body| body.get(..4)));
    let (a, mut a_acks) = s.raw(1, Bytes::from_static(b"id-1 first"));
    let a = s.delivered(a);
    assert_eq!(&a.body()[..], b"id-1 first");
    a.finish().unwrap();
    assert_eq!(s.answer(&mut a_acks), Some(Ack::Finish));
    let (b, mut b_acks) = s.raw(2, Bytes::from_static(b"id-1 again"));
    s.absorbed(b);
    assert_eq!(s.answer(&mut b_acks), Some(Ack::FinishDuplicate));

    let whole = Setup::new(Dedup::key_from(|body| Some(body)));
    let (long, _l) = whole.raw(3, Bytes::from(vec![b'k'; 100]));
    drop(whole.delivered(long));
    assert_eq!(
        whole.counters.unkeyed.load(Ordering::Relaxed),
        1,
        "a key over 64 bytes"
    );
}

#[tokio::test]
async fn a_stopping_consumer_lets_held_copies_go_back_to_nsqd() {
    let s = Setup::new(Dedup::envelope());
    let (first, _first_acks) = s.copy(1, 10);
    let first = s.delivered(first);
    let (twin, mut twin_acks) = s.copy(1, 20);
    s.absorbed(twin);
    s.window.release_held();
    assert_eq!(
        s.answer(&mut twin_acks),
        Some(Ack::Requeue {
            delay: Duration::ZERO,
            backoff: false
        })
    );
    first.finish().unwrap();
    assert_eq!(s.answer(&mut twin_acks), None, "answered once");
}

mod model {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        /// A copy of (producer, sequence) arrives.
        Arrive(u64, u64),
        /// The user answers one of the copies it holds: FIN when `true`, else REQ.
        Answer(usize, bool),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..3u64, 0..150u64).prop_map(|(p, seq)| Op::Arrive(p, seq)),
            (any::<usize>(), any::<bool>()).prop_map(|(i, fin)| Op::Answer(i, fin)),
        ]
    }

    /// What an exact, unbounded window would say of each key.
    enum Expect {
        Handling { held: Vec<(u64, Answers)> },
        Finished,
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// The window (slots, bits and all) decides every copy as an exact set of keys
        /// would, while nothing is old enough to leave it.
        #[test]
        fn the_window_decides_as_an_exact_set_of_keys_would(
            ops in proptest::collection::vec(op(), 1..300),
        ) {
            let mut s = Setup::new(Dedup::envelope());
            let mut expect: HashMap<(u64, u64), Expect> = HashMap::new();
            let mut at_user: Vec<((u64, u64), Message, Answers)> = Vec::new();
            let (mut duplicates, mut next_id) = (0u64, 0u64);
            for op in ops {
                match op {
                    Op::Arrive(producer, seq) => {
                        next_id += 1;
                        let key = (producer, seq);
                        let body = envelope::envelope(
                            MessageKey::new(producer, seq),
                            format!("m{seq}").as_bytes(),
                        );
                        let (copy, mut acks) = s.raw(next_id, body);
                        let out = s.admit(copy);
                        match expect.get_mut(&key) {
                            Some(Expect::Finished) => {
                                prop_assert!(out.is_none(), "{key:?} delivered twice");
                                prop_assert_eq!(s.answer(&mut acks), Some(Ack::FinishDuplicate));
                                duplicates += 1;
                            }
                            Some(Expect::Handling { held }) => {
                                prop_assert!(out.is_none(), "{key:?} delivered while handled");
                                prop_assert_eq!(s.answer(&mut acks), None);
                                held.push((next_id, acks));
                            }
                            None => {
                                let msg = out.expect("a new key is delivered");
                                prop_assert_eq!(&msg.body()[..], format!("m{seq}").into_bytes());
                                expect.insert(key, Expect::Handling { held: Vec::new() });
                                at_user.push((key, msg, acks));
                            }
                        }
                    }
                    Op::Answer(pick, finish) => {
                        if at_user.is_empty() {
                            continue;
                        }
                        let (key, msg, mut acks) = at_user.remove(pick % at_user.len());
                        if finish {
                            msg.finish().unwrap();
                            prop_assert_eq!(s.answer(&mut acks), Some(Ack::Finish));
                        } else {
                            msg.requeue(None).unwrap();
                            let requeued = matches!(s.answer(&mut acks), Some(Ack::Requeue { .. }));
                            prop_assert!(requeued, "a REQ");
                        }
                        let Some(Expect::Handling { held }) = expect.get_mut(&key) else {
                            panic!("{key:?} was with the user");
                        };
                        if finish {
                            for (_, mut twin) in std::mem::take(held) {
                                prop_assert_eq!(s.answer(&mut twin), Some(Ack::FinishDuplicate));
                                duplicates += 1;
                            }
                            expect.insert(key, Expect::Finished);
                        } else if held.is_empty() {
                            expect.remove(&key);
                        } else {
                            let (id, twin_acks) = held.remove(0);
                            let mut promoted = s.queue.try_recv().expect("a held copy is handed on");
                            prop_assert_eq!(promoted.len(), 1);
                            let next = promoted.pop().unwrap();
                            prop_assert_eq!(next.id(), nsq_proto::MessageId::from_u64(id));
                            at_user.push((key, next, twin_acks));
                        }
                    }
                }
                let held: usize = expect
                    .values()
                    .map(|e| match e {
                        Expect::Handling { held } => held.len(),
                        Expect::Finished => 0,
                    })
                    .sum();
                prop_assert_eq!(s.counters.duplicates.load(Ordering::Relaxed), duplicates);
                prop_assert_eq!(s.counters.duplicates_held.load(Ordering::Relaxed), held as u64);
                prop_assert!(s.queue.try_recv().is_err(), "nothing handed on unasked");
            }
            // Finish what the user holds, so every message is answered.
            for (_, msg, _) in at_user {
                msg.finish().unwrap();
            }
        }
    }
}
