"""Implicit-feedback datasets: readers for the official file formats, a verified downloader and the
in-process synthetic generator.

Every reader returns an `Interactions` table with contiguous 0-based user and item ids. Ratings are
treated as implicit positives (the NCF protocol); duplicated (user, item) pairs keep their latest time.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import inspect
import logging
import os
import shutil
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

log = logging.getLogger(__name__)

DATA_DIR_ENV = "FEDRAS_DATA_DIR"


class DatasetError(RuntimeError):
    """The dataset is missing, corrupt or cannot be parsed; the message says what to do."""


@dataclass(frozen=True)
class Interactions:
    """One row per (user, item) positive. `timestamps` is None when the source has no time."""

    name: str
    users: np.ndarray  # int64, 0..num_users-1
    items: np.ndarray  # int64, 0..num_items-1
    timestamps: np.ndarray | None
    num_users: int
    num_items: int


@dataclass(frozen=True)
class DatasetSource:
    """Where an official dataset lives and how to recognise a good copy."""

    url: str
    archive_sha256: str | None
    archive_md5: str | None
    member: str  # path inside the archive of the file we parse
    file_sha256: str | None  # checksum of that file when extracted (for user-supplied copies)


SOURCES: dict[str, DatasetSource] = {
    "ml-100k": DatasetSource(
        url="https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        archive_sha256="50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
        archive_md5="0e33842e24a9c977be4e0107933c0723",
        member="ml-100k/u.data",
        file_sha256="06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
    ),
    "ml-1m": DatasetSource(
        url="https://files.grouplens.org/datasets/movielens/ml-1m.zip",
        archive_sha256="a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
        archive_md5="c4d9eecfca2ab87c1945afe126590906",
        member="ml-1m/ratings.dat",
        file_sha256=None,
    ),
    "lastfm-2k": DatasetSource(
        url="https://files.grouplens.org/datasets/hetrec2011/hetrec2011-lastfm-2k.zip",
        archive_sha256=None,
        archive_md5="296d61afe4e8632b173fc2dd3be20ce2",
        member="user_artists.dat",
        file_sha256="001400dc3c7d2667fca6e4ea6dc6acc31a9dd28ad5cd0f74cea988c019934d3b",
    ),
}


def _file_digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _locate_local(name: str, data_dir: str) -> Path | None:
    """A user copy: `data_dir/<file>` or `data_dir/<dataset>/<file>`; data_dir falls back to $FEDRAS_DATA_DIR."""
    base = data_dir or os.environ.get(DATA_DIR_ENV, "")
    if not base:
        return None
    filename = Path(SOURCES[name].member).name
    for candidate in (Path(base) / filename, Path(base) / name / filename):
        if candidate.is_file():
            return candidate
    raise DatasetError(
        f"{name}: data-dir {base!r} has no {filename} (looked in {base}/ and {base}/{name}/). "
        f"Point data-dir (or ${DATA_DIR_ENV}) at the folder holding the official {name} files, "
        f"or leave it empty to download {SOURCES[name].url}."
    )


def _default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fedras_flwr"


def _download_verified(name: str, cache_dir: str) -> Path:
    """Download the official archive once into the cache, verify its checksum, return the parsed file."""
    source = SOURCES[name]
    root = Path(cache_dir) if cache_dir else _default_cache_dir()
    extracted = root / name / Path(source.member).name
    if extracted.is_file():
        return extracted
    root.mkdir(parents=True, exist_ok=True)
    archive = root / f"{name}.zip"
    if not archive.is_file():
        log.info("downloading %s from %s", name, source.url)
        partial = archive.with_suffix(".part")
        try:
            with urllib.request.urlopen(source.url, timeout=60) as response, open(partial, "wb") as out:
                shutil.copyfileobj(response, out)
        except OSError as err:
            raise DatasetError(
                f"{name}: could not download {source.url} ({err}). Download it by hand and set data-dir "
                f"(or ${DATA_DIR_ENV}) to the folder with the extracted files."
            ) from err
        partial.rename(archive)
    _verify_archive(name, archive)
    try:
        with zipfile.ZipFile(archive) as bundle:
            member = next(m for m in bundle.namelist() if m.endswith(Path(source.member).name))
            extracted.parent.mkdir(parents=True, exist_ok=True)
            extracted.write_bytes(bundle.read(member))
    except (zipfile.BadZipFile, StopIteration) as err:
        archive.unlink(missing_ok=True)
        raise DatasetError(f"{name}: {archive} is not the expected zip archive; it was deleted, run again") from err
    return extracted


def _verify_archive(name: str, archive: Path) -> None:
    source = SOURCES[name]
    algorithm, expected = ("sha256", source.archive_sha256) if source.archive_sha256 else ("md5", source.archive_md5)
    actual = _file_digest(archive, algorithm)
    if actual != expected:
        archive.unlink()
        raise DatasetError(
            f"{name}: {algorithm} of the downloaded archive is {actual}, expected {expected}; the corrupt "
            f"file was deleted. Run again, or download {source.url} by hand and set data-dir."
        )


def resolve_dataset_file(name: str, data_dir: str, cache_dir: str) -> Path:
    """The file to parse for an official dataset: a local copy if given, else the verified download."""
    local = _locate_local(name, data_dir)
    if local is None:
        return _download_verified(name, cache_dir)
    expected = SOURCES[name].file_sha256
    if expected is not None and _file_digest(local, "sha256") != expected:
        log.warning("%s: %s differs from the official file (sha256 mismatch); using it as is", name, local)
    return local


def _read_table(
    path: Path, sep: str | None, columns: dict[str, int], skip_header: bool, encoding: str = "latin-1"
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Parse raw user/item labels (kept as strings, so any id scheme works) and optional timestamps."""
    users: list[str] = []
    items: list[str] = []
    times: list[float] = []
    need = max(columns.values())
    with open(path, encoding=encoding, newline="") as handle:
        for line_no, line in enumerate(handle, start=1):
            line = line.strip()
            if not line or (skip_header and line_no == 1):
                continue
            parts = line.split(sep) if sep else line.split()
            if len(parts) <= need:
                raise DatasetError(
                    f"{path}:{line_no}: expected at least {need + 1} fields separated by {sep or 'whitespace'!r}, "
                    f"got {line!r}. Check the file format (interactions-sep / interactions-columns)."
                )
            users.append(parts[columns["user"]].strip())
            items.append(parts[columns["item"]].strip())
            if "timestamp" in columns:
                try:
                    times.append(float(parts[columns["timestamp"]]))
                except ValueError as err:
                    raise DatasetError(f"{path}:{line_no}: timestamp {parts[columns['timestamp']]!r} is not a number") from err
    if not users:
        raise DatasetError(f"{path} holds no interactions")
    timestamps = np.asarray(times, dtype=np.float64) if "timestamp" in columns else None
    return np.asarray(users), np.asarray(items), timestamps


def _index(name: str, users: np.ndarray, items: np.ndarray, timestamps: np.ndarray | None) -> Interactions:
    """Map raw labels to contiguous ids and drop duplicate pairs (keeping the latest)."""
    user_labels, user_ids = np.unique(users, return_inverse=True)
    item_labels, item_ids = np.unique(items, return_inverse=True)
    order = np.lexsort((timestamps,) if timestamps is not None else (np.arange(len(user_ids)),))
    user_ids, item_ids = user_ids[order], item_ids[order]
    times = timestamps[order] if timestamps is not None else None
    # keep the last occurrence of every pair (latest time)
    pair = user_ids.astype(np.int64) * len(item_labels) + item_ids
    _, last = np.unique(pair[::-1], return_index=True)
    keep = np.sort(len(pair) - 1 - last)
    return Interactions(
        name=name,
        users=user_ids[keep].astype(np.int64),
        items=item_ids[keep].astype(np.int64),
        timestamps=None if times is None else times[keep],
        num_users=len(user_labels),
        num_items=len(item_labels),
    )


def load_movielens_100k(path: Path) -> Interactions:
    users, items, times = _read_table(path, "\t", {"user": 0, "item": 1, "timestamp": 3}, skip_header=False)
    return _index("ml-100k", users, items, times)


def load_movielens_1m(path: Path) -> Interactions:
    users, items, times = _read_table(path, "::", {"user": 0, "item": 1, "timestamp": 3}, skip_header=False)
    return _index("ml-1m", users, items, times)


def load_lastfm_2k(path: Path) -> Interactions:
    """user_artists.dat has no time column: the split orders each user's items randomly (seeded)."""
    users, items, _ = _read_table(path, "\t", {"user": 0, "item": 1}, skip_header=True)
    return _index("lastfm-2k", users, items, None)


def load_interactions_file(path: str, sep: str, columns: str) -> Interactions:
    """A user file of `user, item[, timestamp]` rows; `columns` names the fields in file order."""
    file = Path(path)
    if not path or not file.is_file():
        raise DatasetError(
            f"interactions-file {path!r} does not exist. Set interactions-file to a CSV/TSV with one "
            f"'user<sep>item[<sep>timestamp]' row per interaction."
        )
    names = [c.strip() for c in columns.split(",")]
    unknown = set(names) - {"user", "item", "timestamp", "_"}
    if unknown or "user" not in names or "item" not in names:
        raise DatasetError(
            f"interactions-columns {columns!r} must name 'user' and 'item' (optionally 'timestamp', '_' to skip a field)"
        )
    with open(file, encoding="utf-8", errors="replace") as handle:
        first = handle.readline()
    separator = _detect_separator(first) if sep == "auto" else sep.replace("\\t", "\t")
    fields = first.strip().split(separator) if separator else first.split()
    header = any(_not_a_number(fields[i]) for i, n in enumerate(names) if n == "timestamp" and i < len(fields)) or (
        fields and fields[names.index("user")].strip().lower() in {"user", "user_id", "userid", "uid"}
    )
    positions = {n: i for i, n in enumerate(names) if n != "_"}
    users, items, times = _read_table(file, separator, positions, skip_header=header, encoding="utf-8")
    return _index(file.stem, users, items, times)


def _detect_separator(line: str) -> str | None:
    for candidate in ("\t", ",", ";", "::", "|"):
        if candidate in line:
            return candidate
    return None  # whitespace


def _not_a_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return True
    return False


def make_synthetic(num_users: int, num_items: int, mean_interactions: int, seed: int, latent_dim: int = 8) -> Interactions:
    """ML-100K-like implicit data with planted preferences.

    Item popularity is Zipf-like, user activity log-normal (heavy tail, at least 10 items), and each
    user picks items with probability proportional to popularity x exp(<user taste, item profile>), so
    a latent-factor model clearly beats a popularity ranking. Deterministic for a seed.
    """
    rng = np.random.default_rng([seed, 20_251_126])
    popularity = 1.0 / np.arange(1, num_items + 1) ** 0.8
    popularity = popularity[rng.permutation(num_items)]
    tastes = rng.normal(size=(num_users, latent_dim))
    profiles = rng.normal(size=(num_items, latent_dim))
    activity = rng.lognormal(mean=np.log(mean_interactions) - 0.5, sigma=1.0, size=num_users)
    counts = np.clip(activity.astype(int), 10, num_items // 2)
    log_popularity, profiles_t, scale = np.log(popularity), profiles.T, np.sqrt(latent_dim)
    # filled in place: keeping each user's slice of its argpartition would pin a num_items-long array
    # per user (8 GB for 50,000 users x 20,000 items)
    ends = np.cumsum(counts)
    items_arr = np.empty(ends[-1], dtype=np.int64)
    for user, (count, end) in enumerate(zip(counts, ends)):
        logits = log_popularity + 2.5 * tastes[user] @ profiles_t / scale
        gumbel = logits + rng.gumbel(size=num_items)  # Gumbel top-k = weighted sampling w/o replacement
        items_arr[end - count : end] = np.argpartition(-gumbel, count)[:count]
    users_arr = np.repeat(np.arange(num_users, dtype=np.int64), counts)
    timestamps = rng.permutation(len(users_arr)).astype(np.float64)
    return _index("synthetic", users_arr, items_arr, timestamps)


#: users x items from which a synthetic set is kept on disk: generating costs a Gumbel draw per (user, item)
#: pair, about 50 s of CPU for 50,000 x 20,000, and each simulation process (Ray actor) would pay it again
SYNTHETIC_CACHE_MIN_PAIRS = 100_000_000


@functools.cache
def _generator_digest() -> str:
    return hashlib.sha256((inspect.getsource(make_synthetic) + inspect.getsource(_index)).encode()).hexdigest()[:12]


def cached_synthetic(num_users: int, num_items: int, mean_interactions: int, seed: int, cache_dir: str = "") -> Interactions:
    """`make_synthetic`, kept in the cache directory once it is big (see SYNTHETIC_CACHE_MIN_PAIRS).

    The file name carries a digest of the generator's code, so a changed generator never serves stale
    data; processes that ask at the same time wait for the first one to write it (file lock). Any
    problem with the cache falls back to generating.
    """
    if num_users * num_items < SYNTHETIC_CACHE_MIN_PAIRS:
        return make_synthetic(num_users, num_items, mean_interactions, seed)
    try:
        root = Path(cache_dir) if cache_dir else _default_cache_dir()
        root.mkdir(parents=True, exist_ok=True)
        path = root / f"synthetic-{num_users}x{num_items}-{mean_interactions}-seed{seed}-{_generator_digest()}.npz"
        lock = open(path.with_suffix(".lock"), "w")
    except OSError as err:
        log.warning("synthetic data: no cache (%s); generating", err)
        return make_synthetic(num_users, num_items, mean_interactions, seed)
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.is_file():
            try:
                with np.load(path) as stored:
                    sizes = stored["sizes"]
                    return Interactions(
                        "synthetic", stored["users"], stored["items"], stored["timestamps"], int(sizes[0]), int(sizes[1])
                    )
            except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
                log.warning("synthetic data: unreadable cache %s (%s); generating again", path, err)
        data = make_synthetic(num_users, num_items, mean_interactions, seed)
        partial = path.with_suffix(".part")
        try:
            with open(partial, "wb") as out:
                np.savez(out, users=data.users, items=data.items, timestamps=data.timestamps,
                         sizes=np.array([data.num_users, data.num_items]))
            partial.replace(path)
            log.info("synthetic data: kept in %s", path)
        except OSError as err:
            log.warning("synthetic data: could not write the cache %s (%s)", path, err)
        return data


_OFFICIAL: dict[str, Callable[[Path], Interactions]] = {
    "ml-100k": load_movielens_100k,
    "ml-1m": load_movielens_1m,
    "lastfm-2k": load_lastfm_2k,
}
DATASETS = ("synthetic", *_OFFICIAL, "interactions")


def load_dataset(
    name: str,
    *,
    seed: int = 0,
    data_dir: str = "",
    cache_dir: str = "",
    interactions_file: str = "",
    interactions_sep: str = "auto",
    interactions_columns: str = "user,item,timestamp",
    synthetic_users: int = 600,
    synthetic_items: int = 1000,
    synthetic_mean_interactions: int = 60,
) -> Interactions:
    """Load any supported dataset by name."""
    if name == "synthetic":
        return cached_synthetic(synthetic_users, synthetic_items, synthetic_mean_interactions, seed, cache_dir)
    if name == "interactions":
        return load_interactions_file(interactions_file, interactions_sep, interactions_columns)
    if name not in _OFFICIAL:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {DATASETS}")
    path = resolve_dataset_file(name, data_dir, cache_dir)
    try:
        return _OFFICIAL[name](path)
    except (UnicodeDecodeError, IndexError) as err:
        raise DatasetError(f"{name}: cannot parse {path} ({err}); the file is corrupt, replace it") from err


__all__ = ["DATASETS", "DATA_DIR_ENV", "DatasetError", "Interactions", "load_dataset", "make_synthetic"]
