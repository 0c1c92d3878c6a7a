"""The Flower CLI as a subprocess, shared by the sweep (tooling/sweep.py) and the deployment tools
(tooling/deploy.py, scripts/): no Flower import, and no Hydra."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

#: The environment every Flower CLI call and Flower process of this project runs with: dependencies come from
#: the current environment (no runtime `uv sync`), no telemetry, no update check.
FLOWER_ENV = {
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
}


def flwr_cli(args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """The Flower CLI with `args` (captured output): the venv's even when the venv is not on PATH, with the
    venv's bin/ put first on PATH for the Flower processes it starts (`flower-superlink` of a local run, ...)."""
    bin_dir = Path(sys.executable).parent
    binary = "flwr"
    if (bin_dir / "flwr").exists():
        binary = str(bin_dir / "flwr")
        env = {**env, "PATH": os.pathsep.join([str(bin_dir), env.get("PATH", os.defpath)])}
    return subprocess.run([binary, *args], env=env, capture_output=True, text=True, timeout=timeout)
