"""The user-by-user comparison of two methods on hand-computed ranks."""

import pytest

from fedras_flwr.tooling.paired import Z_95, paired_gap

# ranks of each user's test item (0 = top), two seeds; at K=10, a hits users [0, 1] then [0, 1, 2], b hits [0, 3] then [1]
A = [{0: 0, 1: 0, 2: 50, 3: 50}, {0: 0, 1: 0, 2: 0, 3: 50}]
B = [{0: 0, 1: 50, 2: 50, 3: 0}, {0: 50, 1: 0, 2: 50, 3: 50}]


def test_the_paired_difference_by_hand():
    gap = paired_gap(A, B, "hr", 10)
    # per seed a - b: [0, 1, 0, -1] and [1, 0, 1, 0]; per user over seeds: [0.5, 0.5, 0.5, -0.5]
    assert gap.mean == pytest.approx(0.625 - 0.375)  # the difference of the two seed-mean HR@10
    assert gap.half_width == pytest.approx(Z_95 * 0.5 / 2)  # per-user std 0.5 (ddof 1), 4 users
    assert (gap.users, gap.a_better, gap.b_better) == (4, 3, 1)
    assert gap.verdict == "tie"


def test_a_difference_beyond_the_noise_has_a_winner():
    always, never = [{u: 0 for u in range(5)}], [{u: 99 for u in range(5)}]
    assert paired_gap(always, never, "ndcg", 10).verdict == "a ahead"
    assert paired_gap(never, always, "hr", 10).verdict == "b ahead"
    assert paired_gap(always, always, "hr", 10).verdict == "tie"


def test_only_users_evaluated_in_every_run_are_paired():
    gap = paired_gap([{**A[0], 9: 0}], [B[0]], "hr", 10)  # user 9 has no rank under b
    assert gap.users == 4 and gap.mean == pytest.approx(0.0)


def test_runs_must_pair_seed_by_seed():
    with pytest.raises(ValueError, match="same seeds"):
        paired_gap(A, B[:1], "hr", 10)
