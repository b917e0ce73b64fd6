"""Real, clean ELF files of this machine must give no signature or hash finding.

The files are read as bytes only; nothing is loaded or executed.
"""

from __future__ import annotations

from pathlib import Path

from layerhound.detectors.base import HEAD_SIZE, Detector, is_elf
from layerhound.detectors.hashes import KnownHashDetector
from layerhound.detectors.signatures import ByteSignatureDetector
from layerhound.model import Entry, EntryType

LIBDIR = Path("/usr/lib/x86_64-linux-gnu")
DETECTORS: tuple[Detector, ...] = (ByteSignatureDetector(), KnownHashDetector())


def host_elf_files(patterns: list[tuple[Path, str]]) -> list[Path]:
    """Distinct regular ELF files matching the globs (symlinks resolved once)."""
    seen: dict[Path, None] = {}
    for directory, pattern in patterns:
        for path in sorted(directory.glob(pattern)):
            real = path.resolve()
            if real.is_file() and real not in seen:
                with real.open("rb") as handle:
                    if is_elf(handle.read(4)):
                        seen[real] = None
    return list(seen)


def findings_for(path: Path) -> list[str]:
    data = path.read_bytes()
    entry = Entry(str(path), EntryType.FILE, size=len(data))
    head = data[:HEAD_SIZE]
    return [
        f"{d.name}:{f.rule}"
        for d in DETECTORS
        if d.wants(entry, head) and entry.size <= d.max_size
        for f in d.inspect(entry, data)
    ]


def test_host_libraries_are_clean() -> None:
    files = host_elf_files(
        [(LIBDIR, "liblzma*"), (LIBDIR, "libc.so.6"), (LIBDIR, "libcrypto*")]
    )
    assert any(p.name.startswith("liblzma") for p in files), "this Debian machine has liblzma5"
    dirty = {str(p): hits for p in files if (hits := findings_for(p))}
    assert dirty == {}


def test_host_executables_are_clean() -> None:
    files = host_elf_files([(Path("/usr/bin"), "*")])
    assert len(files) >= 10, "too few ELF executables in /usr/bin to be a meaningful negative"
    dirty = {str(p): hits for p in files if (hits := findings_for(p))}
    assert dirty == {}
