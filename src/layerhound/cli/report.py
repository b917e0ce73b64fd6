"""``layerhound report --db URL``: a crawl's store in any report format, nothing judged again."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from layerhound.cli.common import (
    add_db_option,
    add_fail_on,
    exit_status,
    use_color,
    write_output,
)
from layerhound.errors import ReferenceError_, UsageError
from layerhound.report.formats import ReportFormat

if TYPE_CHECKING:
    from layerhound.model import ImageResult


def add_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    report = commands.add_parser(
        "report",
        help="report every image of a results store (what crawls judged) in any format",
        description="Render the judgements a crawl stored, at the current rules version, in any report format: "
        "table, json (layerhound.scan/v1), sarif (2.1.0), cyclonedx (1.6, VEX), openvex (0.2.0), markdown. "
        "Nothing is fetched or judged again; the VEX formats carry advise's remedy for affected images; "
        "`layerhound crawl` brings the store up to date.",
    )
    add_db_option(report)
    report.add_argument("--format", choices=[f.value for f in ReportFormat], default="table")
    report.add_argument("-o", "--output", type=Path, help="write the report to FILE instead of stdout")
    report.add_argument("--repository", action="append", default=[], metavar="NAME",
                        help="only images of this repository (registry/name; repeatable)")
    add_fail_on(report)
    report.set_defaults(run=run)


def advice_for(db: str | None, results: list[ImageResult]) -> dict[str, str]:
    """What ``advise`` says (from the store alone) for every image that carries the implant."""
    from layerhound.crawl.run import verdict_version
    from layerhound.lineage.advice import advise, repository_of
    from layerhound.model import Verdict
    from layerhound.report.vex import action_key
    from layerhound.store.results import ResultStore

    actions = {}
    with ResultStore.open(db) as store:
        for result in results:
            if result.verdict.rank >= Verdict.BACKDOOR_IN_HISTORY.rank and result.digest:
                # By digest: the tag in the label may have moved on to another image since.
                try:
                    repository = repository_of(result.ref)[0]
                except ReferenceError_:
                    continue  # a local image (oci:, rootfs:): no repository to advise on
                advice = advise(store, verdict_version(), f"{repository}@{result.digest}")
                if advice.move_to is not None or advice.rebuild_on is not None:
                    actions[action_key(result)] = "; ".join(advice.lines[1:])
    return actions


def run(args: argparse.Namespace) -> int:
    from layerhound.crawl.run import verdict_version
    from layerhound.detectors.registry import rules_version
    from layerhound.report.formats import render
    from layerhound.report.from_store import stored_images
    from layerhound.store.results import ResultStore

    with ResultStore.open(args.db) as store:
        results = stored_images(store, verdict_version())
    if args.repository:
        wanted = tuple(f"{r.removeprefix('docker://').rstrip('/')}:" for r in args.repository)
        results = [r for r in results if r.ref.startswith(wanted)]
    if not results:
        raise UsageError("report: the store holds no image judged at the current rules version (crawl first)")
    fmt = ReportFormat(args.format)
    actions = advice_for(args.db, results) if fmt in (ReportFormat.OPENVEX, ReportFormat.CYCLONEDX) else None
    write_output(render(fmt, results, rules_version(), color=use_color(args.output), actions=actions), args.output)
    return exit_status(results, args.fail_on)
