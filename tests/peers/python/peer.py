"""pynsq 0.9.1 peer for the interop tests (tests/tests/interop_clients.rs).

Same command line and report as tests/peers/go/cmd/nsq-peer (see its header):

    peer.py pub|sub|both --topic T [--channel C] --count N
            (--nsqd-tcp HOST:PORT)... | (--lookupd-http HOST:PORT)...
            [--body-size B] [--batch K] [--max-in-flight K] [--timeout SECONDS]
            [--tls --tls-ca FILE [--tls-server-name NAME]] [--snappy] [--deflate] [--hold]

pynsq quirks that matter here:
* TLS options are a dict for `ssl.SSLContext` via tornado; pynsq forces PROTOCOL_TLSv1_2, whose
  context does not check the host name (only the chain), and it always sends the connect host as
  SNI, so --tls-server-name cannot be honoured: it is accepted and logged, not used.
* Writer.mpub/pub take a callback `(conn, data)`; `data` is an nsq.Error on failure. A Writer has
  no close(); its connections are closed one by one.
* Snappy and deflate reads are broken with tornado >= 5 as shipped: when a received chunk
  decompresses to nothing (a block split across reads), SnappySocket/DeflateSocket raise
  `socket.error(errno.EWOULDBLOCK)`, an OSError whose .errno is None (one argument), so tornado
  does not see EWOULDBLOCK and closes the connection ("error on read: 11", then
  "IntegrityError('failed to unpack size')"). patch_compressed_sockets() below makes that
  exception a proper BlockingIOError; the compression code itself is pynsq's.
"""

import argparse
import json
import logging
import os
import ssl
import sys
import time
from datetime import timedelta

import nsq
import nsq.deflate_socket
import tornado.gen
import tornado.ioloop
import tornado.util
from tornado.concurrent import Future

log = logging.getLogger("nsq-peer")
CLIENT = "pynsq"


def patch_compressed_sockets():
    """Work around pynsq 0.9.1's one-argument socket.error (see the module docstring)."""

    class SocketShim:
        @staticmethod
        def error(code):
            return BlockingIOError(code, os.strerror(code))

    nsq.deflate_socket.socket = SocketShim
    # nsq.snappy_socket imports only with python-snappy; without it --snappy fails on its own.
    snappy_socket = sys.modules.get("nsq.snappy_socket")
    if snappy_socket is not None:
        snappy_socket.socket = SocketShim


def parse_args():
    p = argparse.ArgumentParser(prog="peer.py")
    p.add_argument("mode", choices=["pub", "sub", "both"])
    p.add_argument("--nsqd-tcp", action="append", default=[])
    p.add_argument("--lookupd-http", action="append", default=[])
    p.add_argument("--topic", required=True)
    p.add_argument("--channel")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--body-size", type=int, default=16)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--max-in-flight", type=int, default=200)
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--tls", action="store_true")
    p.add_argument("--tls-ca")
    p.add_argument("--tls-server-name")
    p.add_argument("--snappy", action="store_true")
    p.add_argument("--deflate", action="store_true")
    p.add_argument("--hold", action="store_true")
    a = p.parse_args()
    if a.count <= 0 or a.batch <= 0:
        p.error("--count and --batch must be positive")
    if a.mode != "sub" and not a.nsqd_tcp:
        p.error("pub needs --nsqd-tcp")
    if a.mode != "pub" and (not a.channel or not (a.nsqd_tcp or a.lookupd_http)):
        p.error("sub needs --channel and --nsqd-tcp or --lookupd-http")
    if a.tls and not a.tls_ca:
        p.error("--tls needs --tls-ca")
    return a


def body(i, size):
    """The message with index i: its decimal index, '|', then '.' up to size bytes."""
    b = b"%d|" % i
    return b + b"." * max(0, size - len(b))


def conn_kwargs(a):
    kw = {"snappy": a.snappy, "deflate": a.deflate}
    if a.tls:
        if a.tls_server_name:
            log.info("pynsq cannot set the TLS server name; ignoring %s", a.tls_server_name)
        kw["tls_v1"] = True
        kw["tls_options"] = {"cert_reqs": ssl.CERT_REQUIRED, "ca_certs": a.tls_ca}
    return kw


class Peer:
    def __init__(self, a):
        self.a = a
        self.loop = tornado.ioloop.IOLoop.current()
        self.report = {
            "client": CLIENT,
            "mode": a.mode,
            "published": 0,
            "received": 0,
            "distinct": 0,
            "duplicates": 0,
            "seconds": 0.0,
        }
        self.seen = set()
        self.bad = None
        self.emitted = False
        self.started = time.monotonic()

    async def publish(self, deadline):
        a = self.a
        writer = ReadyWriter(a.nsqd_tcp[:1], **conn_kwargs(a))
        try:
            # The Writer connects in the background; publish once its connection is ready.
            await with_deadline(writer.ready, deadline, "connecting the writer to %s" % a.nsqd_tcp[0])
            for i in range(0, a.count, a.batch):
                n = min(a.batch, a.count - i)
                done = Future()

                def acked(conn, data, done=done):
                    if not done.done():
                        done.set_result(data)

                if n == 1:
                    writer.pub(a.topic, body(i, a.body_size), callback=acked)
                else:
                    writer.mpub(a.topic, [body(i + j, a.body_size) for j in range(n)], callback=acked)
                data = await with_deadline(done, deadline, "publish of messages %d..%d" % (i, i + n - 1))
                if isinstance(data, Exception):
                    raise RuntimeError("publish of messages %d..%d: %r" % (i, i + n - 1, data))
                self.report["published"] += n
            log.info("published %d to %s/%s", self.report["published"], a.nsqd_tcp[0], a.topic)
        finally:
            for conn in list(writer.conns.values()):
                conn.close()

    def handle(self, message):
        self.report["received"] += 1
        try:
            i = int(message.body.split(b"|", 1)[0]) if b"|" in message.body else -1
        except ValueError:
            i = -1
        if not 0 <= i < self.a.count:
            self.bad = self.bad or "unexpected body %r" % message.body
        elif i in self.seen:
            self.report["duplicates"] += 1
        else:
            self.seen.add(i)
            if len(self.seen) == self.a.count and not self.all_seen.done():
                self.all_seen.set_result(None)
        return True  # FIN, whatever it was: a bad body is reported, not redelivered

    async def consume(self, deadline):
        a = self.a
        self.all_seen = Future()
        reader = nsq.Reader(
            topic=a.topic,
            channel=a.channel,
            message_handler=self.handle,
            nsqd_tcp_addresses=a.nsqd_tcp if not a.lookupd_http else None,
            lookupd_http_addresses=a.lookupd_http or None,
            max_in_flight=a.max_in_flight,
            **conn_kwargs(a),
        )
        try:
            try:
                await with_deadline(self.all_seen, deadline, "consume")
            except TimeoutError:
                raise RuntimeError(
                    "timeout: %d distinct of %d after %d received"
                    % (len(self.seen), a.count, self.report["received"])
                )
            finally:
                self.report["distinct"] = len(self.seen)
            if self.bad:
                raise RuntimeError(self.bad)
            # FIN is written by the handler's caller after we return; make sure every FIN left
            # the process: an empty write resolves once everything queued before it was sent.
            await self.flush(reader)
            if a.hold:
                self.emit()
                log.info("holding connections until stdin closes")
                await self.loop.run_in_executor(None, sys.stdin.read)
        finally:
            reader.close()

    async def flush(self, reader):
        await tornado.gen.sleep(0)  # let the last handler's FIN be queued
        for conn in list(reader.conns.values()):
            if conn.stream is not None and not conn.stream.closed():
                await conn.stream.write(b"")

    async def run(self):
        deadline = time.monotonic() + self.a.timeout
        if self.a.mode != "sub":
            await self.publish(deadline)
        if self.a.mode != "pub":
            await self.consume(deadline)

    def emit(self):
        if not self.emitted:
            self.emitted = True
            self.report["seconds"] = time.monotonic() - self.started
            print(json.dumps(self.report), flush=True)


class ReadyWriter(nsq.Writer):
    """A Writer with a future that resolves when its first connection is ready (pynsq has none)."""

    def __init__(self, *args, **kwargs):
        self.ready = Future()
        super().__init__(*args, **kwargs)

    def _on_connection_ready(self, conn, **kwargs):
        super()._on_connection_ready(conn, **kwargs)
        if not self.ready.done():
            self.ready.set_result(None)


async def with_deadline(fut, deadline, what):
    """Awaits fut until the monotonic deadline; raises TimeoutError(what) after it."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError(what)
    try:
        return await tornado.gen.with_timeout(timedelta(seconds=left), fut)
    except tornado.util.TimeoutError:
        raise TimeoutError(what)


def main():
    a = parse_args()
    patch_compressed_sockets()
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="[nsq-peer pynsq] %(asctime)s %(message)s")
    log.setLevel(logging.INFO)
    peer = Peer(a)
    status = 0
    try:
        tornado.ioloop.IOLoop.current().run_sync(peer.run)
    except Exception as e:  # any failure: report it and exit non-zero
        log.error("FAILED: %s", e)
        peer.report["error"] = str(e)
        status = 1
    peer.emit()
    sys.exit(status)


if __name__ == "__main__":
    main()
