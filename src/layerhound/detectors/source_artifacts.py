"""The CVE-2024-3094 build trigger in autotools source files.

Why: the backdoor entered builds through a doctored ``m4/build-to-host.m4``
that exists only in the 5.6.0/5.6.1 release tarballs, and through the
``configure`` script generated from it. The hash detector catches the exact
published m4; this detector catches the same trigger after any harmless edit,
in a regenerated ``configure``, or in another project's source that copied the
doctored macro. Matching the published indicator lines rather than a hash is
what makes that possible.

A finding needs the ``gl_path_map`` line (the ``tr`` that un-corrupts the
payload carrier) plus at least one other trigger line. The ``serial 30``
header of the doctored m4 is recorded but never enough on its own: it is just
a version number a legitimate gnulib file could one day carry.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator
from typing import Any

from layerhound.detectors.base import Detector, Interest, is_elf
from layerhound.model import Entry, Finding, Indicates, Kind

M4_NAME = "build-to-host.m4"
CONFIGURE_NAME = "configure"

PATH_MAP_MARKER = "gl_path_map"
TRIGGER_MARKERS: dict[str, bytes] = {
    "gl_am_configmake": b"gl_am_configmake",
    PATH_MAP_MARKER: b"gl_path_map='tr \"\\t \\-_\" \" \\t_\\-\"'",
    "gl_config_gt_eval": b"eval $gl_config_gt | $SHELL",
}
"""Published indicator lines of the trigger; ``\\t`` is literally backslash-t."""

SERIAL_30 = re.compile(
    rb"^(?:#|dnl)[ \t]*build-to-host\.m4[ \t]+serial[ \t]+30[ \t]*\r?$", re.MULTILINE
)


def trigger_markers(data: bytes) -> list[str]:
    """Names of the trigger markers present in ``data``, in table order."""
    return [name for name, needle in TRIGGER_MARKERS.items() if needle in data]


def is_trigger(markers: list[str]) -> bool:
    """The gl_path_map line plus at least one other trigger line."""
    return PATH_MAP_MARKER in markers and len(markers) >= 2


class SourceArtifactDetector(Detector):
    """Find the backdoor's configure-time trigger in build-to-host.m4 and configure."""

    name = "source-artifacts"
    version = 1

    def interest(self) -> Interest:
        return Interest(names=frozenset({M4_NAME, CONFIGURE_NAME}))

    def wants(self, entry: Entry, head: bytes) -> bool:
        base = posixpath.basename(entry.path)
        if base == M4_NAME:
            return True
        # configure is a shell script; a binary of that name cannot hold the trigger
        return base == CONFIGURE_NAME and not is_elf(head) and b"\x00" not in head

    def inspect(self, entry: Entry, data: bytes) -> Iterator[Finding]:
        markers = trigger_markers(data)
        if not is_trigger(markers):
            return
        is_m4 = posixpath.basename(entry.path) == M4_NAME
        evidence: dict[str, Any] = {"markers": markers}
        if is_m4:
            evidence["serial_30"] = SERIAL_30.search(data) is not None
        yield Finding(
            rule="xz-trigger-m4" if is_m4 else "xz-trigger-configure",
            kind=Kind.SOURCE,
            indicates=Indicates.SOURCE,
            path=entry.path,
            evidence=evidence,
        )

    def rule_tables(self) -> dict[str, Any]:
        """The data this detector's findings depend on, for the rules version."""
        return {
            "names": [M4_NAME, CONFIGURE_NAME],
            "markers": {name: needle.decode() for name, needle in TRIGGER_MARKERS.items()},
            "serial": SERIAL_30.pattern.decode(),
        }
