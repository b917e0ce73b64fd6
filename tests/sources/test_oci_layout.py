"""``oci:DIR[:REF]`` round trips through the project's image writer."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pytest

from layerhound.errors import (
    BlobError,
    CorruptLayer,
    DigestMismatch,
    LayerhoundError,
    ManifestError,
    SourceError,
)
from layerhound.sources import open_images
from layerhound.sources.base import ManifestImage
from tests.support.imagewriter import (
    ImageSpec,
    Layer,
    blob_file,
    directory,
    file,
    hardlink,
    opaque,
    read_layer,
    symlink,
    tamper,
    whiteout,
    write_oci,
    write_oci_index,
)

LIB = b"\x7fELF\x02\x01\x01" + b"\0" * 57 + b"liblzma"

BASE = Layer.files(
    {
        "/usr": directory(),
        "/usr/lib": directory(),
        "/usr/lib/liblzma.so.5.6.0": file(LIB, 0o755),
        "/usr/lib/liblzma.so.5": symlink("liblzma.so.5.6.0"),
        "/usr/lib/liblzma-copy.so": hardlink("/usr/lib/liblzma.so.5.6.0"),
        "/etc/os-release": "ID=debian\n",
    }
)
TOP = Layer.files({"/usr/lib/.wh.liblzma.so.5": b"", "/etc/gone": whiteout(), "/var/cache": opaque()})

EXPECTED_BASE = [
    ("/usr", "dir", b""),
    ("/usr/lib", "dir", b""),
    ("/usr/lib/liblzma.so.5.6.0", "file", LIB),
    ("/usr/lib/liblzma.so.5", "symlink", b""),
    ("/usr/lib/liblzma-copy.so", "hardlink", b""),
    ("/etc/os-release", "file", b"ID=debian\n"),
]


def image(arch: str = "amd64", variant: str | None = None) -> ImageSpec:
    return ImageSpec(
        [BASE, TOP],
        architecture=arch,
        variant=variant,
        entrypoint=["/usr/sbin/sshd", "-D"],
        cmd=["-e"],
        env=["PATH=/usr/bin", "LD_PRELOAD="],
        exposed_ports=["22/tcp"],
    )


@pytest.mark.parametrize(
    ("compression", "media_types"),
    [(c, m) for c in ("gzip", "zstd", "none") for m in ("oci", "docker", "none") if (c, m) != ("zstd", "docker")],
)
def test_round_trip(tmp_path: Path, compression: str, media_types: str) -> None:
    written = write_oci(tmp_path / "l", image(), tag="v1", compression=compression, media_types=media_types)  # type: ignore[arg-type]
    [img] = open_images(f"oci:{tmp_path / 'l'}:v1")
    assert img.ref == f"oci:{tmp_path / 'l'}:v1"
    assert img.digest == written.manifest_digest
    assert img.platform == "linux/amd64"
    assert img.config["config"]["Entrypoint"] == ["/usr/sbin/sshd", "-D"]
    assert img.config["config"]["ExposedPorts"] == {"22/tcp": {}}
    assert [layer.digest for layer in img.layers] == written.layer_digests
    base, top = img.layers
    assert read_layer(base) == EXPECTED_BASE
    assert base.compression == ("none" if compression == "none" else compression)  # type: ignore[attr-defined]
    assert [(p, t) for p, t, _ in read_layer(top)] == [
        ("/usr/lib/.wh.liblzma.so.5", "file"),
        ("/etc/.wh.gone", "file"),
        ("/var/cache/.wh..wh..opq", "file"),
    ]
    members = {m.entry.path: m.entry for m in base.members()}
    assert members["/usr/lib/liblzma.so.5"].linkname == "liblzma.so.5.6.0"
    assert members["/usr/lib/liblzma-copy.so"].linkname == "/usr/lib/liblzma.so.5.6.0"
    assert members["/usr/lib/liblzma.so.5.6.0"].mode == 0o755


def test_manifest_without_media_type_is_read(tmp_path: Path) -> None:
    written = write_oci(tmp_path / "l", image(), tag="t", media_types="none")
    raw = json.loads(blob_file(tmp_path / "l", written.manifest_digest or "").read_bytes())
    assert "mediaType" not in raw
    [img] = open_images(f"oci:{tmp_path / 'l'}:t")
    assert read_layer(img.layers[0]) == EXPECTED_BASE


def test_multi_platform_fan_out(tmp_path: Path) -> None:
    layout = tmp_path / "l"
    index = write_oci_index(layout, [image("amd64"), image("arm64", "v8")], tag="multi", attestations=True)
    ref = f"oci:{layout}:multi"
    images = open_images(ref)
    assert [(i.ref, i.digest, i.platform) for i in images] == [
        (ref, index.images[0].manifest_digest, "linux/amd64"),
        (ref, index.images[1].manifest_digest, "linux/arm64/v8"),
    ]
    for img in images:
        assert read_layer(img.layers[0]) == EXPECTED_BASE
    [arm] = open_images(ref, platform="linux/arm64")
    assert arm.digest == index.images[1].manifest_digest
    assert arm.config["architecture"] == "arm64"
    with pytest.raises(
        SourceError, match=r"no image for platform linux/riscv64; available: linux/amd64, linux/arm64/v8"
    ):
        open_images(ref, platform="linux/riscv64")


def test_nested_index_and_docker_manifest_list(tmp_path: Path) -> None:
    layout = tmp_path / "l"
    write_oci_index(layout, [image("amd64"), image("arm64")], tag="n", depth=3, media_types="docker")
    assert [i.platform for i in open_images(f"oci:{layout}:n")] == ["linux/amd64", "linux/arm64"]


def test_too_deeply_nested_index(tmp_path: Path) -> None:
    write_oci_index(tmp_path / "l", [image()], tag="deep", depth=6)
    with pytest.raises(ManifestError, match="nested deeper"):
        open_images(f"oci:{tmp_path / 'l'}:deep")


def test_no_ref_opens_every_image(tmp_path: Path) -> None:
    layout = tmp_path / "l"
    one = write_oci(layout, image(), tag="one")
    untagged = write_oci(layout, image("arm64"), tag=None)
    multi = write_oci_index(layout, [image("amd64"), image("s390x")], tag="multi")
    assert multi.images[0].manifest_digest == one.manifest_digest
    images = open_images(f"oci:{layout}")
    assert [(i.ref, i.digest) for i in images] == [
        (f"oci:{layout}:one", one.manifest_digest),
        (f"oci:{layout}:{untagged.manifest_digest}", untagged.manifest_digest),
        (f"oci:{layout}:multi", one.manifest_digest),  # same content, listed under both tags
        (f"oci:{layout}:multi", multi.images[1].manifest_digest),
    ]
    # The labels can be pasted back as references.
    assert open_images(images[1].ref)[0].digest == untagged.manifest_digest
    assert [i.platform for i in open_images(f"oci:{layout}", platform="linux/s390x")] == ["linux/s390x"]


def test_select_by_digest(tmp_path: Path) -> None:
    layout = tmp_path / "l"
    multi = write_oci_index(layout, [image("amd64"), image("arm64")], tag="multi")
    assert len(open_images(f"oci:{layout}:{multi.digest}")) == 2
    platform_digest = multi.images[1].manifest_digest
    [arm] = open_images(f"oci:{layout}:{platform_digest}")
    assert (arm.digest, arm.platform) == (platform_digest, "linux/arm64")


def test_unknown_tag_lists_available(tmp_path: Path) -> None:
    write_oci(tmp_path / "l", image(), tag="a")
    write_oci(tmp_path / "l", image("arm64"), tag="b")
    with pytest.raises(SourceError, match="no image named 'c'; available: a, b"):
        open_images(f"oci:{tmp_path / 'l'}:c")


def test_missing_or_malformed_layouts(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        open_images(f"oci:{tmp_path / 'nope'}")
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(SourceError, match="not a directory"):
        open_images(f"oci:{tmp_path / 'file'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no oci-layout file"):
        open_images(f"oci:{tmp_path / 'empty'}")
    (tmp_path / "empty" / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    with pytest.raises(SourceError, match=r"no index\.json"):
        open_images(f"oci:{tmp_path / 'empty'}")
    (tmp_path / "empty" / "index.json").write_text("{not json")
    with pytest.raises(ManifestError, match=r"index\.json is not valid JSON"):
        open_images(f"oci:{tmp_path / 'empty'}")
    (tmp_path / "empty" / "index.json").write_text('{"schemaVersion": 2, "manifests": []}')
    with pytest.raises(SourceError, match="contains no images"):
        open_images(f"oci:{tmp_path / 'empty'}")


def test_missing_blobs(tmp_path: Path) -> None:
    written = write_oci(tmp_path / "l", image(), tag="t")
    ref = f"oci:{tmp_path / 'l'}:t"
    blob_file(tmp_path / "l", written.layer_digests[1]).unlink()
    [img] = open_images(ref)
    assert len(read_layer(img.layers[0])) == len(EXPECTED_BASE)
    with pytest.raises(BlobError, match="is missing from"):
        read_layer(img.layers[1])
    blob_file(tmp_path / "l", written.config_digest).unlink()
    with pytest.raises(BlobError, match="is missing from"):
        _ = open_images(ref)[0].config
    blob_file(tmp_path / "l", written.manifest_digest or "").unlink()
    with pytest.raises(BlobError, match="is missing from"):
        open_images(ref)


def test_untrusted_digest_never_becomes_a_path(tmp_path: Path) -> None:
    layout = tmp_path / "l"
    written = write_oci(layout, image(), tag="t", compression="none")
    secret = tmp_path / "secret"
    secret.write_bytes(b"do not read")
    manifest = json.loads(blob_file(layout, written.manifest_digest or "").read_bytes())
    manifest["layers"][0]["digest"] = "sha256:../../../secret"
    data = json.dumps(manifest).encode()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blob_file(layout, digest).write_bytes(data)
    index = {"schemaVersion": 2, "manifests": [{"digest": digest, "size": len(data)}]}
    (layout / "index.json").write_text(json.dumps(index))
    [img] = open_images(f"oci:{layout}")
    with pytest.raises(BlobError, match="refusing blob digest"):
        read_layer(img.layers[0])


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_altered_layer_blob_is_a_digest_mismatch(tmp_path: Path, compression: str) -> None:
    written = write_oci(tmp_path / "l", image(), tag="t", compression=compression)  # type: ignore[arg-type]
    tamper(blob_file(tmp_path / "l", written.layer_digests[0]))
    [img] = open_images(f"oci:{tmp_path / 'l'}:t")
    with pytest.raises(DigestMismatch, match=written.layer_digests[0]):
        list(img.layers[0].members())
    with pytest.raises(DigestMismatch):
        read_layer(img.layers[0])


def test_altered_config_is_a_digest_mismatch(tmp_path: Path) -> None:
    written = write_oci(tmp_path / "l", image(), tag="t")
    path = blob_file(tmp_path / "l", written.config_digest)
    path.write_bytes(path.read_bytes().replace(b"amd64", b"arm64"))
    [img] = open_images(f"oci:{tmp_path / 'l'}:t")
    assert img.platform is None  # the label comes from the config, which cannot be trusted
    with pytest.raises(DigestMismatch, match="image config"):
        _ = img.config


def test_truncated_gzip_layer_is_corrupt(tmp_path: Path) -> None:
    tar = BASE.tar_bytes()
    blob = gzip.compress(tar, mtime=0)[:-40]
    broken = Layer.raw_blob(blob, "sha256:" + hashlib.sha256(tar).hexdigest())
    write_oci(tmp_path / "l", ImageSpec([broken]), tag="t")
    [img] = open_images(f"oci:{tmp_path / 'l'}:t")
    with pytest.raises(CorruptLayer):
        list(img.layers[0].members())
    with pytest.raises(CorruptLayer):
        read_layer(img.layers[0])


def test_images_are_lazy_and_fail_alone(tmp_path: Path) -> None:
    layout = tmp_path / "l"
    good = write_oci(layout, image(), tag="good")
    bad = write_oci(layout, image("arm64"), tag="bad")
    blob_file(layout, bad.config_digest).unlink()
    images = open_images(f"oci:{layout}")
    assert all(isinstance(i, ManifestImage) for i in images)
    assert images[0].config["architecture"] == "amd64"
    assert images[0].digest == good.manifest_digest
    with pytest.raises(BlobError):
        _ = images[1].config


HOSTILE_MANIFESTS = [
    {"schemaVersion": 2, "config": {"digest": 5}, "layers": []},
    {"schemaVersion": 2, "config": {"digest": "sha256:zz"}, "layers": []},
    {"schemaVersion": 2, "config": "x", "layers": "y"},
    {"schemaVersion": 2, "config": {}, "layers": [1]},
    {"schemaVersion": 2, "config": {}, "layers": [{"digest": "md5:abc", "size": "big"}]},
    {"schemaVersion": 2, "manifests": [5]},
    {"schemaVersion": 2, "manifests": [{"digest": None}]},
    {"schemaVersion": 2, "manifests": [{"digest": "sha256:" + "0" * 64, "platform": "linux"}]},
    [1, 2, 3],
    "just a string",
]


@pytest.mark.parametrize("doc", HOSTILE_MANIFESTS)
def test_hostile_manifests_give_scan_errors_only(tmp_path: Path, doc: object) -> None:
    """Whatever a manifest contains, callers see a ``LayerhoundError``, never a crash."""
    layout = tmp_path / "l"
    write_oci(layout, image(), tag="ok")
    data = json.dumps(doc).encode()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blob_file(layout, digest).write_bytes(data)
    index = json.loads((layout / "index.json").read_text())
    annotations = {"org.opencontainers.image.ref.name": "bad"}
    index["manifests"] = [{"digest": digest, "size": len(data), "annotations": annotations}]
    (layout / "index.json").write_text(json.dumps(index))
    with pytest.raises(LayerhoundError):
        for img in open_images(f"oci:{layout}:bad"):
            _ = img.config
            for layer in img.layers:
                read_layer(layer)


@pytest.mark.parametrize("manifests", ["missing", None, {}, "text"])
def test_index_with_index_media_type_but_no_manifest_list_is_a_manifest_error(
    tmp_path: Path, manifests: object
) -> None:
    """A declared index media type must come with a list of manifests, not a traceback."""
    layout = tmp_path / "layout"
    layout.mkdir()
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    index: dict[str, object] = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json"}
    if manifests != "missing":
        index["manifests"] = manifests
    (layout / "index.json").write_text(json.dumps(index))
    with pytest.raises(ManifestError, match="without a list of manifests"):
        open_images(f"oci:{layout}")
