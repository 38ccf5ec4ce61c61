#!/usr/bin/env python3
"""Writes the seeds of the `checkpoint` fuzz target: the signed audit checkpoints carried by
protocol/vectors/envelope.cbor (Bunkyo's) and receipt.cbor (the NPO's), i.e. the byte string
under the key "checkpoint" of each one's body (the last element of its batch seal). Standard library only.

    python3 fuzz/seeds/extract-checkpoints.py    # from the repository root
"""
import pathlib

root = pathlib.Path(__file__).resolve().parents[2]


def item(b, i):
    """Decodes the CBOR data item at b[i:]; returns (value, next index). Enough of CBOR for the
    vectors: unsigned/negative ints, byte/text strings, arrays, maps, tags, simple values."""
    major, info = b[i] >> 5, b[i] & 31
    i += 1
    if info < 24:
        n = info
    elif info in (24, 25, 26, 27):
        size = 1 << (info - 24)
        n = int.from_bytes(b[i:i + size], "big")
        i += size
    else:
        raise ValueError(f"unsupported additional info {info} at {i - 1}")
    if major == 0:
        return n, i
    if major == 1:
        return -1 - n, i
    if major == 2:
        return bytes(b[i:i + n]), i + n
    if major == 3:
        return b[i:i + n].decode(), i + n
    if major == 4:
        out = []
        for _ in range(n):
            v, i = item(b, i)
            out.append(v)
        return out, i
    if major == 5:
        out = {}
        for _ in range(n):
            k, i = item(b, i)
            v, i = item(b, i)
            out[k if not isinstance(k, (list, dict)) else repr(k)] = v
        return out, i
    if major == 6:
        return item(b, i)  # the tag (18, COSE_Sign1) is dropped
    return ("simple", n), i


def checkpoint_of(path):
    sealed, _ = item(path.read_bytes(), 0)  # a batch seal: [head, index, path, body]
    body, _ = item(sealed[3], 0)
    return body["checkpoint"]


out = root / "fuzz" / "seeds" / "checkpoint"
out.mkdir(parents=True, exist_ok=True)
for name in ("envelope", "receipt"):
    cp = checkpoint_of(root / "protocol" / "vectors" / f"{name}.cbor")
    (out / f"{name}_checkpoint.cbor").write_bytes(cp)
    print(f"{name}_checkpoint.cbor: {len(cp)} bytes")
