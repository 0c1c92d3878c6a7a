"""What travels between the two sides of a training round besides the tables: each user's upload, the
server's plan for the round, and what a node's users produced."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np


@dataclass(frozen=True)
class UserUpload:
    """One user's upload for one round."""

    user: int
    payload: list[np.ndarray]  # the codec's arrays
    dense: list[np.ndarray]  # the dense weights' arrays as `WeightsCodec` encodes them (NeuMF), [] for MF
    num_examples: int
    train_loss: float
    recon_error: float  # ||D - decode(encode(D))|| / ||D||, measured by the user on its own upload
    sim_time: float = 0.0  # simulated seconds of this user's round (hetero.py)
    dense_time: float = 0.0  # the same with the uncompressed (dense) upload: what deadlines derive from
    tier: int = -1  # index of the user's compute tier (-1: no heterogeneity)


@dataclass(frozen=True)
class RoundPlan:
    """What the server tells the nodes of a round besides the table."""

    deadline: float = float("inf")  # seconds (deadline policy)
    #: per user, the bytes of the downlink it received (what one device per user would download)
    down_bytes: Mapping[int, int] = field(default_factory=dict)


@dataclass
class FitOutcome:
    """What a node's users produced in one round: their uploads, and the users whose training
    diverged (skipped, their state not saved)."""

    updates: list[UserUpload]
    failed_users: list[int] = field(default_factory=list)


def split_global_arrays(arrays: Sequence[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """The broadcast is [item table, *dense weights]."""
    return arrays[0], list(arrays[1:])
