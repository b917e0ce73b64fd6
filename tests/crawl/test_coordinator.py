"""The crawl coordinator's bookkeeping, on local sources, with layers judged in this process.

``InlineExecutor`` runs each task when it is submitted (a test double of the
process pool, whose real self is exercised by the registry crawls): here what
is under test is the coordinator's handling of layers without a digest,
results that cannot be stored whole, and lost workers.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Iterable
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import pytest

from layerhound.crawl import run as crawl_run
from layerhound.crawl.executor import TaskFuture
from layerhound.crawl.run import Crawler
from layerhound.crawl.targets import parse_target
from layerhound.detectors.dpkg import DpkgDetector, StatusScanner
from layerhound.model import Verdict
from layerhound.registry.session import RegistrySession
from layerhound.registry.settings import RegistrySettings
from layerhound.store.results import ResultStore
from tests.support.imagewriter import ImageSpec, Layer, write_oci

AFFECTED = "Package: liblzma5\nStatus: install ok installed\nVersion: 5.6.1-1\nArchitecture: amd64\n"


class InlineExecutor:
    description = "inline"
    workers = 1

    def __init__(self, fail: Callable[[Any], bool] = lambda ref: False) -> None:
        self.fail = fail
        self.submitted = 0

    def submit(self, function: Callable[..., Any], *args: Any) -> TaskFuture:
        self.submitted += 1
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        if self.fail(args[0]):
            future.set_exception(BrokenProcessPool("a worker died"))
        else:
            future.set_result(function(*args))
        return future

    def wait(self, futures: Iterable[TaskFuture], timeout: float | None) -> set[TaskFuture]:
        return {f for f in futures if f.done()}

    def close(self) -> None:
        pass


def crawl(tmp_path: Path, references: list[str], executor: InlineExecutor | None = None) -> dict[str, Verdict]:
    with ResultStore.open(f"sqlite:///{tmp_path / 'results.sqlite3'}") as store, RegistrySession(
        RegistrySettings(environ={})
    ) as session:
        summary = Crawler(store, session, executor or InlineExecutor()).run([parse_target(r) for r in references])
    return {r.ref: r.verdict for r in summary.results}


def test_host_layers_without_a_digest_are_never_taken_for_each_other(tmp_path: Path) -> None:
    affected, clean = tmp_path / "affected", tmp_path / "clean"
    (affected / "var/lib/dpkg").mkdir(parents=True)
    (affected / "var/lib/dpkg/status").write_text(AFFECTED)
    (clean / "etc").mkdir(parents=True)
    (clean / "etc/hostname").write_text("clean\n")
    verdicts = crawl(tmp_path, [f"rootfs:{affected}", f"rootfs:{clean}"])
    assert verdicts == {f"rootfs:{affected}": Verdict.AFFECTED_VERSION_NOT_INJECTED,
                        f"rootfs:{clean}": Verdict.CLEAN}
    # A host source may change: crawled again, it is judged again (not "already judged").
    (clean / "var/lib/dpkg").mkdir(parents=True)
    (clean / "var/lib/dpkg/status").write_text(AFFECTED)
    assert crawl(tmp_path, [f"rootfs:{clean}"]) == {f"rootfs:{clean}": Verdict.AFFECTED_VERSION_NOT_INJECTED}


def test_a_layer_whose_result_cannot_be_stored_whole_still_serves_every_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A detector fails on one file of a shared layer: its part is not stored, yet all images are judged."""
    layout = tmp_path / "layout"
    base = Layer.files({"/var/lib/dpkg/status": AFFECTED, "/etc/broken": "x\n"})
    for n in range(3):
        write_oci(layout, ImageSpec([base, Layer.files({f"/opt/{n}": f"{n}\n"})]), tag=f"t{n}")
    original = StatusScanner.finish

    def failing(self: StatusScanner, sha256: str) -> Any:  # the status file is judged as a stream
        if self._path == "/var/lib/dpkg/status":
            raise ValueError("a detector bug")
        return original(self, sha256)

    monkeypatch.setattr(DpkgDetector, "wants", lambda self, entry, head: entry.path.startswith("/var/lib/dpkg"))
    monkeypatch.setattr(StatusScanner, "finish", failing)
    monkeypatch.setattr(crawl_run, "DECODED_LAYERS", 0)  # nothing kept in memory but what must be
    executor = InlineExecutor()
    verdicts = crawl(tmp_path, [f"oci:{layout}:t{n}" for n in range(3)], executor)
    assert set(verdicts.values()) == {Verdict.CLEAN}, verdicts  # judged (with the error noted), never "error"
    assert executor.submitted == 4  # the shared layer once, each top layer once


def test_a_lost_worker_fails_its_images_and_the_crawl_goes_on(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    shared = Layer.files({"/etc/shared": "x\n"})
    lost = write_oci(layout, ImageSpec([shared, Layer.files({"/opt/a": "a\n"})]), tag="a")
    write_oci(layout, ImageSpec([shared, Layer.files({"/opt/b": "b\n"})]), tag="b")
    doomed = lost.layers[1].digest
    verdicts = crawl(tmp_path, [f"oci:{layout}:a", f"oci:{layout}:b"], InlineExecutor(lambda ref: ref.digest == doomed))
    assert verdicts == {f"oci:{layout}:a": Verdict.ERROR, f"oci:{layout}:b": Verdict.CLEAN}
    with ResultStore.open(f"sqlite:///{tmp_path / 'results.sqlite3'}") as store:
        row = store.verdict(lost.manifest_digest or "", crawl_run.verdict_version())
    assert row is not None and row.failure is not None
    assert row.failure.kind == "worker" and row.failure.retryable and "BrokenProcessPool" in row.failure.message
