"""The results store on its own: migrations, idempotent writes, tag history, what two stores compare."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from layerhound.model import Failure, Finding, ImageResult, Indicates, Kind, Verdict
from layerhound.store.db import StoreError, parse_db_url
from layerhound.store.results import ResultStore, default_db_url
from layerhound.store.schema import LATEST, MIGRATIONS

DIGEST = "sha256:" + "cd" * 32


def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'results.sqlite3'}"


def result(verdict: Verdict = Verdict.BACKDOORED_DORMANT) -> ImageResult:
    finding = Finding("xz-get-cpuid-prologue", Kind.SIGNATURE, Indicates.IMPLANT, "/usr/lib/liblzma.so.5",
                      "sha256:" + "01" * 32, "ab" * 32, {"offsets": [1, 2]}, detector="byte-signatures")
    return ImageResult("r/app:1", DIGEST, "linux/amd64", verdict, ["an implant"], [finding])


def test_migrations_are_applied_once_and_recorded(tmp_path: Path) -> None:
    with ResultStore.open(url(tmp_path)):
        pass
    errors: list[BaseException] = []

    def reopen() -> None:
        try:
            ResultStore.open(url(tmp_path)).close()
        except BaseException as exc:  # pragma: no cover - the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=reopen) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    with sqlite3.connect(tmp_path / "results.sqlite3") as conn:
        assert conn.execute("SELECT version FROM schema_migrations").fetchall() == [(v,) for v, _, _ in MIGRATIONS]
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_an_older_store_is_migrated_on_open_and_keeps_its_rows(tmp_path: Path) -> None:
    """A store written by the first schema (no workload digests) gains the column; nothing is lost."""
    path = tmp_path / "results.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)")
        version, _, statements = MIGRATIONS[0]
        for statement in statements:
            conn.execute(statement.format(blob="BLOB"))
        conn.execute("INSERT INTO schema_migrations VALUES (?, 0)", (version,))
        conn.execute("INSERT INTO workloads VALUES ('shop', 'web-1', 'web', 'nginx:1.25', 0)")
    with ResultStore.open(url(tmp_path)) as store:
        assert store.workloads() == [("shop", "web-1", "web", "nginx:1.25", None)]
        store.put_workload("shop", "web-1", "web", "nginx:1.25", DIGEST)
        assert store.workloads()[0][4] == DIGEST


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    ResultStore.open(url(tmp_path)).close()
    with sqlite3.connect(tmp_path / "results.sqlite3") as conn:
        conn.execute("INSERT INTO schema_migrations VALUES (?, 0)", (LATEST + 1,))
    with pytest.raises(StoreError, match="upgrade"):
        ResultStore.open(url(tmp_path))


def test_judging_the_same_digest_twice_stores_one_result(tmp_path: Path) -> None:
    with ResultStore.open(url(tmp_path)) as store:
        store.put_verdict(DIGEST, "r1", result())
        first = store.content()
        store.put_verdict(DIGEST, "r1", result())
        assert store.content() == first
        assert store.judged(DIGEST, "r1") and not store.judged(DIGEST, "r2")
        [finding] = store.findings(DIGEST, "r1")
        assert finding == result().findings[0]
        # An error is stored with its structure, and is not "judged": the next crawl tries again.
        failed = ImageResult("r/app:1", DIGEST, None, Verdict.ERROR, ["gone"], error="gone",
                             failure=Failure("registry", "gone", 404, False))
        store.put_verdict(DIGEST, "r2", failed)
        row = store.verdict(DIGEST, "r2")
        assert row is not None and row.failure == Failure("registry", "gone", 404, False)
        assert not store.judged(DIGEST, "r2")


def test_a_tag_keeps_every_digest_it_pointed_to(tmp_path: Path) -> None:
    other = "sha256:" + "ef" * 32
    with ResultStore.open(url(tmp_path)) as store:
        store.observe_tag("r/base", "sid", DIGEST, "2024-03-20T00:00:00Z", "created")
        store.observe_tag("r/base", "sid", other, None, None)
        store.observe_tag("r/base", "sid", DIGEST, None, None)  # seen again: one row, date kept
        rows = store.tags("r/base")
    assert sorted((r.tag, r.digest, r.date) for r in rows) == sorted(
        [("sid", DIGEST, "2024-03-20T00:00:00Z"), ("sid", other, None)]
    )


def test_urls() -> None:
    assert parse_db_url("sqlite:///var/lib/x.sqlite3") == ("sqlite", "/var/lib/x.sqlite3")
    assert parse_db_url("postgresql://u@h/db")[0] == "postgresql"
    assert default_db_url().endswith("/layerhound/results.sqlite3")
    for bad in ("mysql://h/db", "results.sqlite3", "sqlite:"):
        with pytest.raises(StoreError):
            parse_db_url(bad)
    with pytest.raises(StoreError) as caught:
        parse_db_url("mysql://user:s3cret@h/db")
    assert "s3cret" not in str(caught.value)
