"""Matrix 1, the headline results: datasets x backbones x codecs x seeds. Each backbone has its codec list
(MODEL_CODECS): dense, sparse, fedras K=8 and fedras adaptive for both; with MF also fedras K=8 with error feedback,
fedras under a 1 % byte target and fedras K=8 on directions; with NeuMF also fedras K=8 with 4-bit weights.

Every run takes its budget from the dataset and model's Hydra preset (fedras_flwr/conf/budget/<dataset>-<model>.yaml,
calibrated by scripts/calibrate_budget.py; a missing one stops the command), the backbone's from its model preset, the codec's from its codec preset, and runs
the `mixed` device scenario (so fedras-adaptive has deadlines to fit; with stragglers waited for, the scenario
changes no accuracy, only the simulated time). Runs go through the in-process loop, which gives the Flower app's
metrics (tests/test_flower.py).

    python scripts/results_matrix.py --data-dir ml-100k=../shared/data/ml-100k --data-dir lastfm-2k=../shared/data/lastfm-2k \
        --data-dir amazon-games=../shared/data/amazon-games-sasrec

runs the whole of it into results/matrix1/ (a folder per backbone: mf/, neumf/); `--datasets`, `--models`,
`--codecs` (then for every backbone) and `--seeds` pick a part, and `--set` changes every run; either needs its
own `--out`.

Resumable: a run whose summary.json exists is read, not run again, so the same command continues where it
stopped; the tables are rewritten after every finished run and name the runs not yet finished (re-render the
README with scripts/render_results.py once they change). A finished run's summary.json, rounds.jsonl, commits.txt
and incidents.jsonl are committed with the tables (results/.gitignore; add only run folders that hold a
summary.json), so a fresh clone reads finished runs back; a stopped run's checkpoints are not committed, so on a
fresh clone it starts again from round 0. Writes, per backbone, <out>/<model>/runs.csv (one row per run),
<out>/<model>/results.md (mean +- std over seeds, ratios to dense), <out>/<model>/hr_vs_upload.png (HR@10 against
upload bytes per client, log axis, one panel per dataset, seed spread as error bars) and <out>/<model>/manifest.json
(the command, and every commit a run was started or resumed on); runs go in <out>/<model>/runs/. A run
stopped midway resumes from its checkpoints; a run folder made with other settings stops the command.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import traceback
from pathlib import Path
from typing import Any

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
from fedras_flwr.tooling.report import hr_vs_upload_panels, seed_point

REPO = Path(__file__).resolve().parents[1]
DATASETS = ("ml-100k", "lastfm-2k", "amazon-games", "synthetic")
MODELS = ("mf", "neumf")
MODEL_CODECS = {  # each backbone's codec presets when --codecs is not given
    "mf": ("dense", "sparse", "fedras", "fedras-adaptive", "fedras-ef", "fedras-target-ratio", "fedras-direction"),
    "neumf": ("dense", "sparse", "fedras", "fedras-adaptive", "fedras-int4-weights"),
}
CODECS = tuple(dict.fromkeys(codec for codecs in MODEL_CODECS.values() for codec in codecs))  # tables' row order
METRICS = ("hr@10", "ndcg@10", "hr@10-full", "ndcg@10-full")
NEUMF_ONLY_CODECS = ("fedras-int4-weights",)  # differ from fedras in NeuMF's dense weights only: no MF cells
Cell = tuple[str, str, str, int]  # dataset, model, codec, seed


def matrix_cells(datasets: list[str], models: list[str], codecs: list[str], seeds: list[int]) -> list[Cell]:
    """Every (dataset, model, codec, seed) of the matrix: `codecs` for every backbone, else each backbone's own
    (MODEL_CODECS); MF has no cell for a codec that differs from fedras in NeuMF's weights only."""
    unknown = [model for model in models if not codecs and model not in MODEL_CODECS]
    if unknown:
        raise ValueError(f"no default codecs for model {', '.join(unknown)}: name them with --codecs")
    return [(dataset, model, codec, seed) for dataset in datasets for model in models
            for codec in (codecs or MODEL_CODECS[model]) for seed in seeds
            if not (model == "mf" and codec in NEUMF_ONLY_CODECS)]


def run_config(dataset: str, model: str, codec: str, seed: int, data_dirs: dict[str, str], extra: list[str]) -> RunConfig:
    """The composed presets of one cell, as the sweep would run them, for one seed."""
    overrides = [f"dataset={dataset}", f"model={model}", f"codec={codec}", "hetero=mixed", f"run.seed={seed}", *extra]
    return preset_config(overrides, data_dirs.get(dataset, ""))


def row(dataset: str, model: str, codec: str, cfg: RunConfig, summary: dict[str, Any]) -> dict[str, Any]:
    """One run's figures; bytes per client are per upload and per trained user's download."""
    up_bytes, down_bytes = bytes_per_client(cfg.out_dir, summary)
    return {
        "dataset": dataset, "model": model, "codec": codec, "seed": cfg.seed,
        **{metric: summary["final"][metric] for metric in METRICS},
        "up-bytes": up_bytes, "down-bytes": down_bytes,
        "up-reduction-dense": summary["up-reduction-dense"], "up-reduction-sparse": summary["up-reduction-sparse"],
        "rounds": cfg.num_server_rounds, "clients-per-round": cfg.clients_per_round, "lr": cfg.effective_lr,
        "wall-time": summary["wall-time"], "sim-time": summary["sim-time"],
    }


def write_table(rows: list[dict[str, Any]], out: Path, missing: list[Cell]) -> None:
    """results.md: one block per (dataset, model), one line per codec, ratios to that block's dense; then the
    runs of the command not yet finished (`missing`), if any."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["model"], r["codec"]), []).append(r)
    lines = [
        "| dataset | model | codec | seeds | HR@10 | NDCG@10 | HR@10 full | NDCG@10 full | x dense HR / NDCG | "
        "upload B/client | download B/trained user | cut vs dense % | cut vs sparse % | wall s |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    order = {name: i for i, name in enumerate(CODECS)}
    for (dataset, model, codec), group in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], order.get(kv[0][2], 99))):
        ratio = dense_ratio(group, groups.get((dataset, model, "dense"), []))
        lines.append(
            f"| {dataset} | {model} | {codec} | {len(group)} | " + " | ".join(mean_std([g[m] for g in group]) for m in METRICS)
            + f" | {ratio} | {statistics.mean(g['up-bytes'] for g in group):,.0f} | "
            f"{statistics.mean(g['down-bytes'] for g in group):,.0f} | {mean_std([g['up-reduction-dense'] for g in group], 2)} | "
            f"{mean_std([g['up-reduction-sparse'] for g in group], 2)} | {statistics.mean(g['wall-time'] for g in group):.0f} |"
        )
    if missing:
        pending: dict[tuple[str, str, str], list[str]] = {}
        for dataset, model, codec, seed in missing:
            pending.setdefault((dataset, model, codec), []).append(str(seed))
        lines += ["", f"Not yet finished ({len(missing)} of the command's runs): " + "; ".join(
            f"{d} {m} {c} seed {', '.join(s)}" for (d, m, c), s in pending.items()) + "."]
    (out / "results.md").write_text("\n".join(lines) + "\n")


def dense_ratio(group: list[dict[str, Any]], dense: list[dict[str, Any]]) -> str:
    """Mean HR@10 and NDCG@10 of a row over dense's, both on the seeds they share (a partial matrix may hold
    different seeds of each); the shared count is named when it is not every seed of both."""
    by_seed = {d["seed"]: d for d in dense}
    shared = [g for g in group if g["seed"] in by_seed]
    if not shared:
        return "-"
    hr, ndcg = (statistics.mean(g[m] for g in shared) / statistics.mean(by_seed[g["seed"]][m] for g in shared)
                for m in ("hr@10", "ndcg@10"))
    seeds = "" if len(shared) == len(group) == len(dense) else f" ({len(shared)} seed{'s' * (len(shared) > 1)})"
    return f"{hr:.3f} / {ndcg:.3f}{seeds}"


def plot(rows: list[dict[str, Any]], out: Path) -> None:
    """HR@10 (mean, seed std as error bar) against upload bytes per client, one panel per dataset."""
    markers = dict(zip(CODECS, "osD^vX*P", strict=True))

    def draw(axis: Any, dataset: str) -> None:
        for model, colour in zip(MODELS, ("tab:blue", "tab:orange")):
            for codec in CODECS:
                group = [r for r in rows if (r["dataset"], r["model"], r["codec"]) == (dataset, model, codec)]
                if group:
                    x, y, spread = seed_point(group)
                    axis.errorbar(x, y, yerr=spread, marker=markers[codec], color=colour, linestyle="none", capsize=3,
                                  label=f"{model} {codec}")

    hr_vs_upload_panels(sorted({r["dataset"] for r in rows}), draw, out / "hr_vs_upload.png", fontsize=7, loc="best")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--codecs", default="", help="codec presets for every backbone (comma-separated); "
                        "default: each backbone's own (MODEL_CODECS)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--data-dir", action="append", default=[], metavar="DATASET=PATH",
                        help="folder of a dataset's official file (repeatable); else the preset's $FEDRAS_DATA_DIR")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", default=str(REPO / "results" / "matrix1"))
    parser.add_argument("--set", nargs="*", default=[], help="extra Hydra overrides for every run, e.g. run.eval-every=50")
    args = parser.parse_args()
    if reason := default_out_refusal(parser, args, ("datasets", "models", "codecs", "seeds", "set")):
        sys.exit(f"results_matrix: {reason}")
    data_dirs = dict(item.split("=", 1) for item in args.data_dir)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    command = invocation("results_matrix.py", sys.argv[1:])
    datasets = args.datasets.split(",")
    try:
        for dataset in datasets:
            for model in args.models.split(","):
                calibrated_budget(dataset, model)
        cells = matrix_cells(datasets, args.models.split(","), args.codecs.split(",") if args.codecs else [],
                             [int(s) for s in args.seeds.split(",")])
        commit = git_commit(REPO)
        plans = {}
        for cell in cells:
            run_dir = out / cell[1] / "runs" / "-".join(map(str, cell))
            cfg = run_config(*cell, data_dirs, args.set).replace(out_dir=str(run_dir))
            plans[cell] = planned_run(cfg)
    except (ValueError, OSError) as err:  # a preset without a budget, a run folder of other settings
        sys.exit(f"results_matrix: {err}")
    # each finished run's table row, made once (it reads the run's rounds.jsonl)
    finished = {cell: row(*cell[:3], plan, summary) for cell, (plan, summary) in plans.items() if summary is not None}
    todo = run_order([cell for cell in cells if cell not in finished])
    print(f"{len(cells)} runs, {len(finished)} already done, {len(todo)} to run ({args.jobs} at a time)", flush=True)
    write_results(cells, finished, plans, out, command)
    summaries = run_many([plans[cell][0] for cell in todo], args.jobs, commit)  # in the order of `todo`
    for cell in todo:
        try:
            summary = next(summaries)
        except Exception as err:  # noqa: BLE001 - one run's failure: name it, keep what finished
            traceback.print_exc()
            sys.exit(f"results_matrix: run {' '.join(map(str, cell))} failed ({type(err).__name__}: {err}; traceback "
                     f"above), the runs beside it were stopped; the tables under {out} hold the {len(finished)} "
                     f"finished runs; fix the cause and re-run the same command to go on")
        print(f"{' '.join(map(str, cell))}: HR@10 {summary['final']['hr@10']:.4f} "
              f"NDCG@10 {summary['final']['ndcg@10']:.4f} cut vs dense {summary['up-reduction-dense']:.2f} %", flush=True)
        finished[cell] = row(*cell[:3], plans[cell][0], summary)
        write_results(cells, finished, plans, out, command)  # a stopped command leaves the tables of what finished


def run_order(cells: list[Cell]) -> list[Cell]:
    """Seed by seed (in increasing order) within a dataset and model, datasets and models in the order asked, so
    that a matrix stopped midway holds every codec of the seeds it finished: its ratios to dense are then paired
    (the tables keep the cells' own order)."""
    groups = list(dict.fromkeys(cell[:2] for cell in cells))  # datasets and models in the order asked
    return sorted(cells, key=lambda cell: (groups.index(cell[:2]), cell[3]))


def write_results(cells: list[Cell], finished: dict[Cell, dict[str, Any]], plans: dict[Cell, Any], out: Path,
                  command: str) -> None:
    """Each backbone's tables in <out>/<model>/: a table compares codecs on one backbone."""
    for model in dict.fromkeys(cell[1] for cell in cells):
        write_model_results([cell for cell in cells if cell[1] == model], finished, plans, out / model, command)


def write_model_results(cells: list[Cell], finished: dict[Cell, dict[str, Any]], plans: dict[Cell, Any], out: Path,
                        command: str) -> None:
    """runs.csv, results.md, the plot and the manifest of the finished runs (`finished`: their table rows);
    results.md names the runs not yet finished, so a partial matrix never reads as a whole one (with none
    finished, no csv or plot is left)."""
    out.mkdir(parents=True, exist_ok=True)
    done = [cell for cell in cells if cell in finished]
    rows = [finished[cell] for cell in done]
    if rows:
        with open(out / "runs.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        plot(rows, out)
    else:
        (out / "runs.csv").unlink(missing_ok=True)
        (out / "hr_vs_upload.png").unlink(missing_ok=True)
    write_table(rows, out, [cell for cell in cells if cell not in finished])
    write_manifest(out, command, [Path(plans[cell][0].out_dir) for cell in done])
    print(f"wrote {out / 'runs.csv'}, {out / 'results.md'}, {out / 'hr_vs_upload.png'}, {out / 'manifest.json'} "
          f"({len(done)} of {len(cells)} runs)", flush=True)


if __name__ == "__main__":
    main()
