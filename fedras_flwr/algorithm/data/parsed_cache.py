"""Parsed official datasets kept on disk, so that every process of a run (each Ray worker of a simulation,
each SuperNode) reads arrays instead of parsing the text files again.

An entry is named after the sha256 of the source file and of the code that parses it (the reader's
module and interactions.py), so an edited file or a changed reader never gets stale arrays. It is written to a
temporary file and renamed into place, so processes that parse at the same time cannot leave a broken
entry; any problem with the cache falls back to parsing.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import logging
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

from fedras_flwr.algorithm.data.download import cache_root, file_digest, replaced_on_success
from fedras_flwr.algorithm.data.interactions import Interactions

log = logging.getLogger(__name__)


def cached_parse(name: str, path: Path, parse: Callable[[Path], Interactions], cache_dir: str) -> Interactions:
    """`parse(path)`, or the arrays a previous parse of the same file by the same code left in the cache."""
    try:
        entry = cache_root(cache_dir) / "parsed" / f"{name}-{file_digest(path, 'sha256')[:16]}-{_parser_digest(parse)}.npz"
    except OSError as err:
        log.warning("%s: no parse cache (%s); parsing", name, err)
        return parse(path)
    if entry.is_file():
        try:
            return load_interactions(name, entry)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
            log.warning("%s: unreadable parse cache %s (%s); parsing again", name, entry, err)
    data = parse(path)
    try:
        save_interactions(entry, data)
    except OSError as err:
        log.warning("%s: could not keep the parsed arrays in %s (%s)", name, entry, err)
    return data


def load_interactions(name: str, entry: Path) -> Interactions:
    """The arrays `save_interactions` kept in `entry` (an .npz file)."""
    with np.load(entry) as stored:
        sizes = stored["sizes"]
        timestamps = stored["timestamps"] if "timestamps" in stored.files else None
        return Interactions(name, stored["users"], stored["items"], timestamps, int(sizes[0]), int(sizes[1]))


def save_interactions(entry: Path, data: Interactions) -> None:
    """Keep `data`'s arrays in `entry` (an .npz file), replaced as a whole or not at all."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"users": data.users, "items": data.items, "sizes": np.array([data.num_users, data.num_items])}
    if data.timestamps is not None:
        arrays["timestamps"] = data.timestamps
    with replaced_on_success(entry) as partial, open(partial, "wb") as out:
        np.savez(out, **arrays)


@functools.cache
def _parser_digest(parse: Callable[[Path], Interactions]) -> str:
    """The code that turns a file into arrays: the reader's module and the indexing it ends with."""
    source = inspect.getsource(inspect.getmodule(parse)) + inspect.getsource(inspect.getmodule(Interactions))
    return hashlib.sha256(source.encode()).hexdigest()[:12]
