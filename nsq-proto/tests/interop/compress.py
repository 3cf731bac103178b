#!/usr/bin/env python3
"""Reference encoder and decoder for nsq-proto's compression interop tests.

Usage: compress.py MODE INPUT OUTPUT [OPTIONS...]

  probe-snappy                      exit 0 if python-snappy can be imported (INPUT/OUTPUT unused)
  snappy-decode IN OUT              snappy.StreamDecompressor, input fed in 7777-byte pieces
  snappy-encode IN OUT PIECE        snappy.StreamCompressor, one add_chunk per PIECE bytes
  deflate-decode IN OUT             zlib.decompressobj(-15), input fed in 1000-byte pieces
  deflate-encode IN OUT LEVEL PIECE END
                                    zlib.compressobj(LEVEL, DEFLATED, -15), Z_SYNC_FLUSH after
                                    every PIECE bytes; END is "sync" (stop there, as nsqd does)
                                    or "finish" (Z_FINISH at the end)

Python's snappy module comes from `pip install python-snappy`; zlib is in the standard library.
"""

import sys
import zlib


def pieces(data, size):
    for start in range(0, len(data), size):
        yield data[start:start + size]


def snappy_decode(data):
    import snappy

    decompressor = snappy.StreamDecompressor()
    out = [decompressor.decompress(piece) for piece in pieces(data, 7777)]
    out.append(decompressor.flush())
    return b"".join(out)


def snappy_encode(data, piece):
    import snappy

    compressor = snappy.StreamCompressor()
    return b"".join(compressor.add_chunk(p) for p in pieces(data, piece))


def deflate_decode(data):
    decompressor = zlib.decompressobj(-zlib.MAX_WBITS)
    out = [decompressor.decompress(piece) for piece in pieces(data, 1000)]
    out.append(decompressor.flush())
    return b"".join(out)


def deflate_encode(data, level, piece, end):
    compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    out = []
    for p in pieces(data, piece):
        out.append(compressor.compress(p))
        out.append(compressor.flush(zlib.Z_SYNC_FLUSH))
    if end == "finish":
        out.append(compressor.flush(zlib.Z_FINISH))
    elif end != "sync":
        raise SystemExit(f"unknown END {end!r}")
    return b"".join(out)


def main(argv):
    if len(argv) < 2:
        raise SystemExit(__doc__)
    mode = argv[1]
    if mode == "probe-snappy":
        import snappy  # noqa: F401

        return
    src, dst, options = argv[2], argv[3], argv[4:]
    with open(src, "rb") as f:
        data = f.read()
    if mode == "snappy-decode":
        out = snappy_decode(data)
    elif mode == "snappy-encode":
        out = snappy_encode(data, int(options[0]))
    elif mode == "deflate-decode":
        out = deflate_decode(data)
    elif mode == "deflate-encode":
        out = deflate_encode(data, int(options[0]), int(options[1]), options[2])
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    with open(dst, "wb") as f:
        f.write(out)


if __name__ == "__main__":
    main(sys.argv)
