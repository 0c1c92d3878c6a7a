"""Flower ClientApp (`flwr run` entry): one `FedRASClient` per SuperNode."""

from __future__ import annotations

from flwr.client import ClientApp
from flwr.common import Context

from fedras_flwr.config import RunConfig
from fedras_flwr.flower.console import configure_console
from fedras_flwr.flower.numpy_client import make_client


def make_client_app(cfg: RunConfig | None = None) -> ClientApp:
    """A ClientApp; pass `cfg` to run without a Flower run_config (tests, Hydra in-process)."""

    def client_fn(context: Context):
        run_cfg = cfg or RunConfig.from_flat(context.run_config)
        configure_console(run_cfg)
        return make_client(context, run_cfg).to_client()

    return ClientApp(client_fn=client_fn)


app = make_client_app()
