"""Upload codecs. Every `Codec` subclass with a `name`, in any module of this package, is a codec."""

from __future__ import annotations

import importlib
import pkgutil

from fedras_flwr.codecs.base import (
    Codec,
    ItemUpdate,
    PayloadError,
    codec_registry,
    merge_updates,
    serialized_size,
    shaped_size,
    wire_bytes,
)
from fedras_flwr.codecs.weights import WEIGHT_FORMATS, WeightsCodec

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")


def available_codecs() -> list[str]:
    return sorted(codec_registry())


def make_codec(cfg: "RunConfig", num_items: int, dim: int) -> Codec:  # noqa: F821 - avoid import cycle
    return codec_registry()[cfg.codec](cfg, num_items, dim)


__all__ = [
    "Codec", "ItemUpdate", "PayloadError", "available_codecs", "make_codec", "merge_updates", "serialized_size",
    "shaped_size", "wire_bytes", "WEIGHT_FORMATS", "WeightsCodec",
]
