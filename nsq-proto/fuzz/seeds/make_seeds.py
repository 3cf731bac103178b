#!/usr/bin/env python3
"""Writes the seed inputs of the fuzz targets.

Each seed is a well-formed exchange, so that the fuzzer starts from inputs that get past the
handshakes and the upgrades (a snappy chunk's CRC-32C or a deflate stream is out of reach of
blind mutation). Run it from anywhere; it rewrites seeds/<target>/ beside itself. The first
byte of each seed is the target's flags byte (see the target's doc comment).
"""

import json
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
MAGIC_V2 = b"  V2"


def write(target, name, data):
    folder = os.path.join(HERE, target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


# ---- client -> nsqd commands ----------------------------------------------------------------

def sized(body):
    return struct.pack(">I", len(body)) + body


def cmd(line, body=None):
    wire = line.encode() + b"\n"
    if body is not None:
        wire += sized(body)
    return wire


def mpub(topic, bodies):
    payload = struct.pack(">I", len(bodies)) + b"".join(sized(b) for b in bodies)
    return cmd("MPUB " + topic, payload)


def identify(**fields):
    base = {
        "client_id": "fuzz",
        "hostname": "fuzz.invalid",
        "feature_negotiation": True,
        "heartbeat_interval": 1000,
        "user_agent": "seed/1",
    }
    base.update(fields)
    return cmd("IDENTIFY", json.dumps(base, separators=(",", ":")).encode())


# ---- nsqd -> client frames ------------------------------------------------------------------

def frame(kind, data):
    return struct.pack(">Ii", 4 + len(data), kind) + data


def response(data):
    return frame(0, data)


def error(text):
    return frame(1, text.encode())


def message(attempts, msg_id, body):
    return frame(2, struct.pack(">qH", 1_700_000_000_000_000_000, attempts) + msg_id + body)


OK = response(b"OK")
HEARTBEAT = response(b"_heartbeat_")
MSG_ID = b"0a1b2c3d4e5f6071"


def identify_reply(**fields):
    base = {
        "max_rdy_count": 2500,
        "version": "1.3.0",
        "max_msg_timeout": 900000,
        "msg_timeout": 60000,
        "tls_v1": False,
        "deflate": False,
        "deflate_level": 6,
        "max_deflate_level": 6,
        "snappy": False,
        "sample_rate": 0,
        "auth_required": False,
        "output_buffer_size": 16384,
        "output_buffer_timeout": 250,
    }
    base.update(fields)
    return response(json.dumps(base, separators=(",", ":")).encode())


# ---- stream layers --------------------------------------------------------------------------

def crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def snappy_stream(data):
    """The snappy framing format with one uncompressed chunk (type 0x01)."""
    crc = crc32c(data)
    masked = (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF
    body = struct.pack("<I", masked) + data
    return b"\xff\x06\x00\x00sNaPpY" + b"\x01" + struct.pack("<I", len(body))[:3] + body


def deflate_stream(data):
    """Raw DEFLATE (no zlib header), flushed as nsqd's writer flushes."""
    z = zlib.compressobj(6, zlib.DEFLATED, -15)
    return z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH)


# ---- the codec targets: server_decode (commands), client_decode (frames), lookupd_decode -----

write("server_decode", "session", identify() + cmd("SUB t c") + cmd("RDY 10") + cmd("FIN " + MSG_ID.decode()))
write("server_decode", "publish", cmd("PUB t", b"hello") + mpub("t", [b"a", b"bc"]) + cmd("DPUB t 1000", b"d"))
write("server_decode", "auth", cmd("AUTH", b"secret") + cmd("REQ " + MSG_ID.decode() + " 100") + cmd("CLS"))
write("client_decode", "replies", identify_reply() + OK + HEARTBEAT + error("E_INVALID no"))
write("client_decode", "messages", message(1, MSG_ID, b"body") + message(65535, MSG_ID, b"") + response(b"CLOSE_WAIT"))
lookupd_identify = json.dumps(
    {"broadcast_address": "h", "tcp_port": 4150, "http_port": 4151, "version": "1.3.0"},
    separators=(",", ":"),
).encode()
write(
    "lookupd_decode",
    "register",
    b"\x00  V1" + cmd("IDENTIFY", lookupd_identify) + b"REGISTER t c\nUNREGISTER t\nPING\n",
)
write("lookupd_decode", "replies", b"\x01" + sized(b"OK") + sized(b"E_INVALID") + sized(b"{}"))

# ---- broker_commands: flags bit 0 = auth broker, bit 1 = magic put in front, bit 2 = hold ----

write("broker_commands", "pub", b"\x02" + cmd("PUB t", b"hello"))
write(
    "broker_commands",
    "session",
    b"\x02"
    + identify(msg_timeout=5000, sample_rate=50)
    + cmd("SUB t c")
    + cmd("RDY 10")
    + cmd("PUB t", b"one")
    + mpub("t", [b"two", b"three"])
    + cmd("DPUB t 100", b"later")
    + cmd("FIN " + MSG_ID.decode())
    + cmd("REQ " + MSG_ID.decode() + " 0")
    + cmd("TOUCH " + MSG_ID.decode())
    + cmd("NOP")
    + cmd("CLS"),
)
write(
    "broker_commands",
    "session_held",
    b"\x06"
    + identify(heartbeat_interval=1000, msg_timeout=1000, output_buffer_timeout=50)
    + cmd("PUB t", b"one")
    + cmd("DPUB t 1500", b"later")
    + cmd("SUB t c")
    + cmd("RDY 2"),
)
write("broker_commands", "own_magic", b"\x00" + MAGIC_V2 + cmd("PUB t#ephemeral", b"x"))
write("broker_commands", "bad_magic", b"\x00" + b"  V1" + cmd("PING"))
write(
    "broker_commands",
    "auth",
    b"\x03" + cmd("AUTH", b"fuzz") + cmd("PUB t", b"x") + cmd("SUB t c") + cmd("RDY 1"),
)
write(
    "broker_commands",
    "auth_pub_only",
    b"\x03" + identify() + cmd("AUTH", b"pub-only") + cmd("PUB p1", b"x") + cmd("PUB q1", b"x"),
)
write("broker_commands", "auth_missing", b"\x03" + cmd("PUB t", b"x"))
write(
    "broker_commands",
    "snappy",
    b"\x02" + identify(snappy=True) + snappy_stream(cmd("PUB t", b"packed") + cmd("NOP")),
)
write(
    "broker_commands",
    "deflate",
    b"\x02"
    + identify(deflate=True, deflate_level=3)
    + deflate_stream(cmd("PUB t", b"packed") + cmd("NOP")),
)

# ---- client_handshake: byte 0 = op (bits 0-1), compression (2-3), auth (4), EOF (5); ------
# ---- byte 1 = consumer: max_in_flight - 1 (bits 0-3), answer (4-5), auto-touch (6) --------

write("client_handshake", "publish", b"\x20\x00" + identify_reply() + OK)
write("client_handshake", "publish_open", b"\x00\x00" + identify_reply() + OK)
write("client_handshake", "multi_publish", b"\x21\x00" + identify_reply() + HEARTBEAT + OK)
write("client_handshake", "deferred_publish", b"\x02\x00" + identify_reply() + OK)
write(
    "client_handshake",
    "publish_refused",
    b"\x20\x00" + identify_reply() + error("E_BAD_TOPIC PUB topic name"),
)
write("client_handshake", "no_negotiation", b"\x20\x00" + OK + OK)
write(
    "client_handshake",
    "subscribe",
    b"\x03\x09"
    + identify_reply()
    + OK
    + message(1, MSG_ID, b"first")
    + HEARTBEAT
    + message(6, b"1b2c3d4e5f607182", b"tired"),
)
write(
    "client_handshake",
    "subscribe_requeue",
    b"\x03\x11" + identify_reply() + OK + message(1, MSG_ID, b"again") + error("E_REQ_FAILED REQ failed"),
)
write(
    "client_handshake",
    "subscribe_touch",
    b"\x23\x70" + identify_reply() + OK + message(2, MSG_ID, b"slow") + response(b"CLOSE_WAIT"),
)
write(
    "client_handshake",
    "auth",
    b"\x30\x00"
    + identify_reply(auth_required=True)
    + response(b'{"identity":"fuzz","identity_url":"","permission_count":1}')
    + OK,
)
write(
    "client_handshake",
    "snappy",
    b"\x24\x00" + identify_reply(snappy=True) + snappy_stream(OK + OK),
)
write(
    "client_handshake",
    "deflate",
    b"\x28\x00" + identify_reply(deflate=True) + deflate_stream(OK + OK),
)
write(
    "client_handshake",
    "subscribe_snappy",
    b"\x07\x00" + identify_reply(snappy=True) + snappy_stream(OK + OK + message(1, MSG_ID, b"packed")),
)

# ---- lookupd_http: bit 0 = v1 header, bits 1-7 = status (0 is 200) ---------------------------

producer = {
    "remote_address": "10.0.0.5:51996",
    "hostname": "nsqd-1",
    "broadcast_address": "nsqd-1.example",
    "tcp_port": 4150,
    "http_port": 4151,
    "version": "1.3.0",
}


def body(value):
    return json.dumps(value, separators=(",", ":")).encode()


write("lookupd_http", "lookup", b"\x01" + body({"channels": ["archive"], "producers": [producer]}))
write(
    "lookupd_http",
    "nodes",
    b"\x01" + body({"producers": [dict(producer, tombstones=[False, True], topics=["a", "b"])]}),
)
write("lookupd_http", "topics", b"\x01" + body({"topics": ["a", "b"]}))
write("lookupd_http", "info", b"\x01" + body({"version": "1.3.0"}))
write(
    "lookupd_http",
    "legacy",
    b"\x00" + body({"status_code": 200, "status_txt": "OK", "data": {"channels": None, "producers": []}}),
)
write(
    "lookupd_http",
    "legacy_error",
    b"\x00" + body({"status_code": 500, "status_txt": "INVALID_REQUEST", "data": None}),
)
write("lookupd_http", "not_found", b"\x03" + body({"message": "TOPIC_NOT_FOUND"}))
write(
    "lookupd_http",
    "old_producer",
    b"\x01" + body({"producers": [{"address": "nsqd-0", "tcp_port": 4150, "http_port": 4151}]}),
)
write("lookupd_http", "query", b"\x00topic=a%2Eb&channel=c+d&node=nsqd-1%3A4151&empty")
