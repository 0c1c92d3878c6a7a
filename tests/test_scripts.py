"""The experiment scripts run on today's code (tiny budgets; their figures are in docs/)."""

import subprocess
import sys

from conftest import REPO

TINY = ["synthetic-users=40", "synthetic-items=150", "synthetic-mean-interactions=15"]


def run_script(name: str, *args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "scripts" / name), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


def test_hetero_scenarios_runs(tmp_path):
    done = run_script("hetero_scenarios.py", "--rounds", "2", "--clients-per-round", "10", "--eval-every", "1",
                      "--scenarios", "homogeneous", "--methods", "dense,fedras K=8", "--jobs", "1",
                      "--out", str(tmp_path / "hetero"), "--set", *TINY, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "fedras K=8" in (tmp_path / "hetero" / "hetero.md").read_text()


def test_payload_grid_runs(tmp_path):
    done = run_script("payload_grid.py", "--rounds", "2", "--clients-per-round", "10", "--eval-every", "2",
                      "--codecs", "fedras,topk", "--levels", "90.0", "--seeds", "0", "--jobs", "1",
                      "--out", str(tmp_path / "grid"), "--set", *TINY, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "fedras" in (tmp_path / "grid" / "grid.md").read_text()


def test_kmeans_cap_runs(tmp_path):
    done = run_script("kmeans_cap.py", "--every", "3", "--caps", "1,3", *TINY, "num-server-rounds=2",
                      "clients-per-round=10", "num-actions=4", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    row = next(line for line in done.stdout.splitlines() if line.startswith("| 4 |"))
    assert row.count("x |") == 2 and int(row.split("|")[2]) >= 1  # K=4: some clusterings kept, two caps
