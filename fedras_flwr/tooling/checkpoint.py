"""Crash-safe snapshots: the server's state every `checkpoint-every` rounds, and each node's private
user state at the same rounds (written by the node, on the node: it never reaches the server).

A snapshot is one `.npz` file written to a temporary name, flushed to disk and renamed over the
target, so a crash mid-write leaves the previous snapshots intact and never half of a new one. Its
metadata carries a SHA-256 of every array, so truncation or corruption is detected on reading.
Every random draw of a run derives from (seed, user, round), so a snapshot holds no RNG state:
the round number is all the randomness needs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 2  # 2: per-user table versions (downlink accounting)
_META_KEY = "__meta__"
_NAME = re.compile(r"^round-(\d+)\.npz$")


class CheckpointError(RuntimeError):
    """A snapshot that is missing, truncated, corrupt, or from an incompatible run."""


def _digest(arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for key in sorted(arrays):
        array = np.ascontiguousarray(arrays[key])
        digest.update(f"{key}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def write_snapshot(path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Atomically replace `path` with the arrays and JSON-able `meta` (plus format and checksum)."""
    full_meta = {**meta, "format": FORMAT_VERSION, "sha256": _digest(arrays)}
    encoded = np.frombuffer(json.dumps(full_meta).encode(), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")  # unique even within one process
    try:
        with open(temporary, "wb") as handle:
            np.savez(handle, **{_META_KEY: encoded}, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # make the rename itself durable
    finally:
        os.close(folder)


def read_snapshot(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Metadata and arrays of a snapshot; CheckpointError if it is unreadable or fails its checksum."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
        meta = json.loads(arrays.pop(_META_KEY).tobytes())
    except FileNotFoundError as err:
        raise CheckpointError(f"no checkpoint at {path}") from err
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt ({type(err).__name__}: {err})") from err
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format {meta.get('format') if isinstance(meta, dict) else meta!r}, "
                              f"this version reads {FORMAT_VERSION}")
    if meta.get("sha256") != _digest(arrays):
        raise CheckpointError(f"checkpoint {path} fails its checksum: it was modified or damaged")
    return meta, arrays


class SnapshotFolder:
    """Snapshots `round-<r>.npz` of one owner (the server, or one node) in one folder, newest `keep` kept."""

    def __init__(self, folder: Path, keep: int = 3) -> None:
        self.folder = Path(folder)
        self.keep = keep

    def path(self, server_round: int) -> Path:
        return self.folder / f"round-{server_round:06d}.npz"

    def rounds(self) -> list[int]:
        if not self.folder.is_dir():
            return []
        return sorted(int(m.group(1)) for p in self.folder.iterdir() if (m := _NAME.match(p.name)))

    def write(self, server_round: int, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Path:
        path = self.path(server_round)
        write_snapshot(path, arrays, {**meta, "round": server_round})
        for old in self.rounds()[: -self.keep]:
            self.path(old).unlink(missing_ok=True)
        return path

    def read(self, server_round: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return read_snapshot(self.path(server_round))
