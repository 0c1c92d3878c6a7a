"""`topk`: the `topk-fraction` largest-magnitude entries of the touched-row update (values + positions).

Positions index the (touched rows x d) matrix in the narrowest unsigned dtype that fits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from fedras_flwr.codecs.base import CodecParams, PayloadError, parameter
from fedras_flwr.codecs.ids_values import IdsAndValuesCodec


@dataclass(frozen=True)
class TopKParams(CodecParams):
    topk_fraction: float = parameter(0.1, "fraction of the touched-row entries kept", fraction=True)


class TopKCodec(IdsAndValuesCodec):
    name = "topk"
    Params = TopKParams

    @classmethod
    def budget_parameter(cls, dim: int) -> tuple[str, tuple[float, ...]]:
        return "topk-fraction", tuple(float(f) for f in np.geomspace(0.002, 1.0, 60))
    num_arrays = 3

    def encode_rows(self, rows: np.ndarray, server_round: int) -> list[np.ndarray]:
        flat = rows.ravel()
        keep = max(1, int(round(self.params.topk_fraction * flat.size))) if flat.size else 0
        positions = np.sort(np.argpartition(-np.abs(flat), keep - 1)[:keep]) if keep < flat.size else np.arange(flat.size)
        return [positions.astype(np.min_scalar_type(max(flat.size - 1, 0))), flat[positions].astype(np.float32)]

    def decode_rows(self, arrays: Sequence[np.ndarray], count: int, server_round: int) -> np.ndarray:
        positions, values = arrays
        size = count * self.dim
        if positions.dtype.kind != "u" or positions.ndim != 1 or (len(positions) and positions.max() >= size):
            raise PayloadError("topk: positions must be unsigned and inside the touched rows")
        self._expect_values(values, "float32", positions.shape)
        flat = np.zeros(size, dtype=np.float32)
        flat[positions] = values
        return flat.reshape(count, self.dim)

    def numbers_sent(self, arrays: Sequence[np.ndarray], rows: int) -> int:
        return 2 * len(arrays[2]) + rows
