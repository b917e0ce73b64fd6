"""Every way into an image: ``open_images(reference)`` (``opening``) and the sources behind it.

The names below are loaded on first use, not when the package is imported: a
module that needs only ``sources.refs`` (the command line parsing a
reference) must not pay for httpx, zstandard and every source.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from layerhound.registry.session import RegistrySession
    from layerhound.sources.base import BlobStore, Image, ManifestImage
    from layerhound.sources.opening import open_images, open_reference
    from layerhound.sources.options import SourceOptions
    from layerhound.sources.refs import TRANSPORTS, Reference, parse_reference

__all__ = [
    "TRANSPORTS",
    "BlobStore",
    "Image",
    "ManifestImage",
    "Reference",
    "RegistrySession",
    "SourceOptions",
    "open_images",
    "open_reference",
    "parse_reference",
]


_HOMES = {
    "TRANSPORTS": "refs", "Reference": "refs", "parse_reference": "refs",
    "BlobStore": "base", "Image": "base", "ManifestImage": "base",
    "SourceOptions": "options", "open_images": "opening", "open_reference": "opening",
}


def __getattr__(name: str) -> Any:
    if name == "RegistrySession":
        from layerhound.registry.session import RegistrySession

        return RegistrySession
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f"layerhound.sources.{_HOMES[name]}")
    value = getattr(module, name)
    globals()[name] = value
    return value
