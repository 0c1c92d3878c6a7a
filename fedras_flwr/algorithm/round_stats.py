"""What the server measured in one round: failures, upload bytes against the references, and the
round's training statistics (results.py records them)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from fedras_flwr.algorithm.components import ByteReferences
from fedras_flwr.algorithm.validation import ValidUpload
from fedras_flwr.codecs import Codec, wire_bytes


@dataclass(frozen=True)
class RoundFailures:
    """What of a round did not arrive: SuperNodes without a usable reply (Flower failure, timeout, broken
    reply), the sampled users they hosted, and users whose own training diverged (reported by their node)."""

    nodes_asked: int = 0
    nodes_failed: int = 0
    users_lost: int = 0  # sampled users hosted by the failed nodes
    users_failed: int = 0  # sampled users skipped by their node because their training diverged

    @property
    def fraction(self) -> float:
        return self.nodes_failed / self.nodes_asked if self.nodes_asked else 0.0



@dataclass(frozen=True)
class UploadBytes:
    """Sums over a round's uploads that reached the server and decoded (aggregated or not: they were
    sent), with the references computed for the same uploads."""

    count: int = 0
    total: int = 0  # exact serialized bytes of everything the clients sent: codec arrays + dense weights
    weights: int = 0  # the dense-weight part of `total`
    dense_ref: int = 0
    sparse_ref: int = 0
    symbols: int = 0  # entropy-coded ids and indices (data bytes), for codecs that entropy-code them
    symbols_plain: int = 0  # the same symbols in the plain layout

    def mean(self, name: str) -> float:
        return getattr(self, name) / self.count if self.count else 0.0



@dataclass(frozen=True)
class RoundTrainStats:
    """What the server measured while aggregating one round."""

    clients: int
    rejected: int
    train_loss: float
    uploads: UploadBytes
    touched_rows: float
    up_numbers: float
    up_numbers_sparse_ref: float
    mean_k: float | None
    recon_error: float
    sim_round_time: float = 0.0
    stragglers: int = 0
    k_by_tier: dict[str, float] | None = None
    deadline: float = float("inf")
    failures: RoundFailures = RoundFailures()
    skipped: str = ""  # why the round left the global model unchanged ("" when it was applied)
    rejections: tuple[tuple[int, str], ...] = ()  # (user, reason) of every rejected upload
    rejected_bytes: int = 0  # what the rejected uploads weighed: sent, though not in `uploads`

    @classmethod
    def empty(cls, rejected: int = 0, uploads: UploadBytes = UploadBytes()) -> "RoundTrainStats":
        nan = float("nan")
        return cls(0, rejected, nan, uploads, 0.0, 0.0, 0.0, None, nan)


def upload_bytes(valid: Sequence[ValidUpload], codec: Codec, references: ByteReferences) -> UploadBytes:
    """Byte sums of the uploads that decoded, and the references for the same uploads."""
    symbols = [codec.symbol_bytes(v.update.payload, v.decoded) or (0, 0) for v in valid]
    return UploadBytes(
        count=len(valid),
        total=sum(v.size for v in valid),
        weights=sum(wire_bytes(v.update.dense) for v in valid),
        dense_ref=len(valid) * references.dense,
        sparse_ref=sum(references.sparse(len(v.decoded.ids)) for v in valid),
        symbols=sum(coded for coded, _ in symbols),
        symbols_plain=sum(plain for _, plain in symbols),
    )


def train_stats(
    accepted: Sequence[ValidUpload], rejected: int, uploads: UploadBytes, codec: Codec, reference_dim: int,
    tier_names: Sequence[str], **context: Any,
) -> RoundTrainStats:
    """Means over the accepted uploads; `context` holds the round's timing, failures and skip reason."""
    if not accepted:
        return dataclasses.replace(RoundTrainStats.empty(rejected, uploads), **context)
    rows = np.array([len(v.decoded.ids) for v in accepted], dtype=np.float64)
    actions = [codec.num_actions(v.update.payload) for v in accepted]
    known_actions = [k for k in actions if k is not None]
    return RoundTrainStats(
        clients=len(accepted),
        rejected=rejected,
        train_loss=float(np.mean([v.update.train_loss for v in accepted])),
        uploads=uploads,
        touched_rows=float(np.mean(rows)),
        up_numbers=float(np.mean([codec.numbers_sent(v.update.payload, len(v.decoded.ids)) for v in accepted])),
        up_numbers_sparse_ref=float(np.mean(rows * reference_dim)),
        mean_k=float(np.mean(known_actions)) if known_actions else None,
        recon_error=float(np.mean([v.update.recon_error for v in accepted])),
        k_by_tier=_k_by_tier([v.update.tier for v in accepted], actions, tier_names),
        **context,
    )


def _k_by_tier(tiers: Sequence[int], actions: Sequence[int | None], tier_names: Sequence[str]) -> dict[str, float] | None:
    """Mean K per compute tier (None without heterogeneity or for codecs without actions)."""
    if not tier_names or any(k is None for k in actions):
        return None
    by_tier: dict[str, list[int]] = {}
    for tier, k in zip(tiers, actions):
        by_tier.setdefault(tier_names[tier], []).append(int(k))
    return {tier: float(np.mean(ks)) for tier, ks in sorted(by_tier.items())}
