"""Registry references: ``docker://HOST/REPO:TAG``, ``…@sha256:…`` and bare Hub names.

The registry is a ``BlobStore`` like any other source, with one twist:
manifests and blobs live in separate namespaces (``/manifests/<digest>`` and
``/blobs/<digest>``). The store therefore remembers every digest it has seen
named as a manifest — the root it was opened with and every child listed in
an index it served — and fetches those from the manifest endpoint. The index
fan-out itself is ``manifest.images_from_descriptors``, shared with every
other source.

With ``--platform`` set, only the matching children of an index are fetched:
on Docker Hub each manifest GET counts as a pull.

The ``RegistrySession`` (credentials, insecure hosts, concurrency, clients)
is always passed in: there is no ambient default, so a worker process or a
thread reaches registries exactly as its caller told it to.
"""

from __future__ import annotations

import io
import json
import threading
from contextlib import AbstractContextManager, nullcontext
from typing import Any, BinaryIO

from layerhound.errors import ManifestError
from layerhound.layers.ref import BlobSource
from layerhound.registry.client import RegistryClient
from layerhound.registry.session import RegistrySession
from layerhound.sources.base import BlobStore, Image, load_json
from layerhound.sources.manifest import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    SCHEMA1_TYPES,
    classify,
    images_from_descriptors,
    parse_platform,
)
from layerhound.sources.refs import Reference
from layerhound.untrusted import JSON_ERRORS


class RegistryBlobStore(BlobStore):
    """The blobs and manifests of one repository."""

    def __init__(self, client: RegistryClient, repository: str) -> None:
        self.client = client
        self.repository = repository
        self._manifests: dict[str, bytes] = {}
        self._manifest_digests: set[str] = set()
        self._lock = threading.Lock()

    def remember_manifest(self, digest: str, data: bytes) -> None:
        """Keep a fetched manifest; an index's children are manifests too."""
        with self._lock:
            self._manifests[digest] = data
            self._manifest_digests.add(digest)
        try:
            doc = json.loads(data)
        except JSON_ERRORS:
            return
        children = doc.get("manifests") if isinstance(doc, dict) else None
        if isinstance(children, list):
            with self._lock:
                for child in children:
                    if isinstance(child, dict) and isinstance(child.get("digest"), str):
                        self._manifest_digests.add(child["digest"])

    def source_of(self, digest: str) -> BlobSource:
        return BlobSource("registry", self.client.registry, repository=self.repository)

    def is_manifest(self, digest: str) -> bool:
        with self._lock:
            return digest in self._manifest_digests

    def open(self, digest: str) -> AbstractContextManager[BinaryIO]:
        with self._lock:
            cached = self._manifests.get(digest)
            is_manifest = digest in self._manifest_digests
        if cached is None and is_manifest:
            fetched = self.client.get_manifest(self.repository, digest)
            self.remember_manifest(digest, fetched.data)
            cached = fetched.data
        if cached is not None:
            return nullcontext(io.BytesIO(cached))
        return self.client.open_blob(self.repository, digest)


def check_media_type(doc: dict[str, Any], content_type: str, what: str) -> str:
    """Classify a registry document; the Content-Type stands in for a missing ``mediaType``.

    Returns the media type to put in the root descriptor.
    """
    declared = doc.get("mediaType")
    if not declared and content_type in SCHEMA1_TYPES:
        raise ManifestError(f"{what}: Docker image manifest schema 1 is not supported")
    kind = classify(doc, what)
    if isinstance(declared, str) and declared:
        return declared
    if content_type in INDEX_TYPES | MANIFEST_TYPES:
        said = "index" if content_type in INDEX_TYPES else "manifest"
        if said != kind:
            raise ManifestError(f"{what}: served as {content_type} but it is an image {kind}")
        return content_type
    return ""


def open_registry(reference: Reference, platform: str, session: RegistrySession) -> list[Image]:
    """Images of a registry reference, one per platform of an index.

    The digest wins when a reference has both tag and digest (as in Docker).
    """
    if reference.registry is None or reference.repository is None:
        raise ManifestError(f"{reference.original}: not a registry reference")
    client = session.client(reference.registry)
    repository = reference.repository
    wanted = reference.digest or reference.tag or "latest"
    fetched = client.get_manifest(repository, wanted)
    what = f"{reference.original}: manifest"
    doc = load_json(fetched.data, what)
    media_type = check_media_type(doc, fetched.media_type, what)
    store = RegistryBlobStore(client, repository)
    store.remember_manifest(fetched.digest, fetched.data)
    root = {"mediaType": media_type, "digest": fetched.digest, "size": len(fetched.data)}
    # Only the platforms asked for are fetched (walk_index); select_platform has the last word.
    return images_from_descriptors(store, [(reference.original, root)], parse_platform(platform))
