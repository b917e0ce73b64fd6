"""Only regular files are read inside a layout or as an archive; anything else is refused at once.

A FIFO named index.json used to block the scan forever, a blob linked to /dev/zero never
ended, and a link out of the layout read a file the layout does not hold.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.cli import scan_json
from tests.support.imagewriter import ImageSpec, Layer, blob_file, write_oci


def layout(tmp_path: Path) -> tuple[Path, str]:
    written = write_oci(tmp_path / "layout", ImageSpec([Layer.files({"etc/hostname": b"x\n"})]))
    return tmp_path / "layout", written.layers[0].digest


@pytest.mark.parametrize("plant", ["fifo-index", "fifo-blob", "dev-zero-blob", "link-out-index"])
def test_a_layout_file_that_is_not_a_regular_file_is_refused(tmp_path: Path, plant: str) -> None:
    root, layer = layout(tmp_path)
    outside = tmp_path / "elsewhere.json"
    outside.write_text((root / "index.json").read_text())
    if plant == "fifo-index":
        (root / "index.json").unlink()
        os.mkfifo(root / "index.json")
    elif plant == "fifo-blob":
        blob_file(root, layer).unlink()
        os.mkfifo(blob_file(root, layer))
    elif plant == "dev-zero-blob":
        blob_file(root, layer).unlink()
        blob_file(root, layer).symlink_to("/dev/zero")
    else:
        (root / "index.json").unlink()
        (root / "index.json").symlink_to(outside)
    run = scan_json("--no-cache", f"oci:{root}:latest", timeout=60)  # a hang fails here
    assert run.status == 2, run.stderr
    message = run.images[0]["error"] if run.images else run.stderr
    expected = {"fifo-index": "is a FIFO", "fifo-blob": "is a FIFO", "dev-zero-blob": "links out of",
                "link-out-index": "links out of"}[plant]
    assert expected in message and "refused" in message, message


def test_an_archive_that_is_a_fifo_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "image.tar"
    os.mkfifo(fifo)
    run = scan_json("--no-cache", f"oci-archive:{fifo}", f"docker-archive:{fifo}", timeout=60)
    assert run.status == 2
    assert run.stderr.count("is a FIFO, not a regular file; refused") + sum(
        "is a FIFO" in (image.get("error") or "") for image in run.images) >= 2, run.stderr


def _put_blob(root: Path, data: bytes) -> str:
    import hashlib

    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blob_file(root, digest).write_bytes(data)
    return digest


@pytest.mark.parametrize("child", ["empty-index", "attestation-only"])
def test_an_index_with_no_image_in_it_is_an_error_not_clean(tmp_path: Path, child: str) -> None:
    import json

    root, _ = layout(tmp_path)
    if child == "empty-index":
        body = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                           "manifests": []}).encode()
        descriptor = {"mediaType": "application/vnd.oci.image.index.v1+json"}
    else:
        index = json.loads((root / "index.json").read_text())
        image = index["manifests"][0]
        body = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                           "manifests": [{**{k: image[k] for k in ("mediaType", "digest", "size")},
                                          "platform": {"os": "unknown", "architecture": "unknown"},
                                          "annotations": {"vnd.docker.reference.type": "attestation-manifest",
                                                          "vnd.docker.reference.digest": image["digest"]}}]}).encode()
        descriptor = {"mediaType": "application/vnd.oci.image.index.v1+json"}
    digest = _put_blob(root, body)
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {**descriptor, "digest": digest, "size": len(body),
         "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}))
    run = scan_json("--no-cache", f"oci:{root}:latest", timeout=60)
    assert run.status == 2, (run.status, run.stderr)
    message = run.images[0]["error"] if run.images else run.stderr
    assert "holds no image" in message, message
