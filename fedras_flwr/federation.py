"""The federated algorithm, free of Flower: what a client holding some users does in a round, and
what the server does with their uploads. The Flower layer (client.py, strategy.py) and the
in-process loop (inprocess.py) both drive these two objects, so neither re-implements the algorithm.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

from fedras_flwr.codecs import ItemUpdate, PayloadError, make_codec, merge_updates, wire_bytes
from fedras_flwr.config import RunConfig
from fedras_flwr.data.split import PURPOSE_INIT, NegativeSampler, SplitDataset, user_rng
from fedras_flwr.downlink import FULL, Broadcast, TableBroadcaster, TableReceiver
from fedras_flwr.hetero import Heterogeneity, Profile, choose_k
from fedras_flwr.metrics import ranking_report
from fedras_flwr.models import Backbone, make_backbone
from fedras_flwr.training import UserRanks, rank_user, train_user

log = logging.getLogger(__name__)

PURPOSE_SERVER_INIT = 100
PURPOSE_SAMPLE_USERS = 101


def make_model(cfg: RunConfig) -> Backbone:
    return make_backbone(cfg.model, cfg.embedding_dim, cfg.mlp_layer_sizes)


def partition_users(num_users: int, partition_id: int, num_partitions: int) -> list[int]:
    """Users hosted by one SuperNode: round-robin, so partitions differ in size by at most one."""
    if not 0 <= partition_id < num_partitions:
        raise ValueError(f"partition-id {partition_id} is outside [0, num-partitions={num_partitions})")
    return list(range(partition_id, num_users, num_partitions))


class UserStore(Protocol):
    """Where a client keeps its users' private state between rounds (embedding, codec residual)."""

    def get(self, key: str) -> np.ndarray | None: ...

    def put(self, key: str, array: np.ndarray) -> None: ...


class MemoryUserStore(dict):
    """A `UserStore` in a plain dict (in-process runs and tests)."""

    def put(self, key: str, array: np.ndarray) -> None:
        self[key] = array


def state_key(user: int, name: str) -> str:
    return f"user/{user}/{name}"


@dataclass(frozen=True)
class ClientUpdate:
    """One user's upload for one round."""

    user: int
    payload: list[np.ndarray]  # the codec's arrays
    dense: list[np.ndarray]  # updated shared dense weights (NeuMF), [] for MF
    num_examples: int
    train_loss: float
    recon_error: float  # ||D - decode(encode(D))|| / ||D||, measured by the client on its own upload
    sim_time: float = 0.0  # simulated seconds of this client's round (hetero.py)
    dense_time: float = 0.0  # the same with the uncompressed (dense) upload: what deadlines derive from
    tier: int = -1  # index of the client's compute tier (-1: no heterogeneity)


@dataclass(frozen=True)
class RoundPlan:
    """What the server tells the clients of a round besides the table."""

    deadline: float = float("inf")  # seconds (deadline policy)
    down_bytes: int = 0  # size of the downlink message the client received


def split_global_arrays(arrays: Sequence[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """The broadcast is [item table, *dense weights]."""
    return arrays[0], list(arrays[1:])


class ClientWorker:
    """The users one client process holds, and what it does with them each round."""

    def __init__(self, cfg: RunConfig, split: SplitDataset, node_config: dict | None = None) -> None:
        self.cfg = cfg
        self.split = split
        self.backbone = make_model(cfg)
        self.codec = make_codec(cfg, split.num_items, self.backbone.item_dim)
        self.hetero = Heterogeneity(cfg)
        self.node_config = {k: v for k, v in (node_config or {}).items() if k in ("device-tier", "uplink-kbps", "downlink-kbps")}
        self._profiles: dict[int, Profile] = {}
        self._dense_upload = wire_bytes([np.empty((split.num_items, self.backbone.item_dim), np.float32)])
        num_dense = len(self.backbone.init_dense(np.random.default_rng(0)))
        self.receiver = TableReceiver(cfg, split.num_items, self.backbone.item_dim, num_dense)
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
    ) -> list[ClientUpdate]:
        item_table, dense = split_global_arrays(global_arrays)
        updates = []
        for user in users:
            result = train_user(
                self.backbone, self.cfg, self.split.users[user], self._sampler(user),
                self.user_vector(store, user), item_table, dense, server_round,
                self.codec.gradient_projector(server_round),
            )
            store.put(state_key(user, "vector"), result.user_vector)
            update = ItemUpdate(ids=result.touched, rows=result.delta)
            if self.cfg.error_feedback:
                update = self._add_residual(store, user, update)
            profile = self.hetero.jittered(self.profile(user), user, server_round) if self.hetero.enabled else None
            k = self._choose_actions(update, profile, plan, result.num_examples)
            payload = self.codec.encode(update, server_round, num_actions=k) if k else self.codec.encode(update, server_round)
            sent = self.codec.decode(payload, server_round)
            error = _relative_error(update, sent)
            if self.cfg.error_feedback:
                self._keep_residual(store, user, update, sent)
            timing = self._timing(profile, plan, result.num_examples, len(update.ids), payload) if profile else {}
            updates.append(
                ClientUpdate(user, payload, result.dense, result.num_examples, result.train_loss, error, **timing)
            )
        return updates

    def _timing(
        self, profile: Profile, plan: RoundPlan, examples: int, rows: int, payload: list[np.ndarray]
    ) -> dict[str, float | int]:
        """Simulated seconds of this round, the same with a dense upload, and the compute tier."""
        actions = self.codec.num_actions(payload) or 0  # clustering cost only for codecs with actions
        return {
            "sim_time": self.hetero.seconds(profile, plan.down_bytes, examples, rows, actions, wire_bytes(payload)),
            "dense_time": self.hetero.seconds(profile, plan.down_bytes, examples, rows, 0, self._dense_upload),
            "tier": [t.name for t in self.hetero.compute].index(profile.device),
        }

    def _choose_actions(self, update: ItemUpdate, profile: Profile | None, plan: RoundPlan, examples: int) -> int | None:
        """K for an adaptive codec under the configured policy (None: the codec's own setting)."""
        if not self.codec.adaptive or self.cfg.k_policy == "fixed":
            return None
        rows = len(update.ids)

        def bytes_at(k: int) -> int:
            return self.codec.predicted_bytes(update, k)

        def time_at(k: int) -> float:
            if profile is None:
                return 0.0
            return self.hetero.seconds(profile, plan.down_bytes, examples, rows, k, bytes_at(k))

        return choose_k(self.cfg, self.cfg.k_candidate_list, rows, time_at, bytes_at, self._dense_upload, plan.deadline)

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


@dataclass(frozen=True)
class RoundTrainStats:
    """What the server measured while aggregating one round (bytes are per client upload, means)."""

    clients: int
    rejected: int
    train_loss: float
    up_bytes: float
    up_bytes_sparse_ref: float
    touched_rows: float
    up_numbers: float
    up_numbers_sparse_ref: float
    mean_k: float | None
    recon_error: float
    sim_round_time: float = 0.0
    stragglers: int = 0
    k_by_tier: dict[str, float] | None = None
    deadline: float = float("inf")

    @classmethod
    def empty(cls, rejected: int = 0) -> "RoundTrainStats":
        nan = float("nan")
        return cls(0, rejected, nan, 0.0, 0.0, 0.0, 0.0, 0.0, None, nan)


class FederatedServer:
    """Holds the global item table and dense weights; samples users, aggregates, scores rounds."""

    def __init__(self, cfg: RunConfig, num_items: int, users: Sequence[int]) -> None:
        self.cfg = cfg
        self.num_items = num_items
        self.users = sorted(users)
        self.backbone = make_model(cfg)
        self.codec = make_codec(cfg, num_items, self.backbone.item_dim)
        rng = np.random.default_rng([cfg.seed, PURPOSE_SERVER_INIT])
        self.item_table = self.backbone.init_items(num_items, cfg.init_std, rng)
        self.dense = self.backbone.init_dense(rng)
        self.reference_dim = make_backbone(cfg.model, cfg.reference_dim, cfg.mlp_layer_sizes).item_dim
        self.broadcaster = TableBroadcaster(cfg, num_items, self.backbone.item_dim)
        self.hetero = Heterogeneity(cfg)
        self.deadline = cfg.deadline_seconds if cfg.deadline_seconds > 0 else float("inf")

    def round_plan(self, down_bytes: int) -> RoundPlan:
        return RoundPlan(deadline=self.deadline, down_bytes=down_bytes)

    # -- what the server sends -------------------------------------------------------------------
    def global_arrays(self) -> list[np.ndarray]:
        return [self.item_table, *self.dense]

    def broadcast(self, holder_version: int | None) -> Broadcast:
        """The training downlink for a node holding table `holder_version` (None: unknown)."""
        return self.broadcaster.message(holder_version, self.item_table, self.dense)

    @property
    def table_version(self) -> int:
        return self.broadcaster.version

    @property
    def up_bytes_dense_ref(self) -> int:
        """CoLR / PFedRec reference: the full float32 table, M x d x 4 bytes (d = reference dim)."""
        return self.num_items * self.reference_dim * 4

    def sample_users(self, server_round: int) -> list[int]:
        """Uniform without replacement over users (not nodes), seeded by (seed, round)."""
        count = min(self.cfg.clients_per_round, len(self.users))
        rng = np.random.default_rng([self.cfg.seed, PURPOSE_SAMPLE_USERS, server_round])
        return sorted(self.users[i] for i in rng.choice(len(self.users), size=count, replace=False))

    def is_eval_round(self, server_round: int) -> bool:
        return server_round % self.cfg.eval_every == 0 or server_round == self.cfg.num_server_rounds

    # -- aggregation -------------------------------------------------------------------------------
    def aggregate(self, updates: Sequence[ClientUpdate], server_round: int) -> RoundTrainStats:
        """Per-item mean over the clients that touched each item, then Q[i] += server_lr * mean_i.

        Updates are folded in user order, so the result does not depend on how users are spread over
        SuperNodes or in which order replies arrive. A payload that fails to decode is rejected alone.
        """
        dim = self.backbone.item_dim
        row_sums = np.zeros((self.num_items, dim), dtype=np.float64)
        row_weights = np.zeros(self.num_items, dtype=np.float64)
        dense_sums = [np.zeros(w.shape, dtype=np.float64) for w in self.dense]
        accepted: list[tuple[ClientUpdate, int, int]] = []
        numbers, actions = [], []
        deadline = self.deadline
        on_time = [u for u in updates if not (self.cfg.stragglers == "drop" and u.sim_time > deadline)]
        stragglers = int(sum(u.sim_time > deadline for u in updates))
        self._next_deadline(updates)
        for update in sorted(on_time, key=lambda u: u.user):
            try:
                decoded = self.codec.decode(update.payload, server_round)
                self._check_dense(update.dense)
                if self.hetero.enabled and not 0 <= update.tier < len(self.hetero.compute):
                    raise PayloadError(f"unknown compute tier index {update.tier}")
            except PayloadError as err:
                log.warning("rejected the update of user %d: %s", update.user, err)
                continue
            weight = float(update.num_examples) if self.cfg.aggregation_weighting == "examples" else 1.0
            row_sums[decoded.ids] += weight * decoded.rows
            row_weights[decoded.ids] += weight
            for total, weights in zip(dense_sums, update.dense):
                total += update.num_examples * weights
            accepted.append((update, wire_bytes(update.payload), len(decoded.ids)))
            numbers.append(self.codec.numbers_sent(update.payload, len(decoded.ids)))
            actions.append(self.codec.num_actions(update.payload))
        round_time = float(max((u.sim_time for u in updates), default=0.0))
        if self.cfg.stragglers == "drop":
            round_time = min(round_time, deadline)
        if not accepted:
            return dataclasses.replace(
                RoundTrainStats.empty(rejected=len(on_time)), sim_round_time=round_time, stragglers=stragglers,
                deadline=deadline,
            )
        touched = np.flatnonzero(row_weights > 0)
        step = self.cfg.server_lr * row_sums[touched] / row_weights[touched, None]
        self.broadcaster.apply(self.item_table, touched, step, server_round)
        examples = sum(u.num_examples for u, _, _ in accepted)
        self.dense = [(total / examples).astype(np.float32) for total in dense_sums]
        rows = np.array([n for _, _, n in accepted], dtype=np.float64)
        known_actions = [k for k in actions if k is not None]
        return RoundTrainStats(
            clients=len(accepted),
            rejected=len(on_time) - len(accepted),
            train_loss=float(np.mean([u.train_loss for u, _, _ in accepted])),
            up_bytes=float(np.mean([b for _, b, _ in accepted])),
            up_bytes_sparse_ref=float(np.mean(rows * (self.reference_dim * 4 + 4))),
            touched_rows=float(np.mean(rows)),
            up_numbers=float(np.mean(numbers)),
            up_numbers_sparse_ref=float(np.mean(rows * self.reference_dim)),
            mean_k=float(np.mean(known_actions)) if known_actions else None,
            recon_error=float(np.mean([u.recon_error for u, _, _ in accepted])),
            sim_round_time=round_time,
            stragglers=stragglers,
            k_by_tier=self._k_by_tier(accepted, actions),
            deadline=deadline,
        )

    def _next_deadline(self, updates: Sequence[ClientUpdate]) -> None:
        """Deadline of the next round: a quantile of this round's uncompressed client times."""
        if self.hetero.enabled and self.cfg.deadline_seconds <= 0 and updates:
            self.deadline = float(np.quantile([u.dense_time for u in updates], self.cfg.deadline_quantile))

    def _k_by_tier(self, accepted: list[tuple[ClientUpdate, int, int]], actions: list[int | None]) -> dict[str, float] | None:
        if not self.hetero.enabled or any(k is None for k in actions):
            return None
        by_tier: dict[str, list[int]] = {}
        for (update, _, _), k in zip(accepted, actions):
            by_tier.setdefault(self.hetero.compute[update.tier].name, []).append(int(k))
        return {tier: float(np.mean(ks)) for tier, ks in sorted(by_tier.items())}

    def _check_dense(self, dense: Sequence[np.ndarray]) -> None:
        if len(dense) != len(self.dense) or any(
            w.shape != ref.shape or w.dtype != np.float32 or not np.all(np.isfinite(w)) for w, ref in zip(dense, self.dense)
        ):
            raise PayloadError("dense weights have the wrong count, shape or dtype, or are not finite")

    def evaluation_report(self, ranks: Sequence[UserRanks]) -> dict[str, float]:
        """HR/NDCG at every configured K, sampled and full, for test and validation items."""
        columns = {
            ("", ""): [r.test_sampled for r in ranks],
            ("", "-full"): [r.test_full for r in ranks],
            ("val-", ""): [r.val_sampled for r in ranks],
            ("val-", "-full"): [r.val_full for r in ranks],
        }
        return ranking_report({key: np.asarray(v) for key, v in columns.items()}, self.cfg.topk_list)
