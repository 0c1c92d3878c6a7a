"""Seeded k-means for action clustering, all in one faiss call: k-means++ seeding, then Lloyd iterations
until the objective stops changing or the iteration cap is reached.

A Lloyd iteration is a function of the assignment alone, so once the assignment repeats every further
iteration returns the same clustering; faiss notices at the next iteration (the objective then repeats, two
iterations after the last one that changed the clustering) and stops, which gives what running to the cap
would. On ML-100K and Last.fm client updates faiss stops after
9 to 11 iterations at the median (docs/performance.md). Seeding in C++ instead of a Python loop over the K
centres is what makes encoding cheap: at a client's few hundred rows it cost as much as the Lloyd iterations.

Unit rows (spherical) are clustered by L2 distance too, which ranks unit centroids as cosine does: the
objective of an inner-product index (a sum of cosines near n) stops changing at float32 resolution while
rows still change cluster. One thread: a client's clustering is too small to gain from more. Results are
bit-identical for the same input on the same faiss build and CPU type.
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np

faiss.omp_set_num_threads(1)

# Outside this range of the largest |value| the rows are rescaled by a power of two (exact unless a row spans
# more than ~2**100 in magnitude) before faiss squares them: float32 squared distances overflow near 1e19.
_SAFE_MAGNITUDE = (2.0**-40, 2.0**40)


@dataclass(frozen=True)
class Clustering:
    centroids: np.ndarray  # float32 (k, d)
    assignment: np.ndarray  # int64 (n,), values in [0, k)
    iterations: int  # Lloyd iterations faiss ran


def kmeans(x: np.ndarray, k: int, max_iterations: int, seed: int, spherical: bool = False) -> Clustering:
    """Cluster the rows of `x` into `k` groups (k < len(x)) from k-means++ seeds drawn with `seed`; an empty
    cluster is re-seeded by splitting a large one. `spherical`: unit rows, unit centroids.

    Calls faiss's `Clustering` as `faiss.Kmeans.train` does (but with an L2 index for unit rows too), minus
    the per-iteration statistics that wrapper copies into Python.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not 1 <= k < len(x):
        raise ValueError(f"k-means needs 1 <= k < rows, got k={k} for {len(x)} rows")
    if max_iterations < 1:
        raise ValueError(f"k-means needs at least one iteration, got {max_iterations}")
    if not 0 <= seed < 2**31:
        raise ValueError(f"k-means seed must be in [0, 2**31), got {seed}")  # faiss time-seeds a negative one
    largest = float(np.max(np.abs(x)))
    if not np.isfinite(largest):  # faiss would abort the whole process on them
        raise ValueError("k-means input holds NaN or infinite values")
    scale = 1.0
    if largest > 0 and not _SAFE_MAGNITUDE[0] <= largest <= _SAFE_MAGNITUDE[1]:
        scale = 2.0 ** -float(np.frexp(largest)[1])
        x = x * np.float32(scale)
    params = faiss.ClusteringParameters()
    params.niter, params.seed, params.spherical, params.verbose = max_iterations, seed, spherical, False
    params.min_points_per_centroid, params.max_points_per_centroid = 1, 1 << 30
    params.init_method = faiss.ClusteringInitMethod_KMEANS_PLUS_PLUS
    params.check_input_data_for_NaNs = False  # checked above
    clustering = faiss.Clustering(x.shape[1], k, params)
    index = faiss.IndexFlatL2(x.shape[1])
    clustering.train(x, index)
    _, labels = index.search(x, 1)
    centroids = faiss.vector_float_to_array(clustering.centroids).reshape(k, x.shape[1])
    if scale != 1.0:
        centroids = centroids / np.float32(scale)
    return Clustering(centroids=centroids, assignment=labels[:, 0], iterations=clustering.iteration_stats.size())
