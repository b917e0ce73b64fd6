"""Manifests and indexes: classify them and fan an index out into images.

Every source that stores OCI/Docker v2 manifests (layouts, archives, later the
registry) resolves a descriptor through here, so index handling — nested
indexes, attestation manifests, the platform filter — behaves the same
everywhere. Manifests and indexes are read eagerly (they are small and needed
to know what the images are); configs and layers stay lazy in ``ManifestImage``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from layerhound.errors import ManifestError, SourceError, UsageError
from layerhound.sources.base import BlobStore, Image, ManifestImage, load_json, platform_of

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
SCHEMA1_TYPES = frozenset({DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED})

REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
REFERENCE_TYPE = "vnd.docker.reference.type"

MAX_INDEX_DEPTH = 4
"""Indexes nested deeper than this are refused (real images use one level)."""

DocKind = Literal["manifest", "index"]


def classify(doc: dict[str, Any], what: str = "manifest") -> DocKind:
    """Say whether a parsed document is an image manifest or an index.

    The top-level ``mediaType`` is optional in OCI (umoci omits it), so when it
    is missing the shape decides: ``manifests`` → index, ``config`` and
    ``layers`` → manifest.
    """
    media_type = doc.get("mediaType")
    if media_type is not None and not isinstance(media_type, str):
        raise ManifestError(f"{what}: mediaType is not a string")
    if media_type in SCHEMA1_TYPES or "fsLayers" in doc or doc.get("schemaVersion") == 1:
        raise ManifestError(f"{what}: Docker image manifest schema 1 is not supported")
    if media_type and media_type not in INDEX_TYPES and media_type not in MANIFEST_TYPES:
        raise ManifestError(f"{what}: unsupported media type {media_type!r}")
    is_index = isinstance(doc.get("manifests"), list)
    is_manifest = isinstance(doc.get("config"), dict) and isinstance(doc.get("layers"), list)
    # A declared media type must still come with the shape it promises.
    if media_type in INDEX_TYPES:
        if not is_index:
            raise ManifestError(f"{what}: an image index without a list of manifests")
        return "index"
    if media_type in MANIFEST_TYPES:
        if not is_manifest:
            raise ManifestError(f"{what}: an image manifest without a config and a list of layers")
        return "manifest"
    if is_index:
        return "index"
    if is_manifest:
        return "manifest"
    raise ManifestError(f"{what}: neither an image manifest nor an index")


def read_document(store: BlobStore, digest: str, what: str) -> tuple[dict[str, Any], DocKind]:
    """Read a manifest or index blob, verify its digest, parse and classify it."""
    data = store.read_verified(digest, what)
    doc = load_json(data, f"{what} {digest}")
    return doc, classify(doc, f"{what} {digest}")


def is_attestation(descriptor: dict[str, Any]) -> bool:
    """BuildKit stores provenance/SBOM as fake "manifests" in the index: skip them."""
    annotations = descriptor.get("annotations") or {}
    if isinstance(annotations, dict) and annotations.get(REFERENCE_TYPE) == "attestation-manifest":
        return True
    platform = descriptor.get("platform") or {}
    return isinstance(platform, dict) and (
        platform.get("os") == "unknown" and platform.get("architecture") == "unknown"
    )


Reader = Callable[[str], "tuple[dict[str, Any], DocKind] | None"]
"""Reads a manifest or index by digest (verified); None: not available here (skipped)."""


@dataclass(frozen=True)
class Leaf:
    """One image manifest reached from a root descriptor."""

    digest: str
    manifest: dict[str, Any] | None
    """None when the walk was told not to read manifests (``read_manifests`` False)."""
    platform: str | None
    """From the descriptor that pointed at it (the index's word), when it says."""


@dataclass
class IndexWalk:
    """What a walk left out, for messages (``available`` platforms when a filter matched none)."""

    available: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """Children that could not be followed, when the walk is not ``strict``."""


def walk_index(
    root: dict[str, Any],
    read: Reader,
    what: str,
    *,
    wanted: PlatformFilter | None = None,
    strict: bool = True,
    walk: IndexWalk | None = None,
    read_manifests: bool = True,
) -> Iterator[Leaf]:
    """Every image manifest below ``root``: the one index walker of every source.

    Nested indexes are followed up to ``MAX_INDEX_DEPTH``, attestation
    manifests skipped, a digest reached twice yields once, and children whose
    descriptor names a platform ``wanted`` does not match are not even read (on
    Docker Hub every manifest read is a pull). ``strict`` walks raise
    ``ManifestError`` for a malformed index; others note it in ``walk.problems``
    and go on (best-effort readers, such as an archive's optional index).
    With ``read_manifests`` False only indexes are read: a child an index does
    not declare an index is yielded unread, with the platform its descriptor
    gives (a tag listing without dates needs no more).
    """
    walk = walk if walk is not None else IndexWalk()
    seen: set[str] = set()

    def problem(message: str) -> None:
        if strict:
            raise ManifestError(message)
        walk.problems.append(message)

    def visit(descriptor: dict[str, Any], depth: int) -> Iterator[Leaf]:
        digest = descriptor.get("digest")
        if not isinstance(digest, str):
            problem(f"{what}: descriptor without a digest")
            return
        if digest in seen:
            return
        seen.add(digest)
        found = read(digest)
        if found is None:
            return
        doc, kind = found
        if kind == "manifest":
            raw = descriptor.get("platform")
            yield Leaf(digest, doc, platform_of(raw if isinstance(raw, dict) else None))
            return
        if depth >= MAX_INDEX_DEPTH:
            problem(f"{what}: indexes nested deeper than {MAX_INDEX_DEPTH} levels")
            return
        children = doc.get("manifests")
        if not isinstance(children, list):
            problem(f"{what}: index {digest} has no manifest list")
            return
        for child in children:
            if not isinstance(child, dict):
                problem(f"{what}: index {digest} has a malformed descriptor")
                continue
            if is_attestation(child):
                continue
            raw = child.get("platform")
            label = platform_of(raw if isinstance(raw, dict) else None)
            if wanted is not None and label is not None and not wanted.matches(label):
                if label not in walk.available:
                    walk.available.append(label)
                continue
            if not read_manifests and child.get("mediaType") not in INDEX_TYPES:
                child_digest = child.get("digest")
                if isinstance(child_digest, str) and child_digest not in seen:
                    seen.add(child_digest)
                    yield Leaf(child_digest, None, label)
                elif not isinstance(child_digest, str):
                    problem(f"{what}: descriptor without a digest")
                continue
            yield from visit(child, depth + 1)

    yield from visit(root, 0)


def images_from_descriptors(
    store: BlobStore,
    descriptors: Iterable[tuple[str, dict[str, Any]]],
    wanted: PlatformFilter | None = None,
) -> list[Image]:
    """Resolve root descriptors (each with the ref label its images get).

    Indexes fan out into one ``ManifestImage`` per platform manifest (see
    ``walk_index``). Two roots (two tags) sharing a manifest each keep it, so
    every tag's report is complete. With ``wanted``, other platforms' manifests
    are not read; when none is left, ``SourceError`` lists those there are.
    """
    images: list[Image] = []
    walk = IndexWalk()
    for ref, descriptor in descriptors:

        def read(digest: str, ref: str = ref) -> tuple[dict[str, Any], DocKind]:
            return read_document(store, digest, f"{ref}: manifest")

        for leaf in walk_index(descriptor, read, ref, wanted=wanted, walk=walk):
            assert leaf.manifest is not None  # read_manifests: every manifest is read
            images.append(ManifestImage(ref, leaf.digest, leaf.manifest, store, leaf.platform))
    if wanted is not None and not images:
        listing = ", ".join(walk.available) or "none"
        raise SourceError(f"no image for platform {wanted}; available: {listing}")
    return images


@dataclass(frozen=True, slots=True)
class PlatformFilter:
    """``OS/ARCH[/VARIANT]``; a filter without variant matches every variant."""

    os: str
    architecture: str
    variant: str | None = None

    def matches(self, platform: str) -> bool:
        """Compare with an image's ``os/arch[/variant]`` label."""
        parts = platform.split("/")
        if len(parts) < 2 or parts[0] != self.os or parts[1] != self.architecture:
            return False
        return self.variant is None or (len(parts) > 2 and parts[2] == self.variant)

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def parse_platform(text: str) -> PlatformFilter | None:
    """``all`` → None (no filter), else ``OS/ARCH[/VARIANT]``; bad text → UsageError."""
    if text == "all":
        return None
    parts = text.split("/")
    if not 2 <= len(parts) <= 3 or not all(parts):
        raise UsageError(f"platform must be 'all' or OS/ARCH[/VARIANT], not {text!r}")
    return PlatformFilter(*parts)


def select_platform(images: Sequence[Image], platform: str) -> list[Image]:
    """Keep the images of one platform; ``all`` keeps everything.

    Images whose platform cannot be told (host sources, a config without os
    and architecture) are kept: a filter must not silently hide an image.
    When nothing matches, ``SourceError`` lists the platforms there are; a reference
    with no image at all is a ``ManifestError``.
    """
    if not images:
        # An index of empty indexes, or of attestations only: reporting nothing would read as clean.
        raise ManifestError("the reference holds no image (its index lists no image manifest, only empty "
                            "indexes or attestations)")
    wanted = parse_platform(platform)
    if wanted is None:
        return list(images)
    kept: list[Image] = []
    available: list[str] = []
    for image in images:
        label = image.platform
        if label is None or wanted.matches(label):
            kept.append(image)
        if label is not None and label not in available:
            available.append(label)
    if not kept:
        listing = ", ".join(available) or "none"
        raise SourceError(f"no image for platform {wanted}; available: {listing}")
    return kept
