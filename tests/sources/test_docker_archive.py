"""``docker-archive:FILE[:REF]``: both ``docker save`` layouts, read in place."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pytest

from layerhound.errors import DigestMismatch, ManifestError, SourceError
from layerhound.sources import open_images
from layerhound.sources.base import ManifestImage
from layerhound.sources.docker_archive import DockerArchiveImage
from tests.support.imagewriter import (
    ImageSpec,
    Layer,
    directory,
    file,
    pack_directory,
    read_layer,
    tamper_member,
    write_docker_archive,
    write_oci,
)

BASE = Layer.files({"/usr": directory(), "/usr/sbin/sshd": file(b"\x7fELF sshd", 0o755)})
TOP = Layer.files({"/usr/lib/liblzma.so.5": file(b"\x7fELF lzma", 0o644)})
SSHD = ImageSpec([BASE, TOP], entrypoint=["/usr/sbin/sshd"], exposed_ports=["22/tcp"])
ARM = ImageSpec([BASE], architecture="arm64", variant="v8")

LAYOUTS = ["legacy", "oci"]


def archive(tmp_path: Path, layout: str) -> tuple[Path, list]:
    path = tmp_path / f"save-{layout}.tar"
    written = write_docker_archive(path, [(SSHD, ["sshd:1", "sshd:latest"]), (ARM, [])], layout=layout)  # type: ignore[arg-type]
    return path, written


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_image_without_ref(tmp_path: Path, layout: str) -> None:
    path, written = archive(tmp_path, layout)
    images = open_images(f"docker-archive:{path}")
    assert [i.ref for i in images] == [f"docker-archive:{path}:sshd:1", f"docker-archive:{path}:@1"]
    assert [i.platform for i in images] == ["linux/amd64", "linux/arm64/v8"]
    sshd = images[0]
    assert sshd.config["config"]["Entrypoint"] == ["/usr/sbin/sshd"]
    assert [read_layer(layer) for layer in sshd.layers] == [
        [("/usr", "dir", b""), ("/usr/sbin/sshd", "file", b"\x7fELF sshd")],
        [("/usr/lib/liblzma.so.5", "file", b"\x7fELF lzma")],
    ]
    assert [layer.digest for layer in sshd.layers] == written[0].layer_digests
    if layout == "legacy":
        assert isinstance(sshd, DockerArchiveImage)
        assert sshd.digest == written[0].config_digest  # the image ID
        assert [layer.digest for layer in sshd.layers] == written[0].diff_ids
    else:
        assert isinstance(sshd, ManifestImage)
        assert sshd.digest == written[0].manifest_digest


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("tag", ["sshd:1", "sshd:latest", "docker.io/library/sshd:1", "sshd"])
def test_select_by_repo_tag(tmp_path: Path, layout: str, tag: str) -> None:
    path, written = archive(tmp_path, layout)
    [img] = open_images(f"docker-archive:{path}:{tag}")
    assert img.ref == f"docker-archive:{path}:{tag}"
    assert img.config["rootfs"]["diff_ids"] == written[0].diff_ids


@pytest.mark.parametrize("layout", LAYOUTS)
def test_select_by_index(tmp_path: Path, layout: str) -> None:
    path, _ = archive(tmp_path, layout)
    [img] = open_images(f"docker-archive:{path}:@1")
    assert img.platform == "linux/arm64/v8"
    with pytest.raises(SourceError, match="has 2 image"):
        open_images(f"docker-archive:{path}:@2")
    with pytest.raises(SourceError, match="no image tagged 'nope:1'; available: sshd:1, sshd:latest"):
        open_images(f"docker-archive:{path}:nope:1")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_platform_filter(tmp_path: Path, layout: str) -> None:
    path, _ = archive(tmp_path, layout)
    assert [i.platform for i in open_images(f"docker-archive:{path}", "linux/arm64")] == ["linux/arm64/v8"]
    with pytest.raises(SourceError, match="available: linux/amd64, linux/arm64/v8"):
        open_images(f"docker-archive:{path}", "windows/amd64")


def legacy_layer_member(path: Path, index: int) -> str:
    with tarfile.open(path) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    return manifest[0]["Layers"][index]


def test_legacy_layer_tar_tampered(tmp_path: Path) -> None:
    path, written = archive(tmp_path, "legacy")
    member = legacy_layer_member(path, 1)
    assert member.endswith("/layer.tar")
    tamper_member(path, member)
    [img] = open_images(f"docker-archive:{path}:sshd:1")
    assert len(read_layer(img.layers[0])) == 2
    with pytest.raises(DigestMismatch, match=written[0].diff_ids[1]):
        list(img.layers[1].members())


def test_oci_style_layer_tampered(tmp_path: Path) -> None:
    path, written = archive(tmp_path, "oci")
    digest = written[0].layer_digests[1]
    tamper_member(path, "blobs/sha256/" + digest.partition(":")[2])
    [img] = open_images(f"docker-archive:{path}:sshd:1")
    with pytest.raises(DigestMismatch, match=digest):
        list(img.layers[1].members())


def test_config_tampered_in_the_oci_layout_is_refused(tmp_path: Path) -> None:
    """The OCI layout inside promises its blob names: a config that is not what its name says is refused."""
    path, written = archive(tmp_path, "oci")
    hexpart = written[0].config_digest.partition(":")[2]
    tamper_member(path, f"blobs/sha256/{hexpart}")
    [img] = open_images(f"docker-archive:{path}:sshd:1")
    with pytest.raises(DigestMismatch, match="image config"):
        _ = img.config


def test_a_legacy_config_whose_name_disagrees_is_a_note(tmp_path: Path) -> None:
    """docker load takes any config name; the image ID is the content's hash, the mismatch a note."""
    def edit(tree: Path) -> None:
        first = json.loads((tree / "manifest.json").read_text())[0]["Config"]  # the sshd image's config
        config = tree / first
        document = json.loads(config.read_text())
        document["config"]["Labels"] = {"edited": "yes"}
        config.write_text(json.dumps(document))

    out = rebuild(tmp_path, "legacy", edit)
    [img] = open_images(f"docker-archive:{out}:sshd:1")
    assert img.config["config"]["Labels"] == {"edited": "yes"}
    assert img.digest is not None and img.digest.startswith("sha256:")
    [note] = img.notes
    assert "is named for sha256:" in note and f"hashes to {img.digest}" in note


def test_crane_tarballs(tmp_path: Path, implant_so: bytes) -> None:
    """crane/ko/go-containerregistry: config named sha256:<hex>, gzip layers named <hex>.tar.gz."""
    from layerhound.detectors.registry import ALL_DETECTORS
    from layerhound.scan import scan_references

    implant = Layer.files({"/usr/lib/x86_64-linux-gnu/liblzma.so.5.6.1": file(implant_so)})
    spec = ImageSpec([Layer.files({"/etc/os-release": "ID=t\n"}), implant])
    out = tmp_path / "crane.tar"
    [written] = write_docker_archive(out, [(spec, ["crane/app:1"])], layout="crane")
    [img] = open_images(f"docker-archive:{out}:crane/app:1")
    assert img.digest == written.config_digest and not img.notes
    assert [layer.digest for layer in img.layers] == written.layer_digests  # the compressed digests
    [result] = scan_references([f"docker-archive:{out}"], ALL_DETECTORS)
    assert result.verdict.value == "backdoored-dormant"
    # A config member named otherwise still loads (as docker load does), with a note when it claims a digest.
    odd = tmp_path / "odd.tar"
    write_docker_archive(odd, [(spec, ["crane/app:1"])], layout="crane", config_name="config.json")
    [plain] = open_images(f"docker-archive:{odd}")
    assert plain.digest == written.config_digest and not plain.notes
    wrong = tmp_path / "wrong.tar"
    write_docker_archive(wrong, [(spec, ["crane/app:1"])], layout="crane", config_name="sha256:" + "0" * 64)
    [claimed] = scan_references([f"docker-archive:{wrong}"], ALL_DETECTORS)
    assert claimed.verdict.value == "backdoored-dormant"
    assert any(r.startswith("note: the config member") for r in claimed.reasons)


def rebuild(tmp_path: Path, layout: str, edit) -> Path:  # type: ignore[no-untyped-def]
    """Unpack a written archive, let ``edit`` change the tree, pack it again."""
    path, _ = archive(tmp_path, layout)
    tree = tmp_path / "tree"
    with tarfile.open(path) as tar:
        tar.extractall(tree, filter="data")
    edit(tree)
    out = tmp_path / "edited.tar"
    pack_directory(tree, out)
    return out


def test_no_manifest_json(tmp_path: Path) -> None:
    out = rebuild(tmp_path, "legacy", lambda tree: (tree / "manifest.json").unlink())
    with pytest.raises(SourceError, match=r"no manifest\.json: not a docker save archive"):
        open_images(f"docker-archive:{out}")


def test_oci_layout_without_manifest_json_is_read_as_layout(tmp_path: Path) -> None:
    out = rebuild(tmp_path, "oci", lambda tree: (tree / "manifest.json").unlink())
    images = open_images(f"docker-archive:{out}:1")  # the ref.name annotation
    assert [i.platform for i in images] == ["linux/amd64"]


def test_layer_count_mismatch(tmp_path: Path) -> None:
    def drop_layer(tree: Path) -> None:
        manifest = json.loads((tree / "manifest.json").read_text())
        manifest[0]["Layers"].pop()
        (tree / "manifest.json").write_text(json.dumps(manifest))

    out = rebuild(tmp_path, "legacy", drop_layer)
    [img] = open_images(f"docker-archive:{out}:sshd:1")
    with pytest.raises(ManifestError, match="lists 1 layers but the config has 2 diff_ids"):
        _ = img.layers


def test_missing_layer_member(tmp_path: Path) -> None:
    def remove(tree: Path) -> None:
        manifest = json.loads((tree / "manifest.json").read_text())
        (tree / manifest[0]["Layers"][0]).unlink()

    out = rebuild(tmp_path, "legacy", remove)
    [img] = open_images(f"docker-archive:{out}:sshd:1")
    with pytest.raises(SourceError, match="is missing from"):
        _ = img.layers


def test_config_not_named_by_digest_is_read_by_its_content(tmp_path: Path) -> None:
    """A name that claims no digest: the content's hash is the image ID (as docker load does), no note."""
    def rename(tree: Path) -> None:
        manifest = json.loads((tree / "manifest.json").read_text())
        (tree / manifest[0]["Config"]).rename(tree / "config.json")
        manifest[0]["Config"] = "config.json"
        (tree / "manifest.json").write_text(json.dumps(manifest))

    out = rebuild(tmp_path, "legacy", rename)
    [img, _] = open_images(f"docker-archive:{out}")
    data = (tmp_path / "tree" / "config.json").read_bytes()
    assert img.digest == "sha256:" + hashlib.sha256(data).hexdigest() and not img.notes
    assert img.config["config"]["Entrypoint"] == ["/usr/sbin/sshd"]


@pytest.mark.parametrize("content", [b"{", b'{"not": "a list"}', b"[]"])
def test_bad_manifest_json(tmp_path: Path, content: bytes) -> None:
    out = rebuild(tmp_path, "legacy", lambda tree: (tree / "manifest.json").write_bytes(content))
    with pytest.raises(SourceError, match=r"manifest\.json"):
        open_images(f"docker-archive:{out}")


def test_missing_archive(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        open_images(f"docker-archive:{tmp_path / 'nope.tar'}:a:b")
    write_oci(tmp_path / "layout", SSHD)
    with pytest.raises(SourceError, match="is a directory"):
        open_images(f"docker-archive:{tmp_path / 'layout'}")


def test_writer_is_deterministic(tmp_path: Path) -> None:
    digests = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for layout in LAYOUTS:
            path, _ = archive(tmp_path / name, layout)
            digests.append(hashlib.sha256(path.read_bytes()).hexdigest())
    assert digests[:2] == digests[2:]
