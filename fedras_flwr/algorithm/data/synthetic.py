"""The in-process synthetic dataset, and its on-disk cache for sizes that are slow to generate."""

from __future__ import annotations

import fcntl
import functools
import hashlib
import inspect
import logging
import zipfile

import numpy as np

from fedras_flwr.algorithm.data.download import cache_root
from fedras_flwr.algorithm.data.interactions import Interactions, _index
from fedras_flwr.algorithm.data.parsed_cache import load_interactions, save_interactions

log = logging.getLogger(__name__)


def make_synthetic(num_users: int, num_items: int, mean_interactions: int, seed: int, latent_dim: int = 8) -> Interactions:
    """ML-100K-like implicit data with planted preferences.

    Item popularity is Zipf-like, user activity log-normal (heavy tail, at least 10 items), and each
    user picks items with probability proportional to popularity x exp(<user taste, item profile>), so
    a latent-factor model clearly beats a popularity ranking. Deterministic for a seed.
    """
    rng = np.random.default_rng([seed, 20_251_126])
    popularity = 1.0 / np.arange(1, num_items + 1) ** 0.8
    popularity = popularity[rng.permutation(num_items)]
    tastes = rng.normal(size=(num_users, latent_dim))
    profiles = rng.normal(size=(num_items, latent_dim))
    activity = rng.lognormal(mean=np.log(mean_interactions) - 0.5, sigma=1.0, size=num_users)
    counts = np.clip(activity.astype(int), 10, num_items // 2)
    log_popularity, profiles_t, scale = np.log(popularity), profiles.T, np.sqrt(latent_dim)
    # filled in place: keeping each user's slice of its argpartition would pin a num_items-long array
    # per user (8 GB for 50,000 users x 20,000 items)
    ends = np.cumsum(counts)
    items_arr = np.empty(ends[-1], dtype=np.int64)
    for user, (count, end) in enumerate(zip(counts, ends)):
        logits = log_popularity + 2.5 * tastes[user] @ profiles_t / scale
        gumbel = logits + rng.gumbel(size=num_items)  # Gumbel top-k = weighted sampling w/o replacement
        items_arr[end - count : end] = np.argpartition(-gumbel, count)[:count]
    users_arr = np.repeat(np.arange(num_users, dtype=np.int64), counts)
    timestamps = rng.permutation(len(users_arr)).astype(np.float64)
    return _index("synthetic", users_arr, items_arr, timestamps)


#: users x items from which a synthetic set is kept on disk: generating costs a Gumbel draw per (user, item)
#: pair, about 50 s of CPU for 50,000 x 20,000, and each simulation process (Ray actor) would pay it again
SYNTHETIC_CACHE_MIN_PAIRS = 100_000_000


def cached_synthetic(num_users: int, num_items: int, mean_interactions: int, seed: int, cache_dir: str = "") -> Interactions:
    """`make_synthetic`, kept in the cache directory once it is big (see SYNTHETIC_CACHE_MIN_PAIRS).

    The file name carries a digest of the generator's code, so a changed generator never serves stale
    data; processes that ask at the same time wait for the first one to write it (file lock). Any
    problem with the cache falls back to generating.
    """
    if num_users * num_items < SYNTHETIC_CACHE_MIN_PAIRS:
        return make_synthetic(num_users, num_items, mean_interactions, seed)
    try:
        root = cache_root(cache_dir)
        root.mkdir(parents=True, exist_ok=True)
        path = root / f"synthetic-{num_users}x{num_items}-{mean_interactions}-seed{seed}-{_generator_digest()}.npz"
        lock = open(path.with_suffix(".lock"), "w")
    except OSError as err:
        log.warning("synthetic data: no cache (%s); generating", err)
        return make_synthetic(num_users, num_items, mean_interactions, seed)
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.is_file():
            try:
                return load_interactions("synthetic", path)
            except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
                log.warning("synthetic data: unreadable cache %s (%s); generating again", path, err)
        data = make_synthetic(num_users, num_items, mean_interactions, seed)
        try:
            save_interactions(path, data)
            log.info("synthetic data: kept in %s", path)
        except OSError as err:
            log.warning("synthetic data: could not write the cache %s (%s)", path, err)
        return data


@functools.cache
def _generator_digest() -> str:
    """Names the cache file after the generator's code (`make_synthetic` and the `_index` it calls)."""
    return hashlib.sha256((inspect.getsource(make_synthetic) + inspect.getsource(_index)).encode()).hexdigest()[:12]
