"""``docker save`` tarballs: ``docker-archive:FILE[:REF]``, read in place.

Two layouts exist and both carry ``manifest.json`` (a list of
``{Config, RepoTags, Layers}``, paths inside the tar):

* legacy (Docker < 25, skopeo): ``<hex>.json`` configs and uncompressed layers
  at ``<id>/layer.tar`` or ``<hex>.tar``. A layer there has no distribution
  digest, so it is verified against the config's ``rootfs.diff_ids[i]``.
* OCI (Docker >= 25): an OCI layout (``index.json``, ``blobs/sha256/...``)
  plus that ``manifest.json`` pointing into ``blobs/``. The image is then
  read through its real OCI manifest, so its digest is the manifest digest a
  registry would show.

An archive with no ``manifest.json`` but an OCI layout is read as one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from functools import cached_property, partial
from pathlib import Path
from typing import Any

from layerhound.errors import ManifestError, ScanError, SourceError
from layerhound.layers.layer import Layer, TarBlobLayer
from layerhound.layers.ref import BlobSource
from layerhound.layers.stream import sniff_compression
from layerhound.sources.base import Image, ManifestImage, load_json
from layerhound.sources.manifest import DOCKER_LAYER, OCI_LAYER, DocKind, read_document, walk_index
from layerhound.sources.oci_layout import (
    ArchiveBlobStore,
    ArchiveLayout,
    TarArchive,
    digest_of_blob_path,
    layout_images,
    normalize_member,
    read_index,
)
from layerhound.sources.refs import DOCKER_ARCHIVE, Reference, normalize_name_tag
from layerhound.untrusted import JSON_ERRORS

_HEX = frozenset("0123456789abcdef")


def open_docker_archive(reference: Reference) -> list[Image]:
    """Images of ``docker-archive:FILE[:REF]`` (REF: ``name:tag`` or ``@N``)."""
    assert reference.transport == DOCKER_ARCHIVE and reference.path is not None
    archive = TarArchive(Path(reference.path), DOCKER_ARCHIVE)
    data = archive.read("manifest.json")
    if data is None:
        if archive.has("index.json") and archive.has("oci-layout"):
            return layout_images(ArchiveLayout(archive), reference)
        raise SourceError(f"docker-archive: {archive.path} has no manifest.json: not a docker save archive")
    entries = _load_entries(data, archive)
    oci = _oci_manifests(archive)
    return [
        _image(archive, entry, label, oci)
        for label, entry in _select(entries, reference, archive)
    ]


def _load_entries(data: bytes, archive: TarArchive) -> list[dict[str, Any]]:
    what = f"docker-archive: {archive.path}: manifest.json"
    try:
        entries = json.loads(data)
    except JSON_ERRORS as exc:
        raise ManifestError(f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ManifestError(f"{what} is not a list of images")
    if not entries:
        raise SourceError(f"{what} lists no images")
    return entries


def repo_tags(entry: dict[str, Any]) -> list[str]:
    """An entry's RepoTags (``null`` for untagged images in docker save)."""
    tags = entry.get("RepoTags")
    return [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []


def _select(
    entries: list[dict[str, Any]], reference: Reference, archive: TarArchive
) -> list[tuple[str, dict[str, Any]]]:
    """(report label, entry) pairs the reference selects."""
    where = f"docker-archive: {archive.path}"
    if reference.ref is None:
        return [
            (reference.with_ref(tags[0] if (tags := repo_tags(e)) else f"@{i}"), e)
            for i, e in enumerate(entries)
        ]
    index = reference.source_index
    if index is not None:
        if index >= len(entries):
            raise SourceError(f"{where} has {len(entries)} image(s); @{index} does not exist")
        return [(reference.original, entries[index])]
    wanted = normalize_name_tag(reference.ref)
    for entry in entries:
        for tag in repo_tags(entry):
            if tag == reference.ref or (wanted is not None and normalize_name_tag(tag) == wanted):
                return [(reference.original, entry)]
    available = ", ".join(t for e in entries for t in repo_tags(e)) or "none (use @N)"
    raise SourceError(f"{where}: no image tagged {reference.ref!r}; available: {available}")


def _oci_manifests(archive: TarArchive) -> dict[str, tuple[str, dict[str, Any], str | None]]:
    """Config digest → (manifest digest, manifest, platform) from index.json.

    Only present in archives written by Docker >= 25. Best effort: a manifest
    whose blob is missing (another platform not exported) is skipped, and the
    image then falls back to the legacy reading of manifest.json.
    """
    if not (archive.has("index.json") and archive.has("oci-layout")):
        return {}
    layout = ArchiveLayout(archive)
    found: dict[str, tuple[str, dict[str, Any], str | None]] = {}

    def read(digest: str) -> tuple[dict[str, Any], DocKind] | None:
        if not layout.store.exists(digest):
            return None  # another platform, not exported
        try:
            return read_document(layout.store, digest, f"{layout.location}: manifest")
        except ScanError:
            return None

    try:
        roots = read_index(layout)
    except ScanError:
        return {}
    for root in roots:
        for leaf in walk_index(root, read, layout.location, strict=False):
            config = (leaf.manifest or {}).get("config")
            if isinstance(config, dict) and isinstance(config.get("digest"), str):
                found.setdefault(config["digest"], (leaf.digest, leaf.manifest or {}, leaf.platform))
    return found


def named_digest(name: str, suffixes: tuple[str, ...] = (".json",)) -> str | None:
    """The digest a member's name claims: ``blobs/sha256/<hex>``, ``<hex>.json`` (docker save),
    ``sha256:<hex>`` (crane, ko), ``<hex>.tar.gz`` (crane's layers); None for a name that claims none."""
    digest = digest_of_blob_path(name)
    if digest is not None:
        return digest
    base = normalize_member(name).rsplit("/", 1)[-1]
    for suffix in suffixes:
        base = base.removesuffix(suffix)
    hexpart = base.removeprefix("sha256:")
    if len(hexpart) == 64 and set(hexpart) <= _HEX:
        return f"sha256:{hexpart}"
    return None


def _image(
    archive: TarArchive,
    entry: dict[str, Any],
    label: str,
    oci: dict[str, tuple[str, dict[str, Any], str | None]],
) -> Image:
    config_name = entry.get("Config")
    layers = entry.get("Layers")
    if not isinstance(config_name, str) or not isinstance(layers, list):
        raise ManifestError(f"{label}: manifest.json entry has no Config or Layers")
    if not all(isinstance(name, str) for name in layers):
        raise ManifestError(f"{label}: manifest.json lists a layer that is not a path")
    claimed = named_digest(config_name)
    if claimed is not None and claimed in oci and all(digest_of_blob_path(name) for name in layers):
        manifest_digest, manifest, platform = oci[claimed]
        return ManifestImage(label, manifest_digest, manifest, ArchiveBlobStore(archive), platform)
    return DockerArchiveImage(label, archive, config_name, claimed, layers)


class DockerArchiveImage(Image):
    """One ``manifest.json`` entry read without an OCI manifest (legacy layout).

    ``digest`` is the image ID, the sha256 of the config's bytes, which is what
    ``docker images`` shows (such archives carry no manifest digest). The
    config's member name is no promise: ``docker load`` takes any name, so a
    name that claims another digest than the content has is a note on the
    result, not a refusal.
    """

    def __init__(
        self, ref: str, archive: TarArchive, config_name: str, claimed: str | None, layer_names: list[str]
    ) -> None:
        self.ref = ref
        self.archive = archive
        self.config_name = config_name
        self.layer_names = layer_names
        data = archive.read(config_name)
        if data is None:
            raise SourceError(f"{ref}: config {config_name} is missing from {archive.path}")
        self._config_bytes = data
        self.digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.notes: list[str] = []
        if claimed is not None and claimed != self.digest:
            self.notes.append(
                f"the config member {config_name!r} is named for {claimed}, but its content hashes to "
                f"{self.digest}: the image ID is the content's (as docker load takes it)"
            )

    @property
    def config_digest(self) -> str | None:
        return self.digest

    @cached_property
    def config(self) -> dict[str, Any]:
        return load_json(self._config_bytes, f"{self.ref}: image config")

    @cached_property
    def layers(self) -> list[Layer]:
        rootfs = self.config.get("rootfs")
        diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
        if not isinstance(diff_ids, list) or len(diff_ids) != len(self.layer_names):
            count = len(diff_ids) if isinstance(diff_ids, list) else 0
            raise ManifestError(
                f"{self.ref}: manifest.json lists {len(self.layer_names)} layers "
                f"but the config has {count} diff_ids"
            )
        return list(self._layers(diff_ids))

    def _compressed(self, name: str) -> bool:
        with self.archive.open(name) as member:
            return sniff_compression(member.read(8)) != "none"

    def _layers(self, diff_ids: list[Any]) -> Iterator[Layer]:
        for name, diff_id in zip(self.layer_names, diff_ids, strict=True):  # lengths checked in layers
            if not isinstance(diff_id, str):
                raise ManifestError(f"{self.ref}: config has a malformed diff_id {diff_id!r}")
            info = self.archive.find(name)
            if info is None:
                raise SourceError(f"{self.ref}: layer {name} is missing from {self.archive.path}")
            named = named_digest(name, (".tar.gz", ".tgz", ".tar.zst", ".tar", ".gz"))
            # A compressed layer named by nothing is verified by its diff_id only; an uncompressed
            # layer's blob digest is its diff_id.
            digest = None if named is None and self._compressed(name) else named or diff_id
            yield TarBlobLayer(
                digest=digest,
                size=info.size,
                media_type=OCI_LAYER if named else DOCKER_LAYER,
                opener=partial(self.archive.open, name),
                diff_id=diff_id,
                source=BlobSource("docker-archive", str(self.archive.path), member=name),
            )
