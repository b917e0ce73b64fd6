"""End to end: the layer cache through ``layerhound scan``, on local sources.

Every blob read is counted at the OCI layout's blob store, and after the first
scan the layer blobs are deleted from the layout outright: the second scan can
only succeed by reading none of them. The bookworm-based image makes the
cached results carry what reachability needs (DT_NEEDED, ld.so.cache, the
dpkg database) and the verdict must come out the same.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, BinaryIO

import jsonschema
import pytest

from layerhound.cli import main
from layerhound.detectors.registry import ALL_DETECTORS
from layerhound.detectors.signatures import ByteSignatureDetector
from layerhound.layers.layer import TarBlobLayer
from layerhound.report.json_report import load_schema
from layerhound.sources.oci_layout import DirectoryBlobStore
from layerhound.store.cache import CACHE_FILE
from tests.support.imagewriter import (
    ImageSpec,
    Layer,
    WrittenImage,
    blob_file,
    file,
    symlink,
    tamper,
    whiteout,
    write_docker_archive,
    write_oci,
)

LIB = "/usr/lib/x86_64-linux-gnu"
SSHD = ["/usr/sbin/sshd", "-D"]


def implant_layer(implant: bytes) -> Layer:
    return Layer.files({f"{LIB}/liblzma.so.5.6.1": file(implant), f"{LIB}/liblzma.so.5": symlink("liblzma.so.5.6.1")})


@pytest.fixture(scope="module")
def bookworm_image(tmp_path_factory: pytest.TempPathFactory, bookworm_layer: Layer, implant_so: bytes) -> Path:
    """bookworm + openssh-server + the implant, started as sshd: backdoored-reachable."""
    path = tmp_path_factory.mktemp("cache-e2e") / "layout"
    write_oci(path, ImageSpec([bookworm_layer, implant_layer(implant_so)], cmd=SSHD), tag="reachable")
    return path


@pytest.fixture()
def small(tmp_path: Path, implant_so: bytes) -> tuple[Path, list[WrittenImage]]:
    """Small images sharing a base: an implant, and the implant deleted again (whiteout)."""
    path = tmp_path / "layout"
    base = Layer.files({"/etc/os-release": "ID=debian\n", "/var/lib/dpkg/status": "Package: liblzma5\n"})
    deleted = Layer.files({f"{LIB}/liblzma.so.5.6.1": whiteout()})
    written = [
        write_oci(path, ImageSpec([base, implant_layer(implant_so)], cmd=["/bin/sh"]), tag="implant"),
        write_oci(path, ImageSpec([base, implant_layer(implant_so), deleted]), tag="deleted"),
    ]
    return path, written


@pytest.fixture()
def opened(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Every blob the OCI layout store opens, by digest."""
    counts: Counter[str] = Counter()
    original = DirectoryBlobStore.open

    def counting(self: DirectoryBlobStore, digest: str) -> AbstractContextManager[BinaryIO]:
        counts[digest] += 1
        return original(self, digest)

    monkeypatch.setattr(DirectoryBlobStore, "open", counting)
    return counts


@pytest.fixture()
def walked(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Every tar layer read, by digest, whatever the source."""
    counts: Counter[str] = Counter()
    original = TarBlobLayer.members

    def counting(self: TarBlobLayer) -> Iterator[Any]:
        counts[self.digest or ""] += 1
        return original(self)

    monkeypatch.setattr(TarBlobLayer, "members", counting)
    return counts


def scan(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    status = main(["scan", "--format", "json", "--no-progress", *args])
    report = json.loads(capsys.readouterr().out)
    jsonschema.validate(report, load_schema())
    return status, report


def verdicts(report: dict[str, Any]) -> list[tuple[Any, ...]]:
    """What must not change between a fresh and a cached scan."""
    return [
        (
            image["ref"],
            image["digest"],
            image["verdict"],
            image["reasons"],
            image["findings"],
            [{k: v for k, v in layer.items() if k != "cached"} for layer in image["layers"]],
        )
        for image in report["images"]
    ]


def cached_flags(report: dict[str, Any]) -> list[list[bool]]:
    return [[layer["cached"] for layer in image["layers"]] for image in report["images"]]


def layer_digests(report: dict[str, Any]) -> set[str]:
    return {layer["digest"] for image in report["images"] for layer in image["layers"]}


def stored(cache_dir: Path) -> list[tuple[str, str]]:
    """(walk version, digest) of every layer whose walk is stored."""
    with sqlite3.connect(cache_dir / CACHE_FILE) as conn:
        return sorted(conn.execute("SELECT walk, digest FROM layer_walks"))


def stored_parts(cache_dir: Path) -> list[tuple[str, str]]:
    """(digest, detector key) of every stored detector part."""
    with sqlite3.connect(cache_dir / CACHE_FILE) as conn:
        return sorted(conn.execute("SELECT digest, detector FROM layer_parts"))


def test_rescan_of_a_cached_image_reads_no_layer_blob(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, bookworm_image: Path, opened: Counter[str]
) -> None:
    cache = str(tmp_path / "cache")
    ref = f"oci:{bookworm_image}:reachable"
    status, first = scan(capsys, "--cache-dir", cache, ref)
    assert status == 1 and first["images"][0]["verdict"] == "backdoored-reachable"
    assert cached_flags(first) == [[False, False]]
    layers = layer_digests(first)
    assert all(opened[d] == 1 for d in layers)

    opened.clear()
    status, second = scan(capsys, "--cache-dir", cache, ref)
    assert status == 1
    assert cached_flags(second) == [[True, True]]
    assert verdicts(second) == verdicts(first)
    assert not layers & set(opened), "a layer blob was opened on a fully cached image"


def test_rescan_succeeds_with_the_layer_blobs_gone(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, small: tuple[Path, list[WrittenImage]]
) -> None:
    layout, written = small
    cache = str(tmp_path / "cache")
    status, first = scan(capsys, "--cache-dir", cache, f"oci:{layout}")
    assert [i["verdict"] for i in first["images"]] == ["backdoored-dormant", "backdoor-in-history"]
    # The two images share their first two layers: read once, then served from the cache.
    assert cached_flags(first) == [[False, False], [True, True, False]]
    for image in written:
        for digest in image.layer_digests:
            blob_file(layout, digest).unlink(missing_ok=True)

    status2, second = scan(capsys, "--cache-dir", cache, f"oci:{layout}")
    assert status2 == status
    assert cached_flags(second) == [[True, True], [True, True, True]]
    assert verdicts(second) == verdicts(first)

    # Without the cache, the same scan needs the blobs, and fails without them.
    status3, third = scan(capsys, "--no-cache", f"oci:{layout}")
    assert status3 == 2 and {i["verdict"] for i in third["images"]} == {"error"}


def test_no_cache_reads_every_blob_and_writes_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, small: tuple[Path, list[WrittenImage]], walked: Counter[str]
) -> None:
    layout, _ = small
    cache_dir = tmp_path / "cache"
    _, first = scan(capsys, "--cache-dir", str(cache_dir), f"oci:{layout}:implant")
    walked.clear()
    _, again = scan(capsys, "--no-cache", "--cache-dir", str(cache_dir), f"oci:{layout}:implant")
    assert cached_flags(again) == [[False, False]]
    assert set(walked) == layer_digests(first)
    assert verdicts(again) == verdicts(first)

    elsewhere = tmp_path / "never"
    scan(capsys, "--no-cache", "--cache-dir", str(elsewhere), f"oci:{layout}:implant")
    assert not elsewhere.exists()


def test_new_detector_version_reruns_only_that_detector_and_keeps_the_old_rows(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    small: tuple[Path, list[WrittenImage]],
    walked: Counter[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    layout, _ = small
    cache_dir = tmp_path / "cache"
    _, first = scan(capsys, "--cache-dir", str(cache_dir), f"oci:{layout}:implant")
    parts_before = stored_parts(cache_dir)
    assert {key.split("@")[0] for _, key in parts_before} == {d.name for d in ALL_DETECTORS}

    monkeypatch.setattr(ByteSignatureDetector, "version", ByteSignatureDetector.version + 1)
    asked: Counter[str] = Counter()
    for detector in ALL_DETECTORS:
        original = type(detector).wants

        def counting(self: Any, entry: Any, head: bytes, _original: Any = original) -> bool:
            asked[self.name] += 1
            return bool(_original(self, entry, head))

        monkeypatch.setattr(type(detector), "wants", counting)
    walked.clear()
    _, second = scan(capsys, "--cache-dir", str(cache_dir), f"oci:{layout}:implant")
    assert set(walked) == layer_digests(first)  # each blob read again, for one detector
    assert set(asked) == {ByteSignatureDetector.name}
    assert verdicts(second) == verdicts(first)
    assert [i["findings"] for i in second["images"]] == [i["findings"] for i in first["images"]]
    assert second["tool"]["rules"] != first["tool"]["rules"]
    parts_after = stored_parts(cache_dir)
    added = sorted(set(parts_after) - set(parts_before))
    assert set(parts_before) <= set(parts_after)  # nothing deleted
    assert [key.split(":")[0] for _, key in added] == [f"byte-signatures@{ByteSignatureDetector.version}"] * 2
    assert len(stored(cache_dir)) == 2  # the walk parts were kept, not written again

    walked.clear()
    _, third = scan(capsys, "--cache-dir", str(cache_dir), f"oci:{layout}:implant")
    assert cached_flags(third) == [[True, True]] and not walked


def test_a_layer_that_fails_is_never_cached(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, small: tuple[Path, list[WrittenImage]]
) -> None:
    layout, written = small
    good, bad = written[0].layer_digests
    tamper(blob_file(layout, bad))
    cache_dir = tmp_path / "cache"
    for _ in range(2):
        status, report = scan(capsys, "--cache-dir", str(cache_dir), f"oci:{layout}:implant")
        [image] = report["images"]
        assert status == 2 and image["verdict"] == "error" and "digest mismatch" in image["error"]
    assert [d for _, d in stored(cache_dir)] == [good]  # stored before the bad layer was reached


def test_legacy_docker_archive_layers_are_cached_by_diff_id(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, implant_so: bytes, walked: Counter[str]
) -> None:
    archive = tmp_path / "saved.tar"
    [written] = write_docker_archive(archive, [(ImageSpec([implant_layer(implant_so)]), ["saved:1"])])
    cache = str(tmp_path / "cache")
    _, first = scan(capsys, "--cache-dir", cache, f"docker-archive:{archive}")
    assert layer_digests(first) == set(written.diff_ids)
    walked.clear()
    _, second = scan(capsys, "--cache-dir", cache, f"docker-archive:{archive}")
    assert cached_flags(second) == [[True]] and not walked
    assert verdicts(second) == verdicts(first)


def test_host_sources_are_never_cached(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/os-release").write_text("ID=debian\n")
    cache_dir = tmp_path / "cache"
    for _ in range(2):
        _, report = scan(capsys, "--cache-dir", str(cache_dir), f"rootfs:{root}")
        assert cached_flags(report) == [[False]]
    assert stored(cache_dir) == []


def test_default_cache_is_in_the_user_cache_directory(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    small: tuple[Path, list[WrittenImage]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    layout, _ = small
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    scan(capsys, f"oci:{layout}:implant")
    assert len(stored(tmp_path / "xdg" / "layerhound")) == 2


def test_an_unusable_cache_is_a_warning_not_a_failure(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, small: tuple[Path, list[WrittenImage]]
) -> None:
    layout, _ = small
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    status = main(["scan", "--format", "json", "--no-progress", "--cache-dir", str(blocker), f"oci:{layout}:implant"])
    out, err = capsys.readouterr()
    assert status == 1 and json.loads(out)["images"][0]["verdict"] == "backdoored-dormant"
    assert "layerhound: warning:" in err and "without the layer cache" in err


def test_findings_inside_archives_survive_the_cache(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                   implant_so: bytes) -> None:
    """A packaged implant is found inside an archive; the cached re-scan must find it too (stored per detector)."""
    import io
    import tarfile

    packed = io.BytesIO()
    with tarfile.open(fileobj=packed, mode="w:gz") as archive:
        info = tarfile.TarInfo("usr/lib/x86_64-linux-gnu/liblzma.so.5.6.1")
        info.size = len(implant_so)
        archive.addfile(info, io.BytesIO(implant_so))
    layout = tmp_path / "layout"
    write_oci(layout, ImageSpec([Layer.files({"/opt/backup/xz.tar.gz": file(packed.getvalue())})]), tag="packed")
    cache = str(tmp_path / "cache")
    _, first = scan(capsys, "--cache-dir", cache, f"oci:{layout}:packed")
    _, second = scan(capsys, "--cache-dir", cache, f"oci:{layout}:packed")
    assert cached_flags(second) == [[True]]
    assert verdicts(first) == verdicts(second)
    assert [i["verdict"] for i in second["images"]] == ["backdoored-dormant"]
    [archive_findings] = [[f for f in image["findings"] if f["kind"] == "archive"] for image in second["images"]]
    assert archive_findings and all(f["detector"] for f in archive_findings)
    assert second["images"][0]["findings"] == first["images"][0]["findings"]
