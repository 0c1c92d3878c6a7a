"""Every supported dataset by name: the synthetic generator, the official datasets (a local copy or a
verified download, then their reader) and a user's interactions file."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from fedras_flwr.algorithm.data.download import redownload_advice, resolve_dataset_file
from fedras_flwr.algorithm.data.interactions import DatasetError, Interactions
from fedras_flwr.algorithm.data.parsed_cache import cached_parse
from fedras_flwr.algorithm.data.readers import (
    MalformedFile,
    load_amazon_games,
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
    "amazon-games": load_amazon_games,
}
DATASETS = ("synthetic", *_OFFICIAL, "interactions")


def load_dataset(
    name: str,
    *,
    seed: int = 0,
    data_dir: str = "",
    cache_dir: str = "",
    verify_checksums: bool = True,
    interactions_file: str = "",
    interactions_sep: str = "auto",
    interactions_columns: str = "user,item,timestamp",
    interactions_line_order_is_time: bool = False,
    synthetic_users: int = 600,
    synthetic_items: int = 1000,
    synthetic_mean_interactions: int = 60,
) -> Interactions:
    """Load any supported dataset by name.

    An official dataset's local copy must match the official file unless `verify_checksums` is False
    (`download.resolve_dataset_file`). A line of an official file that does not parse means the file is
    damaged, so the error names the file and line and says to re-download it; the interactions-* settings
    apply only to `interactions`, whose reader gives its own advice. A parsed official file is kept in the
    cache directory (parsed_cache.py), so other processes of the run read arrays instead of parsing.
    """
    if name == "synthetic":
        return cached_synthetic(synthetic_users, synthetic_items, synthetic_mean_interactions, seed, cache_dir)
    if name == "interactions":
        return load_interactions_file(
            interactions_file, interactions_sep, interactions_columns, interactions_line_order_is_time
        )
    if name not in _OFFICIAL:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {DATASETS}")
    path = resolve_dataset_file(name, data_dir, cache_dir, verify_checksums)
    try:
        return cached_parse(name, path, _OFFICIAL[name], cache_dir)
    except MalformedFile as err:
        raise DatasetError(
            f"{name}: {err.where} is broken ({err.problem}); the file is damaged (truncated or modified), "
            f"{redownload_advice(name, path, cache_dir)}"
        ) from err
