"""rpm header blobs, as every rpm database stores them.

Why by hand: the header is a small, stable, documented binary format (rpm's
``headerImport``), and reading the handful of tags we need from untrusted
bytes is safer with explicit bounds than by loading a C library on scanner
input. A blob is::

    il (u32 BE)   number of index entries
    dl (u32 BE)   size of the data store
    il x 16 bytes index entries: tag, type, offset, count (u32 BE each)
    dl bytes      data store

Databases store the blob without the 8-byte ``8e ad e8 01 00000000`` magic a
``.rpm`` file carries in front; both forms are accepted.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

HEADER_MAGIC = b"\x8e\xad\xe8\x01\x00\x00\x00\x00"
MAX_INDEX_ENTRIES = 0xFFFF
"""rpm's own limit on index entries (``HEADER_TAGS_MAX``)."""
MAX_DATA_SIZE = 256 * 1024 * 1024
"""rpm's own limit on the data store (``HEADER_DATA_MAX``)."""

TAG_NAME = 1000
TAG_VERSION = 1001
TAG_RELEASE = 1002
TAG_EPOCH = 1003
TAG_DISTRIBUTION = 1010
TAG_VENDOR = 1011
TAG_ARCH = 1022
TAG_SOURCERPM = 1044

TYPE_INT32 = 4
TYPE_STRING = 6
TYPE_STRING_ARRAY = 8
TYPE_I18NSTRING = 9
_STRING_TYPES = frozenset({TYPE_STRING, TYPE_STRING_ARRAY, TYPE_I18NSTRING})

_STRING_TAGS = {
    TAG_NAME: "name",
    TAG_VERSION: "version",
    TAG_RELEASE: "release",
    TAG_DISTRIBUTION: "distribution",
    TAG_VENDOR: "vendor",
    TAG_ARCH: "arch",
    TAG_SOURCERPM: "sourcerpm",
}


class RpmHeaderError(ValueError):
    """A header blob is malformed; the message says where."""


@dataclass(frozen=True, slots=True)
class RpmPackage:
    """The tags of one installed package that the xz judgement needs."""

    name: str
    version: str
    release: str
    epoch: int | None = None
    arch: str | None = None
    vendor: str | None = None
    distribution: str | None = None
    sourcerpm: str | None = None

    @property
    def evr(self) -> str:
        """``[epoch:]version-release``, as ``rpm -q`` prints it."""
        prefix = f"{self.epoch}:" if self.epoch is not None else ""
        return f"{prefix}{self.version}-{self.release}"


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where a blob's index and data store lie (offsets into ``blob``)."""

    blob: bytes
    index: int
    count: int
    store: int
    end: int

    def entries(self) -> Iterator[tuple[int, ...]]:
        return struct.iter_unpack(">IIII", self.blob[self.index : self.index + 16 * self.count])

    def string(self, offset: int, tag: int) -> str:
        start = self.store + offset
        if start >= self.end:
            raise RpmHeaderError(f"rpm header tag {tag}: offset {offset} outside the data store")
        nul = self.blob.find(b"\0", start, self.end)
        if nul < 0:
            raise RpmHeaderError(f"rpm header tag {tag}: string runs past the data store")
        return self.blob[start:nul].decode("utf-8", errors="replace")

    def int32(self, offset: int, tag: int) -> int:
        start = self.store + offset
        if start + 4 > self.end:
            raise RpmHeaderError(f"rpm header tag {tag}: offset {offset} outside the data store")
        value: int = struct.unpack_from(">I", self.blob, start)[0]
        return value


def _layout(blob: bytes) -> _Layout:
    """Validate the two counts against rpm's limits and the blob's length."""
    base = 8 if blob[:8] == HEADER_MAGIC else 0
    if len(blob) < base + 8:
        raise RpmHeaderError(f"rpm header blob of {len(blob)} bytes is too short")
    il, dl = struct.unpack_from(">II", blob, base)
    if not 1 <= il <= MAX_INDEX_ENTRIES:
        raise RpmHeaderError(f"rpm header claims {il} index entries")
    if dl > MAX_DATA_SIZE:
        raise RpmHeaderError(f"rpm header claims a {dl}-byte data store")
    store = base + 8 + il * 16
    end = store + dl
    if end > len(blob):
        raise RpmHeaderError(f"rpm header needs {end} bytes, blob has {len(blob)}")
    return _Layout(blob, base + 8, il, store, end)


def parse_header(blob: bytes) -> RpmPackage:
    """The package a header blob describes; RpmHeaderError if it is malformed."""
    layout = _layout(blob)
    strings: dict[str, str] = {}
    epoch: int | None = None
    for tag, kind, offset, count in layout.entries():
        if tag in _STRING_TAGS and kind in _STRING_TYPES:
            # STRING_ARRAY/I18NSTRING hold ``count`` strings; the first is the
            # value (the untranslated one, for I18NSTRING).
            strings[_STRING_TAGS[tag]] = layout.string(offset, tag)
        elif tag == TAG_EPOCH and kind == TYPE_INT32 and count >= 1:
            epoch = layout.int32(offset, tag)
    missing = [key for key in ("name", "version", "release") if key not in strings]
    if missing:
        raise RpmHeaderError(f"rpm header without {', '.join(missing).upper()}")
    return RpmPackage(
        name=strings["name"],
        version=strings["version"],
        release=strings["release"],
        epoch=epoch,
        arch=strings.get("arch"),
        vendor=strings.get("vendor"),
        distribution=strings.get("distribution"),
        sourcerpm=strings.get("sourcerpm"),
    )
