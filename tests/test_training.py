"""Local training: the numpy MF path equals autograd, results are deterministic, state persists."""

import numpy as np
import pytest
import torch

from fedras_flwr.algorithm.data.split import NegativeSampler, leave_one_out
from fedras_flwr.algorithm.data.synthetic import make_synthetic
from fedras_flwr.algorithm.models import MF, NeuMF
from fedras_flwr.algorithm.server import FederatedServer
from fedras_flwr.algorithm.training import _epoch_batches, _NumpyMFStepper, _TorchStepper, train_user
from fedras_flwr.algorithm.user_round import UserWorker
from fedras_flwr.algorithm.user_state import MemoryUserStore
from fedras_flwr.config import MODEL_DEFAULTS, RunConfig


@pytest.mark.parametrize("colr", [False, True], ids=["rows", "colr-basis"])
@pytest.mark.parametrize("optimizer, weight_decay", [("sgd", 0.0), ("sgd", 0.01), ("adam", 0.0), ("adam", 0.01)])
def test_numpy_mf_matches_autograd(optimizer, weight_decay, colr):
    cfg = RunConfig(optimizer=optimizer, lr=0.05, weight_decay=weight_decay, embedding_dim=4)
    rng = np.random.default_rng(0)
    user = rng.standard_normal(4).astype(np.float32)
    rows = rng.standard_normal((7, 4)).astype(np.float32)
    basis = np.linalg.qr(rng.standard_normal((4, 2)))[0].T.astype(np.float32) if colr else None
    fast, slow = _NumpyMFStepper(cfg, user, rows, basis), _TorchStepper(MF(4), cfg, user, rows, [], basis)
    for _ in range(5):
        items = rng.integers(0, 7, size=5)  # duplicates included
        labels = rng.integers(0, 2, size=5).astype(np.float32)
        (batch,) = _epoch_batches(items, labels, 5, 7, 4)
        assert fast.step(batch) == pytest.approx(slow.step(batch), rel=1e-5)
    for a, b in zip(fast.result()[:2], slow.result()[:2]):  # user vectors, item-row updates
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def split():
    return leave_one_out(make_synthetic(30, 200, 20, seed=1), seed=0)


@pytest.mark.parametrize("model", ["mf", "neumf"])
def test_training_is_deterministic_and_touches_only_its_rows(split, model):
    cfg = RunConfig(model=model, embedding_dim=8, lr=1.0)
    server = FederatedServer(cfg, split.num_items, range(split.num_users))
    user = split.users[3]
    backbone = server.backbone
    runs = [
        train_user(backbone, cfg, user, NegativeSampler(user, split.num_items), backbone.init_user(0.1, np.random.default_rng(1)),
                   server.item_table, server.dense, server_round=2)
        for _ in range(2)
    ]
    assert np.array_equal(runs[0].delta, runs[1].delta)
    assert set(user.train_items.tolist()) <= set(runs[0].touched.tolist())
    assert user.test_item not in runs[0].touched and user.val_item not in runs[0].touched
    assert not set(user.eval_negatives.tolist()) & set(runs[0].touched.tolist())
    assert runs[0].num_examples == len(user.train_items) * 5
    if model == "neumf":
        assert len(runs[0].dense) == len(server.dense) and not np.array_equal(runs[0].dense[0], server.dense[0])


def test_private_embeddings_persist_and_never_leave(split):
    cfg = RunConfig(embedding_dim=8, lr=1.0, codec="sparse")
    worker, store = UserWorker(cfg, split), MemoryUserStore()
    server = FederatedServer(cfg, split.num_items, range(split.num_users))
    before = worker.user_vector(store, 2).copy()
    (update,) = worker.fit([2], server.global_arrays(), 1, store).updates
    assert not np.array_equal(store.get("user/2/vector"), before)
    assert all(a.shape != before.shape for a in update.payload)  # the upload holds no user vector
    server.aggregate([update], 1)
    (second,) = worker.fit([2], server.global_arrays(), 2, store).updates  # starts from the stored vector
    assert second.train_loss < update.train_loss + 1.0


def test_neumf_scores_batches():
    model = NeuMF(4, [8, 4])
    dense = [torch.from_numpy(w) for w in model.init_dense(np.random.default_rng(0))]
    logits = model.score(torch.ones(8), torch.ones(5, 8), dense)
    assert logits.shape == (5,)


def test_error_feedback_carries_what_the_codec_dropped(split):
    cfg = RunConfig(embedding_dim=8, lr=1.0, codec="fedras", error_feedback=True).replace(num_actions=1)
    worker, store = UserWorker(cfg, split), MemoryUserStore()
    server = FederatedServer(cfg, split.num_items, range(split.num_users))
    (first,) = worker.fit([5], server.global_arrays(), 1, store).updates
    residual_ids, residual_rows = store.get("user/5/residual-ids"), store.get("user/5/residual-rows")
    sent = worker.codec.decode(first.payload, 1)
    assert first.recon_error > 0 and len(residual_ids) > 0
    assert set(residual_ids.tolist()) <= set(sent.ids.tolist())
    # next upload covers the residual's items too, even those this round's training did not touch
    (second,) = worker.fit([5], server.global_arrays(), 2, store).updates
    assert set(residual_ids.tolist()) <= set(worker.codec.decode(second.payload, 2).ids.tolist())
    assert residual_rows.dtype == np.float32


def test_without_error_feedback_nothing_is_kept(split):
    cfg = RunConfig(embedding_dim=8, lr=1.0, codec="fedras").replace(num_actions=1)
    worker, store = UserWorker(cfg, split), MemoryUserStore()
    server = FederatedServer(cfg, split.num_items, range(split.num_users))
    worker.fit([5], server.global_arrays(), 1, store)
    assert store.get("user/5/residual-ids") is None


def test_colr_training_stays_in_the_shared_subspace(split):
    cfg = RunConfig(embedding_dim=8, lr=1.0, codec="colr").replace(colr_rank=2)
    worker, store = UserWorker(cfg, split), MemoryUserStore()
    server = FederatedServer(cfg, split.num_items, range(split.num_users))
    (update,) = worker.fit([3], server.global_arrays(), 7, store).updates
    assert update.recon_error < 1e-4  # the trained update is A B up to float32 rounding: nothing lost


@pytest.mark.parametrize("model", ["mf", "neumf"])
@pytest.mark.parametrize("optimizer, weight_decay", [("sgd", 0.0), ("sgd", 0.01), ("adam", 0.0), ("adam", 0.01)])
def test_colr_is_exact_under_any_optimizer(split, model, optimizer, weight_decay):
    """CoLR trains A in Q0 + A B: whatever the optimizer and weight decay, the update is A B exactly
    (a projected gradient is not: Adam's per-coordinate scaling and decay leave the subspace)."""
    cfg = RunConfig(model=model, embedding_dim=8, lr=0.05, optimizer=optimizer, weight_decay=weight_decay, codec="colr").replace(colr_rank=2)
    worker, store = UserWorker(cfg, split), MemoryUserStore()
    server = FederatedServer(cfg, split.num_items, range(split.num_users))
    (update,) = worker.fit([3], server.global_arrays(), 7, store).updates
    assert update.recon_error < 1e-4  # the trained update is A B: sending A loses nothing


def test_a_diverging_user_is_skipped_and_its_state_kept(split, monkeypatch, caplog):
    """A user whose training produces NaN is left out (logged, counted); the others of its client land."""
    import fedras_flwr.algorithm.user_round as user_round

    cfg = RunConfig(embedding_dim=8, lr=1.0, codec="fedras")
    worker, store = UserWorker(cfg, split), MemoryUserStore()
    server = FederatedServer(cfg, split.num_items, range(split.num_users))
    real_train = user_round.train_user

    def poisoned(backbone, cfg, user, *args):
        args = list(args)
        if user.user == 4:  # this user's copy of the table is corrupt: training yields NaN
            args[2] = np.full_like(args[2], np.nan)
        return real_train(backbone, cfg, user, *args)

    monkeypatch.setattr(user_round, "train_user", poisoned)
    outcome = worker.fit([3, 4, 5], server.global_arrays(), 1, store)
    assert [u.user for u in outcome.updates] == [3, 5] and outcome.failed_users == [4]
    assert store.get("user/4/vector") is None and store.get("user/3/vector") is not None
    assert "user 4 skipped" in caplog.text
    stats = server.aggregate(outcome.updates, 1)
    assert stats.clients == 2 and np.all(np.isfinite(server.item_table))


def test_exploding_values_are_divergence(split):
    from fedras_flwr.algorithm.training import DivergenceError

    cfg = RunConfig(embedding_dim=8, lr=1.0, divergence_limit=1e-3)  # every trained value exceeds it
    server = FederatedServer(cfg, split.num_items, range(split.num_users))
    user = split.users[2]
    with pytest.raises(DivergenceError, match="divergence-limit"):
        train_user(server.backbone, cfg, user, NegativeSampler(user, split.num_items),
                   server.backbone.init_user(0.1, np.random.default_rng(1)), server.item_table, server.dense, 1)


def test_model_defaults_are_per_model():
    assert (RunConfig().effective_optimizer, RunConfig().effective_lr) == ("sgd", 4.0)
    neumf = RunConfig(model="neumf")
    assert (neumf.effective_optimizer, neumf.effective_lr) == MODEL_DEFAULTS["neumf"] != ("sgd", 4.0)
    assert RunConfig(model="neumf", lr=0.5, optimizer="sgd").effective_lr == 0.5


def test_neumf_with_its_defaults_learns(split):
    """The loss MF's lr sent to 899 in round 2 now falls, and nothing diverges."""
    cfg = RunConfig(model="neumf", embedding_dim=8)
    worker, store = UserWorker(cfg, split), MemoryUserStore()
    server = FederatedServer(cfg, split.num_items, range(split.num_users))
    losses = []
    for server_round in range(1, 6):
        outcome = worker.fit(range(split.num_users), server.global_arrays(), server_round, store)
        assert not outcome.failed_users
        losses.append(server.aggregate(outcome.updates, server_round).train_loss)
    assert losses[-1] < losses[0] < 0.75
