"""What the Flower processes print: our progress lines always; Flower's own INFO log (per-round
messages, the history dump at the end) only with `verbosity = "flower"`."""

from __future__ import annotations

import logging

from fedras_flwr.config import RunConfig


def configure_console(cfg: RunConfig) -> None:
    """Idempotent: the ServerApp and every ClientApp call it in their own process."""
    ours = logging.getLogger("fedras_flwr")
    if not ours.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)-8s: %(message)s"))
        ours.addHandler(handler)
        ours.setLevel(logging.INFO)
        ours.propagate = False
    logging.getLogger("flwr").setLevel(logging.INFO if cfg.verbosity == "flower" else logging.WARNING)
