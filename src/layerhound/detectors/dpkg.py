"""Affected xz-utils versions named by the dpkg database.

Why: a package database is the cheapest and most widely understood evidence.
It says only that an affected *version* was installed, never that the bytes on
disk carry the implant (Debian's 5.6.1+really5.4.5 rebuilds, locally patched
libraries and deleted files all make the two disagree), so its findings
indicate ``AFFECTED_VERSION`` and the byte detectors decide the rest.

Full images keep one ``/var/lib/dpkg/status`` file; distroless images keep one
file per package under ``/var/lib/dpkg/status.d/`` (next to ``*.md5sums``
lists, which are not stanzas). Versions are compared with dpkg's ordering,
because string comparison gets ``5.6.1+really5.4.5-1`` (the fix) wrong.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from typing import Any

from debian.deb822 import Deb822
from debian.debian_support import Version

from layerhound.detectors.base import Detector
from layerhound.model import Entry, Finding, Indicates, Kind

STATUS_FILE = "/var/lib/dpkg/status"
STATUS_DIR = "/var/lib/dpkg/status.d"

XZ_SOURCE = "xz-utils"
"""Every binary package built from this source ships affected code."""

AFFECTED_PACKAGES = frozenset({"xz-utils", "liblzma5", "liblzma-dev", "xzdec", "lzma"})
"""Binary names matched even when a stanza does not name its source."""

AFFECTED_MIN = Version("5.5.1alpha-0.1")
"""First Debian upload carrying the attacker's releases (experimental)."""
AFFECTED_MAX = Version("5.6.1-1")
"""Last backdoored Debian upload; 5.6.1+really5.4.5-1 sorts above it."""

FILES_ABSENT_STATES = frozenset({"not-installed", "config-files"})
"""dpkg package states in which the package's files are not on disk.

Every other state (installed, unpacked, half-configured, half-installed,
triggers-*) means the affected files were, at least partly, unpacked."""

_FIELDS = ["Package", "Version", "Source", "Status"]


class DpkgDetector(Detector):
    """Report installed dpkg packages from source xz-utils in the affected range."""

    name = "dpkg"
    version = 1
    max_size = 64 * 1024 * 1024

    def wants(self, entry: Entry, head: bytes) -> bool:
        if entry.path == STATUS_FILE:
            return True
        directory, base = posixpath.split(entry.path)
        return directory == STATUS_DIR and not base.endswith(".md5sums")

    def inspect(self, entry: Entry, data: bytes) -> Iterator[Finding]:
        text = data.decode("utf-8", errors="replace")
        for stanza in Deb822.iter_paragraphs(text.splitlines(), fields=_FIELDS):
            finding = _judge(stanza, entry.path)
            if finding is not None:
                yield finding

    def rule_tables(self) -> dict[str, Any]:
        """The data this detector's findings depend on, for the rules version."""
        return {
            "source": XZ_SOURCE,
            "packages": sorted(AFFECTED_PACKAGES),
            "range": [str(AFFECTED_MIN), str(AFFECTED_MAX)],
            "files_absent_states": sorted(FILES_ABSENT_STATES),
        }


def _judge(stanza: Deb822, path: str) -> Finding | None:
    """The finding one stanza deserves, or None."""
    package = stanza.get("Package", "").strip()
    raw_version = stanza.get("Version", "").strip()
    # "Source: xz-utils (5.6.1-1)" carries the source version when it differs
    # from the binary's (binNMUs such as 5.6.1-1+b1); an absent Source means
    # "same name as the package".
    source_words = stanza.get("Source", "").split()
    source = source_words[0] if source_words else package
    source_version = source_words[1].strip("()") if len(source_words) > 1 else None
    if not package or not raw_version:
        return None
    if source != XZ_SOURCE and package not in AFFECTED_PACKAGES:
        return None
    if not _files_present(stanza.get("Status")):
        return None
    try:
        # The source version says which code was built; a binNMU only rebuilt it.
        version = Version(source_version or raw_version)
    except ValueError:
        return None
    if not AFFECTED_MIN <= version <= AFFECTED_MAX:
        return None
    evidence = {"package": package, "version": raw_version, "database": "dpkg", "source": source}
    if source_version is not None:
        evidence["source_version"] = source_version
    return Finding(
        rule="dpkg-affected-version",
        kind=Kind.PACKAGE,
        indicates=Indicates.AFFECTED_VERSION,
        path=path,
        evidence=evidence,
    )


def _files_present(status: str | None) -> bool:
    """Whether a ``Status: want flag state`` value leaves the files on disk.

    Distroless status.d stanzas carry no Status field; they describe what was
    copied into the image, so they count as installed.
    """
    if status is None:
        return True
    words = status.split()
    return len(words) == 3 and words[2] not in FILES_ABSENT_STATES
