"""What each finding rule means, for the formats that describe their rules (SARIF).

One entry per rule a detector or the assessment emits; a rule this table does
not know still gets a description from what its findings indicate, so a new
detector never breaks a report.
"""

from __future__ import annotations

from dataclasses import dataclass

from layerhound.model import Indicates

CVE = "CVE-2024-3094"
ADVISORY = "https://nvd.nist.gov/vuln/detail/CVE-2024-3094"


@dataclass(frozen=True)
class RuleText:
    short: str
    full: str
    help: str


_HELP_IMPLANT = (
    "The image carries the XZ Utils backdoor (CVE-2024-3094). Rebuild it on a base whose liblzma is not 5.6.0/5.6.1 "
    "from the backdoored release tarballs (`layerhound advise` names one) and stop distributing this image."
)

RULES: dict[str, RuleText] = {
    "known-bad-hash": RuleText(
        "File with a known-bad SHA-256",
        "The file's SHA-256 is one of the published hashes of backdoored xz 5.6.0/5.6.1 artifacts.",
        _HELP_IMPLANT,
    ),
    "xz-get-cpuid-prologue": RuleText(
        "liblzma with the backdoor's _get_cpuid prologue",
        "The bytes contain the published prologue of the backdoor's _get_cpuid IFUNC hook.",
        _HELP_IMPLANT,
    ),
    "xz-yara-opcodes": RuleText(
        "liblzma with the backdoor's opcode signature",
        "The bytes match the published YARA opcode pattern of the backdoor object.",
        _HELP_IMPLANT,
    ),
    "ifunc-resolver-hook": RuleText(
        "IFUNC resolver that hooks into hidden code",
        "An IFUNC resolver of lzma_crc32/lzma_crc64 reaches hidden code that counts calls and rewrites a GOT "
        "slot: the structure of the CVE-2024-3094 implant, whatever its bytes.",
        _HELP_IMPLANT,
    ),
    "xz-trigger-m4": RuleText(
        "Backdoored xz build trigger (build-to-host.m4)",
        "The m4 macro of the backdoored release tarballs that injects the payload at build time.",
        "Backdoored xz source material: do not build from it; use a release from a trusted source.",
    ),
    "xz-trigger-configure": RuleText(
        "configure script expanded from the backdoored trigger",
        "A configure script carrying the backdoored build-to-host.m4 expansion.",
        "Backdoored xz source material: do not build from it; use a release from a trusted source.",
    ),
    "package-claims-clean": RuleText(
        "Package database claims a clean xz over implant bytes",
        "A package database names a clean liblzma version while the bytes on disk are the implant: a "
        "version-matching scanner would miss this image.",
        _HELP_IMPLANT,
    ),
    "package-claims-affected": RuleText(
        "Package database claims an affected xz over clean bytes",
        "A package database names xz 5.6.0/5.6.1 while the bytes are clean: a version-matching scanner would flag "
        "this image though nothing is implanted.",
        "Informational: the bytes are clean. Upgrading the package removes the claim.",
    ),
}

_BY_INDICATION = {
    Indicates.IMPLANT: RuleText("Built liblzma implant", "Evidence of a built CVE-2024-3094 implant.", _HELP_IMPLANT),
    Indicates.PAYLOAD: RuleText(
        "Implant material that cannot be loaded as is",
        "The backdoor's payload or a packaged implant (inside an archive): backdoored, never loaded as is.",
        _HELP_IMPLANT,
    ),
    Indicates.SOURCE: RuleText(
        "Backdoored xz source material",
        "Release tarballs, the trigger m4 or the payload test files of the backdoored xz releases.",
        "Do not build from this material.",
    ),
    Indicates.AFFECTED_VERSION: RuleText(
        "Package database names an affected xz version",
        "A package database (dpkg, rpm, apk, pacman) names xz 5.6.0 or 5.6.1.",
        "Upgrade xz/liblzma to a fixed build; check the bytes with layerhound (the version alone says little).",
    ),
    Indicates.INCONSISTENCY: RuleText(
        "Package database and bytes disagree",
        "What the package database claims and what the bytes are do not match.",
        "Informational.",
    ),
}

SEVERITY = {
    Indicates.IMPLANT: 10.0,
    Indicates.PAYLOAD: 8.0,
    Indicates.SOURCE: 5.0,
    Indicates.AFFECTED_VERSION: 3.0,
    Indicates.INCONSISTENCY: 2.0,
}
"""GitHub's ``security-severity`` (0 to 10) by what a finding indicates."""


def rule_text(rule: str, indicates: Indicates) -> RuleText:
    """The description of ``rule``, from the table or from what its findings indicate."""
    if rule in RULES:
        return RULES[rule]
    if rule.endswith("-affected-version"):
        database = rule.removesuffix("-affected-version")
        return RuleText(
            f"{database} database names an affected xz version",
            f"The {database} package database names xz/liblzma 5.6.0 or 5.6.1.",
            _BY_INDICATION[Indicates.AFFECTED_VERSION].help,
        )
    return _BY_INDICATION[indicates]
