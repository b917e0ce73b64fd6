"""Scripts and service definitions that start sshd, recorded as the commands that do it.

Many images do not run sshd as their Entrypoint but through a script
(``/entrypoint.sh``), supervisord, runit, s6-overlay or systemd. Reachability needs to
know which command of such a file starts sshd, under which condition, and as which
argv[0] (the implant checks it is ``/usr/sbin/sshd``). Each file is parsed in its own
syntax (``detectors.shell_starts``): shell scripts by a bash grammar, execline ``run``
scripts, supervisord ``command=`` lines, systemd ``ExecStart=`` lines. Lines that only
mention sshd are kept apart, so a report can say "mentions sshd on line 3, but nothing
there starts it".

Scripts in system locations (``/usr`` outside ``/usr/local``, ``/bin``, ``/lib`` …) are
parsed only when they mention sshd or ``$@``, and their calls of other programs are not kept:
hundreds of them ship with every distribution, and an image's own entry point lives
elsewhere. Only small text files are read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from layerhound.detectors import shell_starts
from layerhound.detectors.base import Detector, Interest
from layerhound.model import Entry, Fact, Finding

COLLECTOR = "startup"
SUPERVISOR_DIRS = ("/etc/supervisor/", "/etc/supervisord.conf", "/etc/supervisord.d/")
SERVICE_DIRS = (
    *SUPERVISOR_DIRS,
    "/etc/s6-overlay/",
    "/etc/services.d/",
    "/etc/service/",
    "/etc/sv/",
    "/etc/runit/",
)
SYSTEMD_DIRS = ("/etc/systemd/system/", "/lib/systemd/system/", "/usr/lib/systemd/system/")
SYSTEM_LOCATIONS = ("/usr/", "/bin/", "/sbin/", "/lib/", "/lib32/", "/lib64/", "/libx32/")
"""Where a distribution's own scripts live: parsed only when they mention sshd."""
NOT_SYSTEM = ("/usr/local/",)
SSHD_WORD = re.compile(rb"(?<![\w-])sshd(?![\w-])")
"""sshd as a word of its own, bare or at the end of a path (`/usr/sbin/sshd`: `/` ends no word).
No optional path prefix in front: it matched exactly the same lines, in time quadratic
in a line of slashes (a 1 MiB line would have taken hours)."""
RUNS_ARGUMENTS = re.compile(rb"\$\{?[@*]")
"""A script that may run its own arguments (`exec "$@"`): parsed wherever it lives."""
MAX_MENTIONS = 5
EXECLINE = "execlineb"


def is_system_location(path: str) -> bool:
    return path.startswith(SYSTEM_LOCATIONS) and not path.startswith(NOT_SYSTEM)


def file_kind(path: str, head: bytes) -> str | None:
    """Which syntax a file is read in: shell, execline, systemd, supervisord, or service (a
    service-directory file in no syntax layerhound parses: only its mentions are kept)."""
    interpreter = shell_starts.interpreter(head)
    if interpreter in shell_starts.SHELLS:
        return "shell"
    if interpreter == EXECLINE:
        return "execline"
    if path.startswith(SYSTEMD_DIRS) and path.endswith(".service"):
        return "systemd"
    if path.startswith(SUPERVISOR_DIRS):
        return "supervisord"
    if path.startswith(SERVICE_DIRS):
        return "service"
    return None


PARSERS = {
    "shell": shell_starts.shell_launches,
    "execline": shell_starts.execline_launches,
    "systemd": shell_starts.systemd_launches,
    "supervisord": shell_starts.supervisord_launches,
}


class StartupFacts(Detector):
    """Notes every command of a script or service definition that starts sshd, runs the
    script's arguments or calls another script, and the lines that merely mention sshd."""

    name = COLLECTOR
    version = 5
    max_size = 1024 * 1024

    def interest(self) -> Interest:
        return Interest(heads=(b"#!",), prefixes=(*SERVICE_DIRS, *SYSTEMD_DIRS))

    def wants(self, entry: Entry, head: bytes) -> bool:
        return file_kind(entry.path, head) is not None

    def rule_tables(self) -> dict[str, Any]:
        return {
            "service_dirs": list(SERVICE_DIRS),
            "systemd_dirs": list(SYSTEMD_DIRS),
            "system_locations": list(SYSTEM_LOCATIONS),
            "mention": SSHD_WORD.pattern.decode(),
            "runs_arguments": RUNS_ARGUMENTS.pattern.decode(),
            "wrappers": sorted(shell_starts.WRAPPERS),
            "shells": sorted(shell_starts.SHELLS),
        }

    def inspect(self, entry: Entry, data: bytes) -> Iterable[Finding | Fact]:
        kind = file_kind(entry.path, data[:256])
        if kind is None:
            return
        system = is_system_location(entry.path)
        mentions = _mentions(data)
        if system and not mentions and (kind != "shell" or not RUNS_ARGUMENTS.search(data)):
            return
        parse = PARSERS.get(kind)
        found = parse(data) if parse is not None else shell_starts.Launches()
        dropped = (shell_starts.CALLS, shell_starts.EXECS) if system else ()
        launches = [launch for launch in found.found if launch.runs not in dropped]
        if not launches and not mentions:
            return
        record: dict[str, Any] = {
            "kind": kind,
            "launches": [launch.to_json() for launch in launches],
            "mentions": mentions,
        }
        if found.dropped:
            record["dropped"] = found.dropped
        if found.truncated:
            record["truncated"] = True
        if found.syntax_errors:
            record["syntax_errors"] = True
        if found.unparsed:
            record["unparsed"] = True
        yield Fact(COLLECTOR, entry.path, record)


def _mentions(data: bytes) -> list[list[Any]]:
    """[line number, text] of the first lines naming sshd outside a comment."""
    if b"sshd" not in data:
        return []
    found: list[list[Any]] = []
    for number, raw in enumerate(data.splitlines(), 1):
        line = raw.strip()
        if line.startswith(b"#") or not SSHD_WORD.search(line):
            continue
        found.append([number, shell_starts.clip(line.decode("utf-8", "replace"))])
        if len(found) >= MAX_MENTIONS:
            break
    return found
