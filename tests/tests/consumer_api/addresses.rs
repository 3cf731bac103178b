//! Where the consumer connects: nsqlookupd URLs with a path, the discovery filter, unix
//! sockets, topology hints and the local address, and an `https://` lookupd.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookupd_urls_keep_their_path_and_the_filter_rewrites_addresses() {
    let lookupd = nsq_server_lite::lookupd::Lookupd::builder()
        .start()
        .await
        .unwrap();
    // Registered under a name nothing resolves: only the filter makes it reachable.
    let nsqd = nsq_server_lite::Nsqd::builder()
        .broadcast_address("nsqd.invalid")
        .lookupd_tcp_address(lookupd.tcp_addr().to_string())
        .start()
        .await
        .unwrap();
    let t = topic("discovered");
    publish(nsqd.tcp_addr(), &t, "found").await;
    eventually("lookupd lists the topic", WAIT, || async {
        let answer = http::json(lookupd.http_addr(), "GET", "/lookup?topic=discovered").await?;
        match answer["producers"].as_array().map_or(0, Vec::len) {
            1 => Ok(()),
            n => Err(format!("{n} producers")),
        }
    })
    .await;
    let port = nsqd.tcp_addr().port();
    let mut consumer = Consumer::builder(t, channel("c"))
        .lookupd(format!("http://{}/lookup", lookupd.http_addr()))
        .discovery_filter(move |listed| {
            assert_eq!(listed.broadcast_address, "nsqd.invalid");
            Some(format!("127.0.0.1:{}", listed.tcp_port))
        })
        .build()
        .unwrap();
    let mut events = consumer.events();
    consumer
        .connected(WAIT)
        .await
        .expect("connected through the filter");
    let msg = tokio::time::timeout(WAIT, consumer.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&msg.body()[..], b"found");
    msg.finish().unwrap();
    let listed = loop {
        match tokio::time::timeout(WAIT, events.next())
            .await
            .unwrap()
            .unwrap()
        {
            ConsumerEvent::NsqdListed { nsqd } => break nsqd,
            _ => continue,
        }
    };
    assert_eq!(listed, format!("127.0.0.1:{port}"));
    consumer.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Transports and identity: unix sockets, the local address, topology hints.

/// Publishes and consumes one message over `addr` (a unix socket path); returns its body.
async fn round_trip(addr: &str, what: &str) -> bytes::Bytes {
    let t = topic("unix");
    let producer = Producer::new(addr, ProducerConfig::default()).unwrap();
    producer
        .publish(&t, "over a unix socket")
        .await
        .unwrap_or_else(|e| panic!("{what}: publish: {e}"));
    let mut consumer = Consumer::builder(t, channel("c"))
        .nsqd(addr)
        .build()
        .unwrap();
    consumer
        .connected(WAIT)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let msg = tokio::time::timeout(WAIT, consumer.next())
        .await
        .expect("a message")
        .unwrap();
    let body = msg.body().clone();
    msg.finish().unwrap();
    consumer.stop().await;
    body
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_and_consumer_reach_nsqd_over_a_unix_socket() {
    let dir = std::env::temp_dir().join(format!("nsq-unix-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let lite_path = dir.join("lite.sock");
    let lite = nsq_server_lite::Nsqd::builder()
        .tcp_unix_socket(&lite_path)
        .start()
        .await
        .unwrap();
    let addr = format!("unix:{}", lite_path.display());
    assert_eq!(&round_trip(&addr, "lite").await[..], b"over a unix socket");
    lite.shutdown().await;

    let Some(bin) = nsq_tests::peer_or_skip("NSQD_BIN") else {
        return;
    };
    // nsqd 1.3.0 listens on a unix socket when --tcp-address is a path.
    let real_path = dir.join("nsqd.sock");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let http = format!("127.0.0.1:{}", nsq_tests::free_port());
    let mut child = std::process::Command::new(bin)
        .arg(format!("--tcp-address={}", real_path.display()))
        .arg(format!("--http-address={http}"))
        .arg("--https-address=")
        .arg(format!("--data-path={}", data.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start nsqd");
    eventually("nsqd creates its unix socket", WAIT, || async {
        match tokio::net::UnixStream::connect(&real_path).await {
            Ok(_) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    let body = round_trip(&real_path.display().to_string(), "nsqd").await;
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(&body[..], b"over a unix socket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identify_carries_topology_and_connections_leave_from_the_local_address() {
    each_kind(identity).await;
}

async fn identity(kind: BrokerKind) {
    let what = kind.name();
    let Some(broker) = broker(kind, &BrokerOpts::default()).await else {
        return;
    };
    broker.create_channel("identity", "c").await.unwrap();
    let local: std::net::SocketAddr = "127.0.0.7:0".parse().unwrap();
    let consumer = Consumer::builder(topic("identity"), channel("c"))
        .nsqd(broker.tcp_addr().to_string())
        .config(
            ConsumerConfig::default().connection(
                ConnectionConfig::default()
                    .local_addr(local)
                    .topology("eu-west-1", "eu-west-1a"),
            ),
        )
        .build()
        .unwrap();
    consumer.connected(WAIT).await.unwrap();
    let stats = broker.stats().await.unwrap();
    let client = &stats.channel("identity", "c").unwrap().clients[0];
    assert!(
        client.remote_address.starts_with("127.0.0.7:"),
        "{what}: {}",
        client.remote_address
    );
    if kind == BrokerKind::Lite {
        // nsqd 1.3.0 predates the topology fields and ignores them (it accepted the IDENTIFY).
        assert_eq!(
            (
                client.topology_region.as_str(),
                client.topology_zone.as_str()
            ),
            ("eu-west-1", "eu-west-1a")
        );
    }
    consumer.stop().await;
}

/// Serves TLS on a free loopback port and forwards each connection, decrypted, to `backend`.
async fn tls_terminator(certs: &TestCerts, backend: SocketAddr) -> SocketAddr {
    let config = nsq_server_lite::tls::server_config(
        &certs.server_cert,
        &certs.server_key,
        None,
        nsq_server_lite::tls::ClientAuth::None,
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_lookupd_is_asked_with_the_connections_tls_configuration() {
    let certs = TestCerts::generate();
    let lookupd = nsq_server_lite::lookupd::Lookupd::builder()
        .start()
        .await
        .unwrap();
    let opts = BrokerOpts {
        tls: Some(BrokerTls::server(&certs)),
        lookupd_tcp: vec![lookupd.tcp_addr()],
        ..BrokerOpts::default()
    };
    let broker = Broker::start(BrokerKind::Lite, &opts).await.unwrap();
    broker.create_channel("secure", "c").await.unwrap();
    eventually("lookupd lists the topic", WAIT, || async {
        let answer = http::json(lookupd.http_addr(), "GET", "/lookup?topic=secure").await?;
        match answer["producers"].as_array().map_or(0, Vec::len) {
            1 => Ok(()),
            n => Err(format!("{n} producers")),
        }
    })
    .await;
    let https = tls_terminator(&certs, lookupd.http_addr()).await;
    let tls =
        nsq_client::TlsConfig::new(certs.client_config()).server_name(nsq_tests::tls::SERVER_NAME);
    let consumer = Consumer::builder(topic("secure"), channel("c"))
        .lookupd(format!(
            "https://{}:{}",
            nsq_tests::tls::SERVER_NAME,
            https.port()
        ))
        .config(ConsumerConfig::default().connection(ConnectionConfig::default().tls(tls)))
        .build()
        .unwrap();
    consumer
        .connected(WAIT)
        .await
        .expect("found through https, subscribed over TLS");

    // Without the CA, the same lookupd is refused, and says why.
    let consumer = Consumer::builder(topic("secure"), channel("c"))
        .lookupd(format!(
            "https://{}:{}",
            nsq_tests::tls::SERVER_NAME,
            https.port()
        ))
        .build()
        .unwrap();
    let err = consumer
        .connected(Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ConnectedError::Timeout { last: Some(ConsumerFailure::Lookupd(e)), .. } if matches!(e.as_ref(), nsq_client::LookupdError::Request { .. })),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookupd_added_at_runtime_is_asked_at_once() {
    let empty = nsq_server_lite::lookupd::Lookupd::builder()
        .start()
        .await
        .unwrap();
    let lookupd = nsq_server_lite::lookupd::Lookupd::builder()
        .start()
        .await
        .unwrap();
    let nsqd = nsq_server_lite::Nsqd::builder()
        .broadcast_address("127.0.0.1")
        .lookupd_tcp_address(lookupd.tcp_addr().to_string())
        .start()
        .await
        .unwrap();
    let t = topic("added");
    publish(nsqd.tcp_addr(), &t, "found later").await;
    eventually("lookupd lists the topic", WAIT, || async {
        let answer = http::json(lookupd.http_addr(), "GET", "/lookup?topic=added").await?;
        match answer["producers"].as_array().map_or(0, Vec::len) {
            1 => Ok(()),
            n => Err(format!("{n} producers")),
        }
    })
    .await;
    // Polled rarely: only the addition makes it look again soon.
    let mut consumer = Consumer::builder(t, channel("c"))
        .lookupd(empty.http_addr().to_string())
        .config(ConsumerConfig::default().lookupd_poll_interval(Duration::from_secs(3600)))
        .build()
        .unwrap();
    let err = consumer
        .connected(Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ConnectedError::Timeout {
                last: Some(ConsumerFailure::NoNsqd),
                ..
            }
        ),
        "{err:?}"
    );
    let handle = consumer.handle();
    assert!(handle.add_lookupd("not a lookupd address").is_err());
    handle.add_lookupd(lookupd.http_addr().to_string()).unwrap();
    consumer
        .connected(WAIT)
        .await
        .expect("found through the added lookupd");
    let msg = tokio::time::timeout(WAIT, consumer.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&msg.body()[..], b"found later");
    msg.finish().unwrap();
    // Removing it keeps the connection it led to.
    handle.remove_lookupd(lookupd.http_addr().to_string());
    assert_eq!(handle.stats().connections, 1);
    consumer.stop().await;
}
