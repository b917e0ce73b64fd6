"""What every command shares: exit codes, --fail-on, registry options, output files.

Only the standard library's lightest modules at the top: every command builds
its parser from here, and ``layerhound --help`` must not pay for the model, the
registry settings or anything a scan loads (they are imported where used).
"""

from __future__ import annotations

import argparse
import enum
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from layerhound.errors import UsageError
from layerhound.registry import DEFAULT_CONCURRENCY, ENV_PASSWORD, ENV_USERNAME

if TYPE_CHECKING:
    from layerhound.detectors.base import Detector
    from layerhound.model import ImageResult, Verdict
    from layerhound.registry.settings import RegistrySettings

EXIT_OK, EXIT_FOUND, EXIT_ERROR = 0, 1, 2


class OutputFormat(str, enum.Enum):
    TABLE = "table"
    JSON = "json"


FAIL_ON_ALIASES: dict[str, str | None] = {
    "reachable": "backdoored-reachable",
    "backdoored": "backdoored-dormant",
    "dormant": "backdoored-dormant",
    "history": "backdoor-in-history",
    "source": "source-artifacts",
    "affected": "affected-version-not-injected",
    "never": None,
}
"""``--fail-on``'s short names → the verdict they stand for (the verdicts' own names work too)."""


def fail_on_level(value: str) -> Verdict | None:
    """``--fail-on LEVEL`` → the lowest verdict that fails the command (None: never)."""
    from layerhound.model import Verdict

    levels = {**FAIL_ON_ALIASES, **{v.value: v.value for v in Verdict if v not in (Verdict.CLEAN, Verdict.ERROR)}}
    if value not in levels:
        raise argparse.ArgumentTypeError(f"unknown level {value!r} (choose from {', '.join(levels)})")
    name = levels[value]
    return None if name is None else Verdict(name)


def positive_int(value: str) -> int:
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
        "--registry-mirror",
        action="append",
        default=[],
        metavar="REGISTRY=HOST",
        help="fetch REGISTRY's manifests and blobs from the mirror HOST[:PORT] (e.g. docker.io=mirror.example:5000; "
        "repeatable); tags and push dates still come from the registry's own API, digests are verified as always",
    )
    group.add_argument(
        "--max-concurrency",
        type=positive_int,
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help=f"requests in flight at once per registry (default {DEFAULT_CONCURRENCY})",
    )


def registry_settings(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> RegistrySettings:
    """``RegistrySettings`` from the command line and the environment (flags win)."""
    from layerhound.registry.settings import RegistrySettings

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
    mirrors = {}
    for item in args.registry_mirror:
        name, sep, host = item.partition("=")
        if not sep or not name.strip() or not host.strip():
            raise UsageError(f"--registry-mirror: give REGISTRY=HOST[:PORT], not {item!r}")
        mirrors[name.strip()] = host.strip()
    return RegistrySettings(
        mirrors=mirrors,
        insecure_registries=frozenset(args.insecure_registry),
        username=username,
        password=password,
        config_path=config,
        max_concurrency=args.max_concurrency,
    )


def exit_status(results: Sequence[ImageResult], fail_on: Verdict | None) -> int:
    """Errors win over findings: a partial scan must not look like a clean one."""
    from layerhound.model import Verdict

    if any(r.verdict is Verdict.ERROR for r in results):
        return EXIT_ERROR
    if fail_on is not None and any(r.verdict.rank >= fail_on.rank for r in results):
        return EXIT_FOUND
    return EXIT_OK


def write_output(text: str, output: Path | None) -> None:
    # Names decoded with surrogateescape (tar members that are not UTF-8) are written escaped.
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    output = output.expanduser()
    if not output.parent.is_dir():
        raise UsageError(f"cannot write {output}: directory {output.parent} does not exist")
    if output.exists() and not output.is_file():
        # /dev/null, /dev/stdout, a FIFO: written into, never replaced (as root, a rename would put a
        # regular file where the device was).
        try:
            with open(output, "w") as handle:
                handle.write(text)
        except OSError as exc:
            raise UsageError(f"cannot write {output}: {exc.strerror}") from None
        return
    # Written beside the target and renamed, so a killed scan never leaves half a report.
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.")
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)  # mkstemp's 0600 is not what a report file should have
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, output)




def add_fail_on(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fail-on",
        type=fail_on_level,
        default="backdoored",
        metavar="LEVEL",
        help="exit 1 when any image is at or above LEVEL: reachable, backdoored (default), "
        "history, source, affected, never (or a verdict name)",
    )


def add_rules_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rules", type=Path, metavar="PATH",
                        help="also run these YARA rules (a .yar file, or a directory of .yar/.yara files), compiled "
                        "once by YARA-X, over the ELF files and scripts of every layer; a match is a finding")
    parser.add_argument("--rules-all-files", action="store_true",
                        help="run --rules over every regular file (up to 64 MiB each), not only ELF files and scripts")


def with_user_rules(detectors: Sequence[Detector], args: argparse.Namespace) -> tuple[Detector, ...]:
    """The built-in detectors, and the user's rules (``--rules``) last; a rule that does not compile
    is a usage error before any image is read."""
    if args.rules is None:
        if args.rules_all_files:
            raise UsageError("--rules-all-files needs --rules PATH")
        return tuple(detectors)
    from layerhound.detectors.user_rules import UserRulesDetector, load_rules

    return (*detectors, UserRulesDetector(load_rules(args.rules, args.rules_all_files)))


def byte_size(value: str) -> int:
    """``10G``, ``500M``, ``64K`` or a number of bytes."""
    units = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
    text = value.strip().upper().removesuffix("IB").removesuffix("B")
    number, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "")
    try:
        size = int(float(number) * units[unit])
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(f"not a size: {value!r} (e.g. 10G, 500M, 1048576)") from None
    if size < 0:
        raise argparse.ArgumentTypeError(f"a size cannot be negative: {value!r}")
    return size


def add_keep_options(parser: argparse.ArgumentParser) -> None:
    """Where the kept candidate files live (``store.kept_files``): for ``crawl`` and ``rejudge``."""
    parser.add_argument("--keep-dir", type=Path, metavar="DIR",
                        help="the kept files' directory (default: files/ beside a SQLite store, or files/ in the "
                        "user's data directory for PostgreSQL)")


def keep_dir(args: argparse.Namespace) -> Path:
    from layerhound.store.kept_files import default_files_dir
    from layerhound.store.results import default_db_url

    return args.keep_dir.expanduser() if args.keep_dir is not None else default_files_dir(args.db or default_db_url())


def use_color(output: Path | None) -> bool:
    return output is None and sys.stdout.isatty() and "NO_COLOR" not in os.environ


def warn(message: str) -> None:
    print(f"layerhound: warning: {message}", file=sys.stderr)


def add_db_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        metavar="URL",
        help="the results store: sqlite:///PATH or postgresql://USER@HOST:PORT/DB "
        "(default: results.sqlite3 in the user's data directory, ~/.local/share/layerhound on Linux)",
    )
