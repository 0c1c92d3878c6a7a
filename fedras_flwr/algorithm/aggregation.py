"""FedRAS aggregation of the accepted uploads of a round: for every touched item, the mean of the rows
of the users who touched it (uniform or example-weighted), a server step and decay on those rows only;
the dense weights (NeuMF) are the example-weighted mean. Users are folded in user order, so the sums do
not depend on how users are spread over nodes or in which order replies arrive."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from fedras_flwr.algorithm.validation import ValidUpload


def item_step(
    accepted: Sequence[ValidUpload], item_table: np.ndarray, weighting: str, server_lr: float, server_decay: float
) -> tuple[np.ndarray, np.ndarray]:
    """(touched ids, step) with Q[i] += server_lr * mean_i - server_decay * Q[i] for the touched items."""
    row_sums = np.zeros(item_table.shape, dtype=np.float64)
    row_weights = np.zeros(len(item_table), dtype=np.float64)
    for valid in accepted:
        weight = float(valid.update.num_examples) if weighting == "examples" else 1.0
        row_sums[valid.decoded.ids] += weight * valid.decoded.rows
        row_weights[valid.decoded.ids] += weight
    touched = np.flatnonzero(row_weights > 0)
    step = server_lr * row_sums[touched] / row_weights[touched, None]
    if server_decay:
        step -= server_decay * item_table[touched]
    return touched, step


def mean_dense_weights(accepted: Sequence[ValidUpload], current: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The example-weighted mean of the users' decoded dense weights (shapes of `current`)."""
    sums = [np.zeros(w.shape, dtype=np.float64) for w in current]
    for valid in accepted:
        for total, weights in zip(sums, valid.weights):
            total += valid.update.num_examples * weights
    examples = sum(v.update.num_examples for v in accepted)
    return [(total / examples).astype(np.float32) for total in sums]
