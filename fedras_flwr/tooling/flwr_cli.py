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


def flwr_binary() -> str:
    """This environment's `flwr`, even when its bin/ is not on PATH."""
    beside = Path(sys.executable).parent / "flwr"
    return str(beside) if beside.exists() else "flwr"


def flwr_cli(args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """The Flower CLI with `args` (captured output), with this environment's bin/ first on PATH for the Flower
    processes it starts (`flower-superlink` of a local run, ...)."""
    env = {**env, "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", os.defpath)])}
    return subprocess.run([flwr_binary(), *args], env=env, capture_output=True, text=True, timeout=timeout)
