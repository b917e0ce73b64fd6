"""The layers of one image walked at once (``scan_pool``): the same judgement, faster.

Real worker processes (``spawn``) walk a real Debian bookworm layer and the
project's implant; every result is compared with the walk of one process:
equal, layer by layer and finding by finding. A corrupt layer fails its image
with the same reason; a worker killed mid-scan costs time, not the result.
"""

from __future__ import annotations

import io
import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from layerhound.cli import main
from layerhound.detectors.registry import ALL_DETECTORS
from layerhound.layers.layer import TarBlobLayer
from layerhound.layers.ref import BlobSource
from layerhound.model import ImageResult, Verdict
from layerhound.registry.settings import RegistrySettings
from layerhound.scan import scan_image
from layerhound.scan_pool import MIN_LAYER_BYTES, LayerPool
from layerhound.sources import open_images
from layerhound.sources.manifest import DOCKER_LAYER
from layerhound.store.cache import LayerCache
from layerhound.store.serialize import encode
from tests.support.imagewriter import ImageSpec, Layer, blob_file, file, symlink, write_oci

LIB = "/usr/lib/x86_64-linux-gnu"
SSHD = ["/usr/sbin/sshd", "-D"]


def big_data_layer(seed: int) -> Layer:
    """A layer just over the pool's bound: incompressible bytes, so the blob is as large as its tar."""
    data = os.urandom(MIN_LAYER_BYTES + (1 << 20))
    return Layer.files({f"/srv/data-{seed}.bin": file(data)})


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory, bookworm_layer: Layer, implant_so: bytes) -> Path:
    path = tmp_path_factory.mktemp("pool") / "layout"
    implant = Layer.files({f"{LIB}/liblzma.so.5.6.1": file(implant_so),
                           f"{LIB}/liblzma.so.5": symlink("liblzma.so.5.6.1")})
    write_oci(path, ImageSpec([bookworm_layer, implant, big_data_layer(1)], cmd=SSHD), tag="backdoored")
    write_oci(path, ImageSpec([bookworm_layer, big_data_layer(2), big_data_layer(3)], cmd=SSHD), tag="clean")
    return path


def judged(layout: Path, tag: str, pool: LayerPool | None, cache: LayerCache | None = None) -> ImageResult:
    [image] = open_images(f"oci:{layout}:{tag}")
    return scan_image(image, ALL_DETECTORS, cache=cache, pool=pool)


def as_data(result: ImageResult) -> Any:
    return json.loads(json.dumps(encode(result)))


@pytest.fixture
def pool() -> Any:
    pool = LayerPool(1, RegistrySettings(), min_layer_bytes=0)
    yield pool
    pool.close()


@pytest.mark.parametrize("tag", ["backdoored", "clean"])
def test_workers_judge_exactly_as_one_process(layout: Path, pool: LayerPool, tag: str) -> None:
    alone = judged(layout, tag, None)
    together = judged(layout, tag, pool)
    assert pool.sent >= 1  # some layers were walked by the worker
    assert as_data(together) == as_data(alone)
    assert together.verdict is (Verdict.BACKDOORED_REACHABLE if tag == "backdoored" else Verdict.CLEAN)


def test_only_large_layers_are_sent(layout: Path) -> None:
    pool = LayerPool(1, RegistrySettings())
    try:
        [image] = open_images(f"oci:{layout}:backdoored")
        none = [None] * len(image.layers)
        assert pool.worth_it(image.layers, none, ALL_DETECTORS)  # bookworm and the data layer are large
        assert not pool.worth_it(image.layers[1:2], none[1:2], ALL_DETECTORS)  # the implant alone is not
        judged(layout, "backdoored", pool)
        assert pool.sent == 1  # the worker got one of the two large layers, this process kept the rest
    finally:
        pool.close()


def test_a_blob_named_by_no_digest_stays_here() -> None:
    # A compressed legacy docker-archive member: verified by its diff_id as it is walked, never reopened by digest.
    layer = TarBlobLayer(None, MIN_LAYER_BYTES * 2, DOCKER_LAYER, lambda: io.BytesIO(b""), "sha256:" + "0" * 64,
                         BlobSource("docker-archive", "/nonexistent.tar", member="layer.tar.gz"))
    assert layer.ref is None
    assert not LayerPool(1, RegistrySettings(), min_layer_bytes=0).worth_it([layer, layer], [None, None], [])


def test_a_corrupt_layer_fails_its_image_with_the_same_reason(tmp_path: Path, layout: Path, pool: LayerPool) -> None:
    broken = tmp_path / "broken"
    written = write_oci(broken, ImageSpec([big_data_layer(4), big_data_layer(5), big_data_layer(6)]), tag="t")
    blob = blob_file(broken, written.layer_digests[1])
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF  # the digest no longer matches
    blob.write_bytes(bytes(data))
    alone, together = judged(broken, "t", None), judged(broken, "t", pool)
    assert alone.verdict is together.verdict is Verdict.ERROR
    assert together.error == alone.error and "digest" in (together.error or "")
    assert together.failure == alone.failure
    assert [layer.digest for layer in together.layers] == [layer.digest for layer in alone.layers]


def test_worker_results_go_to_the_cache(tmp_path: Path, layout: Path, pool: LayerPool) -> None:
    with LayerCache(tmp_path / "layers.sqlite3") as cache:
        first = judged(layout, "clean", pool, cache)
        again = judged(layout, "clean", None, cache)
    assert pool.sent >= 1
    assert all(layer.cached for layer in again.layers)
    assert again.verdict is first.verdict is Verdict.CLEAN


def test_a_worker_killed_mid_layer_costs_time_not_the_result(layout: Path, pool: LayerPool) -> None:
    worker = pool.executor().submit(os.getpid).result(timeout=60)
    outcome: dict[str, ImageResult] = {}
    scanning = threading.Thread(target=lambda: outcome.setdefault("result", judged(layout, "backdoored", pool)))
    scanning.start()
    deadline = time.monotonic() + 60
    while pool.sent == 0 and scanning.is_alive() and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(worker, signal.SIGKILL)  # it is walking the bookworm layer, the largest
    scanning.join(300)
    assert pool.lost == 1
    assert as_data(outcome["result"]) == as_data(judged(layout, "backdoored", None))
    judged(layout, "clean", pool)  # a broken pool is not used again: this process walks everything
    assert pool.sent == 1


def test_the_command_line_gives_the_same_report_with_and_without_workers(
    capsys: pytest.CaptureFixture[str], layout: Path
) -> None:
    reports = []
    for jobs in ("1", "2"):
        status = main(["scan", "--no-cache", "--no-progress", "--format", "json", "--jobs", jobs,
                       f"oci:{layout}:backdoored", f"oci:{layout}:clean"])
        assert status == 1
        reports.append(json.loads(capsys.readouterr().out)["images"])
    assert reports[0] == reports[1]
    assert [image["verdict"] for image in reports[1]] == ["backdoored-reachable", "clean"]
