"""`colr`: CoLR (WWW'24). The item update is constrained to Q + A B during local training, with B
(`colr-rank` x d, orthonormal rows) regenerated every round from the shared seed; only A goes up.

Local training trains A itself (training.py), so the optimizer and weight decay act on A, as in CoLR,
whatever they are. The server rebuilds A B with the same B.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np

from fedras_flwr.codecs.base import CodecParams, parameter
from fedras_flwr.codecs.ids_values import IdsAndValuesCodec


@dataclass(frozen=True)
class CoLRParams(CodecParams):
    colr_rank: int = parameter(2, "rank r of the update A B", positive=True)


class CoLRCodec(IdsAndValuesCodec):
    name = "colr"
    Params = CoLRParams

    @classmethod
    def budget_parameter(cls, dim: int) -> tuple[str, tuple[int, ...]]:
        return "colr-rank", tuple(range(1, dim + 1))
    num_arrays = 2

    def basis(self, server_round: int) -> np.ndarray:
        return _orthonormal_basis(self.context.seed, server_round, min(self.params.colr_rank, self.dim), self.dim)

    def update_basis(self, server_round: int) -> np.ndarray:
        return self.basis(server_round)

    def encode_rows(self, rows: np.ndarray, server_round: int) -> list[np.ndarray]:
        return [(rows @ self.basis(server_round).T).astype(np.float32)]

    def decode_rows(self, arrays: Sequence[np.ndarray], count: int, server_round: int) -> np.ndarray:
        basis = self.basis(server_round)
        with np.errstate(over="ignore", invalid="ignore"):  # huge values overflow; the caller rejects non-finite rows
            return self._expect_values(arrays[0], "float32", (count, len(basis))) @ basis

    def numbers_sent(self, arrays: Sequence[np.ndarray], rows: int) -> int:
        return arrays[1].size + rows


@lru_cache(maxsize=8)
def _orthonormal_basis(seed: int, server_round: int, rank: int, dim: int) -> np.ndarray:
    gaussian = np.random.default_rng([seed, 7_001, server_round]).standard_normal((dim, rank))
    orthonormal, _ = np.linalg.qr(gaussian)
    return orthonormal.T.astype(np.float32)
