"""``layerhound tags REPO``: the tag history of a repository."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from layerhound.cli.common import (
    EXIT_OK,
    OutputFormat,
    add_registry_options,
    registry_settings,
    use_color,
    write_output,
)
from layerhound.errors import UsageError
from layerhound.registry import ENV_HUB_API


def add_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``layerhound tags REPO``: the tag history of a repository."""
    tags = commands.add_parser(
        "tags",
        help="list every tag of a repository with its date, digest and platforms",
        description="List every tag of a repository: name, date, digest (HEAD: not a pull on Docker Hub; "
        "the index digest for a multi-platform tag) and platforms. Docker Hub repositories are read "
        f"through the Hub API, which has push dates (its URL: {ENV_HUB_API}, default https://hub.docker.com); "
        "no manifest is fetched there. Other registries keep no dates: the date is the image config's "
        "'created' (build time), which costs the manifest and the config blob per distinct digest "
        "(--no-dates skips that).",
    )
    tags.add_argument(
        "repository", metavar="REPO",
        help="docker://HOST/NAME, or a Docker Hub name: debian, library/debian, user/repo (no tag)",
    )
    tags.add_argument(
        "--since", metavar="DATE",
        help="only tags dated DATE or later (inclusive; the date is the push date on Docker Hub, the image "
        "config's 'created' elsewhere); DATE is YYYY-MM-DD (from the start of that day, UTC) "
        "or an ISO 8601 date-time (UTC unless it has an offset). Tags without any date are then left out "
        "(and counted)",
    )
    tags.add_argument(
        "--until", metavar="DATE",
        help="only tags dated DATE or earlier (inclusive: YYYY-MM-DD includes that whole day, UTC)",
    )
    tags.add_argument(
        "--tags", dest="globs", action="append", default=[], metavar="GLOB",
        help="only tags whose name matches GLOB (fnmatch: * ? [..], case-sensitive; repeatable, any match)",
    )
    tags.add_argument(
        "--platform", default="all",
        help="'all' (default) or OS/ARCH[/VARIANT]: only tags with an image for it, and only those platforms",
    )
    tags.add_argument("--format", choices=[f.value for f in OutputFormat], default="table")
    tags.add_argument("-o", "--output", type=Path, help="write the list to FILE instead of stdout")
    tags.add_argument(
        "--no-dates", action="store_true",
        help="do not fetch manifests and configs for dates (other registries than Docker Hub); "
        "cannot be combined with --since/--until",
    )
    add_registry_options(tags)
    tags.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # Bad arguments fail before a password is read or anything is fetched.
    from layerhound.registry.credentials import DOCKER_HUB
    from layerhound.registry.session import RegistrySession
    from layerhound.registry.tags import date_window, parse_repository, tag_history
    from layerhound.report.tags import render_tags_json, render_tags_table
    from layerhound.sources.manifest import parse_platform

    registry, _ = parse_repository(args.repository)
    if date_window(args.since, args.until).active and args.no_dates and registry != DOCKER_HUB:
        raise UsageError("--since/--until need dates: they cannot be combined with --no-dates")
    parse_platform(args.platform)
    with RegistrySession(registry_settings(args)) as session:
        history = tag_history(
            args.repository, session, args.since, args.until, args.globs, args.platform, dates=not args.no_dates
        )
    if args.format == OutputFormat.JSON.value:
        text = render_tags_json(history)
        for tag in history.problems:
            print(f"layerhound: warning: {tag.name}: {tag.error}", file=sys.stderr)
    else:
        text = render_tags_table(history, color=use_color(args.output))
    write_output(text, args.output)
    return EXIT_OK
