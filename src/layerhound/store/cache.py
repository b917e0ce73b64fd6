"""The layer cache: what a scan keeps of each layer, on disk, by layer digest.

A layer's result depends only on the blob's bytes and on the detectors that
judged them, so it is kept as parts (``store.parts``): the walk's part under
the walk version, each detector's part under ``name@version:rules``. A scan
asks for every layer of an image *before* opening any blob (trivy's
``MissingBlobs``); a layer whose parts are all there is assessed without
reading its blob, and a layer missing only some detectors' parts (one detector
was bumped) is re-read with just those detectors.

Storage is one SQLite file (WAL) with the results store's schema
(``store.schema``; the cache uses its ``layer_walks``, ``layer_parts`` and
``configs`` tables), through the same ``LayerRows`` the store uses. Rows of
other versions are never deleted: two layerhound versions sharing a cache
directory each keep their own rows.

Trust: see ``store.layer_rows``; a part with detector errors is not stored,
so a failure on one file is retried by the next scan rather than remembered.

Robustness: each store is one transaction: a killed scan keeps every layer
stored before the kill. Concurrent processes share the file through SQLite's
locking, waiting up to ``store.db.BUSY_TIMEOUT`` for a writer. Any SQLite failure
during a scan disables the cache for the rest of that scan with one warning;
the scan itself goes on uncached. A file that is not a database is moved aside
and replaced when the cache is opened.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from layerhound.detectors.base import Detector
from layerhound.errors import LayerhoundError
from layerhound.layers.layer import Layer
from layerhound.model import LayerResult
from layerhound.store.configs import get_config, put_config
from layerhound.store.db import Database
from layerhound.store.layer_rows import LayerRows, StoredLayer
from layerhound.store.schema import migrate

CACHE_FILE = "layers.sqlite3"


class CacheError(LayerhoundError):
    """The cache file cannot be opened or created."""


def default_cache_dir() -> Path:
    """The user's cache directory for layerhound (``~/.cache/layerhound`` on Linux)."""
    import platformdirs  # only when no --cache-dir was given

    return Path(platformdirs.user_cache_dir("layerhound"))


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
            self._db_conn: Database | None = self._connect()
        except sqlite3.OperationalError as exc:
            raise CacheError(f"cannot open the layer cache {self.path}: {exc}") from exc
        except sqlite3.DatabaseError as exc:  # the file is not a database, or a broken one
            aside = self._move_aside()
            self._report(f"the layer cache {self.path} was unreadable ({exc}); moved to {aside}, starting afresh")
            try:
                self._db_conn = self._connect()
            except sqlite3.Error as again:
                raise CacheError(f"cannot open the layer cache {self.path}: {again}") from again

    def _connect(self) -> Database:
        db = Database.open_sqlite(self.path)
        try:
            migrate(db)
        except BaseException:
            db.close()
            raise
        return db

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
    def _db(self, doing: str) -> Iterator[Database | None]:
        """The database, or None once the cache is disabled; SQLite errors
        disable it (with one warning) instead of failing the scan."""
        with self._lock:
            if self._db_conn is None:
                yield None
                return
            try:
                yield self._db_conn
            except sqlite3.Error as exc:
                self._report(f"layer cache disabled for this run: cannot {doing} {self.path}: {exc}")
                self._close_locked()

    @property
    def enabled(self) -> bool:
        """False once closed or disabled by a failure."""
        return self._db_conn is not None

    # -- layers --------------------------------------------------------------

    def lookup(self, layers: Sequence[Layer], detectors: Sequence[Detector]) -> list[StoredLayer | None]:
        """What is stored of each layer (see ``LayerRows.lookup``); reads no blob."""
        with self._db("read") as db:
            if db is not None:
                return LayerRows(db).lookup(layers, detectors)
        return [None] * len(layers)

    def fetch(self, layers: Sequence[Layer], detectors: Sequence[Detector]) -> list[LayerResult | None]:
        """Each layer's complete result (``cached`` set), None where any part is missing."""
        return [
            hit.result(layer, detectors) if hit is not None and not hit.missing(detectors) else None
            for layer, hit in zip(layers, self.lookup(layers, detectors), strict=True)
        ]

    def store(
        self, layer: Layer, result: LayerResult, detectors: Sequence[Detector], *, with_walk: bool = True
    ) -> bool:
        """Keep ``result`` of a layer ``walk_layer`` has just read and verified, judged by ``detectors``.

        Returns whether it was stored. Not stored: layers without a digest,
        results of another layer, results JSON cannot carry unchanged; the parts
        of detectors that failed on a file are left out.
        """
        with self._db("write") as db:
            if db is not None:
                stored = LayerRows(db).store(layer, result, detectors, with_walk=with_walk)
                if not stored and layer.digest and result.digest == layer.digest:
                    self._report(f"not caching layer {layer.digest}: its result does not survive JSON unchanged")
                return stored
        return False

    # -- image configs -------------------------------------------------------

    def get_blob(self, digest: str) -> bytes | None:
        """A stored image config (``store.configs``), None when absent or altered."""
        with self._db("read") as db:
            return get_config(db, digest) if db is not None else None

    def put_blob(self, digest: str, data: bytes) -> None:
        """Keep a verified image config (small blobs only)."""
        with self._db("write") as db:
            if db is not None:
                put_config(db, digest, data)

    # -- lifetime ------------------------------------------------------------

    def _close_locked(self) -> None:
        if self._db_conn is not None:
            try:
                self._db_conn.close()
            finally:
                self._db_conn = None

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
) -> LayerCache | None:
    """The cache a command should use: ``cache_dir/layers.sqlite3`` (default
    ``default_cache_dir()``), or None when disabled or when it cannot be opened
    (a scan without a cache is slower, never wrong; ``warn`` is told why).
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
    return cache
