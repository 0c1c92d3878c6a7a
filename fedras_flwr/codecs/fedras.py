"""`fedras`: FedRAS action sharing (KDD 2025). The client clusters the rows of its item-table update
into K *actions* (k-means centroids) and uploads the centroids, the touched item ids and one action
index per touched item; the server rebuilds every row as the centroid of its action.

Layout (num_arrays depends on the options, fixed for a run):
    [centroids (K x d, float16|float32), assignments (uint8, ceil(log2 K) bits each), ids (uint8)]
    entropy-coding = range: ids and assignments travel together, range-coded (uint8, entropy.py)
    cluster-on = direction: + magnitudes (float16, one per row); rows are clustered as unit vectors
When a client touched at most K rows, its rows are sent exactly (float32 centroids, one per row).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from fedras_flwr.codecs.base import Codec, CodecContext, CodecParams, ItemUpdate, PayloadError, parameter, wire_bytes
from fedras_flwr.codecs.entropy import decode_symbols, encode_symbols
from fedras_flwr.codecs.kmeans import kmeans
from fedras_flwr.codecs.packing import bits_for, decode_ids, encode_ids, pack_bits, unpack_bits

_FLOATS = ("float16", "float32")


@dataclass(frozen=True)
class FedRASParams(CodecParams):
    num_actions: int = parameter(8, "K actions per client (the K policies may choose another K)", positive=True)
    cluster_on: str = parameter(
        "delta", "delta (cluster raw rows) | direction (unit rows + float16 magnitudes)", choices=("delta", "direction")
    )
    centroid_dtype: str = parameter("float16", "float16 | float32", choices=_FLOATS)
    kmeans_iters: int = parameter(
        10, "most Lloyd iterations of the k-means (it stops earlier once the clustering settles)", positive=True
    )
    entropy_coding: str = parameter(
        "none", "none | range (ids and assignments range-coded with their own frequencies)", choices=("none", "range")
    )


class FedRASCodec(Codec):
    name = "fedras"
    Params = FedRASParams
    adaptive = True

    @classmethod
    def budget_parameter(cls, dim: int) -> tuple[str, tuple[int, ...]]:
        """K from 1 to 4096 in quarter-octave steps (about 19 % apart): at matched payload a doubling K left
        FedRAS only 77-78 % of its byte budget where the other codecs' finer knobs filled theirs."""
        return "num-actions", tuple(sorted({round(2 ** (step / 4)) for step in range(49)}))

    def __init__(self, params: FedRASParams, context: CodecContext) -> None:
        super().__init__(params, context)
        self.direction = params.cluster_on == "direction"
        self.entropy = params.entropy_coding == "range"
        self.num_arrays = (2 if self.entropy else 3) + (1 if self.direction else 0)

    # -- client ------------------------------------------------------------------------------------
    def encode(self, update: ItemUpdate, server_round: int, num_actions: int | None = None) -> list[np.ndarray]:
        k = num_actions or self.params.num_actions
        rows = np.asarray(update.rows, dtype=np.float32)  # no copy: k-means only reads it
        magnitudes = np.ones(len(rows), dtype=np.float32)
        if len(rows) <= k:  # lossless: every row is its own action (a copy: the payload must not alias the update)
            centroids, assignment = rows.copy(), np.arange(len(rows))
        else:
            points = rows
            if self.direction:
                norms = np.linalg.norm(rows, axis=1)
                magnitudes = norms.astype(np.float16)
                points = rows / np.maximum(norms, 1e-30)[:, None]
            clusters = kmeans(points, k, self.params.kmeans_iters, self._seed(server_round), spherical=self.direction)
            centroids = clusters.centroids.astype(self.params.centroid_dtype)
            assignment = clusters.assignment
        if self.entropy:
            symbols = [encode_symbols(update.ids, assignment, len(centroids), self.num_items)]
        else:
            symbols = [pack_bits(assignment, bits_for(len(centroids))), encode_ids(update.ids, self.num_items)]
        arrays = [centroids, *symbols]
        return arrays + [magnitudes] if self.direction else arrays

    def predicted_bytes(self, update: ItemUpdate, num_actions: int) -> int:
        """Upload size at K actions without clustering: exact for the plain layout (with entropy coding,
        the plain layout's size: the coded size depends on the clusters)."""
        rows = len(update.ids)
        exact = rows <= num_actions
        centroids = np.empty((rows if exact else num_actions, self.dim), np.float32 if exact else self.params.centroid_dtype)
        arrays = [
            centroids,
            np.empty(math.ceil(rows * bits_for(len(centroids)) / 8), np.uint8),
            encode_ids(update.ids, self.num_items),
        ]
        if self.direction:
            arrays.append(np.empty(rows, np.float32 if exact else np.float16))
        return wire_bytes(arrays)

    def _seed(self, server_round: int) -> int:
        return (self.context.seed * 1_000_003 + server_round) % (1 << 31)

    def encode_flops(self, rows: int, num_actions: int) -> float:
        """kmeans-iters Lloyd iterations, every row against every centroid (nothing when the rows go exactly):
        the cap, not the iterations a clustering happens to need (seeding and the final assignment add about
        two more passes, not counted)."""
        return float(self.params.kmeans_iters * rows * num_actions * self.dim) if num_actions < rows else 0.0

    # -- server ------------------------------------------------------------------------------------
    def decode(self, arrays: Sequence[np.ndarray], server_round: int) -> ItemUpdate:
        if len(arrays) != self.num_arrays:
            raise PayloadError(f"fedras: expected {self.num_arrays} arrays, got {len(arrays)}")
        centroids = arrays[0]
        if not isinstance(centroids, np.ndarray) or centroids.dtype.name not in _FLOATS or centroids.ndim != 2:
            raise PayloadError("fedras: centroids must be a 2-D float16/float32 array")
        if centroids.shape[1] != self.dim or not np.all(np.isfinite(centroids)):
            raise PayloadError(f"fedras: centroids must be finite with {self.dim} columns")
        if len(centroids) > self.max_actions:
            raise PayloadError(f"fedras: {len(centroids)} actions, more than this run allows ({self.max_actions})")
        if self.entropy:
            ids, assignment = decode_symbols(arrays[1], len(centroids), self.num_items)
            self._check_action_count(len(centroids), len(ids))
        else:
            indices, id_blob = arrays[1], arrays[2]
            if any(not isinstance(a, np.ndarray) or a.dtype != np.uint8 or a.ndim != 1 for a in (indices, id_blob)):
                raise PayloadError("fedras: index arrays must be 1-D uint8")
            ids = decode_ids(id_blob, self.num_items)
            self._check_action_count(len(centroids), len(ids))
            assignment = unpack_bits(indices, bits_for(len(centroids)), len(ids))
        if len(ids) and assignment.max() >= len(centroids):
            raise PayloadError("fedras: an assignment points past the last action")
        rows = centroids.astype(np.float32)[assignment]
        if self.direction:
            magnitudes = arrays[-1]
            if magnitudes.dtype.name not in _FLOATS or magnitudes.shape != (len(ids),):
                raise PayloadError("fedras: need one float16/float32 magnitude per row")
            if not np.all(np.isfinite(magnitudes)):
                raise PayloadError("fedras: magnitudes must be finite")
            with np.errstate(over="ignore"):  # an overflowing product is caught by the server's finite check
                rows = rows * magnitudes.astype(np.float32)[:, None]
        return ItemUpdate(ids=ids, rows=rows)

    @staticmethod
    def _check_action_count(actions: int, rows: int) -> None:
        if rows and actions == 0:
            raise PayloadError("fedras: rows without any action")
        if actions > rows:
            raise PayloadError(f"fedras: {actions} actions for {rows} rows (at most one per row)")

    @property
    def max_actions(self) -> int:
        """The largest K this codec may be asked for (its own K, or the run's limit): more is a malformed upload."""
        return max(self.params.num_actions, self.context.max_actions)

    def num_actions(self, arrays: Sequence[np.ndarray]) -> int | None:
        return len(arrays[0])

    def symbol_bytes(self, arrays: Sequence[np.ndarray], decoded: ItemUpdate) -> tuple[int, int] | None:
        """Range-coded ids and assignments against the plain layout's (bit-packed assignments, compact ids)."""
        if not self.entropy:
            return None
        assignments = math.ceil(len(decoded.ids) * bits_for(len(arrays[0])) / 8)
        return arrays[1].nbytes, assignments + encode_ids(decoded.ids, self.num_items).nbytes

    def numbers_sent(self, arrays: Sequence[np.ndarray], rows: int) -> int:
        """K x d centroid values + one index per touched item (+ one magnitude per item)."""
        return arrays[0].size + rows * (2 if self.direction else 1)
