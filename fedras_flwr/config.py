"""Typed run configuration: the one source of truth for every run-config key.

A key is a `RunConfig` field declared with `setting` (default + help), or a parameter a codec declares
in its own module (`fedras_flwr.codecs`). From these, `python -m fedras_flwr.tooling.config_reference
--write` regenerates pyproject's `[tool.flwr.app.config]` (Flower only accepts overrides of keys it
declares), the `run` block of the Hydra `conf/config.yaml` and the README's configuration table; a test
fails when any of them is stale. Keys are hyphenated as in Flower; attributes use `_`.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

from fedras_flwr.codecs import WEIGHT_FORMATS, CodecParams, available_codecs, codec_class, key_of, parameter_keys


class ConfigError(ValueError):
    """A run-config value is missing, of the wrong type or out of range."""


def setting(default: Any, help: str) -> Any:
    """A run-config key: its default and its line in the configuration reference."""
    return dataclasses.field(default=default, metadata={"help": help})


#: the first key of each section of the configuration reference, and the section's title
SECTIONS = {
    "dataset": "data (README \"Datasets\")",
    "model": "model and local training (loss = mean BCE over a mini-batch; lr is per-example-averaged)",
    "num-server-rounds": "federation",
    "hetero": "heterogeneity and the number of actions per client (README \"Heterogeneity\")",
    "clip-norm": "reliability (README \"Reliability\")",
    "num-eval-negatives": "evaluation and output",
}
CODEC_SECTION = "codec parameters (declared by each codec in fedras_flwr/codecs/)"


@dataclass(frozen=True)
class RunConfig:
    """Everything one federated run needs. Attribute names are the run-config keys with `_`; the
    codecs' own parameters are held in `codec_parameters` and read through `codec_params`."""

    # data
    dataset: str = setting("synthetic", "synthetic | ml-100k | ml-1m | lastfm-2k | amazon-games | interactions")
    data_dir: str = setting("", "folder with the official files; else $FEDRAS_DATA_DIR, else download")
    cache_dir: str = setting("", "download cache; default ~/.cache/fedras_flwr")
    verify_checksums: bool = setting(
        True, "a local copy of an official dataset must match the published file (false: accept a modified copy)"
    )
    interactions_file: str = setting("", 'dataset = "interactions": a CSV/TSV of user, item[, timestamp]')
    interactions_sep: str = setting("auto", 'auto | "," | "\\t" | ";" | "::" ...')
    interactions_columns: str = setting("user,item,timestamp", "column order of the interactions file")
    interactions_line_order_is_time: bool = setting(
        False, "no timestamp column: true if each user's rows are in time order (else the split orders them at random)"
    )
    min_user_interactions: int = setting(5, "users with fewer positives are dropped")
    synthetic_users: int = setting(600, "synthetic dataset: number of users")
    synthetic_items: int = setting(1000, "synthetic dataset: number of items")
    synthetic_mean_interactions: int = setting(60, "synthetic dataset: mean positives per user")
    # model and local training
    model: str = setting("mf", "mf | neumf")
    embedding_dim: int = setting(32, "d of the user and item embeddings")
    mlp_layers: str = setting("64,32,16", "NeuMF MLP tower widths")
    init_std: float = setting(0.1, "standard deviation of the Gaussian initial embeddings")
    local_epochs: int = setting(2, "passes over a user's training positives per round")
    batch_size: int = setting(64, "examples per local mini-batch")
    lr: float = setting(0.0, "0: the model's default (mf 4.0, neumf 0.02)")
    optimizer: str = setting("auto", "auto (mf: sgd, neumf: adam) | sgd | adam")
    weight_decay: float = setting(0.0, "L2 on the local parameters (item rows: see server-decay)")
    num_negatives: int = setting(4, "training negatives per positive, resampled every epoch")
    divergence_limit: float = setting(
        1000.0, "a user whose trained values are non-finite or beyond +-this is skipped (0: non-finite only)"
    )
    # federation
    num_server_rounds: int = setting(100, "federated rounds")
    clients_per_round: int = setting(100, "users (not SuperNodes) sampled per round")
    server_lr: float = setting(1.0, "Q[i] += server-lr * mean update of the clients that touched item i")
    server_decay: float = setting(
        0.0, "item-row weight decay on the server: Q[i] *= 1 - server-decay for the rows updated in a round"
    )
    aggregation_weighting: str = setting("uniform", "uniform | examples")
    codec: str = setting("fedras", f"the upload codec: {' | '.join(available_codecs())}")
    error_feedback: bool = setting(False, "keep what the codec dropped on the client, add it next time it is sampled")
    reference_embedding_dim: int = setting(0, "d of the byte references (0: embedding-dim); set it for small-d runs")
    downlink: str = setting("dense", "dense (full table) | actions (the table step as FedRAS actions)")
    downlink_actions: int = setting(256, "K of the downlink actions")
    dense_upload: str = setting(
        "auto", f"NeuMF's MLP/output weights up: auto (float32 for dense/sparse, else int8) | {' | '.join(WEIGHT_FORMATS)}"
    )
    # heterogeneity (see algorithm/hetero.py): scenario, clock constants, number-of-actions policy
    hetero: str = setting("none", "scenario: none | homogeneous | uniform | mostly-slow | mixed")
    compute_tiers: str = setting("", 'override the preset: "name=speed@share,..."')
    network_tiers: str = setting("", 'override the preset: "name=up_kbps/down_kbps@share,..."')
    hetero_jitter: float = setting(0.1, "per-round clipped Gaussian factor on speed and bandwidth")
    seconds_per_example: float = setting(1e-4, "training cost of one example on a speed-1 device")
    seconds_per_flop: float = setting(1e-9, "encoding (k-means) cost of one multiply-add on a speed-1 device")
    k_policy: str = setting("fixed", "fixed | deadline | target-ratio (number of actions per client)")
    k_candidates: str = setting(
        "8,16,32,64,128,256", "K the policies choose from; floor 8: a client that misses the deadline anyway keeps a useful K"
    )
    deadline_quantile: float = setting(0.5, "deadline = this quantile of last round's uncompressed client times")
    deadline_seconds: float = setting(0.0, "> 0: a fixed deadline instead")
    target_ratio: float = setting(0.01, "target-ratio policy: payload <= this fraction of the dense reference")
    stragglers: str = setting("wait", "wait | drop (clients past the deadline are left out of aggregation)")
    target_hr: float = setting(0.5, "HR@K whose simulated time-to-reach is reported")
    target_hr_reference: float = setting(0.0, "> 0: target = 0.95 x this (a dense run's final HR@K)")
    # reliability: hostile payloads, failing SuperNodes, checkpoints
    clip_norm: float = setting(0.0, "> 0: scale each client's decoded update down to this L2 norm")
    max_upload_bytes: int = setting(
        0, "bigger uploads are rejected; 0: twice the dense upload (float32 table + float32 dense weights)"
    )
    max_failure_fraction: float = setting(0.5, "a round where more of the asked SuperNodes fail is skipped")
    min_fit_clients: int = setting(1, "a round with fewer valid client updates is skipped")
    round_timeout: float = setting(0.0, "seconds a round waits for SuperNodes (0: no limit); late ones count as failed")
    checkpoint_every: int = setting(10, "server checkpoint + client state snapshots every N rounds (0: off)")
    resume: str = setting("", "a checkpoint file or a run's out-dir to continue from")
    # evaluation and output
    num_eval_negatives: int = setting(99, "sampled negatives ranked against each held-out item")
    topk: str = setting("10", 'comma-separated cut-offs, e.g. "5,10,20"')
    eval_every: int = setting(10, "evaluate every N rounds (and after the last)")
    seed: int = setting(0, "training randomness: initialisation, sampling, negatives, k-means")
    split_seed: int = setting(
        0, "the dataset split and evaluation negatives (and the synthetic data): fixed across run seeds"
    )
    out_dir: str = setting("", "default: ./outputs/<timestamp>")
    verbosity: str = setting("quiet", "quiet (our progress lines and the final summary) | flower (also Flower's own log)")
    #: (key, value) of the codec parameters that differ from their defaults, sorted by key
    codec_parameters: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        # one form per set of values: known keys, typed, defaults left out, sorted (equal configs hash equal)
        object.__setattr__(self, "codec_parameters", _normalised_codec_parameters(self.codec_parameters))
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
        return "float32" if codec_class(self.codec).lossless else "int8"

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

    def codec_params(self, codec: str | None = None) -> CodecParams:
        """The parameters of `codec` (default: this run's codec) as this config sets them."""
        cls = codec_class(codec or self.codec)
        own = parameter_keys(cls)
        return cls.Params(**{own[key].name: value for key, value in self.codec_parameters if key in own})

    @classmethod
    def from_flat(cls, values: Mapping[str, Any]) -> "RunConfig":
        """Build from a Flower run_config (hyphenated keys); unknown keys are an error."""
        if "codec-parameters" in values:
            raise ConfigError(_unknown_key("codec-parameters"))
        return cls().replace(**{key.replace("-", "_"): value for key, value in values.items()})

    def to_flat(self) -> dict[str, Any]:
        """Hyphenated dict of every key, codec parameters included: the form pyproject and `--run-config` use."""
        flat = {key_of(f.name): getattr(self, f.name) for f in fields(self) if f.name != "codec_parameters"}
        flat.update({key: spec.default for key, spec in _codec_parameter_fields().items()})
        flat.update(self.codec_parameters)
        return flat

    def replace(self, **changes: Any) -> "RunConfig":
        """A copy with `changes` (attribute names with `_`, codec parameters included), typed and checked."""
        own = {f.name: f for f in fields(self) if f.name != "codec_parameters"}
        codec_keys = _codec_parameter_fields()
        values, codec_values = {}, dict(changes.pop("codec_parameters", self.codec_parameters))
        for name, value in changes.items():
            if name in own:
                values[name] = _coerce(key_of(name), value, own[name].type)
            elif key_of(name) in codec_keys:
                codec_values[key_of(name)] = value
            else:
                raise ConfigError(_unknown_key(key_of(name)))
        return dataclasses.replace(self, **values, codec_parameters=tuple(codec_values.items()))


def _codec_parameter_fields() -> dict[str, dataclasses.Field]:
    """Every registered codec's parameters by key; a key that a `RunConfig` field already has is refused."""
    declared = {key: spec for name in available_codecs() for key, spec in parameter_keys(codec_class(name)).items()}
    shadowing = sorted(set(declared) & {key_of(f.name) for f in fields(RunConfig)})
    if shadowing:
        raise ConfigError(f"a codec declares the parameter {shadowing[0]!r}, which is already a run-config key: rename it")
    return declared


def _normalised_codec_parameters(items: Any) -> tuple[tuple[str, Any], ...]:
    declared = _codec_parameter_fields()
    try:
        pairs = dict(items)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"codec-parameters must be (key, value) pairs, got {items!r}") from err
    kept = {}
    for key, value in pairs.items():
        if key not in declared:
            raise ConfigError(_unknown_key(str(key)))
        typed = _coerce(key, value, declared[key].type)
        if typed != declared[key].default:
            kept[key] = typed
    return tuple(sorted(kept.items()))


def _unknown_key(key: str) -> str:
    known = sorted(flat_defaults())
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean {close[0]!r}?" if close else "see the configuration table in the README"
    return f"unknown run-config key {key!r}: {hint}"


#: the keys that hold paths: made absolute before a run config leaves this process (Flower's run elsewhere)
PATH_KEYS = ("data-dir", "cache-dir", "interactions-file", "resume", "out-dir")


def absolute_paths(flat: Mapping[str, Any], base: str | Path = ".") -> dict[str, Any]:
    """`flat` with every non-empty path key made absolute, relative ones taken from `base`."""
    return {k: str((Path(base) / Path(str(v)).expanduser()).resolve()) if k in PATH_KEYS and v else v for k, v in flat.items()}


def flat_defaults() -> dict[str, Any]:
    """The default run-config as Flower sees it."""
    return RunConfig().to_flat()


def parse_overrides(pairs: list[str]) -> RunConfig:
    """A run config from command-line `key=value` pairs, each value typed like its key's default."""
    defaults = flat_defaults()
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep:
            raise ConfigError(f"expected key=value, got {pair!r}")
        if key not in defaults:
            raise ConfigError(_unknown_key(key))
        kind = type(defaults[key])
        try:
            values[key] = _parse_bool(text) if kind is bool else kind(text)
        except ValueError as err:
            raise ConfigError(f"run-config key {key!r} must be {kind.__name__}, got {text!r}") from err
    return RunConfig.from_flat(values)


def _parse_bool(text: str) -> bool:
    if text.lower() in {"1", "true", "yes"}:
        return True
    if text.lower() in {"0", "false", "no"}:
        return False
    raise ValueError(text)


def parse_int_list(text: str, key: str) -> list[int]:
    try:
        values = [int(part) for part in str(text).split(",") if part.strip()]
    except ValueError as err:
        raise ConfigError(f"{key} must be a comma-separated list of integers, got {text!r}") from err
    if not values or any(v <= 0 for v in values):
        raise ConfigError(f"{key} must list positive integers, got {text!r}")
    return values


#: Local-training defaults per model (optimizer, lr), used when `optimizer = "auto"` / `lr = 0`. MF's
#: plain SGD needs a large lr because the loss is a batch mean; NeuMF's MLP learns with Adam at a small one
#: (docs/results.md, "NeuMF's default optimizer").
MODEL_DEFAULTS: dict[str, tuple[str, float]] = {"mf": ("sgd", 4.0), "neumf": ("adam", 0.02)}

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
    "dense_upload": ("auto", *WEIGHT_FORMATS),
    "aggregation_weighting": ("uniform", "examples"),
    "verbosity": ("quiet", "flower"),
    "downlink": ("dense", "actions"),
    "hetero": ("none", "homogeneous", "uniform", "mostly-slow", "mixed"),
    "k_policy": ("fixed", "deadline", "target-ratio"),
    "stragglers": ("wait", "drop"),
}
#: every count-like knob: a zero or negative value would make a run "complete" with meaningless results
_POSITIVE = (
    "embedding_dim", "local_epochs", "batch_size", "num_server_rounds", "clients_per_round",
    "eval_every", "num_eval_negatives", "synthetic_users", "synthetic_items", "synthetic_mean_interactions",
    "downlink_actions", "min_fit_clients", "init_std",
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
    if cfg.codec not in available_codecs():
        raise ConfigError(f"codec must be one of {available_codecs()}, got {cfg.codec!r}")
    for name in available_codecs():  # every codec's parameters, so a bad value fails whatever the codec
        try:
            cfg.codec_params(name)
        except ValueError as err:
            raise ConfigError(str(err)) from err
    if codec_class(cfg.codec).lossless and cfg.dense_upload not in ("auto", "float32"):
        raise ConfigError(f"codec {cfg.codec!r} is a lossless reference: dense-upload must be auto or float32")
