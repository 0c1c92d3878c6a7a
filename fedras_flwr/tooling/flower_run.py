"""One Flower run from submission to its final status, for `fedras run`, the sweep and the local deployment.

A local simulation gets a SuperLink of its own: a Flower home inside the results folder, free ports, no
runtime dependency installation; when the run ends, or fails, or is interrupted, that SuperLink is stopped
with every process below it (`flwr run` alone leaves it running). A named connection is used as it is.
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
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, TextIO

from fedras_flwr.tooling.flwr_cli import FLOWER_ENV, flwr_cli, flwr_stream

STOP_GRACE_SECONDS = 10.0
#: what a quiet console (verbosity = "quiet") leaves out of a run's log: Flower's own INFO lines (green "INFO"),
#: and its start-up notes that say nothing about this run
QUIET_DROPS = re.compile(
    r"^\x1b\[\d+mINFO\b|^Using SuperLink: |^Successfully installed |default simulated SuperNodes changed"
)

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
    http_port, control_port = free_ports(2)
    env.update(
        FLWR_HOME=str(flower_home),
        FLWR_LOCAL_SUPERLINK_HTTP_API_PORT=str(http_port),
        FLWR_LOCAL_CONTROL_API_PORT=str(control_port),
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
    reply = _json(submitted.stdout)
    if "run-id" not in reply:
        reason = reply.get("error-message") or (submitted.stdout + submitted.stderr).strip()[-600:]
        raise RunFailed("Flower did not start the run: " + " ".join(str(reason).split()))
    return str(reply["run-id"])


def follow_log(
    run_id: str, connection: str, env: dict[str, str], sink: TextIO, drop: re.Pattern[str] | None, timeout: float
) -> None:
    """Copy the run's log to `sink` as it is written, until the run ends (or the stream breaks: the caller then
    waits for the run's status), leaving out the lines `drop` matches. RunFailed after `timeout` seconds."""
    timed_out = threading.Event()
    with flwr_stream(["log", run_id, *([connection] if connection else []), "--stream"], env) as process:

        def expire() -> None:
            timed_out.set()
            process.kill()

        watchdog = threading.Timer(timeout, expire)
        watchdog.start()
        try:
            assert process.stdout is not None
            for line in process.stdout:
                if not (drop and drop.search(line)):
                    sink.write(line)
                    sink.flush()
        finally:
            watchdog.cancel()
    if timed_out.is_set():
        raise RunFailed(f"Flower run {run_id} took longer than {timeout:.0f} s")


def completed_summary(run_id: str, connection: str, env: dict[str, str], out_dir: Path | None, wait: float) -> dict[str, Any]:
    """Once Flower lists the run as finished (waiting up to `wait` s: the log stream can end before the status
    does, or early if it broke): the run's summary.json, or for a remote run (`out_dir` None, the results are on
    the ServerApp's machine) Flower's status; RunFailed unless the run completed."""
    deadline = time.monotonic() + wait
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        listing = flwr_cli(["list", *([connection] if connection else []), "--run-id", run_id, "--format", "json"], env, 120)
        runs = _json(listing.stdout).get("runs") or []
        status = runs[0] if runs else {}
        if str(status.get("status", "")).startswith("finished"):
            break
        time.sleep(2)
    if status.get("status") != "finished:completed":
        details = " ".join(str(status.get("status-details") or "see the run's log").split())
        raise RunFailed(f"Flower run {run_id} ended as {status.get('status', 'still running')}: {details}")
    if out_dir is None:
        return status
    summary_file = out_dir / "summary.json"
    if not summary_file.is_file():
        raise RunFailed(f"Flower run {run_id} completed without writing {summary_file}")
    return json.loads(summary_file.read_text())


def run_to_completion(
    app: Path, config_file: Path, connection: str, federation_config: str, flower_home: Path | None,
    sink: TextIO, drop: re.Pattern[str] | None, timeout: float, out_dir: Path | None,
    on_start: Callable[[str], None] = lambda run_id: None,
) -> dict[str, Any]:
    """Submit, copy the log to `sink` until the run ends, and return what `completed_summary` returns; on a local
    SuperLink of the run's own when `flower_home` is given (stopped on the way out, whatever happens)."""
    begin = time.monotonic()
    with flower_environment(flower_home) as env, _sigterm_as_interrupt():
        run_id = submit(app, config_file, connection, federation_config, env)
        on_start(run_id)
        follow_log(run_id, connection, env, sink, drop, timeout)
        remaining = max(60.0, timeout - (time.monotonic() - begin))
        return completed_summary(run_id, connection, env, out_dir, remaining)


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """`kill` stops the run's processes as Ctrl-C does: while the run is on, SIGTERM raises KeyboardInterrupt, so
    the SuperLink is stopped on the way out. Not when the program handles SIGTERM itself, nor off the main thread
    (where Python cannot set a handler)."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    previous = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def raise_interrupt(signum: int, frame: Any) -> None:
    """A SIGTERM handler that makes `kill` interrupt like Ctrl-C, so cleanup code runs."""
    raise KeyboardInterrupt


def stop_local_superlink(flower_home: Path) -> list[int]:
    """Stop the SuperLink that `flwr run` started for `flower_home` and every process below it (its SuperExec,
    which Flower starts in a session of its own, the simulation and Ray); return the PIDs asked to stop."""
    table = process_table()
    marker = str(flower_home / "local-superlink")
    roots = [pid for pid, (_, command) in table.items() if "flower-superlink" in command and marker in command]
    doomed = _descendants(roots, table)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in doomed:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:  # it ended meanwhile
                continue
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        alive = set(doomed) & set(process_table())
        while time.monotonic() < deadline and alive:
            time.sleep(0.2)
            alive &= set(process_table())
        doomed = [pid for pid in doomed if pid in alive]
    return roots


def process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of the live processes (`ps`: Linux and macOS), zombies left out."""
    listing = subprocess.run(["ps", "-ww", "-A", "-o", "pid=,ppid=,stat=,args="], capture_output=True, text=True)
    table = {}
    for line in listing.stdout.splitlines():
        fields = line.split(None, 3)
        if len(fields) == 4 and not fields[2].startswith("Z"):
            table[int(fields[0])] = (int(fields[1]), fields[3])
    return table


def _descendants(roots: list[int], table: dict[int, tuple[int, str]]) -> list[int]:
    """`roots` and every process below them, parents first."""
    found, frontier = list(roots), list(roots)
    while frontier:
        frontier = [pid for pid, (parent, _) in table.items() if parent in frontier and pid not in found]
        found += frontier
    return found


def free_ports(count: int) -> list[int]:
    """`count` distinct free TCP ports on loopback (held together while picked, so they differ)."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def _json(text: str) -> dict[str, Any]:
    """The JSON object the Flower CLI printed with --format json; {} for anything else."""
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
