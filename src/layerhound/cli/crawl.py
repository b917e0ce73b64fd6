"""``layerhound crawl REPO…``: sweep repositories (every tag, or a window of them) into the results store."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from layerhound.cli.common import (
    EXIT_ERROR,
    add_db_option,
    add_fail_on,
    add_keep_options,
    add_registry_options,
    add_rules_options,
    byte_size,
    exit_status,
    keep_dir,
    positive_int,
    registry_settings,
    use_color,
    with_user_rules,
    write_output,
)
from layerhound.errors import UsageError
from layerhound.report.formats import ReportFormat

if TYPE_CHECKING:
    from layerhound.crawl.targets import Target
    from layerhound.model import ImageResult, Verdict


def add_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    crawl = commands.add_parser(
        "crawl",
        help="judge every tag of repositories (and what is built on them) into the results store",
        description="List each repository's tags (Docker Hub: push dates from the Hub API; elsewhere "
        "tags/list and the config's 'created'), resolve digests with HEAD, skip images already judged at the "
        "current rules version, read each unique layer once (in parallel), and record tags, images, layers, "
        "verdicts and lineage in the results store. Killed and started again, it continues where it stopped. "
        "REPO without a tag means every tag; with :TAG or @DIGEST, that image.",
    )
    crawl.add_argument("repositories", nargs="*", metavar="REPO", help="docker://HOST/NAME[:TAG] or a Docker Hub name")
    crawl.add_argument(
        "--from", dest="from_file", type=Path, metavar="FILE",
        help="more repositories or references, one per line, or the JSON of `kubectl get pods -A -o json` "
        "(every container image, with namespace and pod kept)",
    )
    crawl.add_argument("--since", metavar="DATE", help="only tags dated DATE or later (as `layerhound tags`)")
    crawl.add_argument("--until", metavar="DATE", help="only tags dated DATE or earlier (inclusive)")
    crawl.add_argument("--tags", dest="globs", action="append", default=[], metavar="GLOB",
                       help="only tags whose name matches GLOB (repeatable)")
    crawl.add_argument("--platform", default="all", help="'all' (default) or OS/ARCH[/VARIANT]")
    add_db_option(crawl)
    crawl.add_argument("--jobs", type=positive_int, metavar="N",
                       help="worker processes for layers (default: one per core)")
    crawl.add_argument("--executor", default="local", metavar="local|dask://HOST:PORT",
                       help="where layers are judged: a local process pool (default) or a Dask scheduler")
    crawl.add_argument("--format", choices=[f.value for f in ReportFormat], default="table",
                       help="table (default), json (layerhound.scan/v1 with workloads), sarif, cyclonedx, openvex, "
                       "markdown")
    crawl.add_argument("-o", "--output", type=Path, help="write the report to FILE instead of stdout")
    add_fail_on(crawl)
    add_rules_options(crawl)
    add_keep_options(crawl)
    crawl.add_argument("--keep-max", type=byte_size, default=None, metavar="SIZE",
                       help="the bound on the kept files' total size (default 10G); when reached, later layers are "
                       "not kept and a message says so")
    crawl.add_argument("--no-keep-files", action="store_true",
                       help="keep no copies of the candidate files (then `layerhound rejudge` cannot re-judge "
                       "what this crawl judged)")
    crawl.add_argument("--no-progress", action="store_true", help="no progress lines on stderr")
    add_registry_options(crawl)
    crawl.set_defaults(run=run)


def targets_of(args: argparse.Namespace) -> list[Target]:
    from layerhound.crawl.targets import parse_target, read_targets

    targets = [parse_target(text) for text in args.repositories]
    if args.from_file is not None:
        targets.extend(read_targets(args.from_file.expanduser()))
    if not targets:
        raise UsageError("crawl: name at least one repository, or give --from FILE")
    return targets


def run(args: argparse.Namespace) -> int:
    from layerhound.crawl.executor import make_executor
    from layerhound.crawl.run import Crawler, crawl_status
    from layerhound.detectors.registry import ALL_DETECTORS, rules_version
    from layerhound.registry.session import RegistrySession
    from layerhound.registry.tags import date_window
    from layerhound.report.crawl_progress import CrawlProgress
    from layerhound.report.formats import render
    from layerhound.report.json_report import scan_document
    from layerhound.sources.manifest import parse_platform
    from layerhound.store.kept_files import DEFAULT_MAX, KeepFiles
    from layerhound.store.results import ResultStore

    targets = targets_of(args)
    if args.no_keep_files and (args.keep_max is not None or args.keep_dir is not None):
        raise UsageError("--no-keep-files keeps nothing: drop --keep-max and --keep-dir")
    keep = None if args.no_keep_files else KeepFiles(keep_dir(args), DEFAULT_MAX if args.keep_max is None
                                                                  else args.keep_max)
    detectors = with_user_rules(ALL_DETECTORS, args)
    date_window(args.since, args.until)  # bad dates fail before anything is opened
    parse_platform(args.platform)
    settings = registry_settings(args)
    ResultStore.create_sqlite_dir(args.db)
    progress = None if args.no_progress else CrawlProgress()
    with ResultStore.open(args.db) as store, RegistrySession(settings) as session:
        executor = make_executor(args.executor, args.jobs)
        if progress is not None:
            progress.note(f"store {store.db.label}; layers on {executor.description}")
        try:
            crawler = Crawler(
                store, session, executor, since=args.since, until=args.until, globs=args.globs,
                platform=args.platform, observer=progress, detectors=detectors, keep=keep,
            )
            summary = crawler.run(targets, _arguments(args))
        finally:
            executor.close()
            if progress is not None:
                progress.close()
    print(crawl_status(summary), file=sys.stderr)
    if summary.stop_reason:
        print(f"layerhound: {summary.stop_reason}", file=sys.stderr)
    for warning in summary.warnings:
        print(f"layerhound: warning: {warning}", file=sys.stderr)
    fail_on = args.fail_on
    if args.format == ReportFormat.JSON.value:
        document = scan_document(summary.results, rules_version(detectors))
        if summary.workloads:
            document["workloads"] = [
                {"namespace": ns, "pod": pod, "container": container, "image": image, "ref": result.ref,
                 "digest": result.digest, "verdict": result.verdict.value}
                for ns, pod, container, image, result in summary.workloads
            ]
        text = json.dumps(document, indent=2) + "\n"
    elif args.format == ReportFormat.TABLE.value:
        text = render(ReportFormat.TABLE, summary.results, rules_version(detectors), color=use_color(args.output))
        text += _workload_lines(summary.workloads, fail_on)
    else:
        text = render(ReportFormat(args.format), summary.results, rules_version(detectors))
    write_output(text, args.output)
    status = exit_status(summary.results, fail_on)
    return EXIT_ERROR if summary.status != "finished" else status


def _workload_lines(workloads: list[tuple[str, str, str, str, ImageResult]], fail_on: Verdict | None) -> str:
    if not workloads:
        return ""
    lines = ["", "Workloads (namespace/pod container: image → verdict):"]
    for namespace, pod, container, image, result in workloads:
        verdict = result.verdict
        flag = " !" if fail_on is not None and verdict.rank >= fail_on.rank else ""
        lines.append(f"  {namespace}/{pod} {container}: {image} → {verdict.value}{flag}")
    return "\n".join(lines) + "\n"


def _arguments(args: argparse.Namespace) -> dict[str, object]:
    """What the run recorded in the store (never credentials)."""
    return {
        "repositories": list(args.repositories),
        "from": str(args.from_file) if args.from_file else None,
        "since": args.since,
        "until": args.until,
        "tags": list(args.globs),
        "platform": args.platform,
        "executor": args.executor,
        "jobs": args.jobs,
        "keep_files": not args.no_keep_files,
    }
