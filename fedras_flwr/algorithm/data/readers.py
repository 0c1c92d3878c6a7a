"""Parsers for the official file formats and for a user's interactions CSV/TSV.

User and item labels are read as strings, so any id scheme works; each reader hands them to `_index`
for contiguous 0-based ids.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fedras_flwr.algorithm.data.interactions import DatasetError, Interactions, _index


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
