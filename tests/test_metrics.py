"""HR@K / NDCG@K on hand-computed cases, including pessimistic ties."""

import math

import numpy as np
import pytest
import torch

from fedras_flwr.algorithm.data.split import UserSplit
from fedras_flwr.algorithm.evaluation import rank_user
from fedras_flwr.algorithm.metrics import hit_ratio, ndcg, ranking_report, user_hits, user_ndcg
from fedras_flwr.algorithm.models import MF


def test_hit_ratio_and_ndcg_by_hand():
    ranks = np.array([0, 1, 9, 10, 50])
    assert hit_ratio(ranks, 10) == pytest.approx(3 / 5)
    expected = (1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(11)) / 5
    assert ndcg(ranks, 10) == pytest.approx(expected)
    assert hit_ratio(ranks, 1) == pytest.approx(1 / 5)
    assert ndcg(ranks, 1) == pytest.approx(1 / 5)


def test_per_user_hits_and_gains_by_hand():
    ranks = np.array([0, 1, 10])
    assert user_hits(ranks, 10).tolist() == [1.0, 1.0, 0.0]
    assert user_ndcg(ranks, 10) == pytest.approx([1.0, 1 / math.log2(3), 0.0])


def test_report_keys_and_values():
    report = ranking_report({("", ""): np.array([0, 20]), ("val-", "-full"): np.array([3])}, [5, 10])
    assert report["hr@5"] == 0.5 and report["hr@10"] == 0.5
    assert report["val-hr@10-full"] == 1.0
    assert report["val-ndcg@5-full"] == pytest.approx(1 / math.log2(5))


def _user(test_item: int, val_item: int, negatives: list[int], train: list[int]) -> UserSplit:
    return UserSplit(0, np.array(train, dtype=np.int64), val_item, test_item, np.array(negatives))


def test_ties_count_against_the_positive():
    # scores are item_table @ user = the first column; item 0 (test) ties with items 1 and 2
    table = np.array([[1.0], [1.0], [1.0], [0.5], [2.0], [0.0]], dtype=np.float32)
    user = _user(test_item=0, val_item=3, negatives=[1, 2, 5], train=[4])
    ranks = rank_user(MF(1), user, np.array([1.0], dtype=np.float32), table, [])
    assert ranks.test_sampled == 2  # items 1 and 2 tie -> counted above the positive
    # full ranking: candidates are all items but the training item 4 and the validation item 3
    assert ranks.test_full == 2
    # validation item 3 (score 0.5) vs negatives 1, 2 (1.0) and 5 (0.0): rank 2 sampled;
    # full: items 0 (test, excluded), 1, 2 above it -> 2
    assert ranks.val_sampled == 2 and ranks.val_full == 2


def test_rank_uses_the_model_score():
    table = torch.randn(6, 4).numpy()
    vector = np.ones(4, dtype=np.float32)
    user = _user(0, 1, [2, 3, 4, 5], [])
    scores = table @ vector
    ranks = rank_user(MF(4), user, vector, table, [])
    assert ranks.test_sampled == int(np.sum(scores[[2, 3, 4, 5]] >= scores[0]))


def test_a_nan_target_ranks_last_and_nan_candidates_count_against_it():
    table = np.array([[np.nan], [1.0], [np.nan], [0.5], [2.0], [0.0]], dtype=np.float32)
    user = _user(test_item=0, val_item=3, negatives=[1, 2, 5], train=[4])
    ranks = rank_user(MF(1), user, np.array([1.0], dtype=np.float32), table, [])
    # test item 0 scores NaN: the worst rank under both protocols (HR = NDCG = 0 at any K below it)
    assert ranks.test_sampled == 3  # all 3 sampled negatives
    assert ranks.test_full == 3  # candidates: every item but the positives 0, 3, 4 -> 1, 2, 5
    # validation item 3 (0.5): negative 1 (1.0) and NaN negative 2 rank above it, 5 (0.0) below
    assert ranks.val_sampled == 2 and ranks.val_full == 2
    report = ranking_report({("", ""): np.array([ranks.test_sampled])}, [1, 3])
    assert report["hr@3"] == 0.0 and report["ndcg@3"] == 0.0


def test_an_infinite_target_ranks_last():
    table = np.array([[np.inf], [1.0], [0.0], [0.5]], dtype=np.float32)
    ranks = rank_user(MF(1), _user(0, 3, [1, 2], []), np.array([1.0], dtype=np.float32), table, [])
    assert (ranks.test_sampled, ranks.test_full) == (2, 2)
