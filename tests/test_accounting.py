"""Byte accounting is exact and per client (user), both ways: every upload counts what its user
serializes (codec arrays and dense weights), every user counts what it downloads (training and
evaluation), the references are wire sizes of their reference payloads, and summaries take reductions
from the cumulative bytes."""

import json

import numpy as np
import pytest
from conftest import tiny_config
from flwr.common import ndarrays_to_parameters

from fedras_flwr.algorithm.components import ByteReferences
from fedras_flwr.algorithm.data import load_split
from fedras_flwr.algorithm.server import FederatedServer
from fedras_flwr.algorithm.user_round import UserWorker
from fedras_flwr.algorithm.user_state import MemoryUserStore
from fedras_flwr.tooling.inprocess import run_inprocess


def records_of(cfg):
    return [json.loads(line) for line in open(f"{cfg.out_dir}/rounds.jsonl").read().splitlines()]


@pytest.mark.parametrize("model, codec", [("neumf", "fedras"), ("neumf", "dense"), ("mf", "quant")])
def test_up_bytes_are_what_each_user_serializes(tmp_path, model, codec):
    """up-bytes = the user's arrays as Flower serializes them (codec arrays + dense weights)."""
    cfg = tiny_config(tmp_path, model=model, codec=codec, lr=0.0)
    split = load_split(cfg)
    server = FederatedServer(cfg, split.num_items, range(split.num_users))
    worker = UserWorker(cfg, split)
    outcome = worker.fit([0, 1, 2, 3], server.global_arrays(), 1, MemoryUserStore())
    serialized = [
        sum(len(t) for t in ndarrays_to_parameters([*u.payload, *u.dense]).tensors) for u in outcome.updates
    ]
    weights = [sum(len(t) for t in ndarrays_to_parameters(u.dense).tensors) for u in outcome.updates]
    for update, size, weight_size in zip(outcome.updates, serialized, weights):  # user by user
        uploads = FederatedServer(cfg, split.num_items, range(split.num_users)).aggregate([update], 1).uploads
        assert (uploads.count, uploads.total, uploads.weights) == (1, size, weight_size)
    stats = server.aggregate(outcome.updates, 1)
    assert stats.uploads.count == 4 and stats.uploads.total == sum(serialized)
    assert (stats.uploads.weights > 0) == (model == "neumf")


@pytest.mark.parametrize("model", ["mf", "neumf"])
def test_reference_runs_are_exactly_zero_percent_below_their_reference(tmp_path, model):
    dense = run_inprocess(tiny_config(tmp_path / "d", model=model, codec="dense", lr=0.0))
    sparse = run_inprocess(tiny_config(tmp_path / "s", model=model, codec="sparse", lr=0.0))
    assert dense["up-reduction-dense"] == 0.0 and sparse["up-reduction-sparse"] == 0.0
    for record in records_of(tiny_config(tmp_path / "d")):
        assert record["up-reduction-dense"] == 0.0 and record["up-bytes"] == record["up-bytes-dense-ref"]
    for record in records_of(tiny_config(tmp_path / "s")):
        assert record["up-reduction-sparse"] == 0.0


def test_dense_downlink_is_counted_per_user_in_training_and_evaluation(tmp_path):
    """Every sampled user downloads the whole table (and dense weights) to train, every user to be
    evaluated: total down = (trained + evaluated users) x the table's wire size, and >= total up."""
    cfg = tiny_config(tmp_path, model="neumf", codec="dense", lr=0.0, num_server_rounds=4, eval_every=2)
    summary = run_inprocess(cfg)
    table = ByteReferences.for_run(cfg, summary["num-items"]).dense  # float32 table + float32 weights
    downloads = cfg.num_server_rounds * cfg.clients_per_round + 2 * summary["num-users"]
    assert summary["total-down-bytes"] == downloads * table
    assert summary["total-eval-down-bytes"] == 2 * summary["num-users"] * table
    assert summary["total-down-bytes"] >= summary["total-up-bytes"]
    assert summary["time-to-target"] is None  # no simulated clock without a heterogeneity scenario
    records = records_of(cfg)
    assert [r["round"] for r in records] == [1, 2, 3, 4]  # a record every round ...
    assert ["hr@10" in r for r in records] == [False, True, False, True]  # ... metrics on evaluation rounds
    assert all(r["down-bytes"] == table and r["down-users"] == cfg.clients_per_round for r in records)
    assert [r.get("eval-down-bytes") for r in records] == [None, table, None, table]


def test_summary_reductions_come_from_the_cumulative_bytes(tmp_path):
    cfg = tiny_config(tmp_path, codec="fedras", num_actions=2, hetero="mixed", k_policy="deadline", stragglers="drop")
    summary = run_inprocess(cfg)
    expected = 100 * (1 - summary["total-up-bytes"] / summary["total-up-bytes-dense-ref"])
    assert summary["up-reduction-dense"] == pytest.approx(expected, rel=1e-12)
    records = records_of(cfg)
    assert summary["total-up-bytes"] == pytest.approx(sum(r["up-bytes"] * r["uploads"] for r in records), rel=1e-12)
    assert sum(r["stragglers"] for r in records) > 0 and all(r["uploads"] == cfg.clients_per_round for r in records)


def test_actions_downlink_counts_what_each_user_lacks(tmp_path):
    """downlink=actions: a user holding the previous table downloads the step, one holding the current
    table only the dense weights (nothing for MF), any other the full table, however users share nodes."""
    cfg = tiny_config(tmp_path, codec="fedras", downlink="actions", downlink_actions=8, num_server_rounds=3,
                      eval_every=2, clients_per_round=24)
    summary = run_inprocess(cfg)
    table = ByteReferences.for_run(cfg, summary["num-items"]).dense
    first, second, third = records_of(cfg)
    assert first["down-bytes"] == table  # nobody holds a table yet
    assert 0 < second["down-bytes"] < table / 4  # everyone holds round 1's table: the step
    assert 0 < second["eval-down-bytes"] < table / 4  # evaluation: the step again
    assert third["down-bytes"] == 0  # evaluation left everyone with the current table
    assert summary["total-down-bytes"] == sum(
        r["down-bytes"] * r["down-users"] + r.get("eval-down-bytes", 0) * summary["num-users"] for r in (first, second, third)
    )


def test_entropy_gain_compares_the_coded_symbols_with_their_plain_layout(tmp_path):
    """The gain is measured on the symbols (ids and assignments), not on a header fewer."""
    cfg = tiny_config(tmp_path, codec="fedras", num_actions=4, entropy_coding="range")
    split = load_split(cfg)
    server = FederatedServer(cfg, split.num_items, range(split.num_users))
    worker = UserWorker(cfg, split)
    plain_worker = UserWorker(cfg.replace(entropy_coding="none"), split)
    users = [0, 1, 2, 3]
    coded = worker.fit(users, server.global_arrays(), 1, MemoryUserStore()).updates
    plain = plain_worker.fit(users, server.global_arrays(), 1, MemoryUserStore()).updates  # the same clusters
    uploads = server.aggregate(coded, 1).uploads
    assert uploads.symbols == sum(u.payload[1].nbytes for u in coded)
    assert uploads.symbols_plain == sum(u.payload[1].nbytes + u.payload[2].nbytes for u in plain)
    run_inprocess(cfg.replace(num_server_rounds=2))
    for record in records_of(cfg):
        assert record["entropy-gain"] == pytest.approx(100 * (1 - record["symbol-bytes"] / record["symbol-bytes-plain"]))


def test_up_bytes_feed_the_clock_and_the_k_policy(tmp_path):
    """NeuMF's dense weights are part of the simulated upload time and of the target-ratio budget."""
    cfg = tiny_config(tmp_path, model="neumf", lr=0.0, codec="fedras", hetero="homogeneous", hetero_jitter=0.0,
                      k_policy="target-ratio", k_candidates="2,4,8,16,32", dense_upload="float32")
    split = load_split(cfg)
    server = FederatedServer(cfg, split.num_items, range(split.num_users))
    worker = UserWorker(cfg, split)
    [update] = worker.fit([0], server.global_arrays(), 1, MemoryUserStore()).updates
    weight_bytes = sum(len(t) for t in ndarrays_to_parameters(update.dense).tensors)
    up_bytes = weight_bytes + sum(len(t) for t in ndarrays_to_parameters(update.payload).tensors)
    profile = worker.hetero.jittered(worker.profile(0), 0, 1)
    examples = len(split.users[0].train_items) * (1 + cfg.num_negatives)
    rows, k = len(worker.codec.decode(update.payload, 1).ids), len(update.payload[0])
    assert update.sim_time == pytest.approx(worker.hetero.seconds(profile, 0, examples, worker.codec.encode_flops(rows, k), up_bytes))
    # the float32 weights alone exceed 1 % of the dense reference here: no K fits, the smallest is taken
    assert weight_bytes > cfg.target_ratio * worker.references.dense and k == 2


def test_byte_references_match_numpy_serialization():
    from io import BytesIO

    def npy(array):
        buffer = BytesIO()
        np.save(buffer, array, allow_pickle=False)
        return len(buffer.getvalue())

    refs = ByteReferences(num_items=1682, item_dim=64, weights=1000)
    assert refs.dense == npy(np.zeros((1682, 64), np.float32)) + 1000
    assert refs.sparse(37) == npy(np.zeros(37, np.int32)) + npy(np.zeros((37, 64), np.float32)) + 1000
