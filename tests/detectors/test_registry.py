"""The detector registry and the rules version that keys caches."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from layerhound.detectors.base import Detector
from layerhound.detectors.hashes import KnownBad, KnownHashDetector
from layerhound.detectors.registry import ALL_DETECTORS, rules_version
from layerhound.model import Indicates


@dataclass
class FakeDetector:
    name: str = "fake"
    version: int = 1
    tables: dict[str, Any] = field(default_factory=lambda: {"rule": ["a", "b"]})

    def rule_tables(self) -> Mapping[str, Any]:
        return self.tables


def test_all_detectors_are_instances_with_unique_names() -> None:
    assert all(isinstance(d, Detector) for d in ALL_DETECTORS)
    names = [d.name for d in ALL_DETECTORS]
    assert len(names) == len(set(names))
    evidence = {"dpkg", "rpmdb", "apk", "pacman", "known-hashes", "byte-signatures", "ifunc-structure"}
    evidence |= {"source-artifacts"}
    facts = {"elf-dynamic", "loader-config", "startup"}
    assert evidence | facts <= set(names)
    assert all(d.version >= 1 for d in ALL_DETECTORS)


def test_rules_version_format_and_stability() -> None:
    version = rules_version()
    assert re.fullmatch(r"r1-[0-9a-f]{12}", version)
    assert rules_version() == version


def test_rules_version_follows_detector_version_and_tables() -> None:
    base = rules_version([FakeDetector()])
    assert rules_version([FakeDetector()]) == base
    assert rules_version([FakeDetector(version=2)]) != base
    assert rules_version([FakeDetector(name="other")]) != base
    assert rules_version([FakeDetector(tables={"rule": ["a", "c"]})]) != base


def test_rules_version_changes_when_a_hash_is_added() -> None:
    extra = {"0" * 64: KnownBad("new artifact", Indicates.IMPLANT)}
    assert rules_version([KnownHashDetector()]) != rules_version([KnownHashDetector(extra)])

