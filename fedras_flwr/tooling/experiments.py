"""Helpers for experiment scripts: run many configurations in parallel processes, read run folders,
and format mean +- std cells. Runs use the in-process loop, which gives the same metrics as the Flower
app (tests/test_flower.py checks it) without per-message overhead."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import signal
import statistics
import subprocess
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Iterator, Sequence

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from fedras_flwr.config import ConfigError, RunConfig
from fedras_flwr.tooling.checkpoint import CheckpointError
from fedras_flwr.tooling.inprocess import run_inprocess
from fedras_flwr.tooling.results import resolve_out_dir
from fedras_flwr.tooling.session import CHECKPOINTS, RESUMABLE_CHANGES, find_resume_point

CONF = Path(__file__).resolve().parents[1] / "conf"


def preset_config(overrides: Sequence[str], data_dir: str = "") -> RunConfig:
    """A run's config composed from the Hydra presets (`dataset=`, `model=`, `codec=`, `hetero=` groups and
    `run.<key>=` overrides), as a sweep job gets it; `data_dir`, if given, replaces the preset's."""
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        run = OmegaConf.to_container(compose(config_name="config", overrides=list(overrides)).run, resolve=True)
    if data_dir:
        run["data-dir"] = str(Path(data_dir).resolve())
    return RunConfig.from_flat(run)


BUDGET_KEYS = ("num-server-rounds", "clients-per-round", "lr")


def calibrated_budget(dataset: str, model: str) -> dict[str, Any]:
    """The training budget of a dataset and model (conf/budget/<dataset>-<model>.yaml, which a run composed from
    the presets takes); a missing one is refused, as the runs would quietly take the generic defaults."""
    path = CONF / "budget" / f"{dataset}-{model}.yaml"
    preset = OmegaConf.to_container(OmegaConf.load(path)) if path.is_file() else {}
    missing = [key for key in BUDGET_KEYS if key not in preset]
    if missing:
        raise ValueError(
            f"{dataset} with {model} has no calibrated {', '.join(missing)} in fedras_flwr/conf/budget/{path.name}: "
            f"find them with scripts/calibrate_budget.py and write them there"
        )
    return {key: preset[key] for key in BUDGET_KEYS}


#: What a run executes, relative to the repository: a change to any of these marks the commit stamp.
RUN_CODE = ("fedras_flwr", "scripts", "pyproject.toml")


#: Environment settings that can change a run's last bits (numpy's BLAS splits work by its thread count).
RESULT_ENVIRONMENT = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")


def invocation(script: str, arguments: Sequence[str]) -> str:
    """The command a results file says made it: the script with its arguments, after any RESULT_ENVIRONMENT
    setting it ran with, so the command reproduces the figures to the last bit."""
    settings = [f"{name}={shlex.quote(os.environ[name])}" for name in RESULT_ENVIRONMENT if name in os.environ]
    return " ".join([*settings, f"python scripts/{script}", shlex.join(arguments)]).rstrip()


def default_out_refusal(parser: argparse.ArgumentParser, args: argparse.Namespace, selectors: Sequence[str]) -> str:
    """Why the command must not run ("" if it may): `selectors` differ from their defaults (a part of the matrix,
    or other settings) while --out is the default folder, whose committed tables hold the whole matrix. The
    selectors compare as given (their parser options take no `type=`), so a reordered list counts as different."""
    changed = [f"--{name.replace('_', '-')}" for name in selectors if getattr(args, name) != parser.get_default(name)]
    if not changed or Path(args.out).resolve() != Path(parser.get_default("out")).resolve():
        return ""
    return (f"a selection other than the whole matrix ({' '.join(changed)}) would overwrite its tables in "
            f"{args.out}: give it its own --out, e.g. --out my-part")


def git_commit(repo: Path) -> str:
    """The checkout's commit, marked when a tracked file a run executes (the package with its configs, the scripts,
    pyproject.toml) differs from it: the stamp of a results file. Other files do not count: the experiment commands
    rewrite their own tables under results/ and the README's copy of them, which are no code change."""
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no", "--",
                            *RUN_CODE], capture_output=True, text=True).stdout.strip()
    return (head.stdout.strip() or "unknown") + (" (with uncommitted changes)" if dirty else "")


def _run(flat_config: dict[str, Any], commit: str | None) -> dict[str, Any]:
    logging.disable(logging.INFO)
    if commit is not None and flat_config["out-dir"]:  # stamped as it starts: a run never reached has no stamp
        run_dir = resolve_out_dir(flat_config["out-dir"])  # the folder the run itself writes to
        run_dir.mkdir(parents=True, exist_ok=True)
        with open(run_dir / "commits.txt", "a") as stamp:
            stamp.write(commit + "\n")
    return run_inprocess(RunConfig.from_flat(flat_config))


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(f"stopped by signal {signum}")


def _worker_signals() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # terminate() must end a worker mid-run
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the command stops its workers, without their tracebacks


def run_many(configs: Sequence[RunConfig], jobs: int, commit: str | None = None) -> Iterator[dict[str, Any]]:
    """Summaries of every run, in order, `jobs` processes at a time; with `commit`, each run appends it to its
    folder's commits.txt as it starts (the commits a run was started or resumed on). Stopping the command (Ctrl-C,
    or SIGTERM to its process alone) or a failing run stops the workers: an orphan worker would keep writing a run
    folder that a rerun of the command resumes at the same time (stopped runs resume from their checkpoints). A
    worker that dies (killed, out of memory) raises BrokenProcessPool."""
    main_thread = threading.current_thread() is threading.main_thread()  # signal handlers live there only
    previous = signal.signal(signal.SIGTERM, _stop_on_sigterm) if main_thread else None
    pool = ProcessPoolExecutor(max_workers=jobs, initializer=_worker_signals)
    try:
        yield from pool.map(_run, [cfg.to_flat() for cfg in configs], [commit] * len(configs))
        pool.shutdown()
    except BaseException:
        workers = list((pool._processes or {}).values())  # private, but Python < 3.14 has no terminate_workers()
        pool.shutdown(wait=False, cancel_futures=True)
        for worker in workers:
            worker.terminate()
        raise
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


#: Keys a finished run may differ in from the config asked for and still count as that run: what a resume may
#: change, but the number of rounds (more rounds extend it).
SAME_RUN_EXCEPT = RESUMABLE_CHANGES - {"num-server-rounds"}


class StaleRun(ValueError):
    """A run folder holds a run made with other settings."""


def planned_run(cfg: RunConfig) -> tuple[RunConfig, dict[str, Any] | None]:
    """What a resumable experiment does with `cfg.out_dir`: (cfg, its summary) when the run finished with these
    settings; (the config to run, None) otherwise, resuming from the checkpoints a stopped run left, or that a
    finished run left when more rounds are asked of it (run_many stamps it with the commit as it starts). StaleRun
    when the folder's run had other settings."""
    run_dir = Path(cfg.out_dir)
    summary_file = run_dir / "summary.json"
    extend = False
    if summary_file.is_file():
        summary = json.loads(summary_file.read_text())
        asked = cfg.to_flat()
        saved = summary["config"]
        differing = sorted(k for k in set(saved) | set(asked) if k not in SAME_RUN_EXCEPT and saved.get(k) != asked.get(k))
        # more rounds than a finished run had: it goes on from its last checkpoint, as if it had been asked for them
        extend = differing == ["num-server-rounds"] and asked["num-server-rounds"] > saved["num-server-rounds"]
        if differing and not extend:
            raise StaleRun(
                f"{run_dir} holds a run made with other settings ({', '.join(differing)}): delete that folder, "
                f"or give another output folder"
            )
        if not extend:
            return cfg, summary
    if any((run_dir / CHECKPOINTS).glob("*")):
        cfg = cfg.replace(resume=str(run_dir))
        try:
            find_resume_point(cfg)  # the checkpoint must be of this run: checked here, not in a worker later
        except (ConfigError, CheckpointError) as err:
            raise StaleRun(f"{run_dir} holds a stopped run that cannot go on as asked ({err}): delete that folder, "
                           f"or give another output folder") from None
    return cfg, None


def write_manifest(out: Path, command: str, run_dirs: Sequence[Path]) -> Path:
    """<out>/manifest.json: the command that made the tables beside it and every commit its runs were made on."""
    manifest = {"command": command, "commits": run_commits(run_dirs), "written": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return out / "manifest.json"


def run_commits(run_dirs: Sequence[Path]) -> list[str]:
    """Every commit the runs were started or resumed on (commits.txt), in first-seen order."""
    seen: dict[str, None] = {}
    for run_dir in run_dirs:
        stamp = Path(run_dir) / "commits.txt"
        for line in stamp.read_text().splitlines() if stamp.is_file() else ["unknown (no commits.txt)"]:
            seen.setdefault(line, None)
    return list(seen)


def bytes_per_client(run_dir: str | Path, summary: dict[str, Any]) -> tuple[float, float]:
    """Mean bytes of one upload and of one trained user's download, over the uploads and downloads that
    happened (rounds.jsonl `uploads`, `down-users`), not rounds x clients-per-round."""
    records = read_rounds(run_dir)
    uploads = sum(r.get("uploads") or 0 for r in records)
    downloads = sum(r.get("down-users") or 0 for r in records)
    training_down = summary["total-down-bytes"] - summary["total-eval-down-bytes"]
    return summary["total-up-bytes"] / max(1, uploads), training_down / max(1, downloads)


def read_rounds(out_dir: str | Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (Path(out_dir) / "rounds.jsonl").read_text().splitlines() if line]


def time_to_reach(records: Sequence[dict[str, Any]], metric: str, target: float) -> float | None:
    """Simulated time at the first evaluated round whose `metric` reached `target`."""
    return next((r["sim-time"] for r in records if (r.get(metric) or 0.0) >= target), None)


def mean_std(values: Sequence[float | None], digits: int = 4) -> str:
    present = [v for v in values if v is not None]
    if not present:
        return "-"
    if len(present) == 1:
        return f"{present[0]:.{digits}f}"
    return f"{statistics.mean(present):.{digits}f} ± {statistics.stdev(present):.{digits}f}"
