"""The experiment scripts run on today's code (tiny budgets; their figures are in docs/)."""

import importlib.util
import io
import json
import shutil
import subprocess
import sys
import zipfile
from dataclasses import replace

import pytest
from conftest import REPO

from fedras_flwr.tooling.paired import PairedGap

spec = importlib.util.spec_from_file_location("results_matrix", REPO / "scripts" / "results_matrix.py")
results_matrix = importlib.util.module_from_spec(spec)
spec.loader.exec_module(results_matrix)

TINY = ["synthetic-users=40", "synthetic-items=150", "synthetic-mean-interactions=15"]
# the same as Hydra overrides, with 2 rounds of 10 clients: for the scripts that compose the presets
TINY_RUNS = ["run.num-server-rounds=2", "run.clients-per-round=10", "run.eval-every=2", *(f"run.{s}" for s in TINY)]


def run_script(name: str, *args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "scripts" / name), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


def test_hetero_scenarios_runs(tmp_path):
    done = run_script("hetero_scenarios.py", "--rounds", "2", "--clients-per-round", "10", "--eval-every", "1",
                      "--scenarios", "homogeneous", "--methods", "dense,fedras K=8", "--jobs", "1",
                      "--out", str(tmp_path / "hetero"), "--set", *TINY, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "fedras K=8" in (tmp_path / "hetero" / "hetero.md").read_text()


def test_payload_grid_runs(tmp_path):
    args = ["--datasets", "synthetic", "--codecs", "fedras,topk,small-d", "--levels", "90.0,99.9", "--seeds", "0", "--jobs", "1",
            "--out", str(tmp_path / "grid"), "--set", *TINY_RUNS]
    done = run_script("payload_grid.py", *args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    table = (tmp_path / "grid" / "grid.md").read_text()
    assert "| synthetic | 90.0 | fedras |" in table and "| synthetic | 90.0 | topk |" in table
    assert "| synthetic | 99.9 | small-d | unreachable" in table  # d = 32: small-d cannot cut more than 1 - 1/32
    users = len((tmp_path / "grid" / "runs" / "synthetic-fedras-90.0-s0" / "test-ranks.csv").read_text().splitlines()) - 1
    assert f"| synthetic | 90.0 | topk | 1 | {users} | " in table  # FedRAS against topk user by user, every test user
    assert (tmp_path / "grid" / "hr_vs_upload.png").stat().st_size > 0
    commits = json.loads((tmp_path / "grid" / "manifest.json").read_text())["commits"]
    assert commits and not any(c.startswith("unknown") for c in commits)  # every run stamped with its commit
    again = run_script("payload_grid.py", *args, cwd=tmp_path)  # every run is read back, none repeated
    assert again.returncode == 0 and " 0 to run " in again.stdout


def test_the_paired_table_pairs_fedras_with_each_baseline_on_their_common_seeds(tmp_path):
    spec = importlib.util.spec_from_file_location("payload_grid", REPO / "scripts" / "payload_grid.py")
    payload_grid = importlib.util.module_from_spec(spec)
    sys.modules["payload_grid"] = payload_grid  # its dataclasses look their module up there
    spec.loader.exec_module(payload_grid)
    # hits at K=10 (rank < 10), users 0-3: fedras [1,1,0,0] then [1,1,1,0]; topk [1,0,0,1] then [0,1,0,0]
    sampled = {("fedras", 0): [0, 0, 50, 50], ("fedras", 1): [0, 0, 0, 50],
               ("topk", 0): [0, 50, 50, 0], ("topk", 1): [50, 0, 50, 50], ("colr", 0): []}
    rows = []
    for (codec, seed), ranks in sampled.items():
        run_dir = tmp_path / f"{codec}-{seed}"
        run_dir.mkdir()
        (run_dir / "test-ranks.csv").write_text("user,test-sampled,test-full\n"
                                                + "".join(f"{u},{r},{r}\n" for u, r in enumerate(ranks)))
        rows.append({"dataset": "d", "level": 99.0, "codec": codec, "seed": seed, "out-dir": str(run_dir)})
    (tmp_path / "svd-0").mkdir()  # a run made before runs wrote test-ranks.csv
    rows.append({"dataset": "d", "level": 99.0, "codec": "svd", "seed": 0, "out-dir": str(tmp_path / "svd-0")})
    lines = payload_grid.paired_lines(rows)
    table = [line for line in lines if line.startswith("| d |")]
    # Δ HR@10 = 0.625 - 0.375, interval 1.96 x 0.5 / 2 (tests/test_paired.py); per seed +0 and +2 hits
    assert table[0].startswith("| d | 99.0 | colr | - |") and "too few to compare" in table[0]  # nobody evaluated
    assert table[1].startswith("| d | 99.0 | topk | 2 | 4 | +0.2500 ± 0.4900 | ")
    assert table[1].endswith(" | +0, +2 | 3 / 1, p 0.625 | tie, tie |")  # McNemar: 2 x (1 + 4) / 2^4
    assert len(table) == 2 and all(line.count("|") == 11 for line in table)  # 10 columns, as the header
    assert lines[-1].endswith("made before runs wrote one): svd-0.")
    gap = PairedGap(0.0, 0.0, 2, (0,), (0.0,), 0, 0)
    assert payload_grid.flipped_pairs(gap) == "0 / 0, p -"  # nothing to test
    assert payload_grid.flipped_pairs(replace(gap, a_better=10)) == "10 / 0, p 0.002"  # 2 / 1024
    assert payload_grid.flipped_pairs(replace(gap, a_better=11)) == "11 / 0, p < 0.001"  # 2 / 2048


def test_kmeans_cap_runs(tmp_path):
    done = run_script("kmeans_cap.py", "--every", "3", "--caps", "1,3", *TINY, "num-server-rounds=2",
                      "clients-per-round=10", "num-actions=4", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    row = next(line for line in done.stdout.splitlines() if line.startswith("| 4 |"))
    assert row.count("x |") == 2 and int(row.split("|")[2]) >= 1  # K=4: some clusterings kept, two caps


def test_results_matrix_runs_and_resumes(tmp_path):
    args = ["--datasets", "synthetic", "--models", "mf", "--codecs", "dense,fedras", "--seeds", "0", "--jobs", "1",
            "--out", str(tmp_path / "m1"), "--set", *TINY_RUNS]
    done = run_script("results_matrix.py", *args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    table = (tmp_path / "m1" / "mf" / "results.md").read_text()
    assert "| synthetic | mf | dense | 1 |" in table and "| synthetic | mf | fedras | 1 |" in table
    assert (tmp_path / "m1" / "mf" / "hr_vs_upload.png").stat().st_size > 0
    assert (tmp_path / "m1" / "mf" / "runs" / "synthetic-mf-dense-0" / "summary.json").is_file()
    manifest = json.loads((tmp_path / "m1" / "mf" / "manifest.json").read_text())
    assert "results_matrix.py --datasets synthetic" in manifest["command"]
    assert manifest["commits"] and not any(c.startswith("unknown") for c in manifest["commits"])  # runs stamped
    again = run_script("results_matrix.py", *args, cwd=tmp_path)  # every run is read back, none repeated
    assert again.returncode == 0 and "2 runs, 2 already done, 0 to run" in again.stdout


def test_each_backbone_gets_its_own_tables(tmp_path):
    args = ["--datasets", "synthetic", "--models", "mf,neumf", "--codecs", "dense", "--seeds", "0", "--jobs", "1",
            "--out", str(tmp_path / "m1"), "--set", *TINY_RUNS]
    done = run_script("results_matrix.py", *args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    for model in ("mf", "neumf"):
        table = (tmp_path / "m1" / model / "results.md").read_text()
        assert [line.split(" | ")[1] for line in table.splitlines()[2:]] == [model]  # its own row only
        assert (tmp_path / "m1" / model / "runs" / f"synthetic-{model}-dense-0" / "summary.json").is_file()
        manifest = json.loads((tmp_path / "m1" / model / "manifest.json").read_text())
        assert "--models mf,neumf" in manifest["command"] and manifest["commits"]
    assert sorted(path.name for path in (tmp_path / "m1").iterdir()) == ["mf", "neumf"]


def test_a_results_matrix_stopped_by_a_failing_run_keeps_and_names_what_finished(tmp_path):
    args = ["--datasets", "synthetic,ml-100k", "--models", "mf", "--codecs", "dense", "--seeds", "0", "--jobs", "1",
            "--data-dir", f"ml-100k={tmp_path / 'no-such-folder'}", "--out", str(tmp_path / "m1"), "--set", *TINY_RUNS]
    done = run_script("results_matrix.py", *args, cwd=tmp_path)
    assert done.returncode == 1 and "results_matrix: run ml-100k mf dense 0 failed" in done.stderr.splitlines()[-1]
    assert "Traceback" in done.stderr
    table = (tmp_path / "m1" / "mf" / "results.md").read_text()
    assert "| synthetic | mf | dense | 1 |" in table and "| ml-100k |" not in table
    assert "Not yet finished (1 of the command's runs): ml-100k mf dense seed 0." in table


def test_a_partial_matrix_compares_a_codec_to_dense_on_the_seeds_both_have():
    rows = [{"seed": s, "hr@10": hr, "ndcg@10": nd} for s, hr, nd in [(0, 0.5, 0.2), (1, 0.7, 0.4), (2, 0.6, 0.3)]]
    codec = [{"seed": 0, "hr@10": 0.5, "ndcg@10": 0.1}, {"seed": 1, "hr@10": 0.7, "ndcg@10": 0.5}]
    # seeds 0 and 1: HR 1.2 / 1.2, NDCG 0.6 / 0.6; against all three dense seeds it would read 0.944 / 0.938
    assert results_matrix.dense_ratio(codec, rows) == "1.000 / 1.000 (2 seeds)"
    assert results_matrix.dense_ratio(rows, rows) == "1.000 / 1.000"
    assert results_matrix.dense_ratio(codec, []) == "-"
    assert results_matrix.dense_ratio(codec[:1], rows) == "1.000 / 0.500 (1 seed)"


def test_a_matrix_runs_seed_by_seed_so_a_stopped_one_has_every_codec_of_its_finished_seeds():
    cells = [("b", "mf", codec, seed) for codec in ("dense", "fedras") for seed in (0, 1)] + [("a", "mf", "dense", 0)]
    assert results_matrix.run_order(cells) == [("b", "mf", "dense", 0), ("b", "mf", "fedras", 0),
                                              ("b", "mf", "dense", 1), ("b", "mf", "fedras", 1), ("a", "mf", "dense", 0)]


def test_each_backbone_has_its_own_codecs_unless_they_are_named():
    cells = results_matrix.matrix_cells(["a"], ["mf", "neumf"], [], [0])
    assert [c for _, m, c, _ in cells if m == "mf"] == ["dense", "sparse", "fedras", "fedras-adaptive", "fedras-ef",
                                                        "fedras-target-ratio", "fedras-direction"]
    assert [c for _, m, c, _ in cells if m == "neumf"] == ["dense", "sparse", "fedras", "fedras-adaptive",
                                                           "fedras-int4-weights"]
    named = results_matrix.matrix_cells(["a", "b"], ["mf", "neumf"], ["dense", "fedras-int4-weights"], [0, 1])
    assert named == [(d, m, c, s) for d in "ab" for m, codecs in (("mf", ["dense"]),
                     ("neumf", ["dense", "fedras-int4-weights"])) for c in codecs for s in (0, 1)]
    with pytest.raises(ValueError, match="no default codecs for model gru"):
        results_matrix.matrix_cells(["a"], ["gru"], [], [0])


def test_the_codec_that_only_changes_neumf_weights_has_no_mf_runs(tmp_path):
    args = ["--datasets", "synthetic", "--models", "mf", "--codecs", "dense,fedras-int4-weights", "--seeds", "0",
            "--jobs", "1", "--out", str(tmp_path / "m1"), "--set", *TINY_RUNS]
    done = run_script("results_matrix.py", *args, cwd=tmp_path)
    assert done.returncode == 0 and "1 runs, 0 already done, 1 to run" in done.stdout, done.stderr[-2000:]


def test_a_finished_runs_record_is_kept_by_git_and_its_checkpoints_are_not():
    for run in ("results/matrix1/mf/runs/synthetic-mf-dense-0", "results/calibration/ml-100k-mf/runs/lr-0.5"):
        paths = [f"{run}/summary.json", f"{run}/rounds.jsonl", f"{run}/commits.txt", f"{run}/incidents.jsonl",
                 f"{run}/test-ranks.csv", f"{run}/checkpoints/round-000010.npz", f"{run}/client-state/e38fa48575432dd8"]
        done = subprocess.run(["git", "check-ignore", "--no-index", *paths], cwd=REPO, capture_output=True, text=True)
        assert done.stdout.split() == paths[5:]


def test_the_flower_app_bundle_leaves_out_every_run_file():
    from flwr.cli.build import build_fab_from_files

    keep = ["pyproject.toml", ".gitignore", "results/.gitignore", "fedras_flwr/__init__.py"]
    runs = [f"results/{folder}/runs/x/{name}" for folder in ("matrix1/mf", "calibration/ml-100k-mf")
            for name in ("summary.json", "rounds.jsonl", "incidents.jsonl", "commits.txt", "test-ranks.csv")]
    files = {path: (REPO / path).read_bytes() for path in keep} | {path: b"{}" for path in runs}
    fab, _ = build_fab_from_files(files)
    with zipfile.ZipFile(io.BytesIO(fab)) as bundle:
        names = bundle.namelist()
    assert "fedras_flwr/__init__.py" in names and [name for name in names if "/runs/" in name] == []


def test_calibrate_budget_runs(tmp_path):
    done = run_script("calibrate_budget.py", "--dataset", "synthetic", "--rounds", "4", "--eval-every", "1",
                      "--lrs", "2,4", "--clients-per-round", "10", "--out", str(tmp_path / "cal"), "--set", *TINY,
                      cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    table = (tmp_path / "cal" / "calibration.md").read_text()
    assert "| 2 |" in table and "| 4 |" in table and "Runs made on: " in table and "Recommended: lr" in table
    assert len((tmp_path / "cal" / "curves.csv").read_text().splitlines()) == 1 + 2 * 4  # header + 2 lrs x 4 evaluations
    commits = json.loads((tmp_path / "cal" / "calibration.json").read_text())["commits"]
    assert commits and not any(c.startswith("unknown") for c in commits)  # both runs stamped with their commit


def test_the_readme_results_are_the_files_under_results():
    done = run_script("render_results.py", "--check", cwd=REPO)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("script, part", [("results_matrix.py", ["--models", "mf"]), ("payload_grid.py", ["--levels", "99"])])
def test_a_matrix_command_refuses_a_part_in_its_default_folder(tmp_path, script, part):
    """Run from a copy, whose default folder is tmp_path/results/...: a broken guard cannot touch the repository's."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / script, tmp_path / "scripts" / script)
    done = subprocess.run([sys.executable, str(tmp_path / "scripts" / script), *part], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and f"a selection other than the whole matrix ({part[0]}) would overwrite" in done.stderr
    assert not (tmp_path / "results").exists()  # refused before anything was written
