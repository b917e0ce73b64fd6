"""Each detector's declared ``Interest`` covers everything its ``wants`` accepts.

The walk asks ``wants`` only of files the joined interests let through, so a detector
whose interest were narrower than its ``wants`` would silently stop seeing files. Checked
on every file of a real Debian root and on paths made to sit at each detector's edges.
"""

from __future__ import annotations

import os
from pathlib import Path

from layerhound.detectors.base import HEAD_SIZE
from layerhound.detectors.registry import ALL_DETECTORS
from layerhound.layers.walk import Prefilter
from layerhound.model import Entry, EntryType

EDGE_PATHS = [
    "/var/lib/dpkg/status", "/var/lib/dpkg/status.d/libzstd1", "/lib/apk/db/installed",
    "/usr/lib/apk/db/installed", "/var/lib/pacman/local/xz-5.6.1-1/desc", "/var/lib/rpm/Packages",
    "/usr/lib/sysimage/rpm/rpmdb.sqlite", "/usr/share/rpm/Packages.db", "/etc/ld.so.conf", "/etc/ld.so.preload",
    "/etc/ld.so.cache", "/etc/ld.so.conf.d/x86_64-linux-gnu.conf", "/src/xz/m4/build-to-host.m4", "/src/configure",
    "/etc/supervisor/conf.d/sshd.conf", "/etc/s6-overlay/s6-rc.d/sshd/run", "/etc/services.d/sshd/run",
    "/x/liblzma_la-crc64-fast.o", "/x/xz-5.6.1.tar.gz", "/x/a.xz", "/x/a.lzma", "/x/good-large_compressed.lzma",
]
EDGE_HEADS = [b"", b"plain text", b"#!/bin/sh\nexec sshd", b"\x7fELF\x02\x01\x01" + bytes(57), b"\x1f\x8b\x08\x00",
              b"\xfd7zXZ\x00", b"\x5d\x00\x00\x80\x00"]


def check(prefilter: Prefilter, path: str, head: bytes, size: int) -> None:
    entry = Entry(path, EntryType.FILE, size, 0o644)
    wanted = [d.name for d in ALL_DETECTORS if d.wants(entry, head)]
    if wanted:
        assert prefilter.may_want(path, head), f"{path} ({head[:8]!r}) is wanted by {wanted} but filtered out"


def test_the_joined_interests_cover_every_file_a_detector_wants(bookworm_root: Path) -> None:
    prefilter = Prefilter(ALL_DETECTORS)
    assert not prefilter.everything  # every built-in detector declares its interest
    files = 0
    for directory, _, names in os.walk(bookworm_root):
        for name in names:
            path = Path(directory, name)
            if path.is_symlink() or not path.is_file():
                continue
            with path.open("rb") as handle:
                head = handle.read(HEAD_SIZE)
            check(prefilter, "/" + str(path.relative_to(bookworm_root)), head, path.stat().st_size)
            files += 1
    assert files > 5000
    for path in EDGE_PATHS:
        for head in EDGE_HEADS:
            check(prefilter, path, head, 1000)


def test_a_detector_without_an_interest_sees_every_file() -> None:
    class Everything(type(ALL_DETECTORS[0])):  # type: ignore[misc]
        def interest(self) -> None:
            return None

    assert Prefilter([*ALL_DETECTORS, Everything()]).may_want("/any/file", b"data")
    assert not Prefilter(ALL_DETECTORS).may_want("/any/file", b"data")
