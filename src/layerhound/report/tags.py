"""``layerhound tags``: the tag list as a table, or the ``layerhound.tags/v1`` JSON document.

The document (schema in ``report/schema/tags-v1.json``)::

    {"schema": "layerhound.tags/v1",
     "tool": {"name": "layerhound", "version": "0.1.0"},
     "repository": "docker.io/library/debian",
     "source": "docker-hub-api" | "registry",
     "filters": {"since": "2024-03-01T00:00:00Z" | null, "until": … | null,
                 "tags": ["12*"], "platform": "all", "dates": true},
     "counts": {"listed": 300, "shown": 12, "excluded_by_name": 280, "excluded_by_platform": 0,
                "excluded_by_date": 6, "excluded_undated": 2, "errors": 0},
     "tags": [{"name": "12", "digest": "sha256:…", "media_type": "…", "date": "2024-03-12T01:23:45Z",
               "date_source": "pushed" | "created" | null, "platforms": ["linux/amd64"], "error": null}]}

``date_source`` says where a date comes from: ``pushed`` is the registry's
push date (Docker Hub), ``created`` the image config's build time (other
registries know no push dates). ``until`` is the last instant included.
"""

from __future__ import annotations

import datetime
import io
import json
from importlib import resources
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from layerhound import __version__
from layerhound.registry.tags import TagHistory, TagInfo

SCHEMA_ID = "layerhound.tags/v1"


def load_tags_schema() -> dict[str, Any]:
    """The JSON Schema of ``layerhound tags --format json``, shipped with the package."""
    text = resources.files("layerhound.report").joinpath("schema/tags-v1.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def iso(when: datetime.datetime | None) -> str | None:
    """UTC, ``Z`` suffix; fractions of a second only when there are any."""
    if when is None:
        return None
    return when.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")


def tag_document(tag: TagInfo) -> dict[str, Any]:
    return {
        "name": tag.name,
        "digest": tag.digest,
        "media_type": tag.media_type,
        "date": iso(tag.date),
        "date_source": tag.date_source,
        "platforms": list(tag.platforms),
        "error": tag.error,
    }


def tags_document(history: TagHistory) -> dict[str, Any]:
    return {
        "schema": SCHEMA_ID,
        "tool": {"name": "layerhound", "version": __version__},
        "repository": history.repository,
        "source": history.source,
        "filters": {
            "since": iso(history.window.since),
            "until": iso(history.window.until),
            "tags": list(history.globs),
            "platform": history.platform,
            "dates": history.dates,
        },
        "counts": {
            "listed": history.listed,
            "shown": len(history.tags),
            "excluded_by_name": history.excluded_by_name,
            "excluded_by_platform": history.excluded_by_platform,
            "excluded_by_date": history.excluded_by_date,
            "excluded_undated": history.excluded_undated,
            "errors": len(history.problems),
        },
        "tags": [tag_document(t) for t in history.tags],
    }


def render_tags_json(history: TagHistory) -> str:
    return json.dumps(tags_document(history), indent=2) + "\n"


def summary_lines(history: TagHistory) -> list[str]:
    """What the filters left out, and where the dates come from."""
    shown = len(history.tags)
    lines = [f"{shown} of {history.listed} tag{'s' if history.listed != 1 else ''} shown"]
    left_out = [
        (history.excluded_by_name, "by --tags"),
        (history.excluded_by_platform, f"without {history.platform}"),
        (history.excluded_by_date, "outside --since/--until"),
        (history.excluded_undated, "excluded for lack of a date"),
    ]
    details = [f"{count} {reason}" for count, reason in left_out if count]
    if details:
        lines[0] += " (" + "; ".join(details) + ")"
    if history.source == "registry" and history.dates:
        lines.append("dates marked 'created' are the image config's build time: this registry keeps no push dates")
    elif history.source == "registry":
        lines.append("dates not looked up (--no-dates)")
    if history.problems:
        lines.append(f"{len(history.problems)} tag(s) could not be described completely:")
        lines.extend(f"  {t.name}: {t.error}" for t in history.problems)
    return lines


def render_tags_table(history: TagHistory, color: bool = False, width: int = 200) -> str:
    """One row per tag (newest first), then the summary."""
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=color, color_system="standard" if color else None,
                      width=width, highlight=False, soft_wrap=False)
    console.print(f"tags of {history.repository}", markup=False)
    table = Table()
    table.add_column("tag", overflow="fold")
    table.add_column("date", no_wrap=True)
    table.add_column("from", no_wrap=True)
    table.add_column("digest", no_wrap=True)
    table.add_column("platforms", overflow="fold")
    for tag in history.tags:
        date = tag.date.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ") if tag.date else "-"
        table.add_row(
            Text(tag.name, style="bold magenta" if tag.error else ""),
            date,
            tag.date_source or "-",
            tag.digest or "-",
            ", ".join(tag.platforms) or "-",
        )
    console.print(table)
    for line in summary_lines(history):
        console.print(line, markup=False)
    return buffer.getvalue()
