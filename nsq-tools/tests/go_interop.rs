//! This crate's tools beside nsq 1.3.0's Go tools (`NSQ_GO_TAIL`, `NSQ_GO_TO_NSQ`,
//! `NSQ_GO_TO_FILE`, `NSQ_GO_STAT`, built by scripts/install-peers.sh; skipped without them
//! outside CI), on nsq-server-lite and real nsqd: Go's to_nsq read by our nsq_tail and ours by
//! Go's give the same lines; both nsq_to_file write the same file names with the same lines
//! (plain, gzip in a work dir, rotated by size); both nsq_stat print the same table.

mod common;

use std::path::PathBuf;

use common::*;
use nsq_tests::broker::{each_kind, Broker, BrokerKind, BrokerOpts};
use nsq_tests::peer_or_skip;

/// nsq's Go tool named by `var`, or `None` (skip; under CI a missing one fails).
fn go(var: &str) -> Option<PathBuf> {
    peer_or_skip(var)
}

/// A broker of `kind`, and the Go tools named, or `None` to skip.
async fn setup(kind: BrokerKind, vars: &[&str]) -> Option<(Broker, Vec<PathBuf>)> {
    let tools = vars.iter().map(|v| go(v)).collect::<Option<Vec<_>>>()?;
    Some((broker(kind, &BrokerOpts::default()).await?, tools))
}

/// Runs `tail` (either nsq_tail) on `topic` for `n` lines, publishes `input` with `publisher`
/// (either to_nsq), and returns the lines the tail printed.
async fn tail_of(
    broker: &Broker,
    tail: &std::path::Path,
    publisher: &std::path::Path,
    topic: &str,
    input: &str,
    n: usize,
) -> Vec<String> {
    let child = command(
        tail,
        &[
            format!("-topic={topic}"),
            format!("-nsqd-tcp-address={}", broker.tcp_addr()),
            "-print-topic".to_owned(),
            format!("-n={n}"),
        ],
    )
    .spawn()
    .expect("start nsq_tail");
    subscribed(broker, topic).await;
    let published = run(
        publisher,
        &[
            format!("-topic={topic}"),
            format!("-nsqd-tcp-address={}", broker.tcp_addr()),
        ],
        input.as_bytes(),
    )
    .await;
    assert_eq!(published.code(), Some(0), "to_nsq: {}", published.stderr);
    let tailed = wait(child).await;
    assert_eq!(tailed.code(), Some(0), "nsq_tail: {}", tailed.stderr);
    tailed.lines()
}

#[tokio::test(flavor = "multi_thread")]
async fn to_nsq_and_nsq_tail_agree_with_gos_both_ways() {
    each_kind(CASES_WITHIN, |kind| async move {
        let Some((broker, tools)) = setup(kind, &["NSQ_GO_TAIL", "NSQ_GO_TO_NSQ"]).await else {
            return;
        };
        let (go_tail, go_to_nsq) = (&tools[0], &tools[1]);
        let lines = bodies("interop line with spaces", 200);
        let input = lines.join("\n") + "\n";
        let expected: Vec<String> = lines.iter().map(|l| format!("i_go_pub | {l}")).collect();
        let ours_read = tail_of(
            &broker,
            &ours("nsq_tail"),
            go_to_nsq,
            "i_go_pub",
            &input,
            200,
        )
        .await;
        assert_eq!(
            sorted(ours_read),
            sorted(expected),
            "{kind:?}: Go's to_nsq, our nsq_tail"
        );
        let expected: Vec<String> = lines.iter().map(|l| format!("i_rs_pub | {l}")).collect();
        let go_read = tail_of(&broker, go_tail, &ours("to_nsq"), "i_rs_pub", &input, 200).await;
        assert_eq!(
            sorted(go_read),
            sorted(expected),
            "{kind:?}: our to_nsq, Go's nsq_tail"
        );
    })
    .await;
}

/// Starts one nsq_to_file (either) on `topic`/`channel` into `out`, with `extra` flags and the
/// same naming for both: host `box`, datetime `%Y-%m`.
fn archive(
    broker: &Broker,
    bin: &std::path::Path,
    topic: &str,
    channel: &str,
    out: &TempDir,
    extra: &[String],
) -> tokio::process::Child {
    let mut list = vec![
        format!("-topic={topic}"),
        format!("-channel={channel}"),
        format!("-nsqd-tcp-address={}", broker.tcp_addr()),
        format!("-output-dir={}", out.path().display()),
        "-host-identifier=box".to_owned(),
        "-datetime-format=%Y-%m".to_owned(),
        "-sync-interval=100ms".to_owned(),
    ];
    list.extend_from_slice(extra);
    command(bin, &list).spawn().expect("start nsq_to_file")
}

#[tokio::test(flavor = "multi_thread")]
async fn nsq_to_file_names_and_fills_files_as_gos_does() {
    each_kind(CASES_WITHIN, |kind| async move {
        let Some((broker, tools)) = setup(kind, &["NSQ_GO_TO_FILE"]).await else {
            return;
        };
        let go_to_file = &tools[0];
        for (variant, extra) in [
            ("plain", vec![]),
            ("gzip", vec!["-gzip".to_owned(), "-gzip-level=3".to_owned()]),
            ("size", vec!["-rotate-size=2000".to_owned()]),
        ] {
            let topic = format!("i_file_{variant}");
            let sent: Vec<String> = (0..400)
                .map(|i| format!("{variant}-record-{i:05}"))
                .collect();
            for chan in ["go", "rs"] {
                broker.create_channel(&topic, chan).await.unwrap();
            }
            publish(&broker, &topic, &sent).await;
            let dirs = [TempDir::new("i-go"), TempDir::new("i-rs")];
            let works = [TempDir::new("i-go-work"), TempDir::new("i-rs-work")];
            let mut children = Vec::new();
            for (i, (bin, chan)) in [(go_to_file.clone(), "go"), (ours("nsq_to_file"), "rs")]
                .into_iter()
                .enumerate()
            {
                let mut extra = extra.clone();
                if variant == "gzip" {
                    extra.push(format!("-work-dir={}", works[i].path().display()));
                }
                children.push(archive(&broker, &bin, &topic, chan, &dirs[i], &extra));
            }
            for chan in ["go", "rs"] {
                drained(&broker, &topic, chan).await;
            }
            for child in children {
                signal(&child, "INT");
                let ran = wait(child).await;
                assert_eq!(ran.code(), Some(0), "{kind:?} {variant}: {}", ran.stderr);
            }
            let (go_dir, rs_dir) = (&dirs[0], &dirs[1]);
            assert!(
                !go_dir.files().is_empty(),
                "{kind:?} {variant}: Go wrote nothing"
            );
            assert_eq!(
                rs_dir.files(),
                go_dir.files(),
                "{kind:?} {variant}: file names"
            );
            if variant == "size" {
                assert!(go_dir.files().len() > 2, "{kind:?}: {:?}", go_dir.files());
            }
            for name in go_dir.files() {
                let go_lines = read_lines(&go_dir.path().join(&name));
                let rs_lines = read_lines(&rs_dir.path().join(&name));
                if variant == "size" {
                    // The same split: as many lines per file (the order may differ).
                    assert_eq!(rs_lines.len(), go_lines.len(), "{kind:?} {variant}: {name}");
                } else {
                    assert_eq!(
                        sorted(rs_lines),
                        sorted(go_lines),
                        "{kind:?} {variant}: {name}"
                    );
                }
            }
            assert_eq!(
                sorted(rs_dir.lines()),
                sorted(sent.clone()),
                "{kind:?} {variant}"
            );
            assert_eq!(sorted(go_dir.lines()), sorted(sent), "{kind:?} {variant}");
            for work in &works {
                assert!(
                    work.files().is_empty(),
                    "{kind:?} {variant}: left in the work dir"
                );
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nsq_stat_prints_gos_table() {
    each_kind(CASES_WITHIN, |kind| async move {
        let Some((broker, tools)) = setup(kind, &["NSQ_GO_STAT"]).await else {
            return;
        };
        broker.create_channel("i_stat", "c").await.unwrap();
        publish(&broker, "i_stat", &bodies("s", 9)).await;
        let args = [
            "-topic=i_stat".to_owned(),
            "-channel=c".to_owned(),
            format!("-nsqd-http-address={}", broker.http_addr()),
            "-count=2".to_owned(),
            "-interval=100ms".to_owned(),
        ];
        let go_ran = run(&tools[0], &args, b"").await;
        assert_eq!(go_ran.code(), Some(0), "{kind:?}: {}", go_ran.stderr);
        let ran = run(&ours("nsq_stat"), &args, b"").await;
        assert_eq!(ran.code(), Some(0), "{kind:?}: {}", ran.stderr);
        assert_eq!(ran.stdout, go_ran.stdout, "{kind:?}: the same table");
        assert_eq!(ran.lines().len(), 4, "{kind:?}: {}", ran.stdout);
    })
    .await;
}
