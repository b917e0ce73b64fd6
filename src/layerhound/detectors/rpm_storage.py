"""The three on-disk formats of rpm's ``Packages`` database, read from bytes.

Why by hand: the scanner holds the file's bytes, never a path, and must not
write scanned content to disk. rpm's own library and the Berkeley DB bindings
open files by name; so each format is parsed here, with every length and page
number checked against the buffer and every loop bounded by the buffer's
size, so that a corrupt or hostile database ends in ``RpmDatabaseError``,
never in a hang or a huge allocation.

* **sqlite** (``rpmdb.sqlite``; Fedora 33+, RHEL 9, rpm >= 4.16 default):
  table ``Packages(hnum INTEGER PRIMARY KEY, blob BLOB)``. Opened in memory
  with ``Connection.deserialize``; the WAL flag in the file header is cleared
  first because the in-memory VFS cannot do WAL (rpm checkpoints on close, so
  an image's ``-wal`` file is normally empty).
* **Berkeley DB hash** (``Packages``; RHEL/CentOS <= 8, Amazon Linux 2,
  old Fedora/SUSE): the metadata page, then hash pages of (key, data) item
  pairs; a header is larger than a quarter page and so lives on a chain of
  overflow pages. The key is the 4-byte header instance; instance 0 holds
  rpm's next-instance counter, not a header.
* **ndb** (``Packages.db``; SUSE since 2021): rpm's own format
  (lib/backend/ndb/rpmpkg.c): a 32-byte header, 4 KiB slot pages of 16-byte
  slots, then 16-byte blocks holding each blob between a head and a tail that
  carries an Adler-32 of head, blob and padding.
"""

from __future__ import annotations

import struct
import time
import zlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlite3

SQLITE_MAGIC = b"SQLite format 3\x00"
NDB_MAGIC = b"RpmP"
BDB_HASH_MAGIC = 0x061561

SQLITE_TIME_LIMIT = 60.0
"""Seconds one sqlite database may take before the read is aborted."""
SQLITE_MAX_VALUE = 16 << 20
"""Longest string or blob sqlite may make while reading (SQLITE_LIMIT_LENGTH): an rpm header
is a few hundred KiB, and a value the file's schema computes (``zeroblob(2e9)``) stops here."""


class RpmDatabaseError(ValueError):
    """An rpm database that cannot be read; the message says why."""


def sniff(data: bytes) -> str | None:
    """``"sqlite"``, ``"bdb"``, ``"ndb"`` or None, from the first bytes."""
    if data.startswith(SQLITE_MAGIC):
        return "sqlite"
    if data[:4] == NDB_MAGIC:
        return "ndb"
    if _bdb_byte_order(data) is not None:
        return "bdb"
    return None


def _bdb_byte_order(data: bytes) -> str | None:
    """``"<"`` or ``">"``: Berkeley DB writes its metadata in the writer's byte order."""
    if len(data) < 16:
        return None
    for order in "<>":
        if struct.unpack_from(order + "I", data, 12)[0] == BDB_HASH_MAGIC:
            return order
    return None


def header_blobs(data: bytes) -> tuple[str, Iterator[bytes]]:
    """The database's format and an iterator over its header blobs."""
    kind = sniff(data)
    if kind == "sqlite":
        return kind, sqlite_blobs(data)
    if kind == "bdb":
        return kind, bdb_blobs(data)
    if kind == "ndb":
        return kind, ndb_blobs(data)
    raise RpmDatabaseError(
        f"not an rpm database: {len(data)} bytes starting {data[:16].hex()} "
        "(neither sqlite, Berkeley DB hash nor ndb)"
    )


# --------------------------------------------------------------------------
# sqlite
# --------------------------------------------------------------------------


def sqlite_blobs(data: bytes) -> Iterator[bytes]:
    """Every ``Packages.blob`` of an rpmdb.sqlite, read in memory only."""
    if len(data) < 100 or not data.startswith(SQLITE_MAGIC):
        raise RpmDatabaseError("not a sqlite database (bad header)")
    image = bytearray(data)
    # Bytes 18/19 are the write/read format versions: 2 means WAL, which an
    # in-memory database cannot open; 1 (rollback journal) reads the same pages.
    if image[18] == 2 or image[19] == 2:
        image[18] = image[19] = 1
    import sqlite3  # only an rpmdb.sqlite needs it (and it loads datetime with it)

    connection = sqlite3.connect(":memory:")
    # Text in the file is the file's: not valid UTF-8 is read with replacements, not an exception.
    connection.text_factory = lambda raw: raw.decode("utf-8", "replace")
    deadline = time.monotonic() + SQLITE_TIME_LIMIT

    def too_long() -> int:
        return 1 if time.monotonic() > deadline else 0

    try:
        try:
            connection.deserialize(image)
            # Read only, and run no SQL the file itself carries (views, triggers).
            connection.execute("PRAGMA query_only = ON")
            connection.execute("PRAGMA trusted_schema = OFF")
            connection.set_progress_handler(too_long, 10_000)
            connection.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, SQLITE_MAX_VALUE)
            tables = dict(connection.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'").fetchall())
            if "Packages" not in tables:
                raise RpmDatabaseError(f"sqlite database without a Packages table (tables: {sorted(tables)})")
            _check_packages_table(connection, str(tables["Packages"] or ""))
            cursor = connection.execute("SELECT hnum, blob FROM Packages")
            for hnum, blob in cursor:
                if not isinstance(blob, bytes):
                    raise RpmDatabaseError(f"rpmdb.sqlite Packages row {hnum}: blob is {type(blob).__name__}")
                yield blob
        except UnicodeDecodeError as exc:  # sqlite's own message quotes the file's bytes
            raise RpmDatabaseError(
                f"rpmdb.sqlite unreadable: a malformed schema with text that is not UTF-8 ({exc.reason})"
            ) from exc
        except sqlite3.Error as exc:
            if time.monotonic() > deadline:
                raise RpmDatabaseError(f"rpmdb.sqlite: gave up after {SQLITE_TIME_LIMIT:.0f} s") from exc
            raise RpmDatabaseError(f"rpmdb.sqlite unreadable: {exc}") from exc
    finally:
        connection.close()


def _check_packages_table(connection: sqlite3.Connection, sql: str) -> None:
    """Refuse a Packages table rpm never writes: virtual, or with computed (generated) columns.

    Why: reading such a table runs what the file's schema says, which can allocate without end.
    """
    if sql.lstrip().upper().startswith("CREATE VIRTUAL"):
        raise RpmDatabaseError("rpmdb.sqlite: Packages is a virtual table, which rpm never writes")
    generated = [row[1] for row in connection.execute("PRAGMA table_xinfo(Packages)") if row[6] in (2, 3)]
    if generated:
        raise RpmDatabaseError(
            f"rpmdb.sqlite: Packages has generated columns ({', '.join(map(str, generated))}), which rpm never writes"
        )


# --------------------------------------------------------------------------
# Berkeley DB hash
# --------------------------------------------------------------------------

_PAGE_HEADER = 26
"""Size of every Berkeley DB page header (db_page.h ``SIZEOF_PAGE``)."""
_P_HASH_UNSORTED = 2
_P_OVERFLOW = 7
_P_HASHMETA = 8
_P_HASH = 13
_H_KEYDATA = 1
_H_DUPLICATE = 2
_H_OFFPAGE = 3
_H_OFFDUP = 4
_VALID_PAGE_SIZES = frozenset(1 << n for n in range(9, 17))
_DBMETA_CHKSUM = 0x01


def bdb_blobs(data: bytes) -> Iterator[bytes]:
    """Every header blob of a Berkeley DB hash ``Packages`` file.

    Walks every page in file order and takes the (key, data) pairs of the
    hash pages, as rpm's own bdb_ro reader and other scanners do; a freed
    page is retyped invalid by Berkeley DB, so stale pages are not read.
    """
    if len(data) < 512:
        raise RpmDatabaseError(f"Berkeley DB file of {len(data)} bytes is shorter than one page")
    order = _bdb_byte_order(data)
    if order is None:
        raise RpmDatabaseError("not a Berkeley DB hash database (bad magic)")
    pagesize, = struct.unpack_from(order + "I", data, 20)
    encrypted, page_type, metaflags = data[24], data[25], data[26]
    last_pgno, = struct.unpack_from(order + "I", data, 32)
    if pagesize not in _VALID_PAGE_SIZES:
        raise RpmDatabaseError(f"Berkeley DB page size {pagesize} is invalid")
    if page_type != _P_HASHMETA:
        raise RpmDatabaseError(f"Berkeley DB metadata page has type {page_type}, not hash metadata")
    if encrypted:
        raise RpmDatabaseError("Berkeley DB database is encrypted")
    if metaflags & _DBMETA_CHKSUM:
        raise RpmDatabaseError("Berkeley DB database with page checksums is not supported")
    npages = len(data) // pagesize
    if last_pgno >= npages:
        raise RpmDatabaseError(
            f"Berkeley DB truncated: last page {last_pgno}, file holds {npages} pages of {pagesize} bytes"
        )
    reader = _BdbReader(data, order, pagesize, last_pgno + 1)
    for pgno in range(1, last_pgno + 1):
        yield from reader.page_values(pgno)


class _BdbReader:
    """Bounds-checked access to the pages of one Berkeley DB file."""

    def __init__(self, data: bytes, order: str, pagesize: int, npages: int) -> None:
        self.data = data
        self.u16 = struct.Struct(order + "H")
        self.u32 = struct.Struct(order + "I")
        self.pagesize = pagesize
        self.npages = npages

    def page(self, pgno: int) -> tuple[int, int, int, int, int]:
        """(offset, next page, entries, hf_offset, type) of one page."""
        if not 0 < pgno < self.npages:
            raise RpmDatabaseError(f"Berkeley DB page number {pgno} outside the file ({self.npages} pages)")
        base = pgno * self.pagesize
        next_pgno = self.u32.unpack_from(self.data, base + 16)[0]
        entries = self.u16.unpack_from(self.data, base + 20)[0]
        hf_offset = self.u16.unpack_from(self.data, base + 22)[0]
        return base, next_pgno, entries, hf_offset, self.data[base + 25]

    def page_values(self, pgno: int) -> Iterator[bytes]:
        base, _next, entries, _hf, page_type = self.page(pgno)
        if page_type not in (_P_HASH, _P_HASH_UNSORTED):
            return
        if entries % 2:
            raise RpmDatabaseError(f"Berkeley DB hash page {pgno} has an odd number of items ({entries})")
        if _PAGE_HEADER + 2 * entries > self.pagesize:
            raise RpmDatabaseError(f"Berkeley DB hash page {pgno} claims {entries} items")
        offsets = [self.u16.unpack_from(self.data, base + _PAGE_HEADER + 2 * i)[0] for i in range(entries)]
        for i in range(0, entries, 2):
            key = self.item(pgno, base, offsets, i)
            if key == b"\0\0\0\0":
                continue  # rpm's instance counter, not a package
            yield self.item(pgno, base, offsets, i + 1)

    def item(self, pgno: int, base: int, offsets: list[int], index: int) -> bytes:
        """The bytes of one hash item, following an off-page chain if it has one."""
        start = offsets[index]
        end = offsets[index - 1] if index else self.pagesize
        if not _PAGE_HEADER + 2 * len(offsets) <= start < end <= self.pagesize:
            raise RpmDatabaseError(f"Berkeley DB hash page {pgno}: item {index} at {start}..{end} is out of bounds")
        item_type = self.data[base + start]
        if item_type == _H_KEYDATA:
            return self.data[base + start + 1 : base + end]
        if item_type == _H_OFFPAGE:
            if end - start < 12:
                raise RpmDatabaseError(f"Berkeley DB hash page {pgno}: short off-page item {index}")
            first = self.u32.unpack_from(self.data, base + start + 4)[0]
            total = self.u32.unpack_from(self.data, base + start + 8)[0]
            return self.overflow(first, total)
        if item_type in (_H_DUPLICATE, _H_OFFDUP):
            raise RpmDatabaseError(f"Berkeley DB hash page {pgno}: duplicate items are not rpm's layout")
        raise RpmDatabaseError(f"Berkeley DB hash page {pgno}: unknown item type {item_type}")

    def overflow(self, pgno: int, total: int) -> bytes:
        """The ``total`` bytes stored on the overflow chain starting at ``pgno``."""
        if total > len(self.data):
            raise RpmDatabaseError(f"Berkeley DB overflow item of {total} bytes is larger than the file")
        parts: list[bytes] = []
        have = 0
        for _ in range(self.npages):  # a chain can visit each page once at most
            base, next_pgno, _entries, used, page_type = self.page(pgno)
            if page_type != _P_OVERFLOW:
                raise RpmDatabaseError(f"Berkeley DB page {pgno} in an overflow chain has type {page_type}")
            if used > self.pagesize - _PAGE_HEADER:
                raise RpmDatabaseError(f"Berkeley DB overflow page {pgno} claims {used} bytes")
            parts.append(self.data[base + _PAGE_HEADER : base + _PAGE_HEADER + used])
            have += used
            if have >= total or next_pgno == 0:
                break
            pgno = next_pgno
        else:
            raise RpmDatabaseError("Berkeley DB overflow chain loops")
        if have != total:
            raise RpmDatabaseError(f"Berkeley DB overflow chain holds {have} bytes, item says {total}")
        return b"".join(parts)


# --------------------------------------------------------------------------
# ndb
# --------------------------------------------------------------------------

_NDB_PAGE = 4096
_NDB_SLOT = 16
_NDB_BLK = 16
_NDB_HEADER = 32
_NDB_SLOT_MAGIC = b"Slot"
_NDB_BLOB_HEAD = b"BlbS"
_NDB_BLOB_TAIL = b"BlbE"
_NDB_HEAD_SIZE = 16
_NDB_TAIL_SIZE = 12


def ndb_blobs(data: bytes) -> Iterator[bytes]:
    """Every header blob of an ndb ``Packages.db``, checked as rpm checks it."""
    if len(data) < _NDB_PAGE or data[:4] != NDB_MAGIC:
        raise RpmDatabaseError("not an ndb Packages.db (bad header)")
    version, _generation, slotnpages = struct.unpack_from("<III", data, 4)
    if version != 0:
        raise RpmDatabaseError(f"ndb Packages.db version {version} is not supported (only 0)")
    if len(data) % _NDB_BLK:
        raise RpmDatabaseError(f"ndb Packages.db size {len(data)} is not a multiple of {_NDB_BLK}")
    if not 0 < slotnpages <= len(data) // _NDB_PAGE:
        raise RpmDatabaseError(f"ndb Packages.db claims {slotnpages} slot pages in {len(data)} bytes")
    fileblks = len(data) // _NDB_BLK
    minblkoff = slotnpages * (_NDB_PAGE // _NDB_BLK)
    slots: list[tuple[int, int, int]] = []
    for offset in range(_NDB_HEADER, slotnpages * _NDB_PAGE, _NDB_SLOT):
        magic = data[offset : offset + 4]
        pkgidx, blkoff, blkcnt = struct.unpack_from("<III", data, offset + 4)
        if magic != _NDB_SLOT_MAGIC:
            raise RpmDatabaseError(f"ndb Packages.db: bad slot magic at offset {offset}")
        if not blkoff:
            continue  # free slot
        if blkoff + blkcnt > fileblks:
            raise RpmDatabaseError(f"ndb Packages.db truncated: package {pkgidx} ends past the file")
        if not pkgidx or not blkcnt or blkoff < minblkoff:
            raise RpmDatabaseError(f"ndb Packages.db: bad slot at offset {offset}")
        slots.append((blkoff, pkgidx, blkcnt))
    for blkoff, pkgidx, blkcnt in sorted(slots):
        yield _ndb_blob(data, pkgidx, blkoff, blkcnt)


def _ndb_blob(data: bytes, pkgidx: int, blkoff: int, blkcnt: int) -> bytes:
    start = blkoff * _NDB_BLK
    end = start + blkcnt * _NDB_BLK
    if data[start : start + 4] != _NDB_BLOB_HEAD:
        raise RpmDatabaseError(f"ndb Packages.db: package {pkgidx} has no blob head")
    head_idx, _tstamp, bloblen = struct.unpack_from("<III", data, start + 4)
    if head_idx != pkgidx:
        raise RpmDatabaseError(f"ndb Packages.db: blob of package {head_idx} in the slot of {pkgidx}")
    if blkcnt != (_NDB_HEAD_SIZE + bloblen + _NDB_TAIL_SIZE + _NDB_BLK - 1) // _NDB_BLK:
        raise RpmDatabaseError(f"ndb Packages.db: package {pkgidx} blob length {bloblen} does not fit its blocks")
    adler, tail_len = struct.unpack_from("<II", data, end - _NDB_TAIL_SIZE)
    if data[end - 4 : end] != _NDB_BLOB_TAIL or tail_len != bloblen:
        raise RpmDatabaseError(f"ndb Packages.db: package {pkgidx} has a bad blob tail")
    if zlib.adler32(data[start : end - _NDB_TAIL_SIZE]) != adler:
        raise RpmDatabaseError(f"ndb Packages.db: package {pkgidx} fails its Adler-32 check")
    return data[start + _NDB_HEAD_SIZE : start + _NDB_HEAD_SIZE + bloblen]
