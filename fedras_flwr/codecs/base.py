"""The codec interface: how one client's item-table update travels to the server.

A codec turns an `ItemUpdate` (touched item ids + their update rows) into a fixed number of numpy
arrays that travel as Flower arrays with their real dtypes, and back. `wire_bytes` is exactly what
those arrays weigh once serialized the way Flower serializes them (numpy's .npy format, header
included), so byte accounting is measured, not estimated.

To add a codec, add one module to this package with a `Codec` subclass that sets `name` (and, if it
has parameters, a `Params` dataclass of `parameter` fields): it is found and registered automatically,
and its parameters become run-config keys. Codecs know nothing of the run config: `make_codec` builds
one from its own parameters and the run's `CodecContext`.
"""

from __future__ import annotations

import dataclasses
import functools
import io
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np

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


def parameter(default: Any, help: str, *, choices: tuple = (), positive: bool = False, fraction: bool = False) -> Any:
    """A codec parameter: a dataclass field that is also a run-config key (`name_with_underscores` as
    `name-with-hyphens`). `help` is its line in the configuration reference; `choices`, `positive`
    (> 0) and `fraction` (in (0, 1]) are checked when the parameters are built."""
    checks = {"help": help, "choices": choices, "positive": positive, "fraction": fraction}
    return dataclasses.field(default=default, metadata=checks)


def key_of(name: str) -> str:
    return name.replace("_", "-")


@dataclass(frozen=True)
class CodecParams:
    """Base of every codec's parameters: checks each `parameter` field against its declaration."""

    def __post_init__(self) -> None:
        for spec in dataclasses.fields(self):
            value, rule = getattr(self, spec.name), spec.metadata
            if rule.get("choices") and value not in rule["choices"]:
                raise ValueError(f"{key_of(spec.name)} must be one of {rule['choices']}, got {value!r}")
            if rule.get("positive") and not value > 0:  # also catches NaN
                raise ValueError(f"{key_of(spec.name)} must be > 0, got {value}")
            if rule.get("fraction") and not 0 < value <= 1:
                raise ValueError(f"{key_of(spec.name)} must be in (0, 1], got {value}")


@dataclass(frozen=True)
class CodecContext:
    """What a codec needs from the run besides its own parameters."""

    num_items: int  # M: item ids are in [0, M)
    dim: int  # d: columns of an update row
    seed: int = 0  # shared randomness both sides derive from it (k-means seeds, CoLR's basis)
    max_actions: int = 0  # an adaptive codec's decoder refuses more actions than this (0: its own setting)


class Codec(ABC):
    """Client-side encode, server-side decode; subclasses register themselves by `name`.

    `server_round` is passed to both sides for codecs that derive shared randomness from it (CoLR).
    """

    name: ClassVar[str]
    #: wire-format version: bump it when the arrays change, so old clients are refused, not misread
    version: ClassVar[int] = 1
    #: the codec's own parameters (run-config keys); a codec without any keeps `CodecParams`
    Params: ClassVar[type[CodecParams]] = CodecParams
    #: number of arrays `encode` returns (the server splits a multi-user reply with it)
    num_arrays: int
    #: whether `encode` takes `num_actions` and `predicted_bytes` exists (the K policies then apply)
    adaptive: ClassVar[bool] = False
    #: whether decode(encode(u)) == u exactly: the byte references, which send the dense weights as they are
    lossless: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            _register(cls)

    def __init__(self, params: CodecParams, context: CodecContext) -> None:
        if not isinstance(params, self.Params):
            raise TypeError(f"{self.name} takes {self.Params.__name__}, got {type(params).__name__}")
        self.params = params
        self.context = context
        self.num_items = context.num_items
        self.dim = context.dim

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

    @classmethod
    def budget_parameter(cls, dim: int) -> tuple[str, tuple[Any, ...]] | None:
        """The parameter that trades upload bytes for fidelity, with its candidate values from the smallest
        upload to the largest at row width `dim` (scripts/payload_grid.py calibrates it to byte budgets);
        None for a codec without one."""
        return None

    def encode_flops(self, rows: int, num_actions: int) -> float:
        """Multiply-adds of encoding `rows` touched rows at `num_actions` actions (the simulated clock
        charges them); 0 for codecs whose encoding costs nothing next to training."""
        return 0.0

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


def _register(cls: type[Codec]) -> None:
    """Add a codec under a new name; its parameter keys must not collide with another codec's."""
    if cls.name in _REGISTRY:
        raise ValueError(f"a codec named {cls.name!r} is already registered ({_REGISTRY[cls.name].__qualname__})")
    taken = {key: other.name for other in _REGISTRY.values() for key in parameter_keys(other)}
    clashes = sorted(set(parameter_keys(cls)) & set(taken))
    if clashes:
        raise ValueError(f"codec {cls.name!r}: parameter {clashes[0]!r} is already declared by codec {taken[clashes[0]]!r}")
    _REGISTRY[cls.name] = cls


def unregister_codec(name: str) -> None:
    """Remove a codec (tests that register a throw-away codec clean up with it)."""
    _REGISTRY.pop(name, None)


def parameter_keys(codec: type[Codec]) -> dict[str, dataclasses.Field]:
    """A codec's run-config keys and their fields."""
    return {key_of(spec.name): spec for spec in dataclasses.fields(codec.Params)}


def available_codecs() -> list[str]:
    return sorted(_REGISTRY)


def codec_class(name: str) -> type[Codec]:
    if name not in _REGISTRY:
        raise ValueError(f"codec must be one of {available_codecs()}, got {name!r}")
    return _REGISTRY[name]


def make_codec(name: str, context: CodecContext, params: CodecParams | None = None) -> Codec:
    """The one way to build a codec: by name, from its own parameters (default: their defaults)."""
    cls = codec_class(name)
    return cls(cls.Params() if params is None else params, context)
