"""Hydra conf/ and pyproject's run-config never drift; sweeps report failed jobs by name."""

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from test_cli import flwr_env, superlink_pids

from fedras_flwr.config import MODEL_DEFAULTS, RunConfig, flat_defaults

CONF = REPO / "fedras_flwr" / "conf"


def composed(*overrides: str, with_hydra: bool = False):
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=with_hydra)


def test_default_composition_equals_pyproject_run_config():
    run = OmegaConf.to_container(composed().run, resolve=True)
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    assert run == pyproject == flat_defaults()


@pytest.mark.parametrize("group", ["dataset", "model", "codec", "hetero", "budget"])
def test_every_group_option_sets_known_keys_and_validates(group, monkeypatch):
    monkeypatch.setenv("FEDRAS_DATA_DIR", "/data")
    for option in sorted((CONF / group).glob("*.yaml")):
        values = yaml.safe_load(option.read_text())
        assert set(values) <= set(flat_defaults()), option
        run = OmegaConf.to_container(composed(f"{group}={option.stem}").run, resolve=True)
        RunConfig.from_flat(run)
        # the option's values win over the base config (and a command-line run.* override wins over both)
        literal = {k: v for k, v in values.items() if not str(v).startswith("${")}
        assert {k: run[k] for k in literal} == literal, option


def test_the_neumf_group_alone_gives_neumf_its_training_defaults():
    cfg = RunConfig.from_flat(OmegaConf.to_container(composed("model=neumf").run, resolve=True))
    assert (cfg.effective_optimizer, cfg.effective_lr) == MODEL_DEFAULTS["neumf"]


def test_command_line_overrides_win():
    run = composed("codec=dense", "run.codec=sparse", "run.lr=0.5").run
    assert (run.codec, run.lr) == ("sparse", 0.5)
    assert composed("codec=topk").run.codec == "topk"


@pytest.mark.parametrize("experiment", ["payload_grid", "hetero_scenarios"])
def test_experiment_presets_compose(experiment):
    cfg = composed(f"experiment={experiment}", with_hydra=True)
    assert cfg.hydra.sweeper.params  # the sweep the preset runs
    RunConfig.from_flat(OmegaConf.to_container(cfg.run, resolve=True))


def test_failed_job_is_named_and_the_multirun_exits_non_zero(tmp_path):
    home = tmp_path / "flwr-home"
    home.mkdir()
    (home / "config.toml").write_text('[superlink]\ndefault = "ci"\n[superlink.ci]\naddress = ":local-in-memory:"\n')
    env = flwr_env(home)
    command = [
        sys.executable, "-m", "fedras_flwr.tooling.sweep", "--multirun", "run.optimizer=sgd,rmsprop",
        "run.num-server-rounds=1", "run.synthetic-users=30", "run.synthetic-items=150",
        "run.synthetic-mean-interactions=15", "run.clients-per-round=5", f"hydra.sweep.dir={tmp_path / 'multirun'}",
    ]
    try:
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    finally:
        for pid in superlink_pids():
            os.kill(pid, 15)
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "run.optimizer=rmsprop" in output and "optimizer must be one of" in output
    summaries = list((tmp_path / "multirun").rglob("summary.json"))
    assert len(summaries) == 1 and "optimizer=sgd" in str(summaries[0])  # the good job still ran, via Flower
    assert Path(summaries[0].parent.parent / "flwr.log").is_file()


def test_a_dataset_and_model_get_their_calibrated_budget():
    budget = yaml.safe_load((CONF / "budget" / "ml-100k-mf.yaml").read_text())
    run = OmegaConf.to_container(composed("dataset=ml-100k").run, resolve=True)
    assert {key: run[key] for key in budget} == budget
    neumf_budget = yaml.safe_load((CONF / "budget" / "ml-100k-neumf.yaml").read_text())
    neumf = OmegaConf.to_container(composed("dataset=ml-100k", "model=neumf").run, resolve=True)
    assert {key: neumf[key] for key in neumf_budget} == neumf_budget != budget  # each model its own budget
    uncalibrated = OmegaConf.to_container(composed("dataset=ml-1m", "model=neumf").run, resolve=True)
    assert uncalibrated["lr"] == flat_defaults()["lr"]  # no budget file: the model's own default, not MF's lr
    assert composed("dataset=ml-100k", "run.num-server-rounds=7").run["num-server-rounds"] == 7
