"""Leave-one-out split, fixed evaluation negatives and per-epoch training negatives.

Leakage rules (tested): a user's validation and test items are never among its training positives;
evaluation negatives are never any positive of that user; training negatives never hit a positive,
the held-out items or the evaluation negatives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedras_flwr.algorithm.data.interactions import DatasetError, Interactions


@dataclass(frozen=True)
class UserSplit:
    """One user's data: what its client holds."""

    user: int
    train_items: np.ndarray  # sorted int64 training positives
    val_item: int
    test_item: int
    eval_negatives: np.ndarray  # sorted int64, fixed per (user, seed)

    @property
    def all_positives(self) -> np.ndarray:
        return np.concatenate([self.train_items, [self.val_item, self.test_item]]).astype(np.int64)


@dataclass(frozen=True)
class SplitDataset:
    """The leave-one-out split of a whole dataset; users are re-numbered 0..num_users-1."""

    name: str
    num_items: int
    users: list[UserSplit]

    @property
    def num_users(self) -> int:
        return len(self.users)

    @property
    def num_train_interactions(self) -> int:
        return sum(len(u.train_items) for u in self.users)


def user_rng(seed: int, user: int, purpose: int, round_: int = 0) -> np.random.Generator:
    """A generator that depends only on (seed, user, purpose, round): results never depend on which
    process or SuperNode handles the user, nor on the order users are processed in."""
    return np.random.default_rng([seed, purpose, user, round_])


PURPOSE_SPLIT, PURPOSE_EVAL_NEG, PURPOSE_TRAIN_NEG, PURPOSE_INIT, PURPOSE_SHUFFLE = range(5)


def leave_one_out(
    data: Interactions, seed: int, num_eval_negatives: int = 99, min_user_interactions: int = 5
) -> SplitDataset:
    """Latest item = test, second latest = validation, the rest = training.

    Ties in time (or data without timestamps) are ordered by a seeded random permutation, so the split
    is deterministic per seed. Users with fewer than `min_user_interactions` positives are dropped.
    """
    if min_user_interactions < 3:
        raise ValueError("min_user_interactions must be >= 3")
    if data.num_items <= num_eval_negatives + min_user_interactions:
        raise DatasetError(
            f"{data.name}: the catalogue has {data.num_items} items, too few for {num_eval_negatives} evaluation "
            f"negatives, a user's {min_user_interactions}+ positives and one training negative; lower num-eval-negatives"
        )
    shuffle = np.random.default_rng([seed, PURPOSE_SPLIT]).permutation(len(data.users))
    times = data.timestamps[shuffle] if data.timestamps is not None else np.zeros(len(shuffle))
    users = data.users[shuffle]
    items = data.items[shuffle]
    order = np.lexsort((times, users))  # by user, then time; ties keep the random order
    users, items = users[order], items[order]
    boundaries = np.flatnonzero(np.diff(users)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(users)]])
    max_positives = data.num_items - num_eval_negatives - 1  # one item left to sample training negatives from
    splits: list[UserSplit] = []
    for start, end in zip(starts, ends):
        if end - start < min_user_interactions:
            continue
        if end - start > max_positives:
            continue  # not enough non-interacted items left to draw evaluation negatives from
        history = items[start:end]
        user = len(splits)
        positives = np.sort(history)
        splits.append(
            UserSplit(
                user=user,
                train_items=np.sort(history[:-2]),
                val_item=int(history[-2]),
                test_item=int(history[-1]),
                eval_negatives=_sample_excluding(
                    user_rng(seed, user, PURPOSE_EVAL_NEG), data.num_items, positives, num_eval_negatives
                ),
            )
        )
    if len(splits) < 2:
        raise DatasetError(
            f"{data.name}: only {len(splits)} users have >= {min_user_interactions} interactions and at most "
            f"{max_positives}; a federation needs at least 2. Use a larger dataset or lower min-user-interactions."
        )
    return SplitDataset(name=data.name, num_items=data.num_items, users=splits)


class ItemComplement:
    """The items of a catalogue outside a small excluded set, addressed by rank, without materialising them.

    `item(r)` is the r-th non-excluded item in increasing order, i.e. `np.flatnonzero(~excluded_mask)[r]`,
    found by a binary search over the excluded ids: memory is O(excluded) instead of O(num_items), which
    is what lets every sampled user keep its sampler on catalogues of 20,000+ items.
    """

    def __init__(self, num_items: int, excluded: np.ndarray) -> None:
        """`excluded`: sorted, distinct item ids."""
        self.size = num_items - len(excluded)
        # excluded[j] - j = how many allowed items precede excluded[j] (non-decreasing)
        self._allowed_before = excluded - np.arange(len(excluded))

    def item(self, ranks: np.ndarray) -> np.ndarray:
        return ranks + np.searchsorted(self._allowed_before, ranks, side="right")


def _sample_excluding(rng: np.random.Generator, num_items: int, excluded: np.ndarray, count: int) -> np.ndarray:
    """`count` distinct items outside `excluded` (sorted, distinct), uniformly. Same draw as
    `rng.choice(allowed_items, count, replace=False)`, which picks positions the same way."""
    allowed = ItemComplement(num_items, excluded)
    return np.sort(allowed.item(rng.choice(allowed.size, size=count, replace=False)))


class NegativeSampler:
    """Draws training negatives for one user: uniform over items that are neither a positive (training
    or held out) nor an evaluation negative. Sampling is with replacement, as in the NCF protocol."""

    def __init__(self, user: UserSplit, num_items: int) -> None:
        self._allowed = ItemComplement(num_items, np.union1d(user.all_positives, user.eval_negatives))
        if self._allowed.size == 0:
            raise DatasetError(f"user {user.user} has no item left to sample training negatives from")

    def sample(self, rng: np.random.Generator, count: int) -> np.ndarray:
        return self._allowed.item(rng.integers(0, self._allowed.size, size=count))
