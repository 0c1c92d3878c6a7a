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
    buffer = np.empty_like(x)  # reused for every centre's differences

    def squared_distances(centre: np.ndarray) -> np.ndarray:
        np.subtract(x, centre, out=buffer)
        return np.sum(np.square(buffer, out=buffer), axis=1)  # the values of np.sum((x - centre) ** 2, axis=1)

    nearest = squared_distances(centres[0])
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
        np.minimum(nearest, squared_distances(x[index]), out=nearest)
    return np.asarray(centres, dtype=np.float32)


def kmeans(x: np.ndarray, k: int, iterations: int, seed: int, spherical: bool = False) -> Clustering:
    """Cluster the rows of `x` into `k` groups (k < len(x)); empty clusters are re-seeded by faiss.

    Calls faiss's `Clustering` the way `faiss.Kmeans.train` does, minus the per-iteration statistics
    that wrapper copies into Python (a fifth of its time on a client's few hundred rows).
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not 1 <= k < len(x):
        raise ValueError(f"k-means needs 1 <= k < rows, got k={k} for {len(x)} rows")
    if not np.all(np.isfinite(x)):  # faiss would abort the whole process on them
        raise ValueError("k-means input holds NaN or infinite values")
    params = faiss.ClusteringParameters()
    params.niter, params.seed, params.spherical, params.verbose = iterations, seed, spherical, False
    params.min_points_per_centroid, params.max_points_per_centroid = 1, 1 << 30
    clustering = faiss.Clustering(x.shape[1], k, params)
    faiss.copy_array_to_vector(kmeans_plus_plus(x, k, np.random.default_rng(seed)).ravel(), clustering.centroids)
    index = faiss.IndexFlatIP(x.shape[1]) if spherical else faiss.IndexFlatL2(x.shape[1])
    clustering.train(x, index)
    _, labels = index.search(x, 1)
    centroids = faiss.vector_float_to_array(clustering.centroids).reshape(k, x.shape[1])
    return Clustering(centroids=centroids, assignment=labels[:, 0])
