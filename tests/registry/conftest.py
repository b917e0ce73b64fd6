"""Real registries for the registry tests: started once per test module.

Three set-ups of Debian's ``docker-registry`` (CNCF distribution 2.8):
anonymous plain HTTP, htpasswd basic auth over TLS, and bearer tokens over TLS
from the token server in ``tests/support/registry.py``. Images are written as
OCI layouts by ``tests/support/imagewriter.py`` and pushed with ``skopeo``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from layerhound.cli import main
from layerhound.registry.retry import RetryPolicy
from layerhound.registry.session import RegistrySession
from layerhound.registry.settings import RegistrySettings
from layerhound.report.json_report import load_schema
from tests.support.compile import IMPLANT_SIM, compile_shared
from tests.support.imagewriter import (
    ImageSpec,
    Layer,
    WrittenImage,
    WrittenIndex,
    file,
    symlink,
    write_oci,
    write_oci_index,
)
from tests.support.registry import (
    FaultProxy,
    OtherHost,
    Pki,
    RegistryServer,
    TokenServer,
    make_pki,
    push,
)

LIB = "/usr/lib/x86_64-linux-gnu"
USER = "alice"
PASSWORD = "Pa55-w0rd-never-shown-4242"
"""Distinctive, so a leak into any output is found by a plain substring search."""
TOKEN_PUBLIC_REPO = "test/public"


@dataclass(frozen=True)
class ImageSet:
    """The OCI layout every registry is filled from, and what was written into it."""

    layout: Path
    bad: WrittenImage
    """OCI media types, gzip: the implant at LIB/liblzma.so.5.6.1."""
    bad_zstd: WrittenImage
    bad_nomt: WrittenImage
    """Manifest without a top-level mediaType (the registry's Content-Type must stand in)."""
    clean: WrittenImage
    multi: WrittenIndex
    """linux/amd64: the implant; linux/arm64/v8: clean."""


@pytest.fixture(scope="session")
def test_images(tmp_path_factory: pytest.TempPathFactory) -> ImageSet:
    tmp = tmp_path_factory.mktemp("registry-images")
    implant = compile_shared(IMPLANT_SIM, tmp / "build", defines=("WITH_PROLOGUE",)).read_bytes()
    bad = ImageSpec([
        Layer.files({"/etc/os-release": "ID=layerhound-test\n"}),
        Layer.files({f"{LIB}/liblzma.so.5.6.1": file(implant), f"{LIB}/liblzma.so.5": symlink("liblzma.so.5.6.1")}),
    ])
    clean_amd64 = ImageSpec([Layer.files({"/etc/os-release": "ID=layerhound-test\n", "/etc/hostname": "clean\n"})])
    clean_arm64 = ImageSpec(
        [Layer.files({"/etc/os-release": "ID=layerhound-test\n", "/etc/hostname": "arm\n"})],
        architecture="arm64",
        variant="v8",
    )
    layout = tmp / "layout"
    return ImageSet(
        layout=layout,
        bad=write_oci(layout, bad, tag="bad"),
        bad_zstd=write_oci(layout, bad, tag="bad-zstd", compression="zstd"),
        bad_nomt=write_oci(layout, bad, tag="bad-nomt", media_types="none"),
        clean=write_oci(layout, clean_amd64, tag="clean"),
        multi=write_oci_index(layout, [bad, clean_arm64], tag="multi"),
    )


def populate(registry: RegistryServer, images: ImageSet, creds: str | None = None, full: bool = True) -> None:
    """Push the standard set: ``test/app`` (gzip, zstd, v2s2, nomt), ``test/clean``, ``test/multi``."""
    layout = images.layout
    push(f"oci:{layout}:bad", registry, "test/app", "gzip", creds=creds)
    push(f"oci:{layout}:clean", registry, "test/clean", "latest", creds=creds)
    push(f"oci:{layout}:multi", registry, "test/multi", "latest", creds=creds, all_images=True)
    if full:
        push(f"oci:{layout}:bad-zstd", registry, "test/app", "zstd", creds=creds)
        push(f"oci:{layout}:bad", registry, "test/app", "v2s2", creds=creds, fmt="v2s2")
        push(f"oci:{layout}:bad-nomt", registry, "test/app", "nomt", creds=creds)
        push(f"oci:{layout}:multi", registry, "test/multi", "v2s2", creds=creds, all_images=True, fmt="v2s2")


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def anonymous_registry(tmp_path_factory: pytest.TempPathFactory, test_images: ImageSet) -> Iterator[RegistryServer]:
    registry = RegistryServer(tmp_path_factory.mktemp("anonymous"), "anonymous").start()
    try:
        populate(registry, test_images)
        yield registry
    finally:
        registry.stop()


@pytest.fixture(scope="module")
def basic_registry(
    tmp_path_factory: pytest.TempPathFactory, test_images: ImageSet, pki: Pki
) -> Iterator[RegistryServer]:
    registry = RegistryServer(tmp_path_factory.mktemp("basic"), "basic", pki=pki, users={USER: PASSWORD}).start()
    try:
        populate(registry, test_images, creds=f"{USER}:{PASSWORD}", full=False)
        yield registry
    finally:
        registry.stop()


@pytest.fixture(scope="module")
def token_server(pki: Pki) -> Iterator[TokenServer]:
    server = TokenServer(
        pki, {USER: PASSWORD}, public=(TOKEN_PUBLIC_REPO,), refresh_tokens={"refresh-token-of-alice": USER}
    ).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def token_registry(
    tmp_path_factory: pytest.TempPathFactory, test_images: ImageSet, pki: Pki, token_server: TokenServer
) -> Iterator[RegistryServer]:
    registry = RegistryServer(tmp_path_factory.mktemp("token"), "token", pki=pki, token_server=token_server).start()
    try:
        populate(registry, test_images, creds=f"{USER}:{PASSWORD}", full=False)
        push(f"oci:{test_images.layout}:bad", registry, TOKEN_PUBLIC_REPO, "latest", creds=f"{USER}:{PASSWORD}")
        yield registry
    finally:
        registry.stop()


@pytest.fixture(scope="module")
def anonymous_proxy(anonymous_registry: RegistryServer) -> Iterator[FaultProxy]:
    proxy = FaultProxy(anonymous_registry).start()
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture
def proxy(anonymous_proxy: FaultProxy) -> Iterator[FaultProxy]:
    """The anonymous registry's proxy, with no faults and an empty log."""
    anonymous_proxy.reset()
    yield anonymous_proxy
    anonymous_proxy.reset()


@pytest.fixture(scope="module")
def other_host() -> Iterator[OtherHost]:
    host = OtherHost().start()
    try:
        yield host
    finally:
        host.stop()


@pytest.fixture
def no_docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty DOCKER_CONFIG and no LAYERHOUND_REGISTRY_* variables: nothing leaks in from the machine."""
    directory = tmp_path / "docker-config"
    directory.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(directory))
    monkeypatch.delenv("LAYERHOUND_REGISTRY_USERNAME", raising=False)
    monkeypatch.delenv("LAYERHOUND_REGISTRY_PASSWORD", raising=False)
    return directory


FAST_RETRY = RetryPolicy(attempts=4, base_delay=0.02, max_delay=0.1, max_retry_after=5.0)


def fast_settings(*insecure: str, **overrides: Any) -> RegistrySettings:
    """Registry settings with short backoff, for tests that provoke retries."""
    overrides.setdefault("retry", FAST_RETRY)
    overrides.setdefault("environ", {})
    overrides.setdefault("config_path", Path("/nonexistent/layerhound-tests/config.json"))  # not the user's
    return RegistrySettings(insecure_registries=frozenset(insecure), **overrides)


def fast_options(*insecure: str, **overrides: Any) -> RegistrySession:
    """A registry session made with ``fast_settings``."""
    return RegistrySession(fast_settings(*insecure, **overrides))


def scan_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any], str]:
    """``layerhound scan --format json`` in process: (exit status, validated report, stderr)."""
    status = main(["scan", "--format", "json", "--no-progress", *args])
    captured = capsys.readouterr()
    report = json.loads(captured.out) if captured.out.strip() else {"images": []}
    if captured.out.strip():
        jsonschema.validate(report, load_schema())
    return status, report, captured.err


def verdicts(report: dict[str, Any]) -> list[tuple[str, str | None, str]]:
    return [(image["ref"], image["platform"], image["verdict"]) for image in report["images"]]
