"""Seeded k-means: deterministic, stops at its fixed point with what running to the cap gives, and finds
planted or hand-computed clusters exactly."""

import faiss
import numpy as np
import pytest

from fedras_flwr.codecs.kmeans import kmeans


def update_like(rows, seed):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((rows, 32)) * rng.random(32) * 1e-3).astype(np.float32)  # update-sized values


def never_stopping(x, k, iterations, seed, spherical):
    """The same faiss call with its early stop off: every one of the `iterations` Lloyd iterations runs."""
    params = faiss.ClusteringParameters()
    params.niter, params.seed, params.spherical, params.verbose = iterations, seed, spherical, False
    params.min_points_per_centroid, params.max_points_per_centroid = 1, 1 << 30
    params.init_method = faiss.ClusteringInitMethod_KMEANS_PLUS_PLUS
    params.early_stop_threshold = -1.0
    clustering = faiss.Clustering(x.shape[1], k, params)
    index = faiss.IndexFlatL2(x.shape[1])
    clustering.train(x, index)
    assert clustering.iteration_stats.size() == iterations
    return faiss.vector_float_to_array(clustering.centroids).reshape(k, -1), index.search(x, 1)[1][:, 0]


def unit(rows):
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def collinear_directions(rows, seed):
    """MF-like item updates: +- one user vector plus a little noise, so their directions are tight."""
    rng = np.random.default_rng(seed)
    user = rng.standard_normal(32)
    return (np.sign(rng.standard_normal((rows, 1))) * user + rng.standard_normal((rows, 32)) * 0.05).astype(np.float32)


@pytest.mark.parametrize("data", ["update-like", "repeated rows", "directions", "tight directions"])
@pytest.mark.parametrize("k", [2, 8, 32])
def test_stopping_early_gives_what_running_every_iteration_gives(k, data):
    x = collinear_directions(600, k) if "tight" in data else update_like(600, k)
    if data == "repeated rows":
        x[:400] = x[0]
    spherical = "directions" in data
    if spherical:
        x = unit(x)
    stopped = kmeans(x, k, 300, seed=1, spherical=spherical)
    assert stopped.iterations < 300  # it stopped on its own
    centroids, assignment = never_stopping(x, k, 300, seed=1, spherical=spherical)
    assert np.array_equal(stopped.centroids.view(np.int32), centroids.view(np.int32))
    assert np.array_equal(stopped.assignment, assignment)
    capped = kmeans(x, k, stopped.iterations - 1, seed=1, spherical=spherical)
    assert capped.iterations == stopped.iterations - 1


def test_the_seed_decides_the_clustering():
    x = update_like(400, 9)
    first, again, other = kmeans(x, 8, 50, seed=1), kmeans(x, 8, 50, seed=1), kmeans(x, 8, 50, seed=2)
    assert np.array_equal(first.centroids, again.centroids) and not np.array_equal(first.centroids, other.centroids)
    with pytest.raises(ValueError, match="seed"):
        kmeans(x, 8, 50, seed=-1)


@pytest.mark.parametrize("factor", [2.0**70, 2.0**-70, 1e30, 3e-30])
def test_huge_or_tiny_rows_cluster_as_their_rescaled_copy(factor):
    """Squared distances of such rows overflow (or vanish) in float32: they are clustered at a safe scale.
    A power of two rescales exactly, so the clustering is the same; other factors round differently."""
    x = update_like(300, 5) * 1000  # values near 1
    reference = kmeans(x, 8, 50, seed=4)
    scaled = kmeans((x * factor).astype(np.float32), 8, 50, seed=4)
    assert np.all(np.isfinite(scaled.centroids)) and len(np.unique(scaled.assignment)) == 8
    if np.log2(factor).is_integer():
        assert np.array_equal(scaled.assignment, reference.assignment)
        assert np.array_equal(scaled.centroids, (reference.centroids * np.float32(factor)))


def test_every_row_goes_to_its_nearest_centroid_and_centroids_are_the_means():
    x = update_like(500, 0)
    result = kmeans(x, 8, 500, seed=3)
    distances = ((x[:, None] - result.centroids[None]) ** 2).sum(-1)
    assert np.array_equal(result.assignment, distances.argmin(1)) and result.assignment.dtype == np.int64
    means = np.stack([x[result.assignment == j].mean(0) for j in range(8)])
    np.testing.assert_allclose(result.centroids, means, rtol=1e-4, atol=1e-9)


def test_hand_computed_clusters():
    x = np.array([[0.0], [1.0], [10.0], [12.0], [11.0]], dtype=np.float32)
    result = kmeans(x, 2, 20, seed=0)
    low = result.assignment[0]
    assert result.assignment.tolist() == [low, low, 1 - low, 1 - low, 1 - low]
    assert result.centroids[low].tolist() == [0.5] and result.centroids[1 - low].tolist() == [11.0]


def test_repeated_rows_leave_no_cluster_empty():
    x = update_like(300, 4)
    x[:200] = x[0]  # 101 distinct rows, two thirds of them one point
    result = kmeans(x, 16, 50, seed=2)
    assert len(np.unique(result.assignment)) == 16


def test_kmeans_is_deterministic_and_finds_planted_clusters():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((4, 8)).astype(np.float32) * 10
    x = np.repeat(centres, 25, axis=0) + rng.standard_normal((100, 8)).astype(np.float32) * 0.01
    first, second = kmeans(x, 4, 20, seed=3), kmeans(x, 4, 20, seed=3)
    assert np.array_equal(first.centroids, second.centroids)
    assert len(np.unique(first.assignment)) == 4
    assert all(len(np.unique(first.assignment[i * 25 : (i + 1) * 25])) == 1 for i in range(4))


def test_kmeans_needs_fewer_clusters_than_rows_and_an_iteration():
    with pytest.raises(ValueError, match="k-means needs 1 <= k"):
        kmeans(np.zeros((3, 2), np.float32), 3, 5, 0)
    with pytest.raises(ValueError, match="at least one iteration"):
        kmeans(np.ones((3, 2), np.float32), 2, 0, 0)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_input_is_a_python_error_before_faiss(bad):
    x = np.random.default_rng(0).standard_normal((20, 4)).astype(np.float32)
    x[3, 1] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        kmeans(x, 4, 10, seed=0)
