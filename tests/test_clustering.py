"""Seeded k-means: k-means++ draws like Generator.choice, clusters are deterministic and exact when planted."""

import numpy as np
import pytest

from fedras_flwr.codecs.kmeans import kmeans, kmeans_plus_plus


def reference_seeding(x, k, rng):
    """The textbook loop with Generator.choice: the fast version must draw exactly the same centres."""
    centres = [x[rng.integers(len(x))]]
    nearest = np.sum((x - centres[0]) ** 2, axis=1)
    for _ in range(1, k):
        index = rng.choice(len(x), p=nearest / nearest.sum())
        centres.append(x[index])
        nearest = np.minimum(nearest, np.sum((x - x[index]) ** 2, axis=1))
    return np.asarray(centres, dtype=np.float32)


@pytest.mark.parametrize("seed", range(6))
def test_seeding_matches_generator_choice(seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((700, 32)) * rng.random(32) * 1e-3).astype(np.float32)  # update-sized values
    for k in (2, 8, 64, 256):
        fast = kmeans_plus_plus(x, k, np.random.default_rng(seed))
        assert np.array_equal(fast, reference_seeding(x, k, np.random.default_rng(seed)))


def test_kmeans_is_deterministic_and_finds_planted_clusters():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((4, 8)).astype(np.float32) * 10
    x = np.repeat(centres, 25, axis=0) + rng.standard_normal((100, 8)).astype(np.float32) * 0.01
    first, second = kmeans(x, 4, 20, seed=3), kmeans(x, 4, 20, seed=3)
    assert np.array_equal(first.centroids, second.centroids)
    assert len(np.unique(first.assignment)) == 4
    assert all(len(np.unique(first.assignment[i * 25 : (i + 1) * 25])) == 1 for i in range(4))


def test_kmeans_needs_fewer_clusters_than_rows():
    with pytest.raises(ValueError, match="k-means needs"):
        kmeans(np.zeros((3, 2), np.float32), 3, 5, 0)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_input_is_a_python_error_before_faiss(bad):
    x = np.random.default_rng(0).standard_normal((20, 4)).astype(np.float32)
    x[3, 1] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        kmeans(x, 4, 10, seed=0)
