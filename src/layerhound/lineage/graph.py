"""The lineage graph: image B is built on image A when A's diff_id chain is a
proper prefix of B's.

That is what ``docker build FROM A`` produces: the base's layers, unchanged
and in order, then the new ones. The graph spans repositories (a team's image
on a vendor's base), and every tag an image was ever published under names it,
including tags that have since moved on to another digest (the study's
"historical artifacts"). An image's *nearest infected ancestor* is the closest
image below it whose own verdict says it carries the implant; that is the base
to name when a secondary image inherits it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from layerhound.model import Verdict
from layerhound.store.results import ImageRow, ResultStore, TagRow, VerdictRow

INFECTED = frozenset({Verdict.BACKDOORED_REACHABLE, Verdict.BACKDOORED_DORMANT, Verdict.BACKDOOR_IN_HISTORY})
"""Verdicts of an image that ships the implant's bytes (in its final filesystem or a lower layer)."""


@dataclass(frozen=True, order=True)
class Name:
    """A ``repository:tag`` an image was seen under."""

    current: bool
    """Whether the tag still pointed here at its last observation (False: it moved on)."""
    repository: str
    tag: str
    digest: str
    """The tag's digest (an index's, for a multi-platform tag)."""

    def __str__(self) -> str:
        return f"{self.repository}:{self.tag}"


@dataclass
class Node:
    """One image in the graph."""

    image: ImageRow
    verdict: VerdictRow | None
    names: list[Name] = field(default_factory=list)
    """Current names first, then by repository and tag."""
    parent: str | None = None
    """The digest of the image this one is built on directly (the longest proper prefix chain)."""
    children: list[str] = field(default_factory=list)

    @property
    def digest(self) -> str:
        return self.image.digest

    @property
    def infected(self) -> bool:
        return self.verdict is not None and self.verdict.verdict in INFECTED

    @property
    def label(self) -> str:
        """``repository:tag@digest`` (the best name), or the image's first reference."""
        if self.names:
            name = self.names[0]
            moved = "" if name.current else " (tag since moved)"
            return f"{name}@{self.digest}{moved}"
        return f"{self.image.first_ref}@{self.digest}" if "@" not in self.image.first_ref else self.image.first_ref

    def base_document(self) -> dict[str, Any]:
        """What a descendant's ``base`` says about this image."""
        name = self.names[0] if self.names else None
        return {
            "repository": name.repository if name else None,
            "tag": name.tag if name else None,
            "digest": self.digest,
            "tag_digest": name.digest if name else None,
            "verdict": self.verdict.verdict.value if self.verdict else None,
            "label": self.label,
        }


class Lineage:
    """The graph over every image of a store that has a chain."""

    def __init__(self, nodes: dict[str, Node]) -> None:
        self.nodes = nodes
        by_chain: dict[tuple[str, ...], list[Node]] = {}
        for node in nodes.values():
            if node.image.diff_ids:
                by_chain.setdefault(node.image.diff_ids, []).append(node)
        self._by_chain = by_chain
        for same in by_chain.values():
            same.sort(key=lambda n: (n.image.created or "", n.digest))
        for node in nodes.values():
            chain = node.image.diff_ids
            for length in range(len(chain) - 1, 0, -1):
                below = by_chain.get(chain[:length])
                if below:
                    node.parent = below[0].digest
                    below[0].children.append(node.digest)
                    break
        for node in nodes.values():
            node.children.sort(key=lambda d: natural(self.nodes[d].label))

    @classmethod
    def from_store(cls, store: ResultStore, rules: str) -> Lineage:
        verdicts = store.verdicts(rules)
        names = _names_by_image(store.tags(), store)
        nodes = {
            image.digest: Node(image, verdicts.get(image.digest), sorted(names.get(image.digest, []), key=_name_order))
            for image in store.images()
        }
        return cls(nodes)

    def ancestors(self, digest: str) -> list[Node]:
        """Nearest first."""
        found: list[Node] = []
        node = self.nodes.get(digest)
        while node is not None and node.parent is not None:
            node = self.nodes[node.parent]
            found.append(node)
        return found

    def descendants(self, digest: str) -> Iterator[tuple[int, Node]]:
        """(depth, node) of every image built on ``digest``, depth first, depth 1 = directly on it."""
        stack = [(1, child) for child in reversed(self.nodes[digest].children)] if digest in self.nodes else []
        while stack:
            depth, child = stack.pop()
            node = self.nodes[child]
            yield depth, node
            stack.extend((depth + 1, grandchild) for grandchild in reversed(node.children))

    def nearest_infected(self, digest: str) -> Node | None:
        """The closest infected image below ``digest``: at each level every image with that chain counts
        (a clean or unjudged twin with the same layers must not hide an infected one)."""
        node = self.nodes.get(digest)
        if node is None:
            return None
        chain = node.image.diff_ids
        for length in range(len(chain) - 1, 0, -1):
            infected = [n for n in self._by_chain.get(chain[:length], []) if n.infected]
            if infected:
                return min(infected, key=lambda n: (n.image.created or "", n.digest))
        return None

    def infected_bases(self) -> list[Node]:
        """Infected images with no infected image below them: where an infection starts."""
        roots = [n for n in self.nodes.values() if n.infected and self.nearest_infected(n.digest) is None]
        return sorted(roots, key=lambda n: natural(n.label))

    def with_layer(self, layer: str) -> list[Node]:
        """Images that carry a layer, by blob digest or diff_id, lowest chain first."""
        found = [n for n in self.nodes.values() if layer in n.image.layers or layer in n.image.diff_ids]
        return sorted(found, key=lambda n: (len(n.image.diff_ids), n.label))

    def find(self, reference: str) -> list[Node]:
        """Images a reference names: an image or tag digest, ``repository:tag`` or ``repository@digest``."""
        wanted = reference.removeprefix("docker://")
        if wanted.startswith("sha256:"):
            return [n for n in self.nodes.values() if n.digest == wanted or any(m.digest == wanted for m in n.names)]
        repo, _, digest = wanted.partition("@")
        matches = []
        for node in self.nodes.values():
            for name in node.names:
                same_repository = name.repository == repo or name.repository.endswith("/" + repo)
                if digest and same_repository and digest in (name.digest, node.digest):
                    matches.append(node)
                    break
                if not digest and (str(name) == wanted or str(name).endswith("/" + wanted)) and name.current:
                    matches.append(node)
                    break
        return sorted(matches, key=lambda n: n.label)


def natural(text: str) -> tuple[tuple[int, int | str], ...]:
    """A sort key that puts v2 before v10."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", text))


def _name_order(name: Name) -> tuple[bool, str, str]:
    return (not name.current, name.repository, name.tag)


def _names_by_image(tags: list[TagRow], store: ResultStore) -> dict[str, list[Name]]:
    children = store.all_children()
    """Every (repository, tag) each image digest was seen under, with whether the tag still points there."""
    latest: dict[tuple[str, str], TagRow] = {}
    for row in tags:
        key = (row.repository, row.tag)
        if key not in latest or (row.last_observed, row.first_observed) > (
            latest[key].last_observed, latest[key].first_observed
        ):
            latest[key] = row
    names: dict[str, list[Name]] = {}
    for row in tags:
        current = latest[(row.repository, row.tag)].digest == row.digest
        name = Name(current, row.repository, row.tag, row.digest)
        images = children.get(row.digest) or [row.digest]
        for image in images:
            names.setdefault(image, []).append(name)
    return names
