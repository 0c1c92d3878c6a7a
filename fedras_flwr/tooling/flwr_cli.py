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


BIN = Path(sys.executable).parent  # this environment's scripts: flwr, flower-superlink, flwr-serverapp, ...


def on_this_path(env: dict[str, str]) -> dict[str, str]:
    """`env` with this environment's bin/ first on PATH, so that the Flower processes a CLI call or a component
    starts (`flower-superlink` of a local run, `flwr-serverapp`, ...) come from it even when it is not activated."""
    return {**env, "PATH": os.pathsep.join([str(BIN), env.get("PATH", os.defpath)])}


def flwr_binary() -> str:
    """This environment's `flwr`, even when its bin/ is not on PATH."""
    beside = BIN / "flwr"
    return str(beside) if beside.exists() else "flwr"


def flwr_cli(args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """The Flower CLI with `args` (captured output)."""
    return subprocess.run([flwr_binary(), *args], env=on_this_path(env), capture_output=True, text=True, timeout=timeout)


def flwr_stream(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    """The Flower CLI with `args`, its output (stderr merged) to read as it comes."""
    return subprocess.Popen(
        [flwr_binary(), *args], env=on_this_path(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
