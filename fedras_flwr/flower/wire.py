"""How several users' uploads share one SuperNode reply, in plain numpy (no Flower here).

A reply carries, for each user in order, the codec's arrays followed by the dense-weight arrays; small
per-user vectors (user ids, example counts, losses, ranks, users whose training diverged) travel as
little-endian byte strings in the reply's metrics. Everything is validated on the way in: a malformed
reply raises `WireError`.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from fedras_flwr.algorithm.evaluation import UserRanks
from fedras_flwr.algorithm.round_messages import FitOutcome, UserUpload
from fedras_flwr.codecs import Codec


class WireError(ValueError):
    """A reply whose structure does not match what was asked for."""


def pack_vector(values: Sequence[int] | Sequence[float] | np.ndarray, dtype: str) -> bytes:
    return np.asarray(values, dtype=dtype).tobytes()


def unpack_vector(blob: object, dtype: str, name: str) -> np.ndarray:
    if not isinstance(blob, bytes) or len(blob) % np.dtype(dtype).itemsize:
        raise WireError(f"field {name!r} must be a byte string of {dtype} values")
    return np.frombuffer(blob, dtype=dtype)


def pack_updates(outcome: FitOutcome, codec: Codec) -> tuple[list[np.ndarray], dict[str, bytes | str]]:
    updates = outcome.updates
    arrays = [array for u in updates for array in (*u.payload, *u.dense)]
    metrics: dict[str, bytes | str] = {
        "codec": codec.tag,
        "failed-users": pack_vector(outcome.failed_users, "<i8"),
        "users": pack_vector([u.user for u in updates], "<i8"),
        "num-examples": pack_vector([u.num_examples for u in updates], "<i8"),
        "train-loss": pack_vector([u.train_loss for u in updates], "<f8"),
        "recon-error": pack_vector([u.recon_error for u in updates], "<f8"),
        "sim-time": pack_vector([u.sim_time for u in updates], "<f8"),
        "dense-time": pack_vector([u.dense_time for u in updates], "<f8"),
        "tier": pack_vector([u.tier for u in updates], "<i8"),
    }
    return arrays, metrics


def unpack_updates(
    arrays: Sequence[np.ndarray], metrics: Mapping[str, object], codec: Codec, num_dense: int, asked: set[int]
) -> FitOutcome:
    """Inverse of `pack_updates`; only users the server asked this node for are accepted, each once."""
    if metrics.get("codec") != codec.tag:
        raise WireError(f"the reply is encoded with codec {metrics.get('codec')!r}, this run expects {codec.tag!r}")
    arrays_per_user = codec.num_arrays
    users = unpack_vector(metrics.get("users"), "<i8", "users")
    examples = unpack_vector(metrics.get("num-examples"), "<i8", "num-examples")
    losses = unpack_vector(metrics.get("train-loss"), "<f8", "train-loss")
    errors = unpack_vector(metrics.get("recon-error"), "<f8", "recon-error")
    times = unpack_vector(metrics.get("sim-time"), "<f8", "sim-time")
    dense_times = unpack_vector(metrics.get("dense-time"), "<f8", "dense-time")
    tiers = unpack_vector(metrics.get("tier"), "<i8", "tier")
    failed = unpack_vector(metrics.get("failed-users"), "<i8", "failed-users").tolist()
    if not len(users) == len(examples) == len(losses) == len(errors) == len(times) == len(dense_times) == len(tiers):
        raise WireError("the per-user fields differ in length")
    if not (np.all(np.isfinite(times)) and np.all(times >= 0) and np.all(np.isfinite(dense_times)) and np.all(dense_times >= 0)):
        raise WireError("simulated times must be finite and non-negative")
    if len(arrays) != len(users) * (arrays_per_user + num_dense):
        raise WireError(f"{len(arrays)} arrays for {len(users)} users, expected {arrays_per_user + num_dense} each")
    named = users.tolist() + failed
    if len(set(named)) != len(named) or not set(named) <= asked:
        raise WireError("the reply names users that were not asked for, or names one twice")
    if np.any(examples <= 0) or not np.all(np.isfinite(losses)) or not np.all(np.isfinite(errors)):
        raise WireError("num-examples must be positive, train-loss and recon-error finite")
    step = arrays_per_user + num_dense
    updates = [
        UserUpload(
            user=int(user),
            payload=list(arrays[i * step : i * step + arrays_per_user]),
            dense=list(arrays[i * step + arrays_per_user : (i + 1) * step]),
            num_examples=int(examples[i]),
            train_loss=float(losses[i]),
            recon_error=float(errors[i]),
            sim_time=float(times[i]),
            dense_time=float(dense_times[i]),
            tier=int(tiers[i]),
        )
        for i, user in enumerate(users)
    ]
    return FitOutcome(updates, [int(user) for user in failed])


_RANK_FIELDS = ("test_sampled", "test_full", "val_sampled", "val_full")


def pack_ranks(users: Sequence[int], ranks: Sequence[UserRanks]) -> dict[str, bytes]:
    packed = {"users": pack_vector(users, "<i8")}
    for field in _RANK_FIELDS:
        packed[field] = pack_vector([getattr(r, field) for r in ranks], "<i8")
    return packed


def unpack_ranks(metrics: Mapping[str, object], expected_users: set[int], num_items: int) -> dict[int, UserRanks]:
    """Inverse of `pack_ranks`; a rank is a count of items, so it lies in [0, num_items)."""
    users = unpack_vector(metrics.get("users"), "<i8", "users")
    columns = [unpack_vector(metrics.get(field), "<i8", field) for field in _RANK_FIELDS]
    if any(len(c) != len(users) for c in columns) or set(users.tolist()) != expected_users:
        raise WireError("evaluation reply does not cover exactly the node's users")
    if any(np.any(c < 0) or np.any(c >= num_items) for c in columns):
        raise WireError(f"ranks must lie in [0, {num_items})")
    return {int(u): UserRanks(*(int(c[i]) for c in columns)) for i, u in enumerate(users)}
