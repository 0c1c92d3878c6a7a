"""How many Lloyd iterations FedRAS updates need, and what a cap on them costs in reconstruction error.

Runs the in-process loop (`fedras_flwr.tooling.inprocess`) with the given run config and keeps every
`--every`-th clustering the FedRAS codec asks for: exactly the rows, K, seed and mode the run clusters (raw deltas
by default; residuals with error feedback, unit rows with cluster-on=direction). Each kept clustering is run again
with its own seed, without a cap (faiss stops two iterations after the assignment settles) and at every cap in `--caps`. Prints one
markdown table per K: the iterations faiss ran without a cap (mean, median, 90th percentile) and the summed
squared reconstruction error at each cap relative to the uncapped one.

    python scripts/kmeans_cap.py dataset=ml-100k data-dir=/path/to/ml-100k clients-per-round=200
"""

from __future__ import annotations

import argparse
import tempfile
from collections import defaultdict

import numpy as np

import fedras_flwr.codecs.fedras as fedras_codec
from fedras_flwr.codecs.kmeans import kmeans
from fedras_flwr.config import parse_overrides
from fedras_flwr.tooling.inprocess import run_inprocess

UNCAPPED = 1000


Clustering = tuple[np.ndarray, int, int, bool]  # rows, K, seed, spherical: one call of the codec's k-means


def record_clusterings(overrides: list[str], every: int) -> list[Clustering]:
    """Every `every`-th k-means call the codec makes in an in-process run."""
    calls: list[Clustering] = []
    seen = 0

    def recording(points, k, iterations, seed, spherical=False):
        nonlocal seen
        seen += 1
        if seen % every == 0:
            calls.append((np.array(points, dtype=np.float32), k, seed, spherical))
        return kmeans(points, k, iterations, seed, spherical=spherical)

    with tempfile.TemporaryDirectory(prefix="kmeans-cap-") as out_dir:
        cfg = parse_overrides([*overrides, f"out-dir={out_dir}"])
        cfg = cfg.replace(eval_every=cfg.num_server_rounds)  # evaluation only once: this run is about the updates
        fedras_codec.kmeans = recording
        try:
            run_inprocess(cfg)
        finally:
            fedras_codec.kmeans = kmeans
    return calls


def squared_error(rows: np.ndarray, k: int, cap: int, seed: int, spherical: bool) -> tuple[float, int]:
    clusters = kmeans(rows, k, cap, seed, spherical=spherical)
    return float(np.sum((rows - clusters.centroids[clusters.assignment]) ** 2)), clusters.iterations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="run-config key=value (a FedRAS codec run)")
    parser.add_argument("--every", type=int, default=40, help="keep every n-th clustering of the run")
    parser.add_argument("--caps", default="5,10,20")
    args = parser.parse_args()
    calls = record_clusterings(args.overrides, args.every)
    caps = [int(c) for c in args.caps.split(",")]
    by_k: dict[int, list[Clustering]] = defaultdict(list)
    for call in calls:
        by_k[call[1]].append(call)
    print(f"{len(calls)} clusterings kept, rows per clustering: median {np.median([len(c[0]) for c in calls]):.0f}\n")
    print("| K | clusterings | iterations faiss ran without a cap: mean / median / p90 | "
          + " | ".join(f"error at cap {c}" for c in caps) + " |")
    print("| ---: | ---: | ---: | " + " | ".join("---:" for _ in caps) + " |")
    for k, kept in sorted(by_k.items()):
        free = [squared_error(rows, k, UNCAPPED, seed, spherical) for rows, k, seed, spherical in kept]
        iterations = np.array([used for _, used in free])
        total_free = sum(error for error, _ in free)
        capped = [sum(squared_error(rows, k, cap, seed, spherical)[0] for rows, k, seed, spherical in kept) for cap in caps]
        ratios = [f"{error / total_free:.4f}x" if total_free > 0 else "exact" for error in capped]
        print(f"| {k} | {len(kept)} | {iterations.mean():.1f} / {np.median(iterations):.0f} / "
              f"{np.percentile(iterations, 90):.0f} | " + " | ".join(ratios) + " |")


if __name__ == "__main__":
    main()
