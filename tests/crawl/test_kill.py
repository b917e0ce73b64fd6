"""kill -9 in the middle of a crawl, start it again: the store ends up exactly as an uninterrupted crawl's.

The crawl runs as a real ``layerhound crawl`` process (with its worker pool,
in a process group of its own); once it has stored some verdicts the whole
group gets SIGKILL, with layers still downloading. The same command then
finishes the job. Every table's content (``ResultStore.content``: all rows
but the times and run ids) must equal that of a crawl never interrupted:
nothing finished is lost, nothing is stored twice.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from layerhound.cli import main
from layerhound.store.results import ResultStore
from tests.crawl.conftest import repos, sqlite_url
from tests.support.registry import FaultProxy
from tests.support.world import World

ROOT = Path(__file__).resolve().parents[2]


def verdict_count(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet, or locked for a moment
        return 0


def crawl_command(proxy: FaultProxy, world: World, db: str) -> list[str]:
    return [sys.executable, "-m", "layerhound", "crawl", "--insecure-registry", proxy.host, "--db", db,
            "--jobs", "2", "--no-progress", *repos(proxy, world)]


def test_a_crawl_killed_and_restarted_stores_what_an_uninterrupted_one_does(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, world: World, counting: FaultProxy
) -> None:
    killed_path = tmp_path / "killed.sqlite3"
    killed = sqlite_url(killed_path)
    process = subprocess.Popen(
        crawl_command(counting, world, killed), cwd=ROOT, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 300
    try:
        while verdict_count(killed_path) < 12:
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            assert time.monotonic() < deadline, "the crawl stored no verdicts in time"
            time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL
    stored_before = verdict_count(killed_path)
    assert 12 <= stored_before < len(world.images)
    with ResultStore.open(killed) as store:
        before = store.content()
        assert [run[5] for run in store.runs()] == ["running"]  # it never got to say it finished

    # Started again, it goes on: what was judged is not downloaded or judged again.
    counting.reset()
    assert main(crawl_command(counting, world, killed)[3:]) == 1
    err = capsys.readouterr().err
    assert f"{stored_before} already judged" in err or f"{stored_before - 1} already judged" in err, err
    assert counting.count("GET", f"/blobs/{world.shared_layers['debian root']}") in (0, 1)

    whole = sqlite_url(tmp_path / "whole.sqlite3")
    assert main(crawl_command(counting, world, whole)[3:]) == 1
    capsys.readouterr()
    with ResultStore.open(killed) as resumed, ResultStore.open(whole) as uninterrupted:
        after, expected = resumed.content(), uninterrupted.content()
    for table in expected:
        assert after[table] == expected[table], table
    # Nothing stored before the kill was lost or changed (lineage fills ``base`` in at the end of a crawl).
    for table, rows in before.items():
        def key(row: tuple[object, ...], table: str = table) -> tuple[object, ...]:
            return row[:5] if table == "verdicts" else row

        assert {key(r) for r in rows} <= {key(r) for r in after[table]}, table
