"""Seeded k-means for action clustering: k-means++ initialisation in numpy, Lloyd iterations in faiss.

faiss runs single-threaded here so that a client's actions are bit-identical whatever machine or
process computes them (parallel centroid sums would change the float rounding).
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np

faiss.omp_set_num_threads(1)


@dataclass(frozen=True)
class Clustering:
    centroids: np.ndarray  # float32 (k, d)
    assignment: np.ndarray  # int64 (n,), values in [0, k)


def kmeans_plus_plus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Arthur & Vassilvitskii seeding: each next centre drawn with probability ~ squared distance."""
    centres = [x[rng.integers(len(x))]]
    nearest = np.sum((x - centres[0]) ** 2, axis=1)
    for _ in range(1, k):
        total = nearest.sum()
        if total > 0:
            # the draw `rng.choice(len(x), p=nearest / total)` makes, without its costly checks of p
            cdf = np.cumsum((nearest / total).astype(np.float64))  # choice() works in float64
            cdf /= cdf[-1]
            index = int(cdf.searchsorted(rng.random(), side="right"))
        else:
            index = int(rng.integers(len(x)))
        centres.append(x[index])
        np.minimum(nearest, np.sum((x - x[index]) ** 2, axis=1), out=nearest)
    return np.asarray(centres, dtype=np.float32)


def kmeans(x: np.ndarray, k: int, iterations: int, seed: int, spherical: bool = False) -> Clustering:
    """Cluster the rows of `x` into `k` groups (k < len(x)); empty clusters are re-seeded by faiss."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not 1 <= k < len(x):
        raise ValueError(f"k-means needs 1 <= k < rows, got k={k} for {len(x)} rows")
    init = kmeans_plus_plus(x, k, np.random.default_rng(seed))
    model = faiss.Kmeans(
        x.shape[1], k, niter=iterations, seed=seed, spherical=spherical, verbose=False,
        min_points_per_centroid=1, max_points_per_centroid=1 << 30,
    )
    model.train(x, init_centroids=init)
    _, labels = model.index.search(x, 1)
    return Clustering(centroids=model.centroids.astype(np.float32), assignment=labels[:, 0].astype(np.int64))
