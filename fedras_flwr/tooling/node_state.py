"""A node's private state across a crash: its snapshots at checkpoint rounds (its users' embeddings and
residuals, and the item table it holds) and the one-time restore when a run resumes. Written on the
node itself: user state never reaches the server."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from fedras_flwr.algorithm.user_state import UserStore
from fedras_flwr.tooling.checkpoint import CheckpointError, SnapshotFolder

log = logging.getLogger(__name__)

RESUMED_KEY = "node/resumed-from"  # the resume round whose snapshot this node has loaded


def node_snapshots(state_dir: str | Path, run_key: str, partition_id: int, num_partitions: int) -> SnapshotFolder:
    """Where one node keeps the snapshots of its state for one run (on the node itself)."""
    return SnapshotFolder(Path(state_dir) / run_key / f"partition-{partition_id}-of-{num_partitions}")


def save_node_state(store: UserStore, snapshots: SnapshotFolder, server_round: int) -> None:
    """Snapshot the node's state at the end of `server_round` (a checkpoint round): its users'
    private state and the item table it holds (the compressed downlink builds on it)."""
    kept = {k: store.get(k) for k in store.keys() if k.startswith(("user/", "node/")) and k != RESUMED_KEY}
    snapshots.write(server_round, kept, {})


def resume_node_once(store: UserStore, snapshots: SnapshotFolder, resume_round: int) -> None:
    """In a run resumed from round r, before the node does anything: its users' state as of r.

    A node without that snapshot (it was lost, or the node is new) logs it and its users restart
    from their initial vectors; the run goes on."""
    if resume_round <= 0:
        return
    marker = store.get(RESUMED_KEY)
    if marker is not None and int(marker[0]) == resume_round:
        return
    try:
        _, arrays = snapshots.read(resume_round)
    except CheckpointError as err:
        log.warning("%s: this node's users restart from their initial state", err)
        arrays = {}
    for key, array in arrays.items():
        store.put(key, array)
    store.put(RESUMED_KEY, np.array([resume_round], dtype=np.int64))
