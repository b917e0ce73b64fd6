"""Per-layer results in the ``layer_walks`` and ``layer_parts`` tables.

Shared by the scan's layer cache and the crawl's results store: one way to
keep and find a layer's result, on SQLite or PostgreSQL. ``lookup`` asks for
every layer of an image before any blob is opened (trivy's ``MissingBlobs``)
and says, per layer, which detectors' parts are still missing.

Trust: a walk part is stored only after ``walk_layer`` returned, that is after
the whole blob was read and its digest (and diff_id) verified. A stored row is
refused, and the layer walked afresh, when the image at hand describes the
blob differently (another diff_id or size) than the walk that verified it. A
row that does not decode is a miss; the next store replaces it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from layerhound.detectors.base import Detector
from layerhound.model import LayerResult
from layerhound.store.db import Database
from layerhound.store.parts import DetectorPart, UnfiledResult, WalkPart, detector_key, join, part_version, split
from layerhound.store.serialize import UndecodableResult, UnstorableResult, decode, dump_value, load_value

_CHUNK = 500
DECODED_WALKS = 16
"""Digests per lookup query (well under SQLite's bound on parameters)."""


class DescribedLayer(Protocol):
    """What a lookup needs of a layer: a ``Layer`` or a ``LayerRef``."""

    @property
    def digest(self) -> str | None: ...

    @property
    def diff_id(self) -> str | None: ...

    @property
    def size(self) -> int: ...

    @property
    def media_type(self) -> str: ...


@dataclass(frozen=True)
class StoredLayer:
    """What the store holds of one layer: its walk part and some detectors' parts."""

    walk: WalkPart
    parts: dict[str, DetectorPart]

    def missing(self, detectors: Sequence[Detector]) -> list[Detector]:
        """The detectors whose part is not stored."""
        return [d for d in detectors if detector_key(d) not in self.parts]

    def result(self, layer: DescribedLayer, detectors: Sequence[Detector]) -> LayerResult:
        """The complete result (every detector stored), as the layer at hand names it."""
        result = join(self.walk, [self.parts[detector_key(d)] for d in detectors], detectors)
        result.size = layer.size
        result.media_type = layer.media_type
        result.cached = True
        return result

    def with_fresh(self, fresh: LayerResult, detectors: Sequence[Detector]) -> LayerResult:
        """The complete result from the stored parts and a walk run with the missing detectors only.

        The stored walk part is kept (its statistics describe a walk with every detector).
        """
        missing = {detector_key(d) for d in self.missing(detectors)}
        _, new = split(fresh, [d for d in detectors if detector_key(d) in missing])
        parts = [self.parts[k] if k in self.parts else new[k] for k in map(detector_key, detectors)]
        result = join(self.walk, parts, detectors)
        result.size, result.media_type = fresh.size, fresh.media_type
        return result


class LayerRows:
    """Lookup and storage of layer parts in one ``Database``."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._walks: OrderedDict[str, tuple[str, WalkPart]] = OrderedDict()
        """Decoded walk parts by digest, with the text they came from: a base layer under hundreds
        of images is decoded once, not at every lookup."""

    def lookup(self, layers: Sequence[DescribedLayer], detectors: Sequence[Detector]) -> list[StoredLayer | None]:
        """Per layer: what is stored (None: no walk part, or one contradicted by the layer)."""
        version = part_version()
        digests = sorted({layer.digest for layer in layers if layer.digest})
        walks: dict[str, tuple[str | None, int, str]] = {}
        parts: dict[str, dict[str, str]] = {}
        keys = [detector_key(d) for d in detectors]
        for start in range(0, len(digests), _CHUNK):
            chunk = digests[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for digest, diff_id, size, value in self.db.query(
                f"SELECT digest, diff_id, size, value FROM layer_walks WHERE walk = ? AND digest IN ({marks})",
                [version, *chunk],
            ):
                walks[digest] = (diff_id, size, value)
            if not keys:
                continue
            key_marks = ",".join("?" * len(keys))
            for digest, key, value in self.db.query(
                f"SELECT digest, detector, value FROM layer_parts WHERE walk = ? AND digest IN ({marks})"
                f" AND detector IN ({key_marks})",
                [version, *chunk, *keys],
            ):
                parts.setdefault(digest, {})[key] = value
        decoded: dict[str, StoredLayer | None] = {}
        found: list[StoredLayer | None] = []
        for layer in layers:
            row = walks.get(layer.digest) if layer.digest else None
            if row is None or not _describes_same_blob(layer, row[0], row[1]):
                found.append(None)
                continue
            assert layer.digest is not None
            if layer.digest not in decoded:
                decoded[layer.digest] = self._decode(layer.digest, row[2], parts.get(layer.digest, {}))
            found.append(decoded[layer.digest])
        return found

    def _decode(self, digest: str, walk_text: str, part_texts: dict[str, str]) -> StoredLayer | None:
        known = self._walks.get(digest)
        if known is not None and known[0] == walk_text:
            self._walks.move_to_end(digest)
            return _parts(known[1], part_texts)
        stored = _decode(digest, walk_text, part_texts)
        if stored is not None:
            self._walks[digest] = (walk_text, stored.walk)
            while len(self._walks) > DECODED_WALKS:
                self._walks.popitem(last=False)
        return stored

    def store(
        self, layer: DescribedLayer, result: LayerResult, detectors: Sequence[Detector], *, with_walk: bool = True
    ) -> bool:
        """Keep the walk part and every part of ``detectors`` without errors; idempotent.

        ``with_walk`` False keeps the detectors' parts only: ``result`` came from
        a walk with some detectors, and the stored walk part (a walk with all of
        them) stays as it is.

        Returns False when nothing could be stored: no digest, a result of
        another layer, or a result JSON cannot carry unchanged.
        """
        if not layer.digest or result.digest != layer.digest:
            return False
        try:
            walk, parts = split(result, detectors)
            walk_text = dump_value(walk)
            texts = {key: dump_value(part) for key, part in parts.items() if not part.errors}
        except (UnstorableResult, UnfiledResult):
            return False
        version, now = part_version(), int(time.time())
        with self.db.transaction():
            if with_walk:
                self._store_walk(layer, result.diff_id, version, now, walk_text)
            self.db.executemany(

                "INSERT INTO layer_parts (digest, detector, walk, stored_at, value) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (digest, detector, walk) DO UPDATE SET value = excluded.value"
                " WHERE layer_parts.value <> excluded.value",
                [(layer.digest, key, version, now, text) for key, text in texts.items()],
            )
        return True

    def _store_walk(self, layer: DescribedLayer, diff_id: str | None, version: str, now: int, text: str) -> None:
        # A corrupt row (it did not decode) is replaced; an equal one stays as it is.
        self.db.execute(
            "INSERT INTO layer_walks (digest, walk, diff_id, size, stored_at, value) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (digest, walk) DO UPDATE SET value = excluded.value, diff_id = excluded.diff_id,"
            " size = excluded.size WHERE layer_walks.value <> excluded.value",
            (layer.digest, version, diff_id or layer.diff_id, layer.size, now, text),
        )


def _describes_same_blob(layer: DescribedLayer, diff_id: str | None, size: int) -> bool:
    """False when this image says something of the blob that the verified walk contradicts."""
    if layer.diff_id is not None and diff_id is not None and layer.diff_id != diff_id:
        return False
    return not (layer.size and size and layer.size != size)


def _decode(digest: str, walk_text: str, part_texts: dict[str, str]) -> StoredLayer | None:
    try:
        walk: WalkPart = load_value(WalkPart, walk_text)
    except UndecodableResult:
        return None  # a miss; the fresh result replaces the row
    if walk.digest != digest:
        return None
    return _parts(walk, part_texts)


def _parts(walk: WalkPart, part_texts: dict[str, str]) -> StoredLayer:
    parts: dict[str, DetectorPart] = {}
    for key, text in part_texts.items():
        try:
            parts[key] = load_value(DetectorPart, text)
        except UndecodableResult:
            continue  # that detector runs again
    return StoredLayer(walk, parts)


__all__ = ["DescribedLayer", "LayerRows", "StoredLayer", "decode"]
