"""The ``layerhound`` command line.

Exit status (DESIGN.md): 0 when nothing is at or above ``--fail-on``, 1 when
something is, 2 for a usage error or an image that could not be scanned.
``tags``: 0 when the list was printed (tags that could not be described
completely are flagged, not fatal), 2 for a usage error or a registry failure.
A user mistake prints one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import enum
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from layerhound import __version__
from layerhound.detectors.registry import ALL_DETECTORS, rules_version
from layerhound.errors import LayerhoundError, ReferenceError_, UsageError
from layerhound.model import ImageResult, Verdict
from layerhound.registry.credentials import DOCKER_HUB
from layerhound.registry.hub import ENV_HUB_API
from layerhound.registry.session import RegistrySession
from layerhound.registry.settings import DEFAULT_CONCURRENCY, ENV_PASSWORD, ENV_USERNAME, RegistrySettings
from layerhound.registry.tags import date_window, parse_repository, tag_history
from layerhound.report.json_report import render_json
from layerhound.report.table import render_table
from layerhound.report.tags import render_tags_json, render_tags_table
from layerhound.scan import scan_references
from layerhound.sources.manifest import parse_platform
from layerhound.sources.refs import parse_reference
from layerhound.store.cache import open_cache

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
        description="Scan images for CVE-2024-3094. References: docker://HOST/REPO[:TAG|@DIGEST], "
        "REPO[:TAG] (Docker Hub), oci:DIR[:REF], oci-archive:FILE[:REF], docker-archive:FILE[:REF], "
        "rootfs:DIR, file:PATH.",
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
    scan.add_argument(
        "--cache-dir",
        type=Path,
        metavar="DIR",
        help="keep per-layer results in DIR/layers.sqlite3 (default: the user's cache directory, "
        "~/.cache/layerhound on Linux)",
    )
    scan.add_argument("--no-cache", action="store_true", help="neither read nor write the layer cache")
    add_registry_options(scan)
    add_tags_command(commands)
    return parser


def add_tags_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {value!r}")
    return number


def add_registry_options(parser: argparse.ArgumentParser) -> None:
    """The options of commands that pull from registries."""
    group = parser.add_argument_group(
        "registries",
        f"Credentials: --username with --password-stdin, else {ENV_USERNAME}/{ENV_PASSWORD}, "
        "else Docker's config.json (auths, credsStore, credHelpers). TLS is always verified against the "
        "system's CAs (or SSL_CERT_FILE/SSL_CERT_DIR), except for --insecure-registry hosts, reached over plain HTTP.",
    )
    group.add_argument(
        "--insecure-registry",
        action="append",
        default=[],
        metavar="HOST",
        help="reach HOST[:PORT] over plain HTTP (repeatable)",
    )
    group.add_argument("--username", metavar="USER", help="registry user name")
    group.add_argument(
        "--password-stdin", action="store_true", help="read the registry password (or token) from standard input"
    )
    group.add_argument(
        "--registry-config",
        type=Path,
        metavar="PATH",
        help="Docker config.json with credentials (default: $DOCKER_CONFIG/config.json or ~/.docker/config.json)",
    )
    group.add_argument(
        "--max-concurrency",
        type=_positive_int,
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help=f"requests in flight at once per registry (default {DEFAULT_CONCURRENCY})",
    )


def registry_settings(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> RegistrySettings:
    """``RegistrySettings`` from the command line and the environment (flags win)."""
    env = os.environ if environ is None else environ
    username = args.username or env.get(ENV_USERNAME) or None
    password: str | None = None
    if args.password_stdin:
        password = sys.stdin.read().rstrip("\r\n")
        if not password:
            raise UsageError("--password-stdin: nothing was read from standard input")
    elif env.get(ENV_PASSWORD):
        password = env[ENV_PASSWORD]
    if username and password is None:
        raise UsageError(f"a registry user name needs a password: use --password-stdin or {ENV_PASSWORD}")
    if password is not None and not username:
        raise UsageError(f"a registry password needs a user name: use --username or {ENV_USERNAME}")
    config = args.registry_config.expanduser() if args.registry_config else None
    if config is not None and not config.is_file():
        raise UsageError(f"--registry-config: {config} is not a file")
    return RegistrySettings(
        insecure_registries=frozenset(args.insecure_registry),
        username=username,
        password=password,
        config_path=config,
        max_concurrency=args.max_concurrency,
    )


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
    cache = open_cache(
        args.cache_dir, enabled=not args.no_cache, warn=lambda m: print(f"layerhound: warning: {m}", file=sys.stderr)
    )
    with RegistrySession(registry_settings(args)) as session:
        if show_progress:
            from layerhound.report.progress import ProgressObserver

            with ProgressObserver() as progress:
                results.extend(
                    scan_references(args.references, ALL_DETECTORS, args.platform, progress, cache, session=session)
                )
        else:
            results.extend(scan_references(args.references, ALL_DETECTORS, args.platform, None, cache, session=session))
    if cache is not None:
        cache.close()

    if args.format == OutputFormat.JSON.value:
        text = render_json(results, rules_version())
    else:
        color = args.output is None and sys.stdout.isatty() and "NO_COLOR" not in os.environ
        text = render_table(results, color=color)
    _write(text, args.output)
    return exit_status(results, FAIL_ON_ALIASES[args.fail_on])


def run_tags(args: argparse.Namespace) -> int:
    # Bad arguments fail before a password is read or anything is fetched.
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
        color = args.output is None and sys.stdout.isatty() and "NO_COLOR" not in os.environ
        text = render_tags_table(history, color=color)
    _write(text, args.output)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "scan":
            return run_scan(args)
        if args.command == "tags":
            return run_tags(args)
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
