"""A crawl through a faulty network ends with the store of a crawl through a clean one.

The counting proxy in front of the real registry injects, in one crawl: bursts of 503 on
manifests, a 429 with Retry-After on the tag list, TCP resets, connections dropped halfway
through blobs (resumed with Range), stalls and bodies that dribble out in 4 KiB pieces.
Every fault is bounded so that no one request meets more of them than the retry policy
outlasts (4 tries); the stores must then be equal, table by table. A blob that never
comes is different: its images are named, with a retryable failure, and a later crawl
over a healed network judges them and ends equal too.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from layerhound.cli import main
from layerhound.store.results import ResultStore
from tests.crawl.conftest import repos, sqlite_url
from tests.support.registry import Fault, FaultProxy
from tests.support.world import World


def crawl(proxy: FaultProxy, world: World, db: str) -> int:
    return main(["crawl", "--insecure-registry", proxy.host, "--db", db, "--jobs", "2", "--no-progress",
                 *repos(proxy, world)])


def test_a_crawl_through_faults_stores_what_a_clean_crawl_does(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, world: World, counting: FaultProxy
) -> None:
    clean = sqlite_url(tmp_path / "clean.sqlite3")
    clean_status = crawl(counting, world, clean)
    capsys.readouterr()

    counting.reset()
    faults = [
        counting.add(Fault("status", r"/manifests/", status=503, times=3)),
        counting.add(Fault("status", r"/tags/list", status=429, times=1, headers={"Retry-After": "1"})),
        counting.add(Fault("reset", r"/manifests/", times=2, after=12)),
        counting.add(Fault("reset", r"/blobs/", times=2, after=5)),
        counting.add(Fault("drop", r"/blobs/", times=3, after=1)),
        counting.add(Fault("delay", r"/blobs/", times=2, after=20, seconds=2.0)),
        counting.add(Fault("slow", r"/manifests/", times=4, after=30, seconds=0.2)),
        counting.add(Fault("slow", f"/blobs/{world.shared_layers['implant']}", times=1, seconds=0.002)),
    ]
    faulty = sqlite_url(tmp_path / "faulty.sqlite3")
    assert crawl(counting, world, faulty) == clean_status
    err = capsys.readouterr().err
    assert all(fault.times == 0 for fault in faults), [f for f in faults if f.times]  # every fault was met
    assert counting.count("GET", r"/blobs/") > len(world.shared_layers)
    assert " 0 errors" in err, err
    with ResultStore.open(clean) as expected_store, ResultStore.open(faulty) as got_store:
        expected, got = expected_store.content(), got_store.content()
    for table in expected:
        assert got[table] == expected[table], table


def test_a_blob_that_never_comes_names_its_images_as_retryable_and_a_later_crawl_heals(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, world: World, counting: FaultProxy
) -> None:
    clean = sqlite_url(tmp_path / "clean.sqlite3")
    crawl(counting, world, clean)
    capsys.readouterr()

    counting.reset()
    implant = world.shared_layers["implant"]
    counting.add(Fault("status", f"/blobs/{implant}", status=503, times=-1))
    broken = sqlite_url(tmp_path / "broken.sqlite3")
    assert crawl(counting, world, broken) == 2
    err = capsys.readouterr().err
    with ResultStore.open(broken) as store:
        errors = store.content()["verdicts"]
    failed = [row for row in errors if row[2] == "error"]
    assert failed, errors[:3]
    for row in failed:
        failure = json.loads(row[4])
        assert failure["retryable"] is True and failure["status"] == 503, failure
        assert implant in failure["message"] or "503" in failure["message"], failure
    assert f" {len(failed)} errors" in err, err

    counting.reset()
    crawl(counting, world, broken)
    capsys.readouterr()
    with ResultStore.open(clean) as expected_store, ResultStore.open(broken) as healed_store:
        expected, healed = expected_store.content(), healed_store.content()
    for table in expected:
        assert healed[table] == expected[table], table
