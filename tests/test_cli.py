"""The README's main path: `flwr run .` through the real CLI, local SuperLink and app bundle."""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO


def free_port_pair() -> int:
    """A free port p with p + 2 free too (the local SuperLink's HTTP and Control APIs): parallel test
    runs and a developer's own SuperLink are never touched."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 2))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free pair of ports on 127.0.0.1")


PORT = free_port_pair()


def flwr_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        FLWR_HOME=str(home),
        FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1",
        FLWR_TELEMETRY_ENABLED="0",
        FLWR_DISABLE_UPDATE_CHECK="1",
        FLWR_LOCAL_SUPERLINK_HTTP_API_PORT=str(PORT),
        FLWR_LOCAL_CONTROL_API_PORT=str(PORT + 2),
    )
    return env


def superlink_pids() -> list[int]:
    """PIDs of the local SuperLink this test started (matched by its own port)."""
    listing = subprocess.run(["ps", "-ww", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return [
        int(line.split()[0])
        for line in listing.splitlines()
        if "flower-superlink" in line and f"--port {PORT}" in line
    ]


@pytest.fixture
def flwr_home(tmp_path):
    home = tmp_path / "flwr-home"
    home.mkdir()
    (home / "config.toml").write_text('[superlink]\ndefault = "ci"\n[superlink.ci]\naddress = ":local-in-memory:"\n')
    yield home
    for pid in superlink_pids():
        os.kill(pid, 15)


@pytest.mark.skipif(shutil.which("flwr") is None and not (Path(sys.executable).parent / "flwr").exists(),
                    reason="flwr CLI not installed")
def test_flwr_run_completes_and_writes_results(flwr_home, tmp_path):
    flwr = str(Path(sys.executable).parent / "flwr") if (Path(sys.executable).parent / "flwr").exists() else "flwr"
    env = flwr_env(flwr_home)
    out_dir = tmp_path / "results"
    overrides = (
        f"num-server-rounds=2 synthetic-users=40 synthetic-items=200 synthetic-mean-interactions=20 "
        f"clients-per-round=10 eval-every=1 codec='sparse' out-dir='{out_dir}'"
    )
    run = subprocess.run(
        [flwr, "run", str(REPO), "--stream", "--run-config", overrides,
         "--federation-config", "num-supernodes=3 client-resources-num-cpus=1"],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    listing = subprocess.run([flwr, "list", "--format", "json"], env=env, capture_output=True, text=True, timeout=120)
    statuses = [r["status"] for r in json.loads(listing.stdout)["runs"]]
    assert statuses == ["finished:completed"], run.stdout[-3000:]
    records = [json.loads(line) for line in (out_dir / "rounds.jsonl").read_text().splitlines()]
    assert [r["round"] for r in records] == [1, 2]
    assert json.loads((out_dir / "summary.json").read_text())["supernodes"] == 3
    assert "round 2/2" in run.stdout + run.stderr  # the progress line reaches the streamed log
