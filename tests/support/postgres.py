"""A throwaway PostgreSQL cluster for the store tests, started from Debian's own binaries.

The results store promises the same rows on PostgreSQL as on SQLite; only a
real server shows that (its types, its ``ON CONFLICT``, its locks, psycopg's
placeholders and ``BYTEA``). ``PostgresCluster`` runs one, private to a test
session:

- the binaries are Debian's (``postgresql-NN``: ``/usr/lib/postgresql/NN/bin``,
  the newest version there), not ``pg_ctlcluster``'s system clusters;
- ``initdb`` and ``postgres`` refuse to run as root, and the tests do run as
  root in CI, so both run as ``nobody`` (``setpriv``) in a directory under
  ``/tmp`` made for it (pytest's temporary directories are 0700 root, which
  ``nobody`` cannot enter);
- it listens on a free loopback port and a Unix socket in that directory
  only, trusts every local connection (``-A trust``, superuser
  ``layerhound``) and skips fsync: nothing in it outlives the session;
- ``stop`` (also registered with ``atexit``, for a run that dies without its
  teardown) stops it with ``pg_ctl stop -m fast`` and removes the directory.

Each test asks for a database of its own (``create_database``), so no test
sees another's rows or migrations.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

import psycopg
from psycopg import sql

from tests.support.registry import LOOPBACK, free_port

SUPERUSER = "layerhound"
UNPRIVILEGED = "nobody"
POSTGRES_ROOT = Path("/usr/lib/postgresql")
START_TIMEOUT = 60.0
"""Seconds to wait for the server to accept connections (a loaded CI machine is slow)."""


def postgres_bin(root: Path = POSTGRES_ROOT) -> Path:
    """The ``bin`` directory of the newest PostgreSQL Debian installed; a missing one is a failure, not a skip."""
    found: list[tuple[tuple[int, ...], Path]] = []
    for candidate in root.glob("*/bin"):
        version = tuple(int(part) for part in re.findall(r"\d+", candidate.parent.name))
        if version and all((candidate / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            found.append((version, candidate))
    if not found:
        raise RuntimeError(
            f"no PostgreSQL server binaries under {root}/*/bin: run `make setup` first (it installs postgresql)"
        )
    return max(found)[1]


def _unprivileged_prefix() -> list[str]:
    """How to run a command as ``nobody`` when we are root (PostgreSQL refuses root); nothing otherwise."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise RuntimeError("setpriv (util-linux) is not installed: run `make setup` first")
    return [setpriv, f"--reuid={UNPRIVILEGED}", f"--regid={_group_of(UNPRIVILEGED)}", "--clear-groups", "--"]


def _group_of(user: str) -> int:
    return pwd.getpwnam(user).pw_gid


class PostgresCluster:
    """One PostgreSQL server of our own; see the module docstring."""

    def __init__(self) -> None:
        self.bin = postgres_bin()
        self.port = 0
        self.base: Path | None = None
        """The directory holding the data directory, the socket and the log (owned by ``nobody``)."""
        self._databases = itertools.count(1)
        self._running = False

    # -- paths and urls --------------------------------------------------------

    @property
    def data(self) -> Path:
        assert self.base is not None, "the cluster is not started"
        return self.base / "data"

    @property
    def log(self) -> Path:
        assert self.base is not None, "the cluster is not started"
        return self.base / "postgres.log"

    def url(self, database: str = "postgres") -> str:
        """A libpq URL of one database of this cluster (TCP on loopback, no password: trust)."""
        return f"postgresql://{SUPERUSER}@{LOOPBACK}:{self.port}/{database}"

    # -- running ---------------------------------------------------------------

    def _run(self, tool: str, args: Sequence[str], timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """One PostgreSQL tool as the unprivileged user, in a directory it may enter."""
        assert self.base is not None
        command = [*_unprivileged_prefix(), str(self.bin / tool), *args]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", LANG="C", HOME=str(self.base))
        done = subprocess.run(
            command, cwd=self.base, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{tool} {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}{self._log_tail()}"
            )
        return done

    def _log_tail(self) -> str:
        if self.base is None or not self.log.exists():
            return ""
        return "\n--- postgres.log ---\n" + "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])

    def start(self) -> PostgresCluster:
        """initdb, start on a free port, wait until it accepts connections."""
        self.base = Path(tempfile.mkdtemp(prefix="layerhound-pg-", dir="/tmp"))
        atexit.register(self.stop)  # even when a test run dies without its teardown
        if os.geteuid() == 0:
            user = pwd.getpwnam(UNPRIVILEGED)
            os.chown(self.base, user.pw_uid, user.pw_gid)
        try:
            self._run("initdb", ["-D", str(self.data), "-A", "trust", "-U", SUPERUSER, "-E", "UTF8",
                                 "--locale=C", "--no-sync"])
            for attempt in itertools.count(1):
                self.port = free_port()
                try:
                    self._start_server()
                    break
                except RuntimeError:
                    # Another process may have taken the port between free_port and the bind.
                    if attempt == 3 or "could not bind" not in self._log_tail().lower():
                        raise
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_server(self) -> None:
        options = " ".join([
            f"-p {self.port}",
            f"-k {self.base}",
            f"-c listen_addresses={LOOPBACK}",
            "-c fsync=off",
            "-c synchronous_commit=off",
            "-c full_page_writes=off",
        ])
        self._run("pg_ctl", ["start", "-D", str(self.data), "-l", str(self.log), "-w", "-t", str(int(START_TIMEOUT)),
                             "-o", options])
        self._running = True

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with psycopg.connect(self.url(), connect_timeout=5) as conn:
                    conn.execute("SELECT 1")
                    return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"PostgreSQL does not accept connections: {exc}{self._log_tail()}") from None
                time.sleep(0.1)

    def create_database(self, prefix: str = "layerhound") -> str:
        """A new, empty database; returns its URL."""
        name = f"{prefix}_{os.getpid()}_{next(self._databases)}"
        with psycopg.connect(self.url(), autocommit=True, connect_timeout=15) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def stop(self) -> None:
        """Stop the server (fast: it rolls back open transactions) and remove its directory; idempotent."""
        atexit.unregister(self.stop)
        if self.base is None:
            return
        if self._running:
            self._running = False
            try:
                self._run("pg_ctl", ["stop", "-D", str(self.data), "-m", "fast", "-w", "-t", "60"])
            except (RuntimeError, subprocess.TimeoutExpired):
                self._kill_postmaster()
        shutil.rmtree(self.base, ignore_errors=True)
        self.base = None

    def _kill_postmaster(self) -> None:
        """The last resort when pg_ctl cannot stop it: SIGQUIT (immediate shutdown) to the postmaster."""
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int((self.data / "postmaster.pid").read_text().splitlines()[0])
            os.kill(pid, 3)
            time.sleep(1)

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


@contextlib.contextmanager
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A started cluster for the length of the ``with`` (a session fixture's body)."""
    with PostgresCluster() as cluster:
        yield cluster
