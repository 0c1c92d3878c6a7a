"""Heterogeneous devices and links: client profiles, a simulated clock and the number-of-actions policy.

A client's simulated round time is
    t = down_bytes / downlink + train_time + encode_time(K) + up_bytes(K) / uplink
with train_time = examples processed x `seconds-per-example` / speed and encode_time = the codec's
multiply-adds at K (FedRAS: k-means, iterations x rows x K x d) x `seconds-per-flop` / speed; up_bytes(K)
is the exact size of the payload at K. Profiles are drawn once per user from the seed (so they do not depend
on which SuperNode hosts the user) and jittered every round by a clipped Gaussian factor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedras_flwr.algorithm.data.split import user_rng
from fedras_flwr.config import ConfigError, RunConfig

PURPOSE_PROFILE, PURPOSE_JITTER = 200, 201


@dataclass(frozen=True)
class Tier:
    name: str
    share: float  # fraction of clients in the tier
    speed: float = 1.0  # compute: relative speed (1 = reference device)
    up_kbps: float = 0.0  # network: uplink and downlink bandwidth in kbit/s
    down_kbps: float = 0.0


# Presets: (compute tiers, network tiers). Speeds are relative to a reference phone; bandwidths in kbit/s.
PRESETS: dict[str, tuple[str, str]] = {
    # everyone on the same good device and link
    "homogeneous": ("mid=1.0@1.0", "wifi=20000/50000@1.0"),
    # speeds and links spread evenly from slow to fast
    "uniform": (
        "slow=0.25@0.25,low=0.5@0.25,mid=1.0@0.25,fast=2.0@0.25",
        "2g=250/1000@0.25,3g=1000/4000@0.25,4g=5000/20000@0.25,wifi=20000/50000@0.25",
    ),
    # most devices old and on poor links
    "mostly-slow": ("slow=0.25@0.7,mid=1.0@0.2,fast=2.0@0.1", "2g=250/1000@0.6,3g=1000/4000@0.3,wifi=20000/50000@0.1"),
    # a realistic mix: a few very slow stragglers among mid-range and fast devices
    "mixed": ("slow=0.2@0.2,mid=1.0@0.5,fast=3.0@0.3", "2g=200/800@0.2,4g=5000/20000@0.5,wifi=30000/80000@0.3"),
}
SCENARIOS = ("none", *PRESETS)


def parse_tiers(text: str, network: bool) -> list[Tier]:
    """`name=speed@share,...` (compute) or `name=up/down@share,...` (network, kbit/s)."""
    tiers = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            name, rest = part.split("=")
            value, share = rest.split("@")
            if network:
                up, down = value.split("/")
                tiers.append(Tier(name, float(share), up_kbps=float(up), down_kbps=float(down)))
            else:
                tiers.append(Tier(name, float(share), speed=float(value)))
        except ValueError as err:
            form = "name=up_kbps/down_kbps@share" if network else "name=speed@share"
            raise ConfigError(f"tier {part!r} is not of the form {form}") from err
    if not tiers or abs(sum(t.share for t in tiers) - 1.0) > 1e-6:
        raise ConfigError(f"tier shares must sum to 1: {text!r}")
    if any(t.share < 0 or (network and (t.up_kbps <= 0 or t.down_kbps <= 0)) or (not network and t.speed <= 0) for t in tiers):
        raise ConfigError(f"tier speeds, bandwidths and shares must be positive: {text!r}")
    return tiers


@dataclass(frozen=True)
class Profile:
    device: str
    network: str
    speed: float
    up_kbps: float
    down_kbps: float


class Heterogeneity:
    """The scenario of a run: profiles, per-round jitter and the clock."""

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        self.enabled = cfg.hetero != "none"
        if self.enabled:
            compute, network = PRESETS[cfg.hetero]
            self.compute = parse_tiers(cfg.compute_tiers or compute, network=False)
            self.network = parse_tiers(cfg.network_tiers or network, network=True)

    def profile(self, user: int, node_config: dict | None = None) -> Profile:
        """The user's profile: drawn from the tier shares, unless the node says what it is."""
        rng = user_rng(self.cfg.seed, user, PURPOSE_PROFILE)
        device = self.compute[rng.choice(len(self.compute), p=[t.share for t in self.compute])]
        link = self.network[rng.choice(len(self.network), p=[t.share for t in self.network])]
        profile = Profile(device.name, link.name, device.speed, link.up_kbps, link.down_kbps)
        return _from_node_config(profile, self.compute, node_config or {})

    def jittered(self, profile: Profile, user: int, server_round: int) -> Profile:
        """This round's profile: speed and bandwidths times a clipped Gaussian factor."""
        if self.cfg.hetero_jitter <= 0:
            return profile
        factors = 1.0 + self.cfg.hetero_jitter * user_rng(self.cfg.seed, user, PURPOSE_JITTER, server_round).standard_normal(3)
        low, high = 0.5, 1.5
        speed, up, down = np.clip(factors, low, high)
        return Profile(
            profile.device, profile.network, float(profile.speed * speed), float(profile.up_kbps * up), float(profile.down_kbps * down)
        )

    def seconds(self, profile: Profile, down_bytes: float, examples: int, encode_flops: float, up_bytes: float) -> float:
        """Simulated time of one client round (0 in the `none` scenario)."""
        if not self.enabled:
            return 0.0
        cfg = self.cfg
        train = examples * cfg.local_epochs * cfg.seconds_per_example / profile.speed
        encode = encode_flops * cfg.seconds_per_flop / profile.speed
        return float(down_bytes * 8 / (profile.down_kbps * 1000) + train + encode + up_bytes * 8 / (profile.up_kbps * 1000))


def _from_node_config(profile: Profile, compute: list[Tier], node_config: dict) -> Profile:
    """A deployed SuperNode may state its profile: `device-tier`, `uplink-kbps`, `downlink-kbps`."""
    if not node_config:
        return profile
    speed = profile.speed
    if "device-tier" in node_config:
        tier = next((t for t in compute if t.name == str(node_config["device-tier"])), None)
        if tier is None:
            raise ConfigError(f"device-tier {node_config['device-tier']!r} is not one of {[t.name for t in compute]}")
        speed = tier.speed
    return Profile(
        str(node_config.get("device-tier", profile.device)),
        "node-config" if "uplink-kbps" in node_config else profile.network,
        speed,
        float(node_config.get("uplink-kbps", profile.up_kbps)),
        float(node_config.get("downlink-kbps", profile.down_kbps)),
    )


def choose_k(cfg: RunConfig, candidates: list[int], rows: int, time_at, bytes_at, dense_ref: float, deadline: float) -> int:
    """The number of actions for one client under an adaptive policy (under `fixed`, the codec keeps its own).

    deadline: the largest candidate (capped at the client's touched rows) whose predicted time fits the
    deadline, else the smallest. target-ratio: the largest candidate (capped the same way) whose payload is at
    most `target-ratio` x the dense reference, else the smallest, whose upload then exceeds the target.
    """
    if cfg.k_policy not in ("deadline", "target-ratio"):
        raise ValueError(f"choose_k is for the adaptive policies, not {cfg.k_policy!r}")
    usable = sorted({min(k, max(rows, 1)) for k in candidates})
    if cfg.k_policy == "deadline":
        fitting = [k for k in usable if time_at(k) <= deadline]
    else:
        fitting = [k for k in usable if bytes_at(k) <= cfg.target_ratio * dense_ref]
    return fitting[-1] if fitting else usable[0]
