"""Compressed downlink: nodes rebuild the server's table bit for bit, or get the full table."""

import numpy as np
import pytest
from conftest import tiny_config

from fedras_flwr.algorithm.downlink import CURRENT, FULL, STEP, StaleTableError, TableBroadcaster, TableReceiver
from fedras_flwr.algorithm.user_state import MemoryUserStore
from fedras_flwr.config import RunConfig
from fedras_flwr.tooling.inprocess import run_inprocess


def rounds(broadcaster, table, steps):
    rng = np.random.default_rng(0)
    for server_round in range(1, steps + 1):
        ids = np.sort(rng.choice(len(table), size=20, replace=False))
        broadcaster.apply(table, ids, rng.standard_normal((20, table.shape[1])) * 0.1, server_round)


def test_a_node_with_the_previous_table_rebuilds_the_new_one_exactly():
    cfg = RunConfig(downlink="actions", downlink_actions=4)
    table = np.random.default_rng(1).standard_normal((60, 8)).astype(np.float32)
    server, node = TableBroadcaster(cfg, 60, 8), TableReceiver(cfg, 60, 8, num_dense=0)
    store = MemoryUserStore()
    first = server.message(None, table, [])
    assert first.kind == FULL
    node.receive(store, first.arrays, first.kind, first.version)
    for server_round in range(1, 4):
        rounds(server, table, 1)
        message = server.message(server_round - 1, table, [])
        assert message.kind == STEP and sum(a.nbytes for a in message.arrays) < table.nbytes / 4
        rebuilt = node.receive(store, message.arrays, message.kind, message.version)[0]
        assert np.array_equal(rebuilt, table)
    assert server.message(3, table, []).kind == CURRENT
    assert server.message(1, table, []).kind == FULL  # two versions behind


def test_a_stale_node_refuses_a_step():
    cfg = RunConfig(downlink="actions")
    table = np.zeros((30, 4), dtype=np.float32)
    server, node = TableBroadcaster(cfg, 30, 4), TableReceiver(cfg, 30, 4, num_dense=0)
    rounds(server, table, 1)
    step = server.message(0, table, [])
    with pytest.raises(StaleTableError):
        node.receive(MemoryUserStore(), step.arrays, step.kind, step.version)


def test_the_residual_is_sent_later():
    cfg = RunConfig(downlink="actions", downlink_actions=2)
    table = np.zeros((30, 4), dtype=np.float32)
    server = TableBroadcaster(cfg, 30, 4)
    target = np.zeros_like(table)
    rng = np.random.default_rng(3)
    errors = []
    for server_round in range(1, 40):
        ids = np.arange(5)
        rows = rng.standard_normal((5, 4)) if server_round == 1 else np.zeros((5, 4))
        target[ids] += rows
        server.apply(table, ids, rows, server_round)
        errors.append(np.linalg.norm(table - target) / np.linalg.norm(target))
    assert errors[0] > 0.3  # two actions cannot carry five distinct rows at once...
    assert errors[-1] < 1e-4  # ...but the residual is sent in the following rounds


def test_actions_downlink_in_a_run(tmp_path):
    """Every user trains every round, so from round 2 on each holds the previous table and downloads
    only the step: the actions downlink pays off. Sampled once in a while, a user holds an old table
    and downloads it whole, as with the dense downlink (counted per user, see test_accounting)."""
    cfg = tiny_config(tmp_path, downlink="actions", downlink_actions=32, eval_every=3, num_server_rounds=3,
                      clients_per_round=24)
    summary = run_inprocess(cfg)
    dense = run_inprocess(cfg.replace(downlink="dense", out_dir=str(tmp_path / "dense")))
    assert summary["total-down-bytes"] < 0.5 * dense["total-down-bytes"]
    assert summary["final"]["hr@10"] > 0
    rare = run_inprocess(cfg.replace(clients_per_round=4, out_dir=str(tmp_path / "rare")))
    rare_dense = run_inprocess(cfg.replace(clients_per_round=4, downlink="dense", out_dir=str(tmp_path / "rare-dense")))
    assert rare["total-down-bytes"] > 0.6 * rare_dense["total-down-bytes"]


def test_every_node_evaluates_on_the_servers_table(tmp_path):
    """Evaluation sends each node what it lacks (a step for a node that trained last round): the table it
    rebuilds is the server's, bit for bit, and each user is counted for what it lacked."""
    from fedras_flwr.algorithm.data import load_split
    from fedras_flwr.algorithm.user_round import UserWorker
    from fedras_flwr.algorithm.user_state import MemoryUserStore
    from fedras_flwr.tooling.session import ServerSession

    cfg = tiny_config(tmp_path, downlink="actions", downlink_actions=8, eval_every=2, num_server_rounds=2)
    split = load_split(cfg)
    session = ServerSession(cfg, split.num_items, range(split.num_users), {})
    worker, store = UserWorker(cfg, split), MemoryUserStore()
    for server_round in (1, 2):
        users = session.begin_round(server_round)
        message, plan = session.downlink(0, users)
        table = worker.receive(store, message.arrays, message.kind, message.version)
        session.end_training(server_round, worker.fit(users, table, server_round, store, plan).updates)
    message = session.evaluation_downlink([0])[0]
    evaluated = worker.receive(store, message.arrays, message.kind, message.version)
    assert message.kind == "actions" and np.array_equal(evaluated[0], session.server.item_table)
