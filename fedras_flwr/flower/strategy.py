"""Flower strategy: a thin `Strategy` over `ServerSession`.

Users, not SuperNodes, are the federated clients: on start the strategy asks every SuperNode which
users it hosts, then each round samples users, sends every SuperNode the ids of its sampled users,
and hands the decoded uploads to the algorithm. A SuperNode whose reply is broken, that fails or
times out is logged and counted; it never stops the run or touches the global state (the round is
skipped when more than `max-failure-fraction` of the asked SuperNodes fail). A resumed run continues
at the checkpoint's round: Flower numbers the rounds of this process from 1, the strategy adds the offset.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
from flwr.common import (
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    GetPropertiesIns,
    Parameters,
    Scalar,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import Strategy

from fedras_flwr.algorithm.downlink import Broadcast
from fedras_flwr.algorithm.round_stats import RoundFailures
from fedras_flwr.config import RunConfig
from fedras_flwr.flower.wire import pack_vector, unpack_ranks, unpack_updates, unpack_vector
from fedras_flwr.tooling.session import ResumePoint, ServerSession

log = logging.getLogger("fedras_flwr")


class DiscoveryError(RuntimeError):
    """The SuperNodes do not host a consistent, complete set of users."""


class FedRASStrategy(Strategy):
    """Samples users, routes them to their SuperNodes, aggregates compressed item-table uploads."""

    def __init__(self, cfg: RunConfig, node_wait_seconds: float = 600.0, resume: ResumePoint | None = None) -> None:
        self.cfg = cfg
        self.node_wait_seconds = node_wait_seconds
        self.resume = resume
        self.session: ServerSession | None = None
        self._asked: dict[str, list[int]] = {}  # this round's SuperNodes and the users each was asked to train
        self.proxies: dict[str, ClientProxy] = {}
        self.users_of_node: dict[str, list[int]] = {}
        self.node_of_user: dict[int, str] = {}
        self.partition_of: dict[str, int] = {}  # Flower's node ids change between runs, partition ids do not

    # -- start-up ------------------------------------------------------------------------------------
    def initialize_parameters(self, client_manager: ClientManager) -> Parameters:
        num_items, num_users, dataset = self._discover(client_manager)
        users = sorted(self.node_of_user)
        self.session = ServerSession(
            self.cfg, num_items, users, {"dataset": dataset, "runner": "flower", "supernodes": len(self.proxies)},
            self.resume,
        )
        log.info("fedras-flwr: %d users on %d SuperNodes, %d items", num_users, len(self.proxies), num_items)
        return ndarrays_to_parameters(self.session.server.global_arrays())

    def _properties(self, proxies: list[ClientProxy]) -> list[dict[str, Scalar]]:
        """Ask nodes one at a time (concurrent requests from several threads were seen to stall the
        simulation engine), each with a timeout so a silent node is an error, not a hang."""
        properties = []
        for proxy in proxies:
            try:
                properties.append(proxy.get_properties(GetPropertiesIns({}), self.node_wait_seconds, 0).properties)
            except Exception as err:  # noqa: BLE001 - any failure here means the node cannot take part
                raise DiscoveryError(f"SuperNode {proxy.cid} did not describe its users: {err}") from err
        return properties

    def _discover(self, client_manager: ClientManager) -> tuple[int, int, str]:
        """Wait for every partition to connect and check they tile the user set exactly once."""
        deadline = time.monotonic() + self.node_wait_seconds
        if not client_manager.wait_for(1, int(self.node_wait_seconds)):
            raise DiscoveryError(f"no SuperNode connected within {self.node_wait_seconds:.0f} s")
        expected = int(self._properties([next(iter(client_manager.all().values()))])[0]["num-partitions"])
        while len(client_manager.all()) < expected and time.monotonic() < deadline:
            client_manager.wait_for(expected, 5)
        proxies = list(client_manager.all().values())
        props = self._properties(proxies)
        seen: dict[int, str] = {}
        for proxy, prop in zip(proxies, props):
            users = unpack_vector(prop["users"], "<i8", "users").tolist()
            if any(u in seen for u in users):
                raise DiscoveryError(f"SuperNode {proxy.cid} hosts users another SuperNode also hosts")
            seen.update({u: proxy.cid for u in users})
            self.proxies[proxy.cid] = proxy
            self.users_of_node[proxy.cid] = users
            self.partition_of[proxy.cid] = int(prop["partition-id"])
        shapes = {(p["num-items"], p["num-users"], p["num-partitions"], p["dataset"]) for p in props}
        if len(shapes) != 1:
            raise DiscoveryError(f"SuperNodes disagree on the data (items, users, partitions, dataset): {shapes}")
        num_items, num_users, num_partitions, dataset = shapes.pop()
        if sorted(seen) != list(range(int(num_users))):
            raise DiscoveryError(
                f"{len(seen)} of {num_users} users are hosted; start all {num_partitions} partitions "
                f"(partition-id 0..{int(num_partitions) - 1}) before the run"
            )
        self.node_of_user = seen
        return int(num_items), int(num_users), str(dataset)

    # -- training ------------------------------------------------------------------------------------
    def _base_config(self, server_round: int, checkpoint: bool) -> dict[str, Scalar]:
        assert self.session is not None
        return {"server-round": server_round, **self.session.node_instructions(), "checkpoint": int(checkpoint)}

    def _missing_snapshots(self, replies: list[tuple[ClientProxy, Any]], asked: bool) -> list[int]:
        """Partitions asked to snapshot this round whose reply does not confirm it."""
        if not asked:
            return []
        confirmed = {proxy.cid for proxy, res in replies if res.metrics.get("snapshot") == 1}
        return sorted(self.partition_of[cid] for cid in self.proxies if cid not in confirmed)

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        assert self.session is not None
        server_round += self.session.start_round  # Flower counts the rounds of this process only
        by_node: dict[str, list[int]] = {}
        for user in self.session.begin_round(server_round):
            by_node.setdefault(self.node_of_user[user], []).append(user)
        self._asked = by_node
        checkpoint = self.session.snapshot_in_fit(server_round)
        base = self._base_config(server_round, checkpoint)
        serialized: dict[str, Parameters] = {}
        instructions = []
        for cid, users in sorted(by_node.items()):
            message, plan = self.session.downlink(self.partition_of[cid], users)
            config = {
                **base, "users": pack_vector(users, "<i8"), "downlink": message.kind,
                "table-version": message.version, "deadline": plan.deadline if np.isfinite(plan.deadline) else -1.0,
                "down-bytes": pack_vector([plan.down_bytes[u] for u in users], "<i8"),
            }
            instructions.append((self.proxies[cid], FitIns(_serialized(message, serialized), config)))
        if checkpoint:  # idle nodes get no users and no table, only the order to snapshot their state
            idle = {**base, "users": b""}
            instructions += [(self.proxies[c], FitIns(ndarrays_to_parameters([]), idle)) for c in sorted(self.proxies) if c not in by_node]
        return instructions

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        assert self.session is not None
        server_round += self.session.start_round
        server = self.session.server
        updates, delivered, diverged = [], {}, {}
        for proxy, fit_res in results:
            try:
                # the bytes are the client's: a broken .npy (empty, zip, huge shape) raises anything
                arrays = parameters_to_ndarrays(fit_res.parameters)
                asked = set(self._asked.get(proxy.cid, []))
                outcome = unpack_updates(arrays, fit_res.metrics, server.codec, server.weights_codec.num_arrays, asked)
            except Exception as err:  # noqa: BLE001 - one node's reply must never stop the server
                log.warning("round %d: dropped the reply of SuperNode %s: %s", server_round, proxy.cid, _describe(err))
                self._forget_node(proxy.cid, self._asked.get(proxy.cid, []))
                continue
            updates += outcome.updates
            delivered[proxy.cid] = len(outcome.updates)
            diverged[proxy.cid] = len(outcome.failed_users)
        for failure in failures:
            log.warning("round %d: a SuperNode failed during training: %s", server_round, _describe(failure))
            self._forget_table(failure, self._asked)
        asked = {cid: len(users) for cid, users in self._asked.items()}
        # no reply, a broken one, or one that accounts for none of its users
        failed = [cid for cid in asked if not delivered.get(cid) and not diverged.get(cid)]
        lost = RoundFailures(
            nodes_asked=len(asked),
            nodes_failed=len(failed),
            users_lost=sum(n - delivered.get(cid, 0) - diverged.get(cid, 0) for cid, n in asked.items()),
            users_failed=sum(diverged.values()),
        )
        missing = self._missing_snapshots(results, self.session.snapshot_in_fit(server_round))
        stats = self.session.end_training(server_round, updates, lost, missing)
        metrics = {
            "clients": stats.clients, "rejected": stats.rejected, "up-bytes": stats.uploads.mean("total"),
            "failed-supernodes": lost.nodes_failed, "failed-users": lost.users_failed, "skipped": int(bool(stats.skipped)),
        }
        return ndarrays_to_parameters(self.session.server.global_arrays()), metrics

    # -- evaluation ----------------------------------------------------------------------------------
    def configure_evaluate(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, EvaluateIns]]:
        assert self.session is not None
        server_round += self.session.start_round
        if not self.session.server.is_eval_round(server_round):
            return []
        messages = self.session.evaluation_downlink(sorted(self.partition_of.values()))
        config = self._base_config(server_round, self.session.snapshot_in_evaluation(server_round))
        serialized: dict[str, Parameters] = {}
        instructions = []
        for cid in sorted(self.proxies):
            message = messages[self.partition_of[cid]]
            node_config = {**config, "downlink": message.kind, "table-version": message.version}
            instructions.append((self.proxies[cid], EvaluateIns(_serialized(message, serialized), node_config)))
        return instructions

    def aggregate_evaluate(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, EvaluateRes]],
        failures: list[tuple[ClientProxy, EvaluateRes] | BaseException],
    ) -> tuple[float | None, dict[str, Scalar]]:
        assert self.session is not None
        server_round += self.session.start_round
        ranks = {}
        for proxy, res in results:
            try:
                users = set(self.users_of_node.get(proxy.cid, []))
                ranks.update(unpack_ranks(res.metrics, users, self.session.server.num_items))
            except Exception as err:  # noqa: BLE001 - one node's reply must never stop the server
                log.warning("round %d: dropped the evaluation of SuperNode %s: %s", server_round, proxy.cid, err)
        for failure in failures:
            log.warning("round %d: a SuperNode failed during evaluation: %s", server_round, _describe(failure))
            self._forget_table(failure, self.users_of_node)
        missing = self._missing_snapshots(results, self.session.snapshot_in_evaluation(server_round))
        report = self.session.end_evaluation(server_round, ranks, missing)
        return None, {**report, "eval-users": len(ranks)}

    def _forget_table(self, failure: Any, sent_to: dict[str, list[int]]) -> None:
        """A node that failed may not hold what it was sent: it, and the users it was sent a table for
        (`sent_to`, by node), get the full table next time (all when Flower does not say which node failed)."""
        assert self.session is not None
        if isinstance(failure, BaseException):
            self.session.forget_node(None)
        else:
            self._forget_node(failure[0].cid, sent_to.get(failure[0].cid, []))

    def _forget_node(self, cid: str, users: list[int]) -> None:
        assert self.session is not None
        if cid in self.partition_of:
            self.session.forget_node(self.partition_of[cid], users)

    def evaluate(self, server_round: int, parameters: Parameters) -> tuple[float, dict[str, Scalar]] | None:
        """No centralised evaluation: the server holds no user data."""
        return None


def _serialized(message: Broadcast, cache: dict[str, Parameters]) -> Parameters:
    """A downlink message as Flower parameters, serialized once per kind in a round: every node that
    lacks the same thing is sent the same bytes."""
    if message.kind not in cache:
        cache[message.kind] = ndarrays_to_parameters(message.arrays)
    return cache[message.kind]


def _describe(failure: Any, limit: int = 300) -> str:
    """One line per failure (a client's traceback can run to pages)."""
    if isinstance(failure, BaseException):
        text = repr(failure)
    else:
        proxy, res = failure
        text = f"SuperNode {proxy.cid}: {getattr(res, 'status', res)}"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + " ..."
