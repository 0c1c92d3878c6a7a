"""One run seen from the server: the round protocol shared by the Flower strategy and the
in-process loop (sample -> aggregate -> evaluate -> record)."""

from __future__ import annotations

from typing import Any, Sequence

from fedras_flwr.codecs import wire_bytes
from fedras_flwr.config import RunConfig
from fedras_flwr.downlink import Broadcast
from fedras_flwr.federation import ClientUpdate, FederatedServer, RoundPlan, RoundTrainStats
from fedras_flwr.results import RunRecorder
from fedras_flwr.training import UserRanks


class ServerSession:
    """Drives a `FederatedServer` through rounds and records what happened."""

    def __init__(self, cfg: RunConfig, num_items: int, users: Sequence[int], run_info: dict[str, Any]) -> None:
        self.cfg = cfg
        self.server = FederatedServer(cfg, num_items, users)
        self.recorder = RunRecorder(cfg, {"num-users": len(users), "num-items": num_items, **run_info})
        self._pending: RoundTrainStats | None = None
        self._down_messages: list[int] = []
        self.summary: dict[str, Any] | None = None

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

    def end_training(self, server_round: int, updates: Sequence[ClientUpdate]) -> RoundTrainStats:
        stats = self.server.aggregate(updates, server_round)
        self._pending = stats
        if not self.server.is_eval_round(server_round):
            self._record(server_round, None)
        return stats

    def end_evaluation(self, server_round: int, ranks: Sequence[UserRanks]) -> dict[str, float]:
        report = self.server.evaluation_report(ranks)
        self._record(server_round, report)
        return report

    def _record(self, server_round: int, evaluation: dict[str, float] | None) -> None:
        stats = self._pending or RoundTrainStats.empty()
        self.recorder.record_round(
            server_round, stats, self._down_messages, self.server.up_bytes_dense_ref, evaluation
        )
        self._pending = None
        if server_round == self.cfg.num_server_rounds:
            self.summary = self.recorder.finish()
