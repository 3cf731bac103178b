//! `nsq_stat` end to end, against nsq-server-lite and real nsqd 1.3.0 (skipped without
//! `NSQD_BIN` outside CI): nsq's table, a channel's counters summed over every nsqd that
//! nsqlookupd lists, `--count`, and its failures.

mod common;

use common::*;
use nsq_tests::broker::{each_kind, BrokerOpts};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

/// The report lines (what follows the two header lines), split into their numbers.
fn rows(stdout: &str) -> Vec<Vec<i64>> {
    stdout
        .lines()
        .filter(|l| !l.starts_with("---") && !l.starts_with("ingress"))
        .map(|l| {
            l.split_whitespace()
                .filter(|w| *w != "|")
                .map(|w| {
                    w.parse()
                        .unwrap_or_else(|_| panic!("a number: {w:?} in {l:?}"))
                })
                .collect()
        })
        .collect()
}

const HEADER: &str = "------rate------+----------------depth----------------+--------------metadata---------------\n\
                      ingress  egress |   total     mem    disk inflt   def |     req     t-o         msgs clients\n";

#[tokio::test(flavor = "multi_thread")]
async fn reports_a_channels_counters_count_times() {
    each_kind(CASES_WITHIN, |kind| async move {
        let Some(broker) = broker(kind, &BrokerOpts::default()).await else {
            return;
        };
        broker.create_channel("stat_t", "c").await.unwrap();
        publish(&broker, "stat_t", &bodies("s", 7)).await;
        let ran = run(
            &ours("nsq_stat"),
            &[
                "-topic=stat_t".to_owned(),
                "-channel=c".to_owned(),
                format!("-nsqd-http-address={}", broker.http_addr()),
                "-count=3".to_owned(),
                "-interval=100ms".to_owned(),
            ],
            b"",
        )
        .await;
        assert_eq!(ran.code(), Some(0), "{kind:?}: {}", ran.stderr);
        assert!(ran.stdout.starts_with(HEADER), "{kind:?}: {}", ran.stdout);
        // Nothing moves: no rates; 7 waiting, all in memory; 7 received; nobody connected.
        let want = vec![0, 0, 7, 7, 0, 0, 0, 0, 0, 7, 0];
        assert_eq!(
            rows(&ran.stdout),
            vec![want.clone(), want.clone(), want],
            "{kind:?}: {}",
            ran.stdout
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sums_every_nsqd_that_lookupd_lists_and_shows_the_rates() {
    each_kind(CASES_WITHIN, |kind| async move {
        let Some((lookupd, brokers)) = cluster(kind, 2).await else {
            return;
        };
        register_topic(&lookupd, &brokers, "stat_sum").await;
        for (broker, n) in brokers.iter().zip([3, 4]) {
            broker.create_channel("stat_sum", "c").await.unwrap();
            publish(broker, "stat_sum", &bodies("s", n)).await;
        }
        let mut cmd = command(
            &ours("nsq_stat"),
            &[
                "--topic=stat_sum".to_owned(),
                "--channel=c".to_owned(),
                format!("--lookupd-http-address={}", lookupd.http_addr()),
                "--count=2".to_owned(),
                "--interval=2s".to_owned(),
            ],
        );
        let mut child = cmd.spawn().expect("start nsq_stat");
        // The header is printed with the first poll: 10 more published after it arrive within
        // the first interval (2 s), a rate of 5/s in and 0 out.
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut head = String::new();
        for _ in 0..2 {
            tokio::time::timeout(WITHIN, stdout.read_line(&mut head))
                .await
                .expect("the header in time")
                .expect("read stdout");
        }
        assert_eq!(head, HEADER, "{kind:?}");
        publish(&brokers[0], "stat_sum", &bodies("more", 10)).await;
        let mut rest = String::new();
        tokio::time::timeout(WITHIN, stdout.read_to_string(&mut rest))
            .await
            .expect("the rows in time")
            .expect("read stdout");
        let ran = wait(child).await;
        assert_eq!(ran.code(), Some(0), "{kind:?}: {}", ran.stderr);
        let rows = rows(&rest);
        assert_eq!(rows.len(), 2, "{kind:?}: {rest}");
        assert_eq!(rows[0][..2], [5, 0], "{kind:?}: {rest}");
        for row in &rows {
            assert_eq!(row[2..], [17, 17, 0, 0, 0, 0, 0, 17, 0], "{kind:?}: {rest}");
        }
        assert_eq!(rows[1][..2], [0, 0], "{kind:?}: {rest}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_channel_fails() {
    each_kind(CASES_WITHIN, |kind| async move {
        let Some(broker) = broker(kind, &BrokerOpts::default()).await else {
            return;
        };
        broker.create_channel("stat_x", "c").await.unwrap();
        let ran = run(
            &ours("nsq_stat"),
            &[
                "--topic=stat_x".to_owned(),
                "--channel=nope".to_owned(),
                format!("--nsqd-http-address={}", broker.http_addr()),
                "--count=1".to_owned(),
            ],
            b"",
        )
        .await;
        assert_eq!(ran.code(), Some(1), "{kind:?}: {}", ran.stderr);
        assert!(
            ran.stderr
                .contains("failed to find channel(nope) in stats metadata for topic(stat_x)"),
            "{kind:?}: {}",
            ran.stderr
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_nsqd_fails() {
    let ran = run(
        &ours("nsq_stat"),
        &[
            "--topic=t".to_owned(),
            "--channel=c".to_owned(),
            format!("--nsqd-http-address=127.0.0.1:{}", closed_port()),
        ],
        b"",
    )
    .await;
    assert_eq!(ran.code(), Some(1), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("failed to get nsqd stats"),
        "{}",
        ran.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_flags_are_usage_errors() {
    for (list, says) in [
        (
            vec!["--topic=t", "--nsqd-http-address=a:1"],
            "--topic and --channel are required",
        ),
        (
            vec!["--topic=t", "--channel=c"],
            "--nsqd-http-address or --lookupd-http-address required",
        ),
        (
            vec![
                "--topic=t",
                "--channel=c",
                "--lookupd-http-address=http://a:1",
            ],
            "should not contain scheme",
        ),
        (
            vec![
                "--topic=t",
                "--channel=c",
                "--nsqd-http-address=a:1",
                "--count=0",
            ],
            "--count should be positive",
        ),
        (
            vec![
                "--topic=t",
                "--channel=c",
                "--nsqd-http-address=a:1",
                "--interval=0",
            ],
            "--interval should be positive",
        ),
    ] {
        let list: Vec<String> = list.iter().map(|s| (*s).to_owned()).collect();
        let ran = run(&ours("nsq_stat"), &list, b"").await;
        assert_eq!(ran.code(), Some(2), "{list:?}: {}", ran.stderr);
        assert!(ran.stderr.contains(says), "{list:?}: {}", ran.stderr);
    }
}
