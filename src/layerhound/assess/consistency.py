"""Where the package database and the bytes disagree, say so as a finding.

Version-matching scanners trust the package database. It can be wrong both
ways: a library copied in (or a database rewritten) hides an implant, and an
affected version number over clean bytes raises a false alarm. Each
disagreement becomes an ``inconsistency`` finding whose summary says what a
version-only scanner would conclude; the verdict itself follows the bytes.
"""

from __future__ import annotations

from collections.abc import Sequence

from layerhound.model import Fact, Finding, Indicates, Kind

PACKAGES = "packages"
MISSED = "a version-matching scanner would miss this image"


def _describe(facts: Sequence[Fact]) -> str:
    described = (f"{f.data.get('package')} {f.data.get('version')} ({f.data.get('database')} {f.path})" for f in facts)
    return ", ".join(dict.fromkeys(described))


def package_consistency(
    facts: Sequence[Fact], implants: Sequence[Finding], affected: Sequence[Finding]
) -> list[Finding]:
    """Disagreement findings for one image's final filesystem."""
    claims = [f for f in facts if f.collector == PACKAGES]
    found: list[Finding] = []
    if implants and not affected:
        where = implants[0].path
        if not claims:
            found.append(
                Finding(
                    "no-package-record",
                    Kind.PACKAGE,
                    Indicates.INCONSISTENCY,
                    where,
                    layer=implants[0].layer,
                    evidence={
                        "summary": "no package database records an xz/liblzma package, yet the implant is in "
                        f"{where} (copied in outside the package manager): {MISSED}",
                    },
                )
            )
        elif not any(c.data.get("affected") for c in claims):
            database = claims[0]
            found.append(
                Finding(
                    "package-claims-clean",
                    Kind.PACKAGE,
                    Indicates.INCONSISTENCY,
                    database.path,
                    layer=database.layer,
                    evidence={
                        "summary": f"the package database says {_describe(claims)}, not an affected version, "
                        f"but the bytes carry the implant ({where}): {MISSED}",
                        "claims": [c.data for c in claims],
                    },
                )
            )
    elif affected and not implants:
        affected_claims = [c for c in claims if c.data.get("affected")]
        never_injected = [c for c in affected_claims if c.data.get("injected_builds") is False]
        note = (
            "; this distribution's builds of the affected versions were never injected"
            if affected_claims and len(never_injected) == len(affected_claims)
            else ""
        )
        first = affected[0]
        found.append(
            Finding(
                "package-claims-affected",
                Kind.PACKAGE,
                Indicates.INCONSISTENCY,
                first.path,
                layer=first.layer,
                evidence={
                    "summary": "the package database names an affected version "
                    f"({_describe(affected_claims) or first.evidence.get('version')}), but no implant is in "
                    f"the bytes{note}: a version-matching scanner would raise a false alarm",
                },
            )
        )
    return found
