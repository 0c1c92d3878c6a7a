"""Helpers for experiment scripts: run many configurations in parallel processes, read run folders,
and format mean +- std cells. Runs use the in-process loop, which gives the same metrics as the Flower
app (tests/test_flower.py checks it) without per-message overhead."""

from __future__ import annotations

import json
import logging
import statistics
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Iterator, Sequence

from fedras_flwr.config import RunConfig
from fedras_flwr.tooling.inprocess import run_inprocess


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
