"""The engine export reader on the layouts Docker writes, which no engine on this machine can.

Podman (``test_engine``) exports the legacy layout with ``<diffid>.tar`` layers.
Docker >= 25 exports an OCI layout inside the tar (``blobs/sha256/…``, with
``<id>/layer.tar`` links), and Docker < 25 names layers by their v1 IDs only,
so their diff_ids are known only after the walk. No Docker daemon can run here
(no privileges for its network and storage set-up), so the export is played by
an in-process stand-in for the client that serves the bytes of an archive written
by the project's writer, and the record is what Docker's inspect would say.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from layerhound.detectors.registry import ALL_DETECTORS
from layerhound.errors import SourceError
from layerhound.scan import scan_image
from layerhound.sources.engine import DOCKER_DAEMON, Endpoint
from layerhound.sources.engine_image import EngineImage
from layerhound.store.cache import LayerCache
from tests.support.imagewriter import ImageSpec, Layer, file, symlink, write_docker_archive

LIB = "/usr/lib/x86_64-linux-gnu"


class ExportOnly:
    """Stands in for ``EngineClient``: serves one archive as ``/images/{id}/get`` and counts the exports."""

    def __init__(self, archive: bytes) -> None:
        self.endpoint = Endpoint(DOCKER_DAEMON, "unix:///stand-in.sock", "the test")
        self.archive = archive
        self.exports = 0

    @contextmanager
    def export(self, image_id: str) -> Iterator[io.BytesIO]:
        self.exports += 1
        yield io.BytesIO(self.archive)


def record(config_digest: str, diff_ids: list[str]) -> dict[str, Any]:
    return {"Id": config_digest, "RootFS": {"Type": "layers", "Layers": diff_ids}, "Os": "linux",
            "Architecture": "amd64"}


@pytest.fixture
def spec(implant_so: bytes) -> ImageSpec:
    implant = Layer.files(
        {f"{LIB}/liblzma.so.5.6.1": file(implant_so, 0o755), f"{LIB}/liblzma.so.5": symlink("liblzma.so.5.6.1")}
    )
    update = Layer.files({"/etc/motd": "patched\n"})
    return ImageSpec([update, implant, update], cmd=["/bin/sh"])  # one layer at two positions


@pytest.mark.parametrize("layout", ["oci", "legacy"])
def test_docker_exports_are_read_in_one_pass(tmp_path: Path, spec: ImageSpec, layout: str) -> None:
    path = tmp_path / "export.tar"
    [written] = write_docker_archive(path, [(spec, ["example.test/app:1"])], layout=layout)  # type: ignore[arg-type]
    client = ExportOnly(path.read_bytes())
    image = EngineImage("docker-daemon:example.test/app:1", client, record(written.config_digest, written.diff_ids),
                        [])  # type: ignore[arg-type]
    result = scan_image(image, ALL_DETECTORS)
    assert result.verdict.value == "backdoored-dormant", result.reasons
    assert [layer.digest for layer in result.layers] == written.diff_ids
    assert {f.layer for f in result.findings} == {written.diff_ids[1]}
    assert client.exports == 1


def test_cached_layers_and_config_need_no_export(tmp_path: Path, spec: ImageSpec) -> None:
    path = tmp_path / "export.tar"
    [written] = write_docker_archive(path, [(spec, ["example.test/app:1"])], layout="oci")
    client = ExportOnly(path.read_bytes())
    with LayerCache(tmp_path / "cache.sqlite3") as cache:
        def fresh() -> EngineImage:
            return EngineImage("docker-daemon:x", client, record(written.config_digest, written.diff_ids),
                               [])  # type: ignore[arg-type]
        first = scan_image(fresh(), ALL_DETECTORS, cache=cache)
        second = scan_image(fresh(), ALL_DETECTORS, cache=cache)
    assert client.exports == 1
    assert [layer.cached for layer in second.layers] == [True, True, True]
    assert (second.verdict, [f.path for f in second.findings]) == (first.verdict, [f.path for f in first.findings])


def test_an_export_that_lacks_a_layer_or_the_config_fails_that_image(tmp_path: Path, spec: ImageSpec) -> None:
    path = tmp_path / "export.tar"
    [written] = write_docker_archive(path, [(spec, ["example.test/app:1"])], layout="legacy")
    client = ExportOnly(path.read_bytes())
    missing = "sha256:" + hashlib.sha256(b"another layer").hexdigest()
    lacking = EngineImage("docker-daemon:x", client, record(written.config_digest, [*written.diff_ids, missing]),
                          [])  # type: ignore[arg-type]
    result = scan_image(lacking, ALL_DETECTORS)
    assert result.verdict.value == "error" and f"the stream lacks layer(s) {missing}" in (result.error or "")
    # An ID that is not the config's digest (the containerd image store's index digest): the
    # content-addressed config with the record's diff_ids is taken, and the report says so.
    other = "sha256:" + hashlib.sha256(json.dumps({"not": "it"}).encode()).hexdigest()
    by_diff_ids = EngineImage("docker-daemon:x", client, record(other, written.diff_ids), [])  # type: ignore[arg-type]
    result = scan_image(by_diff_ids, ALL_DETECTORS)
    assert result.verdict.value == "backdoored-dormant"
    assert f"note: the engine's image ID {other} is not a config digest; the config " in "\n".join(result.reasons)
    without = tmp_path / "without-config.tar"
    with tarfile.open(path) as source, tarfile.open(without, "w") as target:
        for info in source:
            if info.name != written.config_digest.split(":")[1] + ".json":
                target.addfile(info, source.extractfile(info) if info.isreg() else None)
    no_config = EngineImage("docker-daemon:x", ExportOnly(without.read_bytes()),
                            record(written.config_digest, written.diff_ids), [])  # type: ignore[arg-type]
    result = scan_image(no_config, ALL_DETECTORS)
    assert result.verdict.value == "error"
    assert f"holds no image config with digest {written.config_digest}" in (result.error or "")
    truncated = ExportOnly(path.read_bytes()[: len(client.archive) // 2])
    cut = EngineImage("docker-daemon:x", truncated, record(written.config_digest, written.diff_ids),
                      [])  # type: ignore[arg-type]
    result = scan_image(cut, ALL_DETECTORS)
    assert result.verdict.value == "error", result.reasons


def test_a_record_without_an_image_id_is_refused() -> None:
    with pytest.raises(SourceError, match="gives no sha256 image ID"):
        EngineImage("docker-daemon:x", ExportOnly(b""), {"Id": "nope", "RootFS": {"Layers": []}},
                    [])  # type: ignore[arg-type]


@pytest.mark.parametrize("layout", ["oci", "legacy"])
def test_a_layer_whose_first_file_looks_like_json_is_still_a_layer(tmp_path: Path, layout: str) -> None:
    """A tar starts with its first member's name: ``{`` there must not make a layer a config candidate."""
    weird = ImageSpec([Layer.files({"/{not json}": "x\n", "/etc/motd": "hello\n"})])
    path = tmp_path / "export.tar"
    [written] = write_docker_archive(path, [(weird, ["example.test/weird:1"])], layout=layout)  # type: ignore[arg-type]
    image = EngineImage("docker-daemon:x", ExportOnly(path.read_bytes()),
                        record(written.config_digest, written.diff_ids), [])  # type: ignore[arg-type]
    result = scan_image(image, ALL_DETECTORS)
    assert result.verdict.value == "clean", result.reasons
    assert [layer.digest for layer in result.layers] == written.diff_ids
