"""Shared fixtures: small configs, and the real datasets in ../shared/data when they are there."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fedras_flwr.config import RunConfig

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """$FEDRAS_DATA_DIR, else ../shared/data beside the checkout (where CI puts it)."""
    candidates = [os.environ.get("FEDRAS_DATA_DIR", ""), str(REPO.parent / "shared" / "data")]
    for candidate in candidates:
        if candidate and (Path(candidate) / "ml-100k" / "u.data").is_file():
            return Path(candidate)
    return None


@pytest.fixture(autouse=True, scope="session")
def private_cache_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The default cache (parsed datasets, downloads, big synthetic sets) in a folder of this test session,
    not in the user's ~/.cache: no test sees another session's entries (child processes inherit it)."""
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache-home"))


@pytest.fixture
def ml100k_dir() -> Path:
    root = shared_data_dir()
    if root is None:
        pytest.skip("ML-100K not found (set FEDRAS_DATA_DIR or place ../shared/data)")
    return root / "ml-100k"


def tiny_config(tmp_path: Path, **changes: object) -> RunConfig:
    """A synthetic run small enough for a few seconds per round."""
    base = RunConfig(
        synthetic_users=24,
        synthetic_items=200,
        synthetic_mean_interactions=20,
        num_server_rounds=3,
        clients_per_round=8,
        eval_every=1,
        embedding_dim=8,
        lr=4.0,
        out_dir=str(tmp_path / "out"),
    )
    return base.replace(**changes)
