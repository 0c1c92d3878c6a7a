"""Compact integer encodings shared by the codecs: bit-packed indices and item-id sets.

An id set goes as a uint8 blob whose first byte says how: a bitmap over the M items, or LEB128
varints of the gaps between sorted ids, whichever is smaller for this set.
"""

from __future__ import annotations

import math

import numpy as np

from fedras_flwr.codecs.base import PayloadError

_BITMAP, _DELTAS = 0, 1
MAX_VARINT_BYTES = 9  # 63 bits: every id gap and count fits, and the sum at its shifts stays in int64


def bits_for(count: int) -> int:
    """Bits per index for `count` distinct values (0 when there is only one value)."""
    return math.ceil(math.log2(count)) if count > 1 else 0


def pack_bits(values: np.ndarray, bits: int) -> np.ndarray:
    """Little-endian bit packing of non-negative ints < 2**bits into a uint8 buffer."""
    if bits == 0 or len(values) == 0:
        return np.zeros(0, dtype=np.uint8)
    as_bytes = values.astype("<u8").view(np.uint8).reshape(len(values), 8)  # least significant byte first
    return np.packbits(np.unpackbits(as_bytes, axis=1, count=bits, bitorder="little"), bitorder="little")


def unpack_bits(buffer: np.ndarray, bits: int, count: int) -> np.ndarray:
    if bits == 0:
        if len(buffer):
            raise PayloadError("unexpected index bytes for a single action")
        return np.zeros(count, dtype=np.int64)
    if len(buffer) != math.ceil(count * bits / 8):
        raise PayloadError(f"index buffer has {len(buffer)} bytes, expected {math.ceil(count * bits / 8)}")
    flat = np.unpackbits(buffer, bitorder="little", count=count * bits).reshape(count, bits)
    return (flat.astype(np.int64) << np.arange(bits, dtype=np.int64)).sum(axis=1)


def encode_varints(values: np.ndarray) -> bytes:
    """LEB128: 7 bits per byte, least significant group first, the high bit set on all but a value's last
    byte. Written one group position at a time (ids' gaps rarely need more than two)."""
    values = np.asarray(values).astype(np.uint64)
    if len(values) == 0:
        return b""
    groups = np.ones(len(values), dtype=np.int64)  # bytes per value
    for bits in range(7, int(values.max()).bit_length(), 7):
        groups += values >= np.uint64(1 << bits)
    starts = np.cumsum(groups) - groups
    out = np.empty(int(groups.sum()), dtype=np.uint8)
    for group in range(int(groups.max())):
        has = groups > group
        byte = ((values[has] >> np.uint64(7 * group)) & np.uint64(0x7F)).astype(np.uint8)
        byte[groups[has] > group + 1] |= 0x80
        out[starts[has] + group] = byte
    return out.tobytes()


def decode_varints(blob: np.ndarray, count: int | None = None) -> tuple[np.ndarray, int]:
    """The LEB128 values (int64) at the start of the uint8 array `blob` (all of them, or the first `count`)
    and the bytes they take; at most MAX_VARINT_BYTES per value. Vectorised: a value ends at each byte
    below 0x80, and its groups are summed at their shifts."""
    ends = np.flatnonzero(blob < 0x80)  # the last byte of each value
    if count is not None:
        if len(ends) < count:
            raise PayloadError("truncated varint")
        ends = ends[:count]
    elif len(ends) == 0 and len(blob) or len(ends) and ends[-1] != len(blob) - 1:
        raise PayloadError("truncated varint")
    if len(ends) == 0:
        return np.zeros(0, dtype=np.int64), 0
    read = int(ends[-1]) + 1
    starts = np.concatenate([[0], ends[:-1] + 1])
    lengths = ends - starts + 1
    if lengths.max() > MAX_VARINT_BYTES:
        raise PayloadError("varint too long")
    shifts = (np.arange(read) - np.repeat(starts, lengths)).astype(np.uint64) * np.uint64(7)
    groups = (blob[:read] & 0x7F).astype(np.uint64) << shifts
    return np.add.reduceat(groups, starts).astype(np.int64), read


def encode_ids(ids: np.ndarray, num_items: int) -> np.ndarray:
    """The smaller of a bitmap and a gap-varint list, as one uint8 array with a mode byte first."""
    bitmap = np.zeros(num_items, dtype=np.uint8)
    bitmap[ids] = 1
    as_bitmap = np.packbits(bitmap, bitorder="little").tobytes()
    if len(ids) >= len(as_bitmap):  # at least a byte per id: the gap list cannot be smaller
        return np.frombuffer(bytes([_BITMAP]) + as_bitmap, dtype=np.uint8).copy()
    as_deltas = encode_varints(np.diff(ids, prepend=-1) - 1)
    mode, body = (_BITMAP, as_bitmap) if len(as_bitmap) <= len(as_deltas) else (_DELTAS, as_deltas)
    return np.frombuffer(bytes([mode]) + body, dtype=np.uint8).copy()


def decode_ids(blob: np.ndarray, num_items: int) -> np.ndarray:
    if blob.dtype != np.uint8 or blob.ndim != 1 or len(blob) == 0:
        raise PayloadError("the id set must be a non-empty uint8 buffer")
    mode, body = int(blob[0]), blob[1:]
    if mode == _BITMAP:
        if len(body) != math.ceil(num_items / 8):
            raise PayloadError(f"id bitmap has {len(body)} bytes, expected {math.ceil(num_items / 8)}")
        bits = np.unpackbits(body, bitorder="little")
        if np.any(bits[num_items:]):
            raise PayloadError("id bitmap marks items beyond the catalogue")
        return np.flatnonzero(bits[:num_items]).astype(np.int64)
    if mode == _DELTAS:
        if len(body) > 10 * num_items:
            raise PayloadError("id list is longer than any id set of this catalogue")
        gaps = decode_varints(body)[0]
        if np.any(gaps >= num_items):  # checked before the sum, which huge gaps would overflow
            raise PayloadError("id list names items beyond the catalogue")
        ids = np.cumsum(gaps + 1) - 1  # gaps are >= 0: strictly increasing ids from 0 on
        if len(ids) and ids[-1] >= num_items:
            raise PayloadError("id list names items beyond the catalogue")
        return ids
    raise PayloadError(f"unknown id encoding {mode}")
