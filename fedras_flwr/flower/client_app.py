"""Flower ClientApp (`flwr run` entry): one `FedRASClient` per SuperNode."""

from __future__ import annotations

from flwr.client import ClientApp
from flwr.common import Context

from fedras_flwr.config import RunConfig
from fedras_flwr.flower.numpy_client import make_client


def make_client_app(cfg: RunConfig | None = None) -> ClientApp:
    """A ClientApp; pass `cfg` to run without a Flower run_config (tests, Hydra in-process)."""

    def client_fn(context: Context):
        return make_client(context, cfg).to_client()

    return ClientApp(client_fn=client_fn)


app = make_client_app()
