"""Installed xz packages named by pacman's local database (Arch Linux).

Why: Arch shipped xz 5.6.0-1 and 5.6.1-1 built from the backdoored tarballs,
but outside any deb/rpm build, so the trigger never injected the implant
(5.6.1-2 was rebuilt from git). A matching version with clean bytes is
therefore ``affected-version-not-injected``; only the bytes could say more.

Each installed package has a directory ``/var/lib/pacman/local/NAME-VER/``
whose ``desc`` file is a list of ``%FIELD%`` headers each followed by value
lines up to a blank line (``%NAME%``, ``%VERSION%``, ``%BASE%``, ``%ARCH%``).
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from typing import Any

from layerhound.detectors import xz_versions
from layerhound.detectors.base import Detector, Interest
from layerhound.detectors.xz_versions import Ecosystem
from layerhound.model import Entry, Fact, Finding

LOCAL_DB = "/var/lib/pacman/local"


def parse_desc(text: str) -> dict[str, list[str]]:
    """The sections of a pacman ``desc`` file: {"NAME": ["xz"], ...}."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if len(line) > 2 and line.startswith("%") and line.endswith("%"):
            current = sections.setdefault(line[1:-1], [])
        elif not line:
            current = None
        elif current is not None:
            current.append(line)
    return sections


class PacmanDetector(Detector):
    """Report installed pacman packages of xz, and flag the affected ones."""

    name = "pacman"
    version = 1
    max_size = 4 * 1024 * 1024

    def interest(self) -> Interest:
        return Interest(prefixes=(LOCAL_DB + "/",))

    def wants(self, entry: Entry, head: bytes) -> bool:
        directory, base = posixpath.split(entry.path)
        return base == "desc" and posixpath.dirname(directory) == LOCAL_DB

    def inspect(self, entry: Entry, data: bytes) -> Iterator[Finding | Fact]:
        sections = parse_desc(data.decode("utf-8", errors="replace"))

        def first(key: str) -> str | None:
            values = sections.get(key)
            return values[0] if values else None

        name, version, base = first("NAME"), first("VERSION"), first("BASE")
        if not name or not version or not xz_versions.is_xz_package(Ecosystem.PACMAN, name, base):
            return
        arch = first("ARCH")
        claim = xz_versions.judge(Ecosystem.PACMAN, name, version, arch=arch, source=base)
        yield from xz_versions.package_results("pacman", entry.path, name, version, claim, arch=arch, base=base)

    def rule_tables(self) -> dict[str, Any]:
        """The affected pacman builds and the database read, for the rules version."""
        return {"affected": xz_versions.rule_table(Ecosystem.PACMAN), "local_db": LOCAL_DB}
