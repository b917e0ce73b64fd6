"""Reference parsing: skopeo syntax, colons in paths, Docker Hub normalisation."""

from __future__ import annotations

from pathlib import Path

import pytest

from layerhound.errors import ReferenceError_
from layerhound.sources.refs import normalize_name_tag, parse_reference, split_path


@pytest.mark.parametrize(
    ("text", "transport", "path", "ref"),
    [
        ("oci:/srv/layout", "oci", "/srv/layout", None),
        ("oci:/srv/layout:v1", "oci", "/srv/layout", "v1"),
        ("oci:relative/dir:1.0", "oci", "relative/dir", "1.0"),
        ("oci:/l:sha256:" + "a" * 64, "oci", "/l", "sha256:" + "a" * 64),
        ("oci-archive:/tmp/img.tar", "oci-archive", "/tmp/img.tar", None),
        ("oci-archive:/tmp/img.tar:latest", "oci-archive", "/tmp/img.tar", "latest"),
        ("docker-archive:/tmp/s.tar", "docker-archive", "/tmp/s.tar", None),
        ("docker-archive:/tmp/s.tar:busybox:1.36", "docker-archive", "/tmp/s.tar", "busybox:1.36"),
        (
            "docker-archive:/tmp/s.tar:docker.io/library/busybox:1",
            "docker-archive",
            "/tmp/s.tar",
            "docker.io/library/busybox:1",
        ),
        ("docker-archive:/tmp/s.tar:@0", "docker-archive", "/tmp/s.tar", "@0"),
        ("docker-archive:/tmp/s.tar:@12", "docker-archive", "/tmp/s.tar", "@12"),
        ("rootfs:/srv/root:with:colons", "rootfs", "/srv/root:with:colons", None),
        ("file:/usr/lib/liblzma.so.5", "file", "/usr/lib/liblzma.so.5", None),
    ],
)
def test_local_transports(text: str, transport: str, path: str, ref: str | None) -> None:
    parsed = parse_reference(text)
    assert (parsed.transport, parsed.path, parsed.ref, parsed.original) == (transport, path, ref, text)


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("alpine", "docker.io", "library/alpine", "latest", None),
        ("alpine:3.19", "docker.io", "library/alpine", "3.19", None),
        ("foo:bar", "docker.io", "library/foo", "bar", None),
        ("bitnami/redis:7", "docker.io", "bitnami/redis", "7", None),
        ("ghcr.io/org/app:v1", "ghcr.io", "org/app", "v1", None),
        ("localhost:5000/app", "localhost:5000", "app", "latest", None),
        ("docker://alpine", "docker.io", "library/alpine", "latest", None),
        ("docker://quay.io/a/b:1", "quay.io", "a/b", "1", None),
        ("docker://index.docker.io/library/debian:12", "docker.io", "library/debian", "12", None),
        ("docker://r.example.com:443/x/y@sha256:" + "b" * 64, "r.example.com:443", "x/y", None, "sha256:" + "b" * 64),
        ("docker://debian:12@sha256:" + "c" * 64, "docker.io", "library/debian", "12", "sha256:" + "c" * 64),
    ],
)
def test_registry_references(
    text: str, registry: str, repository: str, tag: str | None, digest: str | None
) -> None:
    parsed = parse_reference(text)
    assert parsed.transport == "docker"
    assert (parsed.registry, parsed.repository, parsed.tag, parsed.digest) == (registry, repository, tag, digest)
    assert parsed.name == f"{registry}/{repository}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("ftp://host/x", "unknown transport 'ftp'"),
        ("containers-storage:alpine", "not supported"),
        ("docker-daemon:", "needs an image name"),
        ("podman:Not_A_Name", "invalid image name"),
        ("oci-archve:img.tar", "did you mean 'oci-archive'"),
        ("Foo:bar", "unknown transport"),
        ("docker:alpine", "docker://"),
        ("oci:", "needs a path"),
        ("oci:/l:sha256:abc", "malformed digest"),
        ("docker-archive:/tmp/x.tar:@one", "@N"),
        ("docker-archive:/tmp/x.tar:Bad:Tag:x", "not a name:tag"),
        ("docker://alpine:bad/tag", "invalid"),
        ("library/UPPER", "invalid image name"),
    ],
)
def test_bad_references(text: str, message: str) -> None:
    with pytest.raises(ReferenceError_, match=message) as caught:
        parse_reference(text)
    if "transport" in message:
        assert "oci-archive:" in str(caught.value) and "docker-archive:" in str(caught.value)


def test_path_with_colons_prefers_existing_path(tmp_path: Path) -> None:
    archive = tmp_path / "a:b.tar"
    archive.write_bytes(b"")
    parsed = parse_reference(f"docker-archive:{archive}:name:tag")
    assert (parsed.path, parsed.ref) == (str(archive), "name:tag")
    whole = parse_reference(f"oci-archive:{archive}")
    assert (whole.path, whole.ref) == (str(archive), None)


def test_split_falls_back_to_first_colon() -> None:
    assert split_path("/nonexistent/x:y:z") == ("/nonexistent/x", "y:z")
    assert split_path("/nonexistent/x") == ("/nonexistent/x", None)


def test_existing_file_after_unknown_prefix_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("image.tar").write_bytes(b"")
    with pytest.raises(ReferenceError_, match="unknown transport 'archive'"):
        parse_reference("archive:image.tar")
    Path("12").mkdir()
    assert parse_reference("debian:12").tag == "12"


def test_labels_round_trip() -> None:
    parsed = parse_reference("docker-archive:/tmp/s.tar")
    assert parsed.with_ref("busybox:1") == "docker-archive:/tmp/s.tar:busybox:1"
    assert parsed.source_index is None
    assert parse_reference("docker-archive:/tmp/s.tar:@3").source_index == 3
    assert str(parse_reference("alpine")) == "docker://docker.io/library/alpine:latest"
    assert str(parse_reference("oci:/l:v1")) == "oci:/l:v1"


def test_normalize_name_tag() -> None:
    assert normalize_name_tag("busybox:1") == "docker.io/library/busybox:1"
    assert normalize_name_tag("docker.io/library/busybox:1") == "docker.io/library/busybox:1"
    assert normalize_name_tag("busybox") == "docker.io/library/busybox:latest"
    assert normalize_name_tag("Not Valid") is None


def test_engine_references_keep_the_name_for_the_engine() -> None:
    from layerhound.sources.refs import DOCKER_DAEMON, PODMAN

    ref = parse_reference("docker-daemon:myapp:1.4")
    assert (ref.transport, ref.ref, ref.repository, ref.tag, str(ref)) == (
        DOCKER_DAEMON, "myapp:1.4", "library/myapp", "1.4", "docker-daemon:myapp:1.4")
    by_id = parse_reference("podman:sha256:" + "ab" * 32)
    assert (by_id.transport, by_id.ref, by_id.repository) == (PODMAN, "sha256:" + "ab" * 32, None)
    assert parse_reference("podman:4f1c0a2b3c4d").ref == "4f1c0a2b3c4d"
    assert parse_reference("myapp:1").bare and not parse_reference("docker://myapp:1").bare


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "comma-separated list"), ("docker,cloud", "comma-separated list"), ("remote,remote", "twice")],
)
def test_image_src_is_checked(text: str, message: str) -> None:
    from layerhound.errors import UsageError
    from layerhound.sources.options import parse_image_src

    with pytest.raises(UsageError, match=message):
        parse_image_src(text)
    assert parse_image_src(" podman , remote ") == ("podman", "remote")
