"""``--format markdown``: a compact summary for CI job summaries and pull-request comments.

Counts by verdict, one table row per image with its verdict and main reason,
and the evidence of every image that is not clean in a collapsible block.
Image references, paths and reasons come from the images (attacker-controlled):
everything is escaped, so a tag named ``<script>`` or ``a|b`` stays text and
cannot break the table.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import Sequence

from layerhound import __version__
from layerhound.model import ImageResult, Verdict

ICON = {
    Verdict.BACKDOORED_REACHABLE: "🔴",
    Verdict.BACKDOORED_DORMANT: "🔴",
    Verdict.BACKDOOR_IN_HISTORY: "🟠",
    Verdict.SOURCE_ARTIFACTS: "🟡",
    Verdict.AFFECTED_VERSION_NOT_INJECTED: "🟡",
    Verdict.CLEAN: "🟢",
    Verdict.ERROR: "⚪",
}
_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def cell(text: str) -> str:
    """Text safe in a Markdown table cell: no HTML, no emphasis, code, links or pipes, no line breaks
    (a cell never starts a line, so what only means something there stays as it is)."""
    flat = " ".join(text.split())
    return _SPECIAL.sub(r"\\\1", html.escape(flat, quote=False)).replace("@", "&#64;")  # no @mentions


def render_markdown(results: Sequence[ImageResult], rules_version: str) -> str:
    counts = Counter(r.verdict for r in results)
    lines = [
        "## layerhound: CVE-2024-3094 (XZ Utils backdoor)",
        "",
        f"{len(results)} image(s) · layerhound {cell(__version__)} · rules `{rules_version}`",
        "",
        "| verdict | images |",
        "|---|---:|",
    ]
    lines += [f"| {ICON[v]} {v.value} | {counts[v]} |" for v in Verdict if counts[v]]
    lines += ["", "| image | platform | verdict | main reason |", "|---|---|---|---|"]
    for result in results:
        reason = result.reasons[0] if result.reasons else ""
        lines.append(
            f"| {cell(result.ref)} | {cell(result.platform or '-')} | {ICON[result.verdict]} {result.verdict.value} "
            f"| {cell(reason[:300])} |"
        )
    for result in results:
        if result.verdict is Verdict.CLEAN:
            continue
        summary = html.escape(" ".join(f"{result.ref}: {result.verdict.value}".split())).replace("@", "&#64;")
        lines += ["", f"<details><summary>{summary}</summary>", ""]
        lines += [f"- {cell(reason)}" for reason in result.reasons]
        if result.findings:
            lines += ["", "| rule | kind | path | layer | where |", "|---|---|---|---|---|"]
            for finding in result.findings:
                where = "final filesystem" if finding.in_final_fs else "lower layer"
                layer = (finding.layer or "-")[:19]
                lines.append(f"| {cell(finding.rule)} | {finding.kind.value} | {cell(finding.path)} | {cell(layer)} "
                             f"| {where} |")
        lines += ["", "</details>"]
    return "\n".join(lines) + "\n"
