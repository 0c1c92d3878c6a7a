"""`dense`: the classic FedMF / PFedRec upload, the full M x d update table in float32.

Untouched rows are zeros; the server treats the non-zero rows as the touched set so that per-item
aggregation is the same as for every other codec (only the bytes differ).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from fedras_flwr.codecs.base import Codec, ItemUpdate


class DenseCodec(Codec):
    name = "dense"
    lossless = True
    num_arrays = 1

    def encode(self, update: ItemUpdate, server_round: int) -> list[np.ndarray]:
        table = np.zeros((self.num_items, self.dim), dtype=np.float32)
        table[update.ids] = update.rows
        return [table]

    def decode(self, arrays: Sequence[np.ndarray], server_round: int) -> ItemUpdate:
        self._expect(arrays, ["float32"], [2])
        table = self._check_rows(arrays[0], self.num_items)
        ids = np.flatnonzero(np.any(table != 0, axis=1))
        return ItemUpdate(ids=ids, rows=table[ids])

    def numbers_sent(self, arrays: Sequence[np.ndarray], rows: int) -> int:
        return self.num_items * self.dim
