"""``--format json``: the ``layerhound.scan/v1`` document (schema in report/schema/).

The document is the model itself, encoded by the same type-driven codec the
store uses (``store.serialize.encode``): a field added to ``ImageResult``,
``Finding``, ``Failure`` or ``LayerStats`` appears here without a change, and
a test holds the shipped schema to every field. Layers are summarised
(digest, diff_id, size, cache flag, stats), not listed file by file.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from importlib import resources
from typing import Any

from layerhound import __version__
from layerhound.model import ImageResult, LayerResult
from layerhound.store.serialize import encode

LAYER_SUMMARY = ("digest", "diff_id", "size", "cached", "media_type", "stats")
"""The fields of a ``LayerResult`` a report shows (entries, findings and facts are the image's)."""

SCHEMA_ID = "layerhound.scan/v1"


def load_schema() -> dict[str, Any]:
    """The JSON Schema shipped with the package, for validation by users and tests."""
    text = resources.files("layerhound.report").joinpath("schema/scan-v1.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def layer_summary(layer: LayerResult) -> dict[str, Any]:
    return {name: encode(getattr(layer, name)) for name in LAYER_SUMMARY}


def image_document(result: ImageResult) -> dict[str, Any]:
    """One entry of ``images``: every field of the result, layers summarised."""
    document: dict[str, Any] = {}
    for field in dataclasses.fields(result):
        value = getattr(result, field.name)
        document[field.name] = [layer_summary(v) for v in value] if field.name == "layers" else encode(value)
    return document


def scan_document(results: Sequence[ImageResult], rules: str) -> dict[str, Any]:
    """The whole report."""
    return {
        "schema": SCHEMA_ID,
        "tool": {"name": "layerhound", "version": __version__, "rules": rules},
        "images": [image_document(r) for r in results],
    }


def render_json(results: Sequence[ImageResult], rules: str) -> str:
    return json.dumps(scan_document(results, rules), indent=2, sort_keys=False) + "\n"
