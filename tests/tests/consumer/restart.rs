//! A broker stopped and restarted mid-stream, against both brokers.

use super::*;

// ---------------------------------------------------------------------------------------------
// 3. A broker stopped and restarted mid-stream: nothing acknowledged is lost.
//
// Real nsqd is stopped with SIGTERM, which makes it write its queued, in-flight and deferred
// messages to its data path, and started again on the same ports with the same data path, so
// it comes back holding them; publishes to it fail while it is down and are not expected.
// The lite broker keeps its messages in memory only, so its restart is simulated at the network:
// the consumer reaches it through a `Proxy` that cuts every connection and refuses new ones
// (`kill`), then lets them through again (`open`); the broker itself goes on holding (and
// taking) messages, as a restarted nsqd holds what it persisted. In both, messages in flight on
// the cut connections return to the queue on nsqd's in-flight timeout (2 s here) or on restart.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_and_restarted_mid_stream_loses_nothing() {
    each_kind(restart_mid_stream).await;
}

/// Publishes `broker`'s bodies one at a time until `stop`; returns the indexes acknowledged.
fn publish_until(
    broker: usize,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    count: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<Vec<usize>> {
    tokio::spawn(async move {
        let producer = producer(addr);
        let mut ok = Vec::new();
        let mut i = 0;
        while !stop.load(Ordering::Relaxed) {
            if producer.publish(&topic(), body(broker, i)).await.is_ok() {
                ok.push(i);
                count.fetch_add(1, Ordering::Relaxed);
            }
            i += 1;
        }
        producer.stop().await;
        ok
    })
}

/// Waits until `n` distinct bodies were received.
async fn received_at_least(received: &Mutex<HashMap<Bytes, usize>>, n: usize, what: &str) {
    eventually(&format!("{what}: {n} received"), WAIT, || {
        let got = received.lock().unwrap().len();
        async move {
            if got >= n {
                Ok(())
            } else {
                Err(format!("{got} received"))
            }
        }
    })
    .await;
}

async fn restart_mid_stream(kind: BrokerKind) {
    const BROKERS: usize = 3;
    const VICTIM: usize = 1;
    let what = kind.name();
    let opts = BrokerOpts {
        msg_timeout: Some(Duration::from_secs(2)),
        ..BrokerOpts::default()
    };
    let Some(mut brokers) = start_brokers(kind, BROKERS, &opts).await else {
        return;
    };
    let proxy = match kind {
        BrokerKind::Lite => Some(Proxy::start(brokers[VICTIM].tcp_addr()).await),
        BrokerKind::RealNsqd => None,
    };
    let consumer_addrs: Vec<SocketAddr> = (0..BROKERS)
        .map(|k| match (&proxy, k) {
            (Some(p), VICTIM) => p.addr(),
            _ => brokers[k].tcp_addr(),
        })
        .collect();
    let mut builder = Consumer::builder(topic(), channel()).config(
        ConsumerConfig::default()
            .max_in_flight(30)
            .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200)),
    );
    for a in &consumer_addrs {
        builder = builder.nsqd(a.to_string());
    }
    let mut consumer = builder.build().unwrap();
    until_connected(&mut consumer, BROKERS, what).await;

    // The consumer takes and finishes messages in its own task, throughout.
    let stop = consumer.handle();
    let received: Arc<Mutex<HashMap<Bytes, usize>>> = Arc::default();
    let consuming = tokio::spawn({
        let received = received.clone();
        async move {
            while let Some(msg) = consumer.next().await {
                *received
                    .lock()
                    .unwrap()
                    .entry(msg.body().clone())
                    .or_default() += 1;
                // A message from the connection that was just cut cannot be finished: nsqd
                // redelivers it after its timeout, which is what this test counts on.
                match msg.finish() {
                    Ok(()) | Err(nsq_client::AckError::ConnectionClosed(_)) => {}
                    Err(other) => panic!("finish failed: {other}"),
                }
            }
        }
    });
    let stop_publishing = Arc::new(AtomicBool::new(false));
    let published = Arc::new(AtomicUsize::new(0));
    let publishers: Vec<_> = brokers
        .iter()
        .enumerate()
        .map(|(k, b)| publish_until(k, b.tcp_addr(), stop_publishing.clone(), published.clone()))
        .collect();
    let received_count = || received.lock().unwrap().len();
    received_at_least(&received, 1_000, &format!("{what}: before the stop")).await;

    let victim_http = brokers[VICTIM].http_addr();
    match (&mut brokers[VICTIM], &proxy) {
        (_, Some(proxy)) => {
            proxy.kill();
            eventually(
                &format!("{what}: the victim loses its consumer"),
                WAIT,
                || async {
                    match channel_view(victim_http).await?.clients {
                        0 => Ok(()),
                        n => Err(format!("{n} clients")),
                    }
                },
            )
            .await;
        }
        (Broker::RealNsqd(nsqd), None) => {
            tokio::task::block_in_place(|| nsqd.terminate());
        }
        (Broker::Lite(_), None) => unreachable!("the lite broker has a proxy"),
    }
    // The stream goes on from the other brokers while the victim is down.
    let before = received_count();
    received_at_least(
        &received,
        before + 500,
        &format!("{what}: while a broker is down"),
    )
    .await;
    match (&mut brokers[VICTIM], &proxy) {
        (_, Some(proxy)) => proxy.open(),
        (Broker::RealNsqd(nsqd), None) => tokio::task::block_in_place(|| nsqd.restart()),
        (Broker::Lite(_), None) => unreachable!("the lite broker has a proxy"),
    }
    eventually(
        &format!("{what}: the consumer is back at the victim"),
        WAIT,
        || async {
            match channel_view(victim_http).await?.clients {
                1 => Ok(()),
                n => Err(format!("{n} clients")),
            }
        },
    )
    .await;
    let before = received_count();
    received_at_least(
        &received,
        before + 500,
        &format!("{what}: after the restart"),
    )
    .await;
    stop_publishing.store(true, Ordering::Relaxed);
    let mut acknowledged = Vec::new();
    for (k, p) in publishers.into_iter().enumerate() {
        acknowledged.extend(p.await.unwrap().into_iter().map(|i| body(k, i)));
    }

    let acknowledged = &acknowledged;
    eventually(
        &format!("{what}: every acknowledged message received"),
        WAIT,
        || {
            let missing = {
                let received = received.lock().unwrap();
                acknowledged
                    .iter()
                    .filter(|b| !received.contains_key(*b))
                    .count()
            };
            async move {
                match missing {
                    0 => Ok(()),
                    n => Err(format!(
                        "{n} of {} acknowledged messages missing",
                        acknowledged.len()
                    )),
                }
            }
        },
    )
    .await;
    let (distinct, duplicates) = {
        let received = received.lock().unwrap();
        (
            received.len(),
            received.values().filter(|&&n| n > 1).count(),
        )
    };
    eprintln!(
        "{what}: {} acknowledged, {distinct} distinct received, {duplicates} redelivered",
        acknowledged.len()
    );
    drop(stop.stop());
    tokio::time::timeout(WAIT, consuming)
        .await
        .expect("the stream ends after the stop")
        .unwrap();
    // Messages whose FIN was cut with the connection come back on nsqd's in-flight timeout.
    let addrs = http_addrs(&brokers);
    eventually(&format!("{what}: nothing in flight"), WAIT, || async {
        let views = channel_views(&addrs).await?;
        match views.iter().map(|v| v.in_flight).sum::<usize>() {
            0 => Ok(()),
            n => Err(format!("{n} in flight: {views:?}")),
        }
    })
    .await;
}
