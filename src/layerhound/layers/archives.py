"""Archives inside layers: ``.deb``, ``.rpm``, tar (plain or compressed) and zip.

Why: an implant does not have to be installed to be a finding. A package left
in ``/var/cache/apt/archives``, an ``.rpm`` copied into a build stage, a
release tarball or a zip of build outputs carries the same bytes, and a
scanner that only reads installed files misses them. The walker opens such
files and judges their members with the same detectors, in the same way, as
the files of the layer itself (``layers.walk``).

This module knows the formats; the walker decides what to read and what a
member's findings mean. Everything happens in memory:

* the archive file itself is read whole (it is bounded by ``ARCHIVE_MAX_SIZE``)
  and its members are streamed out of it, decompressing as they go;
* member names are normalised to absolute in-image style paths for the
  detectors (``..`` cannot climb above ``/``) and are never used as host paths;
  nothing is ever written to disk.

Recognition is by content, not by name: ``!<arch>\\n`` followed by a
``debian-binary`` member (deb), the rpm lead magic, ``PK\\x03\\x04`` (zip), tar's
``ustar`` magic at offset 257, and gzip/xz/zstd/bzip2 streams whose decompressed
start is a tar header. A name that says archive (``.deb``, ``.tar.gz``…) on
content that is not one is opened anyway so the failure is reported, never
silently skipped. A plain ``ar`` archive (a static library) is opened too: its
members are the object files a static link would copy into a program.

A ``.deb`` is one archive level: its ``data.tar.*`` is part of the format, so
its members are the data tar's members (``control.tar.*`` holds only
maintainer scripts and metadata and is not read). An ``.rpm``'s lead and two
headers are skipped by their index counts; its payload is a cpio "newc"
stream under any of rpm's compressions.
"""

from __future__ import annotations

import bz2
import enum
import io
import lzma
import stat
import struct
import zlib
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any, cast

from layerhound.layers.fileview import FileView
from layerhound.layers.layer import TAR_ERRORS, header_entry, image_path
from layerhound.layers.stream import (
    BZIP2_MAGIC,
    CHUNK,
    GZIP_MAGIC,
    LZ4_MAGIC,
    XZ_MAGIC,
    ZSTD_MAGIC,
    ByteStream,
    decompressor,
    is_zstd,
)
from layerhound.layers.tarstream import BLOCK, TarReader, checksum_matches
from layerhound.model import Entry, EntryType, Finding, Indicates, Kind

ARCHIVE_MAX_SIZE = 64 * 1024 * 1024
"""A zip read from a layer stream is held whole to be opened (its directory is at its end);
a larger one is not opened, and that is reported. The streamed formats (tar, deb, rpm) and a
zip on the host (read where it lies) are bounded by the budget only (``MAX_BYTES``, ``MAX_MEMBERS``)."""
SINGLE_FILE = frozenset({"gzip", "xz", "lzma", "zstd", "bzip2", "lz4"})
"""Formats that are one compressed file, not an archive of several."""
STREAMED = frozenset({"tar", "deb", "rpm", "ar"}) | SINGLE_FILE
"""Formats read front to back as the file passes, never held."""
MAX_DEPTH = 3
"""Archives inside archives are opened down to this many levels (a file of the
layer is level 1); a deeper one is judged as a file but not opened; reported."""
MAX_BYTES = 2 * 1024 * 1024 * 1024
"""Uncompressed bytes of members examined per archive found in the layer,
nested archives included; beyond it the rest of that archive is skipped; reported."""
MAX_MEMBERS = 200_000
"""Members (of any type) examined per archive found in the layer, nested included."""
PEEK_SIZE = 512
"""Bytes of each file looked at to recognise an archive: tar's magic sits at offset 257."""

AR_MAGIC = b"!<arch>\n"
RPM_MAGIC = b"\xed\xab\xee\xdb"
ZIP_MAGIC = b"PK\x03\x04"
TAR_MAGIC = b"ustar"
TAR_MAGIC_OFFSET = 257
RPM_HEADER_MAGIC = b"\x8e\xad\xe8\x01"
RPM_LEAD_SIZE = 96
RPM_MAX_TAGS = 0xFFFF
RPM_MAX_DATA = 0x0FFFFFFF
"""rpm's own limits on a header's index count and data size (HEADER_TAGS_MAX,
HEADER_DATA_MAX): larger values only come from a corrupt file."""
LZMA_ALONE_MAGIC = b"\x5d\x00\x00"
CPIO_NEWC = (b"070701", b"070702")
CPIO_HEADER_SIZE = 110
CPIO_TRAILER = "TRAILER!!!"


class Format(str, enum.Enum):
    DEB = "deb"
    RPM = "rpm"
    ZIP = "zip"
    TAR = "tar"
    AR = "ar"
    """A plain ``ar`` archive: a static library (``liblzma.a``), whose members are object files."""
    GZIP = "gzip"
    XZ = "xz"
    LZMA = "lzma"
    ZSTD = "zstd"
    BZIP2 = "bzip2"
    LZ4 = "lz4"
    """One compressed file (``liblzma.so.5.gz``): its one member is what it decompresses to."""


COMPRESSED_FILE_MAX = 64 * 1024 * 1024
"""Bytes a compressed single file is decompressed to, in memory (as a held zip is bounded by
``ARCHIVE_MAX_SIZE``); one that decompresses to more is not judged, and that is reported."""
COMPRESSED_SUFFIXES = {".gz": "", ".tgz": ".tar", ".xz": "", ".txz": ".tar", ".lzma": "", ".zst": "",
                       ".tzst": ".tar", ".bz2": "", ".tbz2": ".tar", ".lz4": "", ".z": ""}
"""What a compressed file's name loses (or becomes) to name what is inside, as gunzip names it."""


class ArchiveError(Exception):
    """The archive is corrupt, truncated or of an unsupported variant."""


class ArchiveLimit(Exception):
    """A bound on one archive (bytes or members) was exceeded; the archive stops here."""


ARCHIVE_ERRORS: tuple[type[Exception], ...] = (
    *TAR_ERRORS,
    NotImplementedError,
    RuntimeError,
    struct.error,
    UnicodeDecodeError,
    ArchiveError,
)
"""What a corrupt or unsupported archive raises while it is read."""


NAME_SUFFIXES: tuple[tuple[str, Format], ...] = (
    (".deb", Format.DEB),
    (".udeb", Format.DEB),
    (".ddeb", Format.DEB),
    (".rpm", Format.RPM),
    (".zip", Format.ZIP),
    (".tar", Format.TAR),
    (".tar.gz", Format.TAR),
    (".tgz", Format.TAR),
    (".tar.xz", Format.TAR),
    (".txz", Format.TAR),
    (".tar.zst", Format.TAR),
    (".tzst", Format.TAR),
    (".tar.bz2", Format.TAR),
    (".tbz2", Format.TAR),
    (".tar.lzma", Format.TAR),
)
"""Names that say "archive". They never decide on their own: they only make
a file that is not recognisably one be opened (and reported as unreadable)."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """A file that is, or may be, an archive."""

    format: Format
    certain: bool
    """The content says so. False for a compressed stream whose start could not
    be decompressed from the peek (decided on the whole data), and for a name
    without matching content."""
    named: bool
    """The file's name says it is an archive: a failure to open it is reported."""
    inner_name: str = ""
    """For a compressed file: the name of what it decompresses to (its one member)."""
    compression: str = ""
    """For a compressed file or tarball: the compression its magic bytes name."""
    inner_head: bytes = b""
    """For a compressed file whose start decompressed from the peek: the first bytes of what it holds."""


_ALL_SUFFIXES = tuple(suffix for suffix, _ in NAME_SUFFIXES)


def _named_format(path: str) -> Format | None:
    base = path[path.rfind("/") + 1 :].lower()
    if not base.endswith(_ALL_SUFFIXES):  # one C-level test for the common case
        return None
    return next(fmt for suffix, fmt in NAME_SUFFIXES if base.endswith(suffix))


def _compression(head: bytes) -> str | None:
    if head.startswith(GZIP_MAGIC + b"\x08"):
        return "gzip"
    if head.startswith(XZ_MAGIC):
        return "xz"
    if is_zstd(head):
        return "zstd"
    if head.startswith(BZIP2_MAGIC) and head[3:4].isdigit():
        return "bzip2"
    if head.startswith(LZ4_MAGIC):
        return "lz4"
    if head.startswith(LZMA_ALONE_MAGIC) and _peek_decompressed(head, "lzma"):
        return "lzma"  # a weak magic: only if the start really decompresses
    return None


def _is_tar_header(block: bytes) -> bool:
    """A whole tar header block: the ``ustar`` magic and a matching checksum."""
    if block[TAR_MAGIC_OFFSET : TAR_MAGIC_OFFSET + len(TAR_MAGIC)] != TAR_MAGIC or len(block) < BLOCK:
        return False
    return checksum_matches(block[:BLOCK])


def _peek_decompressed(head: bytes, compression: str) -> bytes:
    """What the first compressed bytes decompress to, as far as they go.

    gzip and xz yield output from a partial stream; zstd and bzip2 need whole
    blocks, so for them (and for any error) this is empty: undecided.
    """
    try:
        if compression == "gzip":
            return zlib.decompressobj(wbits=31).decompress(head, PEEK_SIZE)
        if compression == "xz":
            return lzma.LZMADecompressor().decompress(head, PEEK_SIZE)
        if compression == "lzma":
            return lzma.LZMADecompressor(lzma.FORMAT_ALONE).decompress(head, PEEK_SIZE)
    except (zlib.error, lzma.LZMAError, EOFError):
        pass
    return b""


_MAGIC_FIRST_BYTES = frozenset(
    magic[:1] for magic in (AR_MAGIC, RPM_MAGIC, ZIP_MAGIC, GZIP_MAGIC, XZ_MAGIC, ZSTD_MAGIC, BZIP2_MAGIC, LZ4_MAGIC,
                            LZMA_ALONE_MAGIC)
) | {bytes([first]) for first in range(0x50, 0x60)}  # zstd skippable frames


def inner_name(path: str) -> str:
    """What a compressed file decompresses to is called: its name without the compression's
    suffix (``.tgz`` becomes ``.tar``), or its name as it is if it has none."""
    base = path[path.rfind("/") + 1 :]
    dot = base.rfind(".")
    if dot > 0 and base[dot:].lower() in COMPRESSED_SUFFIXES:
        return base[:dot] + COMPRESSED_SUFFIXES[base[dot:].lower()]
    return base or "data"


def sniff(path: str, head: bytes, size: int) -> Candidate | None:
    """Is the file of ``size`` bytes whose first ``PEEK_SIZE`` bytes are ``head`` an archive?"""
    named = _named_format(path)
    if head[:1] not in _MAGIC_FIRST_BYTES and not _is_tar_header(head):
        # Most files: one byte says no magic can follow (this runs on every file).
        return None if named is None else Candidate(named, False, True)
    if head.startswith(AR_MAGIC):
        if head[8:24].rstrip(b" ").rstrip(b"/") == b"debian-binary":
            return Candidate(Format.DEB, True, named is not None)
        return Candidate(Format.DEB, False, True) if named is Format.DEB else Candidate(Format.AR, True, False)
    if head.startswith(RPM_MAGIC):
        return Candidate(Format.RPM, True, named is not None)
    if head.startswith(ZIP_MAGIC):
        return Candidate(Format.ZIP, True, named is not None)
    if _is_tar_header(head):
        return Candidate(Format.TAR, True, named is not None)
    compression = _compression(head)
    if compression is not None:
        start = _peek_decompressed(head, compression)
        inner = inner_name(path)
        whole = size <= len(head) and compression in ("gzip", "xz", "lzma")
        if len(start) >= TAR_MAGIC_OFFSET + len(TAR_MAGIC) or whole:
            # Decided: a tar header is there or not (a whole small file
            # decompressed to less than one header is no tarball either).
            if _is_tar_header(start):
                return Candidate(Format.TAR, True, named is not None)
            if named is Format.TAR:
                return Candidate(Format.TAR, False, True)
            return Candidate(Format(compression), True, named is not None, inner, compression, start)
        # Undecided (zstd, bzip2, lz4 need a whole block): ``stream_members`` decides, tarball or one file.
        return Candidate(named or Format.TAR, False, named is not None, inner, compression)
    if named is not None:
        return Candidate(named, False, True)
    return None


class ArchiveMember:
    """One member of an archive, with lazy sequential access to its bytes.

    The same interface as ``layers.layer.Member``; read errors are not
    translated here, the walker reports them against the archive.
    """

    __slots__ = ("_buffer", "_fileobj", "container", "entry", "name", "note")

    def __init__(self, entry: Entry, fileobj: ByteStream | None, note: str | None = None, held: bytes = b"",
                 container: Format | None = None) -> None:
        self.entry = entry
        self.container = container
        """The format of the file this member came from, when only reading it told (a compressed
        file that was no tarball): the walker's scope says it instead of the format guessed."""
        self.name = entry.path.lstrip("/")
        self.note = note
        """Why this member is not judged (encrypted, unsupported compression)."""
        self._fileobj = fileobj
        self._buffer = held
        """What was read so far; all of it for a member held from the start (``held``)."""

    def head(self, n: int) -> bytes:
        # Peeked where the member's reader can (zip, tar), as ``layer.Member.head`` does: ``read``
        # then holds the member once, not the head joined to the rest.
        if self._fileobj is not None and not self._buffer and hasattr(self._fileobj, "peek"):
            peeked: bytes = self._fileobj.peek(n)
            if len(peeked) >= min(n, self.entry.size):
                return peeked[:n]
        if self._fileobj is not None and len(self._buffer) < n:
            self._buffer += self._fileobj.read(n - len(self._buffer))
        return self._buffer[:n]

    def read(self) -> bytes:
        # In chunks into one growing buffer: inflating a whole member in one call inflates all of
        # it at once, and holds compressed input, output and zlib's doubling buffer (2.3x a
        # 414 MiB member, measured); BytesIO grows in place and hands its buffer over uncopied.
        if self._fileobj is None:
            return self._buffer
        sink = io.BytesIO()
        sink.write(self._buffer)
        while chunk := self._fileobj.read(CHUNK):
            sink.write(chunk)
        self._buffer = sink.getvalue()
        self._fileobj = None
        return self._buffer


    def random_access(self) -> FileView | None:
        """Members are read as streams only."""
        return None

    def chunks(self) -> Iterator[bytes]:
        """The whole content in pieces of at most ``CHUNK`` bytes, none of it kept (see ``layer.Member``)."""
        if self._buffer:
            yield self._buffer
            self._buffer = b""
        while self._fileobj is not None:
            piece = self._fileobj.read(CHUNK)
            if not piece:
                self._fileobj = None
                return
            yield piece


Members = Generator[ArchiveMember, None, None]
"""An archive's members, streamed; ``close()`` releases its readers."""


class _ViewReader(io.RawIOBase):
    """A seekable, read-only stream over a memoryview: no copy of the bytes."""

    def __init__(self, view: memoryview) -> None:
        self._view = view
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self._view[self._pos : self._pos + len(buffer)]
        n = len(chunk)
        buffer[:n] = chunk
        self._pos += n
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._view)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos


def _buffered(view: memoryview) -> io.BufferedReader:
    return io.BufferedReader(_ViewReader(view), CHUNK)


def decompressed_stream(raw: io.BufferedReader[Any]) -> tuple[ByteStream, str]:
    """``raw`` decompressed by its magic bytes (or as is)."""
    head = raw.peek(PEEK_SIZE)[:PEEK_SIZE]
    compression = _compression(head) or "none"
    return decompressor(raw, compression), compression


def members(candidate: Candidate, data: bytes) -> Members | None:
    """The members of the archive ``data`` held in memory; None if it is not one after all.

    A zip is read by its directory; the other formats by the same front-to-back readers as
    an archive that is never held (``stream_members``). Raises ``ArchiveError`` or one of
    ``ARCHIVE_ERRORS`` (while iterating) when the archive is corrupt or truncated.
    """
    view = memoryview(data)
    if candidate.format is Format.ZIP:
        return _zip_members(view)
    return stream_members(candidate, _buffered(view))


def stream_members(candidate: Candidate, raw: io.BufferedReader[Any]) -> Members | None:
    """The members of a tar, deb, rpm, ar or compressed file read front to back from ``raw``;
    None if it is no archive after all.

    Nothing is held (but the one member of a compressed file): a member's data is read from the
    stream when it is judged and skipped otherwise.
    """
    if candidate.format is Format.TAR and not candidate.certain and not candidate.named:
        # Undecided (zstd, bzip2 and lz4 need a whole block): decompress the start of what is buffered.
        try:
            stream, compression = decompressed_stream(io.BufferedReader(_Peeked(raw.peek(CHUNK)), CHUNK))
            start = _read_up_to(stream, PEEK_SIZE)
        except ARCHIVE_ERRORS:
            start, compression = b"", _compression(raw.peek(PEEK_SIZE)[:PEEK_SIZE]) or "none"
        if not _is_tar_header(start):
            if compression not in SINGLE_FILE:
                return None
            return _single_file_members(decompressor(raw, compression), candidate.inner_name, compression)
    if candidate.format.value in SINGLE_FILE:
        fmt = candidate.format.value
        return _single_file_members(decompressor(raw, fmt), candidate.inner_name, fmt)
    if candidate.format is Format.DEB:
        return _deb_stream_members(raw)
    if candidate.format is Format.RPM:
        return _rpm_stream_members(raw)
    if candidate.format is Format.AR:
        return _ar_stream_members(raw)
    if candidate.format is Format.TAR:
        return _tar_stream_members(decompressed_stream(raw)[0])
    raise ValueError(f"{candidate.format.value} is not read as a stream")


class _Peeked(io.RawIOBase):
    """The bytes of a peek as a stream of their own (to decide an undecided compressed tar)."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), len(self._data))
        buffer[:n] = self._data[:n]
        self._data = self._data[n:]
        return n


class _Limited(io.RawIOBase):
    """Exactly ``size`` bytes of ``stream`` (an ar member), as a raw stream; short input is an error."""

    def __init__(self, stream: ByteStream, size: int, what: str) -> None:
        self._stream = stream
        self.left = size
        self._what = what

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self.left)
        if n == 0:
            return 0
        data = self._stream.read(n)
        if not data:
            raise ArchiveError(f"truncated {self._what}")
        buffer[: len(data)] = data
        self.left -= len(data)
        return len(data)


def _skip(stream: ByteStream, n: int, what: str) -> None:
    while n > 0:
        data = stream.read(min(n, CHUNK))
        if not data:
            raise ArchiveError(f"truncated {what}")
        n -= len(data)


def _read_up_to(stream: ByteStream, n: int) -> bytes:
    parts: list[bytes] = []
    left = n
    while left > 0:
        chunk = stream.read(left)
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _read_exact(stream: ByteStream, n: int, what: str) -> bytes:
    data = _read_up_to(stream, n)
    if len(data) != n:
        raise ArchiveError(f"truncated {what}")
    return data


# ---------------------------------------------------------------- tar


def _tar_stream_members(stream: ByteStream) -> Members:
    reader = TarReader(partial(stream.read, CHUNK))
    for header in reader:
        entry = header_entry(header)
        yield ArchiveMember(entry, reader.data if entry.type is EntryType.FILE else None)


# ---------------------------------------------------------------- one compressed file


def _single_file_members(stream: ByteStream, name: str, compression: str) -> Members:
    """The one member of a compressed file: what it decompresses to, held (its size is known only
    at its end, and the detectors need it), up to ``COMPRESSED_FILE_MAX`` bytes."""
    data = _read_up_to(stream, COMPRESSED_FILE_MAX + 1)
    entry = Entry(image_path(name), EntryType.FILE, len(data), 0o644)
    if len(data) > COMPRESSED_FILE_MAX:
        yield ArchiveMember(entry, None, f"decompresses to more than the {COMPRESSED_FILE_MAX}-byte bound",
                            container=Format(compression))
        return
    yield ArchiveMember(entry, None, held=data, container=Format(compression))


# ---------------------------------------------------------------- deb (ar)


AR_HEADER_SIZE = 60
AR_MAX_NAMES = 1024 * 1024
"""Bytes of a GNU ar long-name table (``//``) held to name members; a larger one is an error."""
MAX_AR_NAME = 4096
"""Longest BSD ar member name read (PATH_MAX)."""


def _ar_headers(raw: io.BufferedReader[Any]) -> Iterator[tuple[str, int, int]]:
    """Each ar member's raw name, mode and size, with ``raw`` at its data; the caller reads or
    skips exactly ``size`` bytes before asking for the next (the padding is skipped here)."""
    if _read_up_to(raw, len(AR_MAGIC)) != AR_MAGIC:
        raise ArchiveError("not an ar archive (no !<arch> magic)")
    while True:
        header = _read_up_to(raw, AR_HEADER_SIZE)
        if len(header) <= 1:
            return  # the end (a lone newline pads an odd archive)
        if len(header) < AR_HEADER_SIZE or header[58:60] != b"`\n":
            raise ArchiveError("bad or truncated ar member header")
        name = header[:16].decode("latin-1").rstrip(" ")
        try:
            size = int(header[48:58].decode("ascii").strip() or "-1")
            mode = int(header[40:48].decode("ascii").strip() or "0", 8)
        except ValueError as exc:
            raise ArchiveError(f"bad ar member header of {name}") from exc
        if size < 0:
            raise ArchiveError(f"bad ar member size of {name}")
        yield name, mode, size
        _skip(raw, size & 1, "ar padding")


def _deb_stream_members(raw: io.BufferedReader[Any]) -> Members:
    """The files a .deb would install, front to back: ar headers read, control.tar skipped, data.tar streamed."""
    seen_binary = False
    for raw_name, _mode, size in _ar_headers(raw):
        name = raw_name.rstrip("/")
        if name == "debian-binary":
            if size > 64 or not _read_exact(raw, size, "debian-binary").startswith(b"2."):
                raise ArchiveError("unsupported deb format version")
            seen_binary = True
        elif name.startswith("data.tar"):
            if not seen_binary:
                raise ArchiveError("not a deb: data.tar before debian-binary")
            body = io.BufferedReader(_Limited(raw, size, f"ar member {name}"), CHUNK)
            yield from _tar_stream_members(decompressed_stream(body)[0])
            return
        else:
            _skip(raw, size, f"ar member {name}")
    raise ArchiveError("not a deb: no data.tar member")


def _ar_stream_members(raw: io.BufferedReader[Any]) -> Members:
    """The members of a static library, front to back, named as GNU and BSD ar name them.

    GNU: ``name/``, or ``/N`` for the name at offset N of the ``//`` table; ``/`` (and
    ``/SYM64/``) is the symbol index, skipped. BSD: ``#1/N``, the name in the first N bytes of
    the member's data.
    """
    long_names = b""
    for raw_name, mode, size in _ar_headers(raw):
        data_size = size
        if raw_name in ("/", "/SYM64/", "__.SYMDEF", "__.SYMDEF SORTED"):
            _skip(raw, size, "ar symbol index")
            continue
        if raw_name == "//":
            if size > AR_MAX_NAMES:
                raise ArchiveError(f"ar long-name table of {size} bytes (limit {AR_MAX_NAMES})")
            long_names = _read_exact(raw, size, "ar long-name table")
            continue
        if raw_name.startswith("#1/") and raw_name[3:].isdigit():
            name_size = int(raw_name[3:])
            if name_size > size or name_size > MAX_AR_NAME:
                raise ArchiveError(f"bad BSD ar name length {name_size}")
            name = _read_exact(raw, name_size, "ar member name").rstrip(b"\0").decode("utf-8", "surrogateescape")
            data_size = size - name_size
        elif raw_name.startswith("/") and raw_name[1:].isdigit():
            at = int(raw_name[1:])
            end = long_names.find(b"/\n", at)
            if at >= len(long_names) or end < 0:
                raise ArchiveError(f"ar member {raw_name} names no entry of the long-name table")
            name = long_names[at:end].decode("utf-8", "surrogateescape")
        else:
            name = raw_name.rstrip("/")
        body = _Limited(raw, data_size, f"ar member {name}")
        yield ArchiveMember(Entry(image_path(name), EntryType.FILE, data_size, mode & 0o7777),
                            io.BufferedReader(body, CHUNK))
        _skip(raw, body.left, f"ar member {name}")


# ---------------------------------------------------------------- rpm


def _rpm_stream_members(raw: io.BufferedReader[Any]) -> Members:
    """The members of an rpm: past the 96-byte lead, the signature header (padded to 8 bytes)
    and the main header, skipped by their index counts, its cpio payload under any compression."""
    if _read_up_to(raw, RPM_LEAD_SIZE)[:4] != RPM_MAGIC:
        raise ArchiveError("not an rpm (no lead magic)")
    pos = RPM_LEAD_SIZE
    for what in ("signature", "main"):
        intro = _read_up_to(raw, 16)
        if len(intro) < 16:
            raise ArchiveError(f"truncated rpm {what} header")
        if intro[:4] != RPM_HEADER_MAGIC:
            raise ArchiveError(f"bad rpm {what} header magic")
        count, size = struct.unpack(">II", intro[8:16])
        if count > RPM_MAX_TAGS or size > RPM_MAX_DATA:
            raise ArchiveError(f"implausible rpm {what} header ({count} tags, {size} bytes)")
        length = 16 * count + size
        if what == "signature":
            length += -(pos + 16 + length) % 8
        _skip(raw, length, f"rpm {what} header")
        pos += 16 + length
    yield from _cpio_members(decompressed_stream(raw)[0])


class _Bounded:
    """Exactly ``size`` bytes of a stream; the rest can be skipped after use."""

    def __init__(self, stream: ByteStream, size: int) -> None:
        self._stream = stream
        self.left = size

    def read(self, size: int = -1, /) -> bytes:
        n = self.left if size < 0 else min(size, self.left)
        data = _read_up_to(self._stream, n)
        if len(data) < n:
            raise ArchiveError("truncated cpio member data")
        self.left -= len(data)
        return data

    def skip(self) -> None:
        while self.left:
            self.read(min(self.left, CHUNK))


def _cpio_members(stream: ByteStream) -> Members:
    """The members of a cpio "newc" (or "crc") stream, as rpm writes its payload."""
    while True:
        header = _read_exact(stream, CPIO_HEADER_SIZE, "cpio header")
        if header[:6] not in CPIO_NEWC:
            raise ArchiveError(f"unsupported cpio header {header[:6]!r} (only newc 070701/070702)")
        try:
            fields = [int(header[6 + 8 * i : 14 + 8 * i], 16) for i in range(13)]
        except ValueError as exc:
            raise ArchiveError("bad cpio header field") from exc
        mode, filesize, namesize = fields[1], fields[6], fields[11]
        if namesize == 0 or namesize > 65536:
            raise ArchiveError(f"bad cpio name size {namesize}")
        raw_name = _read_exact(stream, namesize, "cpio name")
        _read_exact(stream, -(CPIO_HEADER_SIZE + namesize) % 4, "cpio padding")
        name = raw_name.rstrip(b"\0").decode("utf-8", "surrogateescape")
        if name == CPIO_TRAILER:
            return
        body = _Bounded(stream, filesize)
        path = image_path(name)
        perms = stat.S_IMODE(mode)
        if stat.S_ISREG(mode):
            yield ArchiveMember(Entry(path, EntryType.FILE, filesize, perms), body)
        elif stat.S_ISDIR(mode):
            yield ArchiveMember(Entry(path, EntryType.DIR, 0, perms), None)
        elif stat.S_ISLNK(mode):
            target = body.read(min(filesize, 4096)).decode("utf-8", "surrogateescape")
            yield ArchiveMember(Entry(path, EntryType.SYMLINK, 0, perms, target), None)
        else:
            yield ArchiveMember(Entry(path, EntryType.OTHER, 0, perms), None)
        body.skip()
        _read_exact(stream, -filesize % 4, "cpio padding")


# ---------------------------------------------------------------- zip


_ZIP_END = b"PK\x05\x06"
_ZIP64_LOCATOR = b"PK\x06\x07"
_ZIP64_END = b"PK\x06\x06"
_ZIP_CENTRAL = b"PK\x01\x02"
_ZIP_LOCAL = b"PK\x03\x04"
_ZIP_CENTRAL_ENTRY = struct.Struct("<4s6H3I5H2I")
_ZIP_METHODS = {0: "stored", 8: "deflate", 12: "bzip2", 14: "lzma"}
ZIP_HEAD_INPUT = 4096
"""Compressed bytes inflated to peek at a zip member's first ``PEEK_SIZE`` bytes."""


def zip_members_at(view: FileView) -> Members:
    """The members of a zip on the host, read where it lies."""
    return _zip_members(cast(memoryview, view))


def _zip_directory(view: memoryview) -> tuple[int, int, int]:
    """Where the central directory starts and ends, and the offset of any data prepended to the zip."""
    tail_start = max(0, len(view) - (22 + 0xFFFF))
    tail = bytes(view[tail_start:])
    at = tail.rfind(_ZIP_END)
    if at < 0 or len(tail) - at < 22:
        raise ArchiveError("not a zip: no end of central directory record")
    end_at = tail_start + at
    _, _, _, count, size, offset = struct.unpack("<4HII", tail[at + 4 : at + 20])
    # A zip64 record and its locator sit right before the end record whenever a writer adds them,
    # needed or not (PyTorch always does): the central directory then ends before them. Found by
    # position, as zipfile and unzip do: the locator's stored offset is off by any prepended data.
    locator = bytes(view[max(0, end_at - 20) : end_at])
    record = bytes(view[max(0, end_at - 76) : max(0, end_at - 20)])
    if len(locator) == 20 and locator[:4] == _ZIP64_LOCATOR and len(record) == 56 and record[:4] == _ZIP64_END:
        end_at -= 76
        size, offset = struct.unpack("<QQ", record[40:56])
    elif 0xFFFFFFFF in (size, offset) or count == 0xFFFF:
        raise ArchiveError("zip64 end of central directory record or locator missing")
    prepended = end_at - size - offset
    if prepended < 0:
        raise ArchiveError("zip central directory lies outside the file")
    return offset + prepended, offset + prepended + size, prepended


def _zip64_values(extra: bytes, wanted: list[bool]) -> list[int | None]:
    """The zip64 extra field's values, for the fields whose 32-bit value is 0xFFFFFFFF (in order)."""
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack("<HH", extra[pos : pos + 4])
        if tag == 0x0001:
            data, values, at = extra[pos + 4 : pos + 4 + length], [], 0
            for need in wanted:
                if need:
                    if at + 8 > len(data):
                        raise ArchiveError("truncated zip64 extra field")
                    values.append(struct.unpack("<Q", data[at : at + 8])[0])
                    at += 8
                else:
                    values.append(None)
            return values
        pos += 4 + length
    if any(wanted):
        raise ArchiveError("zip64 sizes without a zip64 extra field")
    return [None] * len(wanted)


def _zip_members(view: memoryview) -> Members:
    """The members of a zip, as its central directory lists them, read one entry at a time.

    Why not ``zipfile``: it builds the whole directory before the first member (a directory of
    millions of entries is gigabytes before any bound), and peeking at a member's first bytes
    through it inflates 4 KiB and builds a reader per member, most of a jar-heavy layer's walk.
    """
    pos, end, prepended = _zip_directory(view)
    for (flags, method, crc, csize, usize, attributes, local), raw_name, extra in _directory_entries(view, pos, end):
        if 0xFFFFFFFF in (usize, csize, local):
            big = _zip64_values(extra, [usize == 0xFFFFFFFF, csize == 0xFFFFFFFF, local == 0xFFFFFFFF])
            usize, csize, local = (value if value is not None else old
                                   for value, old in zip(big, (usize, csize, local), strict=True))
        name = raw_name.decode("utf-8" if flags & 0x800 else "cp437", "surrogateescape")
        path = image_path(name)
        unix_mode = attributes >> 16
        perms = stat.S_IMODE(unix_mode)
        if name.endswith("/"):
            yield ArchiveMember(Entry(path, EntryType.DIR, 0, perms), None)
            continue
        if stat.S_ISLNK(unix_mode):
            yield ArchiveMember(Entry(path, EntryType.SYMLINK, 0, perms), None)
            continue
        entry = Entry(path, EntryType.FILE, usize, perms)
        if flags & 0x1:
            yield ArchiveMember(entry, None, "encrypted zip member")
            continue
        if method not in _ZIP_METHODS:
            yield ArchiveMember(entry, None, f"unsupported zip member: compression method {method}")
            continue
        at = local + prepended
        header = bytes(view[at : at + 30])
        if len(header) < 30 or header[:4] != _ZIP_LOCAL:
            raise ArchiveError(f"bad zip local header for {name}")
        data_at = at + 30 + int.from_bytes(header[26:28], "little") + int.from_bytes(header[28:30], "little")
        if data_at + csize > len(view):
            raise ArchiveError(f"zip member {name} is truncated")
        yield ArchiveMember(entry, ZipMemberData(view[data_at : data_at + csize], method, usize, crc, name))


ZIP_DIRECTORY_WINDOW = 1024 * 1024
"""Bytes of a zip's central directory read at once from a zip on the host (``FileView``)."""


def _directory_entries(view: memoryview, pos: int, end: int) -> Iterator[tuple[tuple[int, ...], bytes, bytes]]:
    """Each central directory entry from ``pos`` to ``end``: the fields the walk uses (flags, method,
    CRC, compressed and uncompressed size, external attributes, local header offset), the raw
    name, and the extra field if a zip64 value is called for (else empty).

    Why a window: the fields are unpacked where they lie, without a copy per entry (most of a
    jar's cost was here); a zip on the host is read a window at a time, not one read per field.
    """
    fixed = _ZIP_CENTRAL_ENTRY.size
    window: Any = b""
    window_at = pos
    while pos < end:
        offset = pos - window_at
        if offset + fixed > len(window):
            window, window_at, offset = _directory_window(view, pos, fixed), pos, 0
        if offset + fixed > len(window):
            raise ArchiveError(f"bad zip central directory entry at {pos}")
        (magic, _, _, flags, method, _, _, crc, csize, usize, name_len, extra_len, comment_len, _, _, attributes,
         local) = _ZIP_CENTRAL_ENTRY.unpack_from(window, offset)
        if magic != _ZIP_CENTRAL:
            raise ArchiveError(f"bad zip central directory entry at {pos}")
        length = fixed + name_len + extra_len + comment_len
        if offset + length > len(window):
            window, window_at, offset = _directory_window(view, pos, length), pos, 0
        name_at = offset + fixed
        extra = b""
        if 0xFFFFFFFF in (usize, csize, local):
            extra = bytes(window[name_at + name_len : name_at + name_len + extra_len])
        yield (flags, method, crc, csize, usize, attributes, local), bytes(window[name_at : name_at + name_len]), extra
        pos += length


def _directory_window(view: memoryview, pos: int, at_least: int) -> Any:
    """The zip from ``pos``: uncopied if it is held, else its next ``ZIP_DIRECTORY_WINDOW`` bytes read."""
    if isinstance(view, memoryview):
        return view[pos:]
    return bytes(view[pos : pos + max(at_least, ZIP_DIRECTORY_WINDOW)])


class ZipMemberData:
    """A zip member's bytes, inflated as they are read; its size and CRC are checked at the end."""

    __slots__ = ("_crc", "_decompressor", "_expected_crc", "_input", "_method", "_name", "_pos", "_produced",
                 "_size", "_tail")

    def __init__(self, data: memoryview, method: int, size: int, crc: int, name: str) -> None:
        self._input = data
        self._method = method
        self._size = size
        self._expected_crc = crc
        self._name = name
        self._pos = 0
        self._produced = 0
        self._crc = 0
        self._tail = b""
        self._decompressor: Any = None

    def _new_decompressor(self) -> Any:
        if self._method == 8:
            return zlib.decompressobj(-15)
        if self._method == 12:
            return bz2.BZ2Decompressor()
        # lzma in zip: a 4-byte header (version, properties size), the properties, then raw LZMA1
        props_size = int.from_bytes(self._input[2:4], "little")
        props = bytes(self._input[4 : 4 + props_size])
        self._pos = 4 + props_size
        lzma_filter = lzma._decode_filter_properties(lzma.FILTER_LZMA1, props)  # type: ignore[attr-defined]
        return lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=[lzma_filter])

    def peek(self, n: int) -> bytes:
        if self._method == 0:
            return bytes(self._input[:n])
        decompressor = self._new_decompressor()
        head = bytes(self._input[self._pos : self._pos + ZIP_HEAD_INPUT])
        self._pos = 0
        try:
            return bytes(decompressor.decompress(head, n))
        except (zlib.error, lzma.LZMAError, OSError, EOFError):
            return b""  # read() reports it

    def read(self, n: int = -1, /) -> bytes:
        want = self._size - self._produced if n < 0 else min(n, self._size - self._produced)
        parts: list[bytes] = []
        got = 0
        while got < want:
            piece = self._step(want - got)
            if not piece:
                break
            parts.append(piece)
            got += len(piece)
        data = b"".join(parts)
        self._crc = zlib.crc32(data, self._crc)
        self._produced += len(data)
        if self._produced >= self._size or not data:
            self._check()
        return data

    def _step(self, want: int) -> bytes:
        if self._method == 0:
            piece = bytes(self._input[self._pos : self._pos + want])
            self._pos += len(piece)
            return piece
        if self._decompressor is None:
            self._decompressor = self._new_decompressor()
        decompressor = self._decompressor
        while True:
            if self._method == 8:
                if not self._tail:
                    if self._pos >= len(self._input):
                        return b""
                    self._tail = bytes(self._input[self._pos : self._pos + CHUNK])
                    self._pos += len(self._tail)
                out = decompressor.decompress(self._tail, want)
                self._tail = decompressor.unconsumed_tail
            else:
                if decompressor.eof:
                    return b""
                feed = b""
                if decompressor.needs_input:
                    if self._pos >= len(self._input):
                        return b""
                    feed = bytes(self._input[self._pos : self._pos + CHUNK])
                    self._pos += len(feed)
                out = decompressor.decompress(feed, want)
            if out:
                return bytes(out)

    def _check(self) -> None:
        if self._produced != self._size:
            raise ArchiveError(f"zip member {self._name} is truncated ({self._produced} of {self._size} bytes)")
        if self._crc != self._expected_crc:
            raise ArchiveError(f"zip member {self._name} is corrupt (CRC mismatch)")


# ---------------------------------------------------------------- bounds


@dataclass(slots=True)
class Budget:
    """What one archive of the layer, with everything nested in it, has used of its bounds.

    A nested archive is a member of its parent and its own members count
    again: the bound is on the bytes decompressed and examined, not on the
    bytes that would be installed.
    """

    max_bytes: int
    max_members: int
    bytes_used: int = 0
    members_used: int = 0

    def charge(self, entry: Entry) -> None:
        """Account for one member; raise ``ArchiveLimit`` once a bound is exceeded."""
        self.members_used += 1
        if self.members_used > self.max_members:
            raise ArchiveLimit(f"more than {self.max_members} members")
        if entry.type is EntryType.FILE:
            self.bytes_used += entry.size
            if self.bytes_used > self.max_bytes:
                raise ArchiveLimit(f"more than {self.max_bytes} uncompressed bytes")


@dataclass(frozen=True, slots=True)
class Scope:
    """Where a member being judged sits: inside which archives of the layer."""

    path: str
    """The in-image path of the archive file in the layer."""
    sha256: str
    """That file's sha256: findings name the file of the image, not the member."""
    chain: tuple[str, ...]
    """The outer archive's path, then each nested archive's member name."""
    formats: tuple[str, ...]
    """The format of each archive of ``chain``."""
    budget: Budget = field(compare=False)

    @property
    def depth(self) -> int:
        return len(self.chain)

    def where(self, member: str) -> str:
        """A readable location: ``/outer.tar.gz!/pkg/x.deb!/usr/lib/y``."""
        return "!/".join((*self.chain, member))

    def nested(self, member: str, fmt: Format) -> Scope:
        return Scope(self.path, self.sha256, (*self.chain, member), (*self.formats, fmt.value), self.budget)

    def settled(self, fmt: Format) -> Scope:
        """This scope with its own archive's format as reading it told (``ArchiveMember.container``)."""
        return Scope(self.path, self.sha256, self.chain, (*self.formats[:-1], fmt.value), self.budget)


def outer_scope(path: str, sha256: str, fmt: Format) -> Scope:
    """The scope of the members of an archive file of the layer, with a fresh budget."""
    return Scope(path, sha256, (path,), (fmt.value,), Budget(MAX_BYTES, MAX_MEMBERS))


# ---------------------------------------------------------------- findings

INSIDE_ARCHIVE: dict[Indicates, Indicates] = {
    Indicates.IMPLANT: Indicates.PAYLOAD,
    Indicates.PAYLOAD: Indicates.PAYLOAD,
    Indicates.SOURCE: Indicates.SOURCE,
}
"""What a member's finding indicates for the image. A packaged implant cannot
be loaded as is (PAYLOAD: backdoored, never reachable); source stays source.
Anything else (a package database inside a tarball naming an affected version)
describes a system that is not this image's and is dropped, as facts are."""


def finding_inside(finding: Finding, scope: Scope, member: str, member_sha256: str) -> Finding | None:
    """A member's finding restated as a finding about the archive file of the layer.

    ``path`` and ``sha256`` name the archive file in the image, so attribution
    to the final filesystem follows that file; the evidence keeps the inner
    detector's evidence and says where inside the archive it was found.
    """
    indicates = INSIDE_ARCHIVE.get(finding.indicates)
    if indicates is None:
        return None
    evidence = {
        **finding.evidence,
        "member": member,
        "member_sha256": finding.sha256 or member_sha256,
        "archive_chain": list(scope.chain),
        "archive_formats": list(scope.formats),
        "inner_kind": finding.kind.value,
        "inner_indicates": finding.indicates.value,
    }
    return Finding(
        rule=finding.rule,
        kind=Kind.ARCHIVE,
        indicates=indicates,
        path=scope.path,
        layer=finding.layer,
        sha256=scope.sha256,
        evidence=evidence,
        detector=finding.detector,
    )


# ---------------------------------------------------------------- versioning

VERSION = 3
"""Bump whenever a change here or in the walker could alter what a layer's
walk yields from inside archives (formats, recognition, bounds, meaning)."""


def rule_tables() -> dict[str, Any]:
    """What results from inside archives depend on besides the detectors.

    A cache of layer results must key on this as it keys on the detectors'
    rule tables: a new format or a changed bound changes a layer's findings.
    """
    return {
        "version": VERSION,
        "formats": [fmt.value for fmt in Format],
        "names": [suffix for suffix, _ in NAME_SUFFIXES],
        "max_size": ARCHIVE_MAX_SIZE,
        "compressed_file_max": COMPRESSED_FILE_MAX,
        "compressed_suffixes": COMPRESSED_SUFFIXES,
        "streamed": sorted(STREAMED),
        "max_depth": MAX_DEPTH,
        "max_bytes": MAX_BYTES,
        "max_members": MAX_MEMBERS,
        "inside": {inner.value: outer.value for inner, outer in INSIDE_ARCHIVE.items()},
    }
