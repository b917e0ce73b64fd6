"""Installed xz-utils packages named by the dpkg database.

Why: a package database is the cheapest and most widely understood evidence.
It says only that an affected *version* was installed, never that the bytes on
disk carry the implant (Debian's 5.6.1+really5.4.5 rebuilds, locally patched
libraries and deleted files all make the two disagree), so its findings
indicate ``AFFECTED_VERSION`` and the byte detectors decide the rest. Every
installed xz package also becomes a ``packages`` fact, affected or not, so
that the assessment can say when the database and the bytes disagree.

Full images keep one ``/var/lib/dpkg/status`` file; distroless images keep one
file per package under ``/var/lib/dpkg/status.d/`` (next to ``*.md5sums``
lists, which are not stanzas). The affected range and dpkg's version ordering
live in ``xz_versions`` with every other distribution's.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from layerhound.detectors import xz_versions
from layerhound.detectors.base import Detector, Interest
from layerhound.detectors.xz_versions import Ecosystem
from layerhound.model import Entry, Fact, Finding

if TYPE_CHECKING:
    from debian.deb822 import Deb822

STATUS_FILE = "/var/lib/dpkg/status"
STATUS_DIR = "/var/lib/dpkg/status.d"

FILES_ABSENT_STATES = frozenset({"not-installed", "config-files"})
"""dpkg package states in which the package's files are not on disk.

Every other state (installed, unpacked, half-configured, half-installed,
triggers-*) means the affected files were, at least partly, unpacked."""

_FIELDS = ["Package", "Version", "Source", "Status", "Architecture"]


class DpkgDetector(Detector):
    """Report installed dpkg packages of source xz-utils, and flag the affected ones."""

    name = "dpkg"
    version = 3
    max_size = 4 * 1024 * 1024 * 1024
    """Read as a stream, one stanza held at a time: padding the file cannot push a stanza past a bound."""

    def interest(self) -> Interest:
        return Interest(paths=frozenset({STATUS_FILE}), prefixes=(STATUS_DIR + "/",))

    def wants(self, entry: Entry, head: bytes) -> bool:
        if entry.path == STATUS_FILE:
            return True
        directory, base = posixpath.split(entry.path)
        return directory == STATUS_DIR and not base.endswith(".md5sums")

    def inspect(self, entry: Entry, data: bytes) -> Iterator[Finding | Fact]:
        scanner = self.scanner(entry, data[:64])
        scanner.feed(data)
        yield from scanner.finish("")

    def scanner(self, entry: Entry, head: bytes) -> StatusScanner:
        return StatusScanner(entry.path)

    def rule_tables(self) -> dict[str, Any]:
        """The data this detector's findings depend on, for the rules version."""
        return {
            "max_stanza": MAX_STANZA,
            "affected": xz_versions.rule_table(Ecosystem.DPKG),
            "source": xz_versions.DEBIAN_SOURCE,
            "files_absent_states": sorted(FILES_ABSENT_STATES),
        }


MAX_STANZA = 1024 * 1024
"""Longest stanza held whole (real ones: a few KiB). Of a longer one, its first ``MAX_STANZA`` bytes
are judged (the fields dpkg writes first: Package, Status, Version) and the rest is skipped to the
next blank line."""


_XZ_NAMES = tuple(sorted({name.encode() for name in xz_versions.package_names(Ecosystem.DPKG)}
                          | {xz_versions.DEBIAN_SOURCE.encode()}))
"""Every name that makes a stanza one of xz's (``xz_versions.is_xz_package``)."""


class StatusScanner:
    """A status file judged stanza by stanza as its pieces pass; one stanza is held at a time."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._pending = b""
        self._skipping = False
        self._results: list[Finding | Fact] = []

    def feed(self, piece: bytes) -> None:
        data = self._pending + piece
        if self._skipping:
            end = data.find(b"\n\n")
            if end < 0:
                self._pending = data[-1:]  # a "\n" that may start the separator
                return
            data, self._skipping = data[end + 2 :], False
        cut = data.rfind(b"\n\n")
        if cut >= 0:
            self._judge(data[: cut + 1])
            data = data[cut + 2 :]
        if len(data) > MAX_STANZA:
            self._judge(data[:MAX_STANZA])
            self._pending, self._skipping = data[-1:], True
        else:
            self._pending = data

    def finish(self, sha256: str) -> list[Finding | Fact]:
        if self._pending and not self._skipping:
            self._judge(self._pending)
        self._pending = b""
        return self._results

    def _judge(self, stanzas: bytes) -> None:
        from debian.deb822 import Deb822  # python-debian loads with the first status file, not at start-up

        # Only stanzas that name one of xz's packages or its source can be judged anything: the
        # others (all but a few of thousands) are not parsed at all.
        relevant = [part for part in stanzas.split(b"\n\n") if any(name in part for name in _XZ_NAMES)]
        if not relevant:
            return
        text = b"\n\n".join(relevant).decode("utf-8", errors="replace")
        for stanza in Deb822.iter_paragraphs(text.splitlines(), fields=_FIELDS):
            self._results.extend(_judge(stanza, self._path))


def _judge(stanza: Deb822, path: str) -> list[Finding | Fact]:
    """The finding and fact one stanza deserves (none for other packages)."""
    package = stanza.get("Package", "").strip()
    raw_version = stanza.get("Version", "").strip()
    # "Source: xz-utils (5.6.1-1)" carries the source version when it differs
    # from the binary's (binNMUs such as 5.6.1-1+b1); an absent Source means
    # "same name as the package".
    source_words = stanza.get("Source", "").split()
    source = source_words[0] if source_words else package
    source_version = source_words[1].strip("()") if len(source_words) > 1 else None
    if not package or not raw_version:
        return []
    if not xz_versions.is_xz_package(Ecosystem.DPKG, package, source):
        return []
    if not _files_present(stanza.get("Status")):
        return []
    arch = stanza.get("Architecture", "").strip() or None
    # The source version says which code was built; a binNMU only rebuilt it.
    claim = xz_versions.judge(
        Ecosystem.DPKG, package, source_version or raw_version, arch=arch, source=source
    )
    return xz_versions.package_results(
        "dpkg", path, package, raw_version, claim, arch=arch, source=source, source_version=source_version
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
