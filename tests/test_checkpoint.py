"""Checkpoints: atomic, verified snapshots, and a resumed run that ends exactly where an uninterrupted
one does (in process and through Flower)."""

import json

import numpy as np
import pytest
from conftest import tiny_config
from test_flower import simulate

from fedras_flwr.config import ConfigError
from fedras_flwr.flower.strategy import FedRASStrategy
from fedras_flwr.tooling import checkpoint
from fedras_flwr.tooling.checkpoint import CheckpointError, SnapshotFolder, read_snapshot
from fedras_flwr.tooling.inprocess import run_inprocess
from fedras_flwr.tooling.results import read_test_ranks
from fedras_flwr.tooling.session import ServerSession, find_resume_point, run_key


def arrays(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"table": rng.standard_normal((5, 3)).astype(np.float32), "user/1/vector": np.arange(4)}


def test_snapshots_round_trip_and_only_the_newest_are_kept(tmp_path):
    folder = SnapshotFolder(tmp_path / "snaps", keep=2)
    for r in (2, 4, 6):
        folder.write(r, arrays(r), {"note": "x"})
    assert folder.rounds() == [4, 6]
    meta, back = folder.read(6)
    assert meta["round"] == 6 and meta["note"] == "x"
    assert all(np.array_equal(back[k], v) for k, v in arrays(6).items())


def test_a_crash_mid_write_leaves_the_previous_snapshot(tmp_path, monkeypatch):
    folder = SnapshotFolder(tmp_path)
    folder.write(2, arrays(2), {})

    def dies_half_way(handle, **_):
        handle.write(b"PK\x03\x04 partial")
        raise KeyboardInterrupt  # the process is killed while writing

    monkeypatch.setattr(checkpoint.np, "savez", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        folder.write(4, arrays(4), {})
    assert folder.rounds() == [2] and [p.name for p in tmp_path.iterdir()] == ["round-000002.npz"]
    assert np.array_equal(folder.read(2)[1]["table"], arrays(2)["table"])


def test_truncated_or_altered_checkpoints_are_detected(tmp_path):
    folder = SnapshotFolder(tmp_path)
    path = folder.write(2, arrays(2), {})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        read_snapshot(path)
    other = folder.write(4, arrays(4), {})
    forged = {**arrays(4), "table": np.zeros((5, 3), np.float32)}
    np.savez(other, __meta__=np.frombuffer(json.dumps(read_snapshot(other)[0]).encode(), np.uint8), **forged)
    with pytest.raises(CheckpointError, match="checksum"):
        read_snapshot(other)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        read_snapshot(tmp_path / "round-000009.npz")


def crash_at(monkeypatch, server_round: int) -> None:
    """Kill the in-process run when it starts `server_round` (after the checkpoints before it)."""
    original = ServerSession.begin_round

    def begin_round(self, r):
        if r == server_round:
            raise KeyboardInterrupt(f"crash before round {r}")
        return original(self, r)

    monkeypatch.setattr(ServerSession, "begin_round", begin_round)


def comparable(out_dir):
    """The records without wall time: every byte, simulated second and metric must match."""
    return [{k: v for k, v in json.loads(line).items() if k != "wall-time"} for line in open(out_dir / "rounds.jsonl")]


@pytest.mark.parametrize(
    "changes",
    [
        {"codec": "fedras", "error_feedback": True, "downlink": "actions", "downlink_actions": 16},
        {"codec": "fedras", "hetero": "mixed", "k_policy": "deadline", "stragglers": "drop", "model": "neumf"},
        {"codec": "fedras", "hetero": "mixed", "k_policy": "deadline", "downlink": "actions", "downlink_actions": 16},
    ],
    ids=["error-feedback+actions-downlink", "hetero-deadline-neumf", "hetero-deadline+actions-downlink"],
)
def test_resumed_in_process_run_equals_the_uninterrupted_one(tmp_path, monkeypatch, changes):
    cfg = tiny_config(tmp_path, num_server_rounds=6, eval_every=3, checkpoint_every=2, **changes)
    whole = run_inprocess(cfg.replace(out_dir=str(tmp_path / "whole")))
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / "test-ranks.csv").write_text("an older run's ranks")
    with monkeypatch.context() as patch:
        crash_at(patch, 6)
        with pytest.raises(KeyboardInterrupt):
            run_inprocess(cfg.replace(out_dir=str(tmp_path / "cut")))
    assert SnapshotFolder(tmp_path / "cut" / "checkpoints").rounds() == [2, 4]
    assert not (tmp_path / "cut" / "test-ranks.csv").exists()  # not this run's: it has no last round yet
    resumed = run_inprocess(cfg.replace(out_dir="", resume=str(tmp_path / "cut")))
    assert resumed["out-dir"] == str(tmp_path / "cut") and resumed["resumed-from"].endswith("round-000004.npz")
    assert resumed["final"] == whole["final"] and resumed["total-up-bytes"] == whole["total-up-bytes"]
    assert comparable(tmp_path / "cut") == comparable(tmp_path / "whole")
    assert read_test_ranks(tmp_path / "cut") == read_test_ranks(tmp_path / "whole")


def test_resume_into_a_new_out_dir_reads_the_old_snapshots(tmp_path, monkeypatch):
    cfg = tiny_config(tmp_path, num_server_rounds=4, eval_every=4, checkpoint_every=2, error_feedback=True)
    whole = run_inprocess(cfg.replace(out_dir=str(tmp_path / "whole")))
    with monkeypatch.context() as patch:
        crash_at(patch, 3)
        with pytest.raises(KeyboardInterrupt):
            run_inprocess(cfg.replace(out_dir=str(tmp_path / "cut")))
    moved = run_inprocess(cfg.replace(out_dir=str(tmp_path / "moved"), resume=str(tmp_path / "cut")))
    assert moved["out-dir"] == str(tmp_path / "moved") and moved["final"] == whole["final"]
    assert moved["total-up-bytes"] == whole["total-up-bytes"]


def test_resume_refuses_another_config_and_a_finished_run(tmp_path):
    cfg = tiny_config(tmp_path, num_server_rounds=2, checkpoint_every=1)
    run_inprocess(cfg)
    with pytest.raises(ConfigError, match="lr: 4.0 -> 1.0"):
        find_resume_point(cfg.replace(resume=cfg.out_dir, lr=1.0))
    with pytest.raises(ConfigError, match="raise num-server-rounds"):
        find_resume_point(cfg.replace(resume=cfg.out_dir))
    longer = run_inprocess(cfg.replace(resume=cfg.out_dir, num_server_rounds=3))  # extending a run is allowed
    assert longer["rounds"] == 3
    with pytest.raises(CheckpointError, match="holds no checkpoints"):
        find_resume_point(cfg.replace(resume=str(tmp_path)))


def test_resume_detects_a_truncated_newest_checkpoint(tmp_path):
    cfg = tiny_config(tmp_path, num_server_rounds=3, checkpoint_every=1)
    run_inprocess(cfg)
    newest = SnapshotFolder(tmp_path / "out" / "checkpoints").path(3)
    newest.write_bytes(newest.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="round-000003.npz is truncated"):
        find_resume_point(cfg.replace(resume=cfg.out_dir, num_server_rounds=4))


def test_a_node_without_its_snapshot_restarts_its_users_and_the_run_goes_on(tmp_path, caplog):
    cfg = tiny_config(tmp_path, num_server_rounds=2, checkpoint_every=1)
    run_inprocess(cfg)
    for snapshot in (tmp_path / "out" / "client-state").rglob("*.npz"):
        snapshot.unlink()
    summary = run_inprocess(cfg.replace(resume=cfg.out_dir, num_server_rounds=3))
    assert summary["rounds"] == 3 and "restart from their initial state" in caplog.text


def test_snapshots_of_different_runs_do_not_mix(tmp_path):
    """Two runs sharing a state-dir (a node's volume in deployment) keep separate snapshot folders."""
    first = tiny_config(tmp_path, num_server_rounds=2, checkpoint_every=1)
    second = first.replace(lr=1.0, out_dir=str(tmp_path / "out"))  # same out-dir, hence same state-dir
    run_inprocess(first)
    run_inprocess(second)
    assert run_key(first) != run_key(second) and run_key(first) == run_key(first.replace(num_server_rounds=9))
    folders = sorted(p.name for p in (tmp_path / "out" / "client-state").iterdir())
    assert folders == sorted([run_key(first), run_key(second)])


def test_resumed_flower_run_equals_the_uninterrupted_one(tmp_path, monkeypatch):
    """Two SuperNodes; the ServerApp dies at the start of round 4 (checkpoints at 2); a new run with
    `resume` continues at round 3, the nodes reload their users' state from their own snapshots."""
    cfg = tiny_config(tmp_path, num_server_rounds=5, eval_every=5, checkpoint_every=2, codec="fedras",
                      error_feedback=True)
    whole = simulate(cfg.replace(out_dir=str(tmp_path / "whole")), 2)
    original = FedRASStrategy.configure_fit

    def dies_in_round_4(self, server_round, parameters, client_manager):
        if server_round == 4:
            raise RuntimeError("ServerApp killed")
        return original(self, server_round, parameters, client_manager)

    with monkeypatch.context() as patch:
        patch.setattr(FedRASStrategy, "configure_fit", dies_in_round_4)
        with pytest.raises(RuntimeError, match="ServerApp killed"):
            simulate(cfg.replace(out_dir=str(tmp_path / "cut")), 2)
    assert not (tmp_path / "cut" / "summary.json").exists()
    state = tmp_path / "cut" / "client-state" / run_key(cfg)
    assert sorted(p.name for p in state.iterdir()) == ["partition-0-of-2", "partition-1-of-2"]
    resumed = simulate(cfg.replace(out_dir=str(tmp_path / "cut"), resume=str(tmp_path / "cut")), 2)
    assert [r["round"] for r in resumed] == [1, 2, 3, 4, 5]  # a record per round, the first two restored
    assert [{k: v for k, v in r.items() if k != "wall-time"} for r in resumed] == [
        {k: v for k, v in r.items() if k != "wall-time"} for r in whole
    ]
