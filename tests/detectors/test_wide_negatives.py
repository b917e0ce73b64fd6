"""No false positives, measured wider: real packages that look like the implant, and all of /usr.

The packages resemble the implant's shape: glibc (hundreds of IFUNC resolvers, IRELATIVE
relocations, static ``libc.a``), libgcrypt and OpenSSL (hand-written assembly without unwind
information, CPU-feature dispatch), libsystemd (which loads liblzma), zlib, xz's own liblzma5 5.4
and ``liblzma-dev`` (a real ``liblzma.a``), and a Rust and a Go program (statically linked,
their own calling conventions). Each ``.deb`` is scanned as a file of a layer, so the walk opens
it, its data tar, its static libraries and its compressed files, as it would in an image.

Not here: Debian's ``5.6.1+really5.4.5`` liblzma5. It was only ever in unstable and testing, and
no suite this machine's mirror serves still has it (nor is snapshot.debian.org reachable here).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from layerhound.detectors.base import HEAD_SIZE, is_elf
from layerhound.detectors.registry import ALL_DETECTORS
from layerhound.layers.walk import walk_layer
from tests.detectors.test_structure_negatives import findings_for
from tests.layers.test_walk import blob_layer, tar_bytes
from tests.support.debian import apt_download

LOOKALIKES = ("libc6", "libc6-dev", "libgcrypt20", "libssl3", "libsystemd0", "zlib1g", "liblzma5", "liblzma-dev",
              "ripgrep", "gron")


@pytest.mark.parametrize("package", LOOKALIKES)
def test_packages_that_resemble_the_implant_give_no_finding(package: str) -> None:
    deb = apt_download(package)
    layer = blob_layer(tar_bytes([(f"./var/cache/apt/archives/{deb.name}", "file", deb.read_bytes())]))
    result = walk_layer(layer, ALL_DETECTORS)
    stats = result.stats
    print(f"{deb.name}: {stats.archive_members} members, {stats.archive_elf_files} ELF files, "
          f"{stats.archives} archives opened")
    assert result.findings == [], [(f.rule, f.evidence.get("member")) for f in result.findings]
    assert stats.archive_notes == [] and stats.detector_errors == []
    assert stats.archive_elf_files >= 1
    if package in ("libc6-dev", "liblzma-dev"):  # their static libraries were opened, object by object
        assert stats.archives > 1 and stats.archive_elf_files > 10


def test_every_elf_file_under_usr_gives_no_finding() -> None:
    """Every regular ELF file of this machine's /usr (symlinks skipped), through every detector."""
    checked = 0
    dirty: dict[str, list[str]] = {}
    failed: dict[str, list[str]] = {}
    for directory, dirnames, filenames in os.walk("/usr", followlinks=False):
        dirnames.sort()
        for name in filenames:
            path = Path(directory) / name
            try:
                info = path.lstat()
                if not stat.S_ISREG(info.st_mode) or not HEAD_SIZE <= info.st_size <= 64 << 20:
                    continue
                with path.open("rb") as handle:
                    if not is_elf(handle.read(4)):
                        continue
                    data = handle.read()
            except OSError:
                continue
            hits, errors = findings_for(str(path), b"\x7fELF" + data, ALL_DETECTORS)
            checked += 1
            if hits:
                dirty[str(path)] = hits
            if errors:
                failed[str(path)] = errors
    print(f"{checked} ELF files under /usr judged")
    assert checked > 1000
    assert dirty == {} and failed == {}
