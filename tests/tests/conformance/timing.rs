//! Scenarios: requeue, timeout, TOUCH and DPUB timing, in real time (real nsqd cannot be
//! paused), with generous upper bounds.

use super::*;

// ---------------------------------------------------------------------------------------------
// Requeue and timeout timing (real time: real nsqd cannot be paused; generous upper bounds)
// ---------------------------------------------------------------------------------------------

/// Waits until the broker scans `c`'s channel for timeouts and deferred messages: a message
/// requeued with 1 ms delay comes back. `c` must be subscribed with room for one message.
///
/// nsqd 1.3.0's queue-scan loop works from a list of channels it refreshes every 5 s
/// (`QueueScanRefreshInterval`, not a flag), so a new channel's REQ delays and in-flight
/// timeouts are only honoured from the next refresh on; lite scans every channel from its
/// creation. That is an artefact of nsqd's scheduling, not a behaviour clients rely on, so lite
/// keeps its prompt scan and the timing scenarios start from a channel both brokers scan.
pub(super) async fn until_scanned(b: &Broker, c: &mut Conn, t: &str, log: &mut Log) {
    publish_all(b, publish(t, "warm-up"), log).await;
    let msg = message(c).await;
    send(
        c,
        Command::Req {
            id: msg.id,
            delay: ms(1),
        },
    )
    .await;
    let msg = message(c).await;
    send(c, Command::Fin(msg.id)).await;
    log.push(format!("scanned: {}", render_msg(&msg)));
}

pub(super) fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

pub(super) async fn requeue(b: Broker) -> Log {
    let mut log = Log::new();
    let mut c = consumer(&b, "t", "c", |_| {}, &mut log).await;
    send(&mut c, Command::Rdy(1)).await;
    until_scanned(&b, &mut c, "t", &mut log).await;
    publish_all(&b, publish("t", "again"), &mut log).await;
    let msg = message(&mut c).await;
    log.push(render_msg(&msg));
    send(
        &mut c,
        Command::Req {
            id: msg.id,
            delay: Duration::ZERO,
        },
    )
    .await;
    let msg = message(&mut c).await;
    log.push(format!("REQ 0: {}", render_msg(&msg)));

    send(
        &mut c,
        Command::Req {
            id: msg.id,
            delay: ms(300),
        },
    )
    .await;
    let sent = Instant::now();
    log.push(alive(&mut c).await);
    log.extend(stats_of(&b, "t").await);
    let msg = message(&mut c).await;
    log.push(format!("REQ 300ms: {}", render_msg(&msg)));
    log.push(within("REQ 300ms", sent.elapsed(), ms(300), ms(1500)));
    send(&mut c, Command::Fin(msg.id)).await;
    log.push(alive(&mut c).await);
    log.extend(stats_of(&b, "t").await);
    log
}

pub(super) async fn msg_timeout(b: Broker) -> Log {
    let mut log = Log::new();
    let mut c = consumer(&b, "t", "c", |i| i.msg_timeout = 1000, &mut log).await;
    send(&mut c, Command::Rdy(1)).await;
    until_scanned(&b, &mut c, "t", &mut log).await;
    publish_all(&b, publish("t", "slow"), &mut log).await;
    let msg = message(&mut c).await;
    let delivered = Instant::now();
    log.push(render_msg(&msg));
    let msg = message(&mut c).await;
    log.push(format!("timed out: {}", render_msg(&msg)));
    log.push(within("timeout", delivered.elapsed(), ms(950), ms(2500)));
    log.extend(stats_of(&b, "t").await);
    log
}

pub(super) async fn touch(b: Broker) -> Log {
    let mut log = Log::new();
    let mut c = consumer(&b, "t", "c", |i| i.msg_timeout = 1000, &mut log).await;
    send(&mut c, Command::Rdy(1)).await;
    until_scanned(&b, &mut c, "t", &mut log).await;
    publish_all(&b, publish("t", "touched"), &mut log).await;
    let msg = message(&mut c).await;
    let delivered = Instant::now();
    log.push(render_msg(&msg));
    log.push(format!("for 700 ms: {}", quiet(&mut c, ms(700)).await));
    send(&mut c, Command::Touch(msg.id)).await;
    let msg = message(&mut c).await;
    log.push(format!("timed out: {}", render_msg(&msg)));
    log.push(within(
        "TOUCH at 700 ms",
        delivered.elapsed(),
        ms(1650),
        ms(3500),
    ));
    log.extend(stats_of(&b, "t").await);
    log
}

pub(super) async fn touch_capped(b: Broker) -> Log {
    let mut log = Log::new();
    let mut c = consumer(&b, "t", "c", |i| i.msg_timeout = 1000, &mut log).await;
    send(&mut c, Command::Rdy(1)).await;
    until_scanned(&b, &mut c, "t", &mut log).await;
    publish_all(&b, publish("t", "capped"), &mut log).await;
    let msg = message(&mut c).await;
    let delivered = Instant::now();
    log.push(format!("for 700 ms: {}", quiet(&mut c, ms(700)).await));
    send(&mut c, Command::Touch(msg.id)).await;
    let msg = message(&mut c).await;
    log.push(format!("timed out: {}", render_msg(&msg)));
    // --max-msg-timeout 1200ms: uncapped, the TOUCH would hold the message until 1.7 s.
    log.push(within(
        "TOUCH capped",
        delivered.elapsed(),
        ms(1150),
        ms(1650),
    ));
    log
}

pub(super) async fn dpub_timing(b: Broker) -> Log {
    let mut log = Log::new();
    let mut c = consumer(&b, "t", "c", |_| {}, &mut log).await;
    send(&mut c, Command::Rdy(1)).await;
    until_scanned(&b, &mut c, "t", &mut log).await;
    let dpub = Command::Dpub {
        topic: topic("t"),
        delay: ms(400),
        body: Bytes::from_static(b"deferred"),
    };
    let published = Instant::now();
    publish_all(&b, dpub, &mut log).await;
    // nsqd's topic hands a message to its channels on its own goroutine, after the OK: wait
    // for the channel to hold it, deferred, before reading the figures.
    let deferred = eventually(|| async {
        let stats = b.stats().await.expect("stats");
        stats
            .channel("t", "c")
            .is_some_and(|c| c.deferred_count == 1)
    })
    .await;
    log.push(format!("deferred in the channel: {deferred}"));
    log.extend(stats_of(&b, "t").await);
    log.push(render_msg(&message(&mut c).await));
    log.push(within("DPUB 400ms", published.elapsed(), ms(400), ms(1500)));
    log
}
