"""`pip install .` (not -e): the wheel holds the package data (the Hydra configs), and without a checkout the
sweep and `flwr run` take a generated Flower app that declares the same app and imports the installed
package (fedras_flwr/tooling/app_dir.py). The wheel is built offline and unpacked (what installing a
pure-Python wheel amounts to), then used through PYTHONPATH from a folder outside the checkout."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from packaging.requirements import Requirement

from fedras_flwr.config import flat_defaults
from fedras_flwr.tooling import flwr_cli as flwr_cli_module
from fedras_flwr.tooling.app_dir import COMPONENTS, GENERATED, PUBLISHER, app_dir, declares_this_app, write_app

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The wheel of `pip install .`, unpacked: a site-packages holding only this package."""
    root = tmp_path_factory.mktemp("installed")
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(root), str(REPO)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = root.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(root / "site")
    return root / "site"


def run_installed(site: Path, cwd: Path, *args: str) -> str:
    """`python *args` with the unpacked wheel in front of the editable checkout, outside the checkout."""
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_wheel_holds_every_module_and_conf_file(installed):
    source = {
        p.relative_to(REPO).as_posix() for p in (REPO / "fedras_flwr").rglob("*")
        if p.suffix in (".py", ".yaml") and "__pycache__" not in p.parts
    }
    assert {"fedras_flwr/conf/config.yaml", "fedras_flwr/conf/codec/fedras.yaml"} <= source
    wheel = {p.relative_to(installed).as_posix() for p in (installed / "fedras_flwr").rglob("*") if p.is_file()}
    assert sorted(source - wheel) == []


def test_installed_the_generated_app_declares_the_same_app(installed, tmp_path):
    where = run_installed(installed, tmp_path, "-c", "import fedras_flwr; print(fedras_flwr.__file__)")
    assert Path(where.strip()).is_relative_to(installed)  # the wheel's package, not the checkout's
    printed = run_installed(installed, tmp_path, "-m", "fedras_flwr.tooling.app_dir", str(tmp_path / GENERATED))
    folder = Path(printed.strip())
    assert folder == tmp_path / GENERATED  # no checkout beside the installed package: generated
    generated = tomllib.loads((folder / "pyproject.toml").read_text())
    ours = PYPROJECT["tool"]["flwr"]["app"]
    app = generated["tool"]["flwr"]["app"]
    assert (app["publisher"], app["components"]) == (ours["publisher"], ours["components"])
    assert app["config"] == ours["config"] == flat_defaults()  # every run-config key, with its default
    project = {key: generated["project"][key] for key in ("name", "version", "license")}
    assert project == {key: PYPROJECT["project"][key] for key in ("name", "version", "license")}
    requirements = {str(Requirement(r)) for r in PYPROJECT["project"]["dependencies"]}
    assert {str(Requirement(r)) for r in generated["project"]["dependencies"]} == requirements

    # Flower accepts it (its components importable here) and bundles a FAB without code
    from flwr.cli.build import build_fab_from_disk
    from flwr.cli.config_utils import load_and_validate

    load_and_validate(folder / "pyproject.toml", check_module=True)
    with zipfile.ZipFile(io.BytesIO(build_fab_from_disk(folder))) as fab:
        assert sorted(fab.namelist()) == [".info/CONTENT", "pyproject.toml"]


def test_installed_the_sweep_composes_its_packaged_conf(installed, tmp_path):
    printed = run_installed(installed, tmp_path, "-m", "fedras_flwr.tooling.sweep", "--cfg", "job", "codec=dense", "run.lr=0.5")
    run = yaml.safe_load(printed)["run"]
    assert set(run) == set(flat_defaults()) and (run["codec"], run["lr"]) == ("dense", 0.5)
    searchpath = run_installed(installed, tmp_path, "-m", "fedras_flwr.tooling.sweep", "--info", "searchpath")
    assert f"file://{installed / 'fedras_flwr' / 'conf'} " in searchpath  # the wheel's conf/, not the checkout's


def test_from_the_checkout_the_checkout_is_the_app(tmp_path):
    assert (COMPONENTS, PUBLISHER) == (PYPROJECT["tool"]["flwr"]["app"]["components"], PYPROJECT["tool"]["flwr"]["app"]["publisher"])
    assert declares_this_app(REPO)
    assert app_dir(tmp_path / GENERATED) == REPO and not (tmp_path / GENERATED).exists()
    assert not declares_this_app(tmp_path)  # no pyproject.toml
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "another-app"\n')
    assert not declares_this_app(tmp_path)
    assert declares_this_app(write_app(tmp_path / "generated"))


def test_the_deployment_tools_do_not_import_the_hydra_sweep(tmp_path):
    probe = "import sys, fedras_flwr.tooling.deploy; print(sorted({'hydra', 'fedras_flwr.tooling.sweep'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


def test_flwr_cli_runs_the_venv_cli_with_the_venv_first_on_path(monkeypatch):
    """`flwr run` starts `flower-superlink` by name: the venv's, even when the venv is not activated."""
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "flwr").exists():
        pytest.skip("no flwr beside this Python")
    seen = {}
    monkeypatch.setattr(flwr_cli_module.subprocess, "run", lambda command, env, **_: seen.update(command=command, env=env))
    flwr_cli_module.flwr_cli(["ls"], {"PATH": "/usr/bin"}, timeout=1)
    assert seen["command"] == [str(bin_dir / "flwr"), "ls"]
    assert seen["env"]["PATH"].split(os.pathsep) == [str(bin_dir), "/usr/bin"]
