"""What each fuzz harness feeds, and which errors count as a clean refusal.

A target is a function of one input's bytes that runs a parser of untrusted bytes the way a
scan runs it. A refusal is one of the parser's own documented errors; any other exception is
a finding of the fuzzer (a crasher), and so is a hang (libFuzzer's ``-timeout``) or memory
over ``-rss_limit_mb``. This module imports no fuzzer: ``tests/test_fuzz_crashers.py`` replays
the kept crashers through the same functions.
"""

from __future__ import annotations

import contextlib
import io
import os
import sqlite3
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from layerhound.detectors.base import HEAD_SIZE, Detector
from layerhound.detectors.elfscan import ElfBoundError, ElfFormatError
from layerhound.detectors.loader_config import CacheFormatError
from layerhound.detectors.registry import ALL_DETECTORS
from layerhound.detectors.rpm_header import RpmHeaderError
from layerhound.detectors.rpm_storage import RpmDatabaseError
from layerhound.errors import LayerhoundError, ScanError
from layerhound.layers.walk import walk_layer
from layerhound.model import Entry, EntryType
from layerhound.sources import open_images

REPO = Path(__file__).resolve().parents[1]

DETECTOR_REFUSALS: tuple[type[Exception], ...] = (
    ElfFormatError, ElfBoundError, RpmHeaderError, RpmDatabaseError, CacheFormatError,
)
"""The errors detectors document for bytes they cannot read (the walk turns them into notes)."""

PIECE = 1 << 16


def judge_file(path: str, data: bytes, detectors: Sequence[Detector] = ALL_DETECTORS) -> int:
    """Every detector that wants ``path`` judges ``data`` as the walk would: streamed or held whole.

    Returns how many detectors took the file (so a seed that reaches none is noticed).
    """
    entry = Entry(path, EntryType.FILE, len(data))
    head = data[:HEAD_SIZE]
    taken = 0
    for detector in detectors:
        if not detector.wants(entry, head):
            continue
        taken += 1
        try:
            scanner = detector.scanner(entry, head)
            if scanner is not None:
                for start in range(0, len(data), PIECE):
                    scanner.feed(data[start : start + PIECE])
                list(scanner.finish("0" * 64))
            elif len(data) <= detector.max_size:
                list(detector.inspect_hashed(entry, data, "0" * 64))
        except DETECTOR_REFUSALS:
            pass
    return taken


def _one_member_tar(name: str, data: bytes) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _walk(blob: bytes) -> None:
    from tests.layers.test_walk import blob_layer

    with contextlib.suppress(ScanError):
        walk_layer(blob_layer(blob), ALL_DETECTORS)


# -- the targets ---------------------------------------------------------------------------

ELF_PATH = "/usr/lib/x86_64-linux-gnu/liblzma.so.5"


def fuzz_elf(data: bytes) -> None:
    """The ELF analysers: the structural detector, elf-dynamic, hashes and signatures."""
    judge_file(ELF_PATH, data)


def fuzz_tar(data: bytes) -> None:
    """A layer blob (any compression) walked with every detector, archives inside opened."""
    _walk(data)


ARCHIVE_NAMES = ("x.zip", "x.deb", "x.rpm", "x.tar.gz", "x.tar", "x.jar", "x.tar.xz", "x.tar.zst", "x.a")


def fuzz_archive(data: bytes) -> None:
    """One archive member of a layer (the first byte picks its name, so its format), opened and judged."""
    if not data:
        return
    name = ARCHIVE_NAMES[data[0] % len(ARCHIVE_NAMES)]
    _walk(_one_member_tar(f"opt/{name}", data[1:]))


TRANSPORTS = ("oci-archive", "docker-archive")


def fuzz_manifest(data: bytes) -> None:
    """An outer archive (first byte: oci-archive or docker-archive): index, manifests, configs read."""
    if not data:
        return
    transport = TRANSPORTS[data[0] % len(TRANSPORTS)]
    with tempfile.NamedTemporaryFile(dir=_scratch(), suffix=".tar") as handle:
        handle.write(data[1:])
        handle.flush()
        try:
            for image in open_images(f"{transport}:{handle.name}"):
                _ = image.platform, image.config, [(layer.digest, layer.size) for layer in image.layers]
        except LayerhoundError:
            pass


PACKAGE_PATHS = (
    "/var/lib/dpkg/status",
    "/var/lib/dpkg/status.d/xz",
    "/var/lib/rpm/rpmdb.sqlite",
    "/var/lib/rpm/Packages",
    "/lib/apk/db/installed",
    "/var/lib/pacman/local/xz-5.6.1-1/desc",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
)


def fuzz_packages(data: bytes) -> None:
    """One package database or loader file (the first byte picks which)."""
    if not data:
        return
    judge_file(PACKAGE_PATHS[data[0] % len(PACKAGE_PATHS)], data[1:])


STARTUP_PATHS = ("/entrypoint.sh", "/etc/supervisor/conf.d/ssh.conf", "/etc/s6-overlay/s6-rc.d/sshd/run")


def fuzz_startup(data: bytes) -> None:
    """A start-up script or service definition (the first byte picks which)."""
    if not data:
        return
    judge_file(STARTUP_PATHS[data[0] % len(STARTUP_PATHS)], data[1:])


def _scratch() -> str:
    """Memory-backed scratch for the outer archives (one file per input, removed at once)."""
    return "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()


# -- seeds: small valid inputs, made here (and from this machine's clean files) -----------------


def _elf_seeds() -> list[bytes]:
    from tests.support.compile import compile_shared

    build = Path(tempfile.mkdtemp(prefix="layerhound-fuzz-"))
    implant = compile_shared(REPO / "tests/samples/implant_sim.c", build, opt="-O2")
    seeds = [implant.read_bytes()]
    system = Path("/usr/lib/x86_64-linux-gnu/libz.so.1")
    if system.exists():
        seeds.append(system.resolve().read_bytes())
    return seeds


def _tar_seeds() -> list[bytes]:
    import gzip

    plain = _one_member_tar("etc/os-release", b"ID=debian\n")
    nested = _one_member_tar("opt/x.tar.gz", gzip.compress(plain))
    return [plain, gzip.compress(plain), nested]


def _archive_seeds() -> list[bytes]:
    import gzip
    import zipfile

    inner = _one_member_tar("usr/lib/liblzma.so.5", b"\x7fELF" + bytes(60))
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("lib/liblzma.so.5", b"\x7fELF" + bytes(60))
    deb = b"!<arch>\n" + b"debian-binary   0           0     0     100644  4         `\n2.0\n"
    return [bytes([0]) + zipped.getvalue(), bytes([1]) + deb, bytes([3]) + gzip.compress(inner), bytes([4]) + inner]


def _manifest_seeds() -> list[bytes]:
    from tests.support.imagewriter import ImageSpec, Layer, write_docker_archive, write_oci_archive

    seeds = []
    with tempfile.TemporaryDirectory(prefix="layerhound-fuzz-") as tmp:
        image = ImageSpec([Layer.files({"etc/os-release": "ID=debian\n"})])
        write_oci_archive(Path(tmp) / "oci.tar", image, compression="none")
        write_docker_archive(Path(tmp) / "docker.tar", [(image, ["demo:1"])])
        seeds.append(bytes([0]) + (Path(tmp) / "oci.tar").read_bytes())
        seeds.append(bytes([1]) + (Path(tmp) / "docker.tar").read_bytes())
    return seeds


def _package_seeds() -> list[bytes]:
    status = (b"Package: liblzma5\nStatus: install ok installed\nArchitecture: amd64\n"
              b"Source: xz-utils\nVersion: 5.6.1-1\n\n")
    with tempfile.TemporaryDirectory(prefix="layerhound-fuzz-") as tmp:
        db = Path(tmp) / "rpmdb.sqlite"
        connection = sqlite3.connect(db)
        connection.execute("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL)")
        connection.execute("INSERT INTO Packages (blob) VALUES (?)", (bytes(16),))
        connection.commit()
        connection.close()
        sqlite = db.read_bytes()
    apk = b"C:Q1abc=\nP:xz-libs\nV:5.6.1-r0\nA:x86_64\no:xz\n\n"
    pacman = b"%NAME%\nxz\n\n%VERSION%\n5.6.1-1\n\n%ARCH%\nx86_64\n\n"
    conf = b"include /etc/ld.so.conf.d/*.conf\n/usr/local/lib\n"
    return [bytes([0]) + status, bytes([2]) + sqlite, bytes([4]) + apk, bytes([5]) + pacman, bytes([7]) + conf]


def _startup_seeds() -> list[bytes]:
    script = b'#!/bin/sh\nset -e\nif [ "$1" = sshd ]; then\n  exec /usr/sbin/sshd -D\nfi\nexec "$@"\n'
    supervisor = b"[program:sshd]\ncommand=/usr/sbin/sshd -D\n"
    return [bytes([0]) + script, bytes([1]) + supervisor]


@dataclass(frozen=True)
class Target:
    name: str
    run: Callable[[bytes], None]
    seeds: Callable[[], list[bytes]]
    max_len: int
    """Longest input libFuzzer makes (its ``-max_len``): room for the seeds and a little more."""


TARGETS: dict[str, Target] = {
    target.name: target
    for target in (
        Target("elf", fuzz_elf, _elf_seeds, 1 << 18),
        Target("tar", fuzz_tar, _tar_seeds, 1 << 16),
        Target("archive", fuzz_archive, _archive_seeds, 1 << 16),
        Target("manifest", fuzz_manifest, _manifest_seeds, 1 << 16),
        Target("packages", fuzz_packages, _package_seeds, 1 << 16),
        Target("startup", fuzz_startup, _startup_seeds, 1 << 14),
    )
}
