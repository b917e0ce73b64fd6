"""A layer as a value: where its blob is, and what it must hash to.

A crawl hands layers to worker processes (or Dask workers on other hosts);
an open ``Layer`` holds file handles and clients and cannot travel. A
``LayerRef`` is frozen and picklable: the worker reopens the blob itself
(``layerhound.sources.reopen.open_layer``) with its own registry session, and
verifies digest and diff_id exactly as the original ``Layer`` would have.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

BlobKind = Literal["registry", "oci", "oci-archive", "docker-archive", "dir"]


@dataclass(frozen=True, slots=True)
class BlobSource:
    """Where the blobs of one image live, reachable again from another process."""

    kind: BlobKind
    location: str
    """The registry host (``docker.io``, ``host:port``) or a host path (layout, archive)."""
    repository: str | None = None
    """The repository, for registries."""
    member: str | None = None
    """The tar member holding the blob, for a legacy ``docker save`` layer."""


@dataclass(frozen=True, slots=True)
class LayerRef:
    """One layer blob: its source, digests, size and media type."""

    source: BlobSource
    digest: str | None
    """The blob (compressed) digest; a legacy docker-archive layer's diff_id."""
    diff_id: str | None
    """The uncompressed digest the config names, verified while reading."""
    size: int
    media_type: str
