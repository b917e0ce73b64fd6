"""Every way into an image, behind one call: ``open_images(reference)``.

A reference (skopeo syntax, see ``refs``) becomes a list of ``Image``s: one
per platform of an index, one per image of an archive or layout when no REF
picks one. Opening reads only manifests and indexes; configs and layers are
read when a scan asks for them, so a broken image fails alone.
"""

from __future__ import annotations

from collections.abc import Callable

from layerhound.errors import SourceError
from layerhound.registry.session import RegistrySession
from layerhound.sources.base import BlobStore, Image, ManifestImage
from layerhound.sources.docker_archive import open_docker_archive
from layerhound.sources.host import open_file, open_rootfs
from layerhound.sources.manifest import parse_platform, select_platform
from layerhound.sources.oci_layout import open_oci, open_oci_archive
from layerhound.sources.refs import (
    DIR,
    DOCKER,
    DOCKER_ARCHIVE,
    FILE,
    OCI,
    OCI_ARCHIVE,
    ROOTFS,
    TRANSPORTS,
    Reference,
    parse_reference,
)
from layerhound.sources.registry import open_registry
from layerhound.sources.skopeo_dir import open_skopeo_dir

_OPENERS: dict[str, Callable[[Reference], list[Image]]] = {
    OCI: open_oci,
    OCI_ARCHIVE: open_oci_archive,
    DOCKER_ARCHIVE: open_docker_archive,
    DIR: open_skopeo_dir,
    ROOTFS: open_rootfs,
    FILE: open_file,
}


def open_images(reference: str, platform: str = "all", registry: RegistrySession | None = None) -> list[Image]:
    """Open a reference and return its images, filtered by platform.

    ``platform`` is ``all`` or ``OS/ARCH[/VARIANT]`` (a filter without a
    variant matches every variant). ``registry`` is the session registry
    references are reached with (credentials, insecure hosts, concurrency);
    a registry reference without one is a ``SourceError``. Raises ``ReferenceError_`` for text that is not a reference,
    ``UsageError`` for a bad platform, ``SourceError`` (and subclasses, such
    as ``RegistryError``) when the source is missing, malformed or refuses,
    or no image matches.
    """
    parse_platform(platform)  # a bad --platform fails before any I/O
    parsed = parse_reference(reference)
    return open_reference(parsed, platform, registry)


def open_reference(
    reference: Reference, platform: str = "all", registry: RegistrySession | None = None
) -> list[Image]:
    """``open_images`` for an already parsed reference."""
    if reference.transport == DOCKER:
        if registry is None:
            raise SourceError(f"{reference.original}: a registry reference needs a RegistrySession")
        images = open_registry(reference, platform, registry)
    else:
        images = _OPENERS[reference.transport](reference)
    return select_platform(images, platform)


__all__ = [
    "TRANSPORTS",
    "BlobStore",
    "Image",
    "ManifestImage",
    "Reference",
    "RegistrySession",
    "open_images",
    "open_reference",
    "parse_reference",
]
