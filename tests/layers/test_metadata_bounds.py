"""The tar and JSON bounds of the README's table, each hit by a crafted input of this test's own.

Each case asserts the exact refusal (a corrupt layer, or the image's ``error`` with exit 2,
the bound named in the message).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from layerhound.errors import CorruptLayer
from layerhound.layers.tarstream import MAX_METADATA, MAX_SPARSE_ENTRIES
from layerhound.layers.walk import walk_layer
from layerhound.sources.base import MAX_JSON_BLOB
from tests.layers.test_walk import blob_layer
from tests.support.cli import scan_json
from tests.support.imagewriter import ImageSpec, Layer, write_oci


def _pax_tar(pax_headers: dict[str, str], data: bytes = b"") -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        info = tarfile.TarInfo("f")
        info.size = len(data)
        info.pax_headers = pax_headers
        archive.addfile(info, io.BytesIO(data))
        after = tarfile.TarInfo("after")
        archive.addfile(after, io.BytesIO(b""))
    return out.getvalue()


def test_a_pax_record_over_the_bound_is_a_corrupt_layer() -> None:
    blob = _pax_tar({"comment": "x" * (MAX_METADATA + 1)})
    with pytest.raises(CorruptLayer, match=f"limit {MAX_METADATA}"):
        walk_layer(blob_layer(blob), [])
    assert [e.path for e in walk_layer(blob_layer(_pax_tar({"comment": "x" * 1000})), []).entries] == ["/f", "/after"]


def test_a_sparse_map_over_the_bound_is_a_corrupt_layer() -> None:
    count = MAX_SPARSE_ENTRIES + 1
    sparse_map = f"{count}\n" + "".join(f"{i * 2}\n1\n" for i in range(count))
    data = sparse_map.encode().ljust(-(-len(sparse_map) // 512) * 512, b"\0") + b"x" * count
    headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": "f",
               "GNU.sparse.realsize": str(count * 2)}
    with pytest.raises(CorruptLayer, match=f"more than {MAX_SPARSE_ENTRIES} entries"):
        walk_layer(blob_layer(_pax_tar(headers, data)), [])


def test_a_manifest_over_the_json_bound_fails_its_image_with_the_bound(tmp_path: Path) -> None:
    written = write_oci(tmp_path / "layout", ImageSpec([Layer.files({"etc/os-release": "ID=debian\n"})]))
    layout = tmp_path / "layout"
    assert written.manifest_digest is not None
    manifest = json.loads((layout / "blobs" / "sha256" / written.manifest_digest.split(":")[1]).read_text())
    manifest["annotations"] = {"padding": "x" * MAX_JSON_BLOB}
    body = json.dumps(manifest).encode()
    digest = hashlib.sha256(body).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(body)
    index = json.loads((layout / "index.json").read_text())
    index["manifests"][0].update(digest=f"sha256:{digest}", size=len(body))
    (layout / "index.json").write_text(json.dumps(index))
    run = scan_json("--no-cache", f"oci:{layout}")
    assert run.status == 2, run.stderr
    [image] = run.images
    assert image["verdict"] == "error"
    assert f"is larger than {MAX_JSON_BLOB} bytes" in image["error"], image["error"]
