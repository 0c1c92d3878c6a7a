"""The server side of the algorithm, free of Flower: the global item table and dense weights, user
sampling, each round's validation, deadline and aggregation, and the evaluation report. The Flower
strategy and the in-process loop drive it through the session (tooling/session.py).
"""

from __future__ import annotations

import logging
from typing import Mapping, Sequence

import numpy as np

from fedras_flwr.algorithm.aggregation import item_step, mean_dense_weights
from fedras_flwr.algorithm.components import RunComponents
from fedras_flwr.algorithm.downlink import Broadcast, TableBroadcaster
from fedras_flwr.algorithm.evaluation import UserRanks
from fedras_flwr.algorithm.hetero import Heterogeneity
from fedras_flwr.algorithm.metrics import ranking_report
from fedras_flwr.algorithm.round_messages import RoundPlan, UserUpload
from fedras_flwr.algorithm.round_stats import RoundFailures, RoundTrainStats, train_stats, upload_bytes
from fedras_flwr.algorithm.validation import UploadValidator, ValidUpload, arrived_bytes
from fedras_flwr.codecs import PayloadError, wire_bytes
from fedras_flwr.config import RunConfig

log = logging.getLogger(__name__)

PURPOSE_SERVER_INIT = 100
PURPOSE_SAMPLE_USERS = 101


class FederatedServer:
    """Holds the global item table and dense weights; samples users, aggregates, scores rounds."""

    def __init__(self, cfg: RunConfig, num_items: int, users: Sequence[int]) -> None:
        self.cfg = cfg
        self.num_items = num_items
        self.users = sorted(users)
        parts = RunComponents.build(cfg, num_items)
        self.backbone, self.codec, self.weights_codec = parts.backbone, parts.codec, parts.weights_codec
        self.references = parts.references
        rng = np.random.default_rng([cfg.seed, PURPOSE_SERVER_INIT])
        self.item_table = self.backbone.init_items(num_items, cfg.init_std, rng)
        self.dense = self.backbone.init_dense(rng)
        self.reference_dim = self.references.item_dim
        self.broadcaster = TableBroadcaster(cfg, num_items, self.backbone.item_dim)
        self.hetero = Heterogeneity(cfg)
        self.deadline = cfg.deadline_seconds if cfg.deadline_seconds > 0 else float("inf")
        self.tier_names = [t.name for t in self.hetero.compute] if self.hetero.enabled else []
        # an upload larger than this is rejected unread: twice the dense upload is more than any codec needs
        max_upload_bytes = cfg.max_upload_bytes or 2 * parts.own_dense_upload
        self.validator = UploadValidator(
            self.codec, self.weights_codec, max_upload_bytes, len(self.tier_names), cfg.clip_norm, cfg.server_lr
        )

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
        """Exact bytes of the downlink a user holding table `holder_version` receives now."""
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
        self, updates: Sequence[UserUpload], server_round: int, failures: RoundFailures = RoundFailures()
    ) -> RoundTrainStats:
        """Validate every upload, apply the deadline, then the round's step (aggregation.py).

        An invalid upload is rejected alone. The round is skipped, leaving the global model as it was,
        when more SuperNodes failed than `max-failure-fraction` allows, fewer than `min-fit-clients`
        valid updates remain, or the compressed downlink cannot encode the step. (The mean step cannot
        overflow the table: each accepted update alone does not, a mean never exceeds its largest term,
        and decay shrinks rows.)
        """
        valid, rejections, rejected_bytes = [], [], 0
        for update in sorted(updates, key=lambda u: u.user):
            try:
                valid.append(self.validator.validate(update, server_round, self.item_table, self.dense))
            except PayloadError as err:
                log.warning("round %d: rejected the upload of user %d: %s", server_round, update.user, err)
                rejections.append((update.user, str(err)))
                rejected_bytes += arrived_bytes(update)
        deadline = self.deadline
        self._next_deadline([v.update for v in valid])  # a rejected upload must not move the deadline
        late = [v.update.sim_time > deadline for v in valid]
        accepted = [v for v, is_late in zip(valid, late) if not (self.cfg.stragglers == "drop" and is_late)]
        round_time = float(max((v.update.sim_time for v in valid), default=0.0))
        if self.cfg.stragglers == "drop":
            round_time = min(round_time, deadline)
        skipped = self._skip_reason(len(accepted), failures)
        if accepted and not skipped:
            try:
                self._apply(accepted, server_round)
            except PayloadError as err:  # the downlink could not encode this step: nothing was applied
                skipped = f"the downlink step could not be encoded ({err})"
        if accepted and skipped:
            log.warning("round %d: skipped, the global model is unchanged: %s", server_round, skipped)
        return train_stats(
            accepted, len(rejections), upload_bytes(valid, self.codec, self.references), self.codec,
            self.reference_dim, self.tier_names, sim_round_time=round_time, stragglers=int(sum(late)),
            deadline=deadline, failures=failures, rejections=tuple(rejections), rejected_bytes=rejected_bytes,
            skipped=skipped,
        )

    def _apply(self, accepted: Sequence[ValidUpload], server_round: int) -> None:
        """The round's step through the downlink, then the dense weights. All or nothing (PayloadError:
        nothing changed)."""
        touched, step = item_step(
            accepted, self.item_table, self.cfg.aggregation_weighting, self.cfg.server_lr, self.cfg.server_decay
        )
        self.broadcaster.apply(self.item_table, touched, step, server_round)
        self.dense = mean_dense_weights(accepted, self.dense)

    def _skip_reason(self, valid: int, failures: RoundFailures) -> str:
        if failures.fraction > self.cfg.max_failure_fraction:
            return (
                f"{failures.nodes_failed} of {failures.nodes_asked} SuperNodes failed "
                f"(max-failure-fraction {self.cfg.max_failure_fraction})"
            )
        if valid < self.cfg.min_fit_clients:
            return f"{valid} valid client updates (min-fit-clients {self.cfg.min_fit_clients})"
        return ""

    def _next_deadline(self, updates: Sequence[UserUpload]) -> None:
        """Deadline of the next round: a quantile of this round's uncompressed client times."""
        if self.hetero.enabled and self.cfg.deadline_seconds <= 0 and updates:
            self.deadline = float(np.quantile([u.dense_time for u in updates], self.cfg.deadline_quantile))

    def evaluation_report(self, ranks: Sequence[UserRanks]) -> dict[str, float]:
        """HR/NDCG at every configured K, sampled and full, for test and validation items."""
        columns = {
            ("", ""): [r.test_sampled for r in ranks],
            ("", "-full"): [r.test_full for r in ranks],
            ("val-", ""): [r.val_sampled for r in ranks],
            ("val-", "-full"): [r.val_full for r in ranks],
        }
        return ranking_report({key: np.asarray(v) for key, v in columns.items()}, self.cfg.topk_list)
