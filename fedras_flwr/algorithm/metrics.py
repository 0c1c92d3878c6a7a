"""Top-K ranking metrics from 0-based ranks.

A rank is the number of candidates that scored at least as high as the held-out item, so ties are
pessimistic: with rank r the item sits at position r + 1. HR@K = 1[r < K]; NDCG@K = 1 / log2(r + 2)
if r < K else 0 (a single relevant item, so the ideal DCG is 1).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np


def user_hits(ranks: np.ndarray, k: int) -> np.ndarray:
    """Each user's HR@K: 1.0 if its held-out item is in the top K, else 0.0."""
    return (np.asarray(ranks) < k).astype(np.float64)


def user_ndcg(ranks: np.ndarray, k: int) -> np.ndarray:
    """Each user's NDCG@K."""
    ranks = np.asarray(ranks, dtype=np.float64)
    return np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)


def hit_ratio(ranks: np.ndarray, k: int) -> float:
    hits = user_hits(ranks, k)
    return float(np.mean(hits)) if len(hits) else float("nan")  # nobody evaluated: unknown, not 0


def ndcg(ranks: np.ndarray, k: int) -> float:
    gains = user_ndcg(ranks, k)
    return float(np.mean(gains)) if len(gains) else float("nan")


def ranking_report(ranks: Mapping[tuple[str, str], np.ndarray], ks: list[int]) -> dict[str, float]:
    """HR and NDCG for every (prefix, suffix) group of ranks and every K.

    Keys come out as `<prefix>hr@K<suffix>`, e.g. `hr@10`, `ndcg@10-full`, `val-hr@10`.
    """
    report: dict[str, float] = {}
    for (prefix, suffix), values in ranks.items():
        for k in ks:
            report[f"{prefix}hr@{k}{suffix}"] = hit_ratio(values, k)
            report[f"{prefix}ndcg@{k}{suffix}"] = ndcg(values, k)
    return report
