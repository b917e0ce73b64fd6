"""What to move to: the newest clean tag of a repository, and the clean base to rebuild on.

The remedy for an old infected tag is a maintained one: among the tags the
store knows for the same repository (each at the digest it pointed to when
last seen), the newest by date (push date, else build date) whose every image
is ``clean``. For a derived image, whose implant comes from its base, the
same question is asked of the base's repository: the image must be rebuilt on
a clean base, not just re-pulled.

With a ``Prober`` (the command gives one unless ``--no-scan``), the store's
knowledge is brought up to date first: the repository's tags are listed again
(new tags appear, moved tags are seen), then unjudged tags are judged, newest
first, until a clean one is found; nothing older than that is pulled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from layerhound.lineage.graph import Lineage, Node
from layerhound.model import Verdict
from layerhound.registry.hub import parse_timestamp
from layerhound.store.results import ResultStore, TagRow


class Prober(Protocol):
    """How advice learns what the store lacks (a crawl, in the command)."""

    def list_tags(self, repository: str) -> None:
        """Record every current tag of ``registry/repository`` (no image is judged)."""

    def judge(self, reference: str) -> None:
        """Judge ``registry/repository:tag`` (or ``@digest``) into the store."""


@dataclass(frozen=True)
class Candidate:
    """A tag of a repository at its current digest, with its judgement."""

    repository: str
    tag: str
    digest: str
    date: str | None
    verdict: Verdict | None
    """The worst verdict of its images (None: not judged)."""

    @property
    def label(self) -> str:
        return f"{self.repository}:{self.tag}"

    def document(self) -> dict[str, Any]:
        return {"repository": self.repository, "tag": self.tag, "digest": self.digest, "date": self.date,
                "verdict": self.verdict.value if self.verdict else None}


@dataclass
class Advice:
    reference: str
    image: Node | None
    base: Node | None = None
    """The nearest infected image it is built on, if any."""
    move_to: Candidate | None = None
    rebuild_on: Candidate | None = None
    lines: list[str] = field(default_factory=list)
    """The advice for a person, with the reasons (date, verdict)."""

    def document(self) -> dict[str, Any]:
        verdict = self.image.verdict.verdict.value if self.image and self.image.verdict else None
        return {
            "schema": "layerhound.advice/v1",
            "reference": self.reference,
            "image": self.image.label if self.image else None,
            "verdict": verdict,
            "base": self.base.base_document() if self.base else None,
            "move_to": self.move_to.document() if self.move_to else None,
            "rebuild_on": self.rebuild_on.document() if self.rebuild_on else None,
            "advice": self.lines,
        }


def repository_of(reference: str) -> tuple[str, str | None, str | None]:
    """``registry/repository``, tag, digest of a reference as the store names them."""
    from layerhound.sources.refs import parse_docker_name

    text = reference.removeprefix("docker://")
    registry, repository, tag, digest = parse_docker_name(text)
    explicit_tag = tag if ("@" not in text or ":" in text.split("@")[0].rsplit("/", 1)[-1]) else None
    return f"{registry}/{repository}", explicit_tag, digest


def candidates(store: ResultStore, rules: str, repository: str) -> list[Candidate]:
    """Every tag of ``repository`` at its current digest, newest first (undated last)."""
    latest: dict[str, TagRow] = {}
    for row in store.tags(repository):
        known = latest.get(row.tag)
        if known is None or (row.last_observed, row.first_observed) > (known.last_observed, known.first_observed):
            latest[row.tag] = row
    verdicts = store.verdicts(rules)
    found = []
    for row in latest.values():
        images = [image for image, _ in store.children(row.digest)] or [row.digest]
        judged = [verdicts[i].verdict for i in images if i in verdicts]
        worst: Verdict | None = None  # not judged whole: no candidate yet
        if len(judged) == len(images):  # an image that could not be judged makes the tag no clean one
            worst = Verdict.ERROR if Verdict.ERROR in judged else max(judged, key=lambda v: v.rank)
        date = row.date
        if date is None:
            created = [store.image(i) for i in images]
            dates = [c.created for c in created if c is not None and c.created]
            date = max(dates) if dates else None
        found.append(Candidate(repository, row.tag, row.digest, date, worst))
    return sorted(found, key=lambda c: (-_timestamp(c.date), c.tag))


def _timestamp(date: str | None) -> float:
    """Seconds since the epoch of an ISO date (0 when unknown: undated tags sort last)."""
    when = parse_timestamp(date) if date else None
    return when.timestamp() if when is not None else 0.0


def newest_clean(
    store: ResultStore, rules: str, repository: str, prober: Prober | None
) -> tuple[Candidate | None, list[Candidate]]:
    """The newest clean tag (listing the tags and judging unjudged ones, newest first, with a ``prober``)."""
    if prober is not None:
        prober.list_tags(repository)
    found = candidates(store, rules, repository)
    for index, candidate in enumerate(found):
        if candidate.verdict in (None, Verdict.ERROR) and prober is not None:  # judge it (again)
            prober.judge(f"{candidate.repository}:{candidate.tag}")
            candidate = next((c for c in candidates(store, rules, repository) if c.tag == candidate.tag), candidate)
            found[index] = candidate
        if candidate.verdict is Verdict.CLEAN:
            return candidate, found
    return None, found


def advise(store: ResultStore, rules: str, reference: str, prober: Prober | None = None) -> Advice:
    """What the owner of ``reference`` should move to, and why."""
    repository, tag, digest = repository_of(reference)
    lineage = Lineage.from_store(store, rules)
    nodes = _find(lineage, repository, tag, digest)
    if not nodes and prober is not None:
        prober.judge(f"{repository}:{tag}" if tag else f"{repository}@{digest}")
        lineage = Lineage.from_store(store, rules)
        nodes = _find(lineage, repository, tag, digest)
    label = f"{repository}:{tag}" if tag else f"{repository}@{digest}"
    if not nodes:
        return Advice(reference, None, lines=[f"{label}: not in the store and could not be judged"])
    node = max(nodes, key=lambda n: n.verdict.verdict.rank if n.verdict else -2)
    advice = Advice(reference, node)
    verdict = node.verdict.verdict if node.verdict else None
    shown = verdict.value if verdict else "not judged"
    created = f", built {node.image.created}" if node.image.created else ""
    advice.lines.append(f"{label} ({node.digest[:19]}…{created}) is {shown}")
    move_to, seen = newest_clean(store, rules, repository, prober)
    advice.move_to = move_to
    if verdict is Verdict.CLEAN:
        newer = move_to if move_to is not None and move_to.tag != tag else None
        advice.lines.append("nothing to fix" + (f"; the newest clean tag is {_describe(newer)}" if newer else ""))
        return advice
    if move_to is not None and (move_to.tag != tag or move_to.digest != (digest or move_to.digest)):
        advice.lines.append(f"move to {_describe(move_to)}: the newest tag of {repository} judged clean")
    elif move_to is None:
        judged = sum(c.verdict is not None for c in seen)
        advice.lines.append(f"no tag of {repository} is judged clean ({judged} of {len(seen)} tags judged)")
    base = lineage.nearest_infected(node.digest)
    advice.base = base
    if base is not None:
        advice.lines.append(
            f"it inherits the implant from its base {base.label} "
            f"({base.verdict.verdict.value if base.verdict else '?'})"
        )
        if base.names:
            base_repository = base.names[0].repository
            rebuild, _ = newest_clean(store, rules, base_repository, prober)
            advice.rebuild_on = rebuild
            if rebuild is not None:
                advice.lines.append(f"rebuild it on {_describe(rebuild)}: the newest clean tag of {base_repository}")
            else:
                advice.lines.append(f"no clean tag of {base_repository} is known to rebuild on")
    return advice


def _describe(candidate: Candidate) -> str:
    date = f", {candidate.date[:10]}" if candidate.date else ""
    verdict = candidate.verdict.value if candidate.verdict else "?"
    return f"{candidate.label} ({candidate.digest[:19]}…{date}, {verdict})"


def _find(lineage: Lineage, repository: str, tag: str | None, digest: str | None) -> list[Node]:
    found = []
    for node in lineage.nodes.values():
        for name in node.names:
            if name.repository != repository:
                continue
            if digest and digest in (name.digest, node.digest):
                found.append(node)
                break
            if not digest and name.tag == tag and name.current:
                found.append(node)
                break
    if not found and digest:
        found = [n for n in lineage.nodes.values() if n.digest == digest]
    return found
