"""The registry client against a real, anonymous, plain-HTTP ``docker-registry``.

Images are pushed with skopeo in every format a registry serves: OCI gzip and
zstd, Docker v2 schema 2 (``--format v2s2``), an OCI manifest without a
top-level ``mediaType`` (the Content-Type must stand in), and a two-platform
index / manifest list (``--all``). Scans go through ``layerhound scan``; a
counting proxy in front of the registry shows which requests were made.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from layerhound.detectors.registry import ALL_DETECTORS
from layerhound.errors import RegistryError, SourceError
from layerhound.registry import client as registry_client
from layerhound.registry.client import RegistryClient
from layerhound.scan import scan_image
from layerhound.sources import manifest, open_images
from layerhound.sources.registry import RegistryBlobStore
from tests.registry.conftest import ImageSet, fast_options, scan_cli, verdicts
from tests.support.registry import Fault, FaultProxy, RegistryServer

DORMANT = "backdoored-dormant"


@pytest.mark.parametrize(
    ("tag", "expected"),
    [("gzip", DORMANT), ("zstd", DORMANT), ("v2s2", DORMANT), ("nomt", DORMANT)],
)
def test_each_format_gives_the_right_verdict(
    capsys: pytest.CaptureFixture[str], anonymous_registry: RegistryServer, no_docker_config: Path,
    tag: str, expected: str,
) -> None:
    ref = f"docker://{anonymous_registry.host}/test/app:{tag}"
    status, report, _ = scan_cli(capsys, "--insecure-registry", anonymous_registry.host, ref)
    assert verdicts(report) == [(ref, "linux/amd64", expected)]
    assert status == 1
    [image] = report["images"]
    assert image["digest"].startswith("sha256:")
    assert len(image["layers"]) == 2
    assert any(f["path"] == "/usr/lib/x86_64-linux-gnu/liblzma.so.5.6.1" for f in image["findings"])


def test_clean_image_and_digests(
    capsys: pytest.CaptureFixture[str], anonymous_registry: RegistryServer, test_images: ImageSet,
    no_docker_config: Path,
) -> None:
    host = anonymous_registry.host
    clean = f"docker://{host}/test/clean:latest"
    by_digest = f"docker://{host}/test/app@{test_images.bad.manifest_digest}"
    tag_and_digest = f"docker://{host}/test/app:gzip@{test_images.bad.manifest_digest}"
    status, report, _ = scan_cli(capsys, "--insecure-registry", host, clean, by_digest, tag_and_digest)
    assert verdicts(report) == [
        (clean, "linux/amd64", "clean"),
        (by_digest, "linux/amd64", DORMANT),
        (tag_and_digest, "linux/amd64", DORMANT),
    ]
    # skopeo pushes the layout's manifests byte for byte: same digests as written.
    assert [i["digest"] for i in report["images"]] == [
        test_images.clean.manifest_digest, test_images.bad.manifest_digest, test_images.bad.manifest_digest,
    ]
    assert status == 1


@pytest.mark.parametrize("tag", ["latest", "v2s2"])
def test_index_fans_out_to_every_platform(
    capsys: pytest.CaptureFixture[str], anonymous_registry: RegistryServer, test_images: ImageSet,
    no_docker_config: Path, tag: str,
) -> None:
    ref = f"docker://{anonymous_registry.host}/test/multi:{tag}"
    status, report, _ = scan_cli(capsys, "--insecure-registry", anonymous_registry.host, ref)
    assert verdicts(report) == [(ref, "linux/amd64", DORMANT), (ref, "linux/arm64/v8", "clean")]
    if tag == "latest":  # the OCI index as written; v2s2 was converted by skopeo (new digests)
        assert [i["digest"] for i in report["images"]] == [i.manifest_digest for i in test_images.multi.images]
    assert status == 1


def test_platform_picks_one_and_fetches_only_its_manifest(
    capsys: pytest.CaptureFixture[str], proxy: FaultProxy, test_images: ImageSet, no_docker_config: Path
) -> None:
    ref = f"docker://{proxy.host}/test/multi:latest"
    status, report, _ = scan_cli(capsys, "--insecure-registry", proxy.host, "--platform", "linux/arm64", ref)
    assert verdicts(report) == [(ref, "linux/arm64/v8", "clean")]
    assert status == 0
    amd64, arm64 = (i.manifest_digest for i in test_images.multi.images)
    assert proxy.count("GET", f"/manifests/{arm64}") == 1
    assert proxy.count("GET", f"/manifests/{amd64}") == 0  # on Docker Hub, every manifest GET is a pull

    status, report, _ = scan_cli(capsys, "--insecure-registry", proxy.host, "--platform", "linux/s390x", ref)
    assert status == 2
    assert "no image for platform linux/s390x; available: linux/amd64, linux/arm64/v8" in report["images"][0]["error"]


def test_content_type_stands_in_for_a_missing_media_type(anonymous_registry: RegistryServer) -> None:
    options = fast_options(anonymous_registry.host)
    with options:
        fetched = options.client(anonymous_registry.host).get_manifest("test/app", "nomt")
    assert "mediaType" not in json.loads(fetched.data)
    assert fetched.media_type == manifest.OCI_MANIFEST


def test_accept_header_matches_the_manifest_module() -> None:
    assert set(registry_client.MANIFEST_ACCEPT) == manifest.MANIFEST_TYPES | manifest.INDEX_TYPES
    assert manifest.OCI_INDEX == registry_client.OCI_INDEX
    assert manifest.DOCKER_MANIFEST == registry_client.DOCKER_MANIFEST


def test_head_resolves_a_tag_without_a_pull(proxy: FaultProxy, test_images: ImageSet) -> None:
    with fast_options(proxy.host) as options:
        client = options.client(proxy.host)
        described = client.resolve("test/app", "gzip")
        assert described.digest == test_images.bad.manifest_digest
        assert described.media_type == manifest.OCI_MANIFEST
        assert described.size == test_images.bad.manifest_size
        assert client.resolve("test/app", described.digest).digest == described.digest
    assert proxy.count("HEAD", "/manifests/") == 2
    assert proxy.count("GET", "/manifests/") == 0


def test_list_tags(proxy: FaultProxy) -> None:
    with fast_options(proxy.host) as options:
        assert sorted(options.client(proxy.host).list_tags("test/app")) == ["gzip", "nomt", "v2s2", "zstd"]


def test_list_tags_follows_link_paging(proxy: FaultProxy) -> None:
    """distribution 2.8 ignores ``n``/``last``; the proxy answers with pages as newer registries do."""

    def page(query: str, tags: list[str], following: str | None) -> Fault:
        headers = {"Link": f'</v2/test/app/tags/list?{following}>; rel="next"'} if following else {}
        body = json.dumps({"name": "test/app", "tags": tags}).encode()
        return Fault("status", rf"/tags/list\?{re.escape(query)}$", status=200, headers=headers, body=body)

    proxy.add(page("n=2", ["gzip", "nomt"], "last=nomt&n=2"))
    proxy.add(page("last=nomt&n=2", ["v2s2", "zstd"], "last=zstd&n=2"))
    proxy.add(page("last=zstd&n=2", [], None))
    with fast_options(proxy.host) as options:
        assert options.client(proxy.host).list_tags("test/app", page_size=2) == ["gzip", "nomt", "v2s2", "zstd"]
    assert [s.path for s in proxy.matching("GET", "/tags/list")] == [
        "/v2/test/app/tags/list?n=2",
        "/v2/test/app/tags/list?last=nomt&n=2",
        "/v2/test/app/tags/list?last=zstd&n=2",
    ]


def test_missing_tag_and_repository_are_clear_errors(
    capsys: pytest.CaptureFixture[str], anonymous_registry: RegistryServer, no_docker_config: Path
) -> None:
    host = anonymous_registry.host
    no_tag = f"docker://{host}/test/app:nope"
    no_repo = f"docker://{host}/test/nothing-here:latest"
    status, report, stderr = scan_cli(capsys, "--insecure-registry", host, no_tag, no_repo)
    assert stderr == ""
    assert status == 2
    errors = [image["error"] for image in report["images"]]
    assert errors[0] == f"manifest unknown: {host}/test/app:nope does not exist (MANIFEST_UNKNOWN)"
    assert errors[1].startswith(f"manifest unknown: {host}/test/nothing-here:latest does not exist")
    assert all("\n" not in error for error in errors)
    assert [i["verdict"] for i in report["images"]] == ["error", "error"]

    with fast_options(host) as options, pytest.raises(RegistryError) as caught:
        options.client(host).list_tags("test/nothing-here")
    assert caught.value.status == 404
    assert "repository not found" in str(caught.value)
    assert caught.value.url == f"http://{host}/v2/test/nothing-here/tags/list"


def test_plain_http_only_for_declared_hosts(
    capsys: pytest.CaptureFixture[str], anonymous_registry: RegistryServer, no_docker_config: Path
) -> None:
    host = anonymous_registry.host
    ref = f"docker://{host}/test/clean:latest"
    # Not declared: HTTPS is tried, and the plain-HTTP server cannot speak it.
    status, report, _ = scan_cli(capsys, "--insecure-registry", "127.0.0.1:1", ref)
    assert status == 2
    error = report["images"][0]["error"]
    assert f"--insecure-registry {host}" in error
    assert "TLS" in error
    # The host name alone covers every port.
    status, report, _ = scan_cli(capsys, "--insecure-registry", "127.0.0.1", ref)
    assert verdicts(report) == [(ref, "linux/amd64", "clean")]


def test_open_images_api_and_lazy_blobs(proxy: FaultProxy, test_images: ImageSet) -> None:
    with fast_options(proxy.host) as options:
        images = open_images(f"docker://{proxy.host}/test/multi:latest", registry=options)
        assert [i.platform for i in images] == ["linux/amd64", "linux/arm64/v8"]
        # Opening read the index and the platform manifests; no blob yet.
        assert proxy.count("GET", "/blobs/") == 0
        store = images[0].store  # type: ignore[attr-defined]
        assert isinstance(store, RegistryBlobStore)
        assert store.is_manifest(test_images.multi.images[1].manifest_digest)
        result = scan_image(images[1], ALL_DETECTORS)
        assert result.verdict.value == "clean"
        assert proxy.count("GET", "/blobs/") == 2  # config + one layer of the arm64 image only


def test_bad_references_never_reach_a_url(anonymous_registry: RegistryServer) -> None:
    with fast_options(anonymous_registry.host) as options:
        client: RegistryClient = options.client(anonymous_registry.host)
        with pytest.raises(RegistryError, match="refusing blob digest"), client.open_blob("test/app", "../../etc"):
            pass
        with pytest.raises(RegistryError, match="invalid repository"):
            client.get_manifest("../x", "latest")
        with pytest.raises(RegistryError, match="digest"):
            client.get_manifest("test/app", "md5:abc")


def test_registry_error_is_a_source_error() -> None:
    error = RegistryError("x", status=503, retryable=True, url="https://u:p@r.example/v2/a?sig=secret")
    assert isinstance(error, SourceError)
    assert error.url == "https://r.example/v2/a?…"
