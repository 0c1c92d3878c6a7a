"""Downlink: what the server sends a SuperNode so it holds the current item table.

`downlink = "dense"` (default, the paper's setting): the full table every time.
`downlink = "actions"` (beyond the paper, SPEC 2.6): the server clusters each round's aggregated table
step into `downlink-actions` FedRAS actions and applies the *decoded* step to its own table, so a node
that holds the previous table rebuilds the new one bit for bit from centroids + assignments; a node
that holds the current table gets nothing but the dense weights; any other node gets the full table.
What the compression drops is kept in a server-side residual and sent in later rounds (error feedback).
Nodes keep their copy in their state; the strategy tracks which version each node holds.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from fedras_flwr.codecs import CodecContext, ItemUpdate, make_codec, merge_updates
from fedras_flwr.codecs.fedras import FedRASCodec
from fedras_flwr.config import RunConfig

FULL, STEP, CURRENT = "full", "actions", "current"
TABLE_KEY, VERSION_KEY = "node/table", "node/table-version"
_FLOAT16_MAX = float(np.finfo(np.float16).max)


class StaleTableError(RuntimeError):
    """A node was sent a table step but does not hold the table it applies to."""


def apply_table_step(table: np.ndarray, step: ItemUpdate) -> None:
    """The one float32 addition both sides perform, so server and nodes stay bit-identical."""
    table[step.ids] += step.rows.astype(np.float32)


def _step_codec(cfg: RunConfig, num_items: int, dim: int, centroid_dtype: str | None = None) -> FedRASCodec:
    """FedRAS actions of raw rows in the plain layout, with the run's k-means settings; K = `downlink-actions`."""
    params = dataclasses.replace(
        cfg.codec_params("fedras"), num_actions=cfg.downlink_actions, cluster_on="delta", entropy_coding="none"
    )
    if centroid_dtype:
        params = dataclasses.replace(params, centroid_dtype=centroid_dtype)
    context = CodecContext(num_items, dim, seed=cfg.seed, max_actions=cfg.downlink_actions)
    return make_codec("fedras", context, params)


@dataclass
class Broadcast:
    arrays: list[np.ndarray]
    kind: str
    version: int


class TableBroadcaster:
    """Server side: versions the table and produces each node's downlink message."""

    def __init__(self, cfg: RunConfig, num_items: int, dim: int) -> None:
        self.cfg = cfg
        self.compressed = cfg.downlink == "actions"
        self.version = 0
        self._step: list[np.ndarray] | None = None
        if self.compressed:
            self._codec = _step_codec(cfg, num_items, dim)
            self._wide_codec = _step_codec(cfg, num_items, dim, centroid_dtype="float32")
            self._residual = np.zeros((num_items, dim), dtype=np.float32)

    def apply(self, table: np.ndarray, ids: np.ndarray, rows: np.ndarray, server_round: int) -> None:
        """Q[ids] += rows, through the action codec when the downlink is compressed. All or nothing:
        if the step cannot be encoded (PayloadError) neither the table nor this object changes."""
        if not self.compressed:
            table[ids] = (table[ids] + rows).astype(np.float32)
            self.version += 1
            return
        pending = np.flatnonzero(np.any(self._residual != 0, axis=1))
        wanted = merge_updates(ItemUpdate(ids, rows.astype(np.float32)), ItemUpdate(pending, self._residual[pending]))
        # centroids are means of rows: float16 holds them unless a row leaves its range
        codec = self._codec if np.all(np.abs(wanted.rows) < _FLOAT16_MAX) else self._wide_codec
        step = codec.encode(wanted, server_round)
        sent = codec.decode(step, server_round)
        self._step = step
        self._residual[wanted.ids] = wanted.rows
        self._residual[sent.ids] -= sent.rows
        apply_table_step(table, sent)
        self.version += 1

    def state(self) -> dict[str, np.ndarray]:
        """What a checkpoint needs: the version and, for the compressed downlink, the residual and the
        last step (a node that holds the previous table still gets just the step after a resume)."""
        if not self.compressed:
            return {"version": np.array([self.version])}
        steps = {f"step-{i}": array for i, array in enumerate(self._step or [])}
        return {"version": np.array([self.version]), "residual": self._residual, **steps}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.version = int(arrays["version"][0])
        if self.compressed:
            self._residual = arrays["residual"].astype(np.float32).copy()
            steps = sorted((k for k in arrays if k.startswith("step-")), key=lambda k: int(k.split("-")[1]))
            self._step = [arrays[k] for k in steps] or None

    def message(self, holder_version: int | None, table: np.ndarray, dense: Sequence[np.ndarray]) -> Broadcast:
        if self.compressed and holder_version == self.version:
            return Broadcast(list(dense), CURRENT, self.version)
        if self.compressed and holder_version == self.version - 1 and self._step is not None:
            return Broadcast([*self._step, *dense], STEP, self.version)
        return Broadcast([table, *dense], FULL, self.version)


class TableReceiver:
    """Node side: turns a downlink message into the current [table, *dense] and keeps its copy."""

    def __init__(self, cfg: RunConfig, num_items: int, dim: int, num_dense: int) -> None:
        self.compressed = cfg.downlink == "actions"
        self.num_dense = num_dense
        if self.compressed:
            self._codec = _step_codec(cfg, num_items, dim)

    def receive(self, store, arrays: Sequence[np.ndarray], kind: str, version: int) -> list[np.ndarray]:
        split = len(arrays) - self.num_dense
        payload, dense = list(arrays[:split]), list(arrays[split:])
        if kind == FULL:
            table = payload[0]
        else:
            held = store.get(TABLE_KEY)
            held_version = store.get(VERSION_KEY)
            expected = version if kind == CURRENT else version - 1
            if held is None or held_version is None or int(held_version.reshape(-1)[0]) != expected:
                raise StaleTableError(f"node holds table version {held_version}, needs {expected} for a {kind!r} downlink")
            table = held.copy()
            if kind == STEP:
                apply_table_step(table, self._codec.decode(payload, version))
        if self.compressed:  # keep a private copy: the message may share memory with its sender
            table = np.array(table, dtype=np.float32, copy=True)
            store.put(TABLE_KEY, table)
            store.put(VERSION_KEY, np.array([version], dtype=np.int64))
        return [table, *dense]
