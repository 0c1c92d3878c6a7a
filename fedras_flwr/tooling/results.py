"""Run outputs: `rounds.jsonl` (one line per round, metrics on evaluation rounds), `summary.json`, `incidents.jsonl` (every
rejected upload, failed SuperNode and skipped round), `test-ranks.csv` (each user's test-item ranks at the last round,
for paired comparisons between runs), and a progress line per round in the log.
Written by whoever drives the server (ServerApp or in-process loop)."""

from __future__ import annotations

import json
import logging
import math
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from fedras_flwr.algorithm.round_stats import RoundTrainStats
from fedras_flwr.config import RunConfig

if TYPE_CHECKING:  # an annotation only: evaluation imports the models
    from fedras_flwr.algorithm.evaluation import UserRanks

log = logging.getLogger("fedras_flwr")

TEST_RANKS_FILE = "test-ranks.csv"
TEST_RANKS_HEADER = "user,test-sampled,test-full"


def resolve_out_dir(out_dir: str) -> Path:
    """`out-dir` as an absolute path; empty means a new timestamped folder under ./outputs."""
    if out_dir:
        path = Path(out_dir).expanduser().resolve()
    else:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        path = Path("outputs").resolve() / stamp
        suffix = 1
        while path.exists():
            path = Path("outputs").resolve() / f"{stamp}-{suffix}"
            suffix += 1
    path.mkdir(parents=True, exist_ok=True)
    return path


def _reduction(sent: float, reference: float) -> float:
    """Percent saved vs a reference; NaN (written as null) when nothing was uploaded or referenced."""
    return 100.0 * (1.0 - sent / reference) if reference > 0 and sent > 0 else float("nan")


def _json_safe(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


_TOTALS = (
    "total-up-bytes", "total-up-bytes-dense-ref", "total-up-bytes-sparse-ref", "total-down-bytes",
    "total-eval-down-bytes", "sim-time", "total-stragglers", "total-rejected", "total-failed-supernodes",
    "total-lost-users", "total-failed-users", "total-rejected-up-bytes", "skipped-rounds",
)


class RunRecorder:
    """Accumulates per-round figures and writes them as they come (a crash keeps earlier rounds)."""

    def __init__(
        self, cfg: RunConfig, run_info: dict[str, Any], out_dir: Path | None = None, restored: dict[str, Any] | None = None
    ) -> None:
        """`restored` is a `state()` from a checkpoint: the files are rewritten to what it had recorded."""
        self.cfg = cfg
        self.run_info = run_info
        self.out_dir = out_dir or resolve_out_dir(cfg.out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.rounds_file = self.out_dir / "rounds.jsonl"
        self.incidents_file = self.out_dir / "incidents.jsonl"
        self.primary_metric = f"hr@{cfg.topk_list[0]}"
        state = restored or {}
        self.records: list[dict[str, Any]] = list(state.get("records", []))
        self.incidents: list[dict[str, Any]] = list(state.get("incidents", []))
        self.totals: dict[str, float] = {key: 0 for key in _TOTALS} | state.get("totals", {})
        self.started = time.monotonic() - state.get("wall-time", 0.0)
        (self.out_dir / TEST_RANKS_FILE).unlink(missing_ok=True)  # an older run's: this one writes its own at the end
        self.rounds_file.write_text("".join(json.dumps(r) + "\n" for r in self.records))
        self.incidents_file.write_text("".join(json.dumps(i) + "\n" for i in self.incidents))
        log.info("fedras-flwr: writing results to %s", self.out_dir)

    def state(self) -> dict[str, Any]:
        """Everything recorded so far, JSON-able, for a checkpoint."""
        return {
            "records": self.records, "incidents": self.incidents, "totals": self.totals,
            "wall-time": time.monotonic() - self.started,
        }

    def write_test_ranks(self, ranks: Mapping[int, UserRanks]) -> None:
        """`test-ranks.csv`: user, sampled and full rank of its test item, one line per evaluated user."""
        lines = [f"{user},{ranks[user].test_sampled},{ranks[user].test_full}\n" for user in sorted(ranks)]
        (self.out_dir / TEST_RANKS_FILE).write_text(TEST_RANKS_HEADER + "\n" + "".join(lines))

    def _incident(self, server_round: int, kind: str, **details: Any) -> None:
        incident = {"round": server_round, "kind": kind, **details}
        self.incidents.append(incident)
        with open(self.incidents_file, "a") as handle:
            handle.write(json.dumps(incident) + "\n")

    def _record_incidents(self, server_round: int, train: RoundTrainStats) -> None:
        for user, reason in train.rejections:
            self._incident(server_round, "rejected-upload", user=user, reason=reason)
        if train.failures.nodes_failed:
            failures = train.failures
            self._incident(
                server_round, "failed-supernodes", failed=failures.nodes_failed, asked=failures.nodes_asked,
                users_lost=failures.users_lost,
            )
        if train.skipped:
            self._incident(server_round, "skipped-round", reason=train.skipped)

    def record_round(
        self,
        server_round: int,
        train: RoundTrainStats,
        down_bytes: list[int],
        eval_down_bytes: list[int],
        evaluation: dict[str, float] | None,
    ) -> None:
        """One record per round: bytes, K, reconstruction error, loss; evaluation metrics on evaluation
        rounds. `down_bytes` / `eval_down_bytes`: what each trained / evaluated user downloaded."""
        uploads, totals = train.uploads, self.totals
        totals["total-up-bytes"] += uploads.total
        totals["total-up-bytes-dense-ref"] += uploads.dense_ref
        totals["total-up-bytes-sparse-ref"] += uploads.sparse_ref
        totals["total-down-bytes"] += sum(down_bytes) + sum(eval_down_bytes)
        totals["total-eval-down-bytes"] += sum(eval_down_bytes)
        totals["sim-time"] += train.sim_round_time
        totals["total-stragglers"] += train.stragglers
        totals["total-rejected"] += train.rejected
        totals["total-failed-supernodes"] += train.failures.nodes_failed
        totals["total-lost-users"] += train.failures.users_lost
        totals["total-failed-users"] += train.failures.users_failed
        totals["total-rejected-up-bytes"] += train.rejected_bytes
        totals["skipped-rounds"] += bool(train.skipped)
        self._record_incidents(server_round, train)
        elapsed = time.monotonic() - self.started
        metric = evaluation.get(self.primary_metric) if evaluation else None
        problems = [
            f"{train.rejected} rejected" if train.rejected else "",
            f"{train.failures.nodes_failed} SuperNodes failed" if train.failures.nodes_failed else "",
            f"{train.failures.users_failed} users diverged" if train.failures.users_failed else "",
            "SKIPPED" if train.skipped else "",
        ]
        log.info(
            "round %d/%d | %s %s | up %s B/client | %d clients%s | %.1f s",
            server_round, self.cfg.num_server_rounds, self.primary_metric.upper(),
            f"{metric:.4f}" if metric is not None else "-", f"{uploads.mean('total'):,.0f}", train.clients,
            "".join(f" ({p})" for p in problems if p), elapsed,
        )
        up_bytes = uploads.mean("total")
        record = {
            "round": server_round,
            **(evaluation or {}),
            "train-loss": train.train_loss,
            "clients": train.clients,
            "rejected-clients": train.rejected,
            "rejected-up-bytes": train.rejected_bytes,
            "failed-supernodes": train.failures.nodes_failed,
            "lost-users": train.failures.users_lost,
            "failed-users": train.failures.users_failed,
            "skipped": bool(train.skipped),
            "uploads": uploads.count,
            "up-bytes": up_bytes,
            "up-bytes-dense-weights": uploads.mean("weights"),
            "up-bytes-dense-ref": uploads.mean("dense_ref"),
            "up-bytes-sparse-ref": uploads.mean("sparse_ref"),
            "up-reduction-dense": _reduction(uploads.total, uploads.dense_ref),
            "up-reduction-sparse": _reduction(uploads.total, uploads.sparse_ref),
            **({"symbol-bytes": uploads.mean("symbols"), "symbol-bytes-plain": uploads.mean("symbols_plain"),
                "entropy-gain": _reduction(uploads.symbols, uploads.symbols_plain)} if uploads.symbols_plain else {}),
            "up-numbers": train.up_numbers,
            "up-numbers-reduction-sparse": _reduction(train.up_numbers, train.up_numbers_sparse_ref),
            "down-bytes": float(np.mean(down_bytes)) if down_bytes else 0.0,
            "down-users": len(down_bytes),
            **({"eval-down-bytes": float(np.mean(eval_down_bytes))} if eval_down_bytes else {}),
            "mean-k": train.mean_k,
            "recon-error": train.recon_error,
            "touched-rows": train.touched_rows,
            "sim-round-time": train.sim_round_time,
            "stragglers": train.stragglers,
            "deadline": train.deadline,
            **{f"k-{tier}": k for tier, k in (train.k_by_tier or {}).items()},
            **totals,
            "wall-time": elapsed,
        }
        record = {key: _json_safe(value) for key, value in record.items()}
        self.records.append(record)
        with open(self.rounds_file, "a") as handle:
            handle.write(json.dumps(record) + "\n")

    def _time_to_target(self) -> dict[str, Any]:
        """Simulated time (and round) at the first evaluation that reached the target HR@K."""
        target = self.cfg.target_hr_value
        hit = next((r for r in self.records if (r.get(self.primary_metric) or 0.0) >= target), None)
        return {
            "target-hr": target,
            "target-round": hit["round"] if hit else None,
            # no simulated clock without a heterogeneity scenario: a time of 0 would read as instant
            "time-to-target": hit["sim-time"] if hit and self.cfg.hetero != "none" else None,
        }

    def _evaluated(self) -> list[dict[str, Any]]:
        return [r for r in self.records if self.primary_metric in r]

    def _best_validation(self) -> dict[str, Any]:
        """Model selection that never looks at the test item: every metric of the evaluated round with the
        best validation HR@K (the earliest on ties)."""
        key = f"val-{self.primary_metric}"
        scored = [r for r in self._evaluated() if r.get(key) is not None]
        if not scored:
            return {}
        best = max(scored, key=lambda r: (r[key], -r["round"]))
        return {"round": best["round"], **{k: best[k] for k in best if "hr@" in k or "ndcg@" in k}}

    def finish(self) -> dict[str, Any]:
        """Write summary.json: config, final metrics, test metrics at the best validation round, byte
        totals with reductions from the cumulative bytes, wall time."""
        evaluated = self._evaluated()
        final = evaluated[-1] if evaluated else {}
        summary = {
            "config": self.cfg.to_flat(),
            **self.run_info,
            "out-dir": str(self.out_dir),
            "rounds": self.cfg.num_server_rounds,
            "final": {k: final[k] for k in final if "hr@" in k or "ndcg@" in k},
            "best-val": self._best_validation(),
            "up-reduction-dense": _json_safe(_reduction(self.totals["total-up-bytes"], self.totals["total-up-bytes-dense-ref"])),
            "up-reduction-sparse": _json_safe(_reduction(self.totals["total-up-bytes"], self.totals["total-up-bytes-sparse-ref"])),
            **self.totals,
            **self._time_to_target(),
            "wall-time": time.monotonic() - self.started,
        }
        (self.out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        log.info("fedras-flwr: finished: %s", summary_line(summary))
        return summary


def read_test_ranks(run_dir: Path) -> dict[int, tuple[int, int]]:
    """A run's `test-ranks.csv`: user -> (sampled rank, full rank) of its test item at the last round."""
    path = Path(run_dir) / TEST_RANKS_FILE
    lines = path.read_text().splitlines()
    if not lines or lines[0] != TEST_RANKS_HEADER:
        raise ValueError(f"{path} does not start with {TEST_RANKS_HEADER!r}: rerun the run to rewrite it")
    ranks = {}
    for line in lines[1:]:
        user, sampled, full = (int(field) for field in line.split(","))
        ranks[user] = (sampled, full)
    return ranks


def summary_line(summary: dict[str, Any]) -> str:
    """The run in one line: test metrics at the last round, upload saved against dense, where the results are."""
    final = summary.get("final") or {}
    metrics = " ".join(f"{k.upper()} {v:.4f}" for k, v in final.items() if v is not None and not k.startswith("val-") and "-full" not in k)
    reduction = summary.get("up-reduction-dense")
    upload = f"upload {reduction:.2f} % below dense" if reduction is not None else "no upload"
    return f"{metrics or 'not evaluated'} (test, last round) | {upload} | results in {summary.get('out-dir')}"
