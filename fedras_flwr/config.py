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
    lr: float = 0.0  # 0: the model's default (MODEL_DEFAULTS)
    optimizer: str = "auto"  # auto: the model's default (MODEL_DEFAULTS)
    weight_decay: float = 0.0
    num_negatives: int = 4
    divergence_limit: float = 1000.0
    # federation
    num_server_rounds: int = 100
    clients_per_round: int = 100
    server_lr: float = 1.0
    server_decay: float = 0.0
    aggregation_weighting: str = "uniform"
    codec: str = "fedras"
    reference_embedding_dim: int = 0
    downlink: str = "dense"
    downlink_actions: int = 256
    dense_upload: str = "auto"
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
    split_seed: int = 0
    out_dir: str = ""

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def effective_optimizer(self) -> str:
        """`optimizer`, or the model's default when it is `auto`."""
        return MODEL_DEFAULTS[self.model][0] if self.optimizer == "auto" else self.optimizer

    @property
    def effective_lr(self) -> float:
        """`lr`, or the model's default when it is 0."""
        return MODEL_DEFAULTS[self.model][1] if self.lr == 0 else self.lr

    @property
    def effective_dense_upload(self) -> str:
        """`dense-upload`, or its default: the reference codecs (dense, sparse) send the float32 weights
        as they are, every lossy codec sends them as 8-bit deltas."""
        if self.dense_upload != "auto":
            return self.dense_upload
        return "float32" if self.codec in LOSSLESS_CODECS else "int8"

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


#: Local-training defaults per model (optimizer, lr), used when `optimizer = "auto"` / `lr = 0`. MF's
#: plain SGD needs a large lr because the loss is a batch mean; NeuMF's MLP diverges at that lr (loss 899
#: in round 2 on ML-100K) and learns with Adam (README "How it works").
MODEL_DEFAULTS: dict[str, tuple[str, float]] = {"mf": ("sgd", 4.0), "neumf": ("adam", 0.02)}
#: Codecs that send the update exactly as it is (the byte references); every other codec is lossy.
LOSSLESS_CODECS = ("dense", "sparse")

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
    "optimizer": ("auto", "sgd", "adam"),
    "dense_upload": ("auto", "float32", "float16", "int8"),
    "aggregation_weighting": ("uniform", "examples"),
    "cluster_on": ("delta", "direction"),
    "centroid_dtype": ("float16", "float32"),
    "entropy_coding": ("none", "range"),
    "quant_bits": (2, 4, 8),
    "downlink": ("dense", "actions"),
    "hetero": ("none", "homogeneous", "uniform", "mostly-slow", "mixed"),
    "k_policy": ("fixed", "deadline", "target-ratio"),
    "stragglers": ("wait", "drop"),
}
#: every count-like knob: a zero or negative value would make a run "complete" with meaningless results
_POSITIVE = (
    "embedding_dim", "local_epochs", "batch_size", "num_server_rounds", "clients_per_round",
    "eval_every", "num_eval_negatives", "synthetic_users", "synthetic_items", "synthetic_mean_interactions",
    "num_actions", "downlink_actions", "kmeans_iters", "svd_rank", "colr_rank", "min_fit_clients", "init_std",
)
#: knobs where 0 has a meaning (off, or "use the default") but a negative value has none
_NON_NEGATIVE = (
    "num_negatives", "weight_decay", "lr", "server_decay", "divergence_limit", "reference_embedding_dim",
    "clip_norm", "max_upload_bytes", "round_timeout", "checkpoint_every", "hetero_jitter", "deadline_seconds",
    "seed", "split_seed",
)


def _validate(cfg: RunConfig) -> None:
    for name, choices in _CHOICES.items():
        if getattr(cfg, name) not in choices:
            raise ConfigError(f"{name.replace('_', '-')} must be one of {choices}, got {getattr(cfg, name)!r}")
    for name in _POSITIVE:
        if not getattr(cfg, name) > 0:  # also catches NaN
            raise ConfigError(f"{name.replace('_', '-')} must be > 0, got {getattr(cfg, name)}")
    for name in _NON_NEGATIVE:
        if not getattr(cfg, name) >= 0:  # also catches NaN
            raise ConfigError(f"{name.replace('_', '-')} must be >= 0, got {getattr(cfg, name)}")
    if not cfg.server_lr > 0 or not cfg.server_decay < 1:
        raise ConfigError(f"server-lr must be > 0 and server-decay in [0, 1), got {cfg.server_lr}, {cfg.server_decay}")
    if not 0.0 < cfg.topk_fraction <= 1.0:
        raise ConfigError(f"topk-fraction must be in (0, 1], got {cfg.topk_fraction}")
    if not 0.0 < cfg.deadline_quantile <= 1.0 or not 0.0 < cfg.target_ratio <= 1.0:
        raise ConfigError("deadline-quantile and target-ratio must be in (0, 1]")
    if not (cfg.seconds_per_example > 0 and cfg.seconds_per_flop > 0):
        raise ConfigError("seconds-per-example and seconds-per-flop must be > 0")
    cfg.k_candidate_list  # noqa: B018
    if not 0.0 <= cfg.max_failure_fraction <= 1.0:
        raise ConfigError("max-failure-fraction must be in [0, 1]")
    if cfg.min_user_interactions < 3:
        raise ConfigError("min-user-interactions must be >= 3 (one training, one validation and one test item)")
    cfg.topk_list  # noqa: B018 - parse to validate
    cfg.mlp_layer_sizes  # noqa: B018
    from fedras_flwr.codecs import available_codecs  # local import: codecs import this module

    if cfg.codec not in available_codecs():
        raise ConfigError(f"codec must be one of {available_codecs()}, got {cfg.codec!r}")
    if cfg.codec in LOSSLESS_CODECS and cfg.dense_upload not in ("auto", "float32"):
        raise ConfigError(f"codec {cfg.codec!r} is a lossless reference: dense-upload must be auto or float32")
