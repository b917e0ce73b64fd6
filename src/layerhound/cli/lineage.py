"""``layerhound lineage``: which images are built on which, from the results store."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from layerhound.cli.common import EXIT_OK, OutputFormat, add_db_option, write_output
from layerhound.errors import UsageError

if TYPE_CHECKING:
    from layerhound.lineage.graph import Lineage, Node


def add_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    lineage = commands.add_parser(
        "lineage",
        help="show what is built on an image (and what it is built on), or every infected base",
        description="An image whose diff_id chain begins with another image's complete chain is built on it. "
        "Give REF (repository:tag, repository@digest, an image digest) or sha256:LAYER (a layer's blob digest "
        "or diff_id) for its ancestry and descendants as a tree; --infected lists every infected base with all "
        "its descendants, however deep, and how each was judged.",
    )
    lineage.add_argument("reference", nargs="?", metavar="REF|sha256:LAYER")
    lineage.add_argument("--infected", action="store_true", help="every infected base and its descendants")
    add_db_option(lineage)
    lineage.add_argument("--format", choices=[f.value for f in OutputFormat], default="table")
    lineage.add_argument("-o", "--output", type=Path, help="write to FILE instead of stdout")
    lineage.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from layerhound.crawl.run import verdict_version
    from layerhound.lineage.graph import Lineage
    from layerhound.store.results import ResultStore
    if bool(args.reference) == bool(args.infected):
        raise UsageError("lineage: give either REF|sha256:LAYER or --infected")
    with ResultStore.open(args.db) as store:
        lineage = Lineage.from_store(store, verdict_version())
    if args.infected:
        roots = lineage.infected_bases()
        title = f"{len(roots)} infected base image(s)"
    else:
        roots = _roots_for(lineage, args.reference)
        title = ""
    if args.format == OutputFormat.JSON.value:
        document = {"schema": "layerhound.lineage/v1", "roots": [_tree_document(lineage, r) for r in roots]}
        write_output(json.dumps(document, indent=2) + "\n", args.output)
        return EXIT_OK
    lines = [title] if title else []
    for root in roots:
        ancestry = lineage.ancestors(root.digest)
        if ancestry and not args.infected:
            lines.append("built on: " + " ← ".join(_line(n) for n in ancestry))
        lines.extend(render_tree(lineage, root))
        lines.append("")
    write_output("\n".join(lines).rstrip("\n") + "\n", args.output)
    return EXIT_OK


def _roots_for(lineage: Lineage, reference: str) -> list[Node]:
    layer = reference.startswith("sha256:") and not any(n.digest == reference for n in lineage.nodes.values())
    if layer:
        carriers = lineage.with_layer(reference)
        if not carriers:
            found = lineage.find(reference)
            if found:
                return found
            raise UsageError(f"lineage: no image or layer {reference} in the store")
        inside = {n.digest for n in carriers}
        return [n for n in carriers if n.parent not in inside]
    found = lineage.find(reference)
    if not found:
        raise UsageError(f"lineage: {reference} is not in the store (crawl it first)")
    return found


def _line(node: Node) -> str:
    verdict = node.verdict.verdict.value if node.verdict else "not judged"
    return f"{node.label} [{verdict}]"


def render_tree(lineage: Lineage, root: Node) -> list[str]:
    """``root`` and its descendants, drawn with box characters."""
    lines = [_line(root)]

    def walk(node: Node, prefix: str) -> None:
        for index, child in enumerate(node.children):
            last = index == len(node.children) - 1
            child_node = lineage.nodes[child]
            lines.append(f"{prefix}{'└── ' if last else '├── '}{_line(child_node)}")
            walk(child_node, prefix + ("    " if last else "│   "))

    walk(root, "")
    return lines


def _tree_document(lineage: Lineage, node: Node) -> dict[str, Any]:
    return {
        "image": node.digest,
        "label": node.label,
        "names": [{"repository": n.repository, "tag": n.tag, "digest": n.digest, "current": n.current}
                  for n in node.names],
        "verdict": node.verdict.verdict.value if node.verdict else None,
        "ancestors": [a.digest for a in lineage.ancestors(node.digest)],
        "children": [_tree_document(lineage, lineage.nodes[c]) for c in node.children],
    }
