"""A re-scan of a fully cached image downloads no blob from a real registry.

The requests are counted at the proxy in front of Debian's docker-registry:
the first scan fetches the config and every layer blob; the second, with the
same cache, fetches only the manifest (a tag may have moved) and no blob at
all — not the layers, not the config.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.registry.conftest import scan_cli
from tests.support.registry import FaultProxy


def test_second_scan_downloads_no_blob(
    capsys: pytest.CaptureFixture[str], proxy: FaultProxy, no_docker_config: Path, tmp_path: Path
) -> None:
    ref = f"docker://{proxy.host}/test/app:gzip"
    args = ("--insecure-registry", proxy.host, "--cache-dir", str(tmp_path / "cache"), ref)

    status, first, _ = scan_cli(capsys, *args)
    assert status == 1 and first["images"][0]["verdict"] == "backdoored-dormant"
    layers = len(first["images"][0]["layers"])
    assert proxy.count("GET", r"/blobs/") == layers + 1  # every layer and the config
    assert not any(layer["cached"] for layer in first["images"][0]["layers"])

    proxy.reset()
    status, second, _ = scan_cli(capsys, *args)
    assert status == 1
    assert proxy.count("GET", r"/blobs/") == 0
    assert proxy.count(None, r"/manifests/gzip$") >= 1
    again = second["images"][0]
    assert all(layer["cached"] for layer in again["layers"])
    assert (again["verdict"], again["findings"], again["reasons"]) == (
        first["images"][0]["verdict"],
        first["images"][0]["findings"],
        first["images"][0]["reasons"],
    )

    proxy.reset()
    status, _, _ = scan_cli(capsys, "--no-cache", "--insecure-registry", proxy.host, ref)
    assert status == 1 and proxy.count("GET", r"/blobs/") == layers + 1
