"""One source of truth: pyproject's run-config equals the typed defaults; bad values are rejected."""

import tomllib

import pytest
from conftest import REPO

from fedras_flwr.config import ConfigError, RunConfig, flat_defaults

ISSUE_KEYS = {
    "dataset", "data-dir", "model", "embedding-dim", "num-server-rounds", "clients-per-round", "local-epochs",
    "batch-size", "lr", "optimizer", "num-negatives", "eval-every", "codec", "seed", "out-dir",
    "interactions-file", "interactions-sep", "interactions-columns",
}


def test_pyproject_run_config_matches_defaults():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert pyproject["tool"]["flwr"]["app"]["config"] == flat_defaults()


def test_required_keys_exist():
    assert ISSUE_KEYS <= set(flat_defaults())


def test_round_trip_through_flat_form():
    cfg = RunConfig(lr=0.25, codec="sparse")
    assert RunConfig.from_flat(cfg.to_flat()) == cfg


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"learning-rate": 0.1}, "unknown run-config key"),
        ({"model": "gru"}, "model must be one of"),
        ({"embedding-dim": 0}, "embedding-dim must be > 0"),
        ({"embedding-dim": "32"}, "must be int"),
        ({"codec": "zip"}, "codec must be one of"),
        ({"topk": "10,x"}, "topk must be"),
        ({"min-user-interactions": 2}, "min-user-interactions"),
        ({"entropy-coding": "zstd"}, "entropy-coding must be one of"),
    ],
)
def test_bad_values_are_explained(bad, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig.from_flat(bad)


def test_integers_are_accepted_for_floats():
    assert RunConfig.from_flat({"lr": 1}).lr == 1.0


@pytest.mark.parametrize(
    "key", ["num-actions", "downlink-actions", "kmeans-iters", "svd-rank", "colr-rank", "min-fit-clients",
            "clients-per-round", "num-server-rounds", "eval-every", "num-eval-negatives"],
)
def test_count_knobs_must_be_positive(key):
    """num-actions=0 used to run every round as skipped and end "completed"."""
    with pytest.raises(ConfigError, match=f"{key} must be > 0"):
        RunConfig.from_flat({key: 0})


@pytest.mark.parametrize("key", ["num-negatives", "weight-decay", "server-decay", "lr", "seed", "split-seed",
                                 "checkpoint-every", "divergence-limit"])
def test_knobs_where_zero_means_off_reject_negatives(key):
    with pytest.raises(ConfigError, match=f"{key} must be >= 0"):
        RunConfig.from_flat({key: -1})


def test_nan_is_not_a_value():
    with pytest.raises(ConfigError):
        RunConfig.from_flat({"init-std": float("nan")})
    with pytest.raises(ConfigError):
        RunConfig.from_flat({"server-decay": 1.0})


def test_lossless_references_send_float32_weights():
    assert RunConfig(codec="dense").effective_dense_upload == "float32"
    assert RunConfig(codec="fedras").effective_dense_upload == "int8"
    with pytest.raises(ConfigError, match="dense-upload"):
        RunConfig(codec="sparse", dense_upload="int8")


def test_generated_copies_of_the_run_config_are_current():
    """pyproject, conf/config.yaml and the README table are the generator's output for today's keys."""
    from fedras_flwr.tooling.config_reference import stale_files

    assert stale_files(REPO) == [], "run `python -m fedras_flwr.tooling.config_reference --write`"


def test_a_stale_copy_is_found_and_rewritten(tmp_path):
    from fedras_flwr.tooling import config_reference

    for path, _, _ in config_reference.targets(REPO):
        copy = tmp_path / path.relative_to(REPO)
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text(path.read_text())
    readme = tmp_path / "README.md"
    readme.write_text(readme.read_text().replace("| `num-actions` | `8` |", "| `num-actions` | `9` |"))
    assert config_reference.stale_files(tmp_path) == [readme]
    assert config_reference.main(["--check", "--root", str(tmp_path)]) == 1
    assert config_reference.main(["--write", "--root", str(tmp_path)]) == 0
    assert config_reference.stale_files(tmp_path) == []
    assert readme.read_text() == (REPO / "README.md").read_text()


def test_every_key_has_a_line_in_the_reference():
    from fedras_flwr.tooling.config_reference import sections

    listed = {key: help_text for _, entries in sections() for key, _, help_text in entries}
    assert set(listed) == set(flat_defaults()) and all(listed.values())


def test_codec_parameters_round_trip_and_have_one_form():
    cfg = RunConfig(codec="topk").replace(topk_fraction=0.25, num_actions=4, svd_rank=2)  # svd-rank 2 is the default
    assert cfg.codec_parameters == (("num-actions", 4), ("topk-fraction", 0.25))
    assert RunConfig.from_flat(cfg.to_flat()) == cfg
    same = RunConfig(codec="topk", codec_parameters=(("topk-fraction", 0.25), ("num-actions", 4.0), ("svd-rank", 2)))
    assert same == cfg and hash(same) == hash(cfg)


@pytest.mark.parametrize("values, message", [
    ({"num-server-round": 3}, "unknown run-config key 'num-server-round': did you mean 'num-server-rounds'?"),
    ({"codec-parameters": "x"}, "unknown run-config key 'codec-parameters'"),
    ({"num-actions": "many"}, "'num-actions' must be int"),
])
def test_bad_keys_are_named_in_one_line(values, message):
    with pytest.raises(ConfigError) as raised:
        RunConfig.from_flat(values)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_a_codec_can_neither_shadow_a_run_config_key_nor_reuse_a_name():
    from dataclasses import dataclass

    from fedras_flwr.codecs import Codec, CodecParams, parameter, unregister_codec

    with pytest.raises(ValueError, match="already registered"):
        type("AnotherSVD", (Codec,), {"name": "svd"})

    @dataclass(frozen=True)
    class SeededParams(CodecParams):
        seed: int = parameter(7, "a parameter named like a run-config key")

    try:
        type("Seeded", (Codec,), {"name": "seeded", "Params": SeededParams})
        with pytest.raises(ConfigError, match="'seed', which is already a run-config key"):
            RunConfig()
    finally:
        unregister_codec("seeded")
    assert RunConfig().seed == 0
