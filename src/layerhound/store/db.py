"""One small database seam for SQLite and PostgreSQL.

The results store and the layer cache speak SQL written once, with ``?``
placeholders and portable types; ``Database`` translates the placeholders for
psycopg and hides the differences that matter here (transactions, the lock
that serialises schema migrations). Connections are never shared between
processes: every process (a crawl's coordinator, a test) opens its own.

URLs: ``sqlite:///ABSOLUTE/PATH`` (also ``sqlite:relative/path``) or
``postgresql://user@host:port/dbname`` (anything libpq accepts). The password,
if the URL has one, is never part of a message.
"""

from __future__ import annotations

import sqlite3
import threading
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from layerhound.errors import LayerhoundError, redact_url

Dialect = Literal["sqlite", "postgresql"]
BUSY_TIMEOUT = 60.0
"""Seconds a SQLite connection waits for another process's write."""


class StoreError(LayerhoundError):
    """The results store cannot be opened, migrated or written."""


def parse_db_url(url: str) -> tuple[Dialect, str]:
    """``sqlite:///x`` → ("sqlite", "/x"); ``postgresql://…`` → ("postgresql", url)."""
    scheme, sep, rest = url.partition(":")
    if not sep:
        raise StoreError(f"--db: {url!r} is not a URL: use sqlite:///PATH or postgresql://HOST/DB")
    if scheme == "sqlite":
        path = rest[2:] if rest.startswith("//") else rest
        if not path:
            raise StoreError("--db: sqlite: needs a path, e.g. sqlite:///var/lib/layerhound/results.sqlite3")
        return "sqlite", urllib.parse.unquote(path)
    if scheme in ("postgresql", "postgres"):
        return "postgresql", url
    raise StoreError(f"--db: unsupported database {scheme!r} in {redact_url(url)}: use sqlite:///PATH or postgresql://…")


class Database:
    """A connection with the SQL dialect it speaks; thread-safe through one lock."""

    def __init__(self, conn: Any, dialect: Dialect, label: str) -> None:
        self.conn = conn
        self.dialect = dialect
        self.label = label
        """How to name the database in messages (no password)."""
        self._lock = threading.RLock()
        self._depth = 0

    # -- opening -------------------------------------------------------------

    @classmethod
    def open(cls, url: str) -> Database:
        dialect, target = parse_db_url(url)
        if dialect == "sqlite":
            try:
                return cls.open_sqlite(Path(target))
            except sqlite3.Error as exc:
                raise StoreError(f"cannot open the results store {target}: {exc}") from None
        try:
            import psycopg
        except ImportError as exc:  # pragma: no cover - the test extra installs it
            raise StoreError("PostgreSQL needs psycopg: pip install 'layerhound[postgresql]'") from exc
        label = redact_url(target)
        try:
            conn = psycopg.connect(target, autocommit=True, connect_timeout=15)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to {label}: {_first_line(exc)}") from None
        return cls(conn, "postgresql", label)

    @classmethod
    def open_sqlite(cls, path: Path) -> Database:
        """A SQLite file in WAL mode (safe with several processes, each with its own connection).

        Raises ``sqlite3.Error`` (the layer cache moves a broken file aside on that).
        """
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            # With WAL, NORMAL loses nothing on a killed process (only on power loss).
            conn.execute("PRAGMA synchronous=NORMAL")
        except BaseException:
            conn.close()
            raise
        return cls(conn, "sqlite", str(path))

    # -- statements ----------------------------------------------------------

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.dialect == "postgresql" else sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; returns the number of rows it changed."""
        with self._lock:
            cursor = self.conn.execute(self._sql(sql), storable(params))
            return int(cursor.rowcount or 0)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        with self._lock:
            if self.dialect == "sqlite":
                self.conn.executemany(sql, [storable(r) for r in rows])
            else:
                with self.conn.cursor() as cursor:
                    cursor.executemany(self._sql(sql), [storable(r) for r in rows])

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return [tuple(row) for row in self.conn.execute(self._sql(sql), tuple(params)).fetchall()]

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All statements inside commit together or not at all (nested: the outer one counts)."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self._depth = 1
            try:
                if self.dialect == "sqlite":
                    self.conn.execute("BEGIN IMMEDIATE")
                    try:
                        yield
                    except BaseException:
                        self.conn.execute("ROLLBACK")
                        raise
                    self.conn.execute("COMMIT")
                else:
                    with self.conn.transaction():
                        yield
            finally:
                self._depth = 0

    def lock_schema(self) -> None:
        """Inside a transaction: wait until no other process migrates the schema."""
        if self.dialect == "postgresql":
            self.execute("SELECT pg_advisory_xact_lock(7024301)")  # any constant of ours
        # SQLite: BEGIN IMMEDIATE already holds the one write lock.

    def has_table(self, name: str) -> bool:
        """Whether the table exists (visible to this connection; PostgreSQL: on the search path)."""
        if self.dialect == "postgresql":
            row = self.one("SELECT to_regclass(?) IS NOT NULL", (name,))
        else:
            row = self.one("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
        return bool(row and row[0])

    @property
    def blob(self) -> str:
        """The column type for bytes."""
        return "BYTEA" if self.dialect == "postgresql" else "BLOB"

    def close(self) -> None:
        with self._lock:
            self.conn.close()


def storable(params: Sequence[Any]) -> tuple[Any, ...]:
    """Parameters as both databases take them: text that is not valid UTF-8 (a tar member name
    decoded with surrogateescape, a JSON ``\\ud800``) is stored with the odd characters escaped
    (``\\udcff``) instead of failing the write, and so the crawl, on a crafted name."""
    return tuple(_escaped(p) if isinstance(p, str) else p for p in params)


def _escaped(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
