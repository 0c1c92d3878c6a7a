"""The speed-ups change no result: each fast path against the straightforward computation it replaces."""

import numpy as np

from fedras_flwr.data import datasets
from fedras_flwr.data.datasets import load_dataset, make_synthetic


def same_interactions(a, b):
    return (
        np.array_equal(a.users, b.users) and np.array_equal(a.items, b.items)
        and np.array_equal(a.timestamps, b.timestamps) and (a.num_users, a.num_items) == (b.num_users, b.num_items)
    )


def test_big_synthetic_sets_are_kept_on_disk_and_read_back_identical(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(datasets, "SYNTHETIC_CACHE_MIN_PAIRS", 0)
    generated = make_synthetic(40, 300, 20, seed=2)
    first = load_dataset("synthetic", seed=2, cache_dir=str(tmp_path), synthetic_users=40, synthetic_items=300,
                         synthetic_mean_interactions=20)
    (stored,) = tmp_path.glob("synthetic-40x300-20-seed2-*.npz")
    monkeypatch.setattr(datasets, "make_synthetic", lambda *args: 1 / 0)  # a second load must not generate
    second = load_dataset("synthetic", seed=2, cache_dir=str(tmp_path), synthetic_users=40, synthetic_items=300,
                          synthetic_mean_interactions=20)
    assert same_interactions(first, generated) and same_interactions(second, generated)
    monkeypatch.undo()
    monkeypatch.setattr(datasets, "SYNTHETIC_CACHE_MIN_PAIRS", 0)
    stored.write_bytes(b"not a zip")
    again = datasets.cached_synthetic(40, 300, 20, 2, str(tmp_path))
    assert same_interactions(again, generated) and "unreadable cache" in caplog.text
