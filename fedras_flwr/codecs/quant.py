"""`quant`: uniform `quant-bits`-bit (8, 4 or 2) quantization of every touched row, with a float16
minimum and step per row (asymmetric), codes bit-packed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from fedras_flwr.codecs.base import CodecParams, PayloadError, parameter
from fedras_flwr.codecs.ids_values import IdsAndValuesCodec
from fedras_flwr.codecs.packing import pack_bits, unpack_bits


@dataclass(frozen=True)
class QuantParams(CodecParams):
    quant_bits: int = parameter(8, "bits per value: 8 | 4 | 2", choices=(2, 4, 8))


class QuantCodec(IdsAndValuesCodec):
    name = "quant"
    Params = QuantParams

    @classmethod
    def budget_parameter(cls, dim: int) -> tuple[str, tuple[int, ...]]:
        return "quant-bits", (2, 4, 8)
    num_arrays = 3

    def encode_rows(self, rows: np.ndarray, server_round: int) -> list[np.ndarray]:
        levels = (1 << self.params.quant_bits) - 1
        low, high = rows.min(axis=1), rows.max(axis=1)
        params = np.stack([low, (high - low) / levels], axis=1).astype(np.float16)
        low16, step16 = params[:, 0].astype(np.float32), params[:, 1].astype(np.float32)
        safe_step = np.where(step16 > 0, step16, 1.0)
        codes = np.clip(np.rint((rows - low16[:, None]) / safe_step[:, None]), 0, levels)
        return [params, pack_bits(codes.astype(np.int64).ravel(), self.params.quant_bits)]

    def decode_rows(self, arrays: Sequence[np.ndarray], count: int, server_round: int) -> np.ndarray:
        params, packed = arrays
        self._expect_values(params, "float16", (count, 2))
        if packed.dtype != np.uint8 or packed.ndim != 1:
            raise PayloadError("quant: codes must be a uint8 buffer")
        codes = unpack_bits(packed, self.params.quant_bits, count * self.dim).reshape(count, self.dim)
        params32 = params.astype(np.float32)
        return params32[:, :1] + codes.astype(np.float32) * params32[:, 1:]

    def numbers_sent(self, arrays: Sequence[np.ndarray], rows: int) -> int:
        return rows * self.dim + arrays[1].size + rows
