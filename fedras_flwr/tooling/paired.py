"""Two methods compared user by user on the same seeds, so a gap smaller than the noise between test users reads as
a tie, not as a win.

Each user's difference (method a minus method b, HR@K or NDCG@K of its test item) is averaged over the seeds; the
mean of those per-user differences is the difference of the two methods' seed-mean metrics, and its 95 % interval
is the normal approximation over users (users are the sampling unit, as in a paired t-test over test users).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from fedras_flwr.algorithm.metrics import user_hits, user_ndcg

Z_95 = 1.959964  # two-sided 95 % quantile of the standard normal
PER_USER = {"hr": user_hits, "ndcg": user_ndcg}


@dataclass(frozen=True)
class PairedGap:
    """Method a minus method b on one metric."""

    mean: float  # mean over users of the seed-averaged per-user difference
    half_width: float  # of the 95 % interval around `mean`
    users: int  # users evaluated in every run of both methods
    a_better: int  # (seed, user) pairs where a scored higher
    b_better: int  # ... where b scored higher

    @property
    def verdict(self) -> str:
        if self.mean - self.half_width > 0:
            return "a ahead"
        if self.mean + self.half_width < 0:
            return "b ahead"
        return "tie"


def paired_gap(
    a: Sequence[Mapping[int, int]], b: Sequence[Mapping[int, int]], metric: str, k: int
) -> PairedGap:
    """`a[s]` and `b[s]`: user -> rank of its test item in seed s's run of each method (same seeds, same order)."""
    if len(a) != len(b) or not a:
        raise ValueError(f"paired runs need the same seeds for both methods, got {len(a)} and {len(b)} runs")
    per_user = PER_USER[metric]
    users = sorted(set.intersection(*(set(run) for run in [*a, *b])))
    if len(users) < 2:
        raise ValueError(f"{len(users)} users were evaluated in every run: too few to compare")
    differences = np.array([
        per_user(np.array([run_a[u] for u in users]), k) - per_user(np.array([run_b[u] for u in users]), k)
        for run_a, run_b in zip(a, b)
    ])  # seeds x users
    by_user = differences.mean(axis=0)
    half_width = Z_95 * float(np.std(by_user, ddof=1)) / math.sqrt(len(users))
    return PairedGap(
        mean=float(by_user.mean()),
        half_width=half_width,
        users=len(users),
        a_better=int(np.count_nonzero(differences > 0)),
        b_better=int(np.count_nonzero(differences < 0)),
    )
