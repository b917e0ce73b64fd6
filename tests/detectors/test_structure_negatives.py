"""Real, clean Debian files must give no finding: structural detector and all others.

Why: a structural rule is only worth having if it stays silent on the
ordinary IFUNC users and unwind-less assembly of a real distribution. The
material is a debootstrapped bookworm with openssh-server, libssl3, systemd
and the build toolchain (glibc with its IFUNC resolvers and IRELATIVE
relocations, libcrypto's perlasm, gcc's objects), and Debian's own liblzma5
package. Files are read as bytes only; symlinks are never followed.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from layerhound.detectors.base import HEAD_SIZE, Detector, is_elf
from layerhound.detectors.elfscan import head_is_x86_64_candidate
from layerhound.detectors.elfsegments import has_ifunc_in_either_view
from layerhound.detectors.registry import ALL_DETECTORS
from layerhound.detectors.structure import StructureDetector
from layerhound.model import Entry, EntryType, Finding
from tests.support.debian import apt_download, deb_data_files, debootstrap_rootfs
from tests.support.elfedit import VARIANTS

STRUCTURE = StructureDetector()
DETECTORS: tuple[Detector, ...] = (
    *ALL_DETECTORS,
    *(() if any(d.name == STRUCTURE.name for d in ALL_DETECTORS) else (STRUCTURE,)),
)
FULL_PACKAGES = ("openssh-server", "libssl3", "systemd", "build-essential")


@pytest.fixture(scope="module")
def bookworm_full() -> Path:
    return debootstrap_rootfs("bookworm-full", include=FULL_PACKAGES)


def elf_files(root: Path) -> list[tuple[str, Path]]:
    """(in-image path, host path) of every regular ELF file; symlinks are skipped."""
    found: list[tuple[str, Path]] = []
    for directory, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            host = Path(directory) / name
            info = host.lstat()
            if not stat.S_ISREG(info.st_mode) or info.st_size < HEAD_SIZE:
                continue
            with host.open("rb") as handle:
                if not is_elf(handle.read(4)):
                    continue
            found.append(("/" + str(host.relative_to(root)), host))
    return found


def findings_for(path: str, data: bytes, detectors: tuple[Detector, ...]) -> tuple[list[str], list[str]]:
    """(findings as "detector:rule", detector errors) for one file."""
    entry = Entry(path, EntryType.FILE, size=len(data))
    head = data[:HEAD_SIZE]
    hits: list[str] = []
    errors: list[str] = []
    for detector in detectors:
        if not detector.wants(entry, head) or entry.size > detector.max_size:
            continue
        try:
            items = list(detector.inspect(entry, data))
        except Exception as exc:  # reported by the assertion below
            errors.append(f"{detector.name}: {exc!r}")
            continue
        hits += [f"{detector.name}:{item.rule}" for item in items if isinstance(item, Finding)]
    return hits, errors


def test_bookworm_full_root_has_no_findings(bookworm_full: Path) -> None:
    files = elf_files(bookworm_full)
    names = {path.rsplit("/", 1)[-1] for path, _ in files}
    # The material really holds what makes this negative meaningful.
    assert {"libc.so.6", "libcrypto.so.3", "libsystemd.so.0.35.0", "sshd", "ld-linux-x86-64.so.2"} <= names
    assert any(name.endswith(".o") for name in names), "the toolchain's object files (crt1.o...)"
    assert len(files) > 800
    dirty: dict[str, list[str]] = {}
    failed: dict[str, list[str]] = {}
    candidates: dict[str, dict[str, Any]] = {}
    slowest = (0.0, "")
    for path, host in files:
        data = host.read_bytes()
        start = time.perf_counter()
        evidence = STRUCTURE.assess(data)
        elapsed = time.perf_counter() - start
        if evidence is not None:
            candidates[path] = evidence
        slowest = max(slowest, (elapsed, path))
        hits, errors = findings_for(path, data, DETECTORS)
        if hits:
            dirty[path] = hits
        if errors:
            failed[path] = errors
    assert dirty == {}
    assert failed == {}
    # glibc's resolvers make no calls and end at the cheap stage. Some honest
    # resolvers do call local code (ld.so's IRELATIVE resolver runs its CPU
    # feature setup, libatomic's call libgcc's __cpu_indicator_init): they
    # reach the full analysis, and nothing reached from them hooks anything.
    names = {path.rsplit("/", 1)[-1] for path in candidates}
    assert "libatomic.so.1.2.0" in names, sorted(names)
    assert "libc.so.6" not in names
    for path, evidence in candidates.items():
        assert evidence["properties"]["ifunc_resolver_calls_local"], path
        assert not evidence["gate"] and not evidence["flagged"], (path, evidence["properties"])
    assert slowest[0] < 1.0, slowest


def test_debian_liblzma5_package_is_clean() -> None:
    files = deb_data_files(apt_download("liblzma5"))
    elves = {
        path: payload
        for path, (kind, payload) in files.items()
        if kind == "file" and isinstance(payload, bytes) and is_elf(payload[:4])
    }
    assert any("liblzma.so.5" in path for path in elves)
    for path, data in elves.items():
        assert findings_for(path, data, DETECTORS) == ([], []), path
        assert STRUCTURE.assess(data) is None, path


def test_bookworm_full_root_without_section_headers_has_no_structure_findings(bookworm_full: Path) -> None:
    """Every IFUNC-using ELF file of the root with its section headers sstripped, zeroed and lying:
    judged from its program headers, never flagged (ld.so and libatomic reach the full analysis)."""
    judged: dict[str, list[str]] = {}
    analysed: set[str] = set()
    for path, host in elf_files(bookworm_full):
        data = host.read_bytes()
        if not head_is_x86_64_candidate(data[:20]) or data[16] == 1 or not has_ifunc_in_either_view(data):
            continue
        for variant, edit in VARIANTS.items():
            evidence = STRUCTURE.assess(edit(data))
            assert evidence is None or (evidence["elf_view"] == "segments" and not evidence["flagged"]), (
                path, variant, evidence and evidence["properties"])
            judged.setdefault(variant, []).append(path.rsplit("/", 1)[-1])
            if evidence is not None:
                analysed.add(path.rsplit("/", 1)[-1])
    print(f"IFUNC-using ELF files judged without trustworthy section headers: {judged['sstripped']}; "
          f"full analysis: {sorted(analysed)}")
    assert set(judged) == set(VARIANTS) and len({len(files) for files in judged.values()}) == 1
    assert {"libc.so.6", "ld-linux-x86-64.so.2", "libatomic.so.1.2.0"} <= set(judged["sstripped"])
    assert {"ld-linux-x86-64.so.2", "libatomic.so.1.2.0"} <= analysed
