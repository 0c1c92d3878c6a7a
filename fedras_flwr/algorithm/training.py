"""Local training of one user (no Flower here).

Learning-rate semantics: the loss is the *mean* binary cross-entropy over a mini-batch (positives
labelled 1, sampled negatives 0), so `lr` is per-example-averaged; item rows in a batch of B get
gradients of order 1/B, which is why the default SGD lr is large.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fedras_flwr.algorithm.data.split import PURPOSE_SHUFFLE, PURPOSE_TRAIN_NEG, NegativeSampler, UserSplit, user_rng
from fedras_flwr.algorithm.models import MF, Backbone, require_torch
from fedras_flwr.config import RunConfig

if TYPE_CHECKING:
    import torch


class DivergenceError(ArithmeticError):
    """A user's local training produced non-finite or exploding values: its update must not be used."""


@dataclass(frozen=True)
class LocalResult:
    """What local training produced for one user."""

    user_vector: np.ndarray  # new private embedding (stays on the client)
    touched: np.ndarray  # sorted item ids whose rows were trained this round (positives + negatives)
    delta: np.ndarray  # float32 (len(touched), item_dim): Q_local[touched] - Q[touched]
    dense: list[np.ndarray]  # updated shared dense weights (empty for MF)
    num_examples: int  # training examples per epoch (positives + negatives)
    train_loss: float  # mean mini-batch loss of the last epoch


def train_user(
    backbone: Backbone,
    cfg: RunConfig,
    user: UserSplit,
    sampler: NegativeSampler,
    user_vector: np.ndarray,
    item_table: np.ndarray,
    dense: list[np.ndarray],
    server_round: int,
    basis: np.ndarray | None = None,
) -> LocalResult:
    """E epochs of mini-batch training of p_u, the touched item rows and the dense weights.

    `basis` (r x d, orthonormal rows), when given, constrains the item rows to Q0 + A B and trains the
    coefficients A instead of the rows (CoLR): exact for any optimizer and weight decay, which act on A.
    Raises DivergenceError when anything trained is non-finite or beyond `divergence-limit`.
    """
    neg_rng = user_rng(cfg.seed, user.user, PURPOSE_TRAIN_NEG, server_round)
    shuffle_rng = user_rng(cfg.seed, user.user, PURPOSE_SHUFFLE, server_round)
    positives = user.train_items
    negatives = [sampler.sample(neg_rng, len(positives) * cfg.num_negatives) for _ in range(cfg.local_epochs)]
    touched = np.unique(np.concatenate([positives, *negatives]))

    start_rows = item_table[touched]
    stepper = (
        _NumpyMFStepper(cfg, user_vector, start_rows, basis)
        if isinstance(backbone, MF)
        else _TorchStepper(backbone, cfg, user_vector, start_rows, dense, basis)
    )
    pos_local = np.searchsorted(touched, positives)
    losses: list[float] = []
    # exp overflow in the MF sigmoid gives exactly 0, which is right; NaN from a diverging user is caught below
    with np.errstate(over="ignore", invalid="ignore"):
        for epoch, negs in enumerate(negatives):
            items = np.concatenate([pos_local, np.searchsorted(touched, negs)])
            labels = np.concatenate([np.ones(len(pos_local), np.float32), np.zeros(len(negs), np.float32)])
            order = shuffle_rng.permutation(len(items))
            batches = _epoch_batches(items[order], labels[order], cfg.batch_size, len(touched), start_rows.shape[1])
            last = epoch == len(negatives) - 1  # only the last epoch's loss is reported
            losses = [stepper.step(batch, last) for batch in batches]
    new_user, delta, new_dense = stepper.result()
    train_loss = float(np.mean(losses)) if losses else 0.0
    _check_converging(cfg.divergence_limit, train_loss, [new_user, start_rows + delta, *new_dense])
    return LocalResult(
        user_vector=new_user,
        touched=touched,
        delta=delta,
        dense=new_dense,
        num_examples=len(positives) * (1 + cfg.num_negatives),
        train_loss=train_loss,
    )


def _check_converging(limit: float, loss: float, trained: list[np.ndarray]) -> None:
    """DivergenceError if the loss or a trained value is not finite, or a value exceeds `limit` (0: no limit)."""
    if not np.isfinite(loss):
        raise DivergenceError(f"the training loss is {loss}")
    for values in trained:
        if not np.all(np.isfinite(values)):
            raise DivergenceError("training produced NaN or infinite parameters")
        if limit and values.size and float(np.max(np.abs(values))) > limit:
            raise DivergenceError(f"a trained value reached {float(np.max(np.abs(values))):.3g} (divergence-limit {limit:g})")


@dataclass(frozen=True)
class _Batch:
    """One mini-batch, and where each example's item-row gradient adds up (see `_NumpyMFStepper.step`)."""

    items: np.ndarray  # local row of each example
    labels: np.ndarray  # float32, 1 for positives
    rows: np.ndarray  # the distinct rows of the batch, sorted
    slots: np.ndarray  # flat index, in a (len(rows), dim) buffer, of each example's gradient entries


def _epoch_batches(items: np.ndarray, labels: np.ndarray, size: int, num_rows: int, dim: int) -> list[_Batch]:
    """Cut an epoch into mini-batches, finding every batch's distinct rows in one pass over the epoch
    rather than once per step."""
    batch = np.arange(len(items)) // size
    keys, position = np.unique(batch * num_rows + items, return_inverse=True)  # sorted by (batch, row)
    starts = np.searchsorted(keys, np.arange(batch[-1] + 2) * num_rows)  # each batch's first key
    slots = (position - starts[batch])[:, None] * dim + np.arange(dim)
    rows = keys % num_rows
    return [
        _Batch(items[begin : begin + size], labels[begin : begin + size], rows[starts[b] : starts[b + 1]],
               slots[begin : begin + size].ravel())
        for b, begin in enumerate(range(0, len(items), size))
    ]


class _TorchStepper:
    """Autograd + torch optimizer: any backbone."""

    def __init__(
        self,
        backbone: Backbone,
        cfg: RunConfig,
        user: np.ndarray,
        rows: np.ndarray,
        dense: list[np.ndarray],
        basis: np.ndarray | None = None,
    ) -> None:
        self.backbone = backbone
        self.torch = torch = require_torch()
        self.user = torch.tensor(user, requires_grad=True)
        self.start_rows = torch.tensor(rows)
        self.basis = None if basis is None else torch.from_numpy(basis.astype(np.float32))
        # the trained item parameters: the rows themselves, or CoLR's coefficients A in Q0 + A B
        shape = rows.shape if basis is None else (len(rows), len(basis))
        self.trained = torch.tensor(rows, requires_grad=True) if basis is None else torch.zeros(shape, requires_grad=True)
        self.dense = [torch.tensor(w, requires_grad=True) for w in dense]
        params = [self.user, self.trained, *self.dense]
        optimizer_class = torch.optim.SGD if cfg.effective_optimizer == "sgd" else torch.optim.Adam
        self.optimizer = optimizer_class(params, lr=cfg.effective_lr, weight_decay=cfg.weight_decay)

    def _rows(self, index: torch.Tensor | slice) -> torch.Tensor:
        if self.basis is None:
            return self.trained[index]
        return self.start_rows[index] + self.trained[index] @ self.basis

    def step(self, batch: _Batch, with_loss: bool = True) -> float:
        """One mini-batch; the loss is returned always (autograd computes it anyway)."""
        torch = self.torch
        logits = self.backbone.score(self.user, self._rows(torch.from_numpy(batch.items)), self.dense)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.from_numpy(batch.labels))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def result(self) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """(user vector, item-row update, dense weights); the update of CoLR's rows is A B itself, free
        of the rounding that Q0 + A B - Q0 would add."""
        with self.torch.no_grad():
            delta = self.trained - self.start_rows if self.basis is None else self.trained @ self.basis
            return self.user.numpy().copy(), delta.numpy().copy(), [w.numpy().copy() for w in self.dense]


class _NumpyMFStepper:
    """MF with its closed-form gradient in numpy: the same maths as `_TorchStepper` on `MF` (a test
    checks it) at a fraction of the per-step overhead, which dominates for one user's tiny batches."""

    def __init__(self, cfg: RunConfig, user: np.ndarray, rows: np.ndarray, basis: np.ndarray | None = None) -> None:
        self.start_rows = rows.astype(np.float32)
        self.basis = None if basis is None else basis.astype(np.float32)
        # the trained item parameters: the rows themselves, or CoLR's coefficients A in Q0 + A B
        trained = self.start_rows.copy() if basis is None else np.zeros((len(rows), len(basis)), np.float32)
        self.params = [user.astype(np.float32).copy(), trained]
        self.optimizer = _NumpyOptimizer(cfg, self.params)
        # Plain SGD changes only the rows a batch holds: update those instead of the whole local table
        # (weight decay and Adam's moments move every row).
        self.sparse = cfg.effective_optimizer == "sgd" and not cfg.weight_decay and basis is None
        self.lr = cfg.effective_lr

    def _rows(self, index: np.ndarray | slice) -> np.ndarray:
        if self.basis is None:
            return self.params[1][index]
        return self.start_rows[index] + self.params[1][index] @ self.basis

    def step(self, batch: _Batch, with_loss: bool = True) -> float | None:
        """One mini-batch; the loss (mean BCE of the batch before the step) only when asked for. The
        caller silences exp overflow (train_user does)."""
        user, trained = self.params
        batch_rows = self._rows(batch.items)
        logits = batch_rows @ user
        # mean BCE with logits, computed stably: softplus(x) - y * x
        loss = float(np.mean(np.logaddexp(0.0, logits) - batch.labels * logits)) if with_loss else None
        error = (1.0 / (1.0 + np.exp(-logits)) - batch.labels) / len(batch.items)
        user_grad = batch_rows.T @ error
        # the item rows' gradients summed per distinct row in example order: bit for bit what
        # np.add.at(zeros_like(rows), items, outer(error, user)) leaves in those rows, without a
        # table-sized buffer and through numpy's fast one-dimensional add.at
        row_grads = np.zeros(len(batch.rows) * len(user), dtype=np.float32)
        np.add.at(row_grads, batch.slots, np.multiply.outer(error, user).ravel())
        row_grads = row_grads.reshape(len(batch.rows), len(user))
        if self.sparse:  # _NumpyOptimizer's SGD step, on the rows with a gradient
            user -= self.lr * user_grad
            trained[batch.rows] -= self.lr * row_grads
            return loss
        if self.basis is not None:  # chain rule through Q0 + A B: the gradient of A is G B^T
            row_grads = row_grads @ self.basis.T
        grads = np.zeros_like(trained)
        grads[batch.rows] = row_grads
        self.optimizer.step([user_grad, grads])
        return loss

    def result(self) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """(user vector, item-row update, no dense weights), as `_TorchStepper.result`."""
        user, trained = self.params
        return user, trained - self.start_rows if self.basis is None else trained @ self.basis, []


class _NumpyOptimizer:
    """torch.optim.SGD / Adam semantics (L2 weight decay added to the gradient) for numpy arrays."""

    def __init__(self, cfg: RunConfig, params: list[np.ndarray]) -> None:
        self.params = params
        self.steps = 0
        # resolved once: `auto` defaults are per model, and step() runs per parameter of every mini-batch
        self.adam, self.lr, self.weight_decay = cfg.effective_optimizer == "adam", cfg.effective_lr, cfg.weight_decay
        if self.adam:
            self.first = [np.zeros_like(p) for p in params]
            self.second = [np.zeros_like(p) for p in params]

    def step(self, grads: list[np.ndarray]) -> None:
        self.steps += 1
        for index, (param, grad) in enumerate(zip(self.params, grads)):
            if self.weight_decay:
                grad = grad + self.weight_decay * param
            if not self.adam:
                param -= (self.lr * grad).astype(np.float32)
                continue
            beta1, beta2, eps = 0.9, 0.999, 1e-8
            self.first[index] = beta1 * self.first[index] + (1 - beta1) * grad
            self.second[index] = beta2 * self.second[index] + (1 - beta2) * grad * grad
            corrected1 = self.first[index] / (1 - beta1**self.steps)
            corrected2 = self.second[index] / (1 - beta2**self.steps)
            param -= (self.lr * corrected1 / (np.sqrt(corrected2) + eps)).astype(np.float32)
