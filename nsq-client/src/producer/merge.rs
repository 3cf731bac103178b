//! Encoding a batch of requests for one write, merging neighbouring publishes to one topic
//! into one MPUB (see [`ProducerConfig::merge_publishes`](crate::ProducerConfig::merge_publishes)).
//! No IO: requests in, bytes and the entries that wait for nsqd's answers out.

use bytes::{Bytes, BytesMut};
use nsq_proto::{ClientCodec, Command, Topic};
use tokio_util::codec::Encoder;

use super::answers::Pending;
use super::Request;
use std::sync::Arc;

use crate::error::{InvalidPublish, PublishErrorKind};

/// Encodes `batch` into `buf`, in order, skipping requests whose callers are gone. With
/// `merge` set, neighbouring PUBs to one topic whose MPUB body stays within `merge` bytes
/// go out as one MPUB. Each written command is appended to `staged` for its answer; a NOP
/// (a ping) has none, so it goes to `pings`, to be answered once written. A request that
/// cannot be encoded is answered at once.
pub(super) fn encode_batch(
    batch: &mut Vec<Request>,
    merge: Option<usize>,
    buf: &mut BytesMut,
    staged: &mut Vec<Pending>,
    pings: &mut Vec<Request>,
) {
    let mut run = Run::default();
    for request in batch.drain(..) {
        if request.respond.is_closed() {
            // The caller timed out or dropped the publish before it was written.
            continue;
        }
        if let (Some(limit), Command::Pub { topic, body }) = (merge, &request.cmd) {
            if !run.admits(topic, body, limit) {
                run.stage(buf, staged);
            }
            if run.admits(topic, body, limit) {
                run.push(request);
                continue;
            }
            // Too large to share an MPUB: it goes alone.
        } else {
            // Anything else keeps its place after the publishes before it.
            run.stage(buf, staged);
        }
        stage_one(request, buf, staged, pings);
    }
    run.stage(buf, staged);
}

/// Consecutive publishes to one topic, to be sent as one MPUB.
#[derive(Default)]
struct Run {
    requests: Vec<Request>,
    /// The MPUB body they make: the count, then each body with its length.
    body_bytes: usize,
}

impl Run {
    /// Whether a PUB of `body` to `topic` can join without the MPUB body outgrowing `limit`.
    fn admits(&self, topic: &Topic, body: &Bytes, limit: usize) -> bool {
        let joins_topic = match self.requests.first() {
            Some(Request {
                cmd: Command::Pub { topic: first, .. },
                ..
            }) => first == topic,
            Some(_) => false,
            None => true,
        };
        joins_topic && self.body_bytes.max(4) + 4 + body.len() <= limit
    }

    fn push(&mut self, request: Request) {
        if let Command::Pub { body, .. } = &request.cmd {
            self.body_bytes = self.body_bytes.max(4) + 4 + body.len();
        }
        self.requests.push(request);
    }

    /// Encodes what was gathered (one PUB alone, several as MPUB) and stages it.
    fn stage(&mut self, buf: &mut BytesMut, staged: &mut Vec<Pending>) {
        self.body_bytes = 0;
        match self.requests.len() {
            0 => {}
            1 => {
                if let Some(request) = self.requests.pop() {
                    stage_one(request, buf, staged, &mut Vec::new());
                }
            }
            _ => {
                let Some(Request {
                    cmd: Command::Pub { topic, .. },
                    ..
                }) = self.requests.first()
                else {
                    return;
                };
                let bodies = self.requests.iter().map(|r| match &r.cmd {
                    Command::Pub { body, .. } => &body[..],
                    // Only PUBs join a run; an empty body would fail the encoding.
                    _ => &[][..],
                });
                match Command::encode_mpub(topic, bodies, buf) {
                    Ok(()) => staged.push(Pending::Merged(std::mem::take(&mut self.requests))),
                    Err(e) => {
                        let e = Arc::new(e);
                        for request in self.requests.drain(..) {
                            request
                                .fail(PublishErrorKind::Invalid(InvalidPublish::Encode(e.clone())));
                        }
                    }
                }
            }
        }
    }
}

/// Encodes one request and stages it for its answer, or (a NOP) puts it in `pings`.
fn stage_one(
    request: Request,
    buf: &mut BytesMut,
    staged: &mut Vec<Pending>,
    pings: &mut Vec<Request>,
) {
    if let Err(e) = ClientCodec::new().encode(&request.cmd, buf) {
        request.fail(PublishErrorKind::Invalid(InvalidPublish::Encode(Arc::new(
            e,
        ))));
    } else if matches!(request.cmd, Command::Nop) {
        pings.push(request);
    } else {
        staged.push(Pending::One(request));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use nsq_proto::ServerCodec;
    use tokio::sync::oneshot;
    use tokio_util::codec::Decoder;

    use super::*;
    use crate::producer::Answer;

    fn topic(name: &str) -> Topic {
        Topic::new(name).unwrap()
    }

    fn pub_(t: &str, body: &str) -> Command {
        Command::Pub {
            topic: topic(t),
            body: Bytes::copy_from_slice(body.as_bytes()),
        }
    }

    fn mpub(t: &str, bodies: &[&str]) -> Command {
        Command::Mpub {
            topic: topic(t),
            bodies: bodies
                .iter()
                .map(|b| Bytes::copy_from_slice(b.as_bytes()))
                .collect(),
        }
    }

    /// What one encoded batch amounts to.
    #[derive(Debug, PartialEq)]
    struct Encoded {
        /// The commands on the wire, as nsqd reads them.
        wire: Vec<Command>,
        /// Per staged entry, how many requests its answer answers.
        staged: Vec<usize>,
        pings: usize,
    }

    /// Encodes `cmds` as one batch; the answer receivers are kept alive (callers waiting),
    /// except for the requests whose index is in `gone`.
    fn encode(cmds: Vec<Command>, merge: Option<usize>, gone: &[usize]) -> Encoded {
        let mut receivers: Vec<oneshot::Receiver<Answer>> = Vec::new();
        let mut batch: Vec<Request> = cmds
            .into_iter()
            .enumerate()
            .map(|(i, cmd)| {
                let (respond, rx) = oneshot::channel();
                if !gone.contains(&i) {
                    receivers.push(rx);
                }
                Request { cmd, respond }
            })
            .collect();
        let (mut buf, mut staged, mut pings) = (BytesMut::new(), Vec::new(), Vec::new());
        encode_batch(&mut batch, merge, &mut buf, &mut staged, &mut pings);
        assert!(batch.is_empty(), "the batch is drained");
        let mut wire = Vec::new();
        let mut codec = ServerCodec::new();
        while let Some(cmd) = codec.decode(&mut buf).unwrap() {
            wire.push(cmd);
        }
        assert!(buf.is_empty(), "whole commands only");
        let staged = staged
            .iter()
            .map(|p| match p {
                Pending::One(_) => 1,
                Pending::Merged(requests) => requests.len(),
            })
            .collect();
        Encoded {
            wire,
            staged,
            pings: pings.len(),
        }
    }

    const ON: Option<usize> = Some(64 * 1024);

    #[test]
    fn a_lone_pub_stays_a_pub() {
        let got = encode(vec![pub_("t", "a")], ON, &[]);
        assert_eq!(got.wire, vec![pub_("t", "a")]);
        assert_eq!(got.staged, vec![1]);
    }

    #[test]
    fn neighbouring_pubs_to_one_topic_become_one_mpub_per_run() {
        let cmds = vec![
            pub_("t", "a"),
            pub_("t", "b"),
            pub_("t", "c"),
            pub_("u", "x"),
            pub_("t", "d"),
            pub_("t", "e"),
        ];
        let got = encode(cmds, ON, &[]);
        assert_eq!(
            got.wire,
            vec![
                mpub("t", &["a", "b", "c"]),
                pub_("u", "x"),
                mpub("t", &["d", "e"])
            ]
        );
        assert_eq!(got.staged, vec![3, 1, 2]);
    }

    #[test]
    fn a_non_pub_breaks_a_run_and_keeps_its_place() {
        let dpub = Command::Dpub {
            topic: topic("t"),
            delay: Duration::from_secs(1),
            body: Bytes::from_static(b"d"),
        };
        let cmds = vec![
            pub_("t", "a"),
            pub_("t", "b"),
            dpub.clone(),
            pub_("t", "c"),
            mpub("t", &["m1", "m2"]),
            pub_("t", "e"),
        ];
        let got = encode(cmds, ON, &[]);
        assert_eq!(
            got.wire,
            vec![
                mpub("t", &["a", "b"]),
                dpub,
                pub_("t", "c"),
                mpub("t", &["m1", "m2"]),
                pub_("t", "e"),
            ]
        );
        // A caller's own MPUB is answered as one request, not merged with its neighbours.
        assert_eq!(got.staged, vec![2, 1, 1, 1, 1]);
    }

    #[test]
    fn the_bound_splits_runs_and_a_larger_body_goes_alone() {
        // MPUB body: 4 (count) + per message 4 (size) + its bytes. Three 10-byte bodies
        // make 46, a fourth would make 60 > 50.
        let ten = "0123456789";
        let big = "x".repeat(60);
        let cmds = vec![
            pub_("t", ten),
            pub_("t", ten),
            pub_("t", ten),
            pub_("t", ten),
            pub_("t", &big),
            pub_("t", ten),
        ];
        let got = encode(cmds, Some(50), &[]);
        assert_eq!(
            got.wire,
            vec![
                mpub("t", &[ten, ten, ten]),
                pub_("t", ten),
                pub_("t", &big),
                pub_("t", ten),
            ]
        );
        assert_eq!(got.staged, vec![3, 1, 1, 1]);
        // Exactly at the bound still merges.
        let got = encode(vec![pub_("t", ten); 3], Some(46), &[]);
        assert_eq!(got.wire, vec![mpub("t", &[ten, ten, ten])]);
    }

    #[test]
    fn with_merging_off_every_pub_goes_alone() {
        let got = encode(vec![pub_("t", "a"), pub_("t", "b")], None, &[]);
        assert_eq!(got.wire, vec![pub_("t", "a"), pub_("t", "b")]);
        assert_eq!(got.staged, vec![1, 1]);
    }

    #[test]
    fn requests_whose_callers_are_gone_are_not_written() {
        let cmds = vec![pub_("t", "a"), pub_("t", "gone"), pub_("t", "c")];
        let got = encode(cmds, ON, &[1]);
        assert_eq!(got.wire, vec![mpub("t", &["a", "c"])]);
        assert_eq!(got.staged, vec![2]);
    }

    #[test]
    fn a_ping_is_written_but_waits_for_no_answer() {
        let got = encode(vec![pub_("t", "a"), Command::Nop, pub_("t", "b")], ON, &[]);
        assert_eq!(got.wire, vec![pub_("t", "a"), Command::Nop, pub_("t", "b")]);
        assert_eq!(got.staged, vec![1, 1]);
        assert_eq!(got.pings, 1);
    }
}
