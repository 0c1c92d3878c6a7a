"""scripts/compose_smoke.py, the parts that need no container engine (CI runs the whole script after the tests)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
import compose_smoke  # noqa: E402
from compose_smoke import SmokeFailed, debian_base_tag, debian_recipe, detect_engine  # noqa: E402

from fedras_flwr.tooling.deploy_local import run_config  # noqa: E402


def test_the_public_base_is_the_dockerfiles_default():
    assert compose_smoke.PUBLIC_BASE == "python:3.11-slim"


def test_the_base_image_tag_is_a_hash_of_its_recipe():
    recipe = debian_recipe("http://deb.debian.org/debian")
    tag = debian_base_tag(recipe)
    assert tag.startswith("localhost/fedras-base:bookworm-") and tag == debian_base_tag(debian_recipe("http://deb.debian.org/debian"))
    assert debian_base_tag({**recipe, "packages": (*recipe["packages"], "curl")}) != tag
    assert debian_base_tag(debian_recipe("http://mirror.example/debian")) != tag


def test_a_clean_checkout_has_the_wheelhouse_the_dockerfile_mounts():
    assert "source=wheelhouse" in (REPO / "Dockerfile").read_text()
    assert (REPO / "wheelhouse" / "README.md").is_file()
    assert "wheelhouse/*.whl" in (REPO / ".gitignore").read_text().splitlines()  # wheels stay out of git and the FAB


def test_the_smoke_run_config_is_valid():
    cfg = run_config(compose_smoke.RUN)
    assert cfg["num-server-rounds"] == 2 and cfg["codec"] == "fedras" and cfg["out-dir"] == "/app/outputs/smoke"


def test_without_an_engine_it_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    with pytest.raises(SmokeFailed, match="apt-get install podman runc"):
        detect_engine()
    podman = tmp_path / "podman"
    podman.write_text("#!/bin/sh\nexit 0\n")
    podman.chmod(0o755)
    with pytest.raises(SmokeFailed, match="pip install podman-compose"):
        detect_engine()
    (tmp_path / "podman-compose").write_bytes(podman.read_bytes())
    (tmp_path / "podman-compose").chmod(0o755)
    engine = detect_engine()
    assert engine.cli == "podman" and engine.staged_up and engine.separator == "_" and "--in-pod=false" in engine.compose
    assert os.path.basename(engine.compose[0]) == "podman-compose"


def test_log_excerpts_drop_colours_and_keep_the_matched_text():
    refusal = " exception: No SuperNode found with the given public key."
    line = "\x1b[91mERROR \x1b[0m: [/v1/fleet/activate-node] key: " + "A" * 300 + refusal
    excerpt = compose_smoke._excerpt(line, "No SuperNode found")
    assert excerpt.startswith("ERROR : [/v1/fleet") and "\x1b" not in excerpt
    assert excerpt.endswith("No SuperNode found with the given public key.") and len(excerpt) < 170
    assert compose_smoke._excerpt("\x1b[92mINFO\x1b[0m short", "short") == "INFO short"


def fake_engine(tmp_path, leftover: str = "") -> tuple[compose_smoke.Engine, Path]:
    """An engine and compose front end that only record their command lines; `ps -a` lists `leftover`."""
    calls = tmp_path / "calls.txt"
    script = tmp_path / "fake"
    script.write_text(
        f'#!/bin/sh\necho "$(basename "$0") $*" >> {calls}\n'
        f'case "$*" in "ps -a"*) echo "{leftover}";; esac\nexit 0\n'
    )
    script.chmod(0o755)
    for name in ("podman", "podman-compose"):
        (tmp_path / name).symlink_to(script)
    engine = compose_smoke.Engine(str(tmp_path / "podman"), (str(tmp_path / "podman-compose"),), staged_up=True, separator="_")
    return engine, calls


def test_a_failed_smoke_still_removes_the_intruder_and_the_project(tmp_path, capsys):
    engine, calls = fake_engine(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(SmokeFailed, match="boom"):
        with compose_smoke.ComposeDeployment(engine, work) as deployment:
            deployment.services = ["superlink"]
            raise SmokeFailed("boom")
    recorded = calls.read_text()
    project = deployment.project
    assert f"podman logs {project}_superlink_1" in recorded and f"podman rm -f {project}-intruder" in recorded
    assert f"podman-compose -p {project} -f {work / 'docker-compose.yml'} down -v -t 5" in recorded
    assert f"podman ps -a --filter label=com.docker.compose.project={project}" in recorded
    assert f"teardown: no container, network or volume of {project} left" in capsys.readouterr().out


def test_what_teardown_leaves_fails_the_smoke(tmp_path):
    engine, _ = fake_engine(tmp_path, leftover="stuck_container")
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(SmokeFailed, match="teardown left container stuck_container"):
        with compose_smoke.ComposeDeployment(engine, work):
            pass


def test_a_work_dir_with_files_is_refused(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(SystemExit):
        compose_smoke.main(["--work-dir", str(tmp_path)])
    assert "is not empty: name a new or empty folder" in capsys.readouterr().err
    assert (tmp_path / "keep.txt").read_text() == "mine"
