"""Performance benchmark: per-client costs, simulation throughput through Flower vs the plain in-process
loop, and peak memory, on the default dataset, ML-100K, an ML-1M-sized synthetic set and a large synthetic
set. Prints one JSON object (and writes it with --out).

    python scripts/bench.py [--quick] [--out bench.json] [--data-dir /path/to/ml-100k] [--supernodes 2]

Every run (scenario x runner) happens in a fresh child process, so Ray starts and stops per run and the
peak RSS is that run's alone: the parent samples the RSS of the child's whole process tree (Ray's GCS,
raylet and ClientApp actors included) from /proc. Round times come from the progress line both runners
log when a round ends (results.RunRecorder), so Flower and the in-process loop are timed at the same
point. Round 1 (first ClientApp imports and data loading in every Ray actor) and the last round (the only
one that evaluates, on every user) are left out of the steady-state training figures and reported apart.
The per-client phases are timed after the in-process run, in its child, from the building blocks both
runners call. --quick runs fewer rounds and, for the large set, Flower only (the phases in a child of
their own): evaluating its 50,000 users takes ~20 s per runner.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import faiss
import flwr
import numpy as np
import torch
from flwr.simulation import run_simulation

from fedras_flwr.algorithm.data import load_split
from fedras_flwr.algorithm.data.split import NegativeSampler
from fedras_flwr.algorithm.round_messages import UserUpload
from fedras_flwr.algorithm.server import FederatedServer
from fedras_flwr.algorithm.training import train_user
from fedras_flwr.algorithm.user_round import UserWorker
from fedras_flwr.algorithm.user_state import MemoryUserStore, state_key
from fedras_flwr.codecs import ItemUpdate
from fedras_flwr.config import RunConfig
from fedras_flwr.flower.client_app import make_client_app
from fedras_flwr.flower.server_app import make_server_app
from fedras_flwr.tooling.inprocess import run_inprocess

REPO = Path(__file__).resolve().parents[1]
GIB = 1 << 30
CHILD_ENV = {
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    # Ray lowers its workers' priority to nice 15 by default: on a machine shared with other jobs the
    # ClientApp actors then starve while the in-process loop (nice 0) does not. Same priority for both.
    "RAY_worker_niceness": "0",
}


@dataclass(frozen=True)
class Scenario:
    """One dataset at one federation size; `overrides` are run-config keys (hyphenated)."""

    name: str
    overrides: dict[str, Any]
    rounds: int
    quick_rounds: int
    quick_inprocess: bool = True  # False: --quick runs this one through Flower only

    def config(self, quick: bool, out_dir: str) -> dict[str, Any]:
        rounds = self.quick_rounds if quick else self.rounds
        # evaluation only after the last round: every other round is pure training
        return {**self.overrides, "num-server-rounds": rounds, "eval-every": rounds, "out-dir": out_dir}


def scenarios(ml100k_dir: str) -> list[Scenario]:
    return [
        Scenario("default", {}, rounds=20, quick_rounds=5),
        Scenario("ml-100k", {"dataset": "ml-100k", "data-dir": ml100k_dir, "clients-per-round": 100}, 20, 5),
        Scenario(
            "ml1m",  # ML-1M's shape: 6,040 users x 3,706 items, ~1M interactions
            {"synthetic-users": 6040, "synthetic-items": 3706, "synthetic-mean-interactions": 165, "clients-per-round": 60},
            rounds=20, quick_rounds=5,
        ),
        Scenario(
            "large",
            {"synthetic-users": 50_000, "synthetic-items": 20_000, "synthetic-mean-interactions": 40, "clients-per-round": 500},
            rounds=10, quick_rounds=4, quick_inprocess=False,  # evaluating 50,000 users takes ~20 s per runner
        ),
    ]


# -- what the machine is ------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
        platform.processor(),
    )
    mem_kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
    return {
        "cpu-count": os.cpu_count(),
        "cpu-model": model,
        "ram-gb": round(mem_kib * 1024 / GIB, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "flwr": flwr.__version__,
        "numpy": np.__version__,
        "faiss": faiss.__version__,
    }


def load() -> dict[str, Any]:
    """Other jobs share this machine: the load average says how much the figures can be trusted."""
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    return {"uptime": uptime, "loadavg": [round(x, 2) for x in os.getloadavg()]}


def find_ml100k(data_dir: str) -> str | None:
    """The folder holding u.data: --data-dir, else $FEDRAS_DATA_DIR, else ../shared/data (as the tests)."""
    for base in (data_dir, os.environ.get("FEDRAS_DATA_DIR", ""), str(REPO.parent / "shared" / "data")):
        for folder in (Path(base), Path(base) / "ml-100k") if base else ():
            if (folder / "u.data").is_file():
                return str(folder.resolve())
    return None


# -- peak memory of a process tree --------------------------------------------------------------------
def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                # the command name (field 2) may hold spaces: ppid is the 2nd field after its ')'
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def tree_rss_bytes(root: int) -> int:
    """Sum of VmRSS over `root` and all its descendants (shared pages counted in each: an upper bound)."""
    tree, total, todo = _children(), 0, [root]
    while todo:
        pid = todo.pop()
        todo += tree.get(pid, [])
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        total += next((int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return total


class PeakRss:
    """Samples the RSS of a process tree in a background thread until stopped."""

    def __init__(self, root: int, interval: float = 0.2) -> None:
        self.root, self.interval, self.peak = root, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss_bytes(self.root))
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# -- round timing (in the child) ----------------------------------------------------------------------
class RoundClock(logging.Handler):
    """Wall time of the progress lines the server logs when it starts recording and after every round."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.started: float | None = None
        self.round_ends: list[float] = []
        self._level = logging.NOTSET

    def emit(self, record: logging.LogRecord) -> None:
        if str(record.msg).startswith("fedras-flwr: writing results"):
            self.started = record.created
        elif str(record.msg).startswith("round "):
            self.round_ends.append(record.created)

    def __enter__(self) -> "RoundClock":
        logger = logging.getLogger("fedras_flwr")
        self._level = logger.level
        logger.addHandler(self)  # before the ServerApp adds its own console handler, which it then skips
        logger.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc: object) -> None:
        logger = logging.getLogger("fedras_flwr")
        logger.removeHandler(self)
        logger.setLevel(self._level)

    def round_seconds(self) -> list[float]:
        if self.started is None or not self.round_ends:
            raise RuntimeError("the run logged no rounds")
        return list(np.diff([self.started, *self.round_ends]))


def throughput(round_seconds: Sequence[float], clients_per_round: int) -> dict[str, Any]:
    """Steady-state training figures from rounds 2 .. N-1, plus the first and last round apart."""
    steady = list(round_seconds[1:-1])
    median = statistics.median(steady)
    mean = statistics.fmean(steady)
    return {
        "train-rounds": len(steady),
        "train-round-s-median": median,
        "train-round-s-mean": mean,
        "train-round-s-max": max(steady),
        "rounds-per-s": 1.0 / median,
        "rounds-per-s-mean": 1.0 / mean,
        "client-updates-per-s": clients_per_round / median,
        "first-round-s": round_seconds[0],
        "last-round-with-eval-s": round_seconds[-1],
    }


def run_flower(cfg: RunConfig, supernodes: int) -> None:
    logging.getLogger("flwr").setLevel(logging.WARNING)
    run_simulation(
        server_app=make_server_app(cfg),
        client_app=make_client_app(cfg),
        num_supernodes=supernodes,
        backend_config={
            "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
            # no num_cpus: Ray counts the cores itself, and refuses the argument when RAY_ADDRESS joins a cluster
            "init_args": {"logging_level": logging.WARNING, "log_to_driver": False},
        },
    )


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """One run in this (child) process: rounds through `runner` (none: skip), then, when asked for, the
    per-client phase costs (with the data this process already loaded)."""
    cfg = RunConfig.from_flat(spec["config"])
    result: dict[str, Any] = {}
    if spec["runner"]:
        begin = time.time()
        with RoundClock() as clock:
            if spec["runner"] == "flower":
                run_flower(cfg, spec["supernodes"])
            else:
                run_inprocess(cfg)
        seconds = clock.round_seconds()
        if len(seconds) != cfg.num_server_rounds:
            raise RuntimeError(f"{len(seconds)} of {cfg.num_server_rounds} rounds finished")
        summary = json.loads((Path(cfg.out_dir) / "summary.json").read_text())
        result = {
            **throughput(seconds, cfg.clients_per_round),
            "wall-s": time.time() - begin,
            "startup-s": clock.started - begin,  # data, Ray start and node discovery before round 1
            "final-hr@10": summary["final"].get("hr@10"),
            "num-users": summary["num-users"],
            "num-items": summary["num-items"],
        }
    if spec["phase-rounds"]:
        result["phases"] = measure_phases(cfg, spec["phase-rounds"])
    return result


# -- per-client costs (in the child) ------------------------------------------------------------------
class TimedCodec:
    """Wraps a codec and adds up the wall and CPU seconds its encode / decode calls take."""

    def __init__(self, codec: Any) -> None:
        self.codec = codec
        self.seconds = {"encode": 0.0, "decode": 0.0}
        self.cpu_seconds = {"encode": 0.0, "decode": 0.0}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.codec, name)

    def _timed(self, name: str, call: Callable[[], Any]) -> Any:
        begin, begin_cpu = time.perf_counter(), time.process_time()
        result = call()
        self.seconds[name] += time.perf_counter() - begin
        self.cpu_seconds[name] += time.process_time() - begin_cpu
        return result

    def encode(self, *args: Any, **kwargs: Any) -> list[np.ndarray]:
        return self._timed("encode", lambda: self.codec.encode(*args, **kwargs))

    def decode(self, *args: Any, **kwargs: Any) -> Any:
        return self._timed("decode", lambda: self.codec.decode(*args, **kwargs))


def measure_phases(cfg: RunConfig, rounds: int) -> dict[str, Any]:
    """Mean milliseconds per client of local training, encoding, server decoding and aggregation, from
    the building blocks the runners call (train_user, the codec, FederatedServer.aggregate)."""
    split = load_split(cfg)  # already loaded when the run came first (`startup-s` of the run covers it)
    server, worker, store = FederatedServer(cfg, split.num_items, range(split.num_users)), UserWorker(cfg, split), MemoryUserStore()
    server.codec = server.validator.codec = server_codec = TimedCodec(server.codec)
    client_codec = TimedCodec(worker.codec)
    train_s, train_cpu_s, aggregate_s, clients = 0.0, 0.0, 0.0, 0
    for server_round in range(1, rounds + 1):
        updates = []
        for user in server.sample_users(server_round):
            data, vector = split.users[user], worker.user_vector(store, user)
            sampler = NegativeSampler(data, split.num_items)
            tick, tick_cpu = time.perf_counter(), time.process_time()
            result = train_user(
                worker.backbone, cfg, data, sampler, vector, server.item_table, server.dense, server_round,
                client_codec.update_basis(server_round),
            )
            train_s += time.perf_counter() - tick
            train_cpu_s += time.process_time() - tick_cpu
            store.put(state_key(user, "vector"), result.user_vector)
            payload = client_codec.encode(ItemUpdate(result.touched, result.delta), server_round)
            weights = worker.weights_codec.encode(result.dense, server.dense)
            updates.append(UserUpload(user, payload, weights, result.num_examples, result.train_loss, 0.0))
        tick = time.perf_counter()
        server.aggregate(updates, server_round)
        aggregate_s += time.perf_counter() - tick
        clients += len(updates)
    per_client = {
        "train": train_s,
        "encode": client_codec.seconds["encode"],
        "server-decode": server_codec.seconds["decode"],
        "aggregate": aggregate_s - server_codec.seconds["decode"],
    }
    cpu = {"train": train_cpu_s, "encode": client_codec.cpu_seconds["encode"]}
    return {
        "per-client-ms": {key: 1000.0 * value / clients for key, value in per_client.items()},
        # CPU time of the same calls: less sensitive to other jobs on the machine than wall time
        "per-client-cpu-ms": {key: 1000.0 * value / clients for key, value in cpu.items()},
        "encode-share": per_client["encode"] / per_client["train"],
        "clients-measured": clients,
        "num-users": split.num_users,
        "num-items": split.num_items,
        "num-train-interactions": split.num_train_interactions,
    }


# -- the parent: one child per (scenario, runner) -----------------------------------------------------
def spawn(spec: dict[str, Any]) -> dict[str, Any]:
    """Run `spec` in a fresh interpreter and sample its process tree's RSS meanwhile."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    env = {**os.environ, **CHILD_ENV, "PYTHONPATH": str(REPO)}
    before = load()
    with tempfile.TemporaryFile("w+") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
        with PeakRss(process.pid) as rss:
            _, errors = process.communicate()
        out.seek(0)
        lines = out.read().strip().splitlines()
    if process.returncode != 0 or not lines:
        tail = "\n".join(errors.strip().splitlines()[-15:])
        raise RuntimeError(f"{spec['runner']} run failed (exit {process.returncode}):\n{tail}")
    return {**json.loads(lines[-1]), "peak-rss-gb": rss.peak / GIB, "load-before": before["loadavg"], "load-after": load()["loadavg"]}


def run_flwr(config: dict[str, Any], supernodes: int) -> dict[str, Any]:
    """The `flwr run` path, as users start it: `fedras run` (a SuperLink of its own, the simulation runtime in
    its own process). Round times from the wall-time the recorder writes with each round in rounds.jsonl."""
    overrides = [f"{key}={value}" for key, value in config.items()]
    command = [sys.executable, "-m", "fedras_flwr.tooling.cli", "run", "--supernodes", str(supernodes), *overrides]
    env = {**os.environ, **CHILD_ENV, "PYTHONPATH": str(REPO)}
    begin, before = time.time(), load()
    with tempfile.TemporaryFile("w+") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO)
        process.wait()  # no peak RSS here: the simulation runtime is not below this process
        out.seek(0)
        output = out.read()
    if process.returncode != 0:
        raise RuntimeError(f"flwr run failed (exit {process.returncode}):\n" + "\n".join(output.splitlines()[-15:]))
    records = [json.loads(line) for line in (Path(config["out-dir"]) / "rounds.jsonl").read_text().splitlines()]
    ends = [0.0, *(float(record["wall-time"]) for record in records)]
    summary = json.loads((Path(config["out-dir"]) / "summary.json").read_text())
    return {
        **throughput([float(step) for step in np.diff(ends)], config.get("clients-per-round", RunConfig().clients_per_round)),
        "wall-s": time.time() - begin,  # with the SuperLink's start and stop
        "final-hr@10": summary["final"].get("hr@10"),
        "load-before": before["loadavg"], "load-after": load()["loadavg"],
    }


def bench_scenario(scenario: Scenario, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Flower and in-process runs of one scenario; per-client phases measured in the in-process child."""
    log = lambda message: print(f"[bench] {scenario.name}: {message}", file=sys.stderr, flush=True)  # noqa: E731
    out: dict[str, Any] = {"config": scenario.config(args.quick, "")}
    inprocess = scenario.quick_inprocess or not args.quick
    for runner in ("inprocess" if inprocess else None, "flower"):
        name = runner or "phases"
        log(f"{name} ...")
        spec = {
            "runner": runner, "config": scenario.config(args.quick, str(work / scenario.name / name)),
            "supernodes": args.supernodes, "phase-rounds": 0 if runner == "flower" else 1 if args.quick else 3,
        }
        result = spawn(spec)
        out["phases"] = result.pop("phases", out.get("phases"))
        if runner:
            out[runner] = result
        log(f"{name} done: " + ", ".join(f"{k}={v:.3g}" for k, v in result.items() if isinstance(v, float)))
    if inprocess:  # the same rounds through `flwr run` (skipped where --quick skips the in-process run)
        log("flwr-run ...")
        out["flwr-run"] = run_flwr(scenario.config(args.quick, str(work / scenario.name / "flwr-run")), args.supernodes)
        log("flwr-run done: " + ", ".join(f"{k}={v:.3g}" for k, v in out["flwr-run"].items() if isinstance(v, float)))
    out["supernodes"] = args.supernodes
    out["ray-worker-niceness"] = int(CHILD_ENV["RAY_worker_niceness"])
    out["encode-share"] = out["phases"]["encode-share"]
    for runner in ("flower", "flwr-run"):
        out[f"{runner}-vs-inprocess-ratio"] = (
            out[runner]["train-round-s-median"] / out["inprocess"]["train-round-s-median"] if inprocess else None
        )
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (same keys), a few minutes in all")
    parser.add_argument("--out", help="also write the JSON to this file")
    parser.add_argument("--data-dir", default="", help="folder with ML-100K's u.data (or its parent)")
    parser.add_argument("--supernodes", type=int, default=os.cpu_count() or 2, help="simulated SuperNodes (default: cores)")
    parser.add_argument("--only", default="", help="comma-separated scenario names to run (default: all)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return

    ml100k = find_ml100k(args.data_dir)
    report: dict[str, Any] = {"machine": machine(), "quick": args.quick, "load-at-start": load(), "scenarios": {}}
    chosen = set(args.only.split(",")) if args.only else None
    with tempfile.TemporaryDirectory(prefix="fedras-bench-") as work:
        for scenario in scenarios(ml100k or ""):
            if chosen and scenario.name not in chosen:
                continue
            if scenario.name == "ml-100k" and ml100k is None:
                report["scenarios"][scenario.name] = {
                    "skipped": "ML-100K not found: pass --data-dir or set FEDRAS_DATA_DIR to the folder with u.data"
                }
                continue
            report["scenarios"][scenario.name] = bench_scenario(scenario, args, Path(work))
    report["load-at-end"] = load()
    report.update(headline(report["scenarios"]))
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


def headline(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The issue's four figures and whether each meets its target (None when its scenario did not run)."""

    def pick(scenario: str, *path: str) -> float | None:
        value: Any = results.get(scenario, {})
        for key in path:
            value = value.get(key, {}) if isinstance(value, dict) else {}
        return value if isinstance(value, float) else None

    figures = {
        "flower-vs-inprocess-ratio": pick("ml-100k", "flower-vs-inprocess-ratio"),
        "ml1m-flower-vs-inprocess-ratio": pick("ml1m", "flower-vs-inprocess-ratio"),
        "flwr-run-vs-inprocess-ratio": pick("ml-100k", "flwr-run-vs-inprocess-ratio"),
        "encode-share": pick("ml-100k", "encode-share"),
        "ml1m-rounds-per-s": pick("ml1m", "flower", "rounds-per-s"),
        "large-peak-rss-gb": pick("large", "flower", "peak-rss-gb"),
    }
    limits = {
        "flower-vs-inprocess-ratio": ("<=", 1.5),
        "ml1m-flower-vs-inprocess-ratio": ("<=", 1.5),
        "flwr-run-vs-inprocess-ratio": ("<=", 1.5),
        "encode-share": ("<=", 0.4),
        "ml1m-rounds-per-s": (">=", 1.0),
        "large-peak-rss-gb": ("<=", 8.0),
    }
    targets = {
        f"{key} {op} {limit}": None if figures[key] is None else bool(figures[key] <= limit if op == "<=" else figures[key] >= limit)
        for key, (op, limit) in limits.items()
    }
    return {**figures, "targets-met": targets}


if __name__ == "__main__":
    main()
