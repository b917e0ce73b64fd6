"""``rootfs:DIR`` and ``file:PATH``: host files as one-layer images."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from layerhound.errors import SourceError
from layerhound.sources import open_images
from tests.support.imagewriter import read_layer


def test_rootfs(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "usr/lib").mkdir(parents=True)
    (root / "usr/lib/liblzma.so.5.6.0").write_bytes(b"\x7fELF")
    os.symlink("liblzma.so.5.6.0", root / "usr/lib/liblzma.so.5")
    os.symlink("/etc/shadow", root / "usr/lib/escape")
    [img] = open_images(f"rootfs:{root}")
    assert (img.ref, img.digest, img.platform, img.config) == (f"rootfs:{root}", None, None, {})
    [layer] = img.layers
    assert layer.digest is None
    assert read_layer(layer) == [
        ("/usr", "dir", b""),
        ("/usr/lib", "dir", b""),
        ("/usr/lib/escape", "symlink", b""),
        ("/usr/lib/liblzma.so.5", "symlink", b""),
        ("/usr/lib/liblzma.so.5.6.0", "file", b"\x7fELF"),
    ]


def test_rootfs_is_kept_under_a_platform_filter(tmp_path: Path) -> None:
    assert len(open_images(f"rootfs:{tmp_path}", "linux/arm64")) == 1


def test_file(tmp_path: Path) -> None:
    target = tmp_path / "liblzma.so.5"
    target.write_bytes(b"\x7fELF lzma")
    [img] = open_images(f"file:{target}")
    assert (img.digest, img.platform, img.config) == (None, None, {})
    assert read_layer(img.layers[0]) == [(str(target.resolve()), "file", b"\x7fELF lzma")]


def test_missing_host_paths(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="is not a directory"):
        open_images(f"rootfs:{tmp_path / 'nope'}")
    with pytest.raises(SourceError, match="is not a regular file"):
        open_images(f"file:{tmp_path / 'nope'}")
    with pytest.raises(SourceError, match="is not a regular file"):
        open_images(f"file:{tmp_path}")


def test_file_gone_before_reading_is_a_source_error(tmp_path: Path) -> None:
    target = tmp_path / "liblzma.so.5"
    target.write_bytes(b"\x7fELF")
    [image] = open_images(f"file:{target}")
    target.unlink()  # removed between opening the source and reading it
    target.symlink_to(tmp_path / "gone")
    with pytest.raises(SourceError, match="cannot read"):
        list(image.layers[0].members())
