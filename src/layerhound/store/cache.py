"""The layer cache: what a scan keeps of each layer, on disk, by layer digest.

A layer's ``LayerResult`` (entries, whiteouts, findings, facts, stats) depends
only on the blob's bytes and on the detectors that judged them, so it is
stored under ``(version, digest)`` where ``version`` is ``cache_version()``:
the detectors' ``rules_version()`` plus the stored schema's version. A scan
asks for every layer of an image *before* opening any blob (trivy's
``MissingBlobs``); a hit needs only the digest the manifest names, so an image
whose layers are all cached is assessed without reading a single blob.

Storage is SQLite (stdlib ``sqlite3``, WAL journal): this table, and
``configs`` (image config blobs by digest, verified again when read)::

    layer_results(
        rules     TEXT     cache_version(): rules version + schema version
        digest    TEXT     the layer digest (a legacy docker-archive's diff_id)
        diff_id   TEXT     the uncompressed digest verified while walking, if any
        size      INTEGER  the blob size the walk verified (0: not known)
        stored_at INTEGER  unix time of the write
        value     TEXT     the LayerResult as JSON (store/serialize.py)
        PRIMARY KEY (rules, digest)
    ) WITHOUT ROWID

Trust: ``store`` is called only after ``walk_layer`` returned, and
``walk_layer`` returns only after the whole blob was read and its digest (and
diff_id, when the config names one) verified; a layer that failed is never
stored. A hit is refused, and the layer walked afresh, when the image at
hand describes the blob differently than the one that was verified (another
diff_id or size): the fresh walk then fails exactly as it would without a
cache. A result with detector errors is not stored either, so a failure on
one file is retried by the next scan rather than remembered.

Invalidation: a new detector version or rule table changes ``rules``, a new
model field changes the schema version; rows of any other ``rules`` are
stale, never served, and ``prune`` deletes them (``open_cache`` calls it once
per run; cheap when there are none: one range probe of the primary key). A row that does not decode is a miss and is
replaced by the next store.

Robustness: each store is one statement, so one transaction: a killed scan
keeps every layer stored before the kill. Concurrent processes share the file
through SQLite's locking, waiting up to ``BUSY_TIMEOUT`` for a writer. Any
SQLite failure during a scan disables the cache for the rest of that scan with
one warning; the scan itself goes on uncached. A file that is not a database
is moved aside and replaced when the cache is opened.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

import platformdirs

from layerhound.detectors.base import Detector
from layerhound.detectors.registry import ALL_DETECTORS, rules_version
from layerhound.errors import LayerhoundError
from layerhound.layers.layer import Layer, TarBlobLayer
from layerhound.layers.walk import walk_version
from layerhound.model import LayerResult
from layerhound.store.serialize import UndecodableResult, UnstorableResult, dump_layer, load_layer, schema_version

CACHE_FILE = "layers.sqlite3"
BUSY_TIMEOUT = 60.0
"""Seconds a process waits for another one's write before giving up."""
_CHUNK = 500
"""Digests per lookup query (well under SQLite's bound on parameters)."""

_CONFIG_SCHEMA = """
CREATE TABLE IF NOT EXISTS configs (
    digest TEXT PRIMARY KEY,
    stored_at INTEGER NOT NULL,
    value BLOB NOT NULL
) WITHOUT ROWID
"""
MAX_CONFIG = 1024 * 1024
"""Image configs larger than this are not kept (they are read from the source)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS layer_results (
    rules TEXT NOT NULL,
    digest TEXT NOT NULL,
    diff_id TEXT,
    size INTEGER NOT NULL,
    stored_at INTEGER NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (rules, digest)
) WITHOUT ROWID
"""


class CacheError(LayerhoundError):
    """The cache file cannot be opened or created."""


def cache_version(detectors: Sequence[Detector]) -> str:
    """The version part of the key: detectors' rules, the walk (archives), the stored schema."""
    return f"{rules_version(detectors)}+{walk_version()}+{schema_version()}"


def default_cache_dir() -> Path:
    """The user's cache directory for layerhound (``~/.cache/layerhound`` on Linux)."""
    return Path(platformdirs.user_cache_dir("layerhound"))


def _matches(digest: str, data: bytes) -> bool:
    algo, _, expected = digest.partition(":")
    return algo in ("sha256", "sha512") and hashlib.new(algo, data).hexdigest() == expected


def _diff_id(layer: Layer) -> str | None:
    """The diff_id this layer verifies while it is read, if any."""
    if isinstance(layer, TarBlobLayer) and isinstance(layer.diff_id, str):
        return layer.diff_id
    return None


class LayerCache:
    """Per-layer results in one SQLite file; see the module docstring."""

    def __init__(self, path: Path | str, warn: Callable[[str], None] | None = None) -> None:
        """Open (creating if needed) the cache at ``path``; raises ``CacheError``."""
        self.path = Path(path)
        self.problems: list[str] = []
        """Why the cache stopped working during this run, if it did."""
        self._warn = warn
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise CacheError(f"cannot create the cache directory {self.path.parent}: {exc.strerror}") from exc
        try:
            self._conn: sqlite3.Connection | None = self._connect()
        except sqlite3.OperationalError as exc:
            raise CacheError(f"cannot open the layer cache {self.path}: {exc}") from exc
        except sqlite3.DatabaseError as exc:  # the file is not a database, or a broken one
            aside = self._move_aside()
            self._report(f"the layer cache {self.path} was unreadable ({exc}); moved to {aside}, starting afresh")
            try:
                self._conn = self._connect()
            except sqlite3.Error as again:
                raise CacheError(f"cannot open the layer cache {self.path}: {again}") from again

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            # With WAL, NORMAL loses nothing on a killed process (only on power loss).
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(_SCHEMA)
            conn.execute(_CONFIG_SCHEMA)
        except BaseException:
            conn.close()
            raise
        return conn

    def _move_aside(self) -> Path:
        aside = self.path.with_name(f"{self.path.name}.broken-{int(time.time())}")
        for suffix in ("", "-wal", "-shm"):
            source = self.path.with_name(self.path.name + suffix)
            try:
                os.replace(source, aside.with_name(aside.name + suffix))
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise CacheError(f"the layer cache {self.path} is unreadable and cannot be moved: {exc}") from exc
        return aside

    # -- failures -----------------------------------------------------------

    def _report(self, message: str) -> None:
        self.problems.append(message)
        if self._warn is not None:
            self._warn(message)

    @contextmanager
    def _db(self, doing: str) -> Iterator[sqlite3.Connection | None]:
        """The connection, or None once the cache is disabled; SQLite errors
        disable it (with one warning) instead of failing the scan."""
        with self._lock:
            if self._conn is None:
                yield None
                return
            try:
                yield self._conn
            except sqlite3.Error as exc:
                self._report(f"layer cache disabled for this run: cannot {doing} {self.path}: {exc}")
                self._close_locked()

    @property
    def enabled(self) -> bool:
        """False once closed or disabled by a failure."""
        return self._conn is not None

    # -- reading -------------------------------------------------------------

    def fetch(self, version: str, layers: Sequence[Layer]) -> list[LayerResult | None]:
        """The cached result of each layer (``cached`` set), None where there is none.

        Reads no blob: only ``digest``, ``diff_id`` and ``size`` of the layers.
        Layers without a digest (host sources) are never cached.
        """
        digests = sorted({layer.digest for layer in layers if layer.digest})
        rows: dict[str, tuple[str | None, int, str | bytes]] = {}
        with self._db("read") as conn:
            if conn is not None:
                for start in range(0, len(digests), _CHUNK):
                    chunk = digests[start : start + _CHUNK]
                    marks = ",".join("?" * len(chunk))
                    query = (
                        "SELECT digest, diff_id, size, value FROM layer_results"
                        f" WHERE rules = ? AND digest IN ({marks})"
                    )
                    for digest, diff_id, size, value in conn.execute(query, [version, *chunk]):
                        rows[digest] = (diff_id, size, value)
        decoded: dict[str, LayerResult | None] = {}
        results: list[LayerResult | None] = []
        for layer in layers:
            row = rows.get(layer.digest) if layer.digest else None
            if row is None or not self._describes_same_blob(layer, row[0], row[1]):
                results.append(None)
                continue
            assert layer.digest is not None
            if layer.digest not in decoded:
                decoded[layer.digest] = self._decode(layer.digest, row[2])
            stored = decoded[layer.digest]
            if stored is None:
                results.append(None)
                continue
            results.append(
                LayerResult(
                    digest=layer.digest,
                    size=layer.size,
                    media_type=layer.media_type,
                    entries=stored.entries,
                    whiteouts=stored.whiteouts,
                    opaque_dirs=stored.opaque_dirs,
                    findings=stored.findings,
                    facts=stored.facts,
                    stats=stored.stats,
                    cached=True,
                )
            )
        return results

    @staticmethod
    def _describes_same_blob(layer: Layer, diff_id: str | None, size: int) -> bool:
        """False when this image says something of the blob that the verified walk
        contradicts: a fresh walk would fail, so the hit must not hide that."""
        wanted = _diff_id(layer)
        if wanted is not None and diff_id is not None and wanted != diff_id:
            return False
        return not (layer.size and size and layer.size != size)

    @staticmethod
    def _decode(digest: str, value: str | bytes) -> LayerResult | None:
        try:
            result = load_layer(value)
        except UndecodableResult:
            return None  # a miss; the fresh result replaces the row
        return result if result.digest == digest else None

    # -- writing -------------------------------------------------------------

    def store(self, version: str, layer: Layer, result: LayerResult) -> bool:
        """Keep ``result`` of a layer ``walk_layer`` has just read and verified.

        Returns whether it was stored. Not stored: layers without a digest,
        results with detector errors, results JSON cannot carry unchanged.
        """
        if not layer.digest or result.digest != layer.digest or result.stats.detector_errors:
            return False
        try:
            value = dump_layer(result)
        except UnstorableResult as exc:
            self._report(f"not caching {exc}")
            return False
        with self._db("write") as conn:
            if conn is None:
                return False
            conn.execute(
                "INSERT OR REPLACE INTO layer_results (rules, digest, diff_id, size, stored_at, value)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (version, layer.digest, _diff_id(layer), layer.size, int(time.time()), value),
            )
            return True
        return False

    # -- image configs -------------------------------------------------------

    def get_blob(self, digest: str) -> bytes | None:
        """A stored image config, only if its bytes still hash to ``digest``.

        Configs are content-addressed and immutable, so they need no rules
        version: with them kept too, re-scanning a fully cached image from a
        registry downloads no blob at all (only its manifest, which a tag may
        move).
        """
        with self._db("read") as conn:
            row = conn.execute("SELECT value FROM configs WHERE digest = ?", (digest,)).fetchone() if conn else None
        if row is None:
            return None
        data = bytes(row[0])
        return data if _matches(digest, data) else None

    def put_blob(self, digest: str, data: bytes) -> None:
        """Keep a verified image config (small blobs only)."""
        if len(data) > MAX_CONFIG or not _matches(digest, data):
            return
        with self._db("write") as conn:
            if conn is not None:
                conn.execute(
                    "INSERT OR REPLACE INTO configs (digest, stored_at, value) VALUES (?, ?, ?)",
                    (digest, int(time.time()), data),
                )

    def prune(self, keep: str) -> int:
        """Delete every row whose version is not ``keep``; returns how many.

        The probe is a range scan of the primary key on both sides of
        ``keep``, so with nothing stale it costs next to nothing and takes no
        write lock.
        """
        stale = "rules < ? OR rules > ?"
        with self._db("prune") as conn:
            if conn is None:
                return 0
            if conn.execute(f"SELECT EXISTS (SELECT 1 FROM layer_results WHERE {stale})", (keep, keep)).fetchone()[0]:
                return conn.execute(f"DELETE FROM layer_results WHERE {stale}", (keep, keep)).rowcount
        return 0

    # -- lifetime ------------------------------------------------------------

    def _close_locked(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def close(self) -> None:
        with self._lock:
            self._close_locked()

    def __enter__(self) -> LayerCache:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def open_cache(
    cache_dir: Path | None,
    enabled: bool = True,
    warn: Callable[[str], None] | None = None,
    detectors: Sequence[Detector] = ALL_DETECTORS,
) -> LayerCache | None:
    """The cache a command should use: ``cache_dir/layers.sqlite3`` (default
    ``default_cache_dir()``), or None when disabled or when it cannot be opened
    (a scan without a cache is slower, never wrong; ``warn`` is told why).

    Once per opening, rows of any other version than ``detectors``' are pruned.
    Only the command does this: a library caller scanning with another set of
    detectors must not wipe the command's rows.
    """
    if not enabled:
        return None
    path = (cache_dir.expanduser() if cache_dir is not None else default_cache_dir()) / CACHE_FILE
    try:
        cache = LayerCache(path, warn)
    except CacheError as exc:
        if warn is not None:
            warn(f"{exc}; scanning without the layer cache")
        return None
    cache.prune(cache_version(detectors))
    return cache
