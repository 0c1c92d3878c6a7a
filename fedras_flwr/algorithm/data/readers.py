"""Parsers for the official file formats and for a user's interactions CSV/TSV.

User and item labels are read as strings, so any id scheme works; each reader hands them to `_index`
for contiguous 0-based ids. A line that does not parse raises `MalformedFile` (file, 1-based line, what is
wrong); the caller says what to do: re-download an official file (`datasets.load_dataset`), fix the
format settings of a user's file (`load_interactions_file`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fedras_flwr.algorithm.data.interactions import DatasetError, Interactions, _index


class MalformedFile(DatasetError):
    """A table that does not parse: `path`, the 1-based `line` (None when the file as a whole is wrong, e.g.
    it holds no rows) and the `problem`. Its own message has no advice; the callers add it."""

    def __init__(self, path: Path, line: int | None, problem: str) -> None:
        self.path, self.line, self.problem = path, line, problem
        self.where = f"{path} line {line}" if line is not None else str(path)
        super().__init__(f"{self.where}: {problem}")


def load_movielens_100k(path: Path) -> Interactions:
    users, items, times = _read_table(path, "\t", {"user": 0, "item": 1, "timestamp": 3}, skip_header=False)
    return _index("ml-100k", users, items, times)


def load_movielens_1m(path: Path) -> Interactions:
    users, items, times = _read_table(path, "::", {"user": 0, "item": 1, "timestamp": 3}, skip_header=False)
    return _index("ml-1m", users, items, times)


def load_lastfm_2k(path: Path) -> Interactions:
    """user_artists.dat (user, artist, play count) has no time column, and the tagging file that has times
    covers other pairs: the split orders each user's artists at random (seeded by split-seed), so the held-out
    validation and test artists are a random pair of the user's artists (docs/datasets.md)."""
    users, items, _ = _read_table(path, "\t", {"user": 0, "item": 1}, skip_header=True)
    return _index("lastfm-2k", users, items, None)


def load_amazon_games(path: Path) -> Interactions:
    """SASRec's Video.txt: `user item` lines, each user's items in time order, so the line order is the time."""
    users, items, _ = _read_table(path, None, {"user": 0, "item": 1}, skip_header=False)
    return _index("amazon-games", users, items, _line_order(users))


def _line_order(users: np.ndarray) -> np.ndarray:
    """Timestamps that say "in the order of the file's lines": the row number."""
    return np.arange(len(users), dtype=np.float64)


def load_interactions_file(path: str, sep: str, columns: str, line_order_is_time: bool = False) -> Interactions:
    """A user file of `user, item[, timestamp]` rows; `columns` names the fields in file order. Without a
    timestamp column, `line_order_is_time` says each user's rows are in time order (the split keeps it);
    otherwise the split orders a user's items at random (seeded)."""
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
    if line_order_is_time and "timestamp" in names:
        raise DatasetError(
            f"interactions-line-order-is-time is for a file without a timestamp column, and interactions-columns "
            f"{columns!r} names one: drop 'timestamp' from interactions-columns, or set interactions-line-order-is-time=false"
        )
    with open(file, encoding="utf-8", errors="replace") as handle:
        first = handle.readline()
    separator = _detect_separator(first) if sep == "auto" else sep.replace("\\t", "\t")
    fields = first.strip().split(separator) if separator else first.split()
    user_field = names.index("user")
    header = any(_not_a_number(fields[i]) for i, n in enumerate(names) if n == "timestamp" and i < len(fields)) or (
        user_field < len(fields) and fields[user_field].strip().lower() in {"user", "user_id", "userid", "uid"}
    )
    positions = {n: i for i, n in enumerate(names) if n != "_"}
    try:
        users, items, times = _read_table(file, separator, positions, skip_header=header, encoding="utf-8")
    except UnicodeDecodeError as err:
        line = _first_undecodable_line(file, "utf-8")
        raise DatasetError(
            f"interactions-file {path!r} line {line} is not UTF-8 text ({err.reason}); save the file as UTF-8"
        ) from err
    except MalformedFile as err:
        if err.line is None:
            raise DatasetError(
                f"interactions-file {path!r} holds no interactions ({err.problem}); add one "
                f"'user<sep>item[<sep>timestamp]' row per interaction"
            ) from err
        used = f"{sep!r}" if sep != "auto" else f"'auto', detected {separator or 'whitespace'!r}"
        raise DatasetError(
            f"{err.where} is broken ({err.problem}); check that interactions-sep ({used}) and "
            f"interactions-columns ({columns!r}) match the file"
        ) from err
    return _index(file.stem, users, items, _line_order(users) if line_order_is_time else times)


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
                raise MalformedFile(
                    path, line_no, f"expected at least {need + 1} fields separated by {sep or 'whitespace'!r}, "
                    f"got {_shorten(line)!r}"
                )
            users.append(parts[columns["user"]].strip())
            items.append(parts[columns["item"]].strip())
            if "timestamp" in columns:
                try:
                    times.append(float(parts[columns["timestamp"]]))
                except ValueError as err:
                    stamp = _shorten(parts[columns["timestamp"]].strip())
                    raise MalformedFile(path, line_no, f"timestamp {stamp!r} is not a number") from err
    if not users:
        raise MalformedFile(path, None, "it holds no interactions")
    timestamps = np.asarray(times, dtype=np.float64) if "timestamp" in columns else None
    return np.asarray(users), np.asarray(items), timestamps


def _shorten(text: str, limit: int = 60) -> str:
    """A line quoted in an error message, cut so the message stays one readable line."""
    return text if len(text) <= limit else text[:limit] + "..."


def _first_undecodable_line(path: Path, encoding: str) -> int:
    """The 1-based line a decode failed on: re-scanned only after the fast read failed, so it costs nothing
    on a good file."""
    line_no = 0
    with open(path, "rb") as handle:
        for raw in handle:  # split at b"\n" only; splitlines() also counts lone b"\r", as the text read did
            for piece in raw.splitlines() or [raw]:
                line_no += 1
                try:
                    piece.decode(encoding)
                except UnicodeDecodeError:
                    return line_no
    return line_no  # not reached for a file that failed to decode


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
