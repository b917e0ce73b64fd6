"""Manifest classification, index fan-out and the platform filter."""

from __future__ import annotations

import hashlib
import io
import json
from contextlib import AbstractContextManager
from typing import Any, BinaryIO

import pytest

from layerhound.errors import BlobError, DigestMismatch, ManifestError, SourceError, UsageError
from layerhound.sources.base import BlobStore
from layerhound.sources.manifest import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    DOCKER_SCHEMA1_SIGNED,
    MAX_INDEX_DEPTH,
    OCI_INDEX,
    OCI_MANIFEST,
    classify,
    images_from_descriptors,
    is_attestation,
    parse_platform,
    select_platform,
)


class MemoryStore(BlobStore):
    """Blobs in a dict, keyed by the digest of their bytes."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    def put(self, value: Any) -> dict[str, Any]:
        data = json.dumps(value).encode()
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.blobs[digest] = data
        return {"digest": digest, "size": len(data)}

    def open(self, digest: str) -> AbstractContextManager[BinaryIO]:
        if digest not in self.blobs:
            raise BlobError(f"no blob {digest}")
        return io.BytesIO(self.blobs[digest])


def manifest(store: MemoryStore, arch: str) -> dict[str, Any]:
    config = store.put({"os": "linux", "architecture": arch})
    return store.put({"schemaVersion": 2, "config": config, "layers": []})


@pytest.mark.parametrize(
    ("doc", "kind"),
    [
        ({"mediaType": OCI_MANIFEST, "config": {}, "layers": []}, "manifest"),
        ({"mediaType": DOCKER_MANIFEST, "config": {}, "layers": []}, "manifest"),
        ({"mediaType": OCI_INDEX, "manifests": []}, "index"),
        ({"mediaType": DOCKER_MANIFEST_LIST, "manifests": []}, "index"),
        ({"schemaVersion": 2, "config": {}, "layers": []}, "manifest"),
        ({"schemaVersion": 2, "manifests": []}, "index"),
    ],
)
def test_classify(doc: dict[str, Any], kind: str) -> None:
    assert classify(doc) == kind


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"schemaVersion": 1, "fsLayers": [], "name": "x"}, "schema 1 is not supported"),
        ({"mediaType": DOCKER_SCHEMA1_SIGNED}, "schema 1 is not supported"),
        ({"mediaType": "application/vnd.oci.artifact.manifest.v1+json"}, "unsupported media type"),
        ({"schemaVersion": 2}, "neither an image manifest nor an index"),
    ],
)
def test_classify_refuses(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        classify(doc)


def test_attestations_are_recognised() -> None:
    assert is_attestation({"platform": {"os": "unknown", "architecture": "unknown"}})
    assert is_attestation({"annotations": {"vnd.docker.reference.type": "attestation-manifest"}})
    assert not is_attestation({"platform": {"os": "linux", "architecture": "amd64"}})


def test_fan_out_nested_skips_attestations_and_duplicates() -> None:
    store = MemoryStore()
    amd = manifest(store, "amd64")
    arm = manifest(store, "arm64")
    attestation = {**manifest(store, "unknown"), "platform": {"os": "unknown", "architecture": "unknown"}}
    inner = store.put({"manifests": [{**arm, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}}]})
    outer = store.put(
        {
            "mediaType": OCI_INDEX,
            "manifests": [{**amd, "platform": {"os": "linux", "architecture": "amd64"}}, attestation, inner, amd],
        }
    )
    images = images_from_descriptors(store, [("oci:x:t", outer)])
    assert [(i.ref, i.digest, i.platform) for i in images] == [
        ("oci:x:t", amd["digest"], "linux/amd64"),
        ("oci:x:t", arm["digest"], "linux/arm64/v8"),
    ]


def test_fan_out_depth_is_bounded() -> None:
    store = MemoryStore()
    descriptor = manifest(store, "amd64")
    for _ in range(MAX_INDEX_DEPTH + 1):
        descriptor = store.put({"manifests": [descriptor]})
    with pytest.raises(ManifestError, match="nested deeper"):
        images_from_descriptors(store, [("r", descriptor)])


def test_manifest_digest_is_verified() -> None:
    store = MemoryStore()
    descriptor = manifest(store, "amd64")
    store.blobs[descriptor["digest"]] = store.blobs[descriptor["digest"]].replace(b"layers", b"Layers")
    with pytest.raises(DigestMismatch):
        images_from_descriptors(store, [("r", descriptor)])


def test_platform_filter() -> None:
    store = MemoryStore()
    amd, arm = manifest(store, "amd64"), manifest(store, "arm64")
    index = store.put(
        {
            "manifests": [
                {**amd, "platform": {"os": "linux", "architecture": "amd64"}},
                {**arm, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            ]
        }
    )
    images = images_from_descriptors(store, [("r", index)])
    assert len(select_platform(images, "all")) == 2
    assert [i.platform for i in select_platform(images, "linux/arm64")] == ["linux/arm64/v8"]
    assert [i.platform for i in select_platform(images, "linux/arm64/v8")] == ["linux/arm64/v8"]
    with pytest.raises(SourceError, match="available: linux/amd64, linux/arm64/v8"):
        select_platform(images, "linux/s390x")
    with pytest.raises(SourceError):
        select_platform(images, "linux/arm64/v7")


@pytest.mark.parametrize("text", ["linux", "linux/", "a/b/c/d", ""])
def test_bad_platform_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError):
        parse_platform(text)
