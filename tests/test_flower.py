"""The Flower layer end to end (run_simulation with the real ServerApp/ClientApp code) and its wire
format: identical metrics for any number of SuperNodes, result files, broken replies dropped."""

import json
import logging

import numpy as np
import pytest
from conftest import tiny_config
from flwr.simulation import run_simulation

from fedras_flwr.algorithm.components import make_upload_codec
from fedras_flwr.algorithm.evaluation import UserRanks
from fedras_flwr.algorithm.metrics import hit_ratio
from fedras_flwr.algorithm.round_messages import FitOutcome, UserUpload
from fedras_flwr.codecs import ItemUpdate
from fedras_flwr.flower.client_app import make_client_app
from fedras_flwr.flower.server_app import make_server_app
from fedras_flwr.flower.wire import WireError, pack_ranks, pack_updates, unpack_ranks, unpack_updates
from fedras_flwr.tooling.inprocess import run_inprocess
from fedras_flwr.tooling.results import read_test_ranks

REQUIRED_KEYS = {
    "round", "hr@10", "ndcg@10", "hr@10-full", "ndcg@10-full", "train-loss", "up-bytes", "down-bytes",
    "up-bytes-dense-ref", "up-bytes-sparse-ref", "up-reduction-dense", "wall-time",
}


def simulate(cfg, supernodes):
    logging.getLogger("flwr").setLevel(logging.WARNING)
    run_simulation(
        server_app=make_server_app(cfg),
        client_app=make_client_app(cfg),
        num_supernodes=supernodes,
        backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}, "init_args": {"num_cpus": 2}},
    )
    lines = (cfg.out_dir and open(f"{cfg.out_dir}/rounds.jsonl").read().splitlines()) or []
    return [json.loads(line) for line in lines]


def metrics_only(records):
    """Everything but timing: metrics, and bytes up and down (counted per user, however users share nodes)."""
    return [{k: v for k, v in r.items() if k != "wall-time"} for r in records]


@pytest.fixture(scope="module")
def two_node_run(tmp_path_factory):
    cfg = tiny_config(tmp_path_factory.mktemp("two"), codec="fedras", num_actions=4, error_feedback=True,
                      downlink="actions", downlink_actions=16, eval_every=2)
    return cfg, simulate(cfg, 2)


def test_results_files(two_node_run):
    cfg, records = two_node_run
    assert [r["round"] for r in records] == [1, 2, 3]
    assert REQUIRED_KEYS <= set(records[-1]) and "hr@10" not in records[0]
    table_bytes = records[0]["up-bytes-dense-ref"]  # MF: the float32 table is the whole dense upload
    assert records[0]["down-bytes"] == table_bytes  # round 1: nobody holds a table
    assert 0 < records[1]["eval-down-bytes"] < table_bytes  # round 2: many users hold round 1's table: a step
    assert records[2]["down-bytes"] == 0  # round 3: everyone was evaluated in round 2 and holds the current table
    summary = json.load(open(f"{cfg.out_dir}/summary.json"))
    assert summary["config"]["codec"] == "fedras" and summary["supernodes"] == 2
    assert records[-1]["mean-k"] == 4 and 0 < records[-1]["recon-error"] < 1
    assert records[-1]["up-bytes"] < records[-1]["up-bytes-sparse-ref"] < records[-1]["up-bytes-dense-ref"]
    assert summary["final"]["hr@10"] == records[-1]["hr@10"]
    assert summary["total-up-bytes"] == records[-1]["total-up-bytes"] == sum(r["up-bytes"] * r["clients"] for r in records)
    assert summary["best-val"]["round"] in (2, 3)
    ranks = read_test_ranks(cfg.out_dir)  # every user's last-round ranks: the final metrics, user by user
    assert sorted(ranks) == list(range(cfg.synthetic_users))
    assert hit_ratio(np.array([sampled for sampled, _ in ranks.values()]), 10) == summary["final"]["hr@10"]
    assert hit_ratio(np.array([full for _, full in ranks.values()]), 10) == summary["final"]["hr@10-full"]


def test_same_metrics_for_any_number_of_supernodes(two_node_run, tmp_path):
    cfg, records = two_node_run
    one_per_user = simulate(cfg.replace(out_dir=str(tmp_path / "per-user")), cfg.synthetic_users)
    assert metrics_only(one_per_user) == metrics_only(records)


def test_flower_matches_the_in_process_loop(two_node_run, tmp_path):
    cfg, records = two_node_run
    run_inprocess(cfg.replace(out_dir=str(tmp_path / "inproc")))
    inproc = [json.loads(x) for x in open(tmp_path / "inproc" / "rounds.jsonl").read().splitlines()]
    assert metrics_only(inproc) == metrics_only(records)
    assert read_test_ranks(tmp_path / "inproc") == read_test_ranks(cfg.out_dir)


def test_learning_happens_on_synthetic(tmp_path):
    """Twelve rounds on a small synthetic set lift HR@10 well above the untrained model."""
    cfg = tiny_config(tmp_path, synthetic_users=150, synthetic_items=300, synthetic_mean_interactions=40,
                      num_server_rounds=15, clients_per_round=150, eval_every=15, embedding_dim=16)
    untrained = run_inprocess(cfg.replace(num_server_rounds=1, eval_every=1, lr=1e-9, out_dir=str(tmp_path / "u")))
    trained = run_inprocess(cfg)
    assert trained["final"]["hr@10"] > untrained["final"]["hr@10"] + 0.1


# -- the wire format between a SuperNode and the strategy -------------------------------------------
def make_updates(codec, users):
    out = []
    for user in users:
        update = ItemUpdate(np.array([1, 3], dtype=np.int64), np.full((2, 4), user, dtype=np.float32))
        out.append(UserUpload(user, codec.encode(update, 1), [], 10 + user, 0.1 * user, 0.0))
    return out


def test_updates_round_trip_over_the_wire():
    codec = make_upload_codec(tiny_config_like(), 5, 4)
    updates = make_updates(codec, [4, 7])
    arrays, metrics = pack_updates(FitOutcome(updates, [9]), codec)
    outcome = unpack_updates(arrays, metrics, codec, 0, {4, 7, 9})
    back = outcome.updates
    assert [u.user for u in back] == [4, 7] and back[1].num_examples == 17 and outcome.failed_users == [9]
    assert all(np.array_equal(a, b) for u, v in zip(updates, back) for a, b in zip(u.payload, v.payload))


def tiny_config_like():
    from fedras_flwr.config import RunConfig

    return RunConfig(codec="sparse")


@pytest.mark.parametrize(
    "tamper, message",
    [
        (lambda a, m: (a[:-1], m), "arrays for 2 users"),
        (lambda a, m: (a, {**m, "users": np.array([4, 9], "<i8").tobytes()}), "not asked for"),
        (lambda a, m: (a, {**m, "users": np.array([4, 4], "<i8").tobytes()}), "not asked for, or names one twice"),
        (lambda a, m: (a, {**m, "failed-users": np.array([4], "<i8").tobytes()}), "names one twice"),
        (lambda a, m: (a, {**m, "num-examples": b"xyz"}), "byte string"),
        (lambda a, m: (a, {**m, "train-loss": np.array([0.1, np.nan]).tobytes()}), "finite"),
        (lambda a, m: (a, {k: v for k, v in m.items() if k != "users"}), "users"),
        (lambda a, m: (a, {**m, "codec": "sparse/2"}), "this run expects 'sparse/1'"),
        (lambda a, m: (a, {**m, "codec": "fedras/1"}), "encoded with codec 'fedras/1'"),
        (lambda a, m: (a, {k: v for k, v in m.items() if k != "codec"}), "encoded with codec None"),
    ],
)
def test_broken_replies_are_refused(tamper, message):
    codec = make_upload_codec(tiny_config_like(), 5, 4)
    arrays, metrics = tamper(*pack_updates(FitOutcome(make_updates(codec, [4, 7])), codec))
    with pytest.raises(WireError, match=message):
        unpack_updates(arrays, metrics, codec, 0, {4, 7})


def test_ranks_round_trip_and_must_cover_the_node():
    ranks = [UserRanks(1, 2, 3, 4), UserRanks(0, 0, 5, 9)]
    packed = pack_ranks([2, 5], ranks)
    assert unpack_ranks(packed, {2, 5}, 10) == {2: ranks[0], 5: ranks[1]}
    with pytest.raises(WireError):
        unpack_ranks(packed, {2, 5, 8}, 10)
    with pytest.raises(WireError, match="ranks must lie"):
        unpack_ranks(packed, {2, 5}, 9)
