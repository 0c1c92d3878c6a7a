"""How one user ranks its held-out items under the current model: the input of the metrics (metrics.py)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedras_flwr.algorithm.data.split import UserSplit
from fedras_flwr.algorithm.models import Backbone


@dataclass(frozen=True)
class UserRanks:
    """0-based rank of each held-out item (number of candidates scored >= it: ties count against it)."""

    test_sampled: int
    test_full: int
    val_sampled: int
    val_full: int


def rank_user(
    backbone: Backbone, user: UserSplit, user_vector: np.ndarray, item_table: np.ndarray, dense: list[np.ndarray]
) -> UserRanks:
    """Score every item once, then rank test and validation items under both protocols.

    Sampled: against the user's 99 fixed evaluation negatives. Full: against every item that is not
    one of the user's known positives (training items and the other held-out item are excluded).
    """
    scores = backbone.scores(user_vector, item_table, dense)
    scores = np.where(np.isnan(scores), np.inf, scores)  # a NaN candidate counts against the held-out item
    positive_scores = scores[user.all_positives]
    num_candidates = len(scores) - len(user.all_positives)

    def ranks(target: int) -> tuple[int, int]:
        score = scores[target]
        if not np.isfinite(score):  # a held-out item scored NaN or infinite ranks last under both protocols
            return len(user.eval_negatives), num_candidates
        sampled = int(np.count_nonzero(scores[user.eval_negatives] >= score))
        # candidates = every item but the positives; counted without building a catalogue-sized mask
        full = int(np.count_nonzero(scores >= score) - np.count_nonzero(positive_scores >= score))
        return sampled, full

    test_sampled, test_full = ranks(user.test_item)
    val_sampled, val_full = ranks(user.val_item)
    return UserRanks(test_sampled, test_full, val_sampled, val_full)
