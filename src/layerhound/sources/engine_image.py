"""Images of a local engine (``docker-daemon:NAME``, ``podman:NAME``), read from its export stream.

The engine's record (``/images/{name}/json``) gives the image ID (the
config's digest, what ``docker images`` shows), its diff_ids and platform.
The export (``/images/{id}/get``) is a ``docker save`` tar streamed over the
socket: legacy (``<diffid>.tar`` layers, ``<id>.json`` config, Podman and
Docker < 25) or OCI-inside (``blobs/sha256/…``, Docker >= 25). It is read once,
front to back, and never written anywhere: each layer member is walked as it
passes (the walk verifies its digest and computes its diff_id), layers the
cache already holds are skipped by name, and the config is the JSON member
whose bytes hash to the image ID. ``manifest.json`` is not needed: the diff_ids
of the record say which layer goes where, whatever order the engine wrote.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import re
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from functools import partial
from typing import Any, BinaryIO, cast

from layerhound.errors import BlobError, ManifestError, SourceError
from layerhound.layers.layer import (
    TAR_ERRORS,
    Layer,
    Member,
    TarBlobLayer,
    describe,
)
from layerhound.layers.stream import CHUNK, sniff_compression
from layerhound.layers.tarstream import Kind, MemberData, TarHeader, TarReader
from layerhound.sources.base import MAX_JSON_BLOB, Image, StreamedImage, load_json, platform_of
from layerhound.sources.docker_archive import named_digest
from layerhound.sources.engine import EngineClient, endpoint_for
from layerhound.sources.manifest import DOCKER_LAYER
from layerhound.sources.oci_layout import normalize_member
from layerhound.sources.refs import ENGINE_TRANSPORTS, Reference
from layerhound.untrusted import JSON_ERRORS

_SHA256 = re.compile(r"sha256:[0-9a-f]{64}")
_TAR_MAGIC_OFFSET = 257
MAX_CONFIG_CANDIDATES = 16
"""JSON members kept while looking for the config when none hashes to the image ID
(an engine whose image ID is an index digest, the containerd image store)."""


def open_engine(reference: Reference, engine: str, env: Mapping[str, str] | None = None) -> list[Image]:
    """The image ``reference`` names in the local ``engine`` (``docker-daemon`` or ``podman``).

    An engine reference names the image after the colon; a bare name is asked for as written.
    Raises ``EngineUnavailable`` (no engine there) or ``NoSuchImage`` (it holds none by that name).
    """
    name = reference.ref if reference.transport in ENGINE_TRANSPORTS else reference.original
    assert name is not None
    client = EngineClient(endpoint_for(engine, env))
    record = client.inspect(name)
    note = f"read from {client.endpoint} ({client.endpoint.origin})"
    return [EngineImage(reference.original, client, record, [note])]


class RecordedLayer(Layer):
    """A layer as the engine's record names it: its diff_id, nothing to walk yet.

    Lets the cache be asked before the export starts; the bytes come from
    ``EngineImage.stream``. For an uncompressed layer the blob digest is the
    diff_id, which is how the cache knows it.
    """

    def __init__(self, diff_id: str) -> None:
        self.digest = diff_id
        self.diff_id = diff_id
        self.size = 0
        self.media_type = DOCKER_LAYER
        self.compression = "none"

    def members(self) -> Iterator[Member]:
        raise SourceError(f"layer {self.digest} of an engine image is read from the engine's export stream")


class EngineImage(StreamedImage):
    """One image of a local engine, identified by its record and read from its export."""

    def __init__(self, ref: str, client: EngineClient, record: dict[str, Any], notes: list[str]) -> None:
        self.ref = ref
        self.client = client
        image_id = record.get("Id")
        if not isinstance(image_id, str) or not _SHA256.fullmatch(image_id):
            raise ManifestError(f"{ref}: {client.endpoint} gives no sha256 image ID ({image_id!r})")
        self.digest = image_id
        rootfs = record.get("RootFS")
        diff_ids = rootfs.get("Layers") if isinstance(rootfs, dict) else None
        if not isinstance(diff_ids, list) or not all(isinstance(d, str) and _SHA256.fullmatch(d) for d in diff_ids):
            raise ManifestError(f"{ref}: {client.endpoint} lists no valid diff_ids for {image_id}")
        self.diff_ids: list[str] = diff_ids
        self._platform = platform_of(
            {"os": record.get("Os"), "architecture": record.get("Architecture"), "variant": record.get("Variant")}
        )
        self.notes = list(notes)
        self._config_bytes: bytes | None = None

    @property
    def platform(self) -> str | None:
        return self._platform

    @property
    def config_digest(self) -> str | None:
        return self.digest

    @property
    def layers(self) -> list[Layer]:
        return [RecordedLayer(diff_id) for diff_id in self.diff_ids]

    @property
    def config(self) -> dict[str, Any]:
        if self._config_bytes is None and self.memo is not None:
            self._config_bytes = self.memo.get_blob(self.digest or "")
        if self._config_bytes is None:
            for _layer in self.stream(set()):  # only the config is wanted; nothing is yielded
                pass
        assert self._config_bytes is not None
        return load_json(self._config_bytes, f"{self.ref}: image config")

    def stream(self, wanted: set[str]) -> Iterator[Layer]:
        assert self.digest is not None
        label = f"{self.ref}: the export from {self.client.endpoint}"
        candidates: list[tuple[str, bytes]] = []
        with self.client.export(self.digest) as response:
            source = _ExportStream(response, label)
            try:
                outer = TarReader(partial(source.read, CHUNK))
                for header in outer:
                    # Directories and links (Docker's <id>/layer.tar point at the real layers) carry nothing.
                    member = outer.data if header.kind is Kind.FILE else None
                    layer = self._layer_of(header, member, wanted, candidates) if member else None
                    if layer is not None:
                        yield layer
            except TAR_ERRORS as exc:
                raise SourceError(f"{label} is not a readable tar stream: {describe(exc)}") from exc
        if self._config_bytes is None:
            self._config_bytes = self._config_from(candidates, label)
        if self.memo is not None:
            self.memo.put_blob(self.digest, self._config_bytes)

    def _layer_of(
        self, info: TarHeader, member: MemberData, wanted: set[str], candidates: list[tuple[str, bytes]]
    ) -> Layer | None:
        """The layer to walk for this member of the export, None for anything else (a config is kept)."""
        name = normalize_member(info.name)
        head = member.peek(_TAR_MAGIC_OFFSET + 8)[: _TAR_MAGIC_OFFSET + 8]
        claimed = named_digest(name, (".tar",))
        # A layer named as one (by its diff_id, or Docker < 25's <id>/layer.tar) is one, whatever its first bytes.
        if claimed not in self.diff_ids and not name.endswith("/layer.tar"):
            if _looks_like_json(head) and info.size <= MAX_JSON_BLOB:
                self._config_seen(member.read(), name, candidates)
                return None
            if not _looks_like_layer(head, info.size):
                return None  # VERSION, repositories, oci-layout
        if claimed in self.diff_ids and claimed not in wanted:
            return None  # a layer the cache holds (or one already walked): the reader skips its bytes
        return TarBlobLayer(
            digest=claimed,
            size=info.size,
            media_type=DOCKER_LAYER,
            opener=partial(_passing, cast(BinaryIO, member)),
            diff_id=claimed if claimed in self.diff_ids else None,
        )

    def _config_seen(self, data: bytes, name: str, candidates: list[tuple[str, bytes]]) -> None:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if digest == self.digest:
            self._config_bytes = data
        elif self._config_bytes is None and len(candidates) < MAX_CONFIG_CANDIDATES and named_digest(name) == digest:
            candidates.append((digest, data))

    def _config_from(self, candidates: list[tuple[str, bytes]], label: str) -> bytes:
        """A content-addressed config whose diff_ids are the record's, when none hashes to the image ID."""
        for digest, data in candidates:
            try:
                value = json.loads(data)
            except JSON_ERRORS:
                continue
            rootfs = value.get("rootfs") if isinstance(value, dict) else None
            if isinstance(rootfs, dict) and rootfs.get("diff_ids") == self.diff_ids:
                self.notes.append(
                    f"the engine's image ID {self.digest} is not a config digest; the config {digest} "
                    "was taken by its diff_ids"
                )
                return data
        raise SourceError(f"{label} holds no image config with digest {self.digest}")


def _passing(member: BinaryIO) -> AbstractContextManager[BinaryIO]:
    """The member as a layer's blob: it is the stream's, so the layer must not close it."""
    return nullcontext(member)


def _looks_like_json(head: bytes) -> bool:
    return head.lstrip()[:1] in (b"{", b"[")


def _looks_like_layer(head: bytes, size: int) -> bool:
    """A tar (ustar magic, or the zero blocks of an empty one) or a compressed blob."""
    if head[_TAR_MAGIC_OFFSET : _TAR_MAGIC_OFFSET + 5] == b"ustar" or sniff_compression(head) != "none":
        return True
    return size >= 1024 and size % 512 == 0 and not head.strip(b"\0")


class _ExportStream:
    """The export response as the tar reader reads it; a broken HTTP body is a ``BlobError`` naming the engine."""

    def __init__(self, response: http.client.HTTPResponse, label: str) -> None:
        self._response = response
        self._label = label

    def read(self, size: int = -1) -> bytes:
        try:
            return self._response.read(size)
        except http.client.HTTPException as exc:
            raise BlobError(f"{self._label} broke off: {type(exc).__name__}: {describe(exc)}") from None
        except OSError as exc:
            raise BlobError(f"{self._label} broke off: {exc.strerror or exc}") from None
