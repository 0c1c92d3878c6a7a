"""The resumable-experiment helpers: which run folders count as done, resumed or stale; bytes per client."""

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fedras_flwr.config import ConfigError, RunConfig
from fedras_flwr.tooling import experiments
from fedras_flwr.tooling.experiments import (
    StaleRun,
    bytes_per_client,
    calibrated_budget,
    default_out_refusal,
    invocation,
    planned_run,
    run_commits,
    run_many,
)


def test_a_run_folder_is_new_done_stopped_or_stale(tmp_path, monkeypatch):
    cfg = RunConfig(num_server_rounds=4, out_dir=str(tmp_path / "run"))
    assert planned_run(cfg) == (cfg, None)  # new: run it as asked
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "round-2.npz").write_bytes(b"x")
    checked = []
    monkeypatch.setattr(experiments, "find_resume_point", checked.append)  # the checkpoint's own check passes
    resumed, summary = planned_run(cfg)  # stopped midway: resume from its checkpoints
    assert summary is None and resumed.resume == str(tmp_path / "run") and checked == [resumed]
    finished = {"config": {**cfg.to_flat(), "data-dir": "/elsewhere"}, "final": {}}
    (tmp_path / "run" / "summary.json").write_text(json.dumps(finished))
    assert planned_run(cfg) == (cfg, finished)  # done (the data folder may differ)
    assert not (tmp_path / "run" / "commits.txt").exists()  # planning stamps nothing: run_many does, as a run starts
    with pytest.raises(StaleRun, match=r"holds a run made with other settings \(lr, num-server-rounds\)"):
        planned_run(cfg.replace(num_server_rounds=6, lr=2.0))
    with pytest.raises(StaleRun, match=r"\(num-server-rounds\)"):
        planned_run(cfg.replace(num_server_rounds=3))  # fewer rounds: not that run's results
    longer, summary = planned_run(cfg.replace(num_server_rounds=6))  # more: it goes on
    assert summary is None and longer.resume == str(tmp_path / "run") and longer.num_server_rounds == 6


def test_a_run_is_stamped_with_the_commands_commit_when_it_starts(tmp_path):
    first = RunConfig(num_server_rounds=1, clients_per_round=4, eval_every=1, out_dir=str(tmp_path / "run"))
    list(run_many([planned_run(first)[0]], 1, "abc123"))
    longer, summary = planned_run(first.replace(num_server_rounds=2))  # more rounds: it goes on from its checkpoint
    assert summary is None and longer.resume
    list(run_many([longer], 1, "def456"))
    assert run_commits([tmp_path / "run"]) == ["abc123", "def456"]
    failing = RunConfig(dataset="ml-100k", data_dir=str(tmp_path / "no-such-folder"), out_dir=str(tmp_path / "failed"))
    with pytest.raises(Exception, match="no-such-folder"):
        list(run_many([failing], 1, "beef00"))
    assert run_commits([tmp_path / "failed"]) == ["beef00"]  # stamped before it ran, so a failed run has its commit
    unstamped = RunConfig(num_server_rounds=1, clients_per_round=4, out_dir=str(tmp_path / "unstamped"))
    list(run_many([unstamped], 1))
    assert not (tmp_path / "unstamped" / "commits.txt").exists() and (tmp_path / "unstamped" / "summary.json").is_file()


def test_bytes_per_client_count_the_uploads_and_downloads_that_happened(tmp_path):
    records = [{"round": 1, "uploads": 10, "down-users": 10}, {"round": 2, "uploads": 6, "down-users": 8}]
    (tmp_path / "rounds.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    summary = {"total-up-bytes": 1600, "total-down-bytes": 9000, "total-eval-down-bytes": 1800}
    assert bytes_per_client(tmp_path, summary) == (100.0, 400.0)  # 1600 / 16 uploads, 7200 / 18 downloads


def test_a_dataset_without_a_calibrated_budget_is_refused():
    assert set(calibrated_budget("ml-100k", "mf")) == {"num-server-rounds", "clients-per-round", "lr"}
    with pytest.raises(ValueError, match="ml-1m with mf has no calibrated num-server-rounds, clients-per-round, lr"):
        calibrated_budget("ml-1m", "mf")


def test_a_stopped_run_of_other_settings_is_refused_before_anything_runs(tmp_path, monkeypatch):
    cfg = RunConfig(out_dir=str(tmp_path / "run"))
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "round-2.npz").write_bytes(b"x")

    def differs(cfg):
        raise ConfigError("resume: the run config differs from the checkpoint's (lr: 0.0 -> 2.0)")

    monkeypatch.setattr(experiments, "find_resume_point", differs)
    with pytest.raises(StaleRun, match=r"holds a stopped run that cannot go on as asked \(resume: the run config differs"):
        planned_run(cfg)
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "run").rglob("*")) == [
        Path("run/checkpoints"), Path("run/checkpoints/round-2.npz")]  # nothing written


def _descendants(pid: int) -> list[int]:
    children = [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return children + [grandchild for child in children for grandchild in _descendants(child)]


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def _endless_command(tmp_path):
    """An experiment command running one endless run in a pool worker: (the command, its worker processes).
    Whatever is left of it is killed on the way out."""
    endless = RunConfig(num_server_rounds=100_000, clients_per_round=4, out_dir=str(tmp_path / "run"))
    script = (f"from fedras_flwr.config import RunConfig; from fedras_flwr.tooling.experiments import run_many; "
              f"list(run_many([RunConfig.from_flat({endless.to_flat()!r})], 1))")
    command = subprocess.Popen([sys.executable, "-c", script], start_new_session=True, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "run" / "rounds.jsonl").is_file():  # the worker is training
            assert command.poll() is None and time.monotonic() < deadline, "the run did not start"
            time.sleep(0.2)
        workers = _descendants(command.pid)
        assert workers
        yield command, workers
    finally:
        try:
            os.killpg(command.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        command.communicate()


linux_proc = pytest.mark.skipif(not Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").is_file(),
                                reason="reads the process tree from Linux's /proc")


@linux_proc
def test_stopping_the_command_stops_its_workers(tmp_path):
    """SIGTERM to the command alone (not its process group) must not leave a worker writing a run folder."""
    with _endless_command(tmp_path) as (command, workers):
        os.kill(command.pid, signal.SIGTERM)
        assert command.wait(timeout=30) != 0
        deadline = time.monotonic() + 30
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(pid) for pid in workers), "a worker outlived its command"


@linux_proc
def test_a_worker_that_dies_fails_the_command_instead_of_hanging(tmp_path):
    with _endless_command(tmp_path) as (command, workers):
        os.kill(workers[0], signal.SIGKILL)  # as the out-of-memory killer would
        _, stderr = command.communicate(timeout=30)
        assert command.returncode != 0 and "BrokenProcessPool" in stderr


def test_the_commit_stamp_marks_code_changes_but_not_the_commands_own_results(tmp_path):
    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    for name, text in [("results/table.md", "old\n"), ("README.md", "old\n"), ("fedras_flwr/code.py", "x = 1\n"),
                       ("pyproject.toml", "[project]\n")]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "first")
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    (tmp_path / "results" / "table.md").write_text("rewritten by a resumed command\n")
    (tmp_path / "README.md").write_text("its tables rendered again\n")
    (tmp_path / "fedras_flwr" / "untracked.py").write_text("y = 2\n")
    assert experiments.git_commit(tmp_path) == head
    (tmp_path / "fedras_flwr" / "code.py").write_text("x = 2\n")
    assert experiments.git_commit(tmp_path) == f"{head} (with uncommitted changes)"
    git("checkout", "fedras_flwr/code.py")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    assert experiments.git_commit(tmp_path) == f"{head} (with uncommitted changes)"


def test_the_recorded_command_names_the_thread_settings_it_ran_with(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    assert invocation("grid.py", ["--data-dir", "a b"]) == "python scripts/grid.py --data-dir 'a b'"
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    assert invocation("grid.py", []) == "OPENBLAS_NUM_THREADS=1 python scripts/grid.py"


def test_a_part_of_a_matrix_is_refused_in_the_default_folder(tmp_path, monkeypatch):
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", default="a,b")
    parser.add_argument("--set", nargs="*", default=[])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", default=str(tmp_path / "results" / "matrix"))

    def reason(*argv: str) -> str:
        return default_out_refusal(parser, parser.parse_args(argv), ("datasets", "set"))

    assert reason() == reason("--jobs", "1") == reason("--datasets", "a,b") == ""  # the whole matrix
    assert reason("--datasets", "a", "--out", str(tmp_path / "mine")) == ""  # a part in a folder of its own
    assert reason("--datasets", "a").startswith("a selection other than the whole matrix (--datasets) would overwrite")
    monkeypatch.chdir(tmp_path)  # the default folder spelled another way is the same folder
    assert "(--datasets --set)" in reason("--datasets", "a", "--set", "run.lr=1", "--out", "results/matrix")
