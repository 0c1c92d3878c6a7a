"""Matrix 2, accuracy at matched upload budgets: every codec at 50 ... 99 % upload reduction vs the dense reference.

For each dataset, codec and level the codec's knob is calibrated on real round-1 client updates so that the
mean exact upload stays within the level's byte budget (as close to it as the knob allows); every
(dataset, codec, level, seed) is then trained with the same model, data, rounds and seeds, taken from the
dataset's calibrated budget (fedras_flwr/conf/budget/<dataset>-<model>.yaml; a missing one stops the command) and
any `--set run.<key>=value`.

    python scripts/payload_grid.py --data-dir ml-100k=../shared/data/ml-100k --data-dir lastfm-2k=../shared/data/lastfm-2k

runs Matrix 2 (ML-100K and Last.fm at 96.88 and 99 %, every codec, seeds 0-2) into results/matrix2/; anything
else (other --datasets, --levels, --codecs, --seeds or --set) needs its own --out. Resumable:
a finished run is read, not run again; a stopped one resumes from its checkpoints; a run folder made with other
settings stops the command. Writes <out>/grid.csv (one row per run), <out>/grid.md (mean +- std over seeds; a
level a codec cannot reach is named; then FedRAS against each baseline user by user, from each run's
test-ranks.csv: the paired difference with its 95 % interval and McNemar's p), <out>/hr_vs_upload.png (HR@10
against upload bytes per client, log axis, one panel per dataset, seed spread as error bars), <out>/plan.json
(the calibrated settings) and <out>/manifest.json (the command, every commit a run was started or resumed on).
Runs go through the in-process loop (fedras_flwr/tooling/experiments.py); `--jobs` runs that many in parallel.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedras_flwr.algorithm.components import (
    ByteReferences,
    make_model,
    make_upload_codec,
    make_weights_codec,
    own_dense_upload,
)
from fedras_flwr.algorithm.data import load_split
from fedras_flwr.algorithm.data.split import NegativeSampler
from fedras_flwr.algorithm.server import FederatedServer
from fedras_flwr.algorithm.training import train_user
from fedras_flwr.codecs import ItemUpdate, available_codecs, codec_class, wire_bytes
from fedras_flwr.config import RunConfig
from fedras_flwr.tooling.experiments import (
    bytes_per_client,
    calibrated_budget,
    default_out_refusal,
    git_commit,
    invocation,
    mean_std,
    planned_run,
    preset_config,
    run_many,
    write_manifest,
)
from fedras_flwr.tooling.paired import PairedGap, paired_gap
from fedras_flwr.tooling.results import TEST_RANKS_FILE, read_test_ranks

LEVELS = (50.0, 75.0, 87.5, 93.75, 96.88, 99.0)
#: every codec that declares a budget parameter, and small-d: the dense codec with a smaller embedding
CODECS = (*(name for name in available_codecs() if codec_class(name).budget_parameter(1)), "small-d")
REPO = Path(__file__).resolve().parents[1]
METRICS = ("hr@10", "ndcg@10", "hr@10-full", "ndcg@10-full")


@dataclass(frozen=True)
class Knob:
    """One codec's budget knob: its candidate settings, from the smallest upload to the largest."""

    key: str
    values: tuple[Any, ...]
    codec: str


def knob_for(codec: str, embedding_dim: int, row_width: int) -> Knob:
    """The setting calibrated for `codec`: the codec's budget parameter at the item rows' width, or for
    small-d the embedding size."""
    if codec == "small-d":
        return Knob("embedding-dim", tuple(range(1, embedding_dim + 1)), "dense")
    budget = codec_class(codec).budget_parameter(row_width)
    if budget is None:
        raise ValueError(f"codec {codec!r} declares no budget parameter")
    return Knob(*budget, codec)


def sample_updates(cfg: RunConfig, users: int = 300) -> list[ItemUpdate]:
    """Round-1 item updates of a few users: what the codecs are calibrated on."""
    split = load_split(cfg)
    server = FederatedServer(cfg, split.num_items, range(split.num_users))
    backbone = make_model(cfg)
    chosen = np.random.default_rng(cfg.seed).choice(split.num_users, size=min(users, split.num_users), replace=False)
    updates = []
    for user in sorted(chosen.tolist()):
        data = split.users[user]
        vector = backbone.init_user(cfg.init_std, np.random.default_rng(user))
        result = train_user(backbone, cfg, data, NegativeSampler(data, split.num_items), vector,
                            server.item_table, server.dense, 1)
        updates.append(ItemUpdate(result.touched, result.delta))
    return updates


def calibrate(
    base: RunConfig, codec: str, levels: list[float], updates: list[ItemUpdate], num_items: int
) -> dict[float, dict[str, Any] | None]:
    """For every level, the largest knob setting whose mean upload fits the level's budget (or None).

    Knob values are measured once, from the smallest upload up, until one exceeds the largest budget.
    """
    dense_ref = ByteReferences.for_run(base, num_items).dense  # the exact wire size runs report against
    budgets = {level: (1.0 - level / 100.0) * dense_ref for level in levels}
    knob = knob_for(codec, base.embedding_dim, make_model(base).item_dim)
    measured: list[tuple[dict[str, Any], float]] = []
    for value in knob.values:
        overrides: dict[str, Any] = {"codec": knob.codec, knob.key: value}
        if codec == "small-d":
            overrides["reference-embedding-dim"] = base.embedding_dim
        cfg = RunConfig.from_flat({**base.to_flat(), **overrides})
        if codec == "small-d":  # dense at d' weighs the same for every client
            mean_bytes = float(own_dense_upload(cfg, num_items))
        else:
            model = make_model(cfg)
            encoder = make_upload_codec(cfg, num_items, model.item_dim)
            weights = model.init_dense(np.random.default_rng(0))  # their upload's size does not depend on values
            weight_bytes = wire_bytes(make_weights_codec(cfg, model).encode(weights, weights))
            mean_bytes = float(np.mean([wire_bytes(encoder.encode(u, 1)) for u in updates])) + weight_bytes
        measured.append((overrides, mean_bytes))
        if mean_bytes > max(budgets.values()):
            break
    plan: dict[float, dict[str, Any] | None] = {}
    for level, budget in budgets.items():
        fitting = [(o, b) for o, b in measured if b <= budget]
        plan[level] = {**fitting[-1][0], "calibrated-bytes": fitting[-1][1]} if fitting else None
    return plan


def _repo_relative(path: Path) -> str:
    """A run folder as grid.csv names it: relative to the repository when inside it, so the file is the same on
    every clone."""
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def result_row(job: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    cfg = RunConfig.from_flat(job["config"])
    up_bytes, _ = bytes_per_client(cfg.out_dir, summary)
    return {
        "dataset": cfg.dataset, "codec": job["codec"], "level": job["level"], "seed": cfg.seed, "setting": job["setting"],
        **{m: summary["final"][m] for m in METRICS},
        "up-reduction-dense": summary["up-reduction-dense"],
        "up-reduction-sparse": summary["up-reduction-sparse"],
        "up-bytes": up_bytes,
        "rounds": cfg.num_server_rounds, "clients-per-round": cfg.clients_per_round,
        "out-dir": _repo_relative(Path(cfg.out_dir)),
    }


def table_order(dataset: str, level: float, codec: str) -> tuple[str, float, int]:
    """Rows by dataset, then level, then codec in CODECS order."""
    return dataset, level, CODECS.index(codec) if codec in CODECS else len(CODECS)


def flipped_pairs(gap: PairedGap) -> str:
    """The (seed, user) pairs only one side hit, and McNemar's p on them ("-" when there are none to test)."""
    p = gap.mcnemar_p
    shown = "-" if gap.a_better + gap.b_better == 0 else "< 0.001" if p < 0.001 else f"{p:.3f}"
    return f"{gap.a_better} / {gap.b_better}, p {shown}"


def paired_lines(rows: list[dict[str, Any]]) -> list[str]:
    """FedRAS against every baseline at each level, user by user on the seeds both ran (tooling/paired.py)."""
    cells: dict[tuple[str, float, str], dict[int, dict[int, int]]] = {}
    unpaired = []
    for row in rows:  # (dataset, level, codec) -> seed -> user -> sampled rank of the test item
        run_dir = REPO / row["out-dir"]  # an absolute out-dir stays itself
        if not (run_dir / TEST_RANKS_FILE).is_file():
            unpaired.append(run_dir.name)  # e.g. made before runs wrote their per-user ranks
            continue
        ranks = {user: sampled for user, (sampled, _) in read_test_ranks(run_dir).items()}
        cells.setdefault((row["dataset"], row["level"], row["codec"]), {})[row["seed"]] = ranks
    lines = []
    for dataset, level, codec in sorted(cells, key=lambda cell: table_order(*cell)):
        fedras = cells.get((dataset, level, "fedras"))
        if codec == "fedras" or fedras is None:
            continue
        try:
            hr, ndcg = (paired_gap(fedras, cells[dataset, level, codec], metric, 10) for metric in ("hr", "ndcg"))
        except ValueError as err:  # no common seed, or too few users evaluated in every run
            lines.append(f"| {dataset} | {level} | {codec} | - | - | - | - | - | - | {err} |")
            continue
        verdicts = {"a ahead": "FedRAS ahead", "b ahead": f"{codec} ahead", "tie": "tie"}
        lines.append(
            f"| {dataset} | {level} | {codec} | {len(hr.seeds)} | {hr.users} | {hr.mean:+.4f} ± {hr.half_width:.4f} | "
            f"{ndcg.mean:+.4f} ± {ndcg.half_width:.4f} | {', '.join(f'{d:+.0f}' for d in hr.per_seed)} | "
            f"{flipped_pairs(hr)} | {verdicts[hr.verdict]}, {verdicts[ndcg.verdict]} |"
        )
    if not lines:
        return []
    return [
        "",
        "FedRAS against each baseline user by user: Δ is FedRAS minus the baseline, each user's HR@10 or NDCG@10"
        " (sampled) averaged over the seeds both ran, then over users, with its 95 % interval over users. That"
        " interval does not cover run-to-run noise, so a codec is called ahead only when the interval excludes 0"
        " and it is ahead in every seed; otherwise it is a tie. p is McNemar's exact test on the (seed, user)"
        " pairs where only one side hit; it treats them as independent, which users of one run are not.",
        "",
        "| dataset | level | baseline | seeds | users | Δ HR@10 | Δ NDCG@10 | HR@10 hits FedRAS − baseline, per seed |"
        " (seed, user) pairs only FedRAS / only baseline hit, McNemar p | verdict HR@10, NDCG@10 |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        *lines,
        *([f"\nLeft out (no test-ranks.csv, e.g. made before runs wrote one): {', '.join(unpaired)}."]
          if unpaired else []),
    ]


def write_tables(rows: list[dict[str, Any]], unreachable: list[tuple[str, str, float]], out: Path) -> None:
    if rows:
        with open(out / "grid.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    groups: dict[tuple[str, str, float], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["codec"], row["level"]), []).append(row)

    lines = [
        "| dataset | level | codec | setting | seeds | HR@10 | NDCG@10 | HR@10 full | NDCG@10 full | reduction vs dense % | reduction vs sparse % |",
        "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (dataset, codec, level), group in sorted(groups.items(), key=lambda kv: table_order(kv[0][0], kv[0][2], kv[0][1])):
        lines.append(
            f"| {dataset} | {level} | {codec} | {group[0]['setting']} | {len(group)} | "
            + " | ".join(mean_std([g[m] for g in group]) for m in METRICS)
            + f" | {mean_std([g['up-reduction-dense'] for g in group], 2)}"
            + f" | {mean_std([g['up-reduction-sparse'] for g in group], 2)} |"
        )
    lines += [f"| {dataset} | {level} | {codec} | unreachable: no setting fits the budget | 0 | - | - | - | - | - | - |"
              for dataset, codec, level in unreachable]
    lines += paired_lines(rows)
    (out / "grid.md").write_text("\n".join(lines) + "\n")


def plot(rows: list[dict[str, Any]], out: Path) -> None:
    """HR@10 (mean over seeds, their std as error bars) against upload bytes per client, a line per codec
    across the levels, one panel per dataset; a codec has the same colour in every panel, FedRAS drawn on top."""
    from fedras_flwr.tooling.report import hr_vs_upload_panels, seed_point  # matplotlib only when a plot is drawn

    def draw(axis: Any, dataset: str) -> None:
        for codec in CODECS:
            levels = sorted({r["level"] for r in rows if (r["dataset"], r["codec"]) == (dataset, codec)})
            points = [seed_point([r for r in rows if (r["dataset"], r["codec"], r["level"]) == (dataset, codec, level)])
                      for level in levels]
            if points:
                x, y, spread = zip(*points)
                axis.errorbar(x, y, yerr=spread, marker="o", capsize=3, label=codec, color=f"C{CODECS.index(codec)}",
                              zorder=3 if codec == "fedras" else 2)  # FedRAS on top where codecs tie

    datasets = sorted({r["dataset"] for r in rows})
    if datasets:
        hr_vs_upload_panels(datasets, draw, out / "hr_vs_upload.png", fontsize=8)


def dataset_jobs(
    dataset: str, data_dir: str, args: argparse.Namespace, out: Path
) -> tuple[list[dict[str, Any]], dict[str, Any], list[tuple[str, str, float]]]:
    """One dataset's runs, its calibration plan and the (dataset, codec, level) no setting reaches."""
    base = preset_config([f"dataset={dataset}", *args.set], data_dir)
    calibrated_budget(dataset, base.model)
    split = load_split(base)
    updates = sample_updates(base)
    jobs, plan, unreachable = [], {}, []
    for codec in args.codecs.split(","):
        settings = calibrate(base, codec, [float(x) for x in args.levels.split(",")], updates, split.num_items)
        for level, setting in settings.items():
            plan[f"{codec}@{level}"] = setting
            if setting is None:
                print(f"{dataset}: {codec} cannot reach {level} % with any setting; named in the table", flush=True)
                unreachable.append((dataset, codec, level))
                continue
            overrides = {k: v for k, v in setting.items() if k != "calibrated-bytes"}
            label = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in overrides.items() if k != "codec")
            for seed in (int(s) for s in args.seeds.split(",")):
                run_dir = out / "runs" / f"{dataset}-{codec}-{level}-s{seed}"
                config = {**base.to_flat(), **overrides, "seed": seed, "out-dir": str(run_dir)}
                jobs.append({"codec": codec, "level": level, "setting": label, "config": config})
    return jobs, plan, unreachable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="ml-100k,lastfm-2k", help="dataset presets (comma-separated)")
    parser.add_argument("--data-dir", action="append", default=[], metavar="DATASET=PATH",
                        help="folder of a dataset's official file (repeatable); else the preset's $FEDRAS_DATA_DIR")
    parser.add_argument("--out", default=str(REPO / "results" / "matrix2"))
    parser.add_argument("--levels", default="96.88,99", help=f"upload reduction levels in %%, e.g. {LEVELS}")
    parser.add_argument("--codecs", default=",".join(CODECS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--set", nargs="*", default=[], help="Hydra overrides for every run, e.g. run.eval-every=50")
    args = parser.parse_args()
    if reason := default_out_refusal(parser, args, ("datasets", "levels", "codecs", "seeds", "set")):
        sys.exit(f"payload_grid: {reason}")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    command = invocation("payload_grid.py", sys.argv[1:])
    data_dirs = dict(item.split("=", 1) for item in args.data_dir)
    jobs, plan, unreachable = [], {}, []
    try:
        for dataset in args.datasets.split(","):
            found = dataset_jobs(dataset, data_dirs.get(dataset, ""), args, out)
            jobs += found[0]
            plan[dataset] = found[1]
            unreachable += found[2]
        commit = git_commit(REPO)
        planned = [planned_run(RunConfig.from_flat(job["config"])) for job in jobs]
    except (ValueError, OSError) as err:  # a preset without a budget, a run folder of other settings
        sys.exit(f"payload_grid: {err}")
    (out / "plan.json").write_text(json.dumps(plan, indent=2))
    todo = [(job, cfg) for job, (cfg, summary) in zip(jobs, planned) if summary is None]
    print(f"{len(jobs)} runs, {len(jobs) - len(todo)} already done, {len(todo)} to run ({args.jobs} at a time); "
          f"calibration in {out / 'plan.json'}", flush=True)
    for (job, _), summary in zip(todo, run_many([cfg for _, cfg in todo], args.jobs, commit)):
        row = result_row(job, summary)
        print(f"{row['dataset']} {row['codec']:8s} {row['level']:6.2f}% seed {row['seed']}: HR@10 {row['hr@10']:.4f} "
              f"NDCG@10 {row['ndcg@10']:.4f} reduction {row['up-reduction-dense']:.2f}%", flush=True)
    rows = [result_row(job, json.loads((Path(job["config"]["out-dir"]) / "summary.json").read_text())) for job in jobs]
    write_tables(rows, unreachable, out)
    plot(rows, out)
    write_manifest(out, command, [Path(job["config"]["out-dir"]) for job in jobs])
    print(f"wrote {out / 'grid.csv'}, {out / 'grid.md'}, {out / 'hr_vs_upload.png'} and {out / 'manifest.json'}")


if __name__ == "__main__":
    main()
