"""The same rounds as the Flower app, in one process with no Flower: the reference for speed and a
quick way to tune. `python -m fedras_flwr.tooling.inprocess key=value ...` takes run-config overrides."""

from __future__ import annotations

import logging
import sys
from typing import Any

from fedras_flwr.algorithm.data import load_split
from fedras_flwr.algorithm.round_stats import RoundFailures
from fedras_flwr.algorithm.user_round import UserWorker
from fedras_flwr.algorithm.user_state import MemoryUserStore
from fedras_flwr.config import RunConfig, parse_overrides
from fedras_flwr.tooling.node_state import node_snapshots, resume_node_once, save_node_state
from fedras_flwr.tooling.session import ServerSession, find_resume_point


def run_inprocess(cfg: RunConfig) -> dict[str, Any]:
    split = load_split(cfg)
    worker = UserWorker(cfg, split)
    store = MemoryUserStore()
    all_users = list(range(split.num_users))
    session = ServerSession(
        cfg, split.num_items, all_users, {"dataset": split.name, "runner": "inprocess"}, find_resume_point(cfg)
    )
    node = session.node_instructions()  # this loop is a single node, partition 0 of 1
    snapshots = node_snapshots(node["state-dir"], node["run-key"], 0, 1)
    resume_node_once(store, node_snapshots(node["resume-state-dir"], node["run-key"], 0, 1), session.start_round)
    for server_round in range(session.start_round + 1, cfg.num_server_rounds + 1):
        users = session.begin_round(server_round)
        message, plan = session.downlink(0, users)
        table = worker.receive(store, message.arrays, message.kind, message.version)
        outcome = worker.fit(users, table, server_round, store, plan)
        if session.snapshot_in_fit(server_round):
            save_node_state(store, snapshots, server_round)
        session.end_training(server_round, outcome.updates, RoundFailures(users_failed=len(outcome.failed_users)))
        if session.server.is_eval_round(server_round):
            message = session.evaluation_downlink([0])[0]
            evaluation = worker.receive(store, message.arrays, message.kind, message.version)
            ranks = worker.rank(all_users, evaluation, store)
            if session.snapshot_in_evaluation(server_round):
                save_node_state(store, snapshots, server_round)
            session.end_evaluation(server_round, dict(zip(all_users, ranks)))
    assert session.summary is not None
    return session.summary


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    summary = run_inprocess(parse_overrides(sys.argv[1:]))
    print({k: summary[k] for k in ("final", "best-val", "up-reduction-dense", "wall-time", "out-dir")})
