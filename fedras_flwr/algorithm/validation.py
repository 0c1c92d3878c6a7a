"""The server's check of one upload before any of it is used: plain arrays, within the size limit,
decodable by the run's codecs, a known compute tier, clipped to `clip-norm`, and unable to overflow the
float32 table. Anything else raises PayloadError, so one hostile or broken client cannot crash or
poison the server."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from fedras_flwr.algorithm.round_messages import UserUpload
from fedras_flwr.codecs import Codec, ItemUpdate, PayloadError, WeightsCodec, serialized_size, wire_bytes

_FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class ValidUpload:
    update: UserUpload
    size: int  # exact bytes of the whole upload
    decoded: ItemUpdate
    weights: list[np.ndarray]  # the decoded dense weights


def arrived_bytes(update: UserUpload) -> int:
    """Serialized size of an upload's arrays, whatever they hold (arrays Flower cannot have carried count 0)."""
    arrays = [*update.payload, *update.dense]
    return sum(serialized_size(a) for a in arrays if isinstance(a, np.ndarray) and not a.dtype.hasobject)


class UploadValidator:
    """Decodes and checks uploads for one run."""

    def __init__(
        self, codec: Codec, weights_codec: WeightsCodec, max_upload_bytes: int, num_tiers: int, clip_norm: float, server_lr: float
    ) -> None:
        self.codec = codec
        self.weights_codec = weights_codec
        self.max_upload_bytes = max_upload_bytes
        self.num_tiers = num_tiers  # compute tiers of the heterogeneity scenario (0: none, tier must be -1)
        self.clip_norm = clip_norm
        self.server_lr = server_lr

    def validate(
        self, update: UserUpload, server_round: int, item_table: np.ndarray, dense: Sequence[np.ndarray]
    ) -> ValidUpload:
        """Size, decoded update and decoded dense weights of an upload (clipped to `clip-norm` if set),
        against the global `item_table` and `dense` weights the clients were sent."""
        arrays = [*update.payload, *update.dense]
        if any(not isinstance(a, np.ndarray) or a.dtype.hasobject for a in arrays):
            raise PayloadError("every upload array must be a plain numpy array")
        size = wire_bytes(arrays)
        if size > self.max_upload_bytes:
            raise PayloadError(f"upload of {size:,} B exceeds max-upload-bytes ({self.max_upload_bytes:,} B)")
        decoded = self.codec.check_decoded(self.codec.decode(update.payload, server_round))
        weights = self.weights_codec.decode(update.dense, dense)
        if self.num_tiers and not 0 <= update.tier < self.num_tiers:
            raise PayloadError(f"unknown compute tier index {update.tier}")
        decoded, weights = self._clip(decoded, weights, dense)
        with np.errstate(over="ignore", invalid="ignore"):
            stepped = item_table[decoded.ids] + self.server_lr * decoded.rows.astype(np.float64)
        if not np.all(np.abs(stepped) <= _FLOAT32_MAX):
            raise PayloadError("the update alone would overflow the float32 item table (set clip-norm)")
        return ValidUpload(update, size, decoded, weights)

    def _clip(
        self, decoded: ItemUpdate, weights: Sequence[np.ndarray], dense: Sequence[np.ndarray]
    ) -> tuple[ItemUpdate, list[np.ndarray]]:
        """Scale the update (item rows and the change of the dense weights) to L2 norm <= clip-norm."""
        if self.clip_norm <= 0:
            return decoded, list(weights)
        deltas = [w.astype(np.float64) - g for w, g in zip(weights, dense)]
        norm = float(np.sqrt(np.sum(decoded.rows.astype(np.float64) ** 2) + sum(np.sum(d**2) for d in deltas)))
        if norm <= self.clip_norm:
            return decoded, list(weights)
        scale = self.clip_norm / norm
        rows = (decoded.rows.astype(np.float64) * scale).astype(np.float32)
        return ItemUpdate(decoded.ids, rows), [(g + scale * d).astype(np.float32) for g, d in zip(dense, deltas)]
