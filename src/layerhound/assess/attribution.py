"""Decide, for every layer's findings, whether the file survives to the final filesystem.

A finding is made on the bytes one layer carried. It is in the final
filesystem when some final path still points at those bytes (the same path,
or a hard link to it); otherwise an upper layer deleted or replaced it and the
finding is history. Hard-link names of an implanted file become findings of
their own, so the report names every path the implant is reachable by.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from layerhound.fs.merged import MergedView
from layerhound.model import REPLACED_IN_LAYER, Fact, Finding, LayerResult

MAX_ALIASES = 100
"""Hard-link names a finding is repeated under; the last one listed counts the rest
(``more_hard_links``). 200,000 links to one implant cost a megabyte of layer."""


def final_facts(view: MergedView, layers: Sequence[LayerResult]) -> list[Fact]:
    """The facts about files of the final filesystem, under each path they have there."""
    facts: list[Fact] = []
    for index, layer in enumerate(layers):
        for fact in layer.facts:
            for path in view.final_paths((index, fact.path, bool(fact.data.get(REPLACED_IN_LAYER)))):
                facts.append(fact if path == fact.path else dataclasses.replace(fact, path=path))
    return facts


def attribute_findings(view: MergedView, layers: Sequence[LayerResult]) -> list[Finding]:
    """All findings of all layers, with ``in_final_fs`` set and hard-link names added."""
    attributed: list[Finding] = []
    for index, layer in enumerate(layers):
        for finding in layer.findings:
            # The copy a later entry of the same layer replaced lives on only under hard links made before.
            paths = view.final_paths((index, finding.path, bool(finding.evidence.get(REPLACED_IN_LAYER))))
            attributed.append(dataclasses.replace(finding, in_final_fs=finding.path in paths))
            aliases = [alias for alias in paths if alias != finding.path]
            for number, alias in enumerate(aliases[:MAX_ALIASES], 1):
                evidence = {**finding.evidence, "hard_link_to": finding.path}
                if number == MAX_ALIASES and len(aliases) > MAX_ALIASES:
                    evidence["more_hard_links"] = len(aliases) - MAX_ALIASES
                attributed.append(dataclasses.replace(finding, path=alias, in_final_fs=True, evidence=evidence))
    return attributed
