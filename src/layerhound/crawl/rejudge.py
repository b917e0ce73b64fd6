"""Re-judge every stored image under the current detectors and rules, without a registry.

Why: a detector update or the user's new YARA rules change what an image's bytes mean,
and a crawl of a registry's history must not be pulled again for it. For each image in
the store that has no verdict at the current rules version, every layer's stored parts
are looked up; a detector whose part is missing (it was bumped, or it is the user's new
rules) is run over the layer's kept files (``store.kept_files``: the candidate files a
crawl kept, replayed through the same walk), its part stored, and the image assessed
again from the stored walk, the parts and the stored config. Nothing here opens a
network connection: there is no registry session to open one with.

An image is left as it was, with the reason, when what it needs is not stored: a layer
whose files were not kept (``--no-keep-files``, the size bound), a walk part of another
walk version (the walk itself changed: that needs a crawl), or its config.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from layerhound import __version__
from layerhound.assess.verdict import assess_image
from layerhound.crawl.run import DECODED_LAYERS, apply_lineage, verdict_version
from layerhound.detectors.base import Detector
from layerhound.errors import ScanError
from layerhound.fs.merged import ViewCache
from layerhound.layers.walk import walk_layer
from layerhound.model import ImageResult, LayerResult, Verdict
from layerhound.scan import internal_error
from layerhound.store.kept_files import KeptLayer
from layerhound.store.results import ImageRow, LayerRow, ResultStore


@dataclass(frozen=True)
class Change:
    """An image whose verdict is not what it was."""

    image: str
    label: str
    old: Verdict | None
    new: Verdict
    why: str


@dataclass
class RejudgeSummary:
    run: str
    rules: str
    images: int = 0
    current: int = 0
    """Images that already had a verdict at these rules."""
    rejudged: int = 0
    layers_rejudged: int = 0
    changed: list[Change] = field(default_factory=list)
    left: list[tuple[str, str, str]] = field(default_factory=list)
    """(image, label, why) of images that could not be re-judged from the store."""


class _NotRejudged(Exception):
    """What the store lacks for one image."""


class Rejudger:
    """One pass over the store; see the module docstring."""

    def __init__(self, store: ResultStore, detectors: Sequence[Detector], files: Path) -> None:
        self.store = store
        self.detectors = tuple(detectors)
        self.files = files
        self.rules = verdict_version(self.detectors)
        self._decoded: OrderedDict[str, LayerResult] = OrderedDict()
        self._views = ViewCache()

    def run(self) -> RejudgeSummary:
        run = self.store.begin_run(f"layerhound {__version__}", self.rules, {"command": "rejudge"})
        summary = RejudgeSummary(run, self.rules)
        try:
            for image in self.store.images():
                summary.images += 1
                if self.store.judged(image.digest, self.rules):
                    summary.current += 1
                    continue
                self._image(image, summary)
        except BaseException:
            self.store.finish_run(run, "interrupted", self._counts(summary))
            raise
        apply_lineage(self.store, self.rules)
        self.store.finish_run(run, "finished", self._counts(summary))
        return summary

    @staticmethod
    def _counts(summary: RejudgeSummary) -> dict[str, int]:
        return {"images": summary.images, "rejudged": summary.rejudged, "changed": len(summary.changed),
                "left": len(summary.left), "layers_rejudged": summary.layers_rejudged}

    def _image(self, image: ImageRow, summary: RejudgeSummary) -> None:
        previous = self.store.previous_verdict(image.digest, self.rules)
        try:
            config = self._config(image)
            layers = [self._layer(digest, summary) for digest in image.layers]
            result = assess_image(image.first_ref, image.digest, image.platform, config, layers, self._views)
        except _NotRejudged as exc:
            summary.left.append((image.digest, image.first_ref, str(exc)))
            return
        except ScanError as exc:  # a kept file that no longer matches its sha256, a corrupt one
            summary.left.append((image.digest, image.first_ref, str(exc)))
            return
        except MemoryError:
            raise
        except Exception as exc:  # a bug of ours on one image: reported, the rest go on
            summary.left.append((image.digest, image.first_ref, str(internal_error(image.first_ref, exc))))
            return
        self.store.put_verdict(image.digest, self.rules, result)
        summary.rejudged += 1
        old = previous.verdict if previous is not None else None
        if old is not result.verdict:
            before = previous.reasons if previous is not None else ()
            summary.changed.append(Change(image.digest, image.first_ref, old, result.verdict, _why(result, before)))

    def _config(self, image: ImageRow) -> dict[str, Any]:
        if not image.config_digest:
            return {}
        data = self.store.get_blob(image.config_digest)
        if data is None:
            raise _NotRejudged(f"its config {image.config_digest} is not in the store")
        config = json.loads(data)
        return config if isinstance(config, dict) else {}

    def _layer(self, digest: str, summary: RejudgeSummary) -> LayerResult:
        cached = self._decoded.get(digest)
        if cached is not None:
            self._decoded.move_to_end(digest)
            return cached
        row = self.store.layer(digest)
        if row is None:
            raise _NotRejudged(f"layer {digest} is not in the store")
        [hit] = self.store.layers.lookup([row], self.detectors)
        if hit is None:
            raise _NotRejudged(f"layer {digest} was stored by another walk version: crawl it again")
        missing = hit.missing(self.detectors)
        if not missing:
            result = hit.result(row, self.detectors)
        else:
            result = self._walk_kept(row, hit.walk.entries, missing)
            self.store.layers.store(row, result, missing, with_walk=False)
            result = hit.with_fresh(result, self.detectors)
            summary.layers_rejudged += 1
        self._decoded[digest] = result
        while len(self._decoded) > DECODED_LAYERS:
            self._decoded.popitem(last=False)
        return result

    def _walk_kept(self, row: LayerRow, entries: Sequence[Any], missing: Sequence[Detector]) -> LayerResult:
        manifest = self.store.kept(row.digest)
        if manifest is None:
            raise _NotRejudged(f"the files of layer {row.digest} were not kept (crawled with --no-keep-files, "
                               "or before files were kept)")
        if not manifest.complete:
            raise _NotRejudged(f"the files of layer {row.digest} were not all kept ({manifest.problem})")
        uncovered = [d.name for d in missing if not manifest.covered.covers(d.interest())]
        if uncovered:  # judged from a part of its files, a detector's stored result would be wrong
            raise _NotRejudged(f"{', '.join(uncovered)} would read files of layer {row.digest} that the crawl did "
                               "not keep: crawl it again")
        layer = KeptLayer(row.digest, row.diff_id, row.size, row.media_type, entries, manifest, self.files)
        result = walk_layer(layer, missing)
        if result.stats.detector_errors:
            raise _NotRejudged(f"a detector failed on layer {row.digest}: {result.stats.detector_errors[0]}")
        return result


def _why(result: ImageResult, before: Sequence[str]) -> str:
    """The first reason the new judgement gives that the old one did not: what changed."""
    known = set(before)
    fresh = [reason for reason in result.reasons if reason not in known and not reason.startswith("caveat:")]
    return (fresh or result.reasons or [result.verdict.value])[0]
