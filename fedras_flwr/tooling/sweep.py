"""Hydra entry point: one experiment, or many with --multirun, each through `flwr run` (the same
ServerApp/ClientApp code paths as the README's main command, and as a deployment when
`federation.connection` names a SuperLink).

    python -m fedras_flwr.tooling.sweep codec=dense run.num-server-rounds=20
    python -m fedras_flwr.tooling.sweep --multirun codec=fedras,dense run.seed=0,1

Every job writes its results to `<hydra job dir>/run/` (absolute), its resolved run-config to
`run_config.toml` and the Flower log to `flwr.log`; a local job runs on a SuperLink of its own, stopped
when the job ends. A job whose Flower run does not finish as
`completed` raises, so Hydra reports it by its overrides and the multirun exits non-zero.

The app that `flwr run` takes is the source checkout, or with a regular install (`pip install .`) a folder
generated in the job dir that declares the same app and imports the installed package (tooling/app_dir.py).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import tomli_w
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.utils import get_original_cwd
from omegaconf import DictConfig, OmegaConf

from fedras_flwr.config import RunConfig, absolute_paths
from fedras_flwr.tooling.app_dir import GENERATED, app_dir
from fedras_flwr.tooling.flower_run import RunFailed, run_to_completion

log = logging.getLogger("fedras_flwr.tooling.sweep")


def resolve_run_config(run: DictConfig, job_dir: Path) -> dict[str, Any]:
    """The job's run-config: validated, with absolute paths (Flower's processes have another cwd)."""
    values = OmegaConf.to_container(run, resolve=True)
    assert isinstance(values, dict)
    values = {**absolute_paths(values, base=get_original_cwd()), "out-dir": str(job_dir / "run")}
    RunConfig.from_flat(values)  # fail here, with the key named, rather than inside Flower
    return values


def launch(
    run_config: dict[str, Any], federation: DictConfig, job_dir: Path, results: Path | None = None
) -> dict[str, Any]:
    """Submit the run, wait for it with its log in `job_dir/flwr.log`, and return its summary; RunFailed otherwise.
    A local simulation runs on a SuperLink of the job's own, stopped when the job ends. `results`: where this
    machine sees the run's `out-dir` (a ServerApp in a container writes it to a mounted folder), if not there."""
    toml_path = job_dir / "run_config.toml"
    toml_path.write_text(tomli_w.dumps(run_config))
    connection = str(federation.connection or "")
    local = None if connection else job_dir / "flower-home"
    federation_config = "" if connection else (
        f"num-supernodes={federation['num-supernodes']} client-resources-num-cpus={federation['client-resources-num-cpus']}"
    )
    with (job_dir / "flwr.log").open("w") as flwr_log:
        try:
            return run_to_completion(
                app_dir(job_dir / GENERATED), toml_path, connection, federation_config, local, flwr_log, drop=None,
                timeout=float(federation["timeout-seconds"]), out_dir=results or Path(run_config["out-dir"]),
                on_start=lambda run_id: log.info("submitted Flower run %s; results in %s", run_id, job_dir / "run"),
            )
        except RunFailed as err:
            raise RunFailed(f"{err}; see {job_dir / 'flwr.log'}") from None


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
