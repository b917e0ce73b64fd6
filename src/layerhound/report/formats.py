"""Every report format behind one call, chosen by name (``--format``)."""

from __future__ import annotations

import enum
from collections.abc import Sequence

from layerhound.model import ImageResult


class ReportFormat(str, enum.Enum):
    TABLE = "table"
    JSON = "json"
    SARIF = "sarif"
    MARKDOWN = "markdown"


def render(fmt: ReportFormat, results: Sequence[ImageResult], rules_version: str, *, color: bool = False) -> str:
    """The report of ``results`` in ``fmt``."""
    if fmt is ReportFormat.JSON:
        from layerhound.report.json_report import render_json

        return render_json(results, rules_version)
    if fmt is ReportFormat.SARIF:
        from layerhound.report.sarif import render_sarif

        return render_sarif(results, rules_version)
    if fmt is ReportFormat.MARKDOWN:
        from layerhound.report.markdown import render_markdown

        return render_markdown(results, rules_version)
    from layerhound.report.table import render_table

    return render_table(results, color=color)
