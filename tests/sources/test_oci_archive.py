"""``oci-archive:FILE[:REF]``: the layout read in place from a tar file."""

from __future__ import annotations

import gzip
import shutil
import tarfile
from pathlib import Path

import pytest

from layerhound.errors import BlobError, DigestMismatch, SourceError
from layerhound.sources import open_images
from layerhound.sources.oci_layout import TarArchive
from tests.support.imagewriter import (
    ImageSpec,
    Layer,
    file,
    pack_directory,
    read_layer,
    symlink,
    tamper_member,
    write_oci,
    write_oci_archive,
    write_oci_index,
)

LAYER = Layer.files({"/usr/lib/liblzma.so.5": file(b"\x7fELF lzma", 0o755), "/lib": symlink("usr/lib")})
EXPECTED = [("/usr/lib/liblzma.so.5", "file", b"\x7fELF lzma"), ("/lib", "symlink", b"")]


def test_round_trip(tmp_path: Path) -> None:
    archive = tmp_path / "img.tar"
    written = write_oci_archive(archive, ImageSpec([LAYER], cmd=["bash"]), tag="1.0")
    [img] = open_images(f"oci-archive:{archive}:1.0")
    assert (img.ref, img.digest, img.platform) == (f"oci-archive:{archive}:1.0", written.manifest_digest, "linux/amd64")  # type: ignore[union-attr]
    assert img.config["config"]["Cmd"] == ["bash"]
    assert read_layer(img.layers[0]) == EXPECTED
    [same] = open_images(f"oci-archive:{archive}")
    assert same.ref == f"oci-archive:{archive}:1.0"
    assert not (tmp_path / "blobs").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["img.tar"]


def test_multi_platform_index(tmp_path: Path) -> None:
    archive = tmp_path / "multi.tar"
    write_oci_archive(archive, [ImageSpec([LAYER]), ImageSpec([LAYER], architecture="arm64")], tag="m")
    images = open_images(f"oci-archive:{archive}:m")
    assert [i.platform for i in images] == ["linux/amd64", "linux/arm64"]
    assert [read_layer(i.layers[0]) for i in images] == [EXPECTED, EXPECTED]
    assert [i.platform for i in open_images(f"oci-archive:{archive}:m", "linux/arm64")] == ["linux/arm64"]


def test_path_with_colon(tmp_path: Path) -> None:
    archive = tmp_path / "a:b.tar"
    write_oci_archive(archive, ImageSpec([LAYER]), tag="x:y")
    [img] = open_images(f"oci-archive:{archive}:x:y")
    assert read_layer(img.layers[0]) == EXPECTED


def test_gzip_compressed_archive(tmp_path: Path) -> None:
    plain = tmp_path / "img.tar"
    write_oci_archive(plain, ImageSpec([LAYER]), tag="t")
    packed = tmp_path / "img.tar.gz"
    with open(plain, "rb") as src, gzip.open(packed, "wb") as dst:
        shutil.copyfileobj(src, dst)
    [img] = open_images(f"oci-archive:{packed}:t")
    assert read_layer(img.layers[0]) == EXPECTED


def test_members_with_dot_slash_and_links(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    written = write_oci(layout, ImageSpec([LAYER]), tag="t")
    archive = tmp_path / "odd.tar"
    layer_hex = written.layer_digests[0].partition(":")[2]
    with tarfile.open(archive, "w") as tar:
        for path in sorted(layout.rglob("*")):
            name = "./" + path.relative_to(layout).as_posix()
            if path.name == layer_hex:
                tar.add(path, arcname="./elsewhere/layer")
                link = tarfile.TarInfo(name)
                link.type, link.linkname = tarfile.SYMTYPE, "../../elsewhere/layer"
                tar.addfile(link)
            else:
                tar.add(path, arcname=name, recursive=False)
    [img] = open_images(f"oci-archive:{archive}:t")
    assert read_layer(img.layers[0]) == EXPECTED


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        open_images(f"oci-archive:{tmp_path / 'missing.tar'}")
    with pytest.raises(SourceError, match=r"is a directory.*use oci:"):
        open_images(f"oci-archive:{tmp_path}")
    (tmp_path / "junk.tar").write_bytes(b"this is not a tar file at all" * 40)
    with pytest.raises(SourceError, match="not a readable tar file"):
        open_images(f"oci-archive:{tmp_path / 'junk.tar'}")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "hello").write_text("hi")
    pack_directory(tmp_path / "empty", tmp_path / "plain.tar")
    with pytest.raises(SourceError, match="no oci-layout file"):
        open_images(f"oci-archive:{tmp_path / 'plain.tar'}")


def test_altered_blob_in_archive(tmp_path: Path) -> None:
    archive = tmp_path / "img.tar"
    written = write_oci_archive(archive, ImageSpec([LAYER]), tag="t", compression="none")
    digest = written.layer_digests[0]  # type: ignore[union-attr]
    tamper_member(archive, "blobs/sha256/" + digest.partition(":")[2])
    [img] = open_images(f"oci-archive:{archive}:t")
    with pytest.raises(DigestMismatch, match=digest):
        list(img.layers[0].members())


def test_missing_blob_in_archive(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    written = write_oci_index(layout, [ImageSpec([LAYER])], tag="t")
    (layout / "blobs/sha256" / written.images[0].layer_digests[0].partition(":")[2]).unlink()
    pack_directory(layout, tmp_path / "img.tar")
    [img] = open_images(f"oci-archive:{tmp_path / 'img.tar'}:t")
    with pytest.raises(BlobError, match="is missing from"):
        list(img.layers[0].members())


def test_archive_reads_are_independent(tmp_path: Path) -> None:
    archive = tmp_path / "img.tar"
    write_oci_archive(archive, ImageSpec([LAYER, LAYER]), tag="t")
    [img] = open_images(f"oci-archive:{archive}:t")
    first, second = (layer.members() for layer in img.layers)
    a, b = next(first), next(second)  # two blobs open at once, interleaved
    assert (a.read(), b.read()) == (EXPECTED[0][2], EXPECTED[0][2])
    assert len(list(first)) == len(list(second)) == 1


def test_tar_archive_link_loop(tmp_path: Path) -> None:
    archive = tmp_path / "loop.tar"
    with tarfile.open(archive, "w") as tar:
        for name, target in (("a", "b"), ("b", "a")):
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    with pytest.raises(BlobError, match="too many links"):
        TarArchive(archive, "oci-archive").find("a")
