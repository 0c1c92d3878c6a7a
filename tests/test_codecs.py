"""Codecs: exact round trips, byte counts equal to Flower's serialization, hostile payloads."""

import numpy as np
import pytest
from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays

from fedras_flwr.codecs import ItemUpdate, PayloadError, available_codecs, make_codec, wire_bytes
from fedras_flwr.config import RunConfig

NUM_ITEMS, DIM = 50, 6
LOSSLESS = ["dense", "sparse"]


def random_update(seed=0, count=12):
    rng = np.random.default_rng(seed)
    ids = np.sort(rng.choice(NUM_ITEMS, size=count, replace=False)).astype(np.int64)
    return ItemUpdate(ids=ids, rows=rng.standard_normal((count, DIM)).astype(np.float32))


@pytest.mark.parametrize("name", LOSSLESS)
def test_lossless_round_trip(name):
    codec = make_codec(RunConfig(codec=name), NUM_ITEMS, DIM)
    update = random_update()
    decoded = codec.decode(codec.encode(update))
    assert np.array_equal(decoded.ids, update.ids)
    assert np.array_equal(decoded.rows, update.rows)


@pytest.mark.parametrize("name", available_codecs())
def test_byte_count_equals_flower_serialization(name):
    codec = make_codec(RunConfig(codec=name), NUM_ITEMS, DIM)
    arrays = codec.encode(random_update())
    assert len(arrays) == codec.num_arrays
    parameters = ndarrays_to_parameters(arrays)
    assert wire_bytes(arrays) == sum(len(t) for t in parameters.tensors)
    # dtypes survive Flower's (de)serialization: no float64 upcasting on the wire
    assert [a.dtype for a in parameters_to_ndarrays(parameters)] == [a.dtype for a in arrays]


def test_known_sizes():
    update = random_update(count=12)
    dense = make_codec(RunConfig(codec="dense"), NUM_ITEMS, DIM).encode(update)
    sparse = make_codec(RunConfig(codec="sparse"), NUM_ITEMS, DIM).encode(update)
    assert dense[0].nbytes == NUM_ITEMS * DIM * 4
    assert sparse[0].nbytes + sparse[1].nbytes == 12 * 4 + 12 * DIM * 4


@pytest.mark.parametrize(
    "name, mutate, message",
    [
        ("sparse", lambda a: a[:1], "expected 2 arrays"),
        ("sparse", lambda a: [a[0].astype(np.int64), a[1]], "must be int32"),
        ("sparse", lambda a: [a[0][::-1].copy(), a[1]], "sorted, unique"),
        ("sparse", lambda a: [a[0] + NUM_ITEMS, a[1]], "sorted, unique"),
        ("sparse", lambda a: [a[0], a[1][:-1]], "shape"),
        ("sparse", lambda a: [a[0], np.full_like(a[1], np.nan)], "NaN"),
        ("dense", lambda a: [a[0][:-1]], "shape"),
        ("dense", lambda a: [np.full_like(a[0], np.inf)], "NaN or infinity"),
    ],
)
def test_malformed_payloads_are_rejected(name, mutate, message):
    codec = make_codec(RunConfig(codec=name), NUM_ITEMS, DIM)
    with pytest.raises(PayloadError, match=message):
        codec.decode(mutate(codec.encode(random_update())))
