"""Host sources: an unpacked root filesystem (``rootfs:DIR``) or one file (``file:PATH``).

They let the same detectors judge what is already on disk — a debootstrap
tree, a mounted image, a suspicious liblzma copied off a server — without
packing it into an image first. They have no manifest, config or digest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from layerhound.layers.layer import DirectoryLayer, Layer, SingleFileLayer
from layerhound.sources.base import Image
from layerhound.sources.refs import FILE, ROOTFS, Reference


class HostImage(Image):
    """An image of exactly one host layer; config ``{}``, no digest or platform."""

    def __init__(self, ref: str, layer: Layer) -> None:
        self.ref = ref
        self.digest = None
        self._layers = [layer]

    @property
    def config(self) -> dict[str, Any]:
        return {}

    @property
    def layers(self) -> list[Layer]:
        return list(self._layers)


def open_rootfs(reference: Reference) -> list[Image]:
    """``rootfs:DIR`` → one image whose only layer walks the directory."""
    assert reference.transport == ROOTFS and reference.path is not None
    return [HostImage(reference.original, DirectoryLayer(Path(reference.path)))]


def open_file(reference: Reference) -> list[Image]:
    """``file:PATH`` → one image whose only layer is that file."""
    assert reference.transport == FILE and reference.path is not None
    return [HostImage(reference.original, SingleFileLayer(Path(reference.path)))]
