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
    curves = {
        2.0: curve(0.50, 0.62, 0.675, 0.690, 0.689, 0.688),  # the best of all, within 1 % of it from round 40
        4.0: curve(0.55, 0.64, 0.6833, 0.680, 0.679, 0.675),  # 0.6833 >= 0.99 x 0.690 = 0.6831 at round 30
        8.0: curve(0.60, 0.675, 0.670, 0.665, 0.660, 0.650),  # soonest peak, but 0.978 x the best of all
    }
    rows = [{"lr": lr, **plateau(c, tolerance=0.01)} for lr, c in curves.items()]
    chosen = recommend(rows, curves, tolerance=0.01)
    assert (chosen["lr"], chosen["budget-round"]) == (4.0, 30)
    assert recommend(rows, curves, tolerance=0.001)["lr"] == 2.0  # only lr 2 within 0.1 %
    rows[0]["plateaued"] = False  # the best may still rise: no budget until it has plateaued
    assert recommend(rows, curves, tolerance=0.01) is None
