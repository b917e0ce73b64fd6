"""Installed xz packages named by Alpine's apk database.

Why: Alpine edge shipped xz 5.6.0 and 5.6.1 (fixed in 5.6.1-r2). Those builds
came from the backdoored tarballs but were never injected (musl, and not a
deb/rpm build), so an Alpine image with them is ``affected-version-not-
injected`` unless the bytes say otherwise; a version-only scanner calls it
vulnerable, the bytes and this table together say why it is not. Wolfi and
other apk distributions use the same file and the same version ordering.

``/lib/apk/db/installed`` is text: one stanza per package, separated by blank
lines, each line ``K:value`` (``P`` name, ``V`` version, ``o`` origin, i.e.
the source package, ``A`` arch; ``F``/``R``/``Z`` file lists, ignored here).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from layerhound.detectors import xz_versions
from layerhound.detectors.base import Detector, Interest
from layerhound.detectors.xz_versions import Ecosystem
from layerhound.model import Entry, Fact, Finding

INSTALLED_PATHS = frozenset({"/lib/apk/db/installed", "/usr/lib/apk/db/installed"})
"""apk-tools 2 keeps the database under /lib; usr-merged systems under /usr/lib."""


def parse_installed(text: str) -> Iterator[dict[str, str]]:
    """The stanzas of an apk ``installed`` file, as {key letter: first value}."""
    stanza: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if stanza:
                yield stanza
            stanza = {}
            continue
        key, sep, value = line.partition(":")
        if sep and len(key) == 1:
            stanza.setdefault(key, value.strip())
    if stanza:
        yield stanza


class ApkDetector(Detector):
    """Report installed apk packages of origin xz, and flag the affected ones."""

    name = "apk"
    version = 1
    max_size = 64 * 1024 * 1024

    def interest(self) -> Interest:
        return Interest(paths=INSTALLED_PATHS)

    def wants(self, entry: Entry, head: bytes) -> bool:
        return entry.path in INSTALLED_PATHS

    def inspect(self, entry: Entry, data: bytes) -> Iterator[Finding | Fact]:
        text = data.decode("utf-8", errors="replace")
        for stanza in parse_installed(text):
            name, version = stanza.get("P", ""), stanza.get("V", "")
            origin = stanza.get("o") or None
            if not name or not version or not xz_versions.is_xz_package(Ecosystem.APK, name, origin):
                continue
            arch = stanza.get("A") or None
            claim = xz_versions.judge(Ecosystem.APK, name, version, arch=arch, source=origin)
            yield from xz_versions.package_results("apk", entry.path, name, version, claim, arch=arch, origin=origin)

    def rule_tables(self) -> dict[str, Any]:
        """The affected apk builds and the paths read, for the rules version."""
        return {"affected": xz_versions.rule_table(Ecosystem.APK), "paths": sorted(INSTALLED_PATHS)}
