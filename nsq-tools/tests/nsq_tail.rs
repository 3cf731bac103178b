//! `nsq_tail` end to end, against nsq-server-lite and real nsqd 1.3.0 (skipped without
//! `NSQD_BIN` outside CI): every message printed as a line, `-n`, `--print-topic` with several
//! topics through nsqlookupd, the ephemeral channel, signals, TLS and compression options, and
//! its failures.

mod common;

use common::*;
use nsq_tests::broker::{each_kind, BrokerKind, BrokerOpts, BrokerTls};
use nsq_tests::tls::TestCerts;

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn prints_each_message_as_a_line_and_exits_after_n() {
    each_kind(CASES_WITHIN, |kind| async move {
        let Some(broker) = broker(kind, &BrokerOpts::default()).await else {
            return;
        };
        let addr = broker.tcp_addr().to_string();
        let child = command(
            &ours("nsq_tail"),
            &args(&[
                "-topic=tail_n",
                &format!("-nsqd-tcp-address={addr}"),
                "-n",
                "40",
            ]),
        )
        .spawn()
        .expect("start nsq_tail");
        let channel = subscribed(&broker, "tail_n").await;
        assert!(
            channel.starts_with("tail") && channel.ends_with("#ephemeral"),
            "{kind:?}: nsq's default channel, got {channel}"
        );
        // More than -n: it must stop at 40 and hand the rest back.
        let sent = bodies("line", 60);
        publish(&broker, "tail_n", &sent).await;
        let ran = wait(child).await;
        assert_eq!(ran.code(), Some(0), "{kind:?}: {}", ran.stderr);
        let lines = ran.lines();
        assert_eq!(lines.len(), 40, "{kind:?}: {lines:?}");
        let mut unique = lines.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(
            unique.len(),
            40,
            "{kind:?}: a line printed twice: {lines:?}"
        );
        assert!(
            lines.iter().all(|l| sent.contains(l)),
            "{kind:?}: {lines:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn several_topics_through_lookupd_with_print_topic() {
    each_kind(CASES_WITHIN, |kind| async move {
        let Some((lookupd, brokers)) = cluster(kind, 1).await else {
            return;
        };
        let broker = &brokers[0];
        for topic in ["tail_a", "tail_b"] {
            register_topic(&lookupd, &brokers, topic).await;
        }
        let child = command(
            &ours("nsq_tail"),
            &args(&[
                "--topic=tail_a",
                "--topic=tail_b",
                &format!("--lookupd-http-address={}", lookupd.http_addr()),
                "--print-topic",
                "--channel=watch",
                "-n=4",
            ]),
        )
        .spawn()
        .expect("start nsq_tail");
        subscribed(broker, "tail_a").await;
        subscribed(broker, "tail_b").await;
        publish(broker, "tail_a", &bodies("a", 2)).await;
        publish(broker, "tail_b", &bodies("b", 2)).await;
        let ran = wait(child).await;
        assert_eq!(ran.code(), Some(0), "{kind:?}: {}", ran.stderr);
        assert_eq!(
            sorted(ran.lines()),
            [
                "tail_a | a-0",
                "tail_a | a-1",
                "tail_b | b-0",
                "tail_b | b-1"
            ],
            "{kind:?}"
        );
        // A named channel keeps nothing back: all four were finished.
        for topic in ["tail_a", "tail_b"] {
            drained(broker, topic, "watch").await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigint_and_sigterm_stop_it_gracefully() {
    each_kind(CASES_WITHIN, |kind| async move {
        let Some(broker) = broker(kind, &BrokerOpts::default()).await else {
            return;
        };
        for sig in ["INT", "TERM"] {
            let topic = format!("tail_sig_{sig}");
            let child = command(
                &ours("nsq_tail"),
                &args(&[
                    &format!("--topic={topic}"),
                    &format!("--nsqd-tcp-address={}", broker.tcp_addr()),
                    "--channel=kept",
                ]),
            )
            .spawn()
            .expect("start nsq_tail");
            subscribed(&broker, &topic).await;
            publish(&broker, &topic, &bodies("m", 5)).await;
            drained(&broker, &topic, "kept").await;
            signal(&child, sig);
            let ran = wait(child).await;
            assert_eq!(ran.code(), Some(0), "{kind:?} SIG{sig}: {}", ran.stderr);
            assert_eq!(sorted(ran.lines()), bodies("m", 5), "{kind:?} SIG{sig}");
            let c = channel(&broker, &topic, "kept").await;
            assert_eq!(
                c["client_count"], 0,
                "{kind:?} SIG{sig}: still connected: {c}"
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_and_snappy_options_are_used() {
    let certs = TestCerts::generate();
    let certs = &certs;
    each_kind(CASES_WITHIN, |kind| async move {
        let opts = BrokerOpts {
            tls: Some(BrokerTls::server(certs)),
            ..BrokerOpts::default()
        };
        let Some(broker) = broker(kind, &opts).await else {
            return;
        };
        for (i, tls_opts) in [
            vec![format!(
                "--consumer-opt=tls_root_ca_file,{}",
                certs.ca_cert.display()
            )],
            vec!["--consumer-opt=tls_insecure_skip_verify".to_owned()],
        ]
        .into_iter()
        .enumerate()
        {
            let topic = format!("tail_tls_{i}");
            let mut list = vec![
                format!("--topic={topic}"),
                format!("--nsqd-tcp-address={}", broker.tcp_addr()),
                "--channel=secure".to_owned(),
                "--consumer-opt=tls_v1,true".to_owned(),
                "--consumer-opt=snappy".to_owned(),
                "-n=3".to_owned(),
            ];
            list.extend(tls_opts);
            let child = command(&ours("nsq_tail"), &list)
                .spawn()
                .expect("start nsq_tail");
            subscribed(&broker, &topic).await;
            let c = channel(&broker, &topic, "secure").await;
            let client = &c["clients"][0];
            assert_eq!(client["tls"], true, "{kind:?}: {c}");
            assert_eq!(client["snappy"], true, "{kind:?}: {c}");
            let ua = client["user_agent"].as_str().unwrap_or_default();
            assert!(ua.starts_with("nsq_tail/"), "{kind:?}: {ua}");
            publish_http(&broker, &topic, &bodies("s", 3)).await;
            let ran = wait(child).await;
            assert_eq!(ran.code(), Some(0), "{kind:?}: {}", ran.stderr);
            assert_eq!(sorted(ran.lines()), bodies("s", 3), "{kind:?}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_against_an_untrusted_certificate_fails() {
    let certs = TestCerts::generate();
    let other = TestCerts::generate();
    let (certs, other) = (&certs, &other);
    each_kind(CASES_WITHIN, |kind| async move {
        let opts = BrokerOpts {
            tls: Some(BrokerTls::server(certs)),
            ..BrokerOpts::default()
        };
        let Some(broker) = broker(kind, &opts).await else {
            return;
        };
        let ran = run(
            &ours("nsq_tail"),
            &[
                "--topic=tail_untrusted".to_owned(),
                format!("--nsqd-tcp-address={}", broker.tcp_addr()),
                "--consumer-opt=tls_v1,true".to_owned(),
                format!(
                    "--consumer-opt=tls_root_ca_file,{}",
                    other.ca_cert.display()
                ),
            ],
            b"",
        )
        .await;
        assert_eq!(ran.code(), Some(1), "{kind:?}: {}", ran.stderr);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_nsqd_is_a_failure() {
    let ran = run(
        &ours("nsq_tail"),
        &args(&[
            "--topic=t",
            &format!("--nsqd-tcp-address=127.0.0.1:{}", closed_port()),
        ]),
        b"",
    )
    .await;
    assert_eq!(ran.code(), Some(1), "{}", ran.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_flags_and_options_are_usage_errors() {
    for (list, says) in [
        (
            args(&["--topic=t"]),
            "--nsqd-tcp-address or --lookupd-http-address required",
        ),
        (
            args(&["--nsqd-tcp-address=127.0.0.1:1"]),
            "--topic required",
        ),
        (
            args(&[
                "--topic=t",
                "--nsqd-tcp-address=a:1",
                "--lookupd-http-address=b:2",
            ]),
            "not both",
        ),
        (
            args(&[
                "--topic=t",
                "--nsqd-tcp-address=a:1",
                "--consumer-opt=no_such,1",
            ]),
            "unknown option no_such",
        ),
        (
            args(&[
                "--topic=t",
                "--nsqd-tcp-address=a:1",
                "--consumer-opt=max_attempts,x",
            ]),
            "invalid max_attempts",
        ),
        (
            args(&[
                "--topic=t",
                "--nsqd-tcp-address=a:1",
                "--consumer-opt=snappy",
                "--consumer-opt=deflate",
            ]),
            "deflate and snappy",
        ),
    ] {
        let ran = run(&ours("nsq_tail"), &list, b"").await;
        assert_eq!(ran.code(), Some(2), "{list:?}: {}", ran.stderr);
        assert!(ran.stderr.contains(says), "{list:?}: {}", ran.stderr);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_lite_broker_sees_nsq_tails_identity() {
    // One kind is enough for the IDENTIFY fields; the user agent names the tool.
    let Some(broker) = broker(BrokerKind::Lite, &BrokerOpts::default()).await else {
        return;
    };
    let child = command(
        &ours("nsq_tail"),
        &args(&[
            "--topic=tail_ua",
            &format!("--nsqd-tcp-address={}", broker.tcp_addr()),
            "--channel=ua",
            "--consumer-opt=user_agent,custom/1.0",
            "--consumer-opt=heartbeat_interval,5s",
        ]),
    )
    .spawn()
    .expect("start nsq_tail");
    subscribed(&broker, "tail_ua").await;
    let c = channel(&broker, "tail_ua", "ua").await;
    assert_eq!(c["clients"][0]["user_agent"], "custom/1.0", "{c}");
    signal(&child, "INT");
    assert_eq!(wait(child).await.code(), Some(0));
}
