"""Entropy coding of FedRAS's symbols: which items a client touched and the action of each (`entropy-coding = range`).

The plain layout bit-packs both (a bitmap or gap list for the ids, ceil(log2 K) bits per assignment),
which leaves nothing for a general-purpose compressor to find. Here the symbols themselves go through
a range coder (constriction) with a model sent alongside them:
- ids: the touched/untouched flag of every catalogue item, Bernoulli(n / M): about M x H(n / M) bits;
- assignments: categorical with the client's own action frequencies: about n x H(counts / n) bits.
Layout (uint8): varints n, count_0 .. count_{K-1}, then the range coder's 32-bit words (little-endian).
A skewed assignment (a few large clusters) or a very sparse or very dense id set codes well below the
plain layout; uniform assignments cost the K counts more than it (README "Codecs").
"""

from __future__ import annotations

import constriction
import numpy as np

from fedras_flwr.codecs.base import PayloadError
from fedras_flwr.codecs.packing import MAX_VARINT_BYTES, decode_varints, encode_varints


def _flag_model(count: int, num_items: int) -> constriction.stream.model.Categorical:
    p = count / num_items
    return constriction.stream.model.Categorical(np.array([1.0 - p, p]), perfect=False)


def _assignment_model(counts: np.ndarray) -> constriction.stream.model.Categorical:
    return constriction.stream.model.Categorical(counts / counts.sum(), perfect=False)


def encode_symbols(ids: np.ndarray, assignment: np.ndarray, num_actions: int, num_items: int) -> np.ndarray:
    """Range-code sorted unique `ids` and one action index in [0, num_actions) per id."""
    counts = np.bincount(assignment, minlength=num_actions)
    flags = np.zeros(num_items, dtype=np.int32)
    flags[ids] = 1
    encoder = constriction.stream.queue.RangeEncoder()
    encoder.encode(flags, _flag_model(len(ids), num_items))
    if len(ids) and num_actions > 1:
        encoder.encode(assignment.astype(np.int32), _assignment_model(counts))
    header = encode_varints(np.concatenate([[len(ids)], counts]))
    words = encoder.get_compressed().astype("<u4").view(np.uint8)
    return np.concatenate([np.frombuffer(header, np.uint8), words])


def decode_symbols(blob: np.ndarray, num_actions: int, num_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of `encode_symbols`: (ids, assignment); PayloadError for anything inconsistent."""
    if not isinstance(blob, np.ndarray) or blob.dtype != np.uint8 or blob.ndim != 1:
        raise PayloadError("fedras: the range-coded symbols must be a 1-D uint8 array")
    header, offset = decode_varints(blob[: (1 + num_actions) * MAX_VARINT_BYTES], 1 + num_actions)
    count, counts = int(header[0]), header[1:]
    if count > num_items or np.any(counts > count):
        raise PayloadError("fedras: the symbol header names more ids or assignments than the catalogue has")
    if counts.sum() != count:
        raise PayloadError(f"fedras: the symbol header names {count} ids and {counts.sum()} assignments")
    body = blob[offset:]
    if len(body) % 4:
        raise PayloadError("fedras: the range-coded words are cut short")
    try:
        decoder = constriction.stream.queue.RangeDecoder(body.view("<u4").astype(np.uint32))
        flags = decoder.decode(_flag_model(count, num_items), num_items)
        assignment = (
            decoder.decode(_assignment_model(counts), count) if count and num_actions > 1 else np.zeros(count, np.int32)
        )
    except Exception as err:  # noqa: BLE001 - any failure of the decoder on client bytes is a bad payload
        raise PayloadError(f"fedras: the range-coded symbols do not decode ({err})") from err
    ids = np.flatnonzero(flags).astype(np.int64)
    assignment = np.asarray(assignment, dtype=np.int64)
    if len(ids) != count or not np.array_equal(np.bincount(assignment, minlength=num_actions), counts):
        raise PayloadError("fedras: the range-coded symbols disagree with their header")
    return ids, assignment
