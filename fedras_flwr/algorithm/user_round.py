"""The user side of a round, free of Flower: what a node does for the users it holds (local training,
error feedback, the number of actions, the simulated clock, encoding, ranking) and what it uploads.
The Flower client (flower/numpy_client.py) and the in-process loop (tooling/inprocess.py) both drive
`UserWorker`, so neither re-implements it.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from fedras_flwr.algorithm.components import RunComponents
from fedras_flwr.algorithm.data.split import PURPOSE_INIT, NegativeSampler, SplitDataset, user_rng
from fedras_flwr.algorithm.downlink import FULL, TableReceiver
from fedras_flwr.algorithm.evaluation import UserRanks, rank_user
from fedras_flwr.algorithm.hetero import Heterogeneity, Profile, choose_k
from fedras_flwr.algorithm.round_messages import FitOutcome, RoundPlan, UserUpload, split_global_arrays
from fedras_flwr.algorithm.training import DivergenceError, train_user
from fedras_flwr.algorithm.user_state import UserStore, state_key
from fedras_flwr.codecs import ItemUpdate, merge_updates, wire_bytes
from fedras_flwr.config import RunConfig

log = logging.getLogger(__name__)


class UserWorker:
    """What one node does each round for the users it holds: train, encode and rank them."""

    def __init__(self, cfg: RunConfig, split: SplitDataset, node_config: dict | None = None) -> None:
        self.cfg = cfg
        self.split = split
        parts = RunComponents.build(cfg, split.num_items)
        self.backbone, self.codec, self.weights_codec = parts.backbone, parts.codec, parts.weights_codec
        self.references = parts.references
        self._own_dense_upload = parts.own_dense_upload  # what deadlines derive from
        self.hetero = Heterogeneity(cfg)
        self.node_config = {k: v for k, v in (node_config or {}).items() if k in ("device-tier", "uplink-kbps", "downlink-kbps")}
        self._profiles: dict[int, Profile] = {}
        self.receiver = TableReceiver(cfg, split.num_items, self.backbone.item_dim, len(self.weights_codec.shapes))
        self._samplers: dict[int, NegativeSampler] = {}

    def receive(self, store: UserStore, arrays: Sequence[np.ndarray], kind: str = FULL, version: int = 0) -> list[np.ndarray]:
        """The current [item table, *dense] from a downlink message (see downlink.py)."""
        return self.receiver.receive(store, arrays, kind, version)

    def user_vector(self, store: UserStore, user: int) -> np.ndarray:
        """The private embedding; a user never trained starts from a seed-determined vector."""
        vector = store.get(state_key(user, "vector"))
        if vector is None:
            vector = self.backbone.init_user(self.cfg.init_std, user_rng(self.cfg.seed, user, PURPOSE_INIT))
        return vector

    def _sampler(self, user: int) -> NegativeSampler:
        if user not in self._samplers:
            self._samplers[user] = NegativeSampler(self.split.users[user], self.split.num_items)
        return self._samplers[user]

    def profile(self, user: int) -> Profile:
        if user not in self._profiles:
            self._profiles[user] = self.hetero.profile(user, self.node_config)
        return self._profiles[user]

    def fit(
        self,
        users: Sequence[int],
        global_arrays: Sequence[np.ndarray],
        server_round: int,
        store: UserStore,
        plan: RoundPlan = RoundPlan(),
    ) -> FitOutcome:
        """Train and encode each user; a user whose training diverges is skipped and logged, and its
        state is left as it was, so the other users of this client still land."""
        outcome = FitOutcome([])
        for user in users:
            try:
                outcome.updates.append(self._fit_user(user, global_arrays, server_round, store, plan))
            except DivergenceError as err:
                log.warning("round %d: user %d skipped, its training diverged: %s", server_round, user, err)
                outcome.failed_users.append(user)
        return outcome

    def _fit_user(
        self, user: int, global_arrays: Sequence[np.ndarray], server_round: int, store: UserStore, plan: RoundPlan
    ) -> UserUpload:
        item_table, dense = split_global_arrays(global_arrays)
        result = train_user(
            self.backbone, self.cfg, self.split.users[user], self._sampler(user),
            self.user_vector(store, user), item_table, dense, server_round,
            self.codec.update_basis(server_round),
        )
        update = ItemUpdate(ids=result.touched, rows=result.delta)
        if self.cfg.error_feedback:
            update = self._add_residual(store, user, update)
        weights = self.weights_codec.encode(result.dense, dense)
        profile = self.hetero.jittered(self.profile(user), user, server_round) if self.hetero.enabled else None
        down_bytes = plan.down_bytes.get(user, 0)
        k = self._choose_actions(update, profile, down_bytes, plan.deadline, result.num_examples, wire_bytes(weights))
        payload = self.codec.encode(update, server_round, num_actions=k) if k else self.codec.encode(update, server_round)
        sent = self.codec.decode(payload, server_round)
        error = _relative_error(update, sent)
        store.put(state_key(user, "vector"), result.user_vector)  # only once the user's round succeeded
        if self.cfg.error_feedback:
            self._keep_residual(store, user, update, sent)
        timing = self._timing(profile, down_bytes, result.num_examples, len(update.ids), payload, weights) if profile else {}
        return UserUpload(user, payload, weights, result.num_examples, result.train_loss, error, **timing)

    def _timing(
        self, profile: Profile, down_bytes: int, examples: int, rows: int, payload: list[np.ndarray], weights: list[np.ndarray]
    ) -> dict[str, float | int]:
        """Simulated seconds of this round, the same with a dense upload, and the compute tier."""
        actions = self.codec.num_actions(payload) or 0
        up_bytes = wire_bytes(payload) + wire_bytes(weights)
        return {
            "sim_time": self.hetero.seconds(profile, down_bytes, examples, self.codec.encode_flops(rows, actions), up_bytes),
            "dense_time": self.hetero.seconds(profile, down_bytes, examples, 0.0, self._own_dense_upload),
            "tier": [t.name for t in self.hetero.compute].index(profile.device),
        }

    def _choose_actions(
        self, update: ItemUpdate, profile: Profile | None, down_bytes: int, deadline: float, examples: int, weight_bytes: int
    ) -> int | None:
        """K for an adaptive codec under the configured policy (None: the codec's own setting). The
        bytes at K are the whole upload: the actions and the dense weights."""
        if not self.codec.adaptive or self.cfg.k_policy == "fixed":
            return None
        rows = len(update.ids)

        def bytes_at(k: int) -> int:
            return self.codec.predicted_bytes(update, k) + weight_bytes

        def time_at(k: int) -> float:
            if profile is None:
                return 0.0
            return self.hetero.seconds(profile, down_bytes, examples, self.codec.encode_flops(rows, k), bytes_at(k))

        return choose_k(self.cfg, self.cfg.k_candidate_list, rows, time_at, bytes_at, self.references.dense, deadline)

    @staticmethod
    def _add_residual(store: UserStore, user: int, update: ItemUpdate) -> ItemUpdate:
        """Error feedback: what earlier uploads failed to carry is added to this round's update."""
        ids, rows = store.get(state_key(user, "residual-ids")), store.get(state_key(user, "residual-rows"))
        if ids is None or rows is None or len(ids) == 0:
            return update
        return merge_updates(update, ItemUpdate(ids=ids, rows=rows))

    @staticmethod
    def _keep_residual(store: UserStore, user: int, update: ItemUpdate, sent: ItemUpdate) -> None:
        residual = update.rows.copy()
        positions = np.searchsorted(update.ids, sent.ids)
        residual[positions] -= sent.rows
        keep = np.any(residual != 0, axis=1)
        store.put(state_key(user, "residual-ids"), update.ids[keep])
        store.put(state_key(user, "residual-rows"), residual[keep].astype(np.float32))

    def rank(self, users: Sequence[int], global_arrays: Sequence[np.ndarray], store: UserStore) -> list[UserRanks]:
        item_table, dense = split_global_arrays(global_arrays)
        return [
            rank_user(self.backbone, self.split.users[u], self.user_vector(store, u), item_table, dense) for u in users
        ]



def _relative_error(update: ItemUpdate, sent: ItemUpdate) -> float:
    full = np.zeros_like(update.rows)
    positions = np.searchsorted(update.ids, sent.ids)
    if len(sent.ids) and (np.any(positions >= len(update.ids)) or np.any(update.ids[positions] != sent.ids)):
        raise ValueError("the codec decoded rows the client never touched")
    full[positions] = sent.rows
    norm = float(np.linalg.norm(update.rows))
    return float(np.linalg.norm(update.rows - full)) / norm if norm > 0 else 0.0
