"""Host sources: an unpacked root filesystem (``rootfs:DIR``), the running machine
(``host:``, its ``/``), or one file (``file:PATH``).

They let the same detectors judge what is already on disk — a debootstrap
tree, a mounted image, a server's own root, a suspicious liblzma copied off a
server — without packing it into an image first. They have no manifest,
config or digest; ``host:`` records the machine's identity (os-release,
kernel) as notes on its result, since the report is all that is left of it.
"""

from __future__ import annotations

import os
import platform as platform_module
import posixpath
import stat
from pathlib import Path
from typing import Any

from layerhound.layers.layer import DirectoryLayer, Layer, SingleFileLayer
from layerhound.sources.base import Image
from layerhound.sources.refs import FILE, HOST, ROOTFS, Reference


class HostImage(Image):
    """An image of exactly one host layer; config ``{}``, no digest or platform."""

    def __init__(self, ref: str, layer: Layer, notes: list[str] | None = None) -> None:
        self.ref = ref
        self.digest = None
        self._layers = [layer]
        self.notes = list(notes or [])

    @property
    def config(self) -> dict[str, Any]:
        return {}

    @property
    def layers(self) -> list[Layer]:
        return list(self._layers)


def open_rootfs(reference: Reference, cross_mounts: bool = False, exclude: tuple[str, ...] = ()) -> list[Image]:
    """``rootfs:DIR`` → one image whose only layer walks the directory."""
    assert reference.transport == ROOTFS and reference.path is not None
    return [HostImage(reference.original, DirectoryLayer(Path(reference.path), cross_mounts, exclude))]


def open_host(reference: Reference, cross_mounts: bool = False, exclude: tuple[str, ...] = ()) -> list[Image]:
    """``host:`` (``host:/`` or ``host:DIR``) → ``rootfs:`` of that root, with the machine's identity noted."""
    assert reference.transport == HOST
    root = Path(reference.path or "/")
    return [HostImage(reference.original, DirectoryLayer(root, cross_mounts, exclude), host_identity(root))]


def host_identity(root: Path) -> list[str]:
    """Lines naming the machine: its hostname, kernel and architecture, and the OS its ``root`` holds."""
    uname = os.uname()
    lines = [f"host {uname.nodename}: kernel {uname.sysname} {uname.release} ({uname.version}), {uname.machine}"]
    release = _os_release(root)
    if release:
        name = release.get("PRETTY_NAME") or " ".join(filter(None, (release.get("NAME"), release.get("VERSION"))))
        ids = ", ".join(f"{key}={release[key]}" for key in ("ID", "VERSION_ID") if key in release)
        lines.append(f"host operating system: {name}" + (f" ({ids})" if ids else ""))
    else:
        lines.append(f"host operating system: unknown (no os-release under {root}; {platform_module.system()})")
    return lines


def _os_release(root: Path) -> dict[str, str]:
    """``/etc/os-release`` (or ``/usr/lib/os-release``) of ``root``, parsed; {} when neither is readable.

    Read without following a link out of ``root``: os-release is usually a relative symlink
    into ``usr/lib``, which is resolved inside the root."""
    for rel in ("etc/os-release", "usr/lib/os-release"):
        path = root / rel
        try:
            if path.is_symlink():
                inside = posixpath.normpath(posixpath.join("/" + posixpath.dirname(rel), os.readlink(path)))
                path = root / inside.lstrip("/")
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                continue
            text = handle.read(64 * 1024).decode("utf-8", "replace")
        return dict(_os_release_fields(text))
    return {}


def _os_release_fields(text: str) -> list[tuple[str, str]]:
    fields = []
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            fields.append((key, value.strip().strip('"').strip("'")))
    return fields


def open_file(reference: Reference) -> list[Image]:
    """``file:PATH`` → one image whose only layer is that file."""
    assert reference.transport == FILE and reference.path is not None
    return [HostImage(reference.original, SingleFileLayer(Path(reference.path)))]
