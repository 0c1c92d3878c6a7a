"""Helpers for experiment scripts: run many configurations in parallel processes, read run folders,
and format mean +- std cells. Runs use the in-process loop, which gives the same metrics as the Flower
app (tests/test_flower.py checks it) without per-message overhead."""

from __future__ import annotations

import json
import logging
import statistics
import subprocess
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Iterator, Sequence

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from fedras_flwr.config import RunConfig
from fedras_flwr.tooling.inprocess import run_inprocess

CONF = Path(__file__).resolve().parents[1] / "conf"


def preset_config(overrides: Sequence[str], data_dir: str = "") -> RunConfig:
    """A run's config composed from the Hydra presets (`dataset=`, `model=`, `codec=`, `hetero=` groups and
    `run.<key>=` overrides), as a sweep job gets it; `data_dir`, if given, replaces the preset's."""
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        run = OmegaConf.to_container(compose(config_name="config", overrides=list(overrides)).run, resolve=True)
    if data_dir:
        run["data-dir"] = str(Path(data_dir).resolve())
    return RunConfig.from_flat(run)


def git_commit(repo: Path) -> str:
    """The checkout's commit, marked when tracked files differ from it: the stamp of a results file."""
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return (head.stdout.strip() or "unknown") + (" (with uncommitted changes)" if dirty else "")


def _run(flat_config: dict[str, Any]) -> dict[str, Any]:
    logging.disable(logging.INFO)
    return run_inprocess(RunConfig.from_flat(flat_config))


def run_many(configs: Sequence[RunConfig], jobs: int) -> Iterator[dict[str, Any]]:
    """Summaries of every run, in order, `jobs` processes at a time."""
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        yield from pool.map(_run, [cfg.to_flat() for cfg in configs])


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
