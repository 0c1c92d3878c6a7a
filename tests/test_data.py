"""Datasets, the leave-one-out split and negative sampling: invariants, determinism, errors."""

import dataclasses
import hashlib
import logging

import numpy as np
import pytest
from conftest import shared_data_dir

from fedras_flwr.algorithm.data import DatasetError, Interactions, NegativeSampler, leave_one_out, load_dataset
from fedras_flwr.algorithm.data.download import SOURCES
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


def one_line_error(excinfo) -> str:
    """The message of a raised DatasetError, checked to be the single line a newcomer reads."""
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def copy_with(tmp_path, source, edit):
    """A copy of an official file in tmp_path with `edit(bytes) -> bytes` applied; never touches the original."""
    (tmp_path / source.name).write_bytes(edit(source.read_bytes()))
    return tmp_path / source.name


def one_byte_changed(data: bytes) -> bytes:
    assert data.startswith(b"196\t242\t3\t")  # the rating of line 1 (not a field we parse) becomes 4
    return data[:8] + b"4" + data[9:]


def garble_line(number: int, text: bytes = b"186 302 garbled"):
    def edit(data: bytes) -> bytes:
        lines = data.split(b"\n")
        lines[number - 1] = text
        return b"\n".join(lines)
    return edit


def test_a_modified_local_copy_is_an_error_naming_the_file_and_the_way_out(tmp_path, ml100k_dir):
    copy = copy_with(tmp_path, ml100k_dir / "u.data", one_byte_changed)
    with pytest.raises(DatasetError) as excinfo:
        load_dataset("ml-100k", data_dir=str(tmp_path))
    message = one_line_error(excinfo)
    assert message.startswith(f"ml-100k: {copy} differs from the official release (sha256 mismatch: truncated or")
    assert "re-download it: clear data-dir and $FEDRAS_DATA_DIR so the verified download runs" in message
    assert "ml-100k.zip" in message and message.endswith("set verify-checksums=false")


def test_verify_checksums_false_accepts_a_modified_copy_with_a_warning(tmp_path, ml100k_dir, caplog):
    copy_with(tmp_path, ml100k_dir / "u.data", one_byte_changed)
    data = load_dataset("ml-100k", data_dir=str(tmp_path), verify_checksums=False)
    assert (data.num_users, data.num_items, len(data.users)) == (943, 1682, 100_000)
    assert "u.data differs from the official file (sha256 mismatch); using it as is" in caplog.text


def test_load_split_passes_verify_checksums_on(tmp_path, ml100k_dir):
    from fedras_flwr.algorithm.data import load_split

    copy_with(tmp_path, ml100k_dir / "u.data", one_byte_changed)
    cfg = RunConfig(dataset="ml-100k", data_dir=str(tmp_path))
    with pytest.raises(DatasetError, match="verify-checksums=false"):
        load_split(cfg)
    assert load_split(cfg.replace(verify_checksums=False)).num_users == 943


def test_a_truncated_official_file_fails_its_checksum_first(tmp_path, ml100k_dir):
    assert (ml100k_dir / "u.data").read_bytes().endswith(b"\n12\t203\t3\t879959583\n")
    copy_with(tmp_path, ml100k_dir / "u.data", lambda data: data[:-8])  # the last line cut in its timestamp
    with pytest.raises(DatasetError, match=r"u\.data differs from the official release") as excinfo:
        load_dataset("ml-100k", data_dir=str(tmp_path))
    one_line_error(excinfo)
    # unchecked, that cut still parses (timestamp 8799): only the checksum catches it
    assert len(load_dataset("ml-100k", data_dir=str(tmp_path), verify_checksums=False).users) == 100_000
    copy_with(tmp_path, ml100k_dir / "u.data", lambda data: data[:-13])  # cut to "12\t203": the parser sees it
    with pytest.raises(DatasetError) as excinfo:
        load_dataset("ml-100k", data_dir=str(tmp_path), verify_checksums=False)
    assert "u.data line 100000 is broken (expected at least 4 fields separated by '\\t', got '12\\t203')" in (
        one_line_error(excinfo)
    )


def test_a_broken_line_of_an_official_file_is_named_with_re_download_advice(tmp_path, ml100k_dir):
    copy = copy_with(tmp_path, ml100k_dir / "u.data", garble_line(17))
    with pytest.raises(DatasetError) as excinfo:
        load_dataset("ml-100k", data_dir=str(tmp_path), verify_checksums=False)
    message = one_line_error(excinfo)
    assert message == (
        f"ml-100k: {copy} line 17 is broken (expected at least 4 fields separated by '\\t', got '186 302 garbled'); "
        f"the file is damaged (truncated or modified), re-download it: clear data-dir and $FEDRAS_DATA_DIR so "
        f"the verified download runs, or replace it with u.data from "
        f"https://files.grouplens.org/datasets/movielens/ml-100k.zip"
    )
    assert "interactions-" not in message


def test_a_bad_timestamp_of_an_official_file_is_named(tmp_path, ml100k_dir):
    copy_with(tmp_path, ml100k_dir / "u.data", garble_line(5, b"1\t2\t3\tyesterday"))
    with pytest.raises(DatasetError) as excinfo:
        load_dataset("ml-100k", data_dir=str(tmp_path), verify_checksums=False)
    message = one_line_error(excinfo)
    assert "u.data line 5 is broken (timestamp 'yesterday' is not a number); the file is damaged" in message
    assert "re-download it" in message and "interactions-" not in message


def test_lastfm_2k_is_verified_and_its_broken_lines_named(tmp_path, ml100k_dir):
    official = ml100k_dir.parent / "lastfm-2k" / "user_artists.dat"
    if not official.is_file():
        pytest.skip("Last.fm 2K not found beside ML-100K")
    data = load_dataset("lastfm-2k", data_dir=str(official.parent))  # the official file passes the check
    assert data.timestamps is None and data.num_users == 1892
    copy_with(tmp_path, official, garble_line(4, b"2\r"))  # CRLF file with a header: line 4 is the 3rd row
    with pytest.raises(DatasetError, match="verify-checksums=false"):
        load_dataset("lastfm-2k", data_dir=str(tmp_path))
    with pytest.raises(DatasetError) as excinfo:
        load_dataset("lastfm-2k", data_dir=str(tmp_path), verify_checksums=False)
    message = one_line_error(excinfo)
    assert "user_artists.dat line 4 is broken (expected at least 2 fields" in message
    assert message.endswith("or replace it with user_artists.dat from "
                            "https://files.grouplens.org/datasets/hetrec2011/hetrec2011-lastfm-2k.zip")


def test_ml1m_has_no_file_checksum_so_a_local_copy_is_parsed_as_is(tmp_path, caplog):
    (tmp_path / "ratings.dat").write_text("1::10::5::100\n2::10::3::200\n")
    assert len(load_dataset("ml-1m", data_dir=str(tmp_path)).users) == 2
    assert "differs" not in caplog.text
    (tmp_path / "ratings.dat").write_text("1::10::5::100\n2::10\n")
    with pytest.raises(DatasetError) as excinfo:
        load_dataset("ml-1m", data_dir=str(tmp_path))
    message = one_line_error(excinfo)
    assert "ratings.dat line 2 is broken (expected at least 4 fields separated by '::', got '2::10')" in message
    assert message.endswith("re-download it: clear data-dir and $FEDRAS_DATA_DIR so the verified download runs, "
                            "or replace it with ratings.dat from https://files.grouplens.org/datasets/movielens/ml-1m.zip")


def test_a_damaged_cached_download_says_delete_it(tmp_path, monkeypatch):
    monkeypatch.delenv("FEDRAS_DATA_DIR", raising=False)
    cached = tmp_path / "ml-1m" / "ratings.dat"  # an already extracted download: no network is touched
    cached.parent.mkdir()
    cached.write_text("1::10::5::100\n2::10::3\n")
    with pytest.raises(DatasetError) as excinfo:
        load_dataset("ml-1m", cache_dir=str(tmp_path))
    assert one_line_error(excinfo).endswith(
        f"ratings.dat line 2 is broken (expected at least 4 fields separated by '::', got '2::10::3'); the file is "
        f"damaged (truncated or modified), delete {cached}; the next run extracts it again from the verified download"
    )


def test_a_data_dir_that_does_not_exist_says_what_to_do(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError) as excinfo:
        load_dataset("ml-100k", data_dir=str(missing))
    assert one_line_error(excinfo) == (
        f"ml-100k: data-dir '{missing}' does not exist (expected u.data in it or in its ml-100k/ subfolder); "
        f"point data-dir (or $FEDRAS_DATA_DIR) at the folder holding the official ml-100k files, or leave both "
        f"empty to download https://files.grouplens.org/datasets/movielens/ml-100k.zip"
    )


def test_a_missing_env_data_dir_is_named_as_such(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDRAS_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(DatasetError) as excinfo:
        load_dataset("lastfm-2k")
    assert one_line_error(excinfo).startswith(f"lastfm-2k: $FEDRAS_DATA_DIR '{tmp_path / 'nowhere'}' does not exist")


def test_a_data_dir_without_the_file_says_what_to_do(tmp_path):
    with pytest.raises(DatasetError) as excinfo:
        load_dataset("ml-1m", data_dir=str(tmp_path))
    message = one_line_error(excinfo)
    assert message.startswith(f"ml-1m: data-dir '{tmp_path}' has no ratings.dat (looked in {tmp_path}/ and ")
    assert message.endswith("or leave both empty to download https://files.grouplens.org/datasets/movielens/ml-1m.zip")
    (tmp_path / "ratings.dat").write_text("1::10::5::100\n")
    with pytest.raises(DatasetError, match="is a file, not a folder; point data-dir"):
        load_dataset("ml-1m", data_dir=str(tmp_path / "ratings.dat"))


def test_an_empty_official_file_is_named(tmp_path):
    (tmp_path / "u.data").write_text("\n")
    with pytest.raises(DatasetError) as excinfo:
        load_dataset("ml-100k", data_dir=str(tmp_path), verify_checksums=False)
    assert "u.data is broken (it holds no interactions); the file is damaged" in one_line_error(excinfo)


def test_a_broken_line_of_an_interactions_file_advises_the_format_settings(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("u1,i1,1\nu1,i2,2\nu2;i3;3\n")
    with pytest.raises(DatasetError) as excinfo:
        load_dataset("interactions", interactions_file=str(path))
    assert one_line_error(excinfo) == (
        f"{path} line 3 is broken (expected at least 3 fields separated by ',', got 'u2;i3;3'); check that "
        f"interactions-sep ('auto', detected ',') and interactions-columns ('user,item,timestamp') match the file"
    )
    path.write_text("u1,i1,1\nu1,i2,soon\n")
    with pytest.raises(DatasetError, match=r"line 2 is broken \(timestamp 'soon' is not a number\); check that "
                                           r"interactions-sep"):
        load_dataset("interactions", interactions_file=str(path), interactions_sep=",")


def test_an_interactions_file_that_is_not_utf8_names_its_line(tmp_path):
    path = tmp_path / "log.tsv"
    path.write_bytes(b"u1\ti1\r\nu2\ti2\r\nu\xe93\ti3\r\n")
    with pytest.raises(DatasetError) as excinfo:
        load_dataset("interactions", interactions_file=str(path), interactions_columns="user,item")
    message = one_line_error(excinfo)
    assert message.startswith(f"interactions-file '{path}' line 3 is not UTF-8 text (")
    assert message.endswith("; save the file as UTF-8")


def test_an_empty_interactions_file_says_what_to_put_in_it(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("user,item,timestamp\n")
    with pytest.raises(DatasetError, match="holds no interactions .*; add one 'user<sep>item"):
        load_dataset("interactions", interactions_file=str(path))


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


def test_a_truncated_cached_download_is_refused_too(ml100k_dir, tmp_path, monkeypatch):
    """The extracted file in the download cache is held to the official checksum like a local copy."""
    monkeypatch.delenv("FEDRAS_DATA_DIR", raising=False)
    cached = tmp_path / "ml-100k" / "u.data"
    cached.parent.mkdir()
    cached.write_text("".join((ml100k_dir / "u.data").read_text().splitlines(keepends=True)[:50_000]))
    with pytest.raises(DatasetError, match=f"differs from the official release .*delete {cached}"):
        load_dataset("ml-100k", cache_dir=str(tmp_path))


def test_a_parsed_official_file_is_read_back_from_the_cache(tmp_path, ml100k_dir, monkeypatch):
    from fedras_flwr.algorithm.data import readers

    first = load_dataset("ml-100k", data_dir=str(ml100k_dir), cache_dir=str(tmp_path))
    entries = list((tmp_path / "parsed").glob("ml-100k-*.npz"))
    assert len(entries) == 1

    def no_parsing(*args, **kwargs):
        raise AssertionError("parsed again")

    monkeypatch.setattr(readers, "_read_table", no_parsing)
    again = load_dataset("ml-100k", data_dir=str(ml100k_dir), cache_dir=str(tmp_path))
    assert again.name == "ml-100k" and again.timestamps is not None
    assert all(np.array_equal(getattr(first, f), getattr(again, f)) for f in ("users", "items", "timestamps"))
    assert (again.num_users, again.num_items) == (first.num_users, first.num_items) == (943, 1682)


def test_the_parse_cache_follows_the_file_and_survives_a_broken_entry(tmp_path, ml100k_dir, caplog):
    copy = tmp_path / "data" / "u.data"
    copy.parent.mkdir()
    lines = (ml100k_dir / "u.data").read_text().splitlines(keepends=True)
    copy.write_text("".join(lines[:500]))
    cache = tmp_path / "cache"
    assert len(load_dataset("ml-100k", data_dir=str(copy.parent), cache_dir=str(cache), verify_checksums=False).users) == 500
    copy.write_text("".join(lines[:700]))  # another file: another entry, never the old arrays
    assert len(load_dataset("ml-100k", data_dir=str(copy.parent), cache_dir=str(cache), verify_checksums=False).users) == 700
    entries = sorted((cache / "parsed").glob("*.npz"))
    assert len(entries) == 2
    for entry in entries:
        entry.write_bytes(b"not an npz")
    with caplog.at_level(logging.WARNING):
        data = load_dataset("ml-100k", data_dir=str(copy.parent), cache_dir=str(cache), verify_checksums=False)
    assert len(data.users) == 700 and "unreadable parse cache" in caplog.text
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder should be")
    assert len(load_dataset("ml-100k", data_dir=str(copy.parent), cache_dir=str(blocked), verify_checksums=False).users) == 700


# Line-order time: SASRec's Amazon file and interactions files without a timestamp column

ORDERED_LINES = [  # user, item: each user's lines in time order; item labels sort unlike their times
    ("7", "50"), ("7", "11"), ("7", "90"), ("7", "23"), ("7", "4"),
    ("3", "8"), ("3", "61"), ("3", "2"), ("3", "70"), ("3", "35"), ("3", "19"),
] + [(str(100 + u), str(200 + i)) for u in range(3) for i in range(200)]  # a catalogue for the eval negatives


def check_line_order_split(data: Interactions) -> None:
    """For every split seed: the last line of a user is its test item, the one before its validation item."""
    labels = np.unique([item for _, item in ORDERED_LINES])  # _index numbers labels in sorted order
    item_id = {label: i for i, label in enumerate(labels)}
    for seed in (0, 1, 2):
        split = leave_one_out(data, seed=seed, num_eval_negatives=20)
        by_test = {user.test_item: user for user in split.users}
        seven, three = by_test[item_id["4"]], by_test[item_id["19"]]
        assert seven.val_item == item_id["23"] and sorted(seven.train_items) == sorted(item_id[i] for i in ("50", "11", "90"))
        assert three.val_item == item_id["35"]


def test_amazon_games_keeps_the_file_order_as_time(tmp_path):
    path = tmp_path / "Video.txt"
    path.write_text("".join(f"{user} {item}\n" for user, item in ORDERED_LINES))
    data = load_dataset("amazon-games", data_dir=str(tmp_path), verify_checksums=False)
    assert data.name == "amazon-games" and len(data.users) == len(ORDERED_LINES)
    check_line_order_split(data)


def test_an_interactions_file_can_say_its_line_order_is_time(tmp_path):
    path = tmp_path / "log.tsv"
    path.write_text("".join(f"{user}\t{item}\n" for user, item in ORDERED_LINES))
    ordered = load_dataset("interactions", interactions_file=str(path), interactions_columns="user,item",
                           interactions_line_order_is_time=True)
    check_line_order_split(ordered)
    shuffled = load_dataset("interactions", interactions_file=str(path), interactions_columns="user,item")
    held_out = {tuple(sorted(u.test_item for u in leave_one_out(shuffled, seed=seed, num_eval_negatives=20).users))
                for seed in range(5)}
    assert len(held_out) > 1  # without the option the held-out items follow the seed
    with pytest.raises(DatasetError) as excinfo:
        load_dataset("interactions", interactions_file=str(path), interactions_columns="user,item,timestamp",
                     interactions_line_order_is_time=True)
    assert one_line_error(excinfo).endswith("drop 'timestamp' from interactions-columns, or set "
                                            "interactions-line-order-is-time=false")


def test_the_official_amazon_games_file_loads_in_its_time_order():
    root = shared_data_dir()
    if root is None or not (root / "amazon-games-sasrec" / "Video.txt").is_file():
        pytest.skip("amazon-games-sasrec/Video.txt not found in the shared data")
    folder = root / "amazon-games-sasrec"
    data = load_dataset("amazon-games", data_dir=str(folder))  # the official file passes the checksum
    assert (data.num_users, data.num_items) == (31013, 23715)
    split = leave_one_out(data, seed=0)
    user_column, item_column = np.loadtxt(folder / "Video.txt", dtype=str, unpack=True)
    first_user = item_column[user_column == user_column[0]]  # the file's first user's items, in line order
    user = split.users[int(np.searchsorted(np.unique(user_column), user_column[0]))]  # labels are numbered sorted
    item_labels = np.unique(item_column)
    assert (item_labels[user.test_item], item_labels[user.val_item]) == (first_user[-1], first_user[-2])


def test_a_plain_file_download_is_verified_and_a_corrupt_one_deleted(tmp_path, monkeypatch):
    served = tmp_path / "served" / "Video.txt"
    served.parent.mkdir()
    served.write_text("".join(f"{user} {item}\n" for user, item in ORDERED_LINES))
    digest = hashlib.sha256(served.read_bytes()).hexdigest()
    source = dataclasses.replace(SOURCES["amazon-games"], url=served.as_uri(), file_sha256=digest)
    monkeypatch.setitem(SOURCES, "amazon-games", source)
    monkeypatch.delenv("FEDRAS_DATA_DIR", raising=False)
    cache = tmp_path / "cache"
    data = load_dataset("amazon-games", cache_dir=str(cache))
    assert (cache / "amazon-games" / "Video.txt").read_bytes() == served.read_bytes() and len(data.users) == len(ORDERED_LINES)
    (cache / "amazon-games" / "Video.txt").unlink()
    monkeypatch.setitem(SOURCES, "amazon-games", dataclasses.replace(source, file_sha256="0" * 64))
    with pytest.raises(DatasetError) as excinfo:
        load_dataset("amazon-games", cache_dir=str(cache))
    assert f"sha256 of the downloaded file is {digest}" in one_line_error(excinfo)
    assert not (cache / "amazon-games").exists() or not any((cache / "amazon-games").iterdir())
