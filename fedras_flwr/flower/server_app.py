"""Flower ServerApp (`flwr run` entry): `FedRASStrategy` for `num-server-rounds` rounds, once the config,
the data and the model's packages pass the preflight (tooling/preflight.py)."""

from __future__ import annotations

import logging

from flwr.common import Context
from flwr.server import ServerApp, ServerAppComponents, ServerConfig

from fedras_flwr.config import RunConfig
from fedras_flwr.flower.console import configure_console
from fedras_flwr.flower.strategy import FedRASStrategy
from fedras_flwr.tooling.preflight import RunRefused, preflight

log = logging.getLogger("fedras_flwr")


class RunNotStarted(RuntimeError):
    """The run was refused before round 1; the message says why and what to do."""


def make_server_app(cfg: RunConfig | None = None) -> ServerApp:
    """A ServerApp; pass `cfg` to run without a Flower run_config (tests, Hydra in-process)."""

    def server_fn(context: Context) -> ServerAppComponents:
        try:
            run_cfg = cfg or RunConfig.from_flat(context.run_config)
            configure_console(run_cfg)
            resume = preflight(run_cfg)
        except RunRefused as err:
            log.error("fedras-flwr: the run cannot start: %s", err)
            raise RunNotStarted(str(err)) from None
        start = resume.round if resume else 0
        if resume:
            log.info("fedras-flwr: resuming %s at round %d", resume.path, start + 1)
        config = ServerConfig(num_rounds=run_cfg.num_server_rounds - start, round_timeout=run_cfg.round_timeout or None)
        return ServerAppComponents(strategy=FedRASStrategy(run_cfg, resume=resume), config=config)

    return ServerApp(server_fn=server_fn)


app = make_server_app()
