"""``--format json``: the ``layerhound.scan/v1`` document (schema in report/schema/)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib import resources
from typing import Any

from layerhound import __version__
from layerhound.model import ImageResult, LayerResult

SCHEMA_ID = "layerhound.scan/v1"


def load_schema() -> dict[str, Any]:
    """The JSON Schema shipped with the package, for validation by users and tests."""
    text = resources.files("layerhound.report").joinpath("schema/scan-v1.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def _layer(layer: LayerResult) -> dict[str, Any]:
    return {
        "digest": layer.digest,
        "size": layer.size,
        "cached": layer.cached,
        "media_type": layer.media_type,
        "stats": layer.stats.to_json(),
    }


def image_document(result: ImageResult) -> dict[str, Any]:
    """One entry of ``images``."""
    return {
        "ref": result.ref,
        "digest": result.digest,
        "platform": result.platform,
        "verdict": result.verdict.value,
        "reasons": result.reasons,
        "findings": [f.to_json() for f in result.findings],
        "layers": [_layer(layer) for layer in result.layers],
        "base": result.base,
        "error": result.error,
    }


def scan_document(results: Sequence[ImageResult], rules: str) -> dict[str, Any]:
    """The whole report."""
    return {
        "schema": SCHEMA_ID,
        "tool": {"name": "layerhound", "version": __version__, "rules": rules},
        "images": [image_document(r) for r in results],
    }


def render_json(results: Sequence[ImageResult], rules: str) -> str:
    return json.dumps(scan_document(results, rules), indent=2, sort_keys=False) + "\n"
