"""Layers as lazy handles that yield their members once, as a stream.

Three kinds exist: a tar blob (from any image source), a directory on the host
(``rootfs:DIR``) and a single file (``file:PATH``). Each yields ``Member``s in
order; the engine decides per member whether to read it. Nothing is ever
written to disk and no member path is ever used as a host path.
"""

from __future__ import annotations

import io
import lzma
import os
import posixpath
import re
import stat
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, suppress
from pathlib import Path
from typing import BinaryIO

import zstandard

from layerhound.errors import BlobError, CorruptLayer, DigestMismatch, SourceError
from layerhound.layers.fileview import FileView
from layerhound.layers.ref import BlobSource, LayerRef
from layerhound.layers.stream import (
    CHUNK,
    ISAL_ERROR,
    ByteStream,
    HashingReader,
    ReadAhead,
    VerifyingReader,
    decompressing_reader,
)
from layerhound.layers.tarstream import Kind, TarFormatError, TarHeader, TarReader
from layerhound.model import Entry, EntryType

BlobOpener = Callable[[], AbstractContextManager[BinaryIO]]
"""Opens the raw (possibly compressed) bytes of a blob; called once per read."""


def image_path(name: str) -> str:
    """Normalise a tar member name to an absolute path inside the image.

    ``..`` cannot climb above the root: ``../../etc/x`` is ``/etc/x``, as a
    container runtime that extracts safely would place it.
    """
    return posixpath.normpath("/" + name.lstrip("/")).replace("//", "/")


class Member:
    """One entry of a layer with lazy, sequential access to its bytes.

    ``head`` and ``read`` may be called in any order; the bytes are read from
    the stream at most once.
    """

    __slots__ = ("_buffer", "_explain", "_fileobj", "entry")

    def __init__(
        self,
        entry: Entry,
        fileobj: ByteStream | None,
        explain: Callable[[], None] | None = None,
    ) -> None:
        self.entry = entry
        self._fileobj = fileobj
        self._buffer = b""
        self._explain = explain
        """Called when reading fails; raises a better error if it knows one
        (a digest mismatch explains a corrupt stream)."""

    def head(self, n: int) -> bytes:
        """The first ``n`` bytes (fewer for short files).

        Peeked, not consumed, where the stream can (tar members, host files): ``read`` then
        reads the whole file into one buffer instead of joining the head to the rest, which
        would hold a large file twice at the moment of the join.
        """
        if self._fileobj is not None and not self._buffer and hasattr(self._fileobj, "peek"):
            peeked = self._read(n, peek=True)
            if len(peeked) >= min(n, self.entry.size):
                return peeked[:n]
        if self._fileobj is not None and len(self._buffer) < n:
            self._buffer += self._read(n - len(self._buffer))
        return self._buffer[:n]

    def read(self) -> bytes:
        """The whole content. Callers check ``entry.size`` against their bound first."""
        if self._fileobj is None:
            return b""
        if not self._buffer and self.entry.size > 0:
            self._buffer = self._read(self.entry.size)  # one allocation of the file's size
        else:
            self._buffer += self._read(-1)
        self._fileobj = None
        return self._buffer

    def random_access(self) -> FileView | None:
        """The file where it lies, for a host file (``rootfs:``, ``file:``); None for a tar member."""
        fileno = getattr(self._fileobj, "fileno", None)
        if fileno is None:
            return None
        try:
            return FileView(fileno(), 0, self.entry.size)
        except (OSError, ValueError):
            return None

    def chunks(self) -> Iterator[bytes]:
        """The whole content in pieces of at most ``CHUNK`` bytes, none of it kept: for files no
        detector needs whole (hashed and signature-scanned as they pass)."""
        if self._buffer:
            yield self._buffer
            self._buffer = b""
        while self._fileobj is not None:
            piece = self._read(CHUNK)
            if not piece:
                self._fileobj = None
                return
            yield piece

    def _read(self, n: int, peek: bool = False) -> bytes:
        # The bytes come straight from the decompressor and tar reader, so a
        # truncated or corrupt blob surfaces here, outside ``members()``.
        assert self._fileobj is not None
        try:
            return self._fileobj.peek(n) if peek else self._fileobj.read(n)  # type: ignore[attr-defined]
        except BlobError:
            raise
        except TAR_ERRORS as exc:
            if self._explain is not None:
                self._explain()
            raise CorruptLayer(
                f"{self.entry.path}: layer is corrupt or truncated: {describe(exc)}"
            ) from exc


class Layer(ABC):
    """A layer of an image: its identity and a one-pass walk over its members."""

    digest: str | None
    """Digest of the blob as distributed (compressed), None for host sources."""
    size: int
    media_type: str
    diff_id: str | None = None
    """Digest of the uncompressed tar that the image config names (None when
    none does); verified while the members are read."""
    compression: str = ""
    """What the blob turned out to be compressed with, once read."""
    notes: list[str] = []  # noqa: RUF012 - never mutated on the class; a walking layer sets its own
    """What a walk of the layer left out and why (host directories), filled while it walks."""

    @property
    def ref(self) -> LayerRef | None:
        """This layer as a value another process can reopen; None for host sources."""
        return None

    @property
    def walked_diff_id(self) -> str | None:
        """The diff_id known after a complete read: the verified one, else the one computed."""
        return self.diff_id

    @abstractmethod
    def members(self) -> Iterator[Member]:
        """Yield members in archive order. Raises ``ScanError`` subclasses.

        Integrity checks run when the iteration ends, so consume it fully.
        """


TAR_ERRORS = (
    ISAL_ERROR,
    TarFormatError,
    EOFError,
    zlib.error,
    lzma.LZMAError,
    zstandard.ZstdError,
    OSError,
)
"""What a broken compressed stream or tar raises (OSError: gzip's and bz2's "not a
valid stream"; a failing read of the blob itself is a ``BlobError`` before it gets
here). Nothing broader: an error of ours must surface as an internal error, not
be reported as a corrupt layer."""


class TarBlobLayer(Layer):
    """A tar blob, compressed or not, read once as a stream and verified."""

    def __init__(
        self,
        digest: str | None,
        size: int,
        media_type: str,
        opener: BlobOpener,
        diff_id: str | None = None,
        source: BlobSource | None = None,
    ) -> None:
        self.digest = digest
        self.size = size
        self.media_type = media_type
        self.diff_id = diff_id
        self.source = source
        self._opener = opener
        self.compression = "unknown"
        self._computed_diff_id: str | None = None

    @property
    def ref(self) -> LayerRef | None:
        # A blob named by no digest (a compressed legacy docker-archive member) is verified by its
        # diff_id as it is walked; it cannot be reopened elsewhere by digest, so it is walked here.
        if self.source is None or self.digest is None:
            return None
        return LayerRef(self.source, self.digest, self.diff_id, self.size, self.media_type)

    @property
    def walked_diff_id(self) -> str | None:
        return self.diff_id or self._computed_diff_id

    def members(self) -> Iterator[Member]:
        label = f"layer {self.digest or '(no digest)'}"
        with self._opener() as raw:
            verifier = VerifyingReader(raw, self.digest, self.size or None, label)
            buffered = io.BufferedReader(verifier, CHUNK)
            ahead: ReadAhead | None = None

            def explain() -> None:
                if ahead is not None:
                    ahead.close()  # the verifier is read here from now on, never from two threads
                _explain_by_digest(verifier)

            try:
                stream, self.compression = decompressing_reader(buffered)
                tar_stream = HashingReader(stream)
                # Reading, verifying, inflating and hashing the tar run in their own thread.
                ahead = ReadAhead(tar_stream)
                reader = TarReader(ahead.next_chunk)
                for header in reader:
                    entry = header_entry(header)
                    data = reader.data if entry.type is EntryType.FILE else None
                    yield Member(entry, data, explain)
                reader.input.drain()  # what follows the end blocks is part of the diff_id
                ahead.close()
                verifier.finish()
            except BlobError:
                raise
            except TAR_ERRORS as exc:
                explain()
                raise CorruptLayer(f"{label} is corrupt or truncated: {describe(exc)}") from exc
            finally:
                if ahead is not None:
                    ahead.close()
        if self.diff_id and tar_stream.hexdigest != self.diff_id:
            raise DigestMismatch(self.diff_id, tar_stream.hexdigest, f"{label} uncompressed (diff_id)")
        self._computed_diff_id = tar_stream.hexdigest


def _explain_by_digest(verifier: VerifyingReader) -> None:
    """Before blaming the compression or tar format, check the blob's digest.

    Altered bytes usually break the decompressor before the end of the blob
    is reached; reading the rest and comparing digests reports what actually
    happened (``DigestMismatch``) instead of a generic ``CorruptLayer``.
    """
    with suppress(OSError):
        verifier.finish()


def describe(exc: BaseException) -> str:
    """A one-line, user-facing reason for a library error."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


_ENTRY_TYPES = {
    Kind.FILE: EntryType.FILE,
    Kind.DIR: EntryType.DIR,
    Kind.SYMLINK: EntryType.SYMLINK,
    Kind.HARDLINK: EntryType.HARDLINK,
    Kind.OTHER: EntryType.OTHER,
}


_MODES: dict[int, int] = {}
"""One int object per distinct mode: a layer has a handful of modes and may have a million members."""
MAX_SHARED_MODES = 4096


def _shared_mode(mode: int) -> int:
    shared = _MODES.get(mode)
    if shared is None:
        if len(_MODES) >= MAX_SHARED_MODES:
            return mode
        shared = _MODES[mode] = mode
    return shared


def header_entry(header: TarHeader) -> Entry:
    """Translate a tar header into an ``Entry`` without trusting its path."""
    path = image_path(header.name)
    kind = _ENTRY_TYPES[header.kind]
    mode = _shared_mode(header.mode)
    if kind is EntryType.FILE:
        return Entry(path, kind, header.size, mode)
    if kind is EntryType.SYMLINK:
        return Entry(path, kind, 0, mode, header.linkname)
    if kind is EntryType.HARDLINK:
        return Entry(path, kind, 0, mode, image_path(header.linkname))
    return Entry(path, kind, 0, mode)


PSEUDO_FILESYSTEMS = frozenset({
    "proc", "sysfs", "devtmpfs", "devpts", "tmpfs", "ramfs", "cgroup", "cgroup2", "mqueue", "securityfs",
    "debugfs", "tracefs", "pstore", "bpf", "configfs", "fusectl", "hugetlbfs", "autofs", "binfmt_misc",
    "efivarfs", "nsfs", "rpc_pipefs", "selinuxfs",
})
"""Filesystem types a walk of a host root never enters: kernel views and memory, not an image."""
HOST_PSEUDO_DIRS = ("/proc", "/sys", "/dev", "/run")
"""Never walked when the root is the host's own ``/``, whatever is mounted there."""


def pseudo_mounts(mountinfo: str = "/proc/self/mountinfo") -> dict[str, str]:
    """Mount point → filesystem type of every pseudo filesystem mounted on this host."""
    found: dict[str, str] = {}
    try:
        with open(mountinfo, encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return found
    for line in lines:
        fields = line.split()
        if "-" not in fields or len(fields) < 5:
            continue
        fstype = fields[fields.index("-") + 1] if fields.index("-") + 1 < len(fields) else ""
        if fstype in PSEUDO_FILESYSTEMS:
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
            found[point] = fstype
    return found


class DirectoryLayer(Layer):
    """An unpacked root filesystem on the host (``rootfs:DIR``, ``rootfs:/`` for the host itself).

    Symlinks are recorded, never followed; files are opened with O_NOFOLLOW (and
    O_NONBLOCK, should a FIFO be swapped in) so a link swapped in during the walk
    cannot redirect a read, and only regular files are ever opened. The walk
    never enters a pseudo filesystem (``/proc``, ``/sys``, tmpfs, cgroup…), stays
    on the filesystem it starts on unless ``cross_mounts``, and an unreadable
    file or directory is a note (``notes``), not the end of the scan.
    """

    def __init__(self, root: Path, cross_mounts: bool = False, exclude: tuple[str, ...] = ()) -> None:
        if not root.is_dir():
            raise SourceError(f"rootfs: {root} is not a directory")
        self.root = root
        self.cross_mounts = cross_mounts
        self.exclude = frozenset(os.path.realpath(path) for path in exclude)
        """Host directories the user asked not to walk (``--exclude``)."""
        self.digest = None
        self.size = 0
        self.media_type = "application/vnd.layerhound.rootfs"
        self.notes = []

    def members(self) -> Iterator[Member]:
        root = str(self.root)
        real_root = os.path.realpath(root)
        device = os.lstat(root).st_dev
        pseudo = pseudo_mounts()
        self.notes = []
        for dirpath, dirnames, filenames in os.walk(root, onerror=self._unreadable):
            rel_dir = os.path.relpath(dirpath, root)
            kept = []
            for name in sorted(dirnames):
                host = os.path.join(dirpath, name)
                path = image_path(posixpath.join(rel_dir.replace(os.sep, "/"), name))
                reason = self._not_to_walk(host, path, real_root, device, pseudo)
                if reason is not None:
                    self.notes.append(f"{path}: {reason}")
                    yield Member(Entry(path, EntryType.DIR, 0, 0o755), None)
                    continue
                kept.append(name)
            dirnames[:] = kept
            for name in kept + sorted(filenames):
                host = os.path.join(dirpath, name)
                path = image_path(posixpath.join(rel_dir.replace(os.sep, "/"), name))
                yield from self._member(host, path)

    def _not_to_walk(
        self, host: str, path: str, real_root: str, device: int, pseudo: dict[str, str]
    ) -> str | None:
        """Why the directory ``host`` is not entered, or None."""
        if real_root == "/" and path in HOST_PSEUDO_DIRS:
            return "the host's pseudo filesystems are not part of any image"
        real = os.path.realpath(host)
        if real in self.exclude:
            return "excluded (--exclude)"
        if real in pseudo:
            return f"a {pseudo[real]} filesystem (kernel or memory, not files of the image)"
        try:
            st = os.lstat(host)
        except OSError as exc:
            return f"cannot stat: {exc.strerror}"
        if stat.S_ISDIR(st.st_mode) and st.st_dev != device and not self.cross_mounts:
            return "another filesystem is mounted here (not crossed)"
        return None

    def _unreadable(self, exc: OSError) -> None:
        self.notes.append(f"{exc.filename}: cannot read the directory: {exc.strerror}")

    def _member(self, host: str, path: str) -> Iterator[Member]:
        try:
            st = os.lstat(host)
        except OSError as exc:
            self.notes.append(f"{path}: cannot stat: {exc.strerror}")
            return
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISLNK(st.st_mode):
            try:
                target = os.readlink(host)
            except OSError as exc:
                self.notes.append(f"{path}: cannot read the link: {exc.strerror}")
                return
            yield Member(Entry(path, EntryType.SYMLINK, 0, mode, target), None)
        elif stat.S_ISDIR(st.st_mode):
            yield Member(Entry(path, EntryType.DIR, 0, mode), None)
        elif stat.S_ISREG(st.st_mode):
            try:
                fd = os.open(host, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError as exc:
                self.notes.append(f"{path}: not read: {exc.strerror}")
                yield Member(Entry(path, EntryType.FILE, 0, mode), None)
                return
            with os.fdopen(fd, "rb") as fileobj:
                if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped for something else after the lstat
                    self.notes.append(f"{path}: changed while walked, not read")
                    yield Member(Entry(path, EntryType.OTHER, 0, mode), None)
                    return
                yield Member(Entry(path, EntryType.FILE, st.st_size, mode), fileobj)
        else:
            yield Member(Entry(path, EntryType.OTHER, 0, mode), None)


class SingleFileLayer(Layer):
    """One host file judged on its own (``file:PATH``), placed at its own path."""

    def __init__(self, host_path: Path) -> None:
        if not host_path.is_file():
            raise SourceError(f"file: {host_path} is not a regular file")
        self.host_path = host_path
        self.digest = None
        self.size = host_path.stat().st_size
        self.media_type = "application/vnd.layerhound.file"

    def members(self) -> Iterator[Member]:
        # The user named this path on the command line, so a symlink they
        # name is followed (unlike links met while walking a rootfs).
        path = image_path(str(self.host_path.resolve()))
        try:
            fd = os.open(self.host_path, os.O_RDONLY)
        except OSError as exc:
            raise SourceError(f"file: cannot read {self.host_path}: {exc.strerror}") from exc
        with os.fdopen(fd, "rb") as fileobj:
            yield Member(Entry(path, EntryType.FILE, self.size, 0o644), fileobj)
