"""`sparse`: the touched rows in float32 plus their int32 item ids: the honest lossless baseline."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from fedras_flwr.codecs.base import Codec, ItemUpdate


class SparseCodec(Codec):
    name = "sparse"
    lossless = True
    num_arrays = 2

    def encode(self, update: ItemUpdate, server_round: int) -> list[np.ndarray]:
        return [update.ids.astype(np.int32), update.rows.astype(np.float32)]

    def decode(self, arrays: Sequence[np.ndarray], server_round: int) -> ItemUpdate:
        self._expect(arrays, ["int32", "float32"], [1, 2])
        ids = self._check_ids(arrays[0])
        return ItemUpdate(ids=ids, rows=self._check_rows(arrays[1], len(ids)))

    def numbers_sent(self, arrays: Sequence[np.ndarray], rows: int) -> int:
        return arrays[1].size + rows
