"""Heterogeneity: profiles, the simulated clock, the K policies, stragglers."""

import json

import numpy as np
import pytest
from conftest import tiny_config

from fedras_flwr.algorithm.components import make_model, make_upload_codec
from fedras_flwr.algorithm.hetero import PRESETS, Heterogeneity, Profile, choose_k, parse_tiers
from fedras_flwr.codecs import ItemUpdate, wire_bytes
from fedras_flwr.config import ConfigError, RunConfig
from fedras_flwr.tooling.inprocess import run_inprocess


def test_presets_parse_and_shares_sum_to_one():
    for compute, network in PRESETS.values():
        assert parse_tiers(compute, network=False) and parse_tiers(network, network=True)
    with pytest.raises(ConfigError, match="sum to 1"):
        parse_tiers("a=1@0.5", network=False)
    with pytest.raises(ConfigError, match="form"):
        parse_tiers("a=1", network=True)


def test_profiles_are_per_user_and_follow_the_shares():
    hetero = Heterogeneity(RunConfig(hetero="mixed"))
    profiles = [hetero.profile(u) for u in range(2000)]
    assert profiles[7] == Heterogeneity(RunConfig(hetero="mixed")).profile(7)
    share_slow = np.mean([p.device == "slow" for p in profiles])
    assert share_slow == pytest.approx(0.2, abs=0.03)


def test_node_config_states_the_profile():
    hetero = Heterogeneity(RunConfig(hetero="mixed"))
    profile = hetero.profile(3, {"device-tier": "fast", "uplink-kbps": 123, "downlink-kbps": 456})
    assert (profile.speed, profile.up_kbps, profile.down_kbps) == (3.0, 123.0, 456.0)
    with pytest.raises(ConfigError, match="device-tier"):
        hetero.profile(3, {"device-tier": "quantum"})


def test_jitter_is_clipped_and_seeded():
    hetero = Heterogeneity(RunConfig(hetero="mixed", hetero_jitter=5.0))
    base = hetero.profile(1)
    speeds = [hetero.jittered(base, 1, r).speed / base.speed for r in range(200)]
    assert min(speeds) >= 0.5 and max(speeds) <= 1.5
    assert hetero.jittered(base, 1, 4) == hetero.jittered(base, 1, 4)


def test_clock_by_hand():
    cfg = RunConfig(hetero="homogeneous", seconds_per_example=1e-3, seconds_per_flop=1e-6, local_epochs=2, embedding_dim=4)
    profile = Profile("x", "y", speed=2.0, up_kbps=8.0, down_kbps=16.0)
    seconds = Heterogeneity(cfg).seconds(profile, down_bytes=2000, examples=50, encode_flops=6000, up_bytes=1000)
    expected = 2000 * 8 / 16000 + 50 * 2 * 1e-3 / 2 + 6000 * 1e-6 / 2 + 1000 * 8 / 8000
    assert seconds == pytest.approx(expected)
    assert Heterogeneity(RunConfig()).seconds(profile, 2000, 50, 6000, 1000) == 0.0


def test_encoding_cost_is_the_k_means_work():
    """FedRAS charges iterations x rows x K x d multiply-adds, nothing when the rows go exactly; others nothing."""
    fedras = make_upload_codec(RunConfig(embedding_dim=4).replace(kmeans_iters=10), 400, 4)
    assert fedras.encode_flops(rows=30, num_actions=5) == 10 * 30 * 5 * 4
    assert fedras.encode_flops(rows=5, num_actions=5) == 0.0
    assert make_upload_codec(RunConfig(codec="sparse"), 400, 4).encode_flops(30, 5) == 0.0


@pytest.mark.parametrize(
    "policy, deadline, rows, expected",
    [("deadline", 10.0, 500, 64), ("deadline", 0.1, 500, 2), ("deadline", 1e9, 40, 40), ("target-ratio", 0, 500, 16)],
)
def test_k_policies(policy, deadline, rows, expected):
    # time grows as k / 6.4 s (64 actions take exactly 10 s); bytes as 100 B per action (16 -> 1 % of 200 kB)
    cfg = RunConfig(k_policy=policy, target_ratio=0.01)
    result = choose_k(cfg, [2, 4, 8, 16, 32, 64, 128], rows, lambda k: k / 6.4, lambda k: 100 * k,
                      dense_ref=200_000, deadline=deadline)
    assert result == expected


def test_fixed_policy_leaves_k_to_the_codec():
    with pytest.raises(ValueError, match="adaptive"):
        choose_k(RunConfig(), [2, 4], 100, lambda k: 0, lambda k: 0, 1, 0.0)


@pytest.mark.parametrize("options", [{}, {"cluster_on": "direction"}, {"centroid_dtype": "float32"}])
def test_predicted_bytes_are_exact(options):
    codec = make_upload_codec(RunConfig(codec="fedras").replace(**options), 400, 8)
    rng = np.random.default_rng(0)
    update = ItemUpdate(np.sort(rng.choice(400, 90, replace=False)), rng.standard_normal((90, 8)).astype(np.float32))
    for k in (1, 2, 5, 32, 90, 200):
        assert codec.predicted_bytes(update, k) == wire_bytes(codec.encode(update, 1, num_actions=k))


def test_adaptive_run_records_times_and_tiers(tmp_path):
    cfg = tiny_config(tmp_path, hetero="mixed", k_policy="deadline", num_server_rounds=4, eval_every=2)
    summary = run_inprocess(cfg)
    records = [json.loads(x) for x in (tmp_path / "out" / "rounds.jsonl").read_text().splitlines()]
    assert all(r["sim-round-time"] > 0 for r in records)
    assert records[-1]["sim-time"] == pytest.approx(summary["sim-time"])
    assert any(key.startswith("k-") for key in records[-1]) and records[-1]["deadline"] is not None
    assert {"time-to-target", "target-round", "target-hr"} <= set(summary)


def test_dropping_stragglers_bounds_the_round_time(tmp_path):
    cfg = tiny_config(tmp_path, hetero="mostly-slow", codec="dense", stragglers="drop", deadline_seconds=0.05,
                      num_server_rounds=2, eval_every=1)
    run_inprocess(cfg)
    records = [json.loads(x) for x in (tmp_path / "out" / "rounds.jsonl").read_text().splitlines()]
    assert all(r["sim-round-time"] <= 0.05 + 1e-9 for r in records)
    assert all(r["stragglers"] > 0 and r["clients"] + r["stragglers"] == 8 for r in records)


def test_target_from_a_dense_reference():
    assert RunConfig(target_hr_reference=0.6).target_hr_value == pytest.approx(0.57)
    assert RunConfig(target_hr=0.4).target_hr_value == 0.4


def test_the_clock_charges_k_means_on_the_codecs_rows_neumf_included(tmp_path):
    """NeuMF's item rows are 2d wide (GMF + MLP halves), so its k-means costs twice MF's at the same d."""
    for model, width in (("mf", 8), ("neumf", 16)):
        cfg = tiny_config(tmp_path, model=model, embedding_dim=8, kmeans_iters=10)
        codec = make_upload_codec(cfg, 200, make_model(cfg).item_dim)
        assert codec.encode_flops(rows=30, num_actions=5) == 10 * 30 * 5 * width
