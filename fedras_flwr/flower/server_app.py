"""Flower ServerApp (`flwr run` entry): `FedRASStrategy` for `num-server-rounds` rounds."""

from __future__ import annotations

import logging

from flwr.common import Context
from flwr.server import ServerApp, ServerAppComponents, ServerConfig

from fedras_flwr.config import RunConfig
from fedras_flwr.flower.strategy import FedRASStrategy
from fedras_flwr.tooling.session import find_resume_point


def show_progress_logs() -> None:
    """Print the algorithm's progress lines next to Flower's own log (once per process)."""
    logger = logging.getLogger("fedras_flwr")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)-8s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def make_server_app(cfg: RunConfig | None = None) -> ServerApp:
    """A ServerApp; pass `cfg` to run without a Flower run_config (tests, Hydra in-process)."""

    def server_fn(context: Context) -> ServerAppComponents:
        show_progress_logs()
        run_cfg = cfg or RunConfig.from_flat(context.run_config)
        resume = find_resume_point(run_cfg)
        start = resume.round if resume else 0
        if resume:
            logging.getLogger("fedras_flwr").info("fedras-flwr: resuming %s at round %d", resume.path, start + 1)
        config = ServerConfig(num_rounds=run_cfg.num_server_rounds - start, round_timeout=run_cfg.round_timeout or None)
        return ServerAppComponents(strategy=FedRASStrategy(run_cfg, resume=resume), config=config)

    return ServerApp(server_fn=server_fn)


app = make_server_app()
