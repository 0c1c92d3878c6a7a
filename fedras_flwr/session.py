"""One run seen from the server: the round protocol shared by the Flower strategy and the
in-process loop (sample -> aggregate -> evaluate -> record -> checkpoint), and resuming from a checkpoint."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fedras_flwr.checkpoint import CheckpointError, SnapshotFolder, read_snapshot
from fedras_flwr.codecs import wire_bytes
from fedras_flwr.config import ConfigError, RunConfig
from fedras_flwr.downlink import Broadcast
from fedras_flwr.federation import ClientUpdate, FederatedServer, RoundFailures, RoundPlan, RoundTrainStats
from fedras_flwr.results import RunRecorder
from fedras_flwr.training import UserRanks

CHECKPOINTS = "checkpoints"  # server snapshots, inside the run's out-dir
CLIENT_STATE = "client-state"  # default home of the nodes' snapshots, inside the run's out-dir
#: keys that may differ between a checkpointed run and the run that resumes it
RESUMABLE_CHANGES = frozenset(
    {"num-server-rounds", "out-dir", "resume", "checkpoint-every", "round-timeout", "data-dir", "cache-dir"}
)


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
        if resume is None:
            self.recorder = RunRecorder(cfg, info)
        else:
            self._check_population(resume, num_items, len(users))
            self.server.load_state(resume.arrays, resume.meta["server"])
            out_dir = Path(cfg.out_dir).expanduser().resolve() if cfg.out_dir else resume.run_dir
            self.recorder = RunRecorder(cfg, info | {"resumed-from": str(resume.path)}, out_dir, resume.meta["recorder"])
            self.start_round = resume.round
        self.checkpoints = SnapshotFolder(self.recorder.out_dir / CHECKPOINTS)
        self.client_state_dir = self.recorder.out_dir / CLIENT_STATE
        self._pending: RoundTrainStats | None = None
        self._down_messages: list[int] = []
        self.summary: dict[str, Any] | None = None

    @staticmethod
    def _check_population(resume: ResumePoint, num_items: int, num_users: int) -> None:
        saved = (resume.meta["num-items"], resume.meta["num-users"])
        if saved != (num_items, num_users):
            raise ConfigError(f"resume: the checkpoint has (items, users) {saved}, this run {(num_items, num_users)}")

    def is_checkpoint_round(self, server_round: int) -> bool:
        every = self.cfg.checkpoint_every
        return every > 0 and (server_round % every == 0 or server_round == self.cfg.num_server_rounds)

    def begin_round(self, server_round: int) -> list[int]:
        """Users to train this round."""
        self._down_messages = []
        return self.server.sample_users(server_round)

    def downlink(self, holder_version: int | None) -> tuple[Broadcast, RoundPlan]:
        """The training message for one node (its exact size is recorded) and the round's plan."""
        message = self.server.broadcast(holder_version)
        size = wire_bytes(message.arrays)
        self._down_messages.append(size)
        return message, self.server.round_plan(size)

    def end_training(
        self, server_round: int, updates: Sequence[ClientUpdate], failures: RoundFailures = RoundFailures()
    ) -> RoundTrainStats:
        stats = self.server.aggregate(updates, server_round, failures)
        self._pending = stats
        if not self.server.is_eval_round(server_round):
            self._end_round(server_round, None)
        return stats

    def end_evaluation(self, server_round: int, ranks: Sequence[UserRanks]) -> dict[str, float]:
        report = self.server.evaluation_report(ranks)
        self._end_round(server_round, report)
        return report

    def _end_round(self, server_round: int, evaluation: dict[str, float] | None) -> None:
        stats = self._pending or RoundTrainStats.empty()
        self.recorder.record_round(
            server_round, stats, self._down_messages, self.server.up_bytes_dense_ref, evaluation
        )
        self._pending = None
        if self.is_checkpoint_round(server_round):
            self._write_checkpoint(server_round)
        if server_round == self.cfg.num_server_rounds:
            self.summary = self.recorder.finish()

    def _write_checkpoint(self, server_round: int) -> None:
        arrays, scalars = self.server.state()
        meta = {
            "config": self.cfg.to_flat(),
            "num-items": self.server.num_items,
            "num-users": len(self.server.users),
            "server": scalars,
            "recorder": self.recorder.state(),
        }
        self.checkpoints.write(server_round, arrays, meta)
