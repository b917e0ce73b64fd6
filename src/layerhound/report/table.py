"""``--format table``: a summary for a person at a terminal (the default)."""

from __future__ import annotations

import io
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

from layerhound.model import ImageResult, Verdict

STYLES = {
    Verdict.BACKDOORED_REACHABLE: "bold white on red",
    Verdict.BACKDOORED_DORMANT: "bold red",
    Verdict.BACKDOOR_IN_HISTORY: "red",
    Verdict.SOURCE_ARTIFACTS: "yellow",
    Verdict.AFFECTED_VERSION_NOT_INJECTED: "yellow",
    Verdict.CLEAN: "green",
    Verdict.ERROR: "bold magenta",
}


def render_table(results: Sequence[ImageResult], color: bool = False, width: int = 120) -> str:
    """The verdict table, then the reasons and findings of every image that is not clean."""
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=color, color_system="standard" if color else None,
                      width=width, highlight=False, soft_wrap=False)
    table = Table(title="layerhound: CVE-2024-3094 (XZ Utils backdoor)", show_lines=False)
    table.add_column("image", overflow="fold")
    table.add_column("platform")
    table.add_column("from")
    table.add_column("verdict")
    table.add_column("layers", justify="right")
    table.add_column("findings", justify="right")
    for result in results:
        table.add_row(
            result.ref,
            result.platform or "-",
            result.source or "-",
            Text(result.verdict.value, style=STYLES[result.verdict]),
            str(len(result.layers)),
            str(len(result.findings)),
        )
    console.print(table)
    for result in results:
        if result.verdict is Verdict.CLEAN:
            continue
        label = f"{result.ref}" + (f" [{result.platform}]" if result.platform else "")
        console.print(Text(f"\n{label}: {result.verdict.value}", style=STYLES[result.verdict]))
        for reason in result.reasons:
            console.print(f"  - {reason}", markup=False)
        for finding in result.findings:
            where = "final" if finding.in_final_fs else "history"
            console.print(
                f"    [{finding.kind.value}] {finding.rule} {finding.path} ({where})",
                markup=False,
            )
    return buffer.getvalue()
