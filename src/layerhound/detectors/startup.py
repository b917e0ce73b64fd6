"""Scripts and supervisor configurations that start sshd, recorded as facts.

Many images do not run sshd as their Entrypoint but through a script
(``/entrypoint.sh``), supervisord, runit or s6. Reachability needs to know
whether such a file starts sshd, and whether it does so as ``/usr/sbin/sshd``
(the implant checks argv[0]). Only small text files are read: scripts by their
``#!`` line, supervisor and service-directory files by their location.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from layerhound.detectors.base import Detector, Interest
from layerhound.model import Entry, Fact, Finding

COLLECTOR = "startup"
SERVICE_DIRS = (
    "/etc/supervisor/",
    "/etc/supervisord.conf",
    "/etc/supervisord.d/",
    "/etc/s6-overlay/",
    "/etc/services.d/",
    "/etc/service/",
    "/etc/sv/",
    "/etc/runit/",
)
SSHD_WORD = re.compile(rb"(?<![\w-])sshd(?![\w-])")
"""sshd as a word of its own, bare or at the end of a path (`/usr/sbin/sshd`: `/` ends no word).
No optional path prefix in front: it matched exactly the same lines, in time quadratic
in a line of slashes (a 1 MiB line would have taken hours)."""
RUNS_ARGUMENTS = re.compile(rb'^(?:exec\s+)?(?:"\$@"|\$@)(?:\s|$)|\bexec\s+"\$@"')
"""A line that runs the script's own arguments: `exec "$@"`, `"$@"`."""
MAX_LINES = 5


class StartupFacts(Detector):
    """Notes every script or service definition that mentions sshd."""

    name = COLLECTOR
    version = 3
    max_size = 1024 * 1024

    def interest(self) -> Interest:
        return Interest(heads=(b"#!",), prefixes=SERVICE_DIRS)

    def wants(self, entry: Entry, head: bytes) -> bool:
        return head.startswith(b"#!") or entry.path.startswith(SERVICE_DIRS)

    def rule_tables(self) -> dict[str, Any]:
        return {
            "dirs": list(SERVICE_DIRS),
            "pattern": SSHD_WORD.pattern.decode(),
            "runs_arguments": RUNS_ARGUMENTS.pattern.decode(),
        }

    def inspect(self, entry: Entry, data: bytes) -> Iterable[Finding | Fact]:
        lines = []
        runs_arguments = False
        if b"sshd" in data or b"$@" in data:
            for raw in data.splitlines():
                line = raw.strip()
                if line.startswith(b"#"):
                    continue
                if SSHD_WORD.search(line):
                    lines.append(line.decode("utf-8", "replace")[:200])
                runs_arguments = runs_arguments or bool(RUNS_ARGUMENTS.search(line))
        # A docker-entrypoint.sh that ends in `exec "$@"` starts whatever Cmd says.
        runs_arguments = runs_arguments and data.startswith(b"#!")
        if lines or runs_arguments:
            yield Fact(
                COLLECTOR,
                entry.path,
                {
                    "mentions_sshd": bool(lines),
                    "lines": lines[:MAX_LINES],
                    "absolute_sshd": any("/usr/sbin/sshd" in line for line in lines),
                    "runs_arguments": runs_arguments,
                },
            )
