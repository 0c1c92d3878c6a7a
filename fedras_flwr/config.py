"""Typed run configuration.

The defaults here are the single source of truth for the algorithm; `pyproject.toml`'s
`[tool.flwr.app.config]` must list exactly the same keys and values (a test checks it), because
`flwr run` only accepts overrides of keys that pyproject declares. Keys are hyphenated as in Flower.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any, Mapping


class ConfigError(ValueError):
    """A run-config value is missing, of the wrong type or out of range."""


@dataclass(frozen=True)
class RunConfig:
    """Everything one federated run needs. Attribute names are the run-config keys with `_`."""

    # data
    dataset: str = "synthetic"
    data_dir: str = ""
    cache_dir: str = ""
    interactions_file: str = ""
    interactions_sep: str = "auto"
    interactions_columns: str = "user,item,timestamp"
    min_user_interactions: int = 5
    synthetic_users: int = 600
    synthetic_items: int = 1000
    synthetic_mean_interactions: int = 60
    # model and local training
    model: str = "mf"
    embedding_dim: int = 32
    mlp_layers: str = "64,32,16"
    init_std: float = 0.1
    local_epochs: int = 2
    batch_size: int = 64
    lr: float = 4.0
    optimizer: str = "sgd"
    weight_decay: float = 0.0
    num_negatives: int = 4
    # federation
    num_server_rounds: int = 100
    clients_per_round: int = 100
    server_lr: float = 1.0
    aggregation_weighting: str = "uniform"
    codec: str = "fedras"
    reference_embedding_dim: int = 0
    downlink: str = "dense"
    downlink_actions: int = 256
    # fedras codec
    num_actions: int = 8
    cluster_on: str = "delta"
    centroid_dtype: str = "float16"
    kmeans_iters: int = 20
    error_feedback: bool = False
    entropy_coding: str = "none"
    # baseline codecs
    topk_fraction: float = 0.1
    svd_rank: int = 2
    colr_rank: int = 2
    quant_bits: int = 8
    # heterogeneity (see hetero.py): scenario, clock constants, number-of-actions policy
    hetero: str = "none"
    compute_tiers: str = ""
    network_tiers: str = ""
    hetero_jitter: float = 0.1
    seconds_per_example: float = 1e-4
    seconds_per_flop: float = 1e-9
    k_policy: str = "fixed"
    k_candidates: str = "8,16,32,64,128,256"
    deadline_quantile: float = 0.5
    deadline_seconds: float = 0.0
    target_ratio: float = 0.01
    stragglers: str = "wait"
    target_hr: float = 0.5
    target_hr_reference: float = 0.0
    # reliability: hostile payloads, failing SuperNodes, checkpoints (README "Reliability")
    clip_norm: float = 0.0
    max_upload_bytes: int = 0
    max_failure_fraction: float = 0.5
    min_fit_clients: int = 1
    round_timeout: float = 0.0
    checkpoint_every: int = 10
    resume: str = ""
    # evaluation and output
    num_eval_negatives: int = 99
    topk: str = "10"
    eval_every: int = 10
    seed: int = 0
    out_dir: str = ""

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def reference_dim(self) -> int:
        """Embedding size the byte references are computed at (small-d runs compare to the big model)."""
        return self.reference_embedding_dim or self.embedding_dim

    @property
    def topk_list(self) -> list[int]:
        return parse_int_list(self.topk, "topk")

    @property
    def k_candidate_list(self) -> list[int]:
        return parse_int_list(self.k_candidates, "k-candidates")

    @property
    def target_hr_value(self) -> float:
        """HR@K to reach: 95 % of a dense run's final HR@K if given, else the absolute `target-hr`."""
        return 0.95 * self.target_hr_reference if self.target_hr_reference > 0 else self.target_hr

    @property
    def mlp_layer_sizes(self) -> list[int]:
        return parse_int_list(self.mlp_layers, "mlp-layers")

    @classmethod
    def from_flat(cls, values: Mapping[str, Any]) -> "RunConfig":
        """Build from a Flower run_config (hyphenated keys); unknown keys are an error."""
        known = {f.name: f for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            name = key.replace("-", "_")
            if name not in known:
                raise ConfigError(f"unknown run-config key {key!r}; known keys: {sorted(flat_defaults())}")
            kwargs[name] = _coerce(key, value, known[name].type)
        return cls(**kwargs)

    def to_flat(self) -> dict[str, Any]:
        """Hyphenated dict, the form pyproject and `--run-config` use."""
        return {f.name.replace("_", "-"): getattr(self, f.name) for f in fields(self)}

    def replace(self, **changes: Any) -> "RunConfig":
        return dataclasses.replace(self, **changes)


def flat_defaults() -> dict[str, Any]:
    """The default run-config as Flower sees it."""
    return RunConfig().to_flat()


def parse_int_list(text: str, key: str) -> list[int]:
    try:
        values = [int(part) for part in str(text).split(",") if part.strip()]
    except ValueError as err:
        raise ConfigError(f"{key} must be a comma-separated list of integers, got {text!r}") from err
    if not values or any(v <= 0 for v in values):
        raise ConfigError(f"{key} must list positive integers, got {text!r}")
    return values


_TYPES = {"str": str, "int": int, "float": float, "bool": bool}


def _coerce(key: str, value: Any, type_name: Any) -> Any:
    target = _TYPES[type_name if isinstance(type_name, str) else type_name.__name__]
    if target is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if target is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, target) or (target is int and isinstance(value, bool)):
        raise ConfigError(f"run-config key {key!r} must be {target.__name__}, got {value!r}")
    return value


_CHOICES = {
    "model": ("mf", "neumf"),
    "optimizer": ("sgd", "adam"),
    "aggregation_weighting": ("uniform", "examples"),
    "cluster_on": ("delta", "direction"),
    "centroid_dtype": ("float16", "float32"),
    "entropy_coding": ("none", "zstd"),
    "quant_bits": (2, 4, 8),
    "downlink": ("dense", "actions"),
    "hetero": ("none", "homogeneous", "uniform", "mostly-slow", "mixed"),
    "k_policy": ("fixed", "deadline", "target-ratio"),
    "stragglers": ("wait", "drop"),
}
_POSITIVE = (
    "embedding_dim", "local_epochs", "batch_size", "num_server_rounds", "clients_per_round",
    "eval_every", "num_eval_negatives", "synthetic_users", "synthetic_items", "synthetic_mean_interactions",
)


def _validate(cfg: RunConfig) -> None:
    for name, choices in _CHOICES.items():
        if getattr(cfg, name) not in choices:
            raise ConfigError(f"{name.replace('_', '-')} must be one of {choices}, got {getattr(cfg, name)!r}")
    for name in _POSITIVE:
        if getattr(cfg, name) <= 0:
            raise ConfigError(f"{name.replace('_', '-')} must be > 0, got {getattr(cfg, name)}")
    if cfg.num_negatives < 0 or cfg.weight_decay < 0 or cfg.lr <= 0 or cfg.server_lr <= 0:
        raise ConfigError("num-negatives and weight-decay must be >= 0; lr and server-lr must be > 0")
    if not 0.0 < cfg.topk_fraction <= 1.0:
        raise ConfigError(f"topk-fraction must be in (0, 1], got {cfg.topk_fraction}")
    if not 0.0 < cfg.deadline_quantile <= 1.0 or cfg.deadline_seconds < 0 or not 0.0 < cfg.target_ratio <= 1.0:
        raise ConfigError("deadline-quantile and target-ratio must be in (0, 1]; deadline-seconds >= 0")
    if cfg.hetero_jitter < 0 or cfg.seconds_per_example <= 0 or cfg.seconds_per_flop <= 0:
        raise ConfigError("hetero-jitter must be >= 0; seconds-per-example and seconds-per-flop > 0")
    cfg.k_candidate_list  # noqa: B018
    if cfg.reference_embedding_dim < 0:
        raise ConfigError("reference-embedding-dim must be >= 0 (0: the model's own embedding-dim)")
    if cfg.clip_norm < 0 or cfg.max_upload_bytes < 0 or cfg.round_timeout < 0 or cfg.checkpoint_every < 0:
        raise ConfigError("clip-norm, max-upload-bytes, round-timeout and checkpoint-every must be >= 0 (0: off)")
    if not 0.0 <= cfg.max_failure_fraction <= 1.0 or cfg.min_fit_clients < 1:
        raise ConfigError("max-failure-fraction must be in [0, 1] and min-fit-clients >= 1")
    if cfg.min_user_interactions < 3:
        raise ConfigError("min-user-interactions must be >= 3 (one training, one validation and one test item)")
    cfg.topk_list  # noqa: B018 - parse to validate
    cfg.mlp_layer_sizes  # noqa: B018
    from fedras_flwr.codecs import available_codecs  # local import: codecs import this module

    if cfg.codec not in available_codecs():
        raise ConfigError(f"codec must be one of {available_codecs()}, got {cfg.codec!r}")
