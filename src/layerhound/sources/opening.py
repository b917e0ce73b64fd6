"""Every way into an image, behind one call: ``open_images(reference)`` (also as ``layerhound.sources.open_images``).

A reference (skopeo syntax, see ``refs``) becomes a list of ``Image``s: one
per platform of an index, one per image of an archive or layout when no REF
picks one. Opening reads only manifests and indexes; configs and layers are
read when a scan asks for them, so a broken image fails alone.

Each source's module is imported when a reference needs it: a scan of an OCI
layout never loads the engine client (sockets, ``http.client``), the archive
readers or the host walker.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from layerhound.errors import SourceError
from layerhound.sources.manifest import parse_platform, select_platform
from layerhound.sources.options import IMAGE_SOURCES, REMOTE, SourceOptions
from layerhound.sources.refs import (
    DIR,
    DOCKER,
    DOCKER_ARCHIVE,
    ENGINE_TRANSPORTS,
    FILE,
    HOST,
    OCI,
    OCI_ARCHIVE,
    ROOTFS,
    Reference,
    parse_reference,
    source_name,
)

if TYPE_CHECKING:
    from layerhound.registry.session import RegistrySession
    from layerhound.sources.base import Image

_OPENERS: dict[str, tuple[str, str]] = {
    OCI: ("oci_layout", "open_oci"),
    OCI_ARCHIVE: ("oci_layout", "open_oci_archive"),
    DOCKER_ARCHIVE: ("docker_archive", "open_docker_archive"),
    DIR: ("skopeo_dir", "open_skopeo_dir"),
    FILE: ("host", "open_file"),
}
"""Transports whose opener takes only the reference → (module of ``layerhound.sources``, function)."""


def _opener(transport: str) -> Callable[[Reference], list[Image]]:
    module, name = _OPENERS[transport]
    opener = getattr(importlib.import_module(f"layerhound.sources.{module}"), name)
    return cast("Callable[[Reference], list[Image]]", opener)


def open_images(
    reference: str,
    platform: str = "all",
    registry: RegistrySession | None = None,
    options: SourceOptions | None = None,
) -> list[Image]:
    """Open a reference and return its images, filtered by platform.

    ``platform`` is ``all`` or ``OS/ARCH[/VARIANT]`` (a filter without a
    variant matches every variant). ``registry`` is the session registry
    references are reached with (credentials, insecure hosts, concurrency);
    a registry reference without one is a ``SourceError``. ``options`` says where a bare
    name is looked for and how host roots are walked (default: the registry
    only, one filesystem). Raises ``ReferenceError_`` for text that is not a reference,
    ``UsageError`` for a bad platform, ``SourceError`` (and subclasses, such
    as ``RegistryError``) when the source is missing, malformed or refuses,
    or no image matches.
    """
    parse_platform(platform)  # a bad --platform fails before any I/O
    parsed = parse_reference(reference)
    return open_reference(parsed, platform, registry, options)


def open_reference(
    reference: Reference,
    platform: str = "all",
    registry: RegistrySession | None = None,
    options: SourceOptions | None = None,
) -> list[Image]:
    """``open_images`` for an already parsed reference. Each image's ``source`` says where it was read."""
    options = options or SourceOptions()
    if reference.bare:
        images, source = _open_bare(reference, platform, registry, options)
    else:
        images, source = _open(reference, reference.transport, platform, registry, options), reference.transport
    for image in images:
        image.source = source_name(source)
    return select_platform(images, platform)


def _open(
    reference: Reference,
    transport: str,
    platform: str,
    registry: RegistrySession | None,
    options: SourceOptions,
) -> list[Image]:
    if transport == DOCKER:
        if registry is None:
            raise SourceError(f"{reference.original}: a registry reference needs a RegistrySession")
        from layerhound.sources.registry import open_registry  # with httpx: only for registry references

        return open_registry(reference, platform, registry)
    if transport in ENGINE_TRANSPORTS:
        from layerhound.sources.engine_image import open_engine

        return open_engine(reference, transport, options.env)
    if transport == ROOTFS:
        from layerhound.sources.host import open_rootfs

        return open_rootfs(reference, options.cross_mounts, options.exclude)
    if transport == HOST:
        from layerhound.sources.host import open_host

        return open_host(reference, options.cross_mounts, options.exclude)
    return _opener(transport)(reference)


def _open_bare(
    reference: Reference, platform: str, registry: RegistrySession | None, options: SourceOptions
) -> tuple[list[Image], str]:
    """A bare ``NAME[:TAG]``: the first of ``options.image_src`` that holds it.

    An engine that is not running, or does not hold the name, is passed over
    in silence (the image's ``source`` says where it was found); one that is
    there but refuses (no permission, an error) is a note on the image found
    elsewhere, so a user who expected the local image learns why.
    """
    from layerhound.sources.engine import EngineUnavailable, NoSuchImage
    from layerhound.sources.engine_image import open_engine

    refusals: list[str] = []
    for place in options.image_src:
        if place == REMOTE:
            images = _open(reference, DOCKER, platform, registry, options)
            for image in images:
                image.notes = [*refusals, *image.notes]
            return images, DOCKER
        try:
            return open_engine(reference, IMAGE_SOURCES[place], options.env), IMAGE_SOURCES[place]
        except NoSuchImage:
            continue
        except EngineUnavailable as exc:
            if not exc.absent:
                refusals.append(f"passed over {place}: {exc}")
    raise SourceError(
        f"{reference.original}: no image of that name in {', '.join(options.image_src)} (--image-src)"
        + "".join(f"; {refusal}" for refusal in refusals)
    )
