"""``open_images``: one entry point, every transport, errors a person can read."""

from __future__ import annotations

from pathlib import Path

import pytest

from layerhound.errors import ReferenceError_, UsageError
from layerhound.sources import TRANSPORTS, open_images
from tests.support.imagewriter import ImageSpec, Layer, write_oci


def test_bad_platform_fails_before_io(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="OS/ARCH"):
        open_images(f"oci:{tmp_path / 'missing'}", platform="amd64")


def test_unknown_transport() -> None:
    with pytest.raises(ReferenceError_) as caught:
        open_images("ftp://example.com/image")
    for transport in TRANSPORTS:
        assert transport in str(caught.value)


def test_relative_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_oci(tmp_path / "layout", ImageSpec([Layer.files({"/a": "b"})]), tag="t")
    monkeypatch.chdir(tmp_path)
    [img] = open_images("oci:layout:t")
    assert img.ref == "oci:layout:t"
    assert [m.read() for m in img.layers[0].members()] == [b"b"]
