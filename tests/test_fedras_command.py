"""The `fedras` command: a bad key, value or dataset fails in seconds with one line and exit code 2; a good
run streams its progress, prints the final metrics and leaves no process behind. The ServerApp refuses
the same bad input before round 1."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from flwr.common import Context, RecordDict

from fedras_flwr.config import RunConfig
from fedras_flwr.flower.server_app import RunNotStarted, make_server_app
from fedras_flwr.tooling.flower_run import _sigterm_as_interrupt, process_table

FLOWER_VARIABLES = ("FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION", "FLWR_TELEMETRY_ENABLED", "FLWR_DISABLE_UPDATE_CHECK")


def fedras(*args: str, cwd: Path, timeout: float = 300) -> tuple[subprocess.CompletedProcess, float]:
    """`fedras ...` as a newcomer runs it: none of Flower's variables set."""
    env = {k: v for k, v in os.environ.items() if k not in FLOWER_VARIABLES}
    begin = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "fedras_flwr.tooling.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    return done, time.monotonic() - begin


@pytest.mark.parametrize("args, message", [
    (["num-server-round=3"], "fedras: unknown run-config key 'num-server-round': did you mean 'num-server-rounds'?"),
    (["num-server-rounds=three"], "fedras: run-config key 'num-server-rounds' must be int, got 'three'"),
    (["dataset=ml-100k", "data-dir=/nonexistent"], "fedras: ml-100k: data-dir '/nonexistent' does not exist"),
])
def test_bad_input_fails_fast_in_one_line_with_exit_code_2(args, message, tmp_path):
    done, seconds = fedras("run", *args, cwd=tmp_path)
    assert done.returncode == 2 and seconds < 10
    assert done.stderr.startswith(message) and done.stderr.count("\n") == 1 and done.stdout == ""


FLOWER_PROCESSES = ("flower-superlink", "flower-superexec", "flwr-simulation", "raylet", "gcs_server", "ray::")


def flower_processes() -> set[int]:
    return {pid for pid, (_, command) in process_table().items() if any(name in command for name in FLOWER_PROCESSES)}


def test_a_run_prints_its_final_metrics_and_stops_what_it_started(tmp_path):
    before = flower_processes()
    done, _ = fedras("run", "num-server-rounds=2", "eval-every=1", "synthetic-users=40", "synthetic-items=150",
                     "synthetic-mean-interactions=15", "clients-per-round=10", "out-dir=run", cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("fedras: finished: HR@10 ") and f"results in {tmp_path / 'run'}" in last
    assert "round 2/2" in done.stdout and "History" not in done.stdout  # quiet: no Flower history dump
    assert (tmp_path / "run" / "summary.json").is_file()
    assert flower_processes() - before == set()  # SuperLink, SuperExec, simulation and Ray: all stopped


def test_the_server_app_refuses_bad_data_before_round_1(tmp_path):
    cfg = RunConfig(dataset="ml-100k", data_dir=str(tmp_path / "missing"), out_dir=str(tmp_path / "out"))
    context = Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={})
    with pytest.raises(RunNotStarted) as refused:
        make_server_app(cfg)._server_fn(context)
    assert "does not exist" in str(refused.value) and "\n" not in str(refused.value)
    assert refused.value.__suppress_context__  # the DatasetError's own traceback is not chained to it


def test_a_run_past_its_timeout_is_stopped_whole(tmp_path):
    """Past --timeout the run fails (exit 1) and its ServerApp does not go on training behind our back."""
    before = flower_processes()
    done, _ = fedras("run", "--timeout", "15", "num-server-rounds=5000", "eval-every=5000", "synthetic-users=40",
                     "synthetic-items=150", "synthetic-mean-interactions=15", "clients-per-round=10", "out-dir=run",
                     cwd=tmp_path)
    assert done.returncode == 1 and "took longer than 15 s" in done.stderr
    assert flower_processes() - before == set()
    rounds = tmp_path / "run" / "rounds.jsonl"
    written = rounds.read_text() if rounds.exists() else ""
    time.sleep(3)
    assert (rounds.read_text() if rounds.exists() else "") == written


def test_fedras_sweep_composes_its_hydra_config(tmp_path):
    done, _ = fedras("sweep", "--cfg", "job", "codec=dense", "run.num-server-rounds=3", cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "codec: dense" in done.stdout and "num-server-rounds: 3" in done.stdout


def test_deploy_local_refuses_bad_data_before_starting_anything(tmp_path):
    done, seconds = fedras("deploy-local", "--nodes", "2", "--work-dir", str(tmp_path / "work"),
                           "--run-config", "dataset=ml-100k data-dir=/nonexistent", cwd=tmp_path, timeout=60)
    assert done.returncode == 2 and seconds < 10 and "data-dir '/nonexistent' does not exist" in done.stderr
    assert not (tmp_path / "work" / "credentials").exists()


def test_kill_interrupts_a_run_unless_the_program_handles_it_itself():
    """Every caller of run_to_completion (fedras run, the sweep's jobs) gets `kill` as an interrupt, so its
    SuperLink is stopped on the way out; a program with its own SIGTERM handler keeps it."""
    original = signal.signal(signal.SIGTERM, signal.SIG_DFL)  # earlier tests' ray.init may have set its own
    calls = []
    try:
        with pytest.raises(KeyboardInterrupt), _sigterm_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler runs before this returns
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        signal.signal(signal.SIGTERM, lambda *_: calls.append("own"))
        with _sigterm_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.1)
        assert calls == ["own"]
    finally:
        signal.signal(signal.SIGTERM, original)
