"""Shared base of the lossy baselines (topk, svd, colr, quant): ids in the compact id encoding that
FedRAS uses, values encoded by the subclass. Not a codec itself (it has no `name`)."""

from __future__ import annotations

from abc import abstractmethod
from typing import Sequence

import numpy as np

from fedras_flwr.codecs.base import Codec, ItemUpdate, PayloadError
from fedras_flwr.codecs.packing import decode_ids, encode_ids


class IdsAndValuesCodec(Codec):
    """Base for the lossy baselines: the touched ids go as a compact id set (array 0, the same
    encoding FedRAS uses, so comparisons are about the values) and subclasses encode the rows."""

    def encode(self, update: ItemUpdate, server_round: int) -> list[np.ndarray]:
        return [encode_ids(update.ids, self.num_items), *self.encode_rows(update.rows, server_round)]

    def decode(self, arrays: Sequence[np.ndarray], server_round: int) -> ItemUpdate:
        if len(arrays) != self.num_arrays:
            raise PayloadError(f"{self.name}: expected {self.num_arrays} arrays, got {len(arrays)}")
        ids = decode_ids(arrays[0], self.num_items)
        rows = self.decode_rows(arrays[1:], len(ids), server_round)
        return ItemUpdate(ids=ids, rows=self._check_rows(rows, len(ids)))

    @abstractmethod
    def encode_rows(self, rows: np.ndarray, server_round: int) -> list[np.ndarray]: ...

    @abstractmethod
    def decode_rows(self, arrays: Sequence[np.ndarray], count: int, server_round: int) -> np.ndarray: ...

    def _expect_values(self, array: np.ndarray, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
        if not isinstance(array, np.ndarray) or array.dtype != np.dtype(dtype) or array.shape != shape:
            raise PayloadError(
                f"{self.name}: expected {dtype} {shape}, got {getattr(array, 'dtype', type(array))} "
                f"{getattr(array, 'shape', '')}"
            )
        if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
            raise PayloadError(f"{self.name}: values contain NaN or infinity")
        return array
