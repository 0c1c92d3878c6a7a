"""How the shared dense weights (NeuMF's MLP and output layer; MF has none) travel up, `dense-upload`.

`float32`: the trained weights as they are, one array per tensor: what FedAvg sends, and the reference.
`float16`: the change against the weights the client received, every tensor in one float16 array.
`int8`: that change quantized to 8 bits per value with a float32 minimum and step per tensor
(asymmetric, rounded to nearest), in two arrays whatever the number of tensors, so the .npy headers
stay few. `int4`: the same with 4 bits (15 steps), two values a byte (the bit packing of FedRAS's
indices and `quant`'s codes). The server adds the decoded change to the weights it sent that round.

At d = 32 the float32 weights are 28,292 B, most of a NeuMF upload next to K = 8 actions; as 8-bit
changes they are 7,137 B, as 4-bit changes 3,729 B (docs/codecs.md). On a small catalogue they bound
the cut: with synthetic's 1,000 items, 7,137 B of the 284,420 B dense upload caps it at 97.5 %.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from fedras_flwr.codecs.base import PayloadError
from fedras_flwr.codecs.packing import pack_bits, unpack_bits

WEIGHT_FORMATS = ("float32", "float16", "int8", "int4")
_BITS = {"int8": 8, "int4": 4}  # bits of one quantization code


class WeightsCodec:
    """Encodes a client's trained dense weights against the weights it received, and back."""

    def __init__(self, mode: str, shapes: Sequence[tuple[int, ...]]) -> None:
        if mode not in WEIGHT_FORMATS:
            raise ValueError(f"dense-upload must be one of {WEIGHT_FORMATS}, got {mode!r}")
        self.mode = mode
        self.shapes = [tuple(shape) for shape in shapes]
        self.sizes = [math.prod(shape) for shape in self.shapes]
        by_mode = {"float32": len(self.shapes), "float16": 1, "int8": 2, "int4": 2}
        self.num_arrays = by_mode[mode] if self.shapes else 0

    # -- client ------------------------------------------------------------------------------------
    def encode(self, trained: Sequence[np.ndarray], received: Sequence[np.ndarray]) -> list[np.ndarray]:
        if not self.shapes:
            return []
        if self.mode == "float32":
            return [np.asarray(w, dtype=np.float32) for w in trained]
        changes = [np.asarray(t, np.float32).ravel() - np.asarray(r, np.float32).ravel() for t, r in zip(trained, received)]
        if self.mode == "float16":
            return [np.concatenate(changes).astype(np.float16)]
        bits = _BITS[self.mode]
        levels = (1 << bits) - 1
        params = np.array([[c.min(), (c.max() - c.min()) / levels] for c in changes], dtype=np.float32)
        codes = np.concatenate([
            np.clip(np.rint((c - low) / step), 0, levels) if step > 0 else np.zeros(len(c))
            for c, (low, step) in zip(changes, params)
        ])
        return [params, pack_bits(codes.astype(np.int64), bits)]

    # -- server ------------------------------------------------------------------------------------
    def decode(self, arrays: Sequence[np.ndarray], received: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The client's weights; PayloadError for anything malformed or non-finite."""
        if len(arrays) != self.num_arrays:
            raise PayloadError(f"dense weights: expected {self.num_arrays} arrays ({self.mode}), got {len(arrays)}")
        if not self.shapes:
            return []
        if self.mode == "float32":
            for array, shape in zip(arrays, self.shapes):
                _expect(array, "float32", shape)
            weights = [np.asarray(a) for a in arrays]
        elif self.mode == "float16":
            flat = _expect(arrays[0], "float16", (sum(self.sizes),)).astype(np.float32)
            weights = self._add(received, flat)
        else:
            params = _expect(arrays[0], "float32", (len(self.shapes), 2))
            count, bits = sum(self.sizes), _BITS[self.mode]
            codes = unpack_bits(_expect(arrays[1], "uint8", (math.ceil(count * bits / 8),)), bits, count)
            if np.any(params[:, 1] < 0):
                raise PayloadError("dense weights: a quantization step is negative")
            lows, steps = (np.repeat(params[:, i], self.sizes) for i in (0, 1))
            with np.errstate(over="ignore", invalid="ignore"):  # overflow is caught just below
                weights = self._add(received, lows + codes.astype(np.float32) * steps)
        if not all(np.all(np.isfinite(w)) for w in weights):
            raise PayloadError("dense weights are not finite")
        return weights

    def _add(self, received: Sequence[np.ndarray], flat_change: np.ndarray) -> list[np.ndarray]:
        ends = np.cumsum(self.sizes)
        with np.errstate(over="ignore", invalid="ignore"):
            return [
                (np.asarray(r, np.float32) + flat_change[end - size : end].reshape(shape)).astype(np.float32)
                for r, size, end, shape in zip(received, self.sizes, ends, self.shapes)
            ]


def _expect(array: object, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    if not isinstance(array, np.ndarray) or array.dtype != np.dtype(dtype) or array.shape != shape:
        raise PayloadError(
            f"dense weights: expected {dtype} {shape}, got {getattr(array, 'dtype', type(array))} {getattr(array, 'shape', '')}"
        )
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise PayloadError("dense weights contain NaN or infinity")
    return array
