"""Images written by real tools (umoci, skopeo) — and ours read by them.

umoci writes manifests without a top-level ``mediaType`` and layer tars
without the final padding; skopeo writes the docker-archive flavour with
``<diffid>.tar`` layers, ``<id>/layer.tar`` symlinks and long RepoTags. Both
tools are installed by the project's setup (``make system-deps``), so these
tests are never skipped.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from layerhound.sources import open_images
from layerhound.sources.docker_archive import DockerArchiveImage
from tests.support.cli import scan_json
from tests.support.imagewriter import (
    ImageSpec,
    Layer,
    blob_file,
    file,
    read_layer,
    symlink,
    write_docker_archive,
    write_oci,
    write_oci_index,
)

ROOTLESS = ["--rootless"] if os.geteuid() != 0 else []


def run(*command: str | Path) -> None:
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True)
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"


def skopeo_copy(*args: str | Path) -> None:
    run("skopeo", "--insecure-policy", "copy", "-q", *args)


@pytest.fixture
def umoci_layout(tmp_path: Path) -> Path:
    """A layout built by umoci: one inserted directory, then a whiteout layer."""
    src = tmp_path / "src"
    (src / "lib").mkdir(parents=True)
    (src / "lib" / "liblzma.so.5.6.1").write_bytes(b"\x7fELF from umoci")
    (src / "hello.txt").write_text("hello\n")
    layout = tmp_path / "umoci"
    run("umoci", "init", "--layout", layout)
    run("umoci", "new", "--image", f"{layout}:t")
    run("umoci", "insert", *ROOTLESS, "--image", f"{layout}:t", src, "/target")
    run("umoci", "insert", *ROOTLESS, "--image", f"{layout}:t", "--whiteout", "/target/hello.txt")
    return layout


def target_entries(layers: list) -> list[list[tuple[str, str, bytes]]]:  # type: ignore[type-arg]
    return [read_layer(layer) for layer in layers]


EXPECTED = [
    [
        ("/target", "dir", b""),
        ("/target/hello.txt", "file", b"hello\n"),
        ("/target/lib", "dir", b""),
        ("/target/lib/liblzma.so.5.6.1", "file", b"\x7fELF from umoci"),
    ],
    [("/target/.wh.hello.txt", "file", b"")],
]


def test_umoci_layout_without_media_type(umoci_layout: Path) -> None:
    index = json.loads((umoci_layout / "index.json").read_text())
    manifest_digest = index["manifests"][0]["digest"]
    assert "mediaType" not in json.loads(blob_file(umoci_layout, manifest_digest).read_text())
    [img] = open_images(f"oci:{umoci_layout}:t")
    assert (img.digest, img.platform) == (manifest_digest, f"linux/{img.config['architecture']}")
    assert target_entries(img.layers) == EXPECTED


def test_skopeo_docker_archive(umoci_layout: Path, tmp_path: Path) -> None:
    archive = tmp_path / "saved.tar"
    skopeo_copy(f"oci:{umoci_layout}:t", f"docker-archive:{archive}:name:tag")
    for ref in ("name:tag", "docker.io/library/name:tag", "@0"):
        [img] = open_images(f"docker-archive:{archive}:{ref}")
        assert isinstance(img, DockerArchiveImage)
        assert target_entries(img.layers) == EXPECTED
    [img] = open_images(f"docker-archive:{archive}")
    assert img.ref == f"docker-archive:{archive}:docker.io/library/name:tag"


def test_skopeo_oci_archive(umoci_layout: Path, tmp_path: Path) -> None:
    archive = tmp_path / "oci.tar"
    skopeo_copy(f"oci:{umoci_layout}:t", f"oci-archive:{archive}:copied")
    [img] = open_images(f"oci-archive:{archive}:copied")
    assert target_entries(img.layers) == EXPECTED


SPEC = ImageSpec(
    [
        Layer.files(
            {
                "/usr/lib/liblzma.so.5.6.0": file(b"\x7fELF ours", 0o755),
                "/usr/lib/liblzma.so.5": symlink("liblzma.so.5.6.0"),
            }
        )
    ],
    entrypoint=["/usr/sbin/sshd"],
)
OURS = [[("/usr/lib/liblzma.so.5.6.0", "file", b"\x7fELF ours"), ("/usr/lib/liblzma.so.5", "symlink", b"")]]


@pytest.mark.parametrize("layout", ["legacy", "oci"])
def test_skopeo_reads_our_docker_archives(tmp_path: Path, layout: str) -> None:
    archive = tmp_path / "ours.tar"
    write_docker_archive(archive, [(SPEC, ["ours:1"])], layout=layout)  # type: ignore[arg-type]
    skopeo_copy(f"docker-archive:{archive}:ours:1", f"oci:{tmp_path / 'copy'}:c")
    [img] = open_images(f"oci:{tmp_path / 'copy'}:c")
    assert img.config["config"]["Entrypoint"] == ["/usr/sbin/sshd"]
    assert target_entries(img.layers) == OURS


def test_skopeo_copies_our_multi_platform_index(tmp_path: Path) -> None:
    write_oci_index(tmp_path / "ours", [SPEC, ImageSpec(SPEC.layers, architecture="arm64", variant="v8")], tag="m")
    skopeo_copy("--all", f"oci:{tmp_path / 'ours'}:m", f"oci-archive:{tmp_path / 'copy.tar'}:m")
    images = open_images(f"oci-archive:{tmp_path / 'copy.tar'}:m")
    assert [i.platform for i in images] == ["linux/amd64", "linux/arm64/v8"]
    assert [target_entries(i.layers) for i in images] == [OURS, OURS]


def test_umoci_reads_our_layout(tmp_path: Path) -> None:
    write_oci(tmp_path / "ours", SPEC, tag="v1", compression="gzip")
    bundle = tmp_path / "bundle"
    run("umoci", "unpack", *ROOTLESS, "--image", f"{tmp_path / 'ours'}:v1", bundle)
    assert (bundle / "rootfs/usr/lib/liblzma.so.5.6.0").read_bytes() == b"\x7fELF ours"
    assert os.readlink(bundle / "rootfs/usr/lib/liblzma.so.5") == "liblzma.so.5.6.0"


def test_host_directory_layer(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/xz").write_bytes(b"\x7fELF xz")
    os.link(root / "usr/bin/xz", root / "usr/bin/unxz")
    os.symlink("/etc/passwd", root / "usr/bin/escape")
    os.chmod(root / "usr/bin/xz", 0o4755)
    written = write_oci(tmp_path / "layout", ImageSpec([Layer.from_dir(root)]), tag="r")
    [img] = open_images(f"oci:{tmp_path / 'layout'}:r")
    assert [(m.entry.path, m.entry.type.value, m.entry.mode, m.entry.linkname) for m in img.layers[0].members()] == [
        ("/usr", "dir", 0o755, ""),
        ("/usr/bin", "dir", 0o755, ""),
        ("/usr/bin/escape", "symlink", 0o777, "/etc/passwd"),  # stored, not followed
        ("/usr/bin/unxz", "file", 0o4755, ""),
        ("/usr/bin/xz", "hardlink", 0o4755, "/usr/bin/unxz"),
    ]
    again = write_oci(tmp_path / "again", ImageSpec([Layer.from_dir(root)]), tag="r")
    assert again.layer_digests == written.layer_digests  # deterministic
    run("umoci", "unpack", *ROOTLESS, "--image", f"{tmp_path / 'layout'}:r", tmp_path / "bundle")
    assert (tmp_path / "bundle/rootfs/usr/bin/unxz").read_bytes() == b"\x7fELF xz"


def test_host_directory_keeps_numeric_owners(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    root.mkdir()
    (root / "owned").write_bytes(b"x")
    owner = (4321, 8765) if os.geteuid() == 0 else (os.getuid(), os.getgid())
    if os.geteuid() == 0:
        os.chown(root / "owned", *owner)
    with tarfile.open(fileobj=io.BytesIO(Layer.from_dir(root).tar_bytes())) as tar:
        [info] = tar.getmembers()
    assert (info.uid, info.gid, info.uname, info.gname) == (*owner, "", "")


@pytest.fixture
def implant_layout(tmp_path: Path, implant_so: bytes) -> Path:
    """The project's test implant as liblzma in a one-layer OCI layout (gzip), tagged ``i``."""
    layout = tmp_path / "implant-layout"
    lib = "/usr/lib/x86_64-linux-gnu"
    spec = ImageSpec([Layer.files({f"{lib}/liblzma.so.5.6.1": file(implant_so, 0o755),
                                   f"{lib}/liblzma.so.5": symlink("liblzma.so.5.6.1")})], cmd=["/bin/sh"])
    write_oci(layout, spec, tag="i")
    return layout


def _verdict(reference: str) -> str:
    done = scan_json("--no-cache", reference, timeout=120)
    assert done.status in (0, 1), done.stderr
    [image] = done.images
    return str(image["verdict"])


@pytest.mark.parametrize("destination", ["docker-archive", "oci-archive", "dir", "oci"])
def test_every_skopeo_destination_scans_with_the_implant_found(
    implant_layout: Path, tmp_path: Path, destination: str
) -> None:
    target = tmp_path / f"copy-{destination}"
    suffix = {"docker-archive": ":copied:1", "oci-archive": ":copied", "dir": "", "oci": ":copied"}[destination]
    skopeo_copy(f"oci:{implant_layout}:i", f"{destination}:{target}{suffix}")
    assert _verdict(f"{destination}:{target}") == "backdoored-dormant"


def test_an_image_umoci_built_scans_with_the_implant_found(tmp_path: Path, implant_so: bytes) -> None:
    src = tmp_path / "src"
    (src / "lib").mkdir(parents=True)
    (src / "lib" / "liblzma.so.5.6.1").write_bytes(implant_so)
    layout = tmp_path / "umoci-implant"
    run("umoci", "init", "--layout", layout)
    run("umoci", "new", "--image", f"{layout}:t")
    run("umoci", "insert", *ROOTLESS, "--image", f"{layout}:t", src / "lib", "/usr/lib")
    assert _verdict(f"oci:{layout}:t") == "backdoored-dormant"


@pytest.mark.parametrize("config_name", [None, "renamed.json"])
def test_crane_tarballs_scan_with_the_implant_found(tmp_path: Path, implant_so: bytes, config_name: str | None) -> None:
    archive = tmp_path / "crane.tar"
    spec = ImageSpec([Layer.files({"/usr/lib/liblzma.so.5.6.1": file(implant_so, 0o755)})])
    write_docker_archive(archive, [(spec, ["example.test/crane:1"])], layout="crane", config_name=config_name)
    assert _verdict(f"docker-archive:{archive}") == "backdoored-dormant"


@pytest.mark.parametrize("destination", ["oci", "oci-archive", "docker-archive"])
def test_an_image_buildah_committed_scans_with_the_implant_found(
    tmp_path: Path, implant_so: bytes, destination: str
) -> None:
    """``buildah from scratch`` + ``copy`` + ``commit`` (vfs storage in the test's own directory)."""
    buildah = ["buildah", "--root", str(tmp_path / "storage"), "--runroot", str(tmp_path / "run"),
               "--storage-driver", "vfs"]
    implant = tmp_path / "liblzma.so.5.6.1"
    implant.write_bytes(implant_so)
    done = subprocess.run([*buildah, "from", "scratch"], capture_output=True, text=True, check=True)
    container = done.stdout.strip()
    run(*buildah, "copy", container, implant, "/usr/lib/x86_64-linux-gnu/liblzma.so.5.6.1")
    run(*buildah, "config", "--cmd", "/bin/sh", container)
    target = tmp_path / "committed"
    run(*buildah, "commit", "-q", container, f"{destination}:{target}:built")
    assert _verdict(f"{destination}:{target}") == "backdoored-dormant"
