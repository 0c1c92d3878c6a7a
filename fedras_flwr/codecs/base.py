"""The codec interface: how one client's item-table update travels to the server.

A codec turns an `ItemUpdate` (touched item ids + their update rows) into a fixed number of numpy
arrays that travel as Flower arrays with their real dtypes, and back. `wire_bytes` is exactly what
those arrays weigh once serialized the way Flower serializes them (numpy's .npy format, header
included), so byte accounting is measured, not estimated.

To add a codec, add one module to this package with a `Codec` subclass that sets `name`: it is found
and registered automatically.
"""

from __future__ import annotations

import functools
import io
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Sequence

import numpy as np

from fedras_flwr.config import RunConfig

_REGISTRY: dict[str, type["Codec"]] = {}


class PayloadError(ValueError):
    """A client payload that cannot be decoded (wrong count, dtype, shape, range or non-finite)."""


@dataclass(frozen=True)
class ItemUpdate:
    """Rows of the item-table update for the items one client touched (ids sorted and unique)."""

    ids: np.ndarray  # int64
    rows: np.ndarray  # float32 (len(ids), dim)


def merge_updates(first: ItemUpdate, second: ItemUpdate) -> ItemUpdate:
    """Row-wise sum of two updates over the union of their ids (error-feedback residuals)."""
    ids = np.union1d(first.ids, second.ids)
    rows = np.zeros((len(ids), first.rows.shape[1]), dtype=np.float32)
    rows[np.searchsorted(ids, first.ids)] += first.rows
    rows[np.searchsorted(ids, second.ids)] += second.rows
    return ItemUpdate(ids=ids, rows=rows)


def serialized_size(array: np.ndarray) -> int:
    """Bytes of `array` as Flower ships it (`np.save`, allow_pickle=False): the .npy header np.save
    writes for this dtype, layout and shape, plus the raw data. Counted, not serialized: the server
    sizes every upload (tests/test_codecs.py checks it against np.save)."""
    fortran_order = bool(array.flags.f_contiguous and not array.flags.c_contiguous)
    return _npy_header_size(array.dtype, fortran_order, array.shape) + array.nbytes


def shaped_size(shape: tuple[int, ...], dtype: str | np.dtype) -> int:
    """`serialized_size` of a C-ordered array of this shape and dtype, without allocating it."""
    dtype = np.dtype(dtype)
    return _npy_header_size(dtype, False, tuple(shape)) + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize


@functools.lru_cache(maxsize=4096)
def _npy_header_size(dtype: np.dtype, fortran_order: bool, shape: tuple[int, ...]) -> int:
    buffer = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": fortran_order, "shape": shape}
    try:
        np.lib.format.write_array_header_1_0(buffer, header)
    except ValueError:  # a header too long for format 1.0: np.save then writes 2.0
        buffer = io.BytesIO()
        np.lib.format.write_array_header_2_0(buffer, header)
    return buffer.getbuffer().nbytes


def wire_bytes(arrays: Sequence[np.ndarray]) -> int:
    return sum(serialized_size(a) for a in arrays)


class Codec(ABC):
    """Client-side encode, server-side decode; subclasses register themselves by `name`.

    `server_round` is passed to both sides for codecs that derive shared randomness from it (CoLR).
    """

    name: ClassVar[str]
    #: wire-format version: bump it when the arrays change, so old clients are refused, not misread
    version: ClassVar[int] = 1
    #: number of arrays `encode` returns (the server splits a multi-user reply with it)
    num_arrays: int
    #: whether `encode` takes `num_actions` and `predicted_bytes` exists (the K policies then apply)
    adaptive: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            _REGISTRY[cls.name] = cls

    def __init__(self, cfg: RunConfig, num_items: int, dim: int) -> None:
        self.cfg = cfg
        self.num_items = num_items
        self.dim = dim

    @property
    def tag(self) -> str:
        """`name/version`: every reply declares it and the server refuses any other."""
        return f"{self.name}/{self.version}"

    @abstractmethod
    def encode(self, update: ItemUpdate, server_round: int) -> list[np.ndarray]:
        """Client side: the arrays to upload."""

    @abstractmethod
    def decode(self, arrays: Sequence[np.ndarray], server_round: int) -> ItemUpdate:
        """Server side: rebuild the update; raise PayloadError on anything malformed."""

    @abstractmethod
    def numbers_sent(self, arrays: Sequence[np.ndarray], rows: int) -> int:
        """CoLR-style count of an upload: every float value plus one number per transmitted index.

        `rows` is the number of touched rows the server decoded from `arrays` (so nothing is decoded twice).
        """

    def symbol_bytes(self, arrays: Sequence[np.ndarray], decoded: ItemUpdate) -> tuple[int, int] | None:
        """(coded, plain) data bytes of the ids and indices, for a codec that entropy-codes them: what the
        coder saves, headers aside. None when it does not."""
        return None

    def num_actions(self, arrays: Sequence[np.ndarray]) -> int | None:
        """Number of actions (centroids) in an upload, for codecs that have them."""
        return None

    def update_basis(self, server_round: int) -> np.ndarray | None:
        """An (r x dim) basis with orthonormal rows that local training confines the item update to
        (Q0 + A B, training A), for codecs that constrain training itself (CoLR); None for codecs that
        only compress the result."""
        return None

    # -- helpers for decoders: a hostile client must not crash or poison the server --------------
    def _expect(self, arrays: Sequence[np.ndarray], dtypes: Sequence[str], ndims: Sequence[int]) -> None:
        if len(arrays) != self.num_arrays:
            raise PayloadError(f"{self.name}: expected {self.num_arrays} arrays, got {len(arrays)}")
        for index, (array, dtype, ndim) in enumerate(zip(arrays, dtypes, ndims)):
            if not isinstance(array, np.ndarray) or array.dtype != np.dtype(dtype) or array.ndim != ndim:
                raise PayloadError(
                    f"{self.name}: array {index} must be {dtype} with {ndim} dims, got "
                    f"{getattr(array, 'dtype', type(array))} {getattr(array, 'shape', '')}"
                )

    def _check_ids(self, ids: np.ndarray) -> np.ndarray:
        ids = ids.astype(np.int64)
        if len(ids) and (ids[0] < 0 or ids[-1] >= self.num_items or np.any(np.diff(ids) <= 0)):
            raise PayloadError(f"{self.name}: item ids must be sorted, unique and in [0, {self.num_items})")
        return ids

    def _check_rows(self, rows: np.ndarray, count: int) -> np.ndarray:
        if rows.shape != (count, self.dim):
            raise PayloadError(f"{self.name}: rows have shape {rows.shape}, expected {(count, self.dim)}")
        if not np.all(np.isfinite(rows)):
            raise PayloadError(f"{self.name}: rows contain NaN or infinity: they must be finite")
        return rows.astype(np.float32, copy=False)

    def check_decoded(self, update: ItemUpdate) -> ItemUpdate:
        """What the server relies on, whatever the codec: 1-D integer ids, sorted, unique and in the
        catalogue, and one finite float32 row per id (catches what a decoder let through)."""
        if update.ids.ndim != 1 or update.ids.dtype.kind not in "iu":
            raise PayloadError(f"{self.name}: decoded item ids must be a 1-D integer array")
        ids = self._check_ids(update.ids)
        return ItemUpdate(ids, self._check_rows(update.rows, len(ids)))


def codec_registry() -> dict[str, type[Codec]]:
    return dict(_REGISTRY)
