"""Recommender backbones: MF (GMF) and NeuMF, written for one user at a time.

The parameters split three ways, which is what federated recommendation needs:
- the private user vector (never leaves its client),
- the global item table (M x item_dim; the part that goes through the upload codec),
- small dense weights shared with plain FedAvg (NeuMF's MLP and output layer; none for MF).
NeuMF's two item tables (GMF and MLP halves) are stored side by side as one M x 2d table so every
codec sees a single matrix.

MF runs on numpy alone; NeuMF needs PyTorch (the `neumf` extra), imported only when a NeuMF is built.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch


class MissingDependencyError(ImportError):
    """A model or trainer needs a package that is not installed."""


@functools.cache
def require_torch() -> Any:
    """PyTorch, set to one thread per process: results are then bit-identical whatever process trains a
    user, and simulated SuperNodes run side by side instead of fighting over cores. Cached: NeuMF scores
    every mini-batch through it (a missing PyTorch raises each time, it is not cached)."""
    try:
        import torch
    except ImportError as err:
        raise MissingDependencyError(
            "model = \"neumf\" needs PyTorch, which is not installed: on a machine without a GPU first "
            "pip install torch --index-url https://download.pytorch.org/whl/cpu, then pip install -e '.[neumf]' "
            "in the checkout (or pip install 'fedras-flwr[neumf]')"
        ) from err
    torch.set_num_threads(1)
    return torch


class Backbone(ABC):
    """Shapes, initialisation and the scoring function of one model family."""

    def __init__(self, embedding_dim: int) -> None:
        self.embedding_dim = embedding_dim

    @property
    @abstractmethod
    def user_dim(self) -> int: ...

    @property
    @abstractmethod
    def item_dim(self) -> int: ...

    @abstractmethod
    def init_dense(self, rng: np.random.Generator) -> list[np.ndarray]:
        """Initial shared dense weights (float32)."""

    @abstractmethod
    def score(self, user: torch.Tensor, items: torch.Tensor, dense: list[torch.Tensor]) -> torch.Tensor:
        """Logits of one user (user_dim,) for a batch of item rows (B x item_dim), differentiable (training)."""

    @abstractmethod
    def scores(self, user: np.ndarray, items: np.ndarray, dense: list[np.ndarray]) -> np.ndarray:
        """The same logits as float32 numpy, no gradient (evaluation scores the whole catalogue)."""

    def init_items(self, num_items: int, std: float, rng: np.random.Generator) -> np.ndarray:
        return (rng.standard_normal((num_items, self.item_dim)) * std).astype(np.float32)

    def init_user(self, std: float, rng: np.random.Generator) -> np.ndarray:
        return (rng.standard_normal(self.user_dim) * std).astype(np.float32)


class MF(Backbone):
    """score(u, i) = <p_u, q_i>: the FedMF / GMF-without-weights model."""

    @property
    def user_dim(self) -> int:
        return self.embedding_dim

    @property
    def item_dim(self) -> int:
        return self.embedding_dim

    def init_dense(self, rng: np.random.Generator) -> list[np.ndarray]:
        return []

    def score(self, user: torch.Tensor, items: torch.Tensor, dense: list[torch.Tensor]) -> torch.Tensor:
        return items @ user

    def scores(self, user: np.ndarray, items: np.ndarray, dense: list[np.ndarray]) -> np.ndarray:
        return items @ user


class NeuMF(Backbone):
    """NCF's NeuMF: a GMF branch (p_g * q_g) and an MLP branch on [p_m, q_m], fused by a linear layer.

    Dense weights are [W1, b1, ..., Wn, bn, w_out, b_out] with Wk of shape (in, out).
    """

    def __init__(self, embedding_dim: int, mlp_layers: list[int]) -> None:
        super().__init__(embedding_dim)
        self.mlp_layers = mlp_layers
        require_torch()  # here, so that a run without PyTorch stops before round 1

    @property
    def user_dim(self) -> int:
        return 2 * self.embedding_dim

    @property
    def item_dim(self) -> int:
        return 2 * self.embedding_dim

    def init_dense(self, rng: np.random.Generator) -> list[np.ndarray]:
        weights: list[np.ndarray] = []
        width = 2 * self.embedding_dim
        for out in self.mlp_layers:
            weights.append((rng.standard_normal((width, out)) * np.sqrt(2.0 / width)).astype(np.float32))
            weights.append(np.zeros(out, dtype=np.float32))
            width = out
        fused = self.embedding_dim + width
        weights.append((rng.standard_normal(fused) * np.sqrt(1.0 / fused)).astype(np.float32))
        weights.append(np.zeros(1, dtype=np.float32))
        return weights

    def score(self, user: torch.Tensor, items: torch.Tensor, dense: list[torch.Tensor]) -> torch.Tensor:
        torch, d = require_torch(), self.embedding_dim
        gmf = user[:d] * items[:, :d]
        hidden = torch.cat([user[d:].expand(items.shape[0], d), items[:, d:]], dim=1)
        for k in range(0, len(dense) - 2, 2):
            hidden = torch.relu(hidden @ dense[k] + dense[k + 1])
        return torch.cat([gmf, hidden], dim=1) @ dense[-2] + dense[-1]

    def scores(self, user: np.ndarray, items: np.ndarray, dense: list[np.ndarray]) -> np.ndarray:
        torch = require_torch()
        with torch.no_grad():
            return self.score(torch.from_numpy(user), torch.from_numpy(items), [torch.from_numpy(w) for w in dense]).numpy()


def make_backbone(model: str, embedding_dim: int, mlp_layers: list[int]) -> Backbone:
    if model == "mf":
        return MF(embedding_dim)
    if model == "neumf":
        return NeuMF(embedding_dim, mlp_layers)
    raise ValueError(f"unknown model {model!r}; choose mf or neumf")
