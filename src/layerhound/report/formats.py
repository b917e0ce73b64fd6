"""Every report format behind one call, chosen by name (``--format``)."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the command line reads the names without loading the model
    from layerhound.model import ImageResult


class ReportFormat(str, enum.Enum):
    TABLE = "table"
    JSON = "json"
    SARIF = "sarif"
    CYCLONEDX = "cyclonedx"
    OPENVEX = "openvex"
    MARKDOWN = "markdown"
    HTML = "html"


def render(
    fmt: ReportFormat,
    results: Sequence[ImageResult],
    rules_version: str,
    *,
    color: bool = False,
    actions: Mapping[str, str] | None = None,
) -> str:
    """The report of ``results`` in ``fmt``; ``actions`` (image reference → what to do) feed the VEX formats."""
    if fmt is ReportFormat.CYCLONEDX:
        from layerhound.report.cyclonedx import render_cyclonedx

        return render_cyclonedx(results, rules_version, actions)
    if fmt is ReportFormat.OPENVEX:
        from layerhound.report.vex import render_openvex

        return render_openvex(results, rules_version, actions)
    if fmt is ReportFormat.JSON:
        from layerhound.report.json_report import render_json

        return render_json(results, rules_version)
    if fmt is ReportFormat.SARIF:
        from layerhound.report.sarif import render_sarif

        return render_sarif(results, rules_version)
    if fmt is ReportFormat.HTML:
        from layerhound.report.html import render_html

        return render_html(results, rules_version)
    if fmt is ReportFormat.MARKDOWN:
        from layerhound.report.markdown import render_markdown

        return render_markdown(results, rules_version)
    from layerhound.report.table import render_table

    return render_table(results, color=color)
