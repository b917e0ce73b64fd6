"""The one interface every source of images implements.

A source supplies the minimum — raw manifest bytes and "open blob by digest" —
and ``ManifestImage`` builds the rest. Nothing above this package knows where
the bytes came from. Images are lazy: the config and layer list are read on
first use, so fanning out an index costs nothing until an image is scanned, and
a broken platform fails only itself.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager
from functools import cached_property, partial
from typing import Any, BinaryIO, Protocol

from layerhound.errors import BlobError, ManifestError
from layerhound.layers.layer import Layer, TarBlobLayer
from layerhound.layers.ref import BlobSource
from layerhound.layers.stream import CHUNK, VerifyingReader
from layerhound.untrusted import JSON_ERRORS

MAX_JSON_BLOB = 16 * 1024 * 1024
"""Manifests and configs larger than this are refused rather than parsed."""


class BlobStore(ABC):
    """Content-addressed storage of one source."""

    @abstractmethod
    def open(self, digest: str) -> AbstractContextManager[BinaryIO]:
        """Open the raw bytes of a blob (unverified; callers verify while reading).

        Raises ``BlobError`` when the blob does not exist.
        """

    def source_of(self, digest: str) -> BlobSource | None:
        """Where another process can open this blob again (None: nowhere, e.g. an in-memory store)."""
        return None

    def read_verified(self, digest: str, what: str, limit: int = MAX_JSON_BLOB) -> bytes:
        """Read a small blob whole and check it against its digest."""
        with self.open(digest) as raw:
            reader = VerifyingReader(raw, digest, None, what)
            # Loop: one raw read may return fewer bytes than asked (pipes,
            # sockets); the hash would still cover everything via finish().
            chunks: list[bytes] = []
            total = 0
            while total <= limit:
                chunk = reader.read(min(CHUNK, limit + 1 - total))
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
            if total > limit:
                raise BlobError(f"{what} {digest} is larger than {limit} bytes")
            reader.finish()
        return b"".join(chunks)


class Image(ABC):
    """One image of one platform: what a scan needs, nothing about its origin."""

    ref: str
    """The reference as the user should see it in reports."""
    digest: str | None
    """Digest of the image manifest, None for host sources (rootfs, file)."""
    notes: list[str] = []  # noqa: RUF012 - never mutated on the class; sources set their own list
    """What the source noticed about the image that is worth a line in its report (a name that
    disagrees with the content, for one); not an error."""
    source: str | None = None
    """Where the image was read (``registry``, ``podman``, ``oci``…), set by ``open_reference``."""
    memo: ConfigMemo | None = None
    """Where the config may be kept between runs (the layer cache, a crawl's store).
    A source whose config is a content-addressed blob reads it from there when
    present, so a fully known image needs no blob from its source; others ignore it."""

    @property
    def platform(self) -> str | None:
        """``os/arch[/variant]`` from the config, when it says (None for host sources)."""
        try:
            return platform_of(self.config)
        except Exception:  # a broken config fails the scan, not the label
            return None

    @property
    def config_digest(self) -> str | None:
        """The digest of the config blob, when the source has one."""
        return None

    @property
    @abstractmethod
    def config(self) -> dict[str, Any]:
        """The image config JSON ({} when the source has none). May raise ScanError."""

    @property
    @abstractmethod
    def layers(self) -> list[Layer]:
        """Layers, lowest first. May raise ScanError."""


def load_json(data: bytes, what: str) -> dict[str, Any]:
    """Parse a JSON object or raise ``ManifestError`` saying what was wrong."""
    try:
        value = json.loads(data)
    except JSON_ERRORS as exc:
        raise ManifestError(f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ManifestError(f"{what} is not a JSON object")
    return value


def platform_of(value: dict[str, Any] | None) -> str | None:
    """``os/arch[/variant]`` from an index descriptor's platform or a config."""
    if not value or not value.get("os") or not value.get("architecture"):
        return None
    parts = [str(value["os"]), str(value["architecture"])]
    if value.get("variant"):
        parts.append(str(value["variant"]))
    return "/".join(parts)


class ConfigMemo(Protocol):
    """Somewhere image configs can be kept between scans (the layer cache)."""

    def get_blob(self, digest: str) -> bytes | None:
        """The config's bytes, already checked against ``digest``, or None."""

    def put_blob(self, digest: str, data: bytes) -> None:
        """Keep verified bytes."""


class ManifestImage(Image):
    """An image described by an OCI / Docker v2 schema 2 manifest in a blob store."""

    def __init__(
        self,
        ref: str,
        digest: str | None,
        manifest: dict[str, Any],
        store: BlobStore,
        platform: str | None = None,
    ) -> None:
        self.ref = ref
        self.digest = digest
        self.manifest = manifest
        self.store = store
        self._platform_hint = platform

    @property
    def platform(self) -> str | None:
        return self._platform_hint or super().platform

    @property
    def config_digest(self) -> str | None:
        descriptor = self.manifest.get("config")
        digest = descriptor.get("digest") if isinstance(descriptor, dict) else None
        return digest if isinstance(digest, str) else None

    @cached_property
    def config(self) -> dict[str, Any]:
        descriptor = self.manifest.get("config")
        if not isinstance(descriptor, dict) or not isinstance(descriptor.get("digest"), str):
            raise ManifestError(f"{self.ref}: manifest has no config descriptor")
        digest = descriptor["digest"]
        data = self.memo.get_blob(digest) if self.memo is not None else None
        if data is None:
            data = self.store.read_verified(digest, "image config")
            if self.memo is not None:
                self.memo.put_blob(digest, data)
        return load_json(data, f"{self.ref}: image config")

    @cached_property
    def layers(self) -> list[Layer]:
        descriptors = self.manifest.get("layers")
        if not isinstance(descriptors, list):
            raise ManifestError(f"{self.ref}: manifest has no layer list")
        rootfs = self.config.get("rootfs")
        diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
        if not isinstance(diff_ids, list):
            diff_ids = []
        layers: list[Layer] = []
        for index, desc in enumerate(descriptors):
            if not isinstance(desc, dict) or not isinstance(desc.get("digest"), str):
                raise ManifestError(f"{self.ref}: layer {index} has no digest")
            digest = desc["digest"]
            size = desc.get("size") or 0
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise ManifestError(f"{self.ref}: layer {index} has an invalid size {size!r}")
            diff_id = diff_ids[index] if index < len(diff_ids) else None
            layers.append(
                TarBlobLayer(
                    digest=digest,
                    size=size,
                    media_type=str(desc.get("mediaType") or ""),
                    opener=partial(self.store.open, digest),
                    diff_id=diff_id if isinstance(diff_id, str) else None,
                    source=self.store.source_of(digest),
                )
            )
        return layers


class StreamedImage(Image):
    """An image whose blobs arrive in one pass, in an order only the source knows.

    A local engine's export (``GET /images/{name}/get``) is such a stream: it
    cannot be sought, and an engine writes layers in the order it likes (Docker
    by name, Podman by position) with the config wherever. ``layers`` names what
    the image holds, so the cache can be asked before anything is read;
    ``stream`` then yields the layers the scan still needs as they pass by,
    each to be walked whole before the next, and reads the config on the way.
    """

    @abstractmethod
    def stream(self, wanted: set[str]) -> Iterator[Layer]:
        """Yield a walkable layer for each member of the stream that is, or may be, one of the
        ``wanted`` diff_ids; a yielded layer's ``walked_diff_id`` after its walk says which it was.
        Once the iteration ends, ``config`` is known and verified. Raises ``ScanError``."""
