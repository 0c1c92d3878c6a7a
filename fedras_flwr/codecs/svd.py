"""`svd`: rank-`svd-rank` truncated SVD of the touched-row update, sent as (U S) and V."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from fedras_flwr.codecs.base import CodecParams, parameter
from fedras_flwr.codecs.ids_values import IdsAndValuesCodec


@dataclass(frozen=True)
class SVDParams(CodecParams):
    svd_rank: int = parameter(2, "rank of the truncated SVD", positive=True)


class SVDCodec(IdsAndValuesCodec):
    name = "svd"
    Params = SVDParams

    @classmethod
    def budget_parameter(cls, dim: int) -> tuple[str, tuple[int, ...]]:
        return "svd-rank", tuple(range(1, dim + 1))
    num_arrays = 3

    def encode_rows(self, rows: np.ndarray, server_round: int) -> list[np.ndarray]:
        rank = min(self.params.svd_rank, *rows.shape) if rows.size else 0
        left, singular, right = np.linalg.svd(rows.astype(np.float64), full_matrices=False)
        return [(left[:, :rank] * singular[:rank]).astype(np.float32), right[:rank].astype(np.float32)]

    def decode_rows(self, arrays: Sequence[np.ndarray], count: int, server_round: int) -> np.ndarray:
        scaled_left, right = arrays
        rank = scaled_left.shape[1] if scaled_left.ndim == 2 and scaled_left.shape[1] <= self.dim else -1
        self._expect_values(scaled_left, "float32", (count, max(rank, 0)))
        self._expect_values(right, "float32", (rank, self.dim))
        with np.errstate(over="ignore", invalid="ignore"):  # huge values overflow; the caller rejects non-finite rows
            return scaled_left @ right

    def numbers_sent(self, arrays: Sequence[np.ndarray], rows: int) -> int:
        return arrays[1].size + arrays[2].size + rows
