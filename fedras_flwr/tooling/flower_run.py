"""One Flower run from submission to its final status, for `fedras run`, the sweep and the local deployment.

A local simulation gets a SuperLink of its own: a Flower home inside the results folder, free ports, no
runtime dependency installation; when the run ends, that SuperLink is stopped with everything it started
(`flwr run` alone leaves it running). A named connection (`federation`) is used as it is.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, TextIO

from fedras_flwr.tooling.flwr_cli import FLOWER_ENV, flwr_binary, flwr_cli

STOP_GRACE_SECONDS = 10.0
#: a line of Flower's own INFO log (green "INFO"): left out of a quiet console (verbosity = "quiet")
FLOWER_INFO = re.compile(r"^\x1b\[\d+mINFO\b")


class RunFailed(RuntimeError):
    """The Flower run did not start, or did not complete."""


@contextmanager
def flower_environment(flower_home: Path | None) -> Iterator[dict[str, str]]:
    """The environment of one run's Flower CLI calls. With `flower_home` (a local simulation): that Flower home
    and free ports, so `flwr run` starts a SuperLink of this run's own, which is stopped on leaving."""
    env = {
        **os.environ,
        **{key: os.environ.get(key, value) for key, value in FLOWER_ENV.items()},
        "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",  # Ray's warning about GPUs these runs do not ask for
    }
    if flower_home is None:
        yield env
        return
    env.update(
        FLWR_HOME=str(flower_home),
        FLWR_LOCAL_SUPERLINK_HTTP_API_PORT=str(_free_port()),
        FLWR_LOCAL_CONTROL_API_PORT=str(_free_port()),
    )
    try:
        yield env
    finally:
        stop_local_superlink(flower_home)


def submit(app: Path, config_file: Path, connection: str, federation_config: str, env: dict[str, str]) -> str:
    """Start the run (`flwr run`) and return its id."""
    command = ["run", str(app), *([connection] if connection else []), "--run-config", str(config_file), "--format", "json"]
    if federation_config:
        command += ["--federation-config", federation_config]
    submitted = flwr_cli(command, env, timeout=300)
    try:
        return str(json.loads(submitted.stdout)["run-id"])
    except (ValueError, KeyError) as err:
        raise RunFailed(f"Flower did not start the run: {(submitted.stdout + submitted.stderr).strip()[-600:]}") from err


def follow_log(run_id: str, connection: str, env: dict[str, str], sink: TextIO, quiet: bool, timeout: float) -> None:
    """Copy the run's log to `sink` as it is written, until the run ends; a quiet copy leaves out Flower's INFO lines.
    RunFailed when the run takes longer than `timeout` seconds."""
    command = [flwr_binary(), "log", run_id, *([connection] if connection else []), "--stream"]
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:
        watchdog = threading.Timer(timeout, process.kill)
        watchdog.start()
        try:
            assert process.stdout is not None
            for line in process.stdout:
                if not (quiet and FLOWER_INFO.match(line)):
                    sink.write(line)
                    sink.flush()
        finally:
            watchdog.cancel()
    if process.returncode == -signal.SIGKILL:
        raise RunFailed(f"Flower run {run_id} took longer than {timeout:.0f} s")


def completed_summary(run_id: str, connection: str, env: dict[str, str], out_dir: Path, wait: float = 60.0) -> dict[str, Any]:
    """The run's summary.json once Flower lists the run as finished:completed; RunFailed otherwise."""
    deadline = time.monotonic() + wait  # the log stream can end a moment before the run's status does
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        listing = flwr_cli(["list", *([connection] if connection else []), "--run-id", run_id, "--format", "json"], env, 120)
        runs = json.loads(listing.stdout).get("runs", []) if listing.stdout.strip().startswith("{") else []
        status = runs[0] if runs else {}
        if str(status.get("status", "")).startswith("finished"):
            break
        time.sleep(2)
    summary_file = out_dir / "summary.json"
    if status.get("status") != "finished:completed" or not summary_file.is_file():
        details = status.get("status-details") or "see the run's log"
        raise RunFailed(f"Flower run {run_id} ended as {status.get('status', 'unknown')}: {details}")
    return json.loads(summary_file.read_text())


def stop_local_superlink(flower_home: Path) -> list[int]:
    """Stop the SuperLink that `flwr run` started for `flower_home`, with its process group (the SuperExec and
    the simulation it spawned); return the PIDs asked to stop."""
    pids = processes_naming(str(flower_home / "local-superlink"))
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in filter(_alive, pids):
            try:
                os.killpg(os.getpgid(pid), sig)
            except ProcessLookupError:  # it ended meanwhile
                continue
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
            time.sleep(0.2)
    return pids


def processes_naming(marker: str) -> list[int]:
    """PIDs of the live processes whose command line contains `marker` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                command_line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:  # the process ended meanwhile
                continue
            if marker in command_line and _alive(int(entry.name)):
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for its parent."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]

