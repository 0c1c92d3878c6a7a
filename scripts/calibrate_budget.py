"""Calibrate a dataset's training budget: the learning rate and number of rounds at which the dense reference
reaches its plateau on the validation items (never the test items), at a fixed number of clients per round.

Each learning rate trains dense for `--rounds` rounds (one seed), evaluating every `--eval-every`. For each run:
its best validation HR@10, and its plateau round, the first evaluation whose validation HR@10 is within
`--tolerance` (relative) of that best. A run whose last third of evaluations still beat the best before it by
more than the tolerance has not plateaued: raise --rounds. The recommended budget is the cheapest that reaches
the plateau: of the learning rates that plateaued, the one whose validation HR@10 first comes within the
tolerance of the best of all runs, at that round. It goes into fedras_flwr/conf/budget/<dataset>-<model>.yaml, which every run
composed from the Hydra presets with that dataset and model takes.

    python scripts/calibrate_budget.py --dataset lastfm-2k --data-dir ../shared/data/lastfm-2k \\
        --clients-per-round 200 --rounds 400 --eval-every 20 --lrs 2,4,8

Writes <out>/curves.csv (every evaluation), <out>/calibration.md (the table, the recommendation, the command and
commit). Run again, the command reads finished runs back (runs/lr-<lr>/) and resumes stopped ones from their
checkpoints; a run folder made with other settings stops it.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

from fedras_flwr.config import parse_overrides
from fedras_flwr.tooling.experiments import (
    StaleRun,
    git_commit,
    invocation,
    mean_std,
    planned_run,
    read_rounds,
    run_commits,
    run_many,
)

REPO = Path(__file__).resolve().parents[1]
METRIC = "val-hr@10"


def plateau(records: list[dict[str, Any]], tolerance: float) -> dict[str, Any]:
    """Best validation HR@10, its round, the plateau round and whether the curve flattened by the end."""
    evaluated = [r for r in records if r.get(METRIC) is not None]
    if not evaluated:
        raise ValueError("no evaluated round: lower --eval-every")
    best = max(evaluated, key=lambda r: r[METRIC])
    reached = next(r for r in evaluated if r[METRIC] >= (1.0 - tolerance) * best[METRIC])
    cut = max(1, len(evaluated) * 2 // 3)  # the last third of the evaluations must not beat the rest by > tolerance
    before, last_third = (max(r[METRIC] for r in part) for part in (evaluated[:cut], evaluated[cut:] or evaluated[-1:]))
    flattened = len(evaluated) >= 3 and last_third <= (1.0 + tolerance) * before
    return {
        "best-val-hr@10": best[METRIC], "best-round": best["round"], "plateau-round": reached["round"],
        "plateaued": flattened, "val-ndcg@10-at-plateau": reached.get("val-ndcg@10"),
    }


def recommend(rows: list[dict[str, Any]], curves: dict[float, list[dict[str, Any]]], tolerance: float) -> dict[str, Any] | None:
    """The cheapest budget that reaches the plateau: of the learning rates that plateaued, the one whose
    validation HR@10 first comes within `tolerance` of the best of all runs, at that round. None while the best
    of all comes from a run that has not plateaued (it may still rise): more rounds are needed."""
    top = max(rows, key=lambda row: row["best-val-hr@10"])
    if not top["plateaued"]:
        return None
    target = (1.0 - tolerance) * top["best-val-hr@10"]
    reached = [
        {**row, "budget-round": next(r["round"] for r in curves[row["lr"]] if r[METRIC] >= target)}
        for row in rows if row["plateaued"] and row["best-val-hr@10"] >= target
    ]
    return min(reached, key=lambda row: (row["budget-round"], -row["best-val-hr@10"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--data-dir", default="")
    parser.add_argument("--model", default="mf")
    parser.add_argument("--lrs", default="2,4,8", help="learning rates to try (comma-separated)")
    parser.add_argument("--clients-per-round", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--eval-every", type=int, default=20)
    parser.add_argument("--tolerance", type=float, default=0.01, help="relative gap to the best that counts as reached")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", default="", help="default: results/calibration/<dataset>-<model>")
    parser.add_argument("--set", nargs="*", default=[], help="extra run-config overrides key=value")
    args = parser.parse_args()
    stamp = git_commit(REPO)  # of the code the runs start with

    out = Path(args.out or REPO / "results" / "calibration" / f"{args.dataset}-{args.model}").resolve()
    base = parse_overrides([
        f"dataset={args.dataset}", f"data-dir={Path(args.data_dir).resolve() if args.data_dir else ''}",
        f"model={args.model}", "codec=dense", f"num-server-rounds={args.rounds}",
        f"clients-per-round={args.clients_per_round}", f"eval-every={args.eval_every}", f"seed={args.seed}", *args.set,
    ])
    lrs = [float(lr) for lr in args.lrs.split(",")]
    run_dirs = {lr: out / "runs" / f"lr-{lr:g}" for lr in lrs}
    try:
        planned = {lr: planned_run(base.replace(lr=lr, out_dir=str(run_dirs[lr]))) for lr in lrs}
    except StaleRun as err:
        sys.exit(f"calibrate_budget: {err}")
    todo = [lr for lr in lrs if planned[lr][1] is None]
    print(f"{len(todo)} of {len(lrs)} runs to do ({len(lrs) - len(todo)} already finished in {out})", flush=True)
    for lr, summary in zip(todo, run_many([planned[lr][0] for lr in todo], args.jobs, stamp)):
        print(f"lr {lr:g}: final val-HR@10 {summary['final'][METRIC]:.4f}", flush=True)

    rows, curves, by_lr = [], [], {}
    for lr in lrs:
        records = read_rounds(run_dirs[lr])
        rows.append({"lr": lr, **plateau(records, args.tolerance)})
        by_lr[lr] = [r for r in records if r.get(METRIC) is not None]
        curves += [{"lr": lr, "round": r["round"], METRIC: r[METRIC], "val-ndcg@10": r.get("val-ndcg@10")} for r in by_lr[lr]]
    with open(out / "curves.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(curves[0]))
        writer.writeheader()
        writer.writerows(curves)
    chosen = recommend(rows, by_lr, args.tolerance)
    command = invocation("calibrate_budget.py", sys.argv[1:])
    lines = [
        f"# Budget calibration: {args.dataset}, {args.model}, dense, {args.clients_per_round} clients per round",
        "",
        f"Command: `{command}`  ",
        f"Runs made on: {', '.join(run_commits(list(run_dirs.values())))}; seed {args.seed}; evaluation every "
        f"{args.eval_every} rounds; tolerance {args.tolerance:g}.",
        "",
        "| lr | best val HR@10 | at round | plateau round (within tolerance) | val NDCG@10 there | flat over the last third |",
        "| ---: | ---: | ---: | ---: | ---: | --- |",
        *[f"| {r['lr']:g} | {r['best-val-hr@10']:.4f} | {r['best-round']} | {r['plateau-round']} | "
          f"{mean_std([r['val-ndcg@10-at-plateau']])} | {'yes' if r['plateaued'] else 'no: raise --rounds'} |" for r in rows],
        "",
        (f"Recommended: lr {chosen['lr']:g}, {chosen['budget-round']} rounds x {args.clients_per_round} clients "
         f"(the first evaluation within {args.tolerance:g} of the best of all runs)."
         if chosen else
         f"No recommendation: the best learning rate has not plateaued in {args.rounds} rounds; run again with more "
         f"--rounds (finished runs go on from their last checkpoint)."),
    ]
    (out / "calibration.md").write_text("\n".join(lines) + "\n")
    (out / "calibration.json").write_text(json.dumps({"command": command, "commits": run_commits(list(run_dirs.values())), "runs": rows}, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
