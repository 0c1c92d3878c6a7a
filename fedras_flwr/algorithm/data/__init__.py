"""Datasets, the leave-one-out split and negative sampling."""

from __future__ import annotations

from functools import lru_cache

from fedras_flwr.algorithm.data.datasets import DATASETS, load_dataset
from fedras_flwr.algorithm.data.download import DATA_DIR_ENV
from fedras_flwr.algorithm.data.interactions import DatasetError, Interactions
from fedras_flwr.algorithm.data.split import NegativeSampler, SplitDataset, UserSplit, leave_one_out
from fedras_flwr.config import RunConfig

_DATA_KEYS = (
    "dataset", "split_seed", "data_dir", "cache_dir", "verify_checksums", "interactions_file", "interactions_sep",
    "interactions_columns", "interactions_line_order_is_time", "synthetic_users", "synthetic_items", "synthetic_mean_interactions", "num_eval_negatives",
    "min_user_interactions",
)


def load_split(cfg: RunConfig) -> SplitDataset:
    """The split a run uses; cached per process so a SuperNode parses its data once, not every round."""
    return _cached_split(cfg.replace(**{key: getattr(RunConfig(), key) for key in _data_independent_keys()}))


def _data_independent_keys() -> list[str]:
    return [name for name in RunConfig.__dataclass_fields__ if name not in _DATA_KEYS]


@lru_cache(maxsize=4)
def _cached_split(cfg: RunConfig) -> SplitDataset:
    data = load_dataset(
        cfg.dataset,
        seed=cfg.split_seed,
        data_dir=cfg.data_dir,
        cache_dir=cfg.cache_dir,
        verify_checksums=cfg.verify_checksums,
        interactions_file=cfg.interactions_file,
        interactions_sep=cfg.interactions_sep,
        interactions_columns=cfg.interactions_columns,
        interactions_line_order_is_time=cfg.interactions_line_order_is_time,
        synthetic_users=cfg.synthetic_users,
        synthetic_items=cfg.synthetic_items,
        synthetic_mean_interactions=cfg.synthetic_mean_interactions,
    )
    return leave_one_out(data, cfg.split_seed, cfg.num_eval_negatives, cfg.min_user_interactions)


__all__ = [
    "DATASETS", "DATA_DIR_ENV", "DatasetError", "Interactions", "NegativeSampler", "SplitDataset", "UserSplit",
    "leave_one_out", "load_dataset", "load_split",
]
