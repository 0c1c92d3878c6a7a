"""The table every dataset loads into, and the indexing that gives it contiguous ids.

Ratings are treated as implicit positives (the NCF protocol); duplicated (user, item) pairs keep their
latest time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class DatasetError(RuntimeError):
    """The dataset is missing, corrupt or cannot be parsed; the message says what to do."""


@dataclass(frozen=True)
class Interactions:
    """One row per (user, item) positive. `timestamps` is None when the source has no time."""

    name: str
    users: np.ndarray  # int64, 0..num_users-1
    items: np.ndarray  # int64, 0..num_items-1
    timestamps: np.ndarray | None
    num_users: int
    num_items: int


# The source text of `_index`, its name included, is part of the synthetic cache key
# (synthetic._generator_digest): renaming or editing it makes every cached synthetic set stale.
def _index(name: str, users: np.ndarray, items: np.ndarray, timestamps: np.ndarray | None) -> Interactions:
    """Map raw labels to contiguous ids and drop duplicate pairs (keeping the latest)."""
    user_labels, user_ids = np.unique(users, return_inverse=True)
    item_labels, item_ids = np.unique(items, return_inverse=True)
    order = np.lexsort((timestamps,) if timestamps is not None else (np.arange(len(user_ids)),))
    user_ids, item_ids = user_ids[order], item_ids[order]
    times = timestamps[order] if timestamps is not None else None
    # keep the last occurrence of every pair (latest time)
    pair = user_ids.astype(np.int64) * len(item_labels) + item_ids
    _, last = np.unique(pair[::-1], return_index=True)
    keep = np.sort(len(pair) - 1 - last)
    return Interactions(
        name=name,
        users=user_ids[keep].astype(np.int64),
        items=item_ids[keep].astype(np.int64),
        timestamps=None if times is None else times[keep],
        num_users=len(user_labels),
        num_items=len(item_labels),
    )
