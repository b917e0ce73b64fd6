"""Content-addressed copies of the files a crawl judged, so ``rejudge`` never needs a registry.

Why: a rules update (a new detector version, the user's own YARA rules) should re-judge
every image already crawled, and pulling thousands of images again is what a registry's
rate limits and a crawl's time forbid. The walk hands every candidate file of a layer —
a file some detector read (shared objects, objects, archives, package databases, start-up
scripts and configs) — to a ``FileKeeper``, which stores it zstd-compressed under its
sha256 (``ab/abcdef….zst``) in the store's ``files`` directory: written to a temporary
name and renamed, so concurrent workers and a kill leave no half file under a real name;
mode 0600, never executable, never unpacked. The coordinator records, per layer, which
path had which file (``kept_layers``); ``KeptLayer`` replays those files as a layer the
same walk can judge, each verified against its sha256 before it is read.

A crawl's keeping is bounded in total (``--keep-max``): each task gets a share of what is
left and stops keeping (its layer marked incomplete) when the share runs out, so the sum
never passes the bound.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zstandard

from layerhound.detectors.base import ELF_MAGIC, Detector, Interest
from layerhound.errors import CorruptLayer
from layerhound.layers.layer import Layer, Member
from layerhound.layers.stream import CHUNK
from layerhound.model import Entry, EntryType

FILES_DIR = "files"
DEFAULT_MAX = 10 * 1024**3
"""What a store keeps by default: 10 GiB of compressed candidate files."""
LEVEL = 3
SUFFIX = ".zst"


@dataclass(frozen=True)
class KeepFiles:
    """A crawl's keeping: the directory and the bound on its total size."""

    directory: Path
    limit: int = DEFAULT_MAX


def default_files_dir(db_url: str) -> Path:
    """``files/`` beside a SQLite store; for PostgreSQL, in the user's data directory."""
    from layerhound.store.db import parse_db_url

    dialect, target = parse_db_url(db_url)
    if dialect == "sqlite":
        return Path(target).parent / FILES_DIR
    import platformdirs

    return Path(platformdirs.user_data_dir("layerhound")) / FILES_DIR


@dataclass(frozen=True)
class KeepSettings:
    """Where a task keeps its layer's files and how many bytes it may add (a value: it travels to workers)."""

    directory: str
    budget: int


KEEP_ALSO = Interest(heads=(ELF_MAGIC, b"#!"))
"""Kept though no built-in detector reads them: every ELF file and script, what the user's rules
(``--rules``, which read exactly these) may bring to a later ``rejudge``."""


@dataclass(frozen=True)
class KeptFile:
    index: int
    """The file's place in the layer's entries (a path may occur twice in a layer)."""
    path: str
    sha256: str


@dataclass
class KeptManifest:
    """Which files of one layer were kept, and which files that is: every file ``covered`` passes.
    ``complete`` False when the bound (or an error) stopped the keeping."""

    files: list[KeptFile] = field(default_factory=list)
    covered: Interest = field(default_factory=Interest)
    complete: bool = True
    used: int = 0
    """Compressed bytes this layer added to the directory."""
    problem: str | None = None
    over_bound: bool = False
    """The keeping stopped at the task's share of ``--keep-max`` (not at an error)."""

    def to_json(self) -> dict[str, Any]:
        return {"files": [[f.index, f.path, f.sha256] for f in self.files], "covered": self.covered.to_json(),
                "complete": self.complete, "problem": self.problem}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> KeptManifest:
        files = [KeptFile(int(index), str(path), str(sha)) for index, path, sha in data.get("files") or ()]
        return cls(files, Interest.from_json(data.get("covered") or {}), bool(data.get("complete")), 0,
                   data.get("problem"))


def covered_by(detectors: Sequence[Detector]) -> Interest:
    """The files a walk with ``detectors`` and a keeper keeps: what they read, and ``KEEP_ALSO``."""
    interests = [detector.interest() for detector in detectors]
    return Interest.join([*(i for i in interests if i is not None), KEEP_ALSO])


def kept_path(directory: Path, sha256: str) -> Path:
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise ValueError(f"not a sha256: {sha256!r}")
    return directory / sha256[:2] / f"{sha256}{SUFFIX}"


def directory_size(directory: Path) -> int:
    """Bytes the kept files take now (what a new crawl's bound starts from)."""
    total = 0
    if not directory.is_dir():
        return 0
    for sub in os.scandir(directory):
        if sub.is_dir(follow_symlinks=False) and (len(sub.name) == 2 or sub.name == "tmp"):
            for item in os.scandir(sub.path):
                if item.is_file(follow_symlinks=False):
                    total += item.stat(follow_symlinks=False).st_size
    return total


STALE_SECONDS = 24 * 3600


def remove_stale(directory: Path, now: float) -> int:
    """Temporary files a killed worker left (older than a day: no crawl still writes them); how many."""
    removed = 0
    tmp = directory / "tmp"
    if not tmp.is_dir():
        return 0
    for item in os.scandir(tmp):
        with contextlib.suppress(OSError):
            if item.name.startswith("kept-") and now - item.stat(follow_symlinks=False).st_mtime > STALE_SECONDS:
                os.unlink(item.path)
                removed += 1
    return removed


class FileKeeper:
    """Keeps the candidate files of one layer walk (see the module docstring)."""

    also = KEEP_ALSO

    def __init__(self, settings: KeepSettings, covered: Interest = KEEP_ALSO) -> None:
        self.directory = Path(settings.directory)
        self.budget = settings.budget
        self.manifest = KeptManifest(covered=covered)
        self._compressor = zstandard.ZstdCompressor(level=LEVEL)
        self._open: set[KeptWriter] = set()

    def writer(self, entry: Entry, index: int) -> KeptWriter | None:
        """A writer for one file of the layer, or None once keeping has stopped."""
        if not self.manifest.complete:
            return None
        try:
            (self.directory / "tmp").mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, name = tempfile.mkstemp(dir=self.directory / "tmp", prefix="kept-")
        except OSError as exc:
            self.stop(f"cannot write into {self.directory}: {exc.strerror}")
            return None
        writer = KeptWriter(self, entry, index, fd, name)
        self._open.add(writer)
        return writer

    def close(self) -> None:
        """Remove what a walk that stopped half-way (a corrupt layer) left unfinished."""
        for writer in list(self._open):
            writer.discard()

    def stop(self, problem: str, over_bound: bool = False) -> None:
        if self.manifest.complete:
            self.manifest.complete = False
            self.manifest.problem = problem
            self.manifest.over_bound = over_bound


class KeptWriter:
    """One file on its way into the directory: compressed as its pieces arrive."""

    def __init__(self, keeper: FileKeeper, entry: Entry, index: int, fd: int, name: str) -> None:
        self._keeper = keeper
        self._entry = entry
        self._index = index
        self._name = name
        self._file = os.fdopen(fd, "wb")
        self._stream = keeper._compressor.stream_writer(self._file, closefd=False)
        self._failed = False

    def feed(self, piece: bytes | memoryview) -> None:
        if self._failed:
            return
        try:
            self._stream.write(piece)
            self._fail_if_over(self._file.tell())
        except OSError as exc:
            self._fail(f"cannot write into {self._keeper.directory}: {exc.strerror}")

    def finish(self, sha256: str) -> None:
        self._keeper._open.discard(self)
        if self._failed:
            return
        keeper = self._keeper
        try:
            self._stream.flush(zstandard.FLUSH_FRAME)
            size = self._file.tell()
            self._file.close()
            if self._fail_if_over(size):
                return
            target = kept_path(keeper.directory, sha256)
            if target.exists():
                os.unlink(self._name)
            else:
                target.parent.mkdir(exist_ok=True, mode=0o700)
                os.chmod(self._name, 0o600)
                os.replace(self._name, target)
                keeper.manifest.used += size
        except OSError as exc:
            self._fail(f"cannot write into {keeper.directory}: {exc.strerror}")
            return
        keeper.manifest.files.append(KeptFile(self._index, self._entry.path, sha256))

    def _fail_if_over(self, size: int) -> bool:
        """Stop keeping when this file, ``size`` compressed bytes so far, passes the task's share."""
        keeper = self._keeper
        if size <= keeper.budget - keeper.manifest.used:
            return False
        self._fail(f"the kept files reached their bound at {self._entry.path}", over_bound=True)
        return True

    def _fail(self, problem: str, over_bound: bool = False) -> None:
        self._keeper.stop(problem, over_bound)
        self.discard()

    def discard(self) -> None:
        self._failed = True
        self._keeper._open.discard(self)
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(OSError):
            os.unlink(self._name)


def open_kept(directory: Path, sha256: str) -> io.BufferedReader:
    """The decompressed bytes of a kept file, as a stream."""
    raw = open(kept_path(directory, sha256), "rb")  # noqa: SIM115 - closed with the reader
    return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw, closefd=True), CHUNK)


def verify_kept(directory: Path, sha256: str, size: int, what: str) -> None:
    """Read a kept file once, as a stream, and check its sha256 and size; raises ``CorruptLayer``."""
    digest = hashlib.sha256()
    total = 0
    try:
        kept_path(directory, sha256)
    except ValueError:
        raise CorruptLayer(f"{what}: the store names its kept copy {sha256[:80]!r}, not a sha256") from None
    try:
        with open_kept(directory, sha256) as stream:
            while piece := stream.read(CHUNK):
                digest.update(piece)
                total += len(piece)
    except FileNotFoundError:
        raise CorruptLayer(f"{what}: the kept copy sha256:{sha256} is missing from {directory}") from None
    except (OSError, zstandard.ZstdError) as exc:
        raise CorruptLayer(f"{what}: the kept copy sha256:{sha256} is unreadable: {exc}") from None
    if digest.hexdigest() != sha256 or total != size:
        raise CorruptLayer(f"{what}: the kept copy does not match sha256:{sha256} (changed on disk?)")


class KeptLayer(Layer):
    """A layer replayed from its kept files: the stored walk's entries, with bytes for the kept files."""

    def __init__(self, digest: str, diff_id: str | None, size: int, media_type: str, entries: Sequence[Entry],
                 manifest: KeptManifest, directory: Path) -> None:
        self.digest = digest
        self.diff_id = diff_id
        self.size = size
        self.media_type = media_type
        self.notes = []
        self._entries = entries
        self._manifest = manifest
        self._directory = directory

    def members(self) -> Iterator[Member]:
        """Every entry of the stored walk in its order (so a path met twice is replaced as in the
        blob); a file not kept is a member without bytes, which the walk judges not at all."""
        kept_at = {kept.index: kept for kept in self._manifest.files}
        if len(kept_at) != len(self._manifest.files) or any(i >= len(self._entries) for i in kept_at):
            raise CorruptLayer(f"the kept files of layer {self.digest} do not fit its stored entries")
        for index, entry in enumerate(self._entries):
            kept = kept_at.get(index)
            if kept is None:
                yield Member(dataclasses.replace(entry, size=0) if entry.type is EntryType.FILE else entry, None)
                continue
            if entry.path != kept.path or entry.type is not EntryType.FILE:
                raise CorruptLayer(f"kept file {kept.path} is not a file of layer {self.digest}")
            verify_kept(self._directory, kept.sha256, entry.size, f"layer {self.digest}: {kept.path}")
            with open_kept(self._directory, kept.sha256) as stream:
                yield Member(entry, stream)
