"""The docker-compose topology as local processes on 127.0.0.1 (no Docker needed): a SuperLink
(`--isolation process`, TLS, SuperNode authentication) with its ServerApp SuperExec, N SuperNodes each with
its ClientApp SuperExec; the nodes' keys are registered, then the app runs with `flwr run . fedras-deploy`.

    fedras deploy-local --nodes 3 --run-config "num-server-rounds=2 codec='fedras'"

Everything goes under --work-dir (default: a new temp folder): credentials/, state/, logs/<component>.log,
the Flower CLI config (flwr-home/config.toml), run_config.toml, flwr.log (the run's log) and the results
in run/ (unless `out-dir` is given). The commands come from fedras_flwr/tooling/deploy.py, like docker-compose.yml's;
the credentials from fedras_flwr/tooling/credentials.py.
Only the processes started here are stopped (by process group), also on error or Ctrl-C. Exit status 0
only when the Flower run ends `finished:completed` with a summary.json.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from fedras_flwr.config import RunConfig, absolute_paths, parse_overrides
from fedras_flwr.tooling.credentials import make_credentials
from fedras_flwr.tooling.deploy import (
    CA_CERT,
    CONNECTION,
    SUPERLINK,
    Component,
    components,
    local_layout,
    online_nodes,
    topology,
    write_connection,
)
from fedras_flwr.tooling.flower_run import RunFailed, free_ports
from fedras_flwr.tooling.flwr_cli import BIN, FLOWER_ENV, on_this_path
from fedras_flwr.tooling.preflight import RunRefused, preflight
from fedras_flwr.tooling.sweep import launch

STOP_GRACE_SECONDS = 10.0
log = logging.getLogger("fedras_flwr.tooling.deploy_local")


def run_config(overrides: list[str]) -> dict[str, Any]:
    """The full run-config from `key=value` overrides (ConfigError names a bad key), with absolute paths."""
    return absolute_paths(parse_overrides(overrides).to_flat())


class LocalDeployment:
    """Starts the topology's processes; `with` stops exactly those (each in its own process group)."""

    def __init__(self, work_dir: Path, num_nodes: int) -> None:
        self.work_dir = work_dir.resolve()
        self.nodes = topology(num_nodes)
        ports = free_ports(1 + num_nodes)
        self.layout = local_layout(self.nodes, self.work_dir, ports[0], ports[1:])
        self.logs = self.work_dir / "logs"
        self.flwr_home = self.work_dir / "flwr-home"
        self.processes: dict[str, subprocess.Popen] = {}

    def __enter__(self) -> LocalDeployment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def env(self, name: str) -> dict[str, str]:
        """Own FLWR_HOME per component (apps, FABs); the venv first on PATH (SuperExecs spawn flwr-*app)."""
        home = self.work_dir / "homes" / name
        home.mkdir(parents=True, exist_ok=True)
        return on_this_path({**os.environ, **FLOWER_ENV, "FLWR_HOME": str(home)})

    def argv(self, component: Component) -> list[str]:
        program, *args = component.argv
        return [sys.executable if program == "python" else str(BIN / program), *args]

    def start(self, component: Component) -> subprocess.Popen:
        """Start one long-running component, output to logs/<name>.log."""
        with (self.logs / f"{component.name}.log").open("w") as out:
            process = subprocess.Popen(
                self.argv(component), env=self.env(component.name), stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        self.processes[component.name] = process
        log.info("started %-22s pid %-7d log %s", component.name, process.pid, self.logs / f"{component.name}.log")
        return process

    def run_once(self, component: Component, timeout: float) -> None:
        """Run a one-shot component (the key registration) to completion; raise if it fails."""
        with (self.logs / f"{component.name}.log").open("w") as out:
            done = subprocess.run(self.argv(component), env=self.env(component.name), stdout=out,
                                  stderr=subprocess.STDOUT, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{component.name} failed; see {self.logs / f'{component.name}.log'}")
        log.info("%s done", component.name)

    def up(self, timeout: float = 120.0) -> None:
        """Credentials, then every component in order (SuperNodes after their keys are registered), until
        every SuperNode is online."""
        make_credentials(self.layout.credentials, [node.name for node in self.nodes])
        for folder in (self.logs, self.work_dir / "state"):
            folder.mkdir(parents=True, exist_ok=True)
        write_connection(self.flwr_home, self.layout.superlink, self.layout.credential(SUPERLINK, CA_CERT))
        for component in components(self.layout, self.nodes):
            if component.one_shot:
                self.run_once(component, timeout)
            else:
                self.start(component)
        deadline = time.monotonic() + timeout  # a run would wait for missing partitions: fail here instead
        while len(online_nodes(self.flwr_home)) < len(self.nodes):
            dead = [name for name, process in self.processes.items() if process.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"SuperNodes not all online (exited: {dead}); see {self.logs}")
            time.sleep(1)
        log.info("%d SuperNodes online", len(self.nodes))

    def run(self, cfg: dict[str, Any], timeout: float) -> dict[str, Any]:
        """`flwr run <app> fedras-deploy` with this run-config (results in run/ by default); summary or RunFailed."""
        return run_deployed({**cfg, "out-dir": cfg["out-dir"] or str(self.work_dir / "run")}, self.flwr_home, self.work_dir, timeout)

    def stop(self) -> None:
        """SIGTERM to each started process group, newest first; SIGKILL what is left after a grace period."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for process in reversed(list(self.processes.values())):
                try:
                    os.killpg(process.pid, sig)  # the group this launcher created: the component and its children
                except ProcessLookupError:
                    continue
            deadline = time.monotonic() + STOP_GRACE_SECONDS
            for process in self.processes.values():
                try:
                    process.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
            if all(not _group_alive(p.pid) for p in self.processes.values()):
                break
        log.info("stopped %d processes", len(self.processes))


def run_deployed(
    cfg: dict[str, Any], flwr_home: Path, job_dir: Path, timeout: float, results: Path | None = None
) -> dict[str, Any]:
    """`flwr run <app> fedras-deploy` on the deployment that `flwr_home`'s config connects to, with its log in
    `job_dir/flwr.log`; the run's summary (read from `results`, else from its out-dir), or RunFailed."""
    federation = OmegaConf.create({"connection": CONNECTION, "timeout-seconds": timeout})
    previous = os.environ.get("FLWR_HOME")
    os.environ["FLWR_HOME"] = str(flwr_home)  # launch() drives the CLI with this process's environment
    try:
        return launch(cfg, federation, job_dir, results)
    finally:
        if previous is None:
            del os.environ["FLWR_HOME"]
        else:
            os.environ["FLWR_HOME"] = previous


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    """`fedras deploy-local [options]` (argv without the command words; None: sys.argv[1:]); the exit status."""
    parser = argparse.ArgumentParser(
        prog="fedras deploy-local", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, default=3, help="number of SuperNodes (default 3)")
    parser.add_argument("--work-dir", type=Path, help="folder for everything (default: a new temp folder)")
    parser.add_argument("--run-config", action="append", default=[], help='"key=value ..." overrides (repeatable)')
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds the run may take (default 1800)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        cfg = run_config([token for text in args.run_config for token in shlex.split(text)])
        preflight(RunConfig.from_flat(cfg))  # the data and the model's packages, before any process starts
    except RunRefused as err:
        parser.error(str(err))
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the cleanup on `kill` too, as on Ctrl-C
    try:
        return _deploy(args, cfg)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _deploy(args: argparse.Namespace, cfg: dict[str, Any]) -> int:
    """Start the deployment, run the app on it, stop it; the exit status."""
    work_dir = args.work_dir.resolve() if args.work_dir else Path(tempfile.mkdtemp(prefix="fedras-deploy-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    with LocalDeployment(work_dir, args.nodes) as deployment:
        try:
            deployment.up()
            summary = deployment.run(cfg, args.timeout)
        except (RunFailed, RuntimeError, subprocess.TimeoutExpired) as err:
            log.error("FAILED: %s\nlogs: %s", err, deployment.logs)
            return 1
        except KeyboardInterrupt:
            log.error("interrupted; logs: %s", deployment.logs)
            return 130
    log.info(
        "status: finished:completed\nresults: %s\nrun log: %s\ncomponent logs: %s",
        summary["out-dir"], work_dir / "flwr.log", deployment.logs,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
