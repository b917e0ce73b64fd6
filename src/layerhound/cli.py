"""The ``layerhound`` command line.

Exit status (DESIGN.md): 0 when nothing is at or above ``--fail-on``, 1 when
something is, 2 for a usage error or an image that could not be scanned.
A user mistake prints one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import enum
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from layerhound import __version__
from layerhound.detectors.registry import ALL_DETECTORS, rules_version
from layerhound.errors import LayerhoundError, ReferenceError_, UsageError
from layerhound.model import ImageResult, Verdict
from layerhound.report.json_report import render_json
from layerhound.report.table import render_table
from layerhound.scan import scan_references
from layerhound.sources.refs import parse_reference

EXIT_OK, EXIT_FOUND, EXIT_ERROR = 0, 1, 2


class OutputFormat(str, enum.Enum):
    TABLE = "table"
    JSON = "json"


FAIL_ON_ALIASES: dict[str, Verdict | None] = {
    "reachable": Verdict.BACKDOORED_REACHABLE,
    "backdoored": Verdict.BACKDOORED_DORMANT,
    "dormant": Verdict.BACKDOORED_DORMANT,
    "history": Verdict.BACKDOOR_IN_HISTORY,
    "source": Verdict.SOURCE_ARTIFACTS,
    "affected": Verdict.AFFECTED_VERSION_NOT_INJECTED,
    "never": None,
}
FAIL_ON_ALIASES.update({v.value: v for v in Verdict if v not in (Verdict.CLEAN, Verdict.ERROR)})


def _fail_on(value: str) -> str:
    if value not in FAIL_ON_ALIASES:
        choices = ", ".join(FAIL_ON_ALIASES)
        raise argparse.ArgumentTypeError(f"unknown level {value!r} (choose from {choices})")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="layerhound",
        description="Find the XZ Utils backdoor (CVE-2024-3094) in container images, from the bytes.",
    )
    parser.add_argument("--version", action="version", version=f"layerhound {__version__} (rules {rules_version()})")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    scan = commands.add_parser(
        "scan",
        help="scan images and print a verdict for each",
        description="Scan images for CVE-2024-3094. References: oci:DIR[:REF], "
        "oci-archive:FILE[:REF], docker-archive:FILE[:REF], rootfs:DIR, file:PATH.",
    )
    scan.add_argument("references", nargs="+", metavar="REF", help="image reference(s)")
    scan.add_argument("--format", choices=[f.value for f in OutputFormat], default="table")
    scan.add_argument("-o", "--output", type=Path, help="write the report to FILE instead of stdout")
    scan.add_argument("--platform", default="all", help="'all' (default) or OS/ARCH[/VARIANT] of an index")
    scan.add_argument(
        "--fail-on",
        type=_fail_on,
        default="backdoored",
        metavar="LEVEL",
        help="exit 1 when any image is at or above LEVEL: reachable, backdoored (default), "
        "history, source, affected, never (or a verdict name)",
    )
    scan.add_argument("--no-progress", action="store_true", help="never draw a progress display")
    return parser


def exit_status(results: Sequence[ImageResult], fail_on: Verdict | None) -> int:
    """Errors win over findings: a partial scan must not look like a clean one."""
    if any(r.verdict is Verdict.ERROR for r in results):
        return EXIT_ERROR
    if fail_on is not None and any(r.verdict.rank >= fail_on.rank for r in results):
        return EXIT_FOUND
    return EXIT_OK


def _write(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    output = output.expanduser()
    if not output.parent.is_dir():
        raise UsageError(f"cannot write {output}: directory {output.parent} does not exist")
    # Written beside the target and renamed, so a killed scan never leaves half a report.
    fd, tmp = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.")
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)  # mkstemp's 0600 is not what a report file should have
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, output)


def run_scan(args: argparse.Namespace) -> int:
    for reference in args.references:
        try:
            parse_reference(reference)
        except ReferenceError_ as exc:
            raise UsageError(str(exc)) from exc
    show_progress = not args.no_progress and sys.stderr.isatty()
    results: list[ImageResult] = []
    if show_progress:
        from layerhound.report.progress import ProgressObserver

        with ProgressObserver() as progress:
            results.extend(scan_references(args.references, ALL_DETECTORS, args.platform, progress))
    else:
        results.extend(scan_references(args.references, ALL_DETECTORS, args.platform, None))

    if args.format == OutputFormat.JSON.value:
        text = render_json(results, rules_version())
    else:
        color = args.output is None and sys.stdout.isatty() and "NO_COLOR" not in os.environ
        text = render_table(results, color=color)
    _write(text, args.output)
    return exit_status(results, FAIL_ON_ALIASES[args.fail_on])


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "scan":
            return run_scan(args)
        raise UsageError(f"unknown command {args.command}")
    except UsageError as exc:
        print(f"layerhound: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except LayerhoundError as exc:
        print(f"layerhound: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("layerhound: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
