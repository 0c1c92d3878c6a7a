"""Where users live: which node hosts which users, and the private state a node keeps for them between
rounds (the embedding and the error-feedback residual, which never leave the node)."""

from __future__ import annotations

from typing import Iterable, Protocol

import numpy as np


def partition_users(num_users: int, partition_id: int, num_partitions: int) -> list[int]:
    """Users hosted by one SuperNode: round-robin, so partitions differ in size by at most one."""
    if not 0 <= partition_id < num_partitions:
        raise ValueError(f"partition-id {partition_id} is outside [0, num-partitions={num_partitions})")
    return list(range(partition_id, num_users, num_partitions))


class UserStore(Protocol):
    """Where a node keeps its users' private state between rounds (embedding, codec residual)."""

    def get(self, key: str) -> np.ndarray | None: ...

    def put(self, key: str, array: np.ndarray) -> None: ...

    def keys(self) -> Iterable[str]: ...


class MemoryUserStore(dict):
    """A `UserStore` in a plain dict (in-process runs and tests)."""

    def put(self, key: str, array: np.ndarray) -> None:
        self[key] = array


def state_key(user: int, name: str) -> str:
    return f"user/{user}/{name}"
