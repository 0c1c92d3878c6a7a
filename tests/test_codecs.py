"""Codecs: exact round trips, byte counts equal to Flower's serialization, hostile payloads."""

import io

import numpy as np
import pytest
from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays

from fedras_flwr.algorithm.components import make_upload_codec
from fedras_flwr.codecs import (
    ItemUpdate,
    PayloadError,
    WeightsCodec,
    available_codecs,
    codec_class,
    parameter_keys,
    serialized_size,
    wire_bytes,
)
from fedras_flwr.config import RunConfig

NUM_ITEMS, DIM = 50, 6
LOSSLESS = [name for name in available_codecs() if codec_class(name).lossless]


def random_update(seed=0, count=12):
    rng = np.random.default_rng(seed)
    ids = np.sort(rng.choice(NUM_ITEMS, size=count, replace=False)).astype(np.int64)
    return ItemUpdate(ids=ids, rows=rng.standard_normal((count, DIM)).astype(np.float32))


@pytest.mark.parametrize("name", LOSSLESS)
def test_lossless_round_trip(name):
    codec = make_upload_codec(RunConfig(codec=name), NUM_ITEMS, DIM)
    update = random_update()
    decoded = codec.decode(codec.encode(update, 1), 1)
    assert np.array_equal(decoded.ids, update.ids)
    assert np.array_equal(decoded.rows, update.rows)


@pytest.mark.parametrize("name", available_codecs())
def test_a_budget_parameter_is_the_codecs_own_and_runs_from_small_to_large(name):
    """Lossy codecs declare the parameter the payload grid calibrates; its first value uploads the least."""
    budget = codec_class(name).budget_parameter(DIM)
    if codec_class(name).lossless:
        assert budget is None
        return
    key, values = budget
    assert key in parameter_keys(codec_class(name)) and len(values) >= 2
    update = random_update(count=40)
    sizes = [
        wire_bytes(make_upload_codec(RunConfig(codec=name).replace(**{key.replace("-", "_"): v}), NUM_ITEMS, DIM).encode(update, 1))
        for v in (values[0], values[-1])
    ]
    assert sizes[0] < sizes[1]


def test_the_fedras_knob_steps_k_in_quarter_octaves():
    """Matched payload: a K knob doubling at each step left FedRAS a quarter of its byte budget unused."""
    _, values = codec_class("fedras").budget_parameter(DIM)
    assert values[0] == 1 and values[-1] == 4096 and list(values) == sorted(set(values))
    assert all(later <= max(earlier + 1, 1.25 * earlier) for earlier, later in zip(values, values[1:]))


@pytest.mark.parametrize("name", available_codecs())
def test_byte_count_equals_flower_serialization(name):
    codec = make_upload_codec(RunConfig(codec=name), NUM_ITEMS, DIM)
    arrays = codec.encode(random_update(), 1)
    assert len(arrays) == codec.num_arrays
    parameters = ndarrays_to_parameters(arrays)
    assert wire_bytes(arrays) == sum(len(t) for t in parameters.tensors)
    # dtypes survive Flower's (de)serialization: no float64 upcasting on the wire
    assert [a.dtype for a in parameters_to_ndarrays(parameters)] == [a.dtype for a in arrays]


def test_known_sizes():
    update = random_update(count=12)
    dense = make_upload_codec(RunConfig(codec="dense"), NUM_ITEMS, DIM).encode(update, 1)
    sparse = make_upload_codec(RunConfig(codec="sparse"), NUM_ITEMS, DIM).encode(update, 1)
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
    codec = make_upload_codec(RunConfig(codec=name), NUM_ITEMS, DIM)
    with pytest.raises(PayloadError, match=message):
        codec.decode(mutate(codec.encode(random_update(), 1)), 1)


# -- FedRAS ----------------------------------------------------------------------------------------
from fedras_flwr.codecs.packing import bits_for, decode_ids, encode_ids, pack_bits, unpack_bits  # noqa: E402


@pytest.mark.parametrize("k", list(range(1, 257)))
def test_bit_packing_round_trip_for_every_k(k):
    values = np.random.default_rng(k).integers(0, k, size=37)
    packed = pack_bits(values, bits_for(k))
    assert packed.dtype == np.uint8 and len(packed) == -(-37 * bits_for(k) // 8)
    assert np.array_equal(unpack_bits(packed, bits_for(k), 37), values)


def test_bits_per_index():
    assert [bits_for(k) for k in (1, 2, 3, 4, 5, 8, 9, 256)] == [0, 1, 2, 2, 3, 3, 4, 8]


@pytest.mark.parametrize("ids", [[], [0], [3, 4, 5], list(range(0, 1000, 97)), list(range(200, 900))])
def test_id_sets_take_the_smaller_encoding(ids):
    ids = np.array(ids, dtype=np.int64)
    blob = encode_ids(ids, 1000)
    assert np.array_equal(decode_ids(blob, 1000), ids)
    assert len(blob) <= 1 + 125  # never larger than the bitmap


def fedras(**changes):
    return make_upload_codec(RunConfig(codec="fedras").replace(**changes), NUM_ITEMS, DIM)


@pytest.mark.parametrize("options", [{}, {"cluster_on": "direction"}, {"entropy_coding": "range"}])
def test_fedras_is_lossless_when_k_covers_the_rows(options):
    codec = fedras(num_actions=12, **options)
    update = random_update(count=12)
    decoded = codec.decode(codec.encode(update, 1), 1)
    assert np.array_equal(decoded.ids, update.ids) and np.array_equal(decoded.rows, update.rows)


@pytest.mark.parametrize("options", [{}, {"cluster_on": "direction"}, {"entropy_coding": "range"},
                                     {"centroid_dtype": "float32", "cluster_on": "direction", "entropy_coding": "range"}])
def test_fedras_rows_are_their_actions(options):
    codec = fedras(num_actions=4, **options)
    update = random_update(count=30)
    arrays = codec.encode(update, 3)
    assert codec.num_actions(arrays) == 4 and len(arrays) == codec.num_arrays
    decoded = codec.decode(arrays, 3)
    assert np.array_equal(decoded.ids, update.ids)
    scale = arrays[-1].astype(np.float32)[:, None] if "cluster_on" in options else 1.0
    distinct = np.unique(np.round(decoded.rows / scale, 4), axis=0)
    assert len(distinct) <= 4
    error = np.linalg.norm(decoded.rows - update.rows) / np.linalg.norm(update.rows)
    assert error < 1.0  # better than sending nothing


def test_fedras_recovers_planted_actions_exactly():
    actions = np.random.default_rng(0).standard_normal((3, DIM)).astype(np.float32)
    labels = np.arange(30) % 3
    update = ItemUpdate(np.arange(30, dtype=np.int64), actions[labels])
    codec = fedras(num_actions=3, centroid_dtype="float32")
    decoded = codec.decode(codec.encode(update, 1), 1)
    np.testing.assert_allclose(decoded.rows, update.rows, atol=1e-6)


def test_fedras_is_deterministic_for_a_seed():
    update = random_update(count=40)
    first, second = fedras().encode(update, 5), fedras().encode(update, 5)
    assert all(np.array_equal(a, b) for a, b in zip(first, second))


def test_fedras_bytes_for_k8():
    codec = fedras(num_actions=8)
    arrays = codec.encode(random_update(count=30), 1)
    assert arrays[0].dtype == np.float16 and arrays[0].shape == (8, DIM)
    assert arrays[1].nbytes == -(-30 * 3 // 8)  # 3 bits per touched item
    assert codec.numbers_sent(arrays, 30) == 8 * DIM + 30


def test_entropy_coding_round_trip_and_gain_on_skewed_assignments():
    rng = np.random.default_rng(1)
    big = rng.standard_normal((1, DIM)).astype(np.float32)
    rows = np.repeat(big, 45, axis=0) + 1e-3 * rng.standard_normal((45, DIM)).astype(np.float32)
    rows[:5] = rng.standard_normal((5, DIM))  # most rows share one action
    update = ItemUpdate(np.arange(45, dtype=np.int64), rows)
    plain, coded = fedras(num_actions=4), fedras(num_actions=4, entropy_coding="range")
    plain_arrays, coded_arrays = plain.encode(update, 1), coded.encode(update, 1)
    assert len(coded_arrays) == 2
    a, b = plain.decode(plain_arrays, 1), coded.decode(coded_arrays, 1)
    assert np.array_equal(a.ids, b.ids) and np.array_equal(a.rows, b.rows)
    # the symbols cost less than their plain layout: 45 two-bit assignments and a 125-bit id bitmap
    plain_symbols, coded_symbols = plain_arrays[1].nbytes + plain_arrays[2].nbytes, coded_arrays[1].nbytes
    assert coded_symbols < 0.75 * plain_symbols
    assert coded.symbol_bytes(coded_arrays, b) == (coded_arrays[1].nbytes, plain_arrays[1].nbytes + plain_arrays[2].nbytes)


def test_entropy_coding_of_uniform_symbols_costs_about_the_plain_layout():
    rng = np.random.default_rng(2)
    update = ItemUpdate(np.sort(rng.choice(NUM_ITEMS, 30, replace=False)), rng.standard_normal((30, DIM)).astype(np.float32))
    plain, coded = fedras(num_actions=8), fedras(num_actions=8, entropy_coding="range")
    plain_arrays, coded_arrays = plain.encode(update, 1), coded.encode(update, 1)
    assert coded_arrays[1].nbytes < plain_arrays[1].nbytes + plain_arrays[2].nbytes + 16  # at most the K counts more


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda a: [a[0].astype(np.float64), *a[1:]], "float16/float32"),
        (lambda a: [np.full_like(a[0], np.nan), *a[1:]], "finite"),
        (lambda a: [a[0][:, :2], *a[1:]], "columns"),
        (lambda a: [a[0], a[1][:-1], a[2]], "index buffer"),
        (lambda a: [a[0], np.full_like(a[1], 255), a[2]], "past the last action"),
        (lambda a: [a[0], a[1], np.array([7], dtype=np.uint8)], "unknown id encoding"),
        (lambda a: [a[0][:0], a[1], a[2]], "without any action"),
    ],
)
def test_fedras_rejects_malformed_payloads(mutate, message):
    codec = fedras(num_actions=5)  # 5 actions -> 3 bits, so 255 codes point past the last action
    with pytest.raises(PayloadError, match=message):
        codec.decode(mutate(codec.encode(random_update(count=30), 1)), 1)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda b: b[::-1].copy(), "symbol"),
        (lambda b: b[:-1].copy(), "cut short|disagree"),
        (lambda b: b[:1].copy(), "truncated varint"),
        (lambda b: np.concatenate([np.frombuffer(bytes([0xFF] * 11), np.uint8), b]), "varint too long"),
        (lambda b: np.concatenate([b[:1], np.full(8, 0x55, np.uint8), b[9:]]), "symbol|disagree|header"),
        (lambda b: b.astype(np.int16), "uint8"),
    ],
    ids=["reversed", "truncated", "header only", "long varint", "garbled counts", "wrong dtype"],
)
def test_corrupt_range_coded_symbols_are_rejected(mutate, message):
    codec = fedras(entropy_coding="range")
    arrays = codec.encode(random_update(count=30), 1)
    with pytest.raises(PayloadError, match=message):
        codec.decode([arrays[0], mutate(arrays[1])], 1)


# -- baselines ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, options",
    [("topk", {"topk_fraction": 1.0}), ("svd", {"svd_rank": DIM}), ("quant", {"quant_bits": 8})],
)
def test_baselines_at_full_budget_are_near_lossless(name, options):
    codec = make_upload_codec(RunConfig(codec=name).replace(**options), NUM_ITEMS, DIM)
    update = random_update()
    decoded = codec.decode(codec.encode(update, 1), 1)
    assert np.array_equal(decoded.ids, update.ids)
    np.testing.assert_allclose(decoded.rows, update.rows, atol=0.02)


@pytest.mark.parametrize("name", ["topk", "svd", "quant", "colr"])
def test_every_baseline_decodes_what_it_encodes(name):
    codec = make_upload_codec(RunConfig(codec=name).replace(quant_bits=4), NUM_ITEMS, DIM)
    update = random_update()
    decoded = codec.decode(codec.encode(update, 2), 2)
    assert np.array_equal(decoded.ids, update.ids) and decoded.rows.shape == update.rows.shape
    assert np.all(np.isfinite(decoded.rows))
    assert np.linalg.norm(decoded.rows - update.rows) < np.linalg.norm(update.rows)


def test_topk_keeps_the_largest_entries():
    codec = make_upload_codec(RunConfig(codec="topk").replace(topk_fraction=0.25), NUM_ITEMS, 2)
    update = ItemUpdate(np.array([1, 2], dtype=np.int64), np.array([[0.1, -5.0], [0.2, 0.3]], dtype=np.float32))
    decoded = codec.decode(codec.encode(update, 1), 1)
    assert decoded.rows.tolist() == [[0.0, -5.0], [0.0, 0.0]]


def test_colr_is_exact_inside_its_subspace_and_rounds_share_the_basis():
    codec = make_upload_codec(RunConfig(codec="colr").replace(colr_rank=2), NUM_ITEMS, DIM)
    basis = codec.basis(4)
    np.testing.assert_allclose(basis @ basis.T, np.eye(2), atol=1e-5)
    rows = (np.random.default_rng(0).standard_normal((12, 2)) @ basis).astype(np.float32)
    update = ItemUpdate(np.arange(12, dtype=np.int64), rows)
    np.testing.assert_allclose(codec.decode(codec.encode(update, 4), 4).rows, rows, atol=1e-5)
    assert not np.allclose(codec.basis(4), codec.basis(5))
    assert np.array_equal(codec.update_basis(4), basis)


def test_quant_levels():
    codec = make_upload_codec(RunConfig(codec="quant").replace(quant_bits=2), NUM_ITEMS, 4)
    update = ItemUpdate(np.array([0], dtype=np.int64), np.array([[0.0, 1.0, 2.0, 3.0]], dtype=np.float32))
    arrays = codec.encode(update, 1)
    assert arrays[2].nbytes == 1  # four 2-bit codes in one byte
    np.testing.assert_allclose(codec.decode(arrays, 1).rows, update.rows, atol=1e-3)


@pytest.mark.parametrize(
    "array",
    [
        np.zeros((3, 4), np.float32), np.zeros(0, np.uint8), np.array(5.0), np.zeros((2, 3), ">f8"),
        np.asfortranarray(np.ones((3, 5), np.float16)), np.ones((4, 6), np.int64)[:, ::2], np.zeros((1,) * 40, np.bool_),
        np.zeros((7, 2), np.complex64), np.zeros((2,), dtype=[("a", "<i4"), ("b", ">f8")]),
    ],
    ids=["f32", "empty", "0-d", "big-endian", "fortran", "strided", "40-d", "complex", "structured"],
)
def test_serialized_size_is_what_np_save_writes(array):
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    assert serialized_size(array) == len(buffer.getvalue())


# -- dense weights (NeuMF's MLP and output layer) ------------------------------------------------------
WEIGHT_SHAPES = [(8, 6), (6,), (6, 3), (3,), (1,)]


def weights_pair(seed=0):
    rng = np.random.default_rng(seed)
    received = [rng.standard_normal(s).astype(np.float32) for s in WEIGHT_SHAPES]
    trained = [w + 0.01 * rng.standard_normal(w.shape).astype(np.float32) for w in received]
    return received, trained


@pytest.mark.parametrize(
    "mode, arrays, tolerance", [("float32", 5, 0.0), ("float16", 1, 1e-3), ("int8", 2, 2e-4), ("int4", 2, 3e-3)]
)
def test_dense_weights_travel_as_float32_or_compressed_changes(mode, arrays, tolerance):
    codec = WeightsCodec(mode, WEIGHT_SHAPES)
    received, trained = weights_pair()
    encoded = codec.encode(trained, received)
    assert len(encoded) == codec.num_arrays == arrays
    decoded = codec.decode(encoded, received)
    for got, want in zip(decoded, trained):
        assert got.dtype == np.float32 and got.shape == want.shape
        assert np.abs(got - want).max() <= tolerance
    if mode == "int8":  # 8 bits a value (a quarter of float32) and one (min, step) pair a tensor
        assert 4 * encoded[1].nbytes == sum(w.nbytes for w in trained) and encoded[0].shape == (5, 2)
        assert wire_bytes(encoded) < 0.4 * wire_bytes(trained)
    if mode == "int4":  # two values a byte: 48 + 6 + 18 + 3 + 1 = 76 values, 38 bytes
        assert encoded[1].dtype == np.uint8 and encoded[1].shape == (38,) and encoded[0].shape == (5, 2)


def test_int4_weights_are_the_hand_computed_nibbles():
    """One tensor of changes 0, 0.5, 1.5 over a range of 1.5: step 0.1, codes 0, 5, 15, packed low nibble first."""
    codec = WeightsCodec("int4", [(3,)])
    received = [np.zeros(3, np.float32)]
    params, packed = codec.encode([np.array([0.0, 0.5, 1.5], np.float32)], received)
    assert np.allclose(params, [[0.0, 0.1]]) and packed.tolist() == [5 << 4 | 0, 15]
    assert np.allclose(codec.decode([params, packed], received)[0], [0.0, 0.5, 1.5])


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda a: a[:1], "expected 2 arrays"),
        (lambda a: [a[0], a[1][:-1]], "uint8"),
        (lambda a: [a[0].astype(np.float64), a[1]], "float32"),
        (lambda a: [np.full_like(a[0], np.nan), a[1]], "NaN"),
        (lambda a: [a[0] * np.array([[1, -1]], np.float32), a[1]], "negative"),
        (lambda a: [np.full_like(a[0], 3e38), a[1]], "not finite"),
    ],
)
@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_malformed_dense_weights_are_rejected(mutate, message, mode):
    codec = WeightsCodec(mode, WEIGHT_SHAPES)
    received, trained = weights_pair()
    with pytest.raises(PayloadError, match=message):
        codec.decode(mutate(codec.encode(trained, received)), received)


def test_mf_has_no_dense_weights_to_send():
    codec = WeightsCodec("int8", [])
    assert codec.num_arrays == 0 and codec.encode([], []) == [] and codec.decode([], []) == []
