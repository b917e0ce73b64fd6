"""Fuse one image's evidence into a verdict with reasons a person can read.

The ladder is DESIGN.md's: a built implant in the final filesystem beats
anything else; below it come an implant only in a lower layer, backdoored
source material, and a package database that names an affected version
while the bytes are clean. Findings are judged by what they indicate, never by
which detector produced them, so a new detector plugs in without touching this.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from layerhound.assess.attribution import attribute_findings, final_facts
from layerhound.assess.consistency import package_consistency
from layerhound.assess.reachability import assess_reachability
from layerhound.fs.merged import MergedView, ViewCache
from layerhound.model import MAX_FINDINGS, Finding, ImageResult, Indicates, Kind, LayerResult, Verdict

ASSESS_VERSION = 1
"""Bump whenever the same layer results could give another verdict or other reasons (the ladder,
reachability, attribution): a crawl's stored verdicts are keyed by it and judged again."""


def _short(digest: str | None) -> str:
    if not digest:
        return "the filesystem"
    return f"layer {digest[:19]}…" if len(digest) > 19 else f"layer {digest}"


def _where(findings: Sequence[Finding]) -> str:
    seen: dict[str, Finding] = {}
    for f in findings:
        seen.setdefault(_located(f), f)
    return "; ".join(f"{where} ({f.rule}, {_short(f.layer)})" for where, f in seen.items())


def _located(finding: Finding) -> str:
    """The file's path; for a finding inside an archive, down to the member."""
    if finding.kind is Kind.ARCHIVE and "member" in finding.evidence:
        return "!/".join([finding.path, *finding.evidence.get("archive_chain", [])[1:], finding.evidence["member"]])
    return finding.path


def assess_image(
    ref: str,
    digest: str | None,
    platform: str | None,
    config: dict[str, Any],
    layers: Sequence[LayerResult],
    views: ViewCache | None = None,
) -> ImageResult:
    """Build the merged view (from a cached base's, with ``views``), attribute findings, pick the verdict."""
    view = MergedView.build(layers, views)
    findings = attribute_findings(view, layers)
    facts = final_facts(view, layers)

    def select(kinds: set[Indicates], final: bool) -> list[Finding]:
        return [f for f in findings if f.indicates in kinds and f.in_final_fs is final]

    implants = select({Indicates.IMPLANT}, True)
    payloads = select({Indicates.PAYLOAD}, True)
    history = select({Indicates.IMPLANT, Indicates.PAYLOAD}, False)
    sources = [f for f in findings if f.indicates is Indicates.SOURCE]
    affected = select({Indicates.AFFECTED_VERSION}, True)

    reasons: list[str] = []
    if implants:
        reasons.append(f"implanted liblzma in the final filesystem: {_where(implants)}")
        reach = assess_reachability(view, config, facts, [f.path for f in implants])
        verdict = Verdict.BACKDOORED_REACHABLE if reach.reachable else Verdict.BACKDOORED_DORMANT
        reasons.extend(reach.reasons)
        reasons.extend(f"caveat: {c}" for c in reach.caveats)
    elif payloads:
        verdict = Verdict.BACKDOORED_DORMANT
        reasons.append(f"implant material that nothing loads as is: {_where(payloads)}")
    elif history:
        verdict = Verdict.BACKDOOR_IN_HISTORY
        reasons.append(
            "implant only in a lower layer, deleted or replaced in the final filesystem; "
            f"the layer is still distributed: {_where(history)}"
        )
    elif sources:
        verdict = Verdict.SOURCE_ARTIFACTS
        reasons.append(f"backdoored xz source material, no built implant: {_where(sources)}")
    elif affected:
        verdict = Verdict.AFFECTED_VERSION_NOT_INJECTED
        never_injected = all(f.evidence.get("injected_builds") is False for f in affected)
        reasons.append(
            "the package database names an affected xz version, but no implant is in the "
            f"bytes: {_describe_packages(affected)}"
            + ("; this distribution's builds were never injected" if never_injected else "")
        )
    else:
        verdict = Verdict.CLEAN
        reasons.append("no evidence of CVE-2024-3094")

    if history and verdict.rank > Verdict.BACKDOOR_IN_HISTORY.rank:
        reasons.append(f"also in lower layers: {_where(history)}")
    disagreements = package_consistency(facts, implants, affected)
    findings.extend(disagreements)
    if verdict.rank >= Verdict.BACKDOOR_IN_HISTORY.rank and affected and not disagreements:
        reasons.append(f"package database agrees: {_describe_packages(affected)}")
    if implants:
        reasons.extend(f.evidence["summary"] for f in disagreements)
    if sources and verdict is not Verdict.SOURCE_ARTIFACTS:
        reasons.append(f"backdoored source material also present: {_where(sources)}")
    reasons.extend(_layer_notes(layers))

    created = config.get("created")
    return ImageResult(
        ref=ref,
        digest=digest,
        platform=platform,
        verdict=verdict,
        reasons=reasons,
        findings=findings,
        layers=list(layers),
        created=created if isinstance(created, str) else None,
    )


def _describe_packages(findings: Sequence[Finding]) -> str:
    parts = []
    for f in findings:
        ev = f.evidence
        parts.append(f"{ev.get('package', '?')} {ev.get('version', '?')} ({ev.get('database', '?')} {f.path})")
    return ", ".join(dict.fromkeys(parts))


def _layer_notes(layers: Sequence[LayerResult]) -> list[str]:
    notes: list[str] = []
    for layer in layers:
        for note in layer.stats.not_walked:
            notes.append(f"not walked: {note}")
        for path in layer.stats.skipped_oversize:
            notes.append(f"not inspected (over the size bound): {path} in {_short(layer.digest)}")
        for error in layer.stats.detector_errors:
            notes.append(f"detector error in {_short(layer.digest)}: {error}")
        for note in layer.stats.archive_notes:
            notes.append(f"archive not fully inspected in {_short(layer.digest)}: {note}")
        if layer.stats.findings_over_bound:
            notes.append(f"findings not listed in {_short(layer.digest)}: {layer.stats.findings_over_bound} more "
                         f"after the first {MAX_FINDINGS} (the verdict counts what is listed)")
    return notes
