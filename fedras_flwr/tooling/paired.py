"""Two methods compared user by user on the same seeds, so a gap smaller than the noise reads as a tie, not a win.

Each user's difference (method a minus method b, HR@K or NDCG@K of its test item) is averaged over the seeds; the
mean of those per-user differences is the difference of the two methods' seed-mean metrics (when every user is
evaluated in every run), and its 95 % interval is the normal approximation over users (users are the sampling unit,
as in a paired test over test users; with hundreds of users z and t agree to the third digit). That interval knows
which users were tested, not how another training run would turn out, so a method is called ahead only when the
interval excludes 0 and it is ahead in every seed as well.

The (seed, user) pairs where only one method scores higher also get McNemar's exact test (the two-sided sign test
on those pairs): it asks whether their split between the two methods is more lopsided than chance. It treats the
pairs as independent, which users of one run are not (they share its model), so it informs the verdict, not
decides it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from fedras_flwr.algorithm.metrics import user_hits, user_ndcg

Z_95 = 1.959964  # two-sided 95 % quantile of the standard normal
PER_USER = {"hr": user_hits, "ndcg": user_ndcg}

#: seed -> user -> rank of the user's test item in that seed's run
SeedRanks = Mapping[int, Mapping[int, int]]


@dataclass(frozen=True)
class PairedGap:
    """Method a minus method b on one metric."""

    mean: float  # mean over users of the seed-averaged per-user difference
    half_width: float  # of the 95 % interval around `mean`
    users: int  # users evaluated in every paired run
    seeds: tuple[int, ...]  # the seeds both methods ran
    per_seed: tuple[float, ...]  # each seed's summed difference over users (for HR: hits of a minus hits of b)
    a_better: int  # (seed, user) pairs where a scored higher
    b_better: int  # ... where b scored higher

    @property
    def verdict(self) -> str:
        if self.mean - self.half_width > 0 and all(d > 0 for d in self.per_seed):
            return "a ahead"
        if self.mean + self.half_width < 0 and all(d < 0 for d in self.per_seed):
            return "b ahead"
        return "tie"

    @property
    def mcnemar_p(self) -> float:
        """Two-sided exact p of `a_better` against `b_better` under "either side equally likely" (1.0 if none):
        McNemar's test for HR's hit or miss, the sign test for NDCG's differences."""
        flips, fewer = self.a_better + self.b_better, min(self.a_better, self.b_better)
        tail = sum(math.comb(flips, i) for i in range(fewer + 1)) / 2**flips
        return min(1.0, 2 * tail)


def paired_gap(a: SeedRanks, b: SeedRanks, metric: str, k: int) -> PairedGap:
    """a minus b on `metric` ("hr" or "ndcg") at `k`, over the seeds and users both have."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise ValueError("the two methods share no seed: nothing to pair")
    per_user = PER_USER[metric]
    users = sorted(set.intersection(*(set(runs[s]) for s in seeds for runs in (a, b))))
    if len(users) < 2:
        raise ValueError(f"{len(users)} users were evaluated in every run: too few to compare")

    def scores(ranks: Mapping[int, int]) -> np.ndarray:
        return per_user(np.array([ranks[u] for u in users]), k)

    differences = np.array([scores(a[s]) - scores(b[s]) for s in seeds])  # seeds x users
    by_user = differences.mean(axis=0)
    return PairedGap(
        mean=float(by_user.mean()),
        half_width=Z_95 * float(np.std(by_user, ddof=1)) / math.sqrt(len(users)),
        users=len(users),
        seeds=tuple(seeds),
        per_seed=tuple(float(d) for d in differences.sum(axis=1)),
        a_better=int(np.count_nonzero(differences > 0)),
        b_better=int(np.count_nonzero(differences < 0)),
    )
