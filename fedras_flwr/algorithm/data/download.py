"""Where an official dataset's file comes from: the user's copy (data-dir or $FEDRAS_DATA_DIR) or a
download of the official archive, verified against its published checksum and kept in the cache."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import urllib.request
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from fedras_flwr.algorithm.data.interactions import DatasetError

log = logging.getLogger(__name__)

DATA_DIR_ENV = "FEDRAS_DATA_DIR"


@dataclass(frozen=True)
class DatasetSource:
    """Where an official dataset lives and how to recognise a good copy. A source with no archive checksum
    is the file itself (no archive): its download is verified by `file_sha256`."""

    url: str
    archive_sha256: str | None
    archive_md5: str | None
    member: str  # path inside the archive of the file we parse (the file's name when there is no archive)
    file_sha256: str | None  # checksum of that file when extracted (for user-supplied copies)

    @property
    def is_archive(self) -> bool:
        return bool(self.archive_sha256 or self.archive_md5)


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
    # The Amazon Video Games 5-core of SASRec (Kang & McAuley, ICDM 2018), as its authors published it: one
    # `user item` line per review, users in turn, each user's items in time order. A plain file, no archive.
    "amazon-games": DatasetSource(
        url="https://raw.githubusercontent.com/kang205/SASRec/e3738967fddab206d6eeb4fda433e7a7034dd8b1/data/Video.txt",
        archive_sha256=None,
        archive_md5=None,
        member="Video.txt",
        file_sha256="b7376fe24430743f411dc7f567285657b2adb3f74361cc7ba0aee94f3024b651",
    ),
}


def cache_root(cache_dir: str) -> Path:
    """The cache-dir setting, else the per-user cache; downloads and big synthetic sets both live here."""
    if cache_dir:
        return Path(cache_dir)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fedras_flwr"


def resolve_dataset_file(name: str, data_dir: str, cache_dir: str, verify_checksums: bool = True) -> Path:
    """The file to parse for an official dataset: a local copy if given, else the verified download.
    Either is checked against the official file's checksum.

    A local copy whose sha256 differs from the official file's (`SOURCES[name].file_sha256`) is a
    DatasetError: a truncated or edited copy would otherwise give quietly different numbers. With
    `verify_checksums=False` (run-config `verify-checksums = false`, for a deliberately modified copy) it is
    only a warning. A dataset with no file checksum (`file_sha256` None: ml-1m) cannot be checked, so its
    local copy is used as is: GroupLens publishes checksums of the zip archives only (those guard the
    download), and no checksum of the extracted ratings.dat is recorded here. A damaged copy then shows up as
    a parse error naming its line, or not at all if the damage still parses.
    """
    local = _locate_local(name, data_dir) or _download_verified(name, cache_dir)  # the cached copy is checked too
    expected = SOURCES[name].file_sha256
    if expected is not None and file_digest(local, "sha256") != expected:
        if verify_checksums:
            raise DatasetError(
                f"{name}: {local} differs from the official release (sha256 mismatch: truncated or modified); "
                f"{redownload_advice(name, local, cache_dir)}; if you changed it on purpose, "
                f"set verify-checksums=false"
            )
        log.warning(
            "%s: %s differs from the official file (sha256 mismatch); using it as is (verify-checksums=false)",
            name, local,
        )
    return local


def redownload_advice(name: str, path: Path, cache_dir: str) -> str:
    """What to do about a damaged or modified copy of an official file: the end of a one-line message."""
    filename = Path(SOURCES[name].member).name
    if path == cache_root(cache_dir) / name / filename:
        again = "extracts it again from the verified download" if SOURCES[name].is_archive else "downloads and verifies it again"
        return f"delete {path}; the next run {again}"
    return (
        f"re-download it: clear data-dir and ${DATA_DIR_ENV} so the verified download runs, "
        f"or replace it with {filename} from {SOURCES[name].url}"
    )


def file_digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _locate_local(name: str, data_dir: str) -> Path | None:
    """A user copy: `data_dir/<file>` or `data_dir/<dataset>/<file>`; data_dir falls back to $FEDRAS_DATA_DIR.

    A folder that does not exist or lacks the file is an error, not a silent download: the user asked for
    their copy.
    """
    origin, base = ("data-dir", data_dir) if data_dir else (f"${DATA_DIR_ENV}", os.environ.get(DATA_DIR_ENV, ""))
    if not base:
        return None
    filename = Path(SOURCES[name].member).name
    folder = Path(base).expanduser()
    fix = (
        f"point data-dir (or ${DATA_DIR_ENV}) at the folder holding the official {name} files, "
        f"or leave both empty to download {SOURCES[name].url}"
    )
    if not folder.exists():
        raise DatasetError(
            f"{name}: {origin} {base!r} does not exist (expected {filename} in it or in its {name}/ subfolder); {fix}"
        )
    if not folder.is_dir():
        raise DatasetError(f"{name}: {origin} {base!r} is a file, not a folder; {fix}")
    for candidate in (folder / filename, folder / name / filename):
        if candidate.is_file():
            return candidate
    raise DatasetError(
        f"{name}: {origin} {base!r} has no {filename} (looked in {folder}/ and {folder / name}/); {fix}"
    )


def _download_verified(name: str, cache_dir: str) -> Path:
    """Download the official archive (or file) once into the cache, verify its checksum, return the parsed file."""
    source = SOURCES[name]
    root = cache_root(cache_dir)
    extracted = root / name / Path(source.member).name
    if extracted.is_file():
        return extracted
    if not source.is_archive:  # the file itself, held to its checksum before it takes its place
        extracted.parent.mkdir(parents=True, exist_ok=True)
        _download(name, extracted, source.file_sha256)
        return extracted
    root.mkdir(parents=True, exist_ok=True)
    archive = root / f"{name}.zip"
    if not archive.is_file():
        _download(name, archive)
    _verify_archive(name, archive)
    try:
        with zipfile.ZipFile(archive) as bundle:
            member = next(m for m in bundle.namelist() if m.endswith(Path(source.member).name))
            extracted.parent.mkdir(parents=True, exist_ok=True)
            with replaced_on_success(extracted) as partial:
                partial.write_bytes(bundle.read(member))
    except (zipfile.BadZipFile, StopIteration) as err:
        archive.unlink(missing_ok=True)
        raise DatasetError(f"{name}: {archive} is not the expected zip archive; it was deleted, run again") from err
    return extracted


@contextmanager
def replaced_on_success(target: Path) -> Iterator[Path]:
    """A temporary file of this process beside `target` that takes its place when the block ends without error:
    writers that run at once never write into each other's file, and an interrupted one leaves nothing."""
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f"{target.name}.", suffix=".part")
    os.close(handle)
    try:
        yield Path(temporary)
        os.replace(temporary, target)
    finally:
        Path(temporary).unlink(missing_ok=True)


def _download(name: str, target: Path, sha256: str | None = None) -> None:
    """SOURCES[name].url to `target`, checked against `sha256` (if given) before it takes its place."""
    url = SOURCES[name].url
    log.info("downloading %s from %s", name, url)
    try:
        with replaced_on_success(target) as partial:
            with open(partial, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
                shutil.copyfileobj(response, out)
            if sha256 is not None and (actual := file_digest(partial, "sha256")) != sha256:
                raise DatasetError(
                    f"{name}: sha256 of the downloaded file is {actual}, expected {sha256}; the corrupt file was "
                    f"deleted. Run again, or download {url} by hand and set data-dir."
                )
    except OSError as err:
        raise DatasetError(
            f"{name}: could not download {url} ({err}). Download it by hand and set data-dir "
            f"(or ${DATA_DIR_ENV}) to the folder with the {'extracted files' if SOURCES[name].is_archive else 'file'}."
        ) from err


def _verify_archive(name: str, archive: Path) -> None:
    source = SOURCES[name]
    algorithm, expected = ("sha256", source.archive_sha256) if source.archive_sha256 else ("md5", source.archive_md5)
    actual = file_digest(archive, algorithm)
    if actual != expected:
        archive.unlink(missing_ok=True)
        raise DatasetError(
            f"{name}: {algorithm} of the downloaded archive is {actual}, expected {expected}; the corrupt "
            f"file was deleted. Run again, or download {source.url} by hand and set data-dir."
        )
