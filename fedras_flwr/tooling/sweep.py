"""Hydra entry point: one experiment, or many with --multirun, each through `flwr run` (the same
ServerApp/ClientApp code paths as the README's main command, and as a deployment when
`federation.connection` names a SuperLink).

    python -m fedras_flwr.tooling.sweep codec=dense run.num-server-rounds=20
    python -m fedras_flwr.tooling.sweep --multirun codec=fedras,dense run.seed=0,1

Every job writes its results to `<hydra job dir>/run/` (absolute), its resolved run-config to
`run_config.toml` and the Flower log to `flwr.log`. A job whose Flower run does not finish as
`completed` raises, so Hydra reports it by its overrides and the multirun exits non-zero.

The app that `flwr run` takes is the source checkout, or with a regular install (`pip install .`) a folder
generated in the job dir that declares the same app and imports the installed package (tooling/app_dir.py).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import hydra
import tomli_w
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.utils import get_original_cwd
from omegaconf import DictConfig, OmegaConf

from fedras_flwr.config import RunConfig
from fedras_flwr.tooling.app_dir import GENERATED, app_dir
from fedras_flwr.tooling.flwr_cli import FLOWER_ENV, flwr_cli

log = logging.getLogger("fedras_flwr.tooling.sweep")
_PATH_KEYS = ("data-dir", "cache-dir", "interactions-file")


class RunFailed(RuntimeError):
    """The Flower run of a job did not complete."""


def resolve_run_config(run: DictConfig, job_dir: Path) -> dict[str, Any]:
    """The job's run-config: validated, with absolute paths (Flower's processes have another cwd)."""
    values = OmegaConf.to_container(run, resolve=True)
    assert isinstance(values, dict)
    for key in _PATH_KEYS:
        if values.get(key):
            values[key] = str(Path(get_original_cwd(), str(values[key])).resolve())
    values["out-dir"] = str(job_dir / "run")
    RunConfig.from_flat(values)  # fail here, with the key named, rather than inside Flower
    return values


def launch(run_config: dict[str, Any], federation: DictConfig, job_dir: Path) -> dict[str, Any]:
    """Submit the run, wait for it, save its log, and return its summary; raise RunFailed otherwise."""
    toml_path = job_dir / "run_config.toml"
    toml_path.write_text(tomli_w.dumps(run_config))
    env = {**os.environ, **{k: os.environ.get(k, v) for k, v in FLOWER_ENV.items()}}
    command = ["run", str(app_dir(job_dir / GENERATED))]
    if federation.connection:
        command.append(str(federation.connection))
    command += ["--run-config", str(toml_path), "--format", "json"]
    if not federation.connection:
        command += [
            "--federation-config",
            f"num-supernodes={federation['num-supernodes']} "
            f"client-resources-num-cpus={federation['client-resources-num-cpus']}",
        ]
    submitted = flwr_cli(command, env, timeout=300)
    try:
        run_id = str(json.loads(submitted.stdout)["run-id"])
    except (ValueError, KeyError) as err:
        raise RunFailed(f"flwr run did not start: {submitted.stdout[-2000:]} {submitted.stderr[-2000:]}") from err
    log.info("submitted Flower run %s; results in %s", run_id, job_dir / "run")
    deadline = time.monotonic() + float(federation["timeout-seconds"])
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        listing = flwr_cli(["list", "--run-id", run_id, "--format", "json"], env, timeout=120)
        runs = json.loads(listing.stdout).get("runs", []) if listing.stdout.strip().startswith("{") else []
        status = runs[0] if runs else {}
        if str(status.get("status", "")).startswith("finished"):
            break
        time.sleep(5)  # each `flwr list` costs ~1.5 s of CPU, which a 2-core machine's run needs more
    (job_dir / "flwr.log").write_text(flwr_cli(["log", run_id, "--show"], env, timeout=300).stdout)
    summary_file = Path(run_config["out-dir"]) / "summary.json"
    if status.get("status") != "finished:completed" or not summary_file.is_file():
        raise RunFailed(
            f"Flower run {run_id} ended as {status.get('status', 'unknown (timed out)')}: "
            f"{status.get('status-details', '')}; see {job_dir / 'flwr.log'}"
        )
    return json.loads(summary_file.read_text())


class ReportOnMultirunEnd(Callback):
    """After a multirun whose jobs all succeeded: results.csv / results.md / plots in `<sweep dir>/report`."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from fedras_flwr.tooling.report import build_report  # matplotlib only when a report is drawn

        sweep_dir = Path(config.hydra.sweep.dir).resolve()
        log.info(build_report([str(sweep_dir)], sweep_dir / "report"))


@hydra.main(config_path="../conf", config_name="config", version_base=None)
def main(cfg: DictConfig) -> float:
    logging.getLogger("flwr").propagate = False
    job_dir = Path(HydraConfig.get().runtime.output_dir).resolve()
    run_config = resolve_run_config(cfg.run, job_dir)
    summary = launch(run_config, cfg.federation, job_dir)
    final = summary["final"]
    log.info("final %s", {k: round(v, 4) for k, v in final.items() if v is not None and "val-" not in k})
    # the objective a sweeper maximises is the validation metric: selecting on the test item would leak it
    return float(summary["best-val"].get(f"val-hr@{RunConfig.from_flat(run_config).topk_list[0]}") or 0.0)


if __name__ == "__main__":
    main()
