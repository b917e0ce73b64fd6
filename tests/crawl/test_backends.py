"""The same crawl gives the same store whatever it runs on: SQLite or PostgreSQL, a local pool or Dask.

The crawl promises that its results do not depend on where rows are kept or
where layers are walked. Each test crawls the whole world (57 images in a
real registry, ``conftest.py``) twice, the reference way (SQLite, a local
process pool, through the CLI) and the other way, inside the same test
function (another test of the package moves ``library/debian:sid`` for a
while), and compares ``ResultStore.content()`` table by table: every row but
the columns that say *when*.

- PostgreSQL is a real server started from Debian's binaries for the session
  (``tests/support/postgres.py``), one fresh database per test.
- Dask runs once as an in-process ``LocalCluster`` of two worker processes
  driven through the ``Crawler`` API, and once as a scheduler and workers
  started as separate programs and named by ``--executor dask://``. Each time
  the workers' own task counters prove the layers were walked there.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import distributed
import pytest

from layerhound.cli import main
from layerhound.cli.common import exit_status, fail_on_level
from layerhound.crawl.executor import DaskExecutor
from layerhound.crawl.run import Crawler
from layerhound.crawl.targets import parse_target
from layerhound.model import Verdict
from layerhound.registry.session import RegistrySession
from layerhound.registry.settings import RegistrySettings
from layerhound.store.results import ResultStore
from layerhound.store.schema import MIGRATIONS
from tests.crawl.conftest import repos, sqlite_url
from tests.support.postgres import PostgresCluster, postgres_cluster
from tests.support.registry import LOOPBACK, FaultProxy, free_port
from tests.support.world import World

Content = dict[str, list[tuple[Any, ...]]]


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """One throwaway PostgreSQL server per test session (per xdist worker)."""
    with postgres_cluster() as cluster:
        yield cluster


@pytest.fixture
def pg_url(postgres: PostgresCluster) -> str:
    """A fresh, empty database of its own for each test: no rows or migrations carried over."""
    return postgres.create_database()


# ---------------------------------------------------------------- helpers


def cli_crawl(
    capsys: pytest.CaptureFixture[str], proxy: FaultProxy, world: World, db: str, *args: str
) -> tuple[int, dict[str, str], str]:
    """``layerhound crawl`` of every repository of the world, as a user runs it; (status, ref → verdict, stderr)."""
    status = main(["crawl", "--insecure-registry", proxy.host, "--db", db, "--jobs", "2", "--format", "json",
                   "--no-progress", *args, *repos(proxy, world)])
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    return status, verdicts_of(report, proxy), captured.err


def verdicts_of(report: dict[str, Any], proxy: FaultProxy) -> dict[str, str]:
    prefix = f"{proxy.host}/"
    return {image["ref"].removeprefix(prefix): image["verdict"] for image in report["images"]}


def content_of(url: str) -> Content:
    with ResultStore.open(url) as store:
        return store.content()


def configs_of(url: str) -> dict[str, bytes]:
    """The ``configs`` table (not part of ``content()``): the BYTEA/BLOB column, read back as bytes."""
    with ResultStore.open(url) as store:
        rows = store.db.query("SELECT digest, value FROM configs")
        for digest, _ in rows:  # each one still verifies against its digest when the store reads it
            assert store.get_blob(digest) is not None, (url, digest)
    assert all(isinstance(value, bytes) for _, value in rows), {type(value) for _, value in rows}
    return {digest: bytes(value) for digest, value in rows}


def walked_layers(url: str) -> int:
    """How many layer tasks the latest run of the store handed out (its recorded counts)."""
    with ResultStore.open(url) as store:
        runs = store.runs()
    assert runs and runs[-1][5] == "finished", runs
    return int(runs[-1][6]["layers_walked"])


def assert_meaningful(content: Content, world: World) -> None:
    """The reference is a real crawl: comparing two empty stores would prove nothing."""
    assert len(content["verdicts"]) == len(world.images), len(content["verdicts"])
    assert {row[2] for row in content["verdicts"]} > {Verdict.CLEAN.value}  # some infected, some clean
    for table in ("repositories", "tag_observations", "manifests", "images", "layers", "layer_walks", "layer_parts",
                  "findings"):
        assert content[table], f"{table} is empty"


def assert_same_content(expected: Content, actual: Content, what: str) -> None:
    """Table by table, naming the rows only one side has (a readable failure, not a 10 000-line diff)."""
    assert sorted(actual) == sorted(expected)
    for table, rows in expected.items():
        theirs = actual[table]
        if theirs == rows:
            continue
        missing = [row for row in rows if row not in theirs][:3]
        extra = [row for row in theirs if row not in rows][:3]
        pytest.fail(
            f"{what}: table {table} differs ({len(rows)} rows expected, {len(theirs)} found)\n"
            f"  only in the reference: {missing!r}\n  only in {what}: {extra!r}"
        )


def executed_tasks(client: distributed.Client) -> dict[str, int]:
    """Tasks each Dask worker has run since it started (the worker's own counter)."""
    counts: dict[str, int] = client.run(lambda dask_worker: dask_worker.state.executed_count)
    return counts


def dask_program() -> Path:
    """The ``dask`` command of this interpreter's environment (installed with ``distributed``)."""
    program = Path(sys.executable).parent / "dask"
    if not program.is_file():
        raise RuntimeError(f"{program} is missing: run `make setup` (the test extra installs distributed)")
    return program


@contextlib.contextmanager
def program_group(command: list[str], log: Path, cwd: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A program in its own process group, killed with all its children (``dask worker`` forks nannies) at exit."""
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd,
                                   start_new_session=True)
    try:
        yield process
    finally:
        for sig, grace in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 15.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            try:
                process.wait(timeout=grace)
                break
            except subprocess.TimeoutExpired:
                continue
        # The group outlives its leader while a nanny's child still runs: SIGKILL what is left of it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def log_tail(*logs: Path) -> str:
    return "".join(f"\n--- {log.name} ---\n" + "\n".join(log.read_text(errors="replace").splitlines()[-25:])
                   for log in logs if log.exists())


# ---------------------------------------------------------------- PostgreSQL


def test_postgresql_store_holds_the_same_rows_as_sqlite(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, world: World, counting: FaultProxy, pg_url: str
) -> None:
    sqlite = sqlite_url(tmp_path / "results.sqlite3")
    started = time.monotonic()
    status, verdicts, err = cli_crawl(capsys, counting, world, sqlite)
    assert status == 1, err  # backdoored images found
    sqlite_seconds = time.monotonic() - started
    assert verdicts == {name: planned.verdict for name, planned in world.images.items()}

    started = time.monotonic()
    pg_status, pg_verdicts, pg_err = cli_crawl(capsys, counting, world, pg_url)
    assert pg_status == 1, pg_err
    print(f"crawl into SQLite {sqlite_seconds:.1f} s, into PostgreSQL {time.monotonic() - started:.1f} s")
    assert pg_verdicts == verdicts

    expected = content_of(sqlite)
    assert_meaningful(expected, world)
    assert_same_content(expected, content_of(pg_url), "PostgreSQL")
    assert configs_of(pg_url) == configs_of(sqlite) != {}

    with ResultStore.open(pg_url) as store:
        assert store.db.dialect == "postgresql"
        versions = [row[0] for row in store.db.query("SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == [version for version, _, _ in MIGRATIONS] and versions[0] == 1


def test_concurrent_first_opens_of_a_postgresql_store_migrate_it_once(postgres: PostgresCluster) -> None:
    """Coordinators and tests open one store at the same moment: one migrates, the others wait and find it done.

    Several fresh databases, each opened by eight threads released together (psycopg
    leaves the GIL while it waits on the server, so their statements do race).
    """
    openers = 8
    for _ in range(4):
        url = postgres.create_database("race")
        barrier = threading.Barrier(openers)
        errors: list[BaseException] = []

        def open_store(url: str = url, barrier: threading.Barrier = barrier, errors: list[BaseException] = errors,
                       ) -> None:
            barrier.wait()
            try:
                ResultStore.open(url).close()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=open_store) for _ in range(openers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not any(thread.is_alive() for thread in threads)
        assert errors == []
        with ResultStore.open(url) as store:
            rows = store.db.query("SELECT version FROM schema_migrations")
            tables = {row[0] for row in store.db.query(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )}
        assert rows == [(version,) for version, _, _ in MIGRATIONS]
        assert {"verdicts", "layer_parts", "configs", "crawl_runs"} <= tables


def reference_crawl(
    capsys: pytest.CaptureFixture[str], counting: FaultProxy, world: World, tmp_path: Path
) -> tuple[str, dict[str, str], Content]:
    """A crawl of the world on the local process pool: what every other executor must match."""
    reference_db = sqlite_url(tmp_path / "local.sqlite3")
    status, verdicts, err = cli_crawl(capsys, counting, world, reference_db)
    assert status == 1, err
    reference = content_of(reference_db)
    assert_meaningful(reference, world)
    return reference_db, verdicts, reference


# ---------------------------------------------------------------- Dask


def test_local_dask_cluster_gives_the_same_store_as_the_process_pool(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, world: World, counting: FaultProxy
) -> None:
    reference_db, verdicts, reference = reference_crawl(capsys, counting, world, tmp_path)

    dask_db = sqlite_url(tmp_path / "dask.sqlite3")
    settings = RegistrySettings(insecure_registries=frozenset({counting.host}))
    targets = [parse_target(repository) for repository in repos(counting, world)]
    with (
        distributed.LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        # Not the default client: the executor must use the client it was given, not a global one.
        distributed.Client(cluster, set_as_default=False) as client,  # type: ignore[no-untyped-call]
    ):
        executor = DaskExecutor(client=client)
        assert executor.workers == 2
        started = time.monotonic()
        with ResultStore.open(dask_db) as store, RegistrySession(settings) as session:
            summary = Crawler(store, session, executor, platform="all").run(targets)
        print(f"crawl on a LocalCluster {time.monotonic() - started:.1f} s")
        executed = executed_tasks(client)
        executor.close()
        assert client.status == "running"  # a client the caller passed in is the caller's to close

    assert summary.status == "finished"
    assert exit_status(summary.results, fail_on_level("backdoored")) == 1
    prefix = f"{counting.host}/"
    assert {r.ref.removeprefix(prefix): r.verdict.value for r in summary.results} == verdicts
    # Every layer was walked on the cluster's two workers, none in this process.
    assert summary.counts.layers_walked == walked_layers(reference_db) > 0
    assert len(executed) == 2 and sum(executed.values()) == summary.counts.layers_walked, executed
    assert_same_content(reference, content_of(dask_db), "Dask LocalCluster")


def test_dask_scheduler_started_apart_gives_the_same_store_through_the_cli(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, world: World, counting: FaultProxy
) -> None:
    reference_db, verdicts, reference = reference_crawl(capsys, counting, world, tmp_path)

    dask, port = dask_program(), free_port()
    address = f"tcp://{LOOPBACK}:{port}"
    scheduler_log, worker_log = tmp_path / "scheduler.log", tmp_path / "worker.log"
    scratch = tmp_path / "dask-scratch"
    scratch.mkdir()
    with (
        program_group([str(dask), "scheduler", "--host", LOOPBACK, "--port", str(port), "--no-dashboard"],
                      scheduler_log, scratch) as scheduler,
        program_group([str(dask), "worker", address, "--host", LOOPBACK, "--nthreads", "1", "--nworkers", "2",
                       "--no-dashboard", "--local-directory", str(scratch)], worker_log, scratch) as worker,
    ):
        try:  # not the default client, or the CLI's executor would find it in this process and use it
            probe = distributed.Client(address, timeout="60s", set_as_default=False)  # type: ignore[no-untyped-call]
        except (OSError, TimeoutError) as exc:
            raise AssertionError(f"the scheduler did not come up: {exc}{log_tail(scheduler_log)}") from None
        with probe:
            try:
                probe.wait_for_workers(2, timeout=90)
            except TimeoutError:
                raise AssertionError(f"the workers did not register{log_tail(scheduler_log, worker_log)}") from None
            before = executed_tasks(probe)
            assert len(before) == 2 and sum(before.values()) == 0, before

            started = time.monotonic()
            dask_db = sqlite_url(tmp_path / "dask.sqlite3")
            dask_status, dask_verdicts, dask_err = cli_crawl(capsys, counting, world, dask_db, "--executor",
                                                             f"dask://{LOOPBACK}:{port}")
            print(f"crawl on a separate Dask scheduler {time.monotonic() - started:.1f} s")
            executed = executed_tasks(probe)
        assert scheduler.poll() is None and worker.poll() is None, log_tail(scheduler_log, worker_log)

    assert dask_status == 1, dask_err + log_tail(worker_log)
    assert dask_verdicts == verdicts
    layers = walked_layers(dask_db)
    assert layers == walked_layers(reference_db) > 0
    assert len(executed) == 2 and sum(executed.values()) == layers, executed
    assert_same_content(reference, content_of(dask_db), "Dask via --executor")
