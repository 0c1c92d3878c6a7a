"""Hostile uploads: the server rejects every malformed payload alone, with a reason, and its global
state never moves because of one. Known classes of bad input first, then property-based fuzzing."""

import dataclasses
import io
import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedras_flwr.algorithm.components import make_upload_codec
from fedras_flwr.algorithm.round_messages import FitOutcome, UserUpload
from fedras_flwr.algorithm.round_stats import RoundFailures
from fedras_flwr.algorithm.server import FederatedServer
from fedras_flwr.codecs import ItemUpdate, PayloadError, available_codecs
from fedras_flwr.config import RunConfig
from fedras_flwr.flower.wire import WireError, pack_updates, unpack_updates

NUM_ITEMS, DIM = 40, 4
#: every codec, plus the FedRAS layouts that change the arrays (range-coded symbols, direction magnitudes)
VARIANTS = [{"codec": name} for name in available_codecs()] + [
    {"codec": "fedras", "entropy_coding": "range"},
    {"codec": "fedras", "cluster_on": "direction"},
]


def variant_id(variant: dict) -> str:
    return "-".join(str(v) for v in variant.values())


def make_server(**changes) -> tuple[FederatedServer, RunConfig]:
    cfg = RunConfig().replace(**{"embedding_dim": DIM, "num_actions": 4, "k_candidates": "4,8", "downlink_actions": 8, "k_policy": "deadline", **changes})
    return FederatedServer(cfg, NUM_ITEMS, range(10)), cfg


def valid_update(ids=(1, 3, 5, 8, 13, 21, 34), seed=0) -> ItemUpdate:
    rows = np.random.default_rng(seed).standard_normal((len(ids), DIM)).astype(np.float32)
    return ItemUpdate(np.array(ids, dtype=np.int64), rows)


def upload(payload, user=0, dense=(), tier=-1) -> UserUpload:
    return UserUpload(user, list(payload), list(dense), 10, 0.5, 0.0, tier=tier)


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def global_state(server: FederatedServer) -> list[np.ndarray]:
    return [server.item_table.copy(), *[w.copy() for w in server.dense], np.array([server.table_version])]


def assert_rejected_without_effect(server: FederatedServer, bad: UserUpload, reason: str = "") -> None:
    before = global_state(server)
    stats = server.aggregate([bad], 1)
    assert stats.rejected == 1 and stats.clients == 0 and stats.skipped
    assert reason in stats.rejections[0][1]
    arrays = [a for a in (*bad.payload, *bad.dense) if not a.dtype.hasobject]
    assert stats.rejected_bytes == sum(len(npy_bytes(a)) for a in arrays)  # sent, so counted apart
    assert all(np.array_equal(a, b) for a, b in zip(before, global_state(server)))


# -- known classes of bad input ---------------------------------------------------------------------
def fedras_payload(**changes):
    server, cfg = make_server(codec="fedras", **changes)
    return server, make_upload_codec(cfg, NUM_ITEMS, DIM).encode(valid_update(), 1)


def replace(arrays, index, value):
    out = list(arrays)
    out[index] = value
    return out


BAD_FEDRAS = {
    "one array missing": (lambda p: p[:-1], "expected 3 arrays"),
    "one array too many": (lambda p: [*p, p[-1]], "expected 3 arrays"),
    "centroids as float64": (lambda p: replace(p, 0, p[0].astype(np.float64)), "float16/float32"),
    "centroids 1-D": (lambda p: replace(p, 0, p[0].ravel()), "2-D"),
    "centroids with the wrong width": (lambda p: replace(p, 0, p[0][:, :2]), f"{DIM} columns"),
    "NaN in a centroid": (lambda p: replace(p, 0, np.where(np.arange(p[0].size).reshape(p[0].shape) == 0, np.nan, p[0]).astype(p[0].dtype)), "finite"),
    "infinity in a centroid": (lambda p: replace(p, 0, np.full_like(p[0], np.inf)), "finite"),
    "assignments as int64": (lambda p: replace(p, 1, p[1].astype(np.int64)), "uint8"),
    "assignment buffer one byte short": (lambda p: replace(p, 1, p[1][:-1]), "index buffer"),
    "assignment past the last action": (lambda p: replace(p, 0, p[0][:3]), "past the last action"),
    "more actions than rows": (lambda p: replace(p, 0, np.zeros((8, DIM), np.float16)), "at most one per row"),
    "more actions than the run allows": (
        lambda p: [np.zeros((9, DIM), np.float16), np.zeros(math.ceil(40 * 4 / 8), np.uint8),
                   np.concatenate([[0], np.packbits(np.ones(NUM_ITEMS, np.uint8), bitorder="little")]).astype(np.uint8)],
        "more than this run allows",
    ),
    "unknown id encoding": (lambda p: replace(p, 2, np.concatenate([[7], p[2][1:]]).astype(np.uint8)), "unknown id encoding"),
    "empty id set": (lambda p: replace(p, 2, np.zeros(0, np.uint8)), "non-empty"),
    "id bitmap of the wrong length": (lambda p: replace(p, 2, np.zeros(3, np.uint8)), "id bitmap"),
    "item id beyond the catalogue": (lambda p: replace(p, 2, np.array([1, 60], np.uint8)), "beyond the catalogue"),
    "truncated varint": (lambda p: replace(p, 2, np.array([1, 0x81], np.uint8)), "truncated varint"),
    "oversized upload": (lambda p: replace(p, 0, np.zeros((4, DIM), np.float16)) + [np.zeros(10**6, np.uint8)], "exceeds max-upload-bytes"),
    "object array": (lambda p: replace(p, 0, np.array([object()], dtype=object)), "plain numpy"),
}


@pytest.mark.parametrize("case", list(BAD_FEDRAS), ids=list(BAD_FEDRAS))
def test_malformed_fedras_uploads_are_rejected_with_a_reason(case):
    server, payload = fedras_payload()
    tamper, reason = BAD_FEDRAS[case]
    assert_rejected_without_effect(server, upload(tamper(payload)), reason)


def test_range_coded_symbols_that_lie_are_rejected():
    """A header that claims more ids than the catalogue, or counts that disagree with the decoded symbols."""
    from fedras_flwr.codecs.packing import encode_varints

    server, payload = fedras_payload(entropy_coding="range")
    coded = payload[1]
    assert_rejected_without_effect(server, upload([payload[0], coded[: len(coded) // 2]]), "fedras")
    huge = np.frombuffer(encode_varints(np.array([10**12, 10**12, 0, 0, 0])), np.uint8)
    assert_rejected_without_effect(server, upload([payload[0], np.concatenate([huge, coded[5:]])]), "more ids")


@pytest.mark.parametrize(
    "codec, tamper, reason",
    [
        ("sparse", lambda p: [np.array([3, 3], np.int32), np.ones((2, DIM), np.float32)], "sorted, unique"),
        ("sparse", lambda p: [np.array([5, 3], np.int32), np.ones((2, DIM), np.float32)], "sorted, unique"),
        ("sparse", lambda p: [np.array([-1, 3], np.int32), np.ones((2, DIM), np.float32)], "sorted, unique"),
        ("sparse", lambda p: [p[0], p[1][:-1]], "rows have shape"),
        ("dense", lambda p: [p[0][:-1]], "rows have shape"),
        ("topk", lambda p: replace(p, 1, np.array([10**6], np.uint32)), "positions"),
        ("topk", lambda p: replace(p, 1, p[1].astype(np.int64)), "unsigned"),
        ("svd", lambda p: replace(p, 2, np.ones((1, DIM + 1), np.float32)), "svd"),
        ("colr", lambda p: replace(p, 1, p[1].astype(np.float16)), "colr"),
        ("quant", lambda p: replace(p, 2, p[2][:-1]), "index buffer"),
        ("quant", lambda p: replace(p, 1, np.full_like(p[1], np.nan)), "NaN"),
    ],
)
def test_malformed_baseline_uploads_are_rejected(codec, tamper, reason):
    server, cfg = make_server(codec=codec)
    payload = make_upload_codec(cfg, NUM_ITEMS, DIM).encode(valid_update(), 1)
    assert_rejected_without_effect(server, upload(tamper(payload)), reason)


def test_dense_weights_and_tier_are_checked():
    server, cfg = make_server(codec="sparse", model="neumf", embedding_dim=4, mlp_layers="8,4")
    payload = make_upload_codec(cfg, NUM_ITEMS, server.backbone.item_dim).encode(
        ItemUpdate(np.array([2]), np.ones((1, server.backbone.item_dim), np.float32)), 1
    )
    wrong_shape = [w[..., :1] if w.ndim else w for w in server.dense]
    assert_rejected_without_effect(server, upload(payload, dense=wrong_shape), "dense weights")
    with_nan = [np.full_like(w, np.nan) for w in server.dense]
    assert_rejected_without_effect(server, upload(payload, dense=with_nan), "dense weights")
    hetero_server, hetero_cfg = make_server(codec="sparse", hetero="mixed")
    sparse = make_upload_codec(hetero_cfg, NUM_ITEMS, DIM).encode(valid_update(), 1)
    assert_rejected_without_effect(hetero_server, upload(sparse, tier=17), "tier")


def test_valid_rest_is_aggregated_and_the_bad_one_logged(caplog):
    server, cfg = make_server(codec="fedras")
    codec = make_upload_codec(cfg, NUM_ITEMS, DIM)
    good = [upload(codec.encode(valid_update(seed=s), 1), user=s) for s in (1, 2)]
    bad = upload([np.full((4, DIM), np.nan, np.float16), *codec.encode(valid_update(), 1)[1:]], user=7)
    reference, _ = make_server(codec="fedras")
    reference.aggregate(good, 1)
    stats = server.aggregate([good[0], bad, good[1]], 1)
    assert stats.clients == 2 and stats.rejected == 1 and not stats.skipped
    assert stats.rejections[0][0] == 7 and "finite" in stats.rejections[0][1]
    assert np.array_equal(server.item_table, reference.item_table)
    assert "rejected the upload of user 7" in caplog.text


def test_clip_norm_bounds_each_update():
    server, cfg = make_server(codec="sparse", clip_norm=1.0)
    codec = make_upload_codec(cfg, NUM_ITEMS, DIM)
    start = server.item_table.copy()
    huge = ItemUpdate(np.array([4]), np.full((1, DIM), 1e30, np.float32))
    server.aggregate([upload(codec.encode(huge, 1))], 1)
    assert np.linalg.norm(server.item_table[4].astype(np.float64) - start[4]) == pytest.approx(1.0, rel=1e-5)


def test_an_update_that_would_overflow_the_table_is_rejected_alone():
    server, cfg = make_server(codec="sparse")
    codec = make_upload_codec(cfg, NUM_ITEMS, DIM)
    server.item_table[4] = 3e38
    huge = upload(codec.encode(ItemUpdate(np.array([4]), np.full((1, DIM), 3e38, np.float32)), 1), user=1)
    fine = upload(codec.encode(ItemUpdate(np.array([5]), np.ones((1, DIM), np.float32)), 1), user=2)
    stats = server.aggregate([huge, fine], 1)
    assert stats.clients == 1 and "overflow" in stats.rejections[0][1] and not stats.skipped
    assert np.all(np.isfinite(server.item_table)) and server.item_table[4, 0] == np.float32(3e38)


def test_huge_varint_gaps_are_rejected_not_wrapped():
    """Gaps near 2**63 would overflow the cumulative sum into negative, unsorted ids."""
    from fedras_flwr.codecs.packing import encode_varints

    server, payload = fedras_payload()
    ids = np.frombuffer(bytes([1]) + encode_varints(np.array([5, 2**63 - 2, 2**63 - 2])), np.uint8).copy()
    assert_rejected_without_effect(server, upload(replace(payload, 2, ids)), "beyond the catalogue")


def test_direction_rows_that_overflow_float32_are_rejected():
    server, cfg = make_server(codec="fedras", cluster_on="direction", centroid_dtype="float32")
    payload = make_upload_codec(cfg, NUM_ITEMS, DIM).encode(valid_update(), 1)
    centroids = np.full_like(payload[0], 3e38)
    magnitudes = np.full_like(payload[-1], 65504)
    assert_rejected_without_effect(server, upload([centroids, *payload[1:-1], magnitudes]), "finite")


def test_a_rejected_upload_does_not_move_the_deadline():
    server, cfg = make_server(codec="sparse", hetero="mixed", k_policy="deadline", stragglers="drop")
    codec = make_upload_codec(cfg, NUM_ITEMS, DIM)
    bad = dataclasses.replace(upload([np.array([99], np.int32), np.ones((1, DIM), np.float32)], tier=0), dense_time=1e-9)
    server.aggregate([bad], 1)
    assert server.deadline == float("inf")
    good = dataclasses.replace(upload(codec.encode(valid_update(), 1), tier=0), dense_time=5.0)
    server.aggregate([bad, good], 2)
    assert server.deadline == 5.0


def test_the_actions_downlink_carries_steps_beyond_float16():
    server, cfg = make_server(codec="sparse", downlink="actions")
    codec = make_upload_codec(cfg, NUM_ITEMS, DIM)
    big = ItemUpdate(np.array([3, 4]), np.full((2, DIM), 7e4, np.float32))  # > float16 max, a legal update
    stats = server.aggregate([upload(codec.encode(big, 1))], 1)
    assert not stats.skipped and server.table_version == 1 and np.all(np.isfinite(server.item_table))
    assert server.broadcast(0).arrays[0].dtype == np.float32  # this step's centroids went as float32


@pytest.mark.parametrize(
    "failures, min_fit, skipped",
    [(RoundFailures(4, 2), 1, False), (RoundFailures(4, 3), 1, True), (RoundFailures(4, 0), 3, True)],
)
def test_failed_supernodes_and_min_fit_clients_skip_the_round(failures, min_fit, skipped):
    server, cfg = make_server(codec="sparse", max_failure_fraction=0.5, min_fit_clients=min_fit)
    codec = make_upload_codec(cfg, NUM_ITEMS, DIM)
    before = server.item_table.copy()
    stats = server.aggregate([upload(codec.encode(valid_update(seed=s), 1), user=s) for s in (1, 2)], 1, failures)
    assert bool(stats.skipped) == skipped and stats.clients == 2
    assert server.table_version == (0 if skipped else 1)
    assert np.array_equal(server.item_table, before) == skipped


# -- property-based fuzzing -------------------------------------------------------------------------
DTYPES = ["uint8", "int8", "uint16", "int32", "int64", "uint64", "float16", "float32", "float64", "bool", "complex64", ">f4", ">i8"]
SPECIAL = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e38, -3e38, 65504.0, 1e-45, 255, -1, 2**31, 2**63 - 1]


@st.composite
def random_array(draw) -> np.ndarray:
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = tuple(draw(st.lists(st.integers(0, 6), min_size=0, max_size=3)))
    raw = draw(st.binary(min_size=int(np.prod(shape)) * dtype.itemsize, max_size=int(np.prod(shape)) * dtype.itemsize))
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def mutate(draw, payload: list[np.ndarray]) -> list[np.ndarray]:
    """One to three mutations of a valid payload, each a class of damage a broken or hostile client sends."""
    arrays = [a.copy() for a in payload]
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["replace", "drop", "append", "flip-bytes", "resize", "special", "retype", "swap"]))
        index = draw(st.integers(0, max(len(arrays) - 1, 0)))
        if kind == "drop" and arrays:
            arrays.pop(index)
        elif kind == "append":
            arrays.insert(index, draw(random_array()))
        elif not arrays:
            continue
        elif kind == "replace":
            arrays[index] = draw(random_array())
        elif kind == "flip-bytes" and arrays[index].size:
            raw = bytearray(arrays[index].tobytes())
            for position in draw(st.lists(st.integers(0, len(raw) - 1), min_size=1, max_size=4)):
                raw[position] = draw(st.integers(0, 255))
            arrays[index] = np.frombuffer(bytes(raw), dtype=arrays[index].dtype).reshape(arrays[index].shape).copy()
        elif kind == "resize" and arrays[index].ndim:
            length = draw(st.integers(0, 2 * len(arrays[index]) + 2))
            base = arrays[index]
            arrays[index] = np.resize(base, (length, *base.shape[1:])) if base.size else np.zeros((length, *base.shape[1:]), base.dtype)
        elif kind == "special" and arrays[index].size:
            flat = arrays[index].ravel().copy()
            position = draw(st.integers(0, flat.size - 1))
            with np.errstate(all="ignore"):
                try:
                    flat[position] = draw(st.sampled_from(SPECIAL))
                except (OverflowError, ValueError):
                    flat[position] = 0
            arrays[index] = flat.reshape(arrays[index].shape)
        elif kind == "retype":
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", np.exceptions.ComplexWarning)
                arrays[index] = arrays[index].astype(draw(st.sampled_from(DTYPES)))
        elif kind == "swap" and len(arrays) > 1:
            other = draw(st.integers(0, len(arrays) - 1))
            arrays[index], arrays[other] = arrays[other], arrays[index]
    return arrays


@st.composite
def malformed_upload(draw, codec) -> UserUpload:
    count = draw(st.integers(0, 12))
    ids = np.array(sorted(draw(st.sets(st.integers(0, NUM_ITEMS - 1), min_size=count, max_size=count))), np.int64)
    rows = np.random.default_rng(draw(st.integers(0, 2**16))).standard_normal((len(ids), DIM)).astype(np.float32)
    payload = codec.encode(ItemUpdate(ids, rows), 1)
    return upload(mutate(draw, payload), user=draw(st.integers(0, 9)))


def check_decoded(update: ItemUpdate) -> None:
    assert update.ids.dtype == np.int64 and update.rows.dtype == np.float32
    assert update.rows.shape == (len(update.ids), DIM) and np.all(np.isfinite(update.rows))
    assert np.all(np.diff(update.ids) > 0) and (len(update.ids) == 0 or 0 <= update.ids[0] <= update.ids[-1] < NUM_ITEMS)


@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_fuzzed_uploads_never_crash_nor_move_the_global_state(variant):
    """>= 1,000 malformed uploads per codec: each is either rejected (PayloadError) with the global
    state bit-identical, or - when the damage happens to leave a well-formed upload - decodes to a
    valid update and keeps the table finite."""
    server, cfg = make_server(**variant)
    codec = make_upload_codec(cfg, NUM_ITEMS, DIM)
    outcomes = {"rejected": 0, "accepted": 0}

    @settings(max_examples=1000, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(malformed_upload(codec))
    def check(bad: UserUpload) -> None:
        before = global_state(server)
        try:
            decoded = server.validator.validate(bad, 1, server.item_table, server.dense).decoded
        except PayloadError:
            outcomes["rejected"] += 1
            stats = server.aggregate([bad], 1)
            assert stats.rejected == 1 and stats.skipped
            assert all(np.array_equal(a, b) for a, b in zip(before, global_state(server)))
            return
        outcomes["accepted"] += 1
        check_decoded(decoded)
        server.aggregate([bad], 1)
        assert np.all(np.isfinite(server.item_table))

    check()
    assert outcomes["rejected"] + outcomes["accepted"] >= 1000
    assert outcomes["rejected"] > outcomes["accepted"]  # the fuzzer mostly produces damage, not valid uploads


@st.composite
def broken_reply(draw, codec, users: list[int]):
    """A SuperNode reply (arrays + metrics) for `users` with fields dropped, resized or replaced."""
    updates = [UserUpload(u, codec.encode(valid_update(seed=u), 1), [], 10, 0.5, 0.0) for u in users]
    arrays, metrics = pack_updates(FitOutcome(updates, [2]), codec)
    for key in draw(st.lists(st.sampled_from(sorted(metrics)), max_size=3)):
        metrics[key] = draw(st.one_of(
            st.binary(max_size=40), st.integers(), st.floats(), st.text(max_size=8), st.none(),
            st.just(np.array(draw(st.lists(st.integers(-5, 12), max_size=4)), "<i8").tobytes()),
            st.just(np.array(draw(st.lists(st.floats(allow_nan=True), max_size=4)), "<f8").tobytes()),
        ))
    return mutate(draw, arrays) if draw(st.booleans()) else arrays, metrics


@settings(max_examples=1000, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_fuzzed_replies_are_refused_or_well_formed(data):
    """A whole SuperNode reply, fuzzed: unpacking raises WireError or yields only asked users with
    positive example counts and finite scalars (their payloads then go through `validate`)."""
    server, cfg = make_server(codec="fedras")
    codec = make_upload_codec(cfg, NUM_ITEMS, DIM)
    arrays, metrics = data.draw(broken_reply(codec, [1, 4, 7]))
    try:
        outcome = unpack_updates(arrays, metrics, codec, 0, {1, 2, 4, 7})
    except WireError:
        return
    updates = outcome.updates
    named = [u.user for u in updates] + outcome.failed_users
    assert len(set(named)) == len(named) and set(named) <= {1, 2, 4, 7}
    assert all(u.num_examples > 0 and math.isfinite(u.train_loss) and u.sim_time >= 0 for u in updates)
    before = global_state(server)
    stats = server.aggregate(updates, 1)
    if stats.skipped:
        assert all(np.array_equal(a, b) for a, b in zip(before, global_state(server)))


@pytest.mark.parametrize("policy, accepted", [("fixed", False), ("deadline", True)])
def test_an_upload_may_carry_at_most_the_actions_its_k_policy_can_choose(policy, accepted):
    """Under `fixed` the limit is num-actions (4), whatever downlink-actions (8); an adaptive policy
    allows its largest candidate (8)."""
    server, cfg = make_server(codec="fedras", k_policy=policy)
    payload = make_upload_codec(cfg, NUM_ITEMS, DIM).encode(valid_update(), 1, num_actions=5)
    assert len(payload[0]) == 5
    stats = server.aggregate([upload(payload)], 1)
    if accepted:
        assert stats.clients == 1 and stats.rejected == 0
    else:
        assert stats.rejected == 1 and "5 actions, more than this run allows (4)" in stats.rejections[0][1]
