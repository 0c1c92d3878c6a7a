"""The user-by-user comparison of two methods on hand-computed ranks."""

import pytest

from fedras_flwr.tooling.paired import Z_95, PairedGap, paired_gap

# seed -> user -> rank of the test item (0 = top); at K=10, a hits users [0, 1] in seed 0 and [0, 1, 2] in seed 1,
# b hits [0, 3] in seed 0 and [1] in seed 1
A = {0: {0: 0, 1: 0, 2: 50, 3: 50}, 1: {0: 0, 1: 0, 2: 0, 3: 50}}
B = {0: {0: 0, 1: 50, 2: 50, 3: 0}, 1: {0: 50, 1: 0, 2: 50, 3: 50}}


def test_the_paired_difference_by_hand():
    gap = paired_gap(A, B, "hr", 10)
    # per seed a - b: [0, 1, 0, -1] and [1, 0, 1, 0]; per user over seeds: [0.5, 0.5, 0.5, -0.5]
    assert gap.mean == pytest.approx(0.625 - 0.375)  # the difference of the two seed-mean HR@10
    assert gap.half_width == pytest.approx(Z_95 * 0.5 / 2)  # per-user std 0.5 (ddof 1), 4 users
    assert (gap.users, gap.seeds, gap.per_seed) == (4, (0, 1), (0.0, 2.0))
    assert (gap.a_better, gap.b_better) == (3, 1)
    assert gap.mcnemar_p == pytest.approx(2 * (1 + 4) / 2**4)  # P(at most 1 of 4 flips one way), both tails
    assert gap.verdict == "tie"


def test_a_difference_beyond_the_noise_in_every_seed_has_a_winner():
    always, never = {0: {u: 0 for u in range(5)}}, {0: {u: 99 for u in range(5)}}
    assert paired_gap(always, never, "ndcg", 10).verdict == "a ahead"
    assert paired_gap(never, always, "hr", 10).verdict == "b ahead"
    assert paired_gap(always, always, "hr", 10).verdict == "tie"


def test_a_seed_that_disagrees_makes_a_tie():
    users = range(50)  # seed 0: a hits everyone and b nobody; seed 1: only b hits, one user
    a = {0: {u: 0 for u in users}, 1: {u: 99 for u in users}}
    b = {0: {u: 99 for u in users}, 1: {u: 0 if u == 0 else 99 for u in users}}
    gap = paired_gap(a, b, "hr", 10)
    assert gap.mean - gap.half_width > 0 and gap.per_seed == (50.0, -1.0)
    assert gap.verdict == "tie"


def test_mcnemar_p_by_hand():
    def gap(a_better: int, b_better: int) -> PairedGap:
        return PairedGap(0.0, 0.0, 2, (0,), (0.0,), a_better, b_better)

    assert gap(0, 0).mcnemar_p == 1.0  # no user flipped: nothing against "equally likely"
    assert gap(1, 1).mcnemar_p == 1.0  # the two tails overlap: capped at 1
    assert gap(1, 7).mcnemar_p == pytest.approx(2 * 9 / 256)  # (1 + 8) of 2^8 outcomes as lopsided, twice
    assert gap(10, 0).mcnemar_p == gap(0, 10).mcnemar_p == pytest.approx(2 / 1024)


def test_only_the_seeds_and_users_both_have_are_paired():
    gap = paired_gap({0: {**A[0], 9: 0}, 5: A[1]}, {0: B[0]}, "hr", 10)  # user 9 and seed 5 have no b run
    assert (gap.users, gap.seeds) == (4, (0,)) and gap.mean == pytest.approx(0.0)


def test_methods_without_a_common_seed_cannot_be_paired():
    with pytest.raises(ValueError, match="share no seed"):
        paired_gap({0: A[0]}, {1: B[1]}, "hr", 10)
    with pytest.raises(ValueError, match="too few"):
        paired_gap({0: {1: 0}}, {0: {1: 5}}, "hr", 10)
