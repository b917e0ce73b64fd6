"""A layer's result as parts: what the walk found, and what each detector found.

Stored results are keyed per detector (trivy's ``CalcKey`` idea, per analyzer):
a layer's walk (entries, whiteouts, stats) is stored once under the walk
version, and each detector's findings, facts and errors under
``name@version:rules``. Bumping one detector makes only its part stale, so a
re-scan re-runs that detector alone; hosts running different versions add
rows side by side and never delete each other's.

``split`` and ``join`` are exact inverses for a result in ``put_in_order``
order (which ``walk_layer`` produces): joined parts equal a fresh walk.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache

from layerhound.detectors.base import Detector
from layerhound.layers.walk import put_in_order, walk_version
from layerhound.model import Entry, Fact, Finding, LayerResult, LayerStats
from layerhound.store.serialize import schema_version


@dataclass(slots=True)
class WalkPart:
    """What a layer holds, independent of the detectors."""

    digest: str | None
    size: int
    media_type: str = ""
    diff_id: str | None = None
    entries: list[Entry] = field(default_factory=list)
    whiteouts: list[str] = field(default_factory=list)
    opaque_dirs: list[str] = field(default_factory=list)
    stats: LayerStats = field(default_factory=LayerStats)
    """Without ``detector_errors``: those belong to the detectors' parts."""


@dataclass(slots=True)
class DetectorPart:
    """What one detector found in one layer."""

    findings: list[Finding] = field(default_factory=list)
    facts: list[Fact] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    """``detector_errors`` entries of this detector (a part with errors is never stored)."""


def detector_key(detector: Detector) -> str:
    """``name@version:<hash of its rule tables>``: the key of one detector's part."""
    tables = json.dumps(detector.rule_tables(), sort_keys=True, separators=(",", ":"))
    return f"{detector.name}@{detector.version}:{hashlib.sha256(tables.encode()).hexdigest()[:10]}"


@cache
def part_version() -> str:
    """The walk's version and the stored shapes: the other half of every part's key."""
    return f"{walk_version()}+{schema_version(WalkPart)}+{schema_version(DetectorPart)}"


class UnfiledResult(ValueError):
    """A finding or fact of no detector in the set: storing the parts would lose it."""


def split(result: LayerResult, detectors: Sequence[Detector]) -> tuple[WalkPart, dict[str, DetectorPart]]:
    """The walk part and one part per detector (keyed by ``detector_key``).

    Raises ``UnfiledResult`` for a finding or fact whose ``detector`` is not
    one of ``detectors``: silently dropping it would make a stored result say
    less than the walk found.
    """
    names = {d.name: detector_key(d) for d in detectors}
    parts = {key: DetectorPart() for key in names.values()}

    def part_of(item: Finding | Fact) -> DetectorPart:
        key = names.get(item.detector)
        if key is None:
            raise UnfiledResult(f"layer {result.digest}: {type(item).__name__} of detector {item.detector!r} "
                                f"at {item.path} belongs to none of the detectors stored")
        return parts[key]

    for finding in result.findings:
        part_of(finding).findings.append(finding)
    for fact in result.facts:
        part_of(fact).facts.append(fact)
    for error in result.stats.detector_errors:
        key = names.get(error.partition(":")[0])
        if key is not None:
            parts[key].errors.append(error)
    stats = dataclasses.replace(result.stats, detector_errors=[])
    walk = WalkPart(
        digest=result.digest,
        size=result.size,
        media_type=result.media_type,
        diff_id=result.diff_id,
        entries=result.entries,
        whiteouts=result.whiteouts,
        opaque_dirs=result.opaque_dirs,
        stats=stats,
    )
    return walk, parts


def join(walk: WalkPart, parts: Iterable[DetectorPart], detectors: Sequence[Detector]) -> LayerResult:
    """A ``LayerResult`` from a walk part and the detectors' parts."""
    findings: list[Finding] = []
    facts: list[Fact] = []
    errors: list[str] = []
    for part in parts:
        findings.extend(part.findings)
        facts.extend(part.facts)
        errors.extend(part.errors)
    result = LayerResult(
        digest=walk.digest,
        size=walk.size,
        media_type=walk.media_type,
        diff_id=walk.diff_id,
        entries=walk.entries,
        whiteouts=walk.whiteouts,
        opaque_dirs=walk.opaque_dirs,
        findings=findings,
        facts=facts,
        stats=dataclasses.replace(walk.stats, detector_errors=errors),
    )
    put_in_order(result, detectors)
    return result
