"""scripts/calibrate_budget.py's plateau rule, on hand-made validation curves."""

import sys

from conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
from calibrate_budget import plateau, recommend  # noqa: E402


def curve(*values: float) -> list[dict]:
    return [{"round": 10 * (i + 1), "val-hr@10": v, "val-ndcg@10": v / 2} for i, v in enumerate(values)]


def test_a_flat_curve_plateaus_where_it_first_comes_within_tolerance():
    found = plateau(curve(0.30, 0.50, 0.595, 0.60, 0.598, 0.60), tolerance=0.01)
    assert found["best-val-hr@10"] == 0.60 and found["best-round"] == 40
    assert found["plateau-round"] == 30 and found["plateaued"]  # 0.595 >= 0.99 x 0.60
    assert found["val-ndcg@10-at-plateau"] == 0.595 / 2


def test_a_curve_still_rising_in_its_last_third_has_not_plateaued():
    found = plateau(curve(0.30, 0.40, 0.45, 0.50, 0.55, 0.60), tolerance=0.01)
    assert found["plateau-round"] == 60 and not found["plateaued"]


def test_a_dip_after_the_peak_still_counts_as_a_plateau():
    found = plateau(curve(0.40, 0.60, 0.61, 0.60, 0.58, 0.59), tolerance=0.01)
    assert found["best-round"] == 30 and found["plateau-round"] == 30 and found["plateaued"]  # 0.60 < 0.99 x 0.61


def test_the_recommendation_is_the_cheapest_near_best_budget():
    rows = [
        {"lr": 2.0, "best-val-hr@10": 0.690, "plateau-round": 140, "plateaued": True},
        {"lr": 4.0, "best-val-hr@10": 0.6833, "plateau-round": 110, "plateaued": True},  # >= 0.99 x 0.690, sooner
        {"lr": 8.0, "best-val-hr@10": 0.675, "plateau-round": 60, "plateaued": True},  # soonest, but 0.978 x the best
    ]
    assert recommend(rows, tolerance=0.01)["lr"] == 4.0
    assert recommend(rows, tolerance=0.001)["lr"] == 2.0
    rows[0]["plateaued"] = False  # the best may still rise: no budget until it has plateaued
    assert recommend(rows, tolerance=0.01) is None
