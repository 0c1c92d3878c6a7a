"""The federated algorithm, free of Flower: what a client holding some users does in a round, and
what the server does with their uploads. The Flower layer (client.py, strategy.py) and the
in-process loop (inprocess.py) both drive these two objects, so neither re-implements the algorithm.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Protocol, Sequence

import numpy as np

from fedras_flwr.checkpoint import CheckpointError, SnapshotFolder
from fedras_flwr.codecs import (
    ItemUpdate, PayloadError, WeightsCodec, make_codec, merge_updates, serialized_size, shaped_size, wire_bytes,
)
from fedras_flwr.config import RunConfig
from fedras_flwr.data.split import PURPOSE_INIT, NegativeSampler, SplitDataset, user_rng
from fedras_flwr.downlink import FULL, Broadcast, TableBroadcaster, TableReceiver
from fedras_flwr.hetero import Heterogeneity, Profile, choose_k
from fedras_flwr.metrics import ranking_report
from fedras_flwr.models import Backbone, make_backbone
from fedras_flwr.training import DivergenceError, UserRanks, rank_user, train_user

log = logging.getLogger(__name__)

PURPOSE_SERVER_INIT = 100
PURPOSE_SAMPLE_USERS = 101
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def make_model(cfg: RunConfig) -> Backbone:
    return make_backbone(cfg.model, cfg.embedding_dim, cfg.mlp_layer_sizes)


def make_weights_codec(cfg: RunConfig, backbone: Backbone) -> WeightsCodec:
    return WeightsCodec(cfg.effective_dense_upload, [w.shape for w in backbone.init_dense(np.random.default_rng(0))])


@dataclass(frozen=True)
class ByteReferences:
    """Exact wire sizes of the two reference uploads, serialized like every upload (.npy headers
    included) at the reference embedding size: `dense` = the full float32 item table + the float32
    dense weights (FedMF / FedAvg); `sparse(rows)` = int32 ids + float32 touched rows + the float32
    dense weights (the lossless baseline). A dense run is thus 0.00 % below `dense`, a sparse run 0.00 %
    below `sparse`."""

    num_items: int
    item_dim: int
    weights: int  # bytes of the float32 dense weights (0 for MF)

    @classmethod
    def for_run(cls, cfg: RunConfig, num_items: int) -> "ByteReferences":
        backbone = make_backbone(cfg.model, cfg.reference_dim, cfg.mlp_layer_sizes)
        return cls(num_items, backbone.item_dim, wire_bytes(backbone.init_dense(np.random.default_rng(0))))

    @property
    def dense(self) -> int:
        return shaped_size((self.num_items, self.item_dim), np.float32) + self.weights

    def sparse(self, rows: int) -> int:
        return shaped_size((rows,), np.int32) + shaped_size((rows, self.item_dim), np.float32) + self.weights


def own_dense_upload(cfg: RunConfig, num_items: int) -> int:
    """What a client of this run sends uncompressed: the dense reference at the run's own embedding size
    (the references may use a larger one, `reference-embedding-dim`)."""
    return ByteReferences.for_run(cfg.replace(reference_embedding_dim=0), num_items).dense


def partition_users(num_users: int, partition_id: int, num_partitions: int) -> list[int]:
    """Users hosted by one SuperNode: round-robin, so partitions differ in size by at most one."""
    if not 0 <= partition_id < num_partitions:
        raise ValueError(f"partition-id {partition_id} is outside [0, num-partitions={num_partitions})")
    return list(range(partition_id, num_users, num_partitions))


class UserStore(Protocol):
    """Where a client keeps its users' private state between rounds (embedding, codec residual)."""

    def get(self, key: str) -> np.ndarray | None: ...

    def put(self, key: str, array: np.ndarray) -> None: ...

    def keys(self) -> Iterable[str]: ...


class MemoryUserStore(dict):
    """A `UserStore` in a plain dict (in-process runs and tests)."""

    def put(self, key: str, array: np.ndarray) -> None:
        self[key] = array


def state_key(user: int, name: str) -> str:
    return f"user/{user}/{name}"


RESUMED_KEY = "node/resumed-from"  # the resume round whose snapshot this node has loaded


def node_snapshots(state_dir: str | Path, run_key: str, partition_id: int, num_partitions: int) -> SnapshotFolder:
    """Where one node keeps the snapshots of its state for one run (on the node itself)."""
    return SnapshotFolder(Path(state_dir) / run_key / f"partition-{partition_id}-of-{num_partitions}")


@dataclass(frozen=True)
class ClientUpdate:
    """One user's upload for one round."""

    user: int
    payload: list[np.ndarray]  # the codec's arrays
    dense: list[np.ndarray]  # the dense weights' arrays as `WeightsCodec` encodes them (NeuMF), [] for MF
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
    #: per user, the bytes of the downlink it received (what one device per user would download)
    down_bytes: Mapping[int, int] = field(default_factory=dict)


@dataclass
class FitOutcome:
    """What a client's users produced in one round: their uploads, and the users whose training
    diverged (skipped, their state not saved)."""

    updates: list[ClientUpdate]
    failed_users: list[int] = field(default_factory=list)


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
        self.weights_codec = make_weights_codec(cfg, self.backbone)
        self.references = ByteReferences.for_run(cfg, split.num_items)
        self._own_dense_upload = own_dense_upload(cfg, split.num_items)  # what deadlines derive from
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
    ) -> ClientUpdate:
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
        return ClientUpdate(user, payload, weights, result.num_examples, result.train_loss, error, **timing)

    def _timing(
        self, profile: Profile, down_bytes: int, examples: int, rows: int, payload: list[np.ndarray], weights: list[np.ndarray]
    ) -> dict[str, float | int]:
        """Simulated seconds of this round, the same with a dense upload, and the compute tier."""
        actions = self.codec.num_actions(payload) or 0  # clustering cost only for codecs with actions
        up_bytes = wire_bytes(payload) + wire_bytes(weights)
        return {
            "sim_time": self.hetero.seconds(profile, down_bytes, examples, rows, actions, up_bytes),
            "dense_time": self.hetero.seconds(profile, down_bytes, examples, rows, 0, self._own_dense_upload),
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
            return self.hetero.seconds(profile, down_bytes, examples, rows, k, bytes_at(k))

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

    @staticmethod
    def save_state(store: UserStore, snapshots: SnapshotFolder, server_round: int) -> None:
        """Snapshot the node's state at the end of `server_round` (a checkpoint round): its users'
        private state and the item table it holds (the compressed downlink builds on it)."""
        kept = {k: store.get(k) for k in store.keys() if k.startswith(("user/", "node/")) and k != RESUMED_KEY}
        snapshots.write(server_round, kept, {})

    @staticmethod
    def resume_once(store: UserStore, snapshots: SnapshotFolder, resume_round: int) -> None:
        """In a run resumed from round r, before the node does anything: its users' state as of r.

        A node without that snapshot (it was lost, or the node is new) logs it and its users restart
        from their initial vectors; the run goes on."""
        if resume_round <= 0:
            return
        marker = store.get(RESUMED_KEY)
        if marker is not None and int(marker[0]) == resume_round:
            return
        try:
            _, arrays = snapshots.read(resume_round)
        except CheckpointError as err:
            log.warning("%s: this node's users restart from their initial state", err)
            arrays = {}
        for key, array in arrays.items():
            store.put(key, array)
        store.put(RESUMED_KEY, np.array([resume_round], dtype=np.int64))

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


def _arrived_bytes(update: ClientUpdate) -> int:
    """Serialized size of an upload's arrays, whatever they hold (arrays Flower cannot have carried count 0)."""
    arrays = [*update.payload, *update.dense]
    return sum(serialized_size(a) for a in arrays if isinstance(a, np.ndarray) and not a.dtype.hasobject)


@dataclass(frozen=True)
class _ValidUpload:
    update: ClientUpdate
    size: int  # exact bytes of the whole upload
    decoded: ItemUpdate
    weights: list[np.ndarray]  # the decoded dense weights


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
        self.weights_codec = make_weights_codec(cfg, self.backbone)
        self.references = ByteReferences.for_run(cfg, num_items)
        self.reference_dim = self.references.item_dim
        self.broadcaster = TableBroadcaster(cfg, num_items, self.backbone.item_dim)
        self.hetero = Heterogeneity(cfg)
        self.deadline = cfg.deadline_seconds if cfg.deadline_seconds > 0 else float("inf")
        # an upload larger than this is rejected unread: twice the dense upload is more than any codec needs
        self.max_upload_bytes = cfg.max_upload_bytes or 2 * own_dense_upload(cfg, num_items)

    def round_plan(self, down_bytes: Mapping[int, int]) -> RoundPlan:
        return RoundPlan(deadline=self.deadline, down_bytes=dict(down_bytes))

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """Arrays and scalars a checkpoint needs to continue this server bit for bit."""
        arrays = {"item-table": self.item_table, **{f"dense-{i}": w for i, w in enumerate(self.dense)}}
        arrays.update({f"downlink-{k}": v for k, v in self.broadcaster.state().items()})
        return arrays, {"deadline": self.deadline if np.isfinite(self.deadline) else -1.0}

    def load_state(self, arrays: dict[str, np.ndarray], scalars: dict[str, float]) -> None:
        """Inverse of `state`, checked against this run's shapes."""
        expected = {"item-table": self.item_table, **{f"dense-{i}": w for i, w in enumerate(self.dense)}}
        for key, reference in expected.items():
            if key not in arrays or arrays[key].shape != reference.shape:
                raise ValueError(f"the checkpoint's {key} does not match this run's model")
        self.item_table = arrays["item-table"].astype(np.float32).copy()
        self.dense = [arrays[f"dense-{i}"].astype(np.float32).copy() for i in range(len(self.dense))]
        self.broadcaster.load_state({k[len("downlink-"):]: v for k, v in arrays.items() if k.startswith("downlink-")})
        self.deadline = scalars["deadline"] if scalars["deadline"] >= 0 else float("inf")

    # -- what the server sends -------------------------------------------------------------------
    def global_arrays(self) -> list[np.ndarray]:
        return [self.item_table, *self.dense]

    def broadcast(self, holder_version: int | None) -> Broadcast:
        """The training downlink for a node holding table `holder_version` (None: unknown)."""
        return self.broadcaster.message(holder_version, self.item_table, self.dense)

    def downlink_bytes(self, holder_version: int | None) -> int:
        """Exact bytes of the downlink a client holding table `holder_version` receives now."""
        return wire_bytes(self.broadcast(holder_version).arrays)

    @property
    def table_version(self) -> int:
        return self.broadcaster.version

    def sample_users(self, server_round: int) -> list[int]:
        """Uniform without replacement over users (not nodes), seeded by (seed, round)."""
        count = min(self.cfg.clients_per_round, len(self.users))
        rng = np.random.default_rng([self.cfg.seed, PURPOSE_SAMPLE_USERS, server_round])
        return sorted(self.users[i] for i in rng.choice(len(self.users), size=count, replace=False))

    def is_eval_round(self, server_round: int) -> bool:
        return server_round % self.cfg.eval_every == 0 or server_round == self.cfg.num_server_rounds

    # -- aggregation -------------------------------------------------------------------------------
    def aggregate(
        self, updates: Sequence[ClientUpdate], server_round: int, failures: RoundFailures = RoundFailures()
    ) -> RoundTrainStats:
        """Per-item mean over the clients that touched each item, then
        Q[i] += server_lr * mean_i - server_decay * Q[i] for those items.

        Updates are folded in user order, so the result does not depend on how users are spread over
        SuperNodes or in which order replies arrive. An invalid upload is rejected alone (`validate`).
        The round is skipped, leaving the global model as it was, when more SuperNodes failed than
        `max-failure-fraction` allows, fewer than `min-fit-clients` valid updates remain, or the
        compressed downlink cannot encode the step. (The mean step cannot overflow the table: each
        accepted update alone does not, a mean never exceeds its largest term, and decay shrinks rows.)
        """
        valid, rejections, rejected_bytes = [], [], 0
        for update in sorted(updates, key=lambda u: u.user):
            try:
                valid.append(self.validate(update, server_round))
            except PayloadError as err:
                log.warning("round %d: rejected the upload of user %d: %s", server_round, update.user, err)
                rejections.append((update.user, str(err)))
                rejected_bytes += _arrived_bytes(update)
        deadline = self.deadline
        self._next_deadline([v.update for v in valid])  # a rejected upload must not move the deadline
        stragglers = int(sum(v.update.sim_time > deadline for v in valid))
        accepted = [v for v in valid if not (self.cfg.stragglers == "drop" and v.update.sim_time > deadline)]
        round_time = float(max((v.update.sim_time for v in valid), default=0.0))
        if self.cfg.stragglers == "drop":
            round_time = min(round_time, deadline)
        context = {
            "sim_round_time": round_time, "stragglers": stragglers, "deadline": deadline, "failures": failures,
            "rejections": tuple(rejections), "rejected_bytes": rejected_bytes,
            "skipped": self._skip_reason(len(accepted), failures),
        }
        uploads = self._upload_bytes(valid)
        if not accepted:
            return dataclasses.replace(RoundTrainStats.empty(len(rejections), uploads), **context)
        if not context["skipped"]:
            try:
                self._apply(accepted, server_round)
            except PayloadError as err:  # the downlink could not encode this step: nothing was applied
                context["skipped"] = f"the downlink step could not be encoded ({err})"
        if context["skipped"]:
            log.warning("round %d: skipped, the global model is unchanged: %s", server_round, context["skipped"])
        rows = np.array([len(v.decoded.ids) for v in accepted], dtype=np.float64)
        actions = [self.codec.num_actions(v.update.payload) for v in accepted]
        known_actions = [k for k in actions if k is not None]
        return RoundTrainStats(
            clients=len(accepted),
            rejected=len(rejections),
            train_loss=float(np.mean([v.update.train_loss for v in accepted])),
            uploads=uploads,
            touched_rows=float(np.mean(rows)),
            up_numbers=float(np.mean([self.codec.numbers_sent(v.update.payload, len(v.decoded.ids)) for v in accepted])),
            up_numbers_sparse_ref=float(np.mean(rows * self.reference_dim)),
            mean_k=float(np.mean(known_actions)) if known_actions else None,
            recon_error=float(np.mean([v.update.recon_error for v in accepted])),
            k_by_tier=self._k_by_tier([v.update for v in accepted], actions),
            **context,
        )

    def _apply(self, accepted: Sequence[_ValidUpload], server_round: int) -> None:
        """The round's step: per-item mean of the accepted rows (and server decay) through the downlink,
        and the example-weighted mean of the dense weights. All or nothing (PayloadError: nothing changed)."""
        row_sums = np.zeros((self.num_items, self.backbone.item_dim), dtype=np.float64)
        row_weights = np.zeros(self.num_items, dtype=np.float64)
        dense_sums = [np.zeros(w.shape, dtype=np.float64) for w in self.dense]
        for valid in accepted:
            weight = float(valid.update.num_examples) if self.cfg.aggregation_weighting == "examples" else 1.0
            row_sums[valid.decoded.ids] += weight * valid.decoded.rows
            row_weights[valid.decoded.ids] += weight
            for total, weights in zip(dense_sums, valid.weights):
                total += valid.update.num_examples * weights
        touched = np.flatnonzero(row_weights > 0)
        step = self.cfg.server_lr * row_sums[touched] / row_weights[touched, None]
        if self.cfg.server_decay:
            step -= self.cfg.server_decay * self.item_table[touched]
        self.broadcaster.apply(self.item_table, touched, step, server_round)
        examples = sum(v.update.num_examples for v in accepted)
        self.dense = [(total / examples).astype(np.float32) for total in dense_sums]

    def _upload_bytes(self, valid: Sequence[_ValidUpload]) -> UploadBytes:
        symbols = [self.codec.symbol_bytes(v.update.payload, v.decoded) or (0, 0) for v in valid]
        return UploadBytes(
            count=len(valid),
            total=sum(v.size for v in valid),
            weights=sum(wire_bytes(v.update.dense) for v in valid),
            dense_ref=len(valid) * self.references.dense,
            sparse_ref=sum(self.references.sparse(len(v.decoded.ids)) for v in valid),
            symbols=sum(coded for coded, _ in symbols),
            symbols_plain=sum(plain for _, plain in symbols),
        )

    def _skip_reason(self, valid: int, failures: RoundFailures) -> str:
        if failures.fraction > self.cfg.max_failure_fraction:
            return (
                f"{failures.nodes_failed} of {failures.nodes_asked} SuperNodes failed "
                f"(max-failure-fraction {self.cfg.max_failure_fraction})"
            )
        if valid < self.cfg.min_fit_clients:
            return f"{valid} valid client updates (min-fit-clients {self.cfg.min_fit_clients})"
        return ""

    def validate(self, update: ClientUpdate, server_round: int) -> _ValidUpload:
        """Size, decoded update and decoded dense weights of an upload (clipped to `clip-norm` if set);
        PayloadError on anything malformed, so a hostile client cannot crash or poison the server."""
        arrays = [*update.payload, *update.dense]
        if any(not isinstance(a, np.ndarray) or a.dtype.hasobject for a in arrays):
            raise PayloadError("every upload array must be a plain numpy array")
        size = wire_bytes(arrays)
        if size > self.max_upload_bytes:
            raise PayloadError(f"upload of {size:,} B exceeds max-upload-bytes ({self.max_upload_bytes:,} B)")
        decoded = self.codec.check_decoded(self.codec.decode(update.payload, server_round))
        weights = self.weights_codec.decode(update.dense, self.dense)
        if self.hetero.enabled and not 0 <= update.tier < len(self.hetero.compute):
            raise PayloadError(f"unknown compute tier index {update.tier}")
        decoded, weights = self._clip(decoded, weights)
        with np.errstate(over="ignore", invalid="ignore"):
            stepped = self.item_table[decoded.ids] + self.cfg.server_lr * decoded.rows.astype(np.float64)
        if not np.all(np.abs(stepped) <= _FLOAT32_MAX):
            raise PayloadError("the update alone would overflow the float32 item table (set clip-norm)")
        return _ValidUpload(update, size, decoded, weights)

    def _clip(self, decoded: ItemUpdate, dense: Sequence[np.ndarray]) -> tuple[ItemUpdate, list[np.ndarray]]:
        """Scale the update (item rows and the change of the dense weights) to L2 norm <= clip-norm."""
        if self.cfg.clip_norm <= 0:
            return decoded, list(dense)
        deltas = [w.astype(np.float64) - g for w, g in zip(dense, self.dense)]
        norm = float(np.sqrt(np.sum(decoded.rows.astype(np.float64) ** 2) + sum(np.sum(d**2) for d in deltas)))
        if norm <= self.cfg.clip_norm:
            return decoded, list(dense)
        scale = self.cfg.clip_norm / norm
        rows = (decoded.rows.astype(np.float64) * scale).astype(np.float32)
        return ItemUpdate(decoded.ids, rows), [(g + scale * d).astype(np.float32) for g, d in zip(self.dense, deltas)]

    def _next_deadline(self, updates: Sequence[ClientUpdate]) -> None:
        """Deadline of the next round: a quantile of this round's uncompressed client times."""
        if self.hetero.enabled and self.cfg.deadline_seconds <= 0 and updates:
            self.deadline = float(np.quantile([u.dense_time for u in updates], self.cfg.deadline_quantile))

    def _k_by_tier(self, accepted: list[ClientUpdate], actions: list[int | None]) -> dict[str, float] | None:
        if not self.hetero.enabled or any(k is None for k in actions):
            return None
        by_tier: dict[str, list[int]] = {}
        for update, k in zip(accepted, actions):
            by_tier.setdefault(self.hetero.compute[update.tier].name, []).append(int(k))
        return {tier: float(np.mean(ks)) for tier, ks in sorted(by_tier.items())}

    def evaluation_report(self, ranks: Sequence[UserRanks]) -> dict[str, float]:
        """HR/NDCG at every configured K, sampled and full, for test and validation items."""
        columns = {
            ("", ""): [r.test_sampled for r in ranks],
            ("", "-full"): [r.test_full for r in ranks],
            ("val-", ""): [r.val_sampled for r in ranks],
            ("val-", "-full"): [r.val_full for r in ranks],
        }
        return ranking_report({key: np.asarray(v) for key, v in columns.items()}, self.cfg.topk_list)
