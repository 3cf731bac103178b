//! Scenarios: delivery (RDY, sharing and fan-out, holding, pause/empty/delete), ephemeral
//! topics and channels, heartbeats, and the stats after a mixed conversation.

use super::*;

// ---------------------------------------------------------------------------------------------
// Delivery
// ---------------------------------------------------------------------------------------------

pub(super) async fn rdy_window(b: Broker) -> Log {
    let mut log = Log::new();
    b.create_channel("t", "c").await.expect("create channel");
    publish_all(&b, mpub("t", &["m0", "m1", "m2", "m3", "m4"]), &mut log).await;
    let mut c = consumer(&b, "t", "c", |_| {}, &mut log).await;
    send(&mut c, Command::Rdy(2)).await;
    let first = message(&mut c).await;
    log.push(render_msg(&first));
    log.push(render_msg(&message(&mut c).await));
    // An error reply shows that nothing else was queued for this connection before it.
    log.push(format!(
        "probe: {}",
        reply(&mut c, Command::Fin(MessageId::from_u64(7))).await
    ));
    log.extend(stats_of(&b, "t").await);
    send(&mut c, Command::Fin(first.id)).await;
    log.push(render_msg(&message(&mut c).await));
    log.push(format!(
        "probe: {}",
        reply(&mut c, Command::Fin(MessageId::from_u64(7))).await
    ));
    log.extend(stats_of(&b, "t").await);
    log
}

pub(super) async fn consumers_share_a_channel(b: Broker) -> Log {
    let mut log = Log::new();
    let mut one = consumer(&b, "t", "c", |i| i.client_id = "one".into(), &mut log).await;
    let mut two = consumer(&b, "t", "c", |i| i.client_id = "two".into(), &mut log).await;
    send(&mut one, Command::Rdy(1)).await;
    send(&mut two, Command::Rdy(1)).await;
    // Wait until both RDYs are in force, so each consumer gets exactly one message.
    let ready = eventually(|| async {
        let stats = b.stats().await.expect("stats");
        stats
            .channel("t", "c")
            .is_some_and(|c| c.clients.iter().all(|cl| cl.ready_count == 1))
    })
    .await;
    log.push(format!("both ready: {ready}"));
    publish_all(&b, mpub("t", &["x", "y"]), &mut log).await;
    let (a, b2) = (message(&mut one).await, message(&mut two).await);
    let mut bodies = [a.body.clone(), b2.body.clone()];
    bodies.sort();
    log.push(format!("one each: {bodies:?}"));
    log.extend(stats_of(&b, "t").await);
    log
}

pub(super) async fn channels_each_get_everything(b: Broker) -> Log {
    let mut log = Log::new();
    let mut one = consumer(&b, "t", "one", |_| {}, &mut log).await;
    let mut two = consumer(&b, "t", "two", |_| {}, &mut log).await;
    send(&mut one, Command::Rdy(10)).await;
    send(&mut two, Command::Rdy(10)).await;
    publish_all(&b, mpub("t", &["a", "b", "c"]), &mut log).await;
    for c in [&mut one, &mut two] {
        let mut got = Vec::new();
        for _ in 0..3 {
            let msg = message(c).await;
            send(c, Command::Fin(msg.id)).await;
            got.push(render_msg(&msg));
        }
        got.sort();
        log.push(got.join(", "));
        log.push(alive(c).await);
    }
    log.extend(stats_of(&b, "t").await);
    log
}

pub(super) async fn topic_holds_until_first_channel(b: Broker) -> Log {
    let mut log = Log::new();
    publish_all(&b, mpub("t", &["a", "b", "c"]), &mut log).await;
    log.extend(stats_of(&b, "t").await);
    let mut c = consumer(&b, "t", "first", |_| {}, &mut log).await;
    send(&mut c, Command::Rdy(10)).await;
    for _ in 0..3 {
        let msg = message(&mut c).await;
        send(&mut c, Command::Fin(msg.id)).await;
        log.push(render_msg(&msg));
    }
    log.push(alive(&mut c).await);
    b.create_channel("t", "second")
        .await
        .expect("create channel");
    log.extend(stats_of(&b, "t").await);
    log
}

pub(super) async fn pause_empty_delete(b: Broker) -> Log {
    let mut log = Log::new();
    let mut c = consumer(&b, "t", "c", |_| {}, &mut log).await;
    send(&mut c, Command::Rdy(10)).await;
    let post = |path: &'static str| http::request(b.http_addr(), "POST", path);
    let status = |r: Result<(u16, String), String>| r.expect("HTTP answers").0;
    log.push(format!(
        "channel pause: {}",
        status(post("/channel/pause?topic=t&channel=c").await)
    ));
    publish_all(&b, publish("t", "held"), &mut log).await;
    log.push(format!("while paused: {}", quiet(&mut c, ms(300)).await));
    log.extend(stats_of(&b, "t").await);
    log.push(format!(
        "channel unpause: {}",
        status(post("/channel/unpause?topic=t&channel=c").await)
    ));
    let held = message(&mut c).await;
    log.push(render_msg(&held));
    log.push(format!(
        "channel empty: {}",
        status(post("/channel/empty?topic=t&channel=c").await)
    ));
    log.extend(stats_of(&b, "t").await);
    log.push(format!(
        "FIN emptied: {}",
        reply(&mut c, Command::Fin(held.id)).await
    ));

    log.push(format!(
        "topic pause: {}",
        status(post("/topic/pause?topic=t").await)
    ));
    publish_all(&b, publish("t", "waits at the topic"), &mut log).await;
    log.push(format!("while paused: {}", quiet(&mut c, ms(300)).await));
    log.extend(stats_of(&b, "t").await);
    log.push(format!(
        "topic unpause: {}",
        status(post("/topic/unpause?topic=t").await)
    ));
    log.push(render_msg(&message(&mut c).await));
    log.push(format!(
        "topic delete: {}",
        status(post("/topic/delete?topic=t").await)
    ));
    log.push(format!("subscriber: {}", render(next(&mut c).await)));
    log.extend(stats_of(&b, "t").await);
    log
}

// ---------------------------------------------------------------------------------------------
// Ephemeral topics and channels, heartbeats
// ---------------------------------------------------------------------------------------------

pub(super) async fn ephemeral(b: Broker) -> Log {
    let mut log = Log::new();
    let durable = consumer(&b, "t", "c#ephemeral", |_| {}, &mut log).await;
    let gone = consumer(&b, "e#ephemeral", "c#ephemeral", |_| {}, &mut log).await;
    log.extend(stats_of(&b, "t").await);
    log.extend(stats_of(&b, "e#ephemeral").await);
    drop(durable);
    drop(gone);
    let cleared = eventually(|| async {
        let stats = b.stats().await.expect("stats");
        stats.channel("t", "c#ephemeral").is_none() && stats.topic("e#ephemeral").is_none()
    })
    .await;
    log.push(format!("both gone: {cleared}"));
    log.extend(stats_of(&b, "t").await);
    log.extend(stats_of(&b, "e#ephemeral").await);
    log
}

pub(super) async fn heartbeats(b: Broker) -> Log {
    let mut log = Log::new();
    let mut c = connect(&b).await;
    let asked = Instant::now();
    let r = reply(&mut c, identify(|i| i.heartbeat_interval = 1000)).await;
    log.push(format!("IDENTIFY: {}", r.starts_with("DATA ")));
    log.push(render(next(&mut c).await));
    log.push(within(
        "first heartbeat",
        asked.elapsed(),
        ms(900),
        ms(2000),
    ));
    send(&mut c, Command::Nop).await;
    let answered = Instant::now();
    // Not answering any more: the broker closes two intervals after the last command.
    let mut beats = 0;
    let end = loop {
        match next(&mut c).await {
            Some(Frame::Response(Response::Heartbeat)) => beats += 1,
            other => break render(other),
        }
    };
    log.push(format!("then heartbeats until {end}"));
    log.push(format!("at least one more heartbeat: {}", beats >= 1));
    log.push(within("closed", answered.elapsed(), ms(1900), ms(3500)));
    log
}

// ---------------------------------------------------------------------------------------------
// Stats after a mixed conversation
// ---------------------------------------------------------------------------------------------

pub(super) async fn stats_after_a_conversation(b: Broker) -> Log {
    let mut log = Log::new();
    b.create_channel("t", "c").await.expect("create channel");
    b.create_channel("t", "idle").await.expect("create channel");
    publish_all(&b, mpub("t", &["m0", "m1", "m2", "m3", "m4"]), &mut log).await;
    publish_all(&b, publish("t", "m5"), &mut log).await;
    publish_all(
        &b,
        Command::Dpub {
            topic: topic("t"),
            delay: Duration::from_secs(60),
            body: Bytes::from_static(b"later"),
        },
        &mut log,
    )
    .await;
    let mut c = consumer(&b, "t", "c", |i| i.client_id = "worker".into(), &mut log).await;
    send(&mut c, Command::Rdy(3)).await;
    let m: Vec<Message> = [
        message(&mut c).await,
        message(&mut c).await,
        message(&mut c).await,
    ]
    .into();
    send(&mut c, Command::Fin(m[0].id)).await;
    send(
        &mut c,
        Command::Req {
            id: m[1].id,
            delay: Duration::from_secs(60),
        },
    )
    .await;
    // Past --max-req-timeout: nsqd 1.3.0 clamps the delay rather than refusing.
    send(
        &mut c,
        Command::Req {
            id: m[2].id,
            delay: Duration::from_secs(7200),
        },
    )
    .await;
    for _ in 0..3 {
        log.push(render_msg(&message(&mut c).await));
    }
    log.push(alive(&mut c).await);
    log.extend(stats_of(&b, "t").await);
    log
}
