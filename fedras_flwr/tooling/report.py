"""Collect run folders into results.csv / results.md and draw the three standard plots.

    python -m fedras_flwr.tooling.report multirun/20261126-101500 --out report/

A Hydra multirun (`python -m fedras_flwr.tooling.sweep --multirun ...`) writes this report into its sweep folder
by itself when all its jobs succeed.

Any folder under the given paths that holds a `summary.json` is a run. Runs that differ only in their
seed form one group (mean +- std over seeds); a group is labelled by the config keys that differ across
all runs. Plots: HR@10 vs round, HR@10 vs cumulative upload bytes (log scale: the Pareto view), and
HR@10 vs simulated time (runs with a heterogeneity scenario).
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from pathlib import Path
from typing import Any, Callable

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402

from fedras_flwr.tooling.experiments import mean_std, read_rounds, time_to_reach  # noqa: E402

IGNORED_KEYS = {"seed", "out-dir", "data-dir", "cache-dir", "interactions-file"}
METRIC = "hr@10"


def find_runs(paths: list[str]) -> list[dict[str, Any]]:
    runs = []
    for root in paths:
        for summary_file in sorted(Path(root).rglob("summary.json")):
            summary = json.loads(summary_file.read_text())
            runs.append({"summary": summary, "records": read_rounds(summary_file.parent), "dir": summary_file.parent})
    if not runs:
        raise SystemExit(f"no run folders (with summary.json) under {paths}")
    return runs


def label_runs(runs: list[dict[str, Any]]) -> list[str]:
    """The config keys whose values differ across runs (seed and paths excluded)."""
    configs = [r["summary"]["config"] for r in runs]
    keys = sorted({k for c in configs for k in c} - IGNORED_KEYS)
    varying = [k for k in keys if len({json.dumps(c.get(k)) for c in configs}) > 1]
    for run in runs:
        config = run["summary"]["config"]
        run["label"] = " ".join(f"{k}={config.get(k)}" for k in varying) or "run"
    return varying


def group_rows(runs: list[dict[str, Any]], target: float | None) -> list[dict[str, Any]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault(run["label"], []).append(run)
    rows = []
    for label, members in groups.items():
        summaries = [m["summary"] for m in members]

        def final(key: str) -> list[float | None]:
            return [s["final"].get(key) for s in summaries]

        def at_best_val(key: str) -> list[float | None]:
            """The test metric at the round with the best validation HR@10 (model selection without the test item)."""
            return [s.get("best-val", {}).get(key) for s in summaries]

        reach = [time_to_reach(m["records"], METRIC, target) for m in members] if target else [s.get("time-to-target") for s in summaries]
        rows.append({
            "group": label,
            "seeds": len(members),
            "final hr@10": mean_std(final("hr@10")), "hr@10 at best val": mean_std(at_best_val("hr@10")),
            "final ndcg@10": mean_std(final("ndcg@10")), "ndcg@10 at best val": mean_std(at_best_val("ndcg@10")),
            "final hr@10-full": mean_std(final("hr@10-full")), "final ndcg@10-full": mean_std(final("ndcg@10-full")),
            "total up bytes": mean_std([s["total-up-bytes"] for s in summaries], 0),
            "total down bytes": mean_std([s["total-down-bytes"] for s in summaries], 0),
            "reduction vs dense %": mean_std([s.get("up-reduction-dense") for s in summaries], 2),
            "reduction vs sparse %": mean_std([s.get("up-reduction-sparse") for s in summaries], 2),
            "sim time to target (s)": mean_std(reach, 1),
            "wall time (s)": mean_std([s["wall-time"] for s in summaries], 1),
        })
    return rows


def mean_curve(members: list[dict[str, Any]], x_key: str) -> tuple[list[float], list[float]]:
    """Mean over seeds of (x, HR@10) at each evaluated round the seeds share."""
    rounds = sorted(set.intersection(*[{r["round"] for r in m["records"] if METRIC in r} for m in members]))
    xs, ys = [], []
    for round_ in rounds:
        points = [next(r for r in m["records"] if r["round"] == round_) for m in members]
        xs.append(statistics.mean(p[x_key] for p in points))
        ys.append(statistics.mean(p[METRIC] for p in points))
    return xs, ys


def plot(runs: list[dict[str, Any]], x_key: str, xlabel: str, path: Path, log_x: bool = False) -> bool:
    groups: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault(run["label"], []).append(run)
    figure, axes = plt.subplots(figsize=(7, 4.5))
    drawn = False
    for label, members in sorted(groups.items()):
        xs, ys = mean_curve(members, x_key)
        if log_x:
            xs, ys = zip(*[(x, y) for x, y in zip(xs, ys) if x > 0]) if any(x > 0 for x in xs) else ([], [])
        if xs:
            axes.plot(xs, ys, marker="o", markersize=3, label=f"{label} (n={len(members)})")
            drawn = True
    if not drawn:
        plt.close(figure)
        return False
    if log_x:
        axes.set_xscale("log")
    axes.set_xlabel(xlabel)
    axes.set_ylabel("HR@10 (sampled, 99 negatives)")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def seed_point(group: list[dict[str, Any]]) -> tuple[float, float, float]:
    """Runs that differ only in their seed as one point: mean upload bytes per client, mean HR@10, and the
    seeds' standard deviation of HR@10 (0 for one run)."""
    hr = [run[METRIC] for run in group]
    return (statistics.mean(run["up-bytes"] for run in group), statistics.mean(hr),
            statistics.stdev(hr) if len(hr) > 1 else 0.0)


def legend_handles(axes: Any) -> dict[str, Any]:
    """Every label drawn on any of `axes`, in first-drawn order, with its first handle."""
    handles: dict[str, Any] = {}
    for axis in axes:
        for handle, label in zip(*axis.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    return handles


def hr_vs_upload_panels(datasets: list[str], draw: Callable[[Any, str], None], path: Path, **legend: Any) -> None:
    """One panel per dataset of HR@10 against upload bytes per client (log axis), each drawn by
    `draw(axis, dataset)`, saved to `path`; one legend (options `legend`) on the last panel, of every label
    drawn in any panel, including a label drawn in only some panels."""
    figure, axes = plt.subplots(1, len(datasets), figsize=(4.5 * len(datasets), 3.8), squeeze=False)
    for axis, dataset in zip(axes[0], datasets):
        draw(axis, dataset)
        axis.set_xscale("log")
        axis.set_title(dataset)
        axis.set_xlabel("upload bytes per client (log)")
        axis.set_ylabel("HR@10 (test, last round)")
        axis.grid(alpha=0.3)
    handles = legend_handles(axes[0])
    axes[0][-1].legend(list(handles.values()), list(handles), **legend)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def build_report(paths: list[str], out: Path, target_hr: float | None = None) -> str:
    """Write results.csv, results.md and the plots into `out`; return a one-line account."""
    out.mkdir(parents=True, exist_ok=True)
    runs = find_runs(paths)
    varying = label_runs(runs)
    rows = group_rows(runs, target_hr)
    with open(out / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(row[h]) for h in header) + " |" for row in rows]
    (out / "results.md").write_text(f"Runs: {len(runs)}; groups differ in: {', '.join(varying) or '-'}\n\n" + "\n".join(lines) + "\n")
    drawn = [
        plot(runs, "round", "server round", out / "hr_vs_round.png"),
        plot(runs, "total-up-bytes", "cumulative upload bytes (all clients, log scale)", out / "hr_vs_upload.png", log_x=True),
    ]
    if any(r["summary"].get("sim-time") for r in runs):
        drawn.append(plot(runs, "sim-time", "simulated time (s)", out / "hr_vs_sim_time.png"))
    else:
        print("no simulated clock in these runs (hetero=none): hr_vs_sim_time.png not drawn")
    return f"{len(runs)} runs in {len(rows)} groups -> {out / 'results.csv'}, {out / 'results.md'}, {sum(drawn)} plots"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fedras report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", help="folders to search for run folders")
    parser.add_argument("--out", default="report")
    parser.add_argument("--target-hr", type=float, default=None, help="HR@10 for time-to-target (default: each run's)")
    args = parser.parse_args(argv)
    print(build_report(args.paths, Path(args.out), args.target_hr))
    return 0


if __name__ == "__main__":
    sys.exit(main())
