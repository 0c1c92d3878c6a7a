"""Upload codecs. Every `Codec` subclass with a `name`, in any module of this package, is a codec."""

from __future__ import annotations

import importlib
import pkgutil

from fedras_flwr.codecs.base import (
    Codec,
    CodecContext,
    CodecParams,
    ItemUpdate,
    PayloadError,
    available_codecs,
    codec_class,
    key_of,
    make_codec,
    merge_updates,
    parameter,
    parameter_keys,
    serialized_size,
    shaped_size,
    unregister_codec,
    wire_bytes,
)
from fedras_flwr.codecs.weights import WEIGHT_FORMATS, WeightsCodec

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "Codec", "CodecContext", "CodecParams", "ItemUpdate", "PayloadError", "key_of", "available_codecs", "codec_class",
    "make_codec", "merge_updates", "parameter", "parameter_keys", "serialized_size", "shaped_size",
    "unregister_codec", "wire_bytes", "WEIGHT_FORMATS", "WeightsCodec",
]
