//! `to_nsq` end to end, against nsq-server-lite and real nsqd 1.3.0 (skipped without
//! `NSQD_BIN` outside CI): every line acknowledged before it exits, `--delimiter`, several
//! nsqd each getting every line, `--rate`, and a non-zero exit on any failure.

mod common;

use std::time::Instant;

use common::*;
use nsq_tests::broker::{each_kind, BrokerOpts};
use nsq_tests::consume;

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_line_is_published_and_acknowledged() {
    each_kind(CASES_WITHIN, |kind| async move {
        let Some(broker) = broker(kind, &BrokerOpts::default()).await else {
            return;
        };
        broker.create_channel("lines", "c").await.unwrap();
        let sent = bodies("line", 5000);
        let input = sent.join("\n") + "\n";
        let ran = run(
            &ours("to_nsq"),
            &args(&[
                "-topic=lines",
                &format!("-nsqd-tcp-address={}", broker.tcp_addr()),
            ]),
            input.as_bytes(),
        )
        .await;
        assert_eq!(ran.code(), Some(0), "{kind:?}: {}", ran.stderr);
        // Acknowledged means taken: nsqd counts every one as soon as to_nsq is gone.
        let c = channel(&broker, "lines", "c").await;
        assert_eq!(c["message_count"], 5000, "{kind:?}: {c}");
        assert!(
            ran.stderr.contains("5000 of 5000 publishes acknowledged"),
            "{kind:?}: {}",
            ran.stderr
        );
        // Not a terminal: the progress goes to stderr as plain lines, the summary last.
        assert!(
            ran.stderr.contains("to_nsq: 5000 published in "),
            "{kind:?}: {}",
            ran.stderr
        );
        assert!(
            !ran.stderr.contains('\r'),
            "{kind:?}: a live line on a pipe"
        );
        let got = consume::take(broker.tcp_addr(), "lines", "c", 5000, 1000, WITHIN)
            .await
            .unwrap();
        let got: Vec<String> = got
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect();
        assert_eq!(sorted(got), sorted(sent), "{kind:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_delimiter_splits_and_empty_lines_are_skipped() {
    each_kind(CASES_WITHIN, |kind| async move {
        let Some(broker) = broker(kind, &BrokerOpts::default()).await else {
            return;
        };
        broker.create_channel("delim", "c").await.unwrap();
        let ran = run(
            &ours("to_nsq"),
            &args(&[
                "--topic=delim",
                "--delimiter=,",
                &format!("--nsqd-tcp-address={}", broker.tcp_addr()),
            ]),
            b"one,two,,three\nstill three,last",
        )
        .await;
        assert_eq!(ran.code(), Some(0), "{kind:?}: {}", ran.stderr);
        let got = consume::take(broker.tcp_addr(), "delim", "c", 4, 10, WITHIN)
            .await
            .unwrap();
        let got: Vec<String> = got
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect();
        // In order, over one connection; the last one without a delimiter is kept whole.
        assert_eq!(
            got,
            ["one", "two", "three\nstill three", "last"],
            "{kind:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_nsqd_given_gets_every_line() {
    each_kind(CASES_WITHIN, |kind| async move {
        let Some(a) = broker(kind, &BrokerOpts::default()).await else {
            return;
        };
        let Some(b) = broker(kind, &BrokerOpts::default()).await else {
            return;
        };
        for broker in [&a, &b] {
            broker.create_channel("fanout", "c").await.unwrap();
        }
        let input = bodies("x", 300).join("\n");
        let ran = run(
            &ours("to_nsq"),
            &args(&[
                "--topic=fanout",
                &format!("--nsqd-tcp-address={}", a.tcp_addr()),
                &format!("--nsqd-tcp-address={}", b.tcp_addr()),
            ]),
            input.as_bytes(),
        )
        .await;
        assert_eq!(ran.code(), Some(0), "{kind:?}: {}", ran.stderr);
        for broker in [&a, &b] {
            let c = channel(broker, "fanout", "c").await;
            assert_eq!(c["message_count"], 300, "{kind:?}: {c}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rate_is_held() {
    each_kind(CASES_WITHIN, |kind| async move {
        let Some(broker) = broker(kind, &BrokerOpts::default()).await else {
            return;
        };
        broker.create_channel("slow", "c").await.unwrap();
        let input = bodies("r", 21).join("\n");
        let started = Instant::now();
        let ran = run(
            &ours("to_nsq"),
            &args(&[
                "--topic=slow",
                "--rate=20",
                &format!("--nsqd-tcp-address={}", broker.tcp_addr()),
            ]),
            input.as_bytes(),
        )
        .await;
        let took = started.elapsed();
        assert_eq!(ran.code(), Some(0), "{kind:?}: {}", ran.stderr);
        // One at once, then one every 50 ms: 20 × 50 ms.
        assert!(
            took.as_millis() >= 950,
            "{kind:?}: 21 lines at 20/s took {took:?}"
        );
        let c = channel(&broker, "slow", "c").await;
        assert_eq!(c["message_count"], 21, "{kind:?}: {c}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_nsqd_is_a_failure() {
    let input = bodies("u", 10).join("\n");
    let ran = run(
        &ours("to_nsq"),
        &args(&[
            "--topic=t",
            &format!("--nsqd-tcp-address=127.0.0.1:{}", closed_port()),
        ]),
        input.as_bytes(),
    )
    .await;
    assert_eq!(ran.code(), Some(1), "{}", ran.stderr);
    assert!(ran.stderr.contains("publishes failed"), "{}", ran.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_unreachable_nsqd_of_two_is_a_failure() {
    each_kind(CASES_WITHIN, |kind| async move {
        let Some(good) = broker(kind, &BrokerOpts::default()).await else {
            return;
        };
        let ran = run(
            &ours("to_nsq"),
            &args(&[
                "--topic=half",
                &format!("--nsqd-tcp-address={}", good.tcp_addr()),
                &format!("--nsqd-tcp-address=127.0.0.1:{}", closed_port()),
            ]),
            b"a\nb\n",
        )
        .await;
        assert_eq!(ran.code(), Some(1), "{kind:?}: {}", ran.stderr);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_nsqd_refuses_fails_the_run() {
    each_kind(CASES_WITHIN, |kind| async move {
        let opts = BrokerOpts {
            max_msg_size: Some(100),
            ..BrokerOpts::default()
        };
        let Some(broker) = broker(kind, &opts).await else {
            return;
        };
        broker.create_channel("big", "c").await.unwrap();
        let input = format!("small\n{}\nsmall too\n", "x".repeat(500));
        let ran = run(
            &ours("to_nsq"),
            &args(&[
                "--topic=big",
                &format!("--nsqd-tcp-address={}", broker.tcp_addr()),
            ]),
            input.as_bytes(),
        )
        .await;
        assert_eq!(ran.code(), Some(1), "{kind:?}: {}", ran.stderr);
        assert!(
            ran.stderr.contains("E_BAD_MESSAGE"),
            "{kind:?}: {}",
            ran.stderr
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_flags_and_options_are_usage_errors() {
    for (list, says) in [
        (args(&["--nsqd-tcp-address=a:1"]), "--topic required"),
        (args(&["--topic=t"]), "--nsqd-tcp-address required"),
        (
            args(&["--topic=t", "--nsqd-tcp-address=a:1", "--delimiter=ab"]),
            "single byte",
        ),
        (
            args(&["--topic=t", "--nsqd-tcp-address=a:1", "--producer-opt=nope"]),
            "unknown option nope",
        ),
        (
            args(&["--topic=bad topic", "--nsqd-tcp-address=a:1"]),
            "topic",
        ),
    ] {
        let ran = run(&ours("to_nsq"), &list, b"").await;
        assert_eq!(ran.code(), Some(2), "{list:?}: {}", ran.stderr);
        assert!(ran.stderr.contains(says), "{list:?}: {}", ran.stderr);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_secret_over_tls_or_explicitly_over_plain_tcp() {
    const SECRET: &str = "open-sesame";
    let certs = nsq_tests::tls::TestCerts::generate();
    let certs = &certs;
    each_kind(CASES_WITHIN, |kind| async move {
        if !kind.available() {
            return;
        }
        let grant = serde_json::json!({
            "ttl": 3600, "identity": "tools", "identity_url": "",
            "authorizations": [{"topic": ".*", "channels": [".*"], "permissions": ["subscribe", "publish"]}],
        });
        let service = nsq_tests::auth::serve(SECRET, grant).await;
        let auth = Some(service.addr.to_string());
        let plain = BrokerOpts { auth_http_address: auth.clone(), ..BrokerOpts::default() };
        let tls = BrokerOpts {
            auth_http_address: auth,
            tls: Some(nsq_tests::broker::BrokerTls::server(certs)),
            ..BrokerOpts::default()
        };
        let secret = format!("--producer-opt=auth_secret,{SECRET}");
        let ca = format!("--producer-opt=tls_root_ca_file,{}", certs.ca_cert.display());
        for (opts, extra, code) in [
            // nsq-client sends no secret over plain TCP unless told to.
            (&plain, vec![secret.clone()], 1),
            (&plain, vec![secret.clone(), "--producer-opt=allow_plaintext_auth".into()], 0),
            (&tls, vec![secret.clone(), "--producer-opt=tls_v1,true".into(), ca.clone()], 0),
        ] {
            let Some(broker) = broker(kind, opts).await else { return };
            let mut list = vec![
                "--topic=authed".to_owned(),
                format!("--nsqd-tcp-address={}", broker.tcp_addr()),
            ];
            list.extend(extra.iter().cloned());
            let ran = run(&ours("to_nsq"), &list, b"one\ntwo\n").await;
            assert_eq!(ran.code(), Some(code), "{kind:?} {extra:?}: {}", ran.stderr);
            if code == 1 {
                assert!(ran.stderr.contains("the secret is not sent without TLS"), "{}", ran.stderr);
            } else {
                let t = broker.topic_stats("authed").await.unwrap();
                assert_eq!(t["message_count"], 2, "{kind:?} {extra:?}: {t}");
            }
        }
    })
    .await;
}
