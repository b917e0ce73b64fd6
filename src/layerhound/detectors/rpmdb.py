"""Installed xz packages named by rpm databases (Fedora, openSUSE, RHEL...).

Why: Fedora 40/41 and openSUSE Tumbleweed built x86_64 RPMs from the
backdoored 5.6.0/5.6.1 tarballs, and their RPM builds are exactly where the
trigger fired. The rpm database is how an image says which xz it has; like
every package database it proves a version, not the bytes, so its findings
indicate ``AFFECTED_VERSION`` and every xz package becomes a ``packages`` fact
for the assessment to hold against the bytes.

rpm has kept three database formats over the years (sqlite, Berkeley DB hash
and SUSE's ndb; see ``rpm_storage``), in two places (``/var/lib/rpm`` and,
since rpm 4.16, ``/usr/lib/sysimage/rpm``). The format is taken from the bytes,
never from the name. Each stored header blob is decoded (``rpm_header``); the
distribution comes from the release's dist tag (``.fc40``), the VENDOR and
DISTRIBUTION tags, or else the database format (only SUSE uses ndb).

A database that cannot be read raises ``RpmDatabaseError`` (or
``RpmHeaderError`` for a broken header): the engine records it as a detector
error on that file, so an unreadable database is reported, never silently
clean.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from typing import Any

from layerhound.detectors import xz_versions
from layerhound.detectors.base import HOLD_MAX, Detector, Interest
from layerhound.detectors.rpm_header import RpmHeaderError, parse_header
from layerhound.detectors.rpm_storage import RpmDatabaseError, header_blobs
from layerhound.detectors.xz_versions import Ecosystem
from layerhound.model import Entry, Fact, Finding

RPM_DIRS = frozenset({"/var/lib/rpm", "/usr/lib/sysimage/rpm", "/usr/share/rpm"})
"""Where rpm keeps its database (``%_dbpath``) on the distributions we know."""
RPM_FILES = {"rpmdb.sqlite": "sqlite", "Packages": "bdb", "Packages.db": "ndb"}
"""The package store of each backend; indexes (Name, Basenames...) are not read."""


class RpmDbDetector(Detector):
    """Report installed rpm packages of xz, and flag the affected ones."""

    name = "rpmdb"
    version = 2
    max_size = HOLD_MAX

    def interest(self) -> Interest:
        return Interest(prefixes=tuple(directory + "/" for directory in sorted(RPM_DIRS)))

    def wants(self, entry: Entry, head: bytes) -> bool:
        directory, base = posixpath.split(entry.path)
        return directory in RPM_DIRS and base in RPM_FILES

    def inspect(self, entry: Entry, data: bytes) -> Iterator[Finding | Fact]:
        kind, blobs = header_blobs(data)
        results: list[Finding | Fact] = []
        for number, blob in enumerate(blobs, 1):
            try:
                package = parse_header(blob)
            except RpmHeaderError as exc:
                raise RpmHeaderError(f"{kind} rpm database, package #{number}: {exc}") from exc
            if not xz_versions.is_xz_package(Ecosystem.RPM, package.name, package.sourcerpm):
                continue
            distro = xz_versions.guess_rpm_distro(package.release, package.vendor, package.distribution, kind)
            claim = xz_versions.judge(
                Ecosystem.RPM, package.name, package.version, package.release, distro,
                arch=package.arch, source=package.sourcerpm,
            )
            results += xz_versions.package_results(
                "rpm", entry.path, package.name, package.evr, claim,
                arch=package.arch, vendor=package.vendor, format=kind,
            )
        # Yielded only once the whole database has been read: a corrupt tail
        # fails the file as a whole rather than reporting half of it as the truth.
        yield from results

    def rule_tables(self) -> dict[str, Any]:
        """The affected rpm builds and the files read, for the rules version."""
        return {
            "affected": xz_versions.rule_table(Ecosystem.RPM),
            "dirs": sorted(RPM_DIRS),
            "files": RPM_FILES,
        }


__all__ = ["RpmDatabaseError", "RpmDbDetector", "RpmHeaderError"]
