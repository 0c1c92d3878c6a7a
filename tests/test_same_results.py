"""scripts/same_results.py, the behaviour check of refactors: same config -> identical, another seed -> not."""

import importlib.util
import sys

from conftest import REPO, tiny_config

from fedras_flwr.tooling.inprocess import run_inprocess

spec = importlib.util.spec_from_file_location("same_results", REPO / "scripts" / "same_results.py")
same_results = sys.modules["same_results"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(same_results)


def test_identical_runs_pass_and_a_changed_run_is_named(tmp_path, capsys):
    for side, seed in (("first", 0), ("second", 0), ("third", 1)):
        run_inprocess(tiny_config(tmp_path / side, num_server_rounds=2, eval_every=2, seed=seed))
    assert same_results.main([str(tmp_path / "first"), str(tmp_path / "second")]) == 0
    assert "out: 2 round records" in capsys.readouterr().out
    assert same_results.main([str(tmp_path / "first"), str(tmp_path / "third")]) == 1
    assert "DIFFERENT" in capsys.readouterr().out
