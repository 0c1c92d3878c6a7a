"""`fedras`: the daily loop on top of Flower (plain `flwr run .` stays fully supported).

    fedras run [key=value ...]            check config and data here, then one Flower simulation
    fedras run --federation NAME [...]    the same on a SuperLink connection of $FLWR_HOME/config.toml
    fedras sweep [hydra overrides ...]    Hydra sweeps (tooling/sweep.py)
    fedras report RUN_DIR ... --out DIR   tables and plots of run folders (tooling/report.py)
    fedras deploy-local [...]             the docker-compose topology as local processes (tooling/deploy_local.py)

`fedras run` fails in seconds with one line and exit code 2 on a bad key, value or dataset; otherwise it
starts a local SuperLink of its own (its own ports, Flower home and log inside the results folder, no
runtime dependency installation), streams the run's progress lines, stops that SuperLink and everything
it started, checks the run's final status and prints the final metrics. Exit 0 only when the run
completed with its summary.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import tomli_w

from fedras_flwr.config import RunConfig, parse_overrides
from fedras_flwr.tooling.app_dir import GENERATED, app_dir
from fedras_flwr.tooling.flower_run import RunFailed, completed_summary, flower_environment, follow_log, submit
from fedras_flwr.tooling.preflight import RunRefused, preflight
from fedras_flwr.tooling.results import summary_line

USAGE_ERROR = 2  # a bad key, value, file or dataset: nothing was started
RUN_FAILED = 1
#: keys holding paths: Flower's processes run in another folder, so they get absolute paths
PATH_KEYS = ("data-dir", "cache-dir", "interactions-file", "resume", "out-dir")


def resolved(cfg: RunConfig) -> RunConfig:
    """`cfg` with absolute paths and a results folder of its own (default outputs/<timestamp>)."""
    flat = cfg.to_flat()
    if not flat["out-dir"]:
        flat["out-dir"] = f"outputs/{datetime.now():%Y%m%d-%H%M%S}"
    return RunConfig.from_flat({k: str(Path(v).expanduser().resolve()) if k in PATH_KEYS and v else v for k, v in flat.items()})


def run_on_flower(cfg: RunConfig, federation: str, supernodes: int, timeout: float) -> dict[str, Any]:
    """Submit the run, stream its log here, and return its summary once it completed (RunFailed otherwise)."""
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config_file = out_dir / "run_config.toml"
    config_file.write_text(tomli_w.dumps(cfg.to_flat()))
    with flower_environment(None if federation else out_dir / "flower-home") as env:
        federation_config = "" if federation else f"num-supernodes={supernodes} client-resources-num-cpus=1"
        run_id = submit(app_dir(out_dir / GENERATED), config_file, federation, federation_config, env)
        print(f"fedras: Flower run {run_id} started; results in {out_dir}", flush=True)
        follow_log(run_id, federation, env, sys.stdout, cfg.verbosity == "quiet", timeout)
        return completed_summary(run_id, federation, env, out_dir)


def command_run(args: argparse.Namespace) -> int:
    try:
        cfg = resolved(parse_overrides(args.overrides))
        preflight(cfg)
    except RunRefused as err:
        print(f"fedras: {err}", file=sys.stderr)
        return USAGE_ERROR
    try:
        summary = run_on_flower(cfg, args.federation, args.supernodes, args.timeout)
    except (RunFailed, subprocess.TimeoutExpired, OSError) as err:
        print(f"fedras: {err}", file=sys.stderr)
        return RUN_FAILED
    print(f"fedras: finished: {summary_line(summary)}")
    return 0


def _pass_through(command: str, argv: list[str]) -> int:
    """The commands whose options belong to another tool's own parser."""
    if command == "sweep":
        from fedras_flwr.tooling import sweep

        sys.argv = ["fedras sweep", *argv]  # Hydra reads its overrides from sys.argv
        sweep.main()
        return 0
    if command == "report":
        from fedras_flwr.tooling import report

        return report.main(argv)
    from fedras_flwr.tooling import deploy_local

    return deploy_local.main(argv)


PASS_THROUGH = {
    "sweep": "Hydra sweeps: fedras sweep --multirun codec=fedras,dense run.seed=0,1",
    "report": "tables and plots of run folders: fedras report RUN_DIR ... --out DIR",
    "deploy-local": "the docker-compose topology as local processes: fedras deploy-local --nodes 3",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fedras", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="check, then run one Flower simulation (or on --federation)")
    run.add_argument("overrides", nargs="*", metavar="key=value", help="run-config overrides (README: Configuration)")
    run.add_argument("--federation", default="", help="a SuperLink connection of $FLWR_HOME/config.toml (default: local)")
    run.add_argument("--supernodes", type=int, default=2, help="simulated SuperNodes of a local run (default 2)")
    run.add_argument("--timeout", type=float, default=24 * 3600.0, help="seconds the run may take")
    for name, helptext in PASS_THROUGH.items():
        commands.add_parser(name, help=helptext, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in PASS_THROUGH:
        return _pass_through(argv[0], argv[1:])
    return command_run(_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
