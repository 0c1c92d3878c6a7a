"""One run seen from the server: the round protocol shared by the Flower strategy and the
in-process loop (sample -> aggregate -> evaluate -> record -> checkpoint), and resuming from a checkpoint."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from fedras_flwr.algorithm.downlink import Broadcast
from fedras_flwr.algorithm.evaluation import UserRanks
from fedras_flwr.algorithm.round_messages import RoundPlan, UserUpload
from fedras_flwr.algorithm.round_stats import RoundFailures, RoundTrainStats
from fedras_flwr.algorithm.server import FederatedServer
from fedras_flwr.config import ConfigError, RunConfig
from fedras_flwr.tooling.checkpoint import CheckpointError, SnapshotFolder, read_snapshot
from fedras_flwr.tooling.results import RunRecorder

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"  # server snapshots, inside the run's out-dir
CLIENT_STATE = "client-state"  # default home of the nodes' snapshots, inside the run's out-dir
#: keys that may differ between a checkpointed run and the run that resumes it
RESUMABLE_CHANGES = frozenset(
    {
        "num-server-rounds", "out-dir", "resume", "checkpoint-every", "round-timeout", "data-dir", "cache-dir",
        "verify-checksums", "verbosity",
    }
)


def run_key(cfg: RunConfig) -> str:
    """Names one run and its resumptions (the config except what a resume may change). Nodes keep their
    snapshots under it, so runs that share a node's state-dir never read each other's users."""
    kept = {k: v for k, v in sorted(cfg.to_flat().items()) if k not in RESUMABLE_CHANGES}
    return hashlib.sha256(json.dumps(kept).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ResumePoint:
    """A verified server checkpoint to continue from."""

    path: Path
    meta: dict[str, Any]
    arrays: dict[str, np.ndarray]

    @property
    def round(self) -> int:
        return int(self.meta["round"])

    @property
    def run_dir(self) -> Path:
        return self.path.parent.parent


def find_resume_point(cfg: RunConfig) -> ResumePoint | None:
    """The checkpoint `resume` names (a checkpoint file, or a run's out-dir: its newest checkpoint),
    checked against this run's config. None when `resume` is empty."""
    if not cfg.resume:
        return None
    target = Path(cfg.resume).expanduser().resolve()
    if target.is_dir():
        folder = SnapshotFolder(target / CHECKPOINTS)
        rounds = folder.rounds()
        if not rounds:
            raise CheckpointError(f"resume: {target} holds no checkpoints (looked in {folder.folder})")
        target = folder.path(rounds[-1])
    meta, arrays = read_snapshot(target)
    if "config" not in meta or "server" not in meta:
        raise CheckpointError(f"resume: {target} is not a server checkpoint (a node's snapshot?)")
    point = ResumePoint(target, meta, arrays)
    saved, now = meta["config"], cfg.to_flat()
    changed = sorted(k for k in set(saved) | set(now) if k not in RESUMABLE_CHANGES and saved.get(k) != now.get(k))
    if changed:
        details = ", ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in changed)
        raise ConfigError(f"resume: the run config differs from the checkpoint's ({details})")
    if point.round >= cfg.num_server_rounds:
        raise ConfigError(
            f"resume: {target} is at round {point.round}; raise num-server-rounds above it to continue"
        )
    return point


class ServerSession:
    """Drives a `FederatedServer` through rounds, records what happened and writes checkpoints."""

    def __init__(
        self,
        cfg: RunConfig,
        num_items: int,
        users: Sequence[int],
        run_info: dict[str, Any],
        resume: ResumePoint | None = None,
    ) -> None:
        self.cfg = cfg
        self.server = FederatedServer(cfg, num_items, users)
        info = {"num-users": len(users), "num-items": num_items, **run_info}
        self.start_round = 0
        self.run_key = run_key(cfg)
        self.node_versions: dict[int, int] = {}  # table version each node (by partition id) holds
        # table version each user holds, as if every user were its own device: what downlink bytes count
        self.user_versions: dict[int, int] = {}
        self.resume_state_dir: Path | None = None  # where nodes find the snapshots of the resumed round
        if resume is None:
            self.recorder = RunRecorder(cfg, info)
        else:
            self._check_population(resume, num_items, len(users))
            self.server.load_state(resume.arrays, resume.meta["server"])
            self.node_versions = {int(node): version for node, version in resume.meta["node-versions"].items()}
            self.user_versions = {int(user): version for user, version in resume.meta["user-versions"].items()}
            out_dir = Path(cfg.out_dir).expanduser().resolve() if cfg.out_dir else resume.run_dir
            self.recorder = RunRecorder(cfg, info | {"resumed-from": str(resume.path)}, out_dir, resume.meta["recorder"])
            self.start_round = resume.round
            self.resume_state_dir = resume.run_dir / CLIENT_STATE
            if resume.meta["missing-snapshots"]:
                log.warning(
                    "resume: nodes %s did not confirm their round-%d snapshot; their users may restart from scratch",
                    resume.meta["missing-snapshots"], resume.round,
                )
        self.checkpoints = SnapshotFolder(self.recorder.out_dir / CHECKPOINTS)
        self.client_state_dir = self.recorder.out_dir / CLIENT_STATE
        self._pending: RoundTrainStats | None = None
        self._down_bytes: dict[int, int] = {}  # this round's training downlink, per sampled user
        self._eval_down_bytes: list[int] = []  # this round's evaluation downlink, per evaluated user
        self.summary: dict[str, Any] | None = None

    @staticmethod
    def _check_population(resume: ResumePoint, num_items: int, num_users: int) -> None:
        saved = (resume.meta["num-items"], resume.meta["num-users"])
        if saved != (num_items, num_users):
            raise ConfigError(f"resume: the checkpoint has (items, users) {saved}, this run {(num_items, num_users)}")

    def is_checkpoint_round(self, server_round: int) -> bool:
        every = self.cfg.checkpoint_every
        return every > 0 and (server_round % every == 0 or server_round == self.cfg.num_server_rounds)

    def snapshot_in_fit(self, server_round: int) -> bool:
        """Nodes snapshot their state as it is at the end of a checkpoint round: after training, or
        after evaluation when the round has one (evaluation hands every node the new table)."""
        return self.is_checkpoint_round(server_round) and not self.server.is_eval_round(server_round)

    def snapshot_in_evaluation(self, server_round: int) -> bool:
        return self.is_checkpoint_round(server_round) and self.server.is_eval_round(server_round)

    def node_instructions(self) -> dict[str, str | int]:
        """What every node message carries besides the round: where to write and read snapshots."""
        return {
            "run-key": self.run_key, "state-dir": str(self.client_state_dir),
            "resume-round": self.start_round, "resume-state-dir": str(self.resume_state_dir or self.client_state_dir),
        }

    def begin_round(self, server_round: int) -> list[int]:
        """Users to train this round; each is counted as downloading what it lacks of the current table."""
        users = self.server.sample_users(server_round)
        self._down_bytes = dict(zip(users, self._deliver(users)))
        self._eval_down_bytes = []
        return users

    def _deliver(self, users: Sequence[int]) -> list[int]:
        """Bytes each user downloads to hold the current table (full table, step or dense weights only,
        from the version it holds); they hold it afterwards."""
        version = self.server.table_version
        sizes: dict[int | None, int] = {}
        downloads = []
        for user in users:
            held = self.user_versions.get(user)
            if held not in sizes:
                sizes[held] = self.server.downlink_bytes(held)
            downloads.append(sizes[held])
            self.user_versions[user] = version
        return downloads

    def _node_message(self, node: int) -> Broadcast:
        """What one node lacks of the current table (full table, step or dense weights only); it holds
        the current table afterwards."""
        message = self.server.broadcast(self.node_versions.get(node))
        self.node_versions[node] = message.version
        return message

    def downlink(self, node: int, users: Sequence[int]) -> tuple[Broadcast, RoundPlan]:
        """The training message for one node and the round's plan for its `users`, with what each of
        them downloaded."""
        return self._node_message(node), self.server.round_plan({user: self._down_bytes[user] for user in users})

    def evaluation_downlink(self, nodes: Sequence[int]) -> dict[int, Broadcast]:
        """The evaluation message for each node, like a training one; every user is evaluated, so every
        user is counted as downloading what it lacks of the current table."""
        self._eval_down_bytes = self._deliver(self.server.users)
        return {node: self._node_message(node) for node in nodes}

    def forget_node(self, node: int | None, users: Sequence[int] = ()) -> None:
        """A node that failed may not hold what it was sent: it (and its `users`) get the full table
        next (None: all nodes and users)."""
        if node is None:
            self.node_versions.clear()
            self.user_versions.clear()
            return
        self.node_versions.pop(node, None)
        for user in users:
            self.user_versions.pop(user, None)

    def end_training(
        self,
        server_round: int,
        updates: Sequence[UserUpload],
        failures: RoundFailures = RoundFailures(),
        missing_snapshots: Sequence[int] = (),
    ) -> RoundTrainStats:
        """`missing_snapshots`: nodes asked to snapshot this round that did not confirm it."""
        stats = self.server.aggregate(updates, server_round, failures)
        self._pending = stats
        if not self.server.is_eval_round(server_round):
            self._end_round(server_round, None, missing_snapshots)
        return stats

    def end_evaluation(
        self, server_round: int, ranks: Mapping[int, UserRanks], missing_snapshots: Sequence[int] = ()
    ) -> dict[str, float]:
        """`ranks`: each evaluated user's ranks, by user id. The last round's are also written per user, so two
        runs can be compared user by user (a paired test), not only by their means."""
        report = self.server.evaluation_report([ranks[u] for u in sorted(ranks)])
        if server_round == self.cfg.num_server_rounds:
            self.recorder.write_test_ranks(ranks)
        self._end_round(server_round, report, missing_snapshots)
        return report

    def _end_round(self, server_round: int, evaluation: dict[str, float] | None, missing_snapshots: Sequence[int]) -> None:
        stats = self._pending or RoundTrainStats.empty()
        self.recorder.record_round(server_round, stats, list(self._down_bytes.values()), self._eval_down_bytes, evaluation)
        self._pending = None
        if self.is_checkpoint_round(server_round):
            self._write_checkpoint(server_round, missing_snapshots)
        if server_round == self.cfg.num_server_rounds:
            self.summary = self.recorder.finish()

    def _write_checkpoint(self, server_round: int, missing_snapshots: Sequence[int]) -> None:
        arrays, scalars = self.server.state()
        meta = {
            "config": self.cfg.to_flat(),
            "num-items": self.server.num_items,
            "num-users": len(self.server.users),
            "server": scalars,
            "node-versions": {str(node): version for node, version in sorted(self.node_versions.items())},
            "user-versions": {str(user): version for user, version in sorted(self.user_versions.items())},
            "missing-snapshots": sorted(missing_snapshots),
            "recorder": self.recorder.state(),
        }
        self.checkpoints.write(server_round, arrays, meta)
