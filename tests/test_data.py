"""Datasets, the leave-one-out split and negative sampling: invariants, determinism, errors."""

import numpy as np
import pytest

from fedras_flwr.algorithm.data import DatasetError, Interactions, NegativeSampler, leave_one_out, load_dataset
from fedras_flwr.algorithm.data.split import user_rng
from fedras_flwr.algorithm.data.synthetic import make_synthetic
from fedras_flwr.config import RunConfig


def small_split(seed=0):
    return leave_one_out(make_synthetic(60, 300, 25, seed=3), seed=seed)


def test_split_is_leave_one_out_by_time():
    users = np.array([0, 0, 0, 0, 1, 1, 1])
    items = np.array([5, 3, 8, 1, 2, 4, 6])
    times = np.array([10, 40, 20, 30, 3, 1, 2], dtype=float)
    data = Interactions("toy", users, items, times, num_users=2, num_items=200)
    split = leave_one_out(data, seed=0, num_eval_negatives=5, min_user_interactions=3)
    first = split.users[0]
    assert (first.test_item, first.val_item) == (3, 1)  # latest, then second latest
    assert first.train_items.tolist() == [5, 8]
    second = split.users[1]
    assert (second.test_item, second.val_item, second.train_items.tolist()) == (2, 6, [4])


def test_small_users_are_dropped():
    data = Interactions("toy", np.array([0, 0, 1, 1, 1, 2, 2, 2]), np.array([1, 2, 1, 2, 3, 4, 5, 6]),
                        None, num_users=3, num_items=50)
    split = leave_one_out(data, seed=0, num_eval_negatives=5, min_user_interactions=3)
    assert split.num_users == 2


def test_no_leakage_and_fixed_negatives():
    split = small_split()
    for user in split.users:
        positives = set(user.all_positives.tolist())
        assert user.val_item not in user.train_items and user.test_item not in user.train_items
        assert len(user.eval_negatives) == 99 and len(set(user.eval_negatives.tolist())) == 99
        assert not positives & set(user.eval_negatives.tolist())
        sampler = NegativeSampler(user, split.num_items)
        drawn = set(sampler.sample(np.random.default_rng(0), 2000).tolist())
        assert not drawn & positives and not drawn & set(user.eval_negatives.tolist())


def test_split_is_deterministic_per_seed():
    a, b, c = small_split(0), small_split(0), small_split(1)
    assert all(np.array_equal(x.eval_negatives, y.eval_negatives) for x, y in zip(a.users, b.users))
    assert [u.test_item for u in a.users] == [u.test_item for u in b.users]
    assert any(not np.array_equal(x.eval_negatives, y.eval_negatives) for x, y in zip(a.users, c.users))


def test_user_rng_depends_only_on_its_key():
    assert user_rng(1, 7, 2, 3).integers(1 << 30) == user_rng(1, 7, 2, 3).integers(1 << 30)
    assert user_rng(1, 7, 2, 3).integers(1 << 30) != user_rng(1, 8, 2, 3).integers(1 << 30)


def test_synthetic_has_popularity_skew_and_activity_spread():
    data = make_synthetic(300, 500, 40, seed=0)
    popularity = np.bincount(data.items, minlength=data.num_items)
    activity = np.bincount(data.users)
    top_share = np.sort(popularity)[::-1][: data.num_items // 10].sum() / popularity.sum()
    assert top_share > 0.25  # the top 10 % of items hold far more than 10 % of interactions
    assert activity.max() > 4 * np.median(activity) and activity.min() >= 10
    assert np.array_equal(data.items, make_synthetic(300, 500, 40, seed=0).items)


def test_ml100k_loads_with_official_statistics(ml100k_dir):
    data = load_dataset("ml-100k", data_dir=str(ml100k_dir))
    assert (data.num_users, data.num_items, len(data.users)) == (943, 1682, 100_000)
    split = leave_one_out(data, seed=0)
    assert split.num_users == 943 and split.num_train_interactions == 100_000 - 2 * 943


def test_data_dir_may_be_the_parent_folder(ml100k_dir):
    data = load_dataset("ml-100k", data_dir=str(ml100k_dir.parent))
    assert data.num_users == 943


def test_env_variable_points_at_data(ml100k_dir, monkeypatch):
    monkeypatch.setenv("FEDRAS_DATA_DIR", str(ml100k_dir.parent))
    assert load_dataset("ml-100k").num_items == 1682


def test_modified_local_copy_warns_but_loads(tmp_path, ml100k_dir, caplog):
    lines = (ml100k_dir / "u.data").read_text().splitlines()[:-1000]
    (tmp_path / "u.data").write_text("\n".join(lines) + "\n")
    data = load_dataset("ml-100k", data_dir=str(tmp_path))
    assert len(data.users) == 99_000
    assert "sha256 mismatch" in caplog.text


def test_missing_dataset_says_what_to_do(tmp_path):
    with pytest.raises(DatasetError, match="Point data-dir"):
        load_dataset("ml-1m", data_dir=str(tmp_path))


def test_corrupt_file_is_a_clear_error(tmp_path):
    (tmp_path / "u.data").write_text("196\t242\t3\t881250949\nthis line is broken\n")
    with pytest.raises(DatasetError, match="u.data:2: expected at least 4 fields"):
        load_dataset("ml-100k", data_dir=str(tmp_path))


def test_bad_timestamp_is_a_clear_error(tmp_path):
    (tmp_path / "u.data").write_text("196\t242\t3\tyesterday\n")
    with pytest.raises(DatasetError, match="timestamp 'yesterday' is not a number"):
        load_dataset("ml-100k", data_dir=str(tmp_path))


def test_interactions_file_with_header_and_any_labels(tmp_path):
    rows = ["user_id,item_id,ts"] + [f"u{u},item{(u * 7 + k) % 40},{k}" for u in range(5) for k in range(6)]
    path = tmp_path / "log.csv"
    path.write_text("\n".join(rows) + "\n")
    data = load_dataset("interactions", interactions_file=str(path))
    assert data.num_users == 5 and len(data.users) == 30
    split = leave_one_out(data, seed=0, num_eval_negatives=10)
    # the latest row of each user is its test item
    assert all(u.test_item != u.val_item for u in split.users)


def test_interactions_tsv_without_timestamp(tmp_path):
    path = tmp_path / "log.tsv"
    path.write_text("".join(f"{u}\t{i}\n" for u in range(4) for i in range(u, u + 8)))
    data = load_dataset("interactions", interactions_file=str(path), interactions_columns="user,item")
    assert data.timestamps is None and len(data.users) == 32


def test_missing_interactions_file(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset("interactions", interactions_file=str(tmp_path / "nope.csv"))


def test_too_few_users_is_a_clear_error():
    data = Interactions("toy", np.zeros(5, dtype=np.int64), np.arange(5), None, num_users=1, num_items=200)
    with pytest.raises(DatasetError, match="a federation needs at least 2"):
        leave_one_out(data, seed=0)


def test_a_catalogue_smaller_than_the_evaluation_negatives_is_named(tmp_path):
    path = tmp_path / "small.csv"
    path.write_text("".join(f"{u},{i}\n" for u in range(4) for i in range(8)))  # 8 items
    data = load_dataset("interactions", interactions_file=str(path), interactions_columns="user,item")
    with pytest.raises(DatasetError, match="the catalogue has 8 items.*lower num-eval-negatives"):
        leave_one_out(data, seed=0, num_eval_negatives=99)


def test_run_seeds_share_the_split_and_split_seed_changes_it():
    from fedras_flwr.algorithm.data import load_split

    base = RunConfig(synthetic_users=40, synthetic_items=150, synthetic_mean_interactions=15)
    first, other_seed = load_split(base), load_split(base.replace(seed=7))
    assert [u.test_item for u in first.users] == [u.test_item for u in other_seed.users]
    assert all(np.array_equal(a.eval_negatives, b.eval_negatives) for a, b in zip(first.users, other_seed.users))
    other_split = load_split(base.replace(split_seed=7))
    assert [u.test_item for u in first.users] != [u.test_item for u in other_split.users]
