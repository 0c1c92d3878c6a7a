"""scripts/bench.py's building blocks on tiny data (not timed): the figures exist and are positive and finite."""

import importlib.util
import math
import os
import sys

import pytest
from conftest import REPO, tiny_config

spec = importlib.util.spec_from_file_location("bench", REPO / "scripts" / "bench.py")
bench = sys.modules["bench"] = importlib.util.module_from_spec(spec)  # dataclasses look their module up
spec.loader.exec_module(bench)


def positive_numbers(mapping):
    return all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in mapping.values())


def test_per_client_phases(tmp_path):
    cfg = tiny_config(tmp_path, codec="fedras", num_actions=4)
    phases = bench.child({"runner": None, "config": cfg.to_flat(), "phase-rounds": 2})["phases"]
    assert set(phases["per-client-ms"]) == {"train", "encode", "server-decode", "aggregate"}
    assert positive_numbers(phases["per-client-ms"]) and positive_numbers(phases["per-client-cpu-ms"])
    assert phases["clients-measured"] == 2 * cfg.clients_per_round and phases["encode-share"] > 0


def test_inprocess_rounds_are_timed_from_the_progress_log(tmp_path):
    cfg = tiny_config(tmp_path, num_server_rounds=4, eval_every=4)
    result = bench.child({"runner": "inprocess", "config": cfg.to_flat(), "phase-rounds": 1})
    assert result["train-rounds"] == 2 and result["num-users"] == cfg.synthetic_users
    assert result["phases"]["clients-measured"] == cfg.clients_per_round
    timing = {k: v for k, v in result.items() if k.endswith(("-s", "-per-s", "-s-median", "-s-mean", "-s-max"))}
    assert len(timing) >= 8 and positive_numbers(timing)


def test_the_flwr_run_path_is_timed_from_its_rounds_file(tmp_path):
    config = {**tiny_config(tmp_path).to_flat(), "num-server-rounds": 4, "eval-every": 4, "out-dir": str(tmp_path / "run")}
    result = bench.run_flwr({key: config[key] for key in ("num-server-rounds", "eval-every", "out-dir", "synthetic-users",
                                                          "synthetic-items", "clients-per-round")}, supernodes=2)
    assert result["train-rounds"] == 2 and 0 < result["train-round-s-median"] < result["wall-s"]
    assert 0 <= result["final-hr@10"] <= 1


def test_throughput_leaves_out_the_first_and_last_round():
    figures = bench.throughput([9.0, 1.0, 3.0, 2.0, 7.0], clients_per_round=10)
    assert figures["train-round-s-median"] == 2.0 and figures["rounds-per-s"] == 0.5
    assert figures["client-updates-per-s"] == 5.0 and figures["first-round-s"] == 9.0
    assert figures["last-round-with-eval-s"] == 7.0 and figures["train-round-s-max"] == 3.0


def test_process_tree_memory_and_machine():
    assert bench.tree_rss_bytes(os.getpid()) > 10 << 20
    with bench.PeakRss(os.getpid(), interval=0.01) as rss:
        pass
    assert rss.peak > 0
    machine = bench.machine()
    assert machine["cpu-count"] >= 1 and machine["ram-gb"] > 0 and machine["flwr"].startswith("1.")


def test_ml100k_is_looked_for_and_its_absence_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDRAS_DATA_DIR", "")
    monkeypatch.setattr(bench, "REPO", tmp_path / "checkout")
    assert bench.find_ml100k(str(tmp_path)) is None
    (tmp_path / "ml-100k").mkdir()
    (tmp_path / "ml-100k" / "u.data").write_text("1\t1\t5\t0\n")
    assert bench.find_ml100k(str(tmp_path)) == str(tmp_path / "ml-100k")


def test_headline_reports_missing_scenarios_as_null():
    results = {
        "ml-100k": {"skipped": "ML-100K not found"},
        "ml1m": {"flower": {"rounds-per-s": 1.25}, "flower-vs-inprocess-ratio": 1.2},
        "large": {"flower": {"peak-rss-gb": 9.0}},
    }
    head = bench.headline(results)
    assert head["flower-vs-inprocess-ratio"] is None and head["encode-share"] is None
    assert head["targets-met"] == {
        "flower-vs-inprocess-ratio <= 1.5": None,
        "ml1m-flower-vs-inprocess-ratio <= 1.5": True,
        "flwr-run-vs-inprocess-ratio <= 1.5": None,
        "encode-share <= 0.4": None,
        "ml1m-rounds-per-s >= 1.0": True,
        "large-peak-rss-gb <= 8.0": False,
    }


@pytest.mark.parametrize("quick", [True, False])
def test_scenarios_cover_the_issue(quick):
    by_name = {s.name: s for s in bench.scenarios("/data/ml-100k")}
    assert set(by_name) == {"default", "ml-100k", "ml1m", "large"}
    large = by_name["large"].config(quick, "/tmp/x")
    assert large["synthetic-users"] >= 50_000 and large["synthetic-items"] >= 20_000
    assert large["eval-every"] == large["num-server-rounds"] >= 4
    assert by_name["ml1m"].config(quick, "")["clients-per-round"] == 60
    assert by_name["ml-100k"].config(quick, "")["clients-per-round"] == 100
