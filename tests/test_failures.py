"""Devices the server does not control, through the real Flower stack: a SuperNode that raises, one
that answers late, and one that returns garbage do not stop the run; each is counted and logged."""

import io
import json
import logging
import time
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import tiny_config
from flwr.client import ClientApp
from flwr.common import Code, FitRes, Parameters, Status
from flwr.simulation import run_simulation

from fedras_flwr.algorithm.round_messages import FitOutcome, UserUpload
from fedras_flwr.codecs import ItemUpdate
from fedras_flwr.flower.numpy_client import FedRASClient, cached_worker
from fedras_flwr.flower.server_app import make_server_app
from fedras_flwr.flower.strategy import FedRASStrategy
from fedras_flwr.flower.wire import pack_updates
from fedras_flwr.tooling.session import ServerSession, find_resume_point


class CrashingClient(FedRASClient):
    """Its device fails in every training round."""

    def fit(self, parameters, config):
        raise RuntimeError("device crashed")


class GarbageClient(FedRASClient):
    """Trains, then sends NaN centroids: every upload it carries must be rejected."""

    def fit(self, parameters, config):
        arrays, examples, metrics = super().fit(parameters, config)
        return [np.full_like(a, np.nan) if a.dtype.kind == "f" else a for a in arrays], examples, metrics


class SlowClient(FedRASClient):
    """Answers after the round timeout in round 2 only."""

    def fit(self, parameters, config):
        if int(config["server-round"]) == 2:
            time.sleep(30)
        return super().fit(parameters, config)


class DivergingUserClient(FedRASClient):
    """Hosts user 1, whose training diverges every round (its copy of the table is corrupt)."""

    def fit(self, parameters, config):
        train_one = self.worker._fit_user

        def fit_user(user, global_arrays, *args):
            if user == 1:
                global_arrays = [np.full_like(global_arrays[0], np.nan), *global_arrays[1:]]
            return train_one(user, global_arrays, *args)

        self.worker._fit_user = fit_user
        try:
            return super().fit(parameters, config)
        finally:
            del self.worker._fit_user


def faulty_client_app(cfg, kinds: dict[int, type[FedRASClient]]) -> ClientApp:
    def client_fn(context):
        partition, partitions = int(context.node_config["partition-id"]), int(context.node_config["num-partitions"])
        kind = kinds.get(partition, FedRASClient)
        return kind(cached_worker(cfg, dict(context.node_config)), partition, partitions, context).to_client()

    return ClientApp(client_fn=client_fn)


def test_crashing_late_and_garbage_supernodes_do_not_stop_the_run(tmp_path):
    cfg = tiny_config(tmp_path, codec="fedras", num_server_rounds=3, clients_per_round=24, eval_every=1,
                      max_failure_fraction=0.7, round_timeout=20.0)
    logging.getLogger("flwr").setLevel(logging.WARNING)
    run_simulation(
        server_app=make_server_app(cfg),
        client_app=faulty_client_app(cfg, {1: CrashingClient, 2: GarbageClient, 3: SlowClient}),
        num_supernodes=4,
        backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}, "init_args": {"num_cpus": 4}},
    )
    out = tmp_path / "out"
    records = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    assert [r["round"] for r in records] == [1, 2, 3]
    assert [r["failed-supernodes"] for r in records] == [1, 2, 1]  # the crashing node; in round 2 the late one too
    assert all(r["rejected-clients"] == 6 for r in records)  # the garbage node's 6 users, every round
    assert [r["clients"] for r in records] == [12, 6, 12]  # the healthy nodes' users
    assert not any(r["skipped"] for r in records) and all("hr@10" in r for r in records)
    incidents = [json.loads(line) for line in (out / "incidents.jsonl").read_text().splitlines()]
    rejected = [i for i in incidents if i["kind"] == "rejected-upload"]
    assert len(rejected) == 18 and all("finite" in i["reason"] for i in rejected)
    assert {i["user"] % 4 for i in rejected} == {2}  # partition 2 hosts users 2, 6, 10, ...
    summary = json.loads((out / "summary.json").read_text())
    assert summary["total-failed-supernodes"] == 4 and summary["total-lost-users"] == 24
    assert summary["total-rejected"] == 18 and summary["skipped-rounds"] == 0


def test_a_diverging_user_is_counted_and_its_node_still_lands(tmp_path):
    """User 1 diverges on partition 1: it is skipped and counted (`failed-users`), its node is not a
    failed node, and the node's other users' updates land; nothing reaches k-means or the table."""
    cfg = tiny_config(tmp_path, codec="fedras", num_server_rounds=2, clients_per_round=24, eval_every=2)
    logging.getLogger("flwr").setLevel(logging.WARNING)
    run_simulation(
        server_app=make_server_app(cfg),
        client_app=faulty_client_app(cfg, {1: DivergingUserClient}),
        num_supernodes=2,
        backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}, "init_args": {"num_cpus": 2}},
    )
    out = tmp_path / "out"
    records = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    assert [(r["failed-users"], r["clients"], r["failed-supernodes"], r["lost-users"]) for r in records] == [(1, 23, 0, 0)] * 2
    assert json.loads((out / "summary.json").read_text())["total-failed-users"] == 2
    assert records[-1]["hr@10"] is not None


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


HUGE_HEADER = npy_bytes(np.zeros(1, np.float32)).replace(b"(1,)", b"(4611686018427387904,)")
BROKEN_TENSORS = {"empty": b"", "zip": b"PK\x03\x04 not an npy", "huge shape": HUGE_HEADER, "pickle": b"\x80\x04N."}


@pytest.mark.parametrize("tensor", list(BROKEN_TENSORS.values()), ids=list(BROKEN_TENSORS))
def test_undecodable_reply_bytes_count_the_node_as_failed(tmp_path, tensor):
    """The arrays of a reply are the client's bytes: whatever they hold, that node fails alone."""
    cfg = tiny_config(tmp_path, codec="sparse", eval_every=2)  # round 1 is recorded when training ends
    strategy = FedRASStrategy(cfg)
    strategy.session = ServerSession(cfg, 200, range(24), {})
    strategy._asked = {"good": [1, 3], "bad": [2]}
    codec = strategy.session.server.codec
    update = UserUpload(1, codec.encode(ItemUpdate(np.array([5]), np.ones((1, 8), np.float32)), 1), [], 10, 0.5, 0.0)
    arrays, metrics = pack_updates(FitOutcome([update]), codec)
    good = FitRes(Status(Code.OK, ""), Parameters([npy_bytes(a) for a in arrays], "numpy.ndarray"), 10, metrics)
    bad = FitRes(Status(Code.OK, ""), Parameters([tensor], "numpy.ndarray"), 10, metrics | {"users": np.array([2]).tobytes()})
    before = strategy.session.server.item_table.copy()
    _, result = strategy.aggregate_fit(1, [(SimpleNamespace(cid="good"), good), (SimpleNamespace(cid="bad"), bad)], [])
    assert result["failed-supernodes"] == 1 and result["clients"] == 1 and not result["skipped"]
    assert not np.array_equal(strategy.session.server.item_table[5], before[5])  # the good node's update landed
    lost = strategy.session.recorder.incidents[-1]
    assert lost["kind"] == "failed-supernodes" and lost["users_lost"] == 2  # user 3 never came back, user 2 broken


def test_a_reply_that_reports_diverged_users_is_not_a_failed_node(tmp_path):
    cfg = tiny_config(tmp_path, codec="sparse", eval_every=2)
    strategy = FedRASStrategy(cfg)
    strategy.session = ServerSession(cfg, 200, range(24), {})
    strategy._asked = {"a": [1, 3], "b": [2]}
    codec = strategy.session.server.codec
    update = UserUpload(1, codec.encode(ItemUpdate(np.array([5]), np.ones((1, 8), np.float32)), 1), [], 10, 0.5, 0.0)
    replies = []
    for cid, outcome in (("a", FitOutcome([update], [3])), ("b", FitOutcome([], [2]))):
        arrays, metrics = pack_updates(outcome, codec)
        replies.append((SimpleNamespace(cid=cid), FitRes(Status(Code.OK, ""), Parameters([npy_bytes(a) for a in arrays], "numpy.ndarray"), 10, metrics)))
    _, result = strategy.aggregate_fit(1, replies, [])
    assert result["failed-supernodes"] == 0 and result["failed-users"] == 2 and result["clients"] == 1


def test_nodes_that_do_not_confirm_their_snapshot_are_named_in_the_checkpoint(tmp_path, caplog):
    cfg = tiny_config(tmp_path, codec="sparse", eval_every=5, checkpoint_every=1)
    strategy = FedRASStrategy(cfg)
    strategy.session = ServerSession(cfg, 200, range(24), {})
    strategy.proxies = {"a": None, "b": None, "c": None}
    strategy.partition_of = {"a": 0, "b": 1, "c": 2}
    replies = [(SimpleNamespace(cid="a"), SimpleNamespace(metrics={"snapshot": 1})),
               (SimpleNamespace(cid="b"), SimpleNamespace(metrics={"snapshot": 0}))]  # c did not answer at all
    missing = strategy._missing_snapshots(replies, asked=True)
    assert missing == [1, 2] and strategy._missing_snapshots(replies, asked=False) == []
    strategy.session.end_training(1, [], missing_snapshots=missing)
    resumed = ServerSession(cfg.replace(num_server_rounds=4), 200, range(24), {},
                            find_resume_point(cfg.replace(resume=cfg.out_dir, num_server_rounds=4)))
    assert resumed.start_round == 1 and "nodes [1, 2] did not confirm" in caplog.text
