"""Faults between layerhound and a real registry, injected by a counting proxy.

The proxy (``tests/support/registry.py``) sits in front of the real
``docker-registry`` and, on request, answers with an error status, drops the
connection halfway through a body, flips a byte, redirects blob downloads to
another host (a second loopback address), adds rate-limit headers or delays.

Decided behaviour for a connection dropped mid-blob: the download is resumed
with ``Range: bytes=N-`` from the byte where it broke (the digest is still
checked over the whole blob), up to ``RetryPolicy.attempts - 1`` times; after
that the image fails with a ``RegistryError`` saying so.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from layerhound.detectors.registry import ALL_DETECTORS
from layerhound.errors import DigestMismatch, RegistryError
from layerhound.model import ImageResult
from layerhound.registry.client import RegistryClient
from layerhound.registry.ratelimit import PullBudget, parse_ratelimit
from layerhound.registry.retry import RetryPolicy, parse_retry_after
from layerhound.registry.session import RegistrySession
from layerhound.scan import scan_references
from layerhound.sources import open_images
from tests.registry.conftest import PASSWORD, USER, ImageSet, fast_options, fast_settings, scan_cli
from tests.support.registry import Fault, FaultProxy, OtherHost, Pki, RegistryServer

DORMANT = "backdoored-dormant"


def scan(ref: str, session: RegistrySession) -> list[ImageResult]:
    return list(scan_references([ref], ALL_DETECTORS, session=session))


def implant_layer(images: ImageSet) -> str:
    return images.bad.layers[1].digest


# ---------------------------------------------------------------- retries


def test_500_twice_then_success(proxy: FaultProxy) -> None:
    proxy.add(Fault("status", r"/manifests/gzip$", times=2, status=500))
    proxy.add(Fault("status", r"/blobs/", times=2, status=503))
    with fast_options(proxy.host) as options:
        [result] = scan(f"docker://{proxy.host}/test/app:gzip", options)
    assert result.verdict.value == DORMANT
    assert [s.status for s in proxy.matching("GET", r"/manifests/gzip$")] == [500, 500, 200]
    assert [s.status for s in proxy.matching("GET", r"/blobs/")][:3] == [503, 503, 200]


def test_500_twice_then_success_through_the_cli(
    capsys: pytest.CaptureFixture[str], proxy: FaultProxy, no_docker_config: Path
) -> None:
    proxy.add(Fault("status", r"/manifests/gzip$", times=2, status=500))
    ref = f"docker://{proxy.host}/test/app:gzip"
    status, report, _ = scan_cli(capsys, "--insecure-registry", proxy.host, ref)
    assert [i["verdict"] for i in report["images"]] == [DORMANT]
    assert status == 1
    assert proxy.count("GET", r"/manifests/gzip$") == 3


def test_server_errors_are_retried_a_bounded_number_of_times(proxy: FaultProxy) -> None:
    proxy.add(Fault("status", r"/manifests/gzip$", times=-1, status=500))
    with fast_options(proxy.host) as options, pytest.raises(RegistryError) as caught:
        open_images(f"docker://{proxy.host}/test/app:gzip", registry=options)
    assert proxy.count("GET", r"/manifests/gzip$") == 4
    assert caught.value.status == 500
    assert caught.value.retryable
    assert str(caught.value) == (
        f"{proxy.host} answered 500 Internal Server Error for {proxy.host}/test/app:gzip (gave up after 4 attempts)"
    )


def test_429_waits_as_long_as_retry_after_says(proxy: FaultProxy) -> None:
    proxy.add(Fault("status", r"/manifests/gzip$", times=1, status=429, headers={"Retry-After": "1"}))
    with fast_options(proxy.host) as options:
        [result] = scan(f"docker://{proxy.host}/test/app:gzip", options)
    assert result.verdict.value == DORMANT
    first, second = proxy.matching("GET", r"/manifests/gzip$")
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 1.0  # FAST_RETRY's own backoff is at most 0.1 s


def test_429_asking_too_long_fails_at_once(proxy: FaultProxy) -> None:
    proxy.add(Fault("status", r"/manifests/gzip$", times=-1, status=429, headers={"Retry-After": "3600"}))
    with fast_options(proxy.host) as options, pytest.raises(RegistryError) as caught:
        open_images(f"docker://{proxy.host}/test/app:gzip", registry=options)
    assert proxy.count("GET", r"/manifests/gzip$") == 1
    assert caught.value.status == 429
    assert "too many requests (rate limited)" in str(caught.value)
    assert "it asks to retry after 3600 s" in str(caught.value)


def test_unreachable_registry() -> None:
    with fast_options("127.0.0.1:1") as options, pytest.raises(RegistryError) as caught:
        options.client("127.0.0.1:1").get_manifest("test/app", "gzip")
    assert caught.value.retryable and caught.value.status is None
    assert str(caught.value).startswith("cannot reach 127.0.0.1:1 for 127.0.0.1:1/test/app:gzip")
    assert str(caught.value).endswith("(gave up after 4 attempts)")


# ---------------------------------------------------------------- blobs


def test_connection_dropped_mid_blob_is_resumed(proxy: FaultProxy, test_images: ImageSet) -> None:
    layer = implant_layer(test_images)
    size = test_images.bad.layers[1].size
    proxy.add(Fault("drop", rf"/blobs/{layer}$", times=1))
    with fast_options(proxy.host) as options:
        [result] = scan(f"docker://{proxy.host}/test/app:gzip", options)
    assert result.verdict.value == DORMANT
    first, second = proxy.matching("GET", rf"/blobs/{layer}$")
    assert "Range" not in first.headers
    # Resumed where the bytes stopped (the proxy sent exactly half).
    assert second.headers["Range"] == f"bytes={size // 2}-"
    assert second.status == 206


def test_connection_dropped_every_time_is_a_clear_error(proxy: FaultProxy, test_images: ImageSet) -> None:
    layer = implant_layer(test_images)
    proxy.add(Fault("drop", rf"/blobs/{layer}$", times=-1))
    with fast_options(proxy.host) as options:
        [result] = scan(f"docker://{proxy.host}/test/app:gzip", options)
    assert result.verdict.value == "error"
    assert result.error is not None
    assert result.error.startswith(
        f"the connection to {proxy.host} broke while downloading blob {layer} of {proxy.host}/test/app"
    )
    assert result.error.endswith("gave up after 4 attempts")
    assert proxy.count("GET", rf"/blobs/{layer}$") == 4


def test_corrupted_blob_is_rejected(proxy: FaultProxy, test_images: ImageSet) -> None:
    layer = implant_layer(test_images)
    proxy.add(Fault("corrupt", rf"/blobs/{layer}$", times=-1))
    with fast_options(proxy.host) as options:
        [image] = open_images(f"docker://{proxy.host}/test/app:gzip", registry=options)
        with pytest.raises(DigestMismatch) as caught:
            for _member in image.layers[1].members():
                pass
        assert caught.value.expected == layer
        [result] = scan(f"docker://{proxy.host}/test/app:gzip", options)
    assert result.verdict.value == "error"
    assert result.error is not None and f"digest mismatch: expected {layer}" in result.error


def test_corrupted_config_and_manifests_are_rejected(proxy: FaultProxy, test_images: ImageSet) -> None:
    digest = test_images.bad.manifest_digest
    assert digest is not None
    proxy.add(Fault("corrupt", rf"/blobs/{test_images.bad.config_digest}$", times=1))
    proxy.add(Fault("corrupt", r"/manifests/sha256:", times=1))
    proxy.add(Fault("corrupt", r"/manifests/zstd$", times=1))
    with fast_options(proxy.host) as options:
        [image] = open_images(f"docker://{proxy.host}/test/app:gzip", registry=options)
        with pytest.raises(DigestMismatch, match="image config digest mismatch"):
            _ = image.config
        client = options.client(proxy.host)
        with pytest.raises(DigestMismatch, match=f"expected {digest}"):
            client.get_manifest("test/app", digest)
        # By tag: checked against Docker-Content-Digest.
        with pytest.raises(DigestMismatch, match=r"\(Docker-Content-Digest\)"):
            client.get_manifest("test/app", "zstd")


# ---------------------------------------------------------------- redirects


@pytest.fixture
def redirecting_proxy(basic_registry: RegistryServer, other_host: OtherHost) -> Iterator[FaultProxy]:
    proxy = FaultProxy(basic_registry, other_host).start()
    try:
        yield proxy
    finally:
        proxy.stop()


def test_redirect_to_another_host_carries_no_credentials(
    redirecting_proxy: FaultProxy, other_host: OtherHost, test_images: ImageSet
) -> None:
    proxy = redirecting_proxy
    proxy.add(Fault("redirect", r"/blobs/", times=-1))
    options = fast_options(proxy.host, username=USER, password=PASSWORD)
    with options:
        [result] = scan(f"docker://{proxy.host}/test/app:gzip", options)
    assert result.verdict.value == DORMANT
    blob_requests = proxy.matching("GET", r"/blobs/")
    assert blob_requests and all(s.status == 200 for s in blob_requests)
    assert all(s.headers.get("Authorization", "").startswith("Basic ") for s in blob_requests)
    # Config + two layers were served by the other host, and it saw no credentials at all.
    assert len(other_host.seen) >= 3
    for seen in other_host.seen:
        assert not any(key.lower() in ("authorization", "cookie") for key in seen.headers)
        assert PASSWORD not in str(seen.headers)


class _Stream(httpx.SyncByteStream):
    """A body that is streamed, as from a real connection (``content=`` would be read in advance)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __iter__(self) -> Iterator[bytes]:
        yield self.data


def _mock_client(handler: httpx.MockTransport, **overrides: object) -> RegistryClient:
    settings = fast_settings(**overrides)
    return RegistryClient("r.example", settings, transport=handler, sleep=lambda _: None)


def test_redirect_from_https_to_plain_http_is_refused() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "r.example":
            return httpx.Response(307, headers={"Location": "http://storage.example/blob?sig=s3cr3t"})
        raise AssertionError("the plain-HTTP host must not be contacted")

    client = _mock_client(httpx.MockTransport(handler))
    digest = "sha256:" + "a" * 64
    with pytest.raises(RegistryError, match="refusing a redirect from HTTPS to plain HTTP") as caught, \
            client.open_blob("x/y", digest):
        pass
    assert caught.value.url == "http://storage.example/blob?…"  # the signature never shows


def test_same_host_redirect_keeps_authorization() -> None:
    seen: list[tuple[str, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, request.headers.get("Authorization")))
        if request.url.path.startswith("/v2/x/y/blobs/"):
            return httpx.Response(302, headers={"Location": "/storage/blob"})
        return httpx.Response(200, stream=_Stream(b"data"))

    client = _mock_client(httpx.MockTransport(handler), username=USER, password=PASSWORD)
    client.auth._scheme = "basic"  # as after a Basic challenge
    with client.open_blob("x/y", "sha256:" + "a" * 64) as stream:
        assert stream.read() == b"data"
    assert [path for path, _ in seen] == ["/v2/x/y/blobs/sha256:" + "a" * 64, "/storage/blob"]
    assert all(auth and auth.startswith("Basic ") for _, auth in seen)


# ---------------------------------------------------------------- good citizen


def test_pull_budget_stops_before_the_quota_is_burnt(proxy: FaultProxy) -> None:
    headers = {"ratelimit-limit": "100;w=21600", "ratelimit-remaining": "5;w=21600"}
    proxy.add(Fault("headers", r"/manifests/", method=None, times=-1, headers=headers))
    with fast_options(proxy.host, pull_reserve=5) as options:
        [first] = scan(f"docker://{proxy.host}/test/app:gzip", options)
        [second] = scan(f"docker://{proxy.host}/test/clean:latest", options)
        # A HEAD is not a pull: still allowed.
        assert options.client(proxy.host).resolve("test/clean", "latest").digest.startswith("sha256:")
    assert first.verdict.value == DORMANT
    assert second.verdict.value == "error"
    assert second.error == (
        f"{proxy.host}: pull rate limit nearly used up: 5 pulls left (window 21600 s), keeping a reserve of 5; "
        "stopping instead of burning the quota — try again later"
    )
    assert proxy.count("GET", r"/manifests/") == 1


def test_concurrency_per_host_is_bounded(proxy: FaultProxy, test_images: ImageSet) -> None:
    proxy.add(Fault("delay", r"/blobs/", times=-1, seconds=0.3))
    digests = [layer.digest for layer in test_images.bad.layers] + [test_images.bad.config_digest]
    errors: list[BaseException] = []
    with fast_options(proxy.host, max_concurrency=2) as options:
        client = options.client(proxy.host)

        def fetch(digest: str) -> None:
            try:
                with client.open_blob("test/app", digest) as stream:
                    stream.read()
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=fetch, args=(d,)) for d in digests * 2]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
    assert not errors
    assert client.slots.peak == 2
    assert elapsed >= 3 * 0.3  # six delayed downloads, two at a time


def test_small_parsers() -> None:
    assert parse_ratelimit("100;w=21600") == (100, 21600)
    assert parse_ratelimit("7") == (7, None)
    assert parse_ratelimit("nonsense") is None
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert parse_retry_after("soon") is None
    policy = RetryPolicy(base_delay=1.0, max_delay=4.0)
    assert all(0.5 <= policy.backoff(0) <= 1.0 for _ in range(50))
    assert all(2.0 <= policy.backoff(5) <= 4.0 for _ in range(50))
    budget = PullBudget("h", reserve=0)
    budget.observe({"ratelimit-remaining": "0;w=60"})
    with pytest.raises(RegistryError, match="0 pulls left"):
        budget.check()


def test_pki_fixture_is_shared(pki: Pki) -> None:
    assert pki.ca_cert.exists()


def test_unknown_host_name_is_not_retried() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        try:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        except socket.gaierror as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc

    client = _mock_client(httpx.MockTransport(handler))
    with pytest.raises(RegistryError, match=r"cannot resolve the host name of r\.example") as caught:
        client.get_manifest("a/b", "latest")
    assert len(calls) == 1 and not caught.value.retryable


def test_nested_use_of_one_slot_never_deadlocks(proxy: FaultProxy, test_images: ImageSet) -> None:
    with fast_options(proxy.host, max_concurrency=1) as options:
        client = options.client(proxy.host)
        with client.open_blob("test/app", test_images.bad.config_digest) as outer:
            with client.open_blob("test/app", test_images.bad.layers[0].digest) as inner:
                assert inner.read()
            assert outer.read()
            assert client.get_manifest("test/app", "gzip").digest == test_images.bad.manifest_digest
        assert client.slots.peak == 1 and client.slots.active == 0
