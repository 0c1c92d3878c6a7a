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
    ],
)
def test_bad_values_are_explained(bad, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig.from_flat(bad)


def test_integers_are_accepted_for_floats():
    assert RunConfig.from_flat({"lr": 1}).lr == 1.0
