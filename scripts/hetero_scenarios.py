"""Simulated time-to-accuracy under heterogeneous devices and links.

For every scenario it trains `dense`, fixed-K FedRAS (the smallest, default and largest K), adaptive
FedRAS (`k-policy=deadline`) and one baseline codec with the same model, data, rounds and seeds, then
writes `hetero.csv` and `hetero.md`: simulated time to reach the target HR@10 (95 % of the dense run's
final HR@10 in the same scenario and seed), final HR@10 / NDCG@10, mean upload bytes, mean K, stragglers.

    python scripts/hetero_scenarios.py --dataset ml-100k --data-dir ../shared/data/ml-100k --out hetero-ml100k
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Any

from fedras_flwr.algorithm.hetero import PRESETS
from fedras_flwr.config import RunConfig, parse_overrides
from fedras_flwr.tooling.experiments import mean_std, read_rounds, run_many, time_to_reach


def methods(candidates: list[int], default_k: int, baseline: str) -> dict[str, dict[str, Any]]:
    return {
        "dense": {"codec": "dense"},
        f"fedras K={min(candidates)}": {"codec": "fedras", "num-actions": min(candidates)},
        f"fedras K={default_k}": {"codec": "fedras", "num-actions": default_k},
        f"fedras K={max(candidates)}": {"codec": "fedras", "num-actions": max(candidates)},
        "fedras adaptive": {"codec": "fedras", "k-policy": "deadline"},
        baseline: {"codec": baseline},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--data-dir", default="")
    parser.add_argument("--out", default="outputs/hetero-scenarios")
    parser.add_argument("--scenarios", default=",".join(PRESETS))
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--clients-per-round", type=int, default=100)
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--baseline", default="colr")
    parser.add_argument("--methods", default="", help="comma-separated subset of the method names (default: all)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--set", nargs="*", default=[], help="extra run-config overrides key=value")
    args = parser.parse_args()

    out = Path(args.out).resolve()
    base = parse_overrides([
        f"dataset={args.dataset}", f"data-dir={Path(args.data_dir).resolve() if args.data_dir else ''}",
        f"num-server-rounds={args.rounds}", f"clients-per-round={args.clients_per_round}",
        f"eval-every={args.eval_every}", *args.set,
    ])
    table = methods(base.k_candidate_list, base.codec_params("fedras").num_actions, args.baseline)
    if args.methods:
        table = {name: table[name] for name in args.methods.split(",")}
    runs: list[tuple[str, str, RunConfig]] = []
    for scenario in args.scenarios.split(","):
        for name, overrides in table.items():
            for seed in (int(s) for s in args.seeds.split(",")):
                run_dir = out / "runs" / f"{scenario}-{name.replace(' ', '-').replace('=', '')}-s{seed}"
                flat = {**base.to_flat(), **overrides, "hetero": scenario, "seed": seed, "out-dir": str(run_dir)}
                runs.append((scenario, name, RunConfig.from_flat(flat)))
    print(f"{len(runs)} runs, {args.jobs} at a time")
    summaries = list(run_many([cfg for _, _, cfg in runs], args.jobs))

    dense_final = {(s, cfg.seed): summ["final"]["hr@10"] for (s, n, cfg), summ in zip(runs, summaries) if n == "dense"}
    rows = []
    for (scenario, name, cfg), summary in zip(runs, summaries):
        records = read_rounds(summary["out-dir"])
        target = 0.95 * dense_final[(scenario, cfg.seed)]
        rows.append({
            "scenario": scenario, "method": name, "seed": cfg.seed, "target-hr@10": target,
            "time-to-target": time_to_reach(records, "hr@10", target),
            "sim-time": summary["sim-time"],
            "hr@10": summary["final"]["hr@10"], "ndcg@10": summary["final"]["ndcg@10"],
            "up-bytes": summary["total-up-bytes"] / (cfg.num_server_rounds * cfg.clients_per_round),
            "mean-k": sum(r["mean-k"] or 0 for r in records) / len(records) if records[0]["mean-k"] else None,
            "stragglers": summary["total-stragglers"],
            "out-dir": summary["out-dir"],
        })
    with open(out / "hetero.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        "| scenario | method | time to target (s) | total sim time (s) | HR@10 | NDCG@10 | upload B/client | mean K |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for scenario in args.scenarios.split(","):
        for name in table:
            group = [r for r in rows if r["scenario"] == scenario and r["method"] == name]
            lines.append(
                f"| {scenario} | {name} | {mean_std([g['time-to-target'] for g in group], 1)} | "
                f"{mean_std([g['sim-time'] for g in group], 1)} | {mean_std([g['hr@10'] for g in group])} | "
                f"{mean_std([g['ndcg@10'] for g in group])} | {mean_std([g['up-bytes'] for g in group], 0)} | "
                f"{mean_std([g['mean-k'] for g in group], 1)} |"
            )
    (out / "hetero.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out / 'hetero.csv'} and {out / 'hetero.md'}")


if __name__ == "__main__":
    main()
