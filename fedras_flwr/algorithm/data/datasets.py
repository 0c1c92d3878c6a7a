"""Every supported dataset by name: the synthetic generator, the official datasets (a local copy or a
verified download, then their reader) and a user's interactions file."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from fedras_flwr.algorithm.data.download import resolve_dataset_file
from fedras_flwr.algorithm.data.interactions import DatasetError, Interactions
from fedras_flwr.algorithm.data.readers import (
    load_interactions_file,
    load_lastfm_2k,
    load_movielens_1m,
    load_movielens_100k,
)
from fedras_flwr.algorithm.data.synthetic import cached_synthetic

_OFFICIAL: dict[str, Callable[[Path], Interactions]] = {
    "ml-100k": load_movielens_100k,
    "ml-1m": load_movielens_1m,
    "lastfm-2k": load_lastfm_2k,
}
DATASETS = ("synthetic", *_OFFICIAL, "interactions")


def load_dataset(
    name: str,
    *,
    seed: int = 0,
    data_dir: str = "",
    cache_dir: str = "",
    interactions_file: str = "",
    interactions_sep: str = "auto",
    interactions_columns: str = "user,item,timestamp",
    synthetic_users: int = 600,
    synthetic_items: int = 1000,
    synthetic_mean_interactions: int = 60,
) -> Interactions:
    """Load any supported dataset by name."""
    if name == "synthetic":
        return cached_synthetic(synthetic_users, synthetic_items, synthetic_mean_interactions, seed, cache_dir)
    if name == "interactions":
        return load_interactions_file(interactions_file, interactions_sep, interactions_columns)
    if name not in _OFFICIAL:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {DATASETS}")
    path = resolve_dataset_file(name, data_dir, cache_dir)
    try:
        return _OFFICIAL[name](path)
    except (UnicodeDecodeError, IndexError) as err:
        raise DatasetError(f"{name}: cannot parse {path} ({err}); the file is corrupt, replace it") from err

