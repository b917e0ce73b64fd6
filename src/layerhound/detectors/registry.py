"""The detectors a scan runs, and one version string for all their rules.

Why: cached layer results are only valid for the rules that produced them.
``rules_version()`` changes whenever any detector's version or any of its rule
tables changes (a new hash, a new signature, a new affected range), so a cache
keyed by it can never serve findings computed under older knowledge.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

from layerhound.detectors.apk import ApkDetector
from layerhound.detectors.base import Detector
from layerhound.detectors.dpkg import DpkgDetector
from layerhound.detectors.elf_dynamic import ElfDynamicFacts
from layerhound.detectors.hashes import KnownHashDetector
from layerhound.detectors.loader_config import LoaderConfigFacts
from layerhound.detectors.pacman import PacmanDetector
from layerhound.detectors.rpmdb import RpmDbDetector
from layerhound.detectors.signatures import ByteSignatureDetector
from layerhound.detectors.source_artifacts import SourceArtifactDetector
from layerhound.detectors.startup import StartupFacts
from layerhound.detectors.structure import StructureDetector

_BUILTIN = (
    DpkgDetector(),
    RpmDbDetector(),
    ApkDetector(),
    PacmanDetector(),
    KnownHashDetector(),
    ByteSignatureDetector(),
    StructureDetector(),
    SourceArtifactDetector(),
    ElfDynamicFacts(),
    LoaderConfigFacts(),
    StartupFacts(),
)

ALL_DETECTORS: tuple[Detector, ...] = _BUILTIN
"""Every detector a scan runs, in a fixed order."""

RULES_SCHEME = "r1"
"""Bumped if the way the rules version is computed ever changes."""


def rules_version(detectors: Iterable[Detector] = _BUILTIN) -> str:
    """A short stable hash of every detector's name@version and rule tables."""
    canonical = json.dumps(
        [[f"{d.name}@{d.version}", d.rule_tables()] for d in detectors],
        sort_keys=True,
        separators=(",", ":"),
    )
    return f"{RULES_SCHEME}-{hashlib.sha256(canonical.encode()).hexdigest()[:12]}"
