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

from layerhound.detectors.base import Detector
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
SSHD_WORD = re.compile(rb"(?<![\w-])(?:[\w./-]*/)?sshd(?![\w-])")
MAX_LINES = 5


class StartupFacts(Detector):
    """Notes every script or service definition that mentions sshd."""

    name = COLLECTOR
    version = 1
    max_size = 1024 * 1024

    def wants(self, entry: Entry, head: bytes) -> bool:
        return head.startswith(b"#!") or entry.path.startswith(SERVICE_DIRS)

    def rule_tables(self) -> dict[str, Any]:
        return {"dirs": list(SERVICE_DIRS), "pattern": SSHD_WORD.pattern.decode()}

    def inspect(self, entry: Entry, data: bytes) -> Iterable[Finding | Fact]:
        if b"sshd" not in data:
            return
        lines = []
        for raw in data.splitlines():
            line = raw.strip()
            if line.startswith(b"#") or not SSHD_WORD.search(line):
                continue
            lines.append(line.decode("utf-8", "replace")[:200])
        if lines:
            yield Fact(
                COLLECTOR,
                entry.path,
                {
                    "mentions_sshd": True,
                    "lines": lines[:MAX_LINES],
                    "absolute_sshd": any("/usr/sbin/sshd" in line for line in lines),
                },
            )
