"""The ``layerhound`` command line.

Exit status (DESIGN.md): 0 when nothing is at or above ``--fail-on``, 1 when
something is, 2 for a usage error, an image that could not be scanned, or a bug
of ours (an internal error: one line on stderr, never Python's own exit 1).
``tags``: 0 when the list was printed (tags that could not be described
completely are flagged, not fatal), 2 for a usage error or a registry failure.
A user mistake prints one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from layerhound import __version__
from layerhound.cli import advise, crawl, lineage, rejudge, report, scan, tags
from layerhound.cli.common import EXIT_ERROR, EXIT_FOUND, EXIT_OK, exit_status
from layerhound.errors import LayerhoundError, UsageError

__all__ = ["EXIT_ERROR", "EXIT_FOUND", "EXIT_OK", "build_parser", "exit_status", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="layerhound",
        description="Find the XZ Utils backdoor (CVE-2024-3094) in container images, from the bytes.",
    )
    parser.add_argument("--version", action=_Version, nargs=0, help="show the version and the rules version, then exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    for command in (scan, tags, crawl, lineage, advise, report, rejudge):
        command.add_command(commands)
    return parser


class _Version(argparse.Action):
    """``--version``, which names the rules version too: the detectors are loaded only when it is asked for."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        from layerhound.detectors.registry import rules_version

        print(f"layerhound {__version__} (rules {rules_version()})")
        parser.exit()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.run(args)
        return status
    except UsageError as exc:
        print(f"layerhound: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except LayerhoundError as exc:
        print(f"layerhound: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("layerhound: interrupted", file=sys.stderr)
        return 130
    except (Exception, RecursionError) as exc:  # a bug of ours: never Python's exit 1, which means "found"
        where = _innermost(exc)
        print(f"layerhound: internal error: {type(exc).__name__}: {str(exc)[:300]}{where} "
              "(a bug of layerhound: please report it)", file=sys.stderr)
        return EXIT_ERROR


def _innermost(exc: BaseException) -> str:
    """`` at FILE:LINE`` of the frame that raised, so a report can name it without a traceback."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return f" at {tb.tb_frame.f_code.co_filename.rsplit('/layerhound/', 1)[-1]}:{tb.tb_lineno}" if tb else ""


if __name__ == "__main__":
    sys.exit(main())

