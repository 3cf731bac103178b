//! `nsq_to_file` end to end, against nsq-server-lite and real nsqd 1.3.0 (skipped without
//! `NSQD_BIN` outside CI): nsq's file names and contents, gzip, the work dir, rotation by size
//! and age, SIGHUP, topics found by pattern, and that nothing is lost when it is stopped (or
//! killed) while messages flow.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use nsq_client::proto::Topic;
use nsq_client::{Producer, ProducerConfig};
use nsq_tests::broker::{each_kind, Broker, BrokerOpts};
use nsq_tests::{consume, eventually};

/// The year, as `--datetime-format=%Y` names it.
fn year() -> String {
    chrono::Local::now().format("%Y").to_string()
}

/// nsq_to_file for `topic` on `broker` into `out`, channel `archive`, host `box`, year-named.
fn to_file(broker: &Broker, topic: &str, out: &TempDir, extra: &[&str]) -> tokio::process::Child {
    let mut list = vec![
        format!("--topic={topic}"),
        format!("--nsqd-tcp-address={}", broker.tcp_addr()),
        "--channel=archive".to_owned(),
        format!("--output-dir={}", out.path().display()),
        "--host-identifier=box".to_owned(),
        "--datetime-format=%Y".to_owned(),
        "--sync-interval=100ms".to_owned(),
    ];
    list.extend(extra.iter().map(|s| (*s).to_owned()));
    command(&ours("nsq_to_file"), &list)
        .spawn()
        .expect("start nsq_to_file")
}

#[tokio::test(flavor = "multi_thread")]
async fn every_message_is_a_line_in_a_file_named_as_nsq_names_it() {
    each_kind(CASES_WITHIN, |kind| async move {
        let Some(broker) = broker(kind, &BrokerOpts::default()).await else {
            return;
        };
        let out = TempDir::new("plain");
        broker
            .create_channel("file_plain", "archive")
            .await
            .unwrap();
        let sent = bodies("plain", 500);
        publish(&broker, "file_plain", &sent).await;
        let child = to_file(&broker, "file_plain", &out, &[]);
        drained(&broker, "file_plain", "archive").await;
        // Finished means written and synced: the file holds them all before any stop.
        assert_eq!(
            out.files(),
            [format!("file_plain.box.{}.log", year())],
            "{kind:?}"
        );
        assert_eq!(sorted(out.lines()), sorted(sent.clone()), "{kind:?}");
        signal(&child, "INT");
        let ran = wait(child).await;
        assert_eq!(ran.code(), Some(0), "{kind:?}: {}", ran.stderr);
        assert_eq!(sorted(out.lines()), sorted(sent), "{kind:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gzip_in_a_work_dir_moves_to_the_output_dir_on_stop() {
    each_kind(CASES_WITHIN, |kind| async move {
        let Some(broker) = broker(kind, &BrokerOpts::default()).await else {
            return;
        };
        let (out, work) = (TempDir::new("gz-out"), TempDir::new("gz-work"));
        broker.create_channel("file_gz", "archive").await.unwrap();
        let sent = bodies("gz", 400);
        publish(&broker, "file_gz", &sent).await;
        let work_dir = format!("--work-dir={}", work.path().display());
        let child = to_file(
            &broker,
            "file_gz",
            &out,
            &["--gzip", "--gzip-level=9", &work_dir],
        );
        drained(&broker, "file_gz", "archive").await;
        let name = format!("file_gz.box-000000.{}.log.gz", year());
        assert_eq!(work.files(), std::slice::from_ref(&name), "{kind:?}");
        assert!(out.files().is_empty(), "{kind:?}: moved before the stop");
        // Each sync ends a gzip member, so what was finished is readable already.
        assert_eq!(sorted(work.lines()), sorted(sent.clone()), "{kind:?}");
        signal(&child, "TERM");
        let ran = wait(child).await;
        assert_eq!(ran.code(), Some(0), "{kind:?}: {}", ran.stderr);
        assert!(work.files().is_empty(), "{kind:?}: {:?}", work.files());
        assert_eq!(out.files(), [name], "{kind:?}");
        assert_eq!(sorted(out.lines()), sorted(sent), "{kind:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rotate_size_numbers_the_files() {
    each_kind(CASES_WITHIN, |kind| async move {
        let Some(broker) = broker(kind, &BrokerOpts::default()).await else {
            return;
        };
        let out = TempDir::new("size");
        broker.create_channel("file_size", "archive").await.unwrap();
        // 20 bytes a line: a file passes 1000 bytes at its 51st line, and rotates then.
        let sent: Vec<String> = (0..300).map(|i| format!("size-message-{i:06}")).collect();
        publish(&broker, "file_size", &sent).await;
        let child = to_file(&broker, "file_size", &out, &["--rotate-size=1000"]);
        drained(&broker, "file_size", "archive").await;
        signal(&child, "INT");
        let ran = wait(child).await;
        assert_eq!(ran.code(), Some(0), "{kind:?}: {}", ran.stderr);
        let files = out.files();
        let expected: Vec<String> = (0..files.len())
            .map(|rev| format!("file_size.box-{rev:06}.{}.log", year()))
            .collect();
        assert_eq!(files, expected, "{kind:?}");
        assert_eq!(files.len(), 6, "{kind:?}: 300 lines of 20 bytes, 51 a file");
        for name in &files[..files.len() - 1] {
            let size = std::fs::metadata(out.path().join(name)).unwrap().len();
            assert_eq!(size, 1020, "{kind:?}: {name}");
        }
        assert_eq!(sorted(out.lines()), sorted(sent), "{kind:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rotate_interval_opens_a_new_file_as_time_passes() {
    each_kind(CASES_WITHIN, |kind| async move {
        let Some(broker) = broker(kind, &BrokerOpts::default()).await else {
            return;
        };
        let out = TempDir::new("interval");
        broker.create_channel("file_age", "archive").await.unwrap();
        let first = bodies("early", 20);
        publish(&broker, "file_age", &first).await;
        let child = to_file(&broker, "file_age", &out, &["--rotate-interval=300ms"]);
        drained(&broker, "file_age", "archive").await;
        // At a sync tick past the interval, the next file is opened (nsq's does so too).
        eventually("a second file", WITHIN, || async {
            let files = out.files();
            if files.len() >= 2 {
                Ok(())
            } else {
                Err(format!("{files:?}"))
            }
        })
        .await;
        let second = bodies("late", 20);
        publish(&broker, "file_age", &second).await;
        drained(&broker, "file_age", "archive").await;
        signal(&child, "INT");
        assert_eq!(wait(child).await.code(), Some(0), "{kind:?}");
        let files = out.files();
        assert!(
            files[0].ends_with(&format!("-000000.{}.log", year())),
            "{kind:?}: {files:?}"
        );
        assert!(
            files[1].ends_with(&format!("-000001.{}.log", year())),
            "{kind:?}: {files:?}"
        );
        // The first file was rotated away before the late ones were published.
        let first_file = read_lines(&out.path().join(&files[0]));
        assert!(
            first_file.iter().all(|l| l.starts_with("early")),
            "{kind:?}: {first_file:?}"
        );
        let all: Vec<String> = first.into_iter().chain(second).collect();
        assert_eq!(sorted(out.lines()), sorted(all), "{kind:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_closes_the_file_and_the_next_message_opens_another() {
    each_kind(CASES_WITHIN, |kind| async move {
        let Some(broker) = broker(kind, &BrokerOpts::default()).await else {
            return;
        };
        let (out, work) = (TempDir::new("hup-out"), TempDir::new("hup-work"));
        broker.create_channel("file_hup", "archive").await.unwrap();
        let work_dir = format!("--work-dir={}", work.path().display());
        let child = to_file(&broker, "file_hup", &out, &[&work_dir]);
        subscribed(&broker, "file_hup").await;
        publish(&broker, "file_hup", &bodies("before", 10)).await;
        drained(&broker, "file_hup", "archive").await;
        signal(&child, "HUP");
        // Closed files move to the output dir.
        eventually("the first file moved", WITHIN, || async {
            if out.files().len() == 1 {
                Ok(())
            } else {
                Err(format!("{:?}", out.files()))
            }
        })
        .await;
        publish(&broker, "file_hup", &bodies("after", 10)).await;
        drained(&broker, "file_hup", "archive").await;
        signal(&child, "INT");
        assert_eq!(wait(child).await.code(), Some(0), "{kind:?}");
        let files = out.files();
        assert_eq!(files.len(), 2, "{kind:?}: {files:?}");
        assert_eq!(
            sorted(read_lines(&out.path().join(&files[0]))),
            sorted(bodies("before", 10))
        );
        assert_eq!(
            sorted(read_lines(&out.path().join(&files[1]))),
            sorted(bodies("after", 10))
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn topic_pattern_writes_the_matching_topics_found_through_lookupd() {
    each_kind(CASES_WITHIN, |kind| async move {
        let Some((lookupd, brokers)) = cluster(kind, 1).await else {
            return;
        };
        let broker = &brokers[0];
        for topic in ["pat_a", "pat_b", "other"] {
            register_topic(&lookupd, &brokers, topic).await;
        }
        let out = TempDir::new("pattern");
        let child = command(
            &ours("nsq_to_file"),
            &[
                "--topic-pattern=^pat_".to_owned(),
                format!("--lookupd-http-address={}", lookupd.http_addr()),
                format!("--output-dir={}", out.path().display()),
                "--host-identifier=box".to_owned(),
                "--datetime-format=%Y".to_owned(),
                "--sync-interval=100ms".to_owned(),
            ],
        )
        .spawn()
        .expect("start nsq_to_file");
        for topic in ["pat_a", "pat_b"] {
            subscribed(broker, topic).await;
            publish(broker, topic, &bodies(topic, 5)).await;
        }
        publish(broker, "other", &bodies("other", 5)).await;
        for topic in ["pat_a", "pat_b"] {
            drained(broker, topic, "nsq_to_file").await;
        }
        signal(&child, "INT");
        assert_eq!(wait(child).await.code(), Some(0), "{kind:?}");
        let y = year();
        assert_eq!(
            out.files(),
            [format!("pat_a.box.{y}.log"), format!("pat_b.box.{y}.log")],
            "{kind:?}"
        );
        let other = broker.topic_stats("other").await.unwrap();
        assert!(
            other["channels"].as_array().is_none_or(Vec::is_empty),
            "{kind:?}: {other}"
        );
    })
    .await;
}

/// Publishes batches to `topic` until told to stop; counts what nsqd acknowledged.
struct Publisher {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Publisher {
    fn start(broker: &Broker, topic: &str, cap: usize) -> Self {
        let producer =
            Producer::new(broker.tcp_addr().to_string(), ProducerConfig::default()).unwrap();
        let topic = Topic::new(topic).unwrap();
        let (stop, acked) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
        );
        let (s, a) = (stop.clone(), acked.clone());
        let task = tokio::spawn(async move {
            let mut next = 0;
            while !s.load(Ordering::Relaxed) && next < cap {
                let batch: Vec<Bytes> = (next..next + 100)
                    .map(|i| Bytes::from(format!("flow-{i}")))
                    .collect();
                producer
                    .multi_publish(&topic, batch)
                    .await
                    .expect("publish");
                next += 100;
                a.store(next, Ordering::Relaxed);
            }
            producer.stop().await;
        });
        Self { stop, acked, task }
    }

    /// Stops and returns every body acknowledged.
    async fn finish(self) -> HashSet<String> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        (0..self.acked.load(Ordering::Relaxed))
            .map(|i| format!("flow-{i}"))
            .collect()
    }
}

/// The complete lines of the files in `dir` (a line cut by a kill has no newline yet).
fn complete_lines(dir: &TempDir) -> Vec<String> {
    let mut lines = Vec::new();
    for name in dir.files() {
        let raw = std::fs::read_to_string(dir.path().join(name)).unwrap();
        let complete = &raw[..raw.rfind('\n').map_or(0, |i| i + 1)];
        lines.extend(complete.lines().map(str::to_owned));
    }
    lines
}

/// What the channel still holds, once nothing is in flight and the topic handed it all its
/// messages: their bodies.
async fn remaining(broker: &Broker, topic: &str) -> Vec<String> {
    let depth = eventually("nothing in flight or in the topic", WITHIN, || async {
        let t = broker.topic_stats(topic).await?;
        let c = broker.channel_stats(topic, "archive").await?;
        match (
            t["depth"].as_i64(),
            c["in_flight_count"].as_i64(),
            c["deferred_count"].as_i64(),
            c["depth"].as_i64(),
        ) {
            (Some(0), Some(0), Some(0), Some(depth)) => Ok(depth),
            _ => Err(format!("topic {t}, channel {c}")),
        }
    })
    .await;
    let bodies = consume::take(
        broker.tcp_addr(),
        topic,
        "archive",
        depth as usize,
        2500,
        WITHIN,
    )
    .await
    .unwrap();
    bodies
        .iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_is_lost_when_stopped_while_messages_flow() {
    each_kind(CASES_WITHIN, |kind| async move {
        let Some(broker) = broker(kind, &BrokerOpts::default()).await else {
            return;
        };
        let out = TempDir::new("flow-int");
        broker.create_channel("file_flow", "archive").await.unwrap();
        let publisher = Publisher::start(&broker, "file_flow", 40_000);
        let child = to_file(&broker, "file_flow", &out, &["--max-in-flight=50"]);
        eventually("some lines written", WITHIN, || async {
            let n = complete_lines(&out).len();
            if n >= 1000 {
                Ok(())
            } else {
                Err(format!("{n} lines"))
            }
        })
        .await;
        signal(&child, "INT");
        let ran = wait(child).await;
        let published = publisher.finish().await;
        assert_eq!(ran.code(), Some(0), "{kind:?}: {}", ran.stderr);
        let written = out.lines();
        let unique: HashSet<String> = written.iter().cloned().collect();
        assert_eq!(
            unique.len(),
            written.len(),
            "{kind:?}: a message written twice"
        );
        assert!(
            unique.is_subset(&published),
            "{kind:?}: a line that was never published"
        );
        let left = remaining(&broker, "file_flow").await;
        assert_eq!(
            written.len() + left.len(),
            published.len(),
            "{kind:?}: lost or duplicated"
        );
        let all: HashSet<String> = unique.into_iter().chain(left).collect();
        assert_eq!(
            all, published,
            "{kind:?}: a message is neither in a file nor in nsqd"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_finished_is_lost_when_killed_while_messages_flow() {
    each_kind(CASES_WITHIN, |kind| async move {
        // In-flight messages of the killed consumer come back after a second.
        let opts = BrokerOpts {
            msg_timeout: Some(Duration::from_secs(1)),
            ..BrokerOpts::default()
        };
        let Some(broker) = broker(kind, &opts).await else {
            return;
        };
        let out = TempDir::new("flow-kill");
        broker.create_channel("file_kill", "archive").await.unwrap();
        let publisher = Publisher::start(&broker, "file_kill", 40_000);
        let child = to_file(&broker, "file_kill", &out, &["--max-in-flight=50"]);
        eventually("some lines written", WITHIN, || async {
            let n = complete_lines(&out).len();
            if n >= 1000 {
                Ok(())
            } else {
                Err(format!("{n} lines"))
            }
        })
        .await;
        signal(&child, "KILL");
        let _ = wait(child).await;
        let published = publisher.finish().await;
        // A message finished before it was written would be in neither place.
        let written: HashSet<String> = complete_lines(&out).into_iter().collect();
        assert!(
            written.is_subset(&published),
            "{kind:?}: a line that was never published"
        );
        let left = remaining(&broker, "file_kill").await;
        let all: HashSet<String> = written.into_iter().chain(left).collect();
        let lost: Vec<&String> = published.difference(&all).take(5).collect();
        assert!(lost.is_empty(), "{kind:?}: lost, e.g. {lost:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_flags_are_usage_errors() {
    let common = ["--nsqd-tcp-address=127.0.0.1:1"];
    for (extra, says) in [
        (
            vec!["--topic=t", "--gzip", "--filename-format=<TOPIC>.log"],
            "missing <REV>",
        ),
        (vec!["--topic=t", "--gzip-level=10"], "should be 1-9"),
        (vec![], "--topic or --topic-pattern required"),
        (
            vec!["--topic-pattern=x"],
            "--lookupd-http-address must be specified",
        ),
        (vec!["--topic=t", "--channel="], "--channel is required"),
        (
            vec!["--topic=t", "--log-level=loud"],
            "--log-level is invalid",
        ),
        (vec!["--topic=t", "--sync-interval=5"], "missing unit"),
        (
            vec!["--topic=t", "--consumer-opt=max_in_flight"],
            "invalid max_in_flight",
        ),
    ] {
        let list: Vec<String> = common
            .iter()
            .chain(&extra)
            .map(|s| (*s).to_owned())
            .collect();
        let ran = run(&ours("nsq_to_file"), &list, b"").await;
        assert_eq!(ran.code(), Some(2), "{extra:?}: {}", ran.stderr);
        assert!(ran.stderr.contains(says), "{extra:?}: {}", ran.stderr);
    }
}
