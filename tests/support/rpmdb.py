"""Real rpm databases for the rpm detector's tests, in all three formats.

How each is made (Debian bookworm's ``rpm`` 4.18 and ``db5.3-util``):

* packages: ``rpmbuild -bb`` of a minimal spec written here (no files, any
  NAME/EPOCH/VERSION/RELEASE/VENDOR/DISTRIBUTION, ``--target`` arch), so the
  headers are rpm's own, with every tag rpmbuild adds;
* **sqlite**: ``rpm --dbpath DIR --justdb --nodeps -i`` with
  ``_db_backend sqlite`` -- rpm itself writes ``rpmdb.sqlite`` (in WAL mode, as
  on a real system) and adds its install-time tags to each header;
* **Berkeley DB**: Debian's rpm can only *read* Berkeley DB (``bdb_ro``), so the
  header blobs rpm stored in the sqlite database are loaded with
  ``db5.3_load -t hash`` under the keys rpm's bdb backend used (the 4-byte
  header instance in the writer's byte order, plus instance 0 holding the
  next-instance counter), in any page size and byte order. Every such file is
  then read back by rpm itself (``rpm -qa`` with ``_db_backend bdb_ro``), which
  proves it is a database rpm accepts;
* **ndb**: Debian's rpm is built without the ndb backend, so ``write_ndb``
  lays the same header blobs out exactly as rpm's lib/backend/ndb/rpmpkg.c
  writes them (32-byte header, 4 KiB slot pages of 16-byte ``Slot`` entries,
  16-byte blocks holding ``BlbS`` head, blob, zero padding, and an Adler-32
  ``BlbE`` tail). It is the one container not written by rpm; the headers in it are.

A missing tool is a failure (the Makefile installs ``rpm`` and ``db5.3-util``),
never a skip.
"""

from __future__ import annotations

import shutil
import sqlite3
import struct
import subprocess
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


def require_tool(name: str, package: str) -> str:
    """Path of a tool the Makefile installs; its absence fails the test."""
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not installed (Debian package {package}): run `make setup`")
    return path


def _run(command: Sequence[str]) -> str:
    done = subprocess.run(list(command), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


@dataclass(frozen=True)
class Spec:
    """One spec file: a source package and the binary packages it builds."""

    name: str
    version: str
    release: str
    vendor: str | None = None
    distribution: str | None = None
    epoch: int | None = None
    arch: str = "x86_64"
    subpackages: tuple[str, ...] = ()
    """Full names of extra binary packages (``%package -n``)."""
    main: bool = True
    """Whether the source-named package itself is built."""
    description_lines: int = 1
    """Lines of %description: a long one makes the header span several pages."""

    def text(self) -> str:
        lines = [
            f"Name: {self.name}",
            f"Version: {self.version}",
            f"Release: {self.release}",
            "Summary: layerhound test package",
            "License: 0BSD",
        ]
        if self.epoch is not None:
            lines.append(f"Epoch: {self.epoch}")
        if self.vendor:
            lines.append(f"Vendor: {self.vendor}")
        if self.distribution:
            lines.append(f"Distribution: {self.distribution}")
        body = [f"Test package line {i} for the layerhound rpm database tests." for i in range(self.description_lines)]
        lines += ["%description", *body]
        for sub in self.subpackages:
            lines += [f"%package -n {sub}", f"Summary: {sub}", f"%description -n {sub}", *body]
        if self.main:
            lines.append("%files")
        lines += [f"%files -n {sub}" for sub in self.subpackages]
        return "\n".join(lines) + "\n"


def build_rpms(spec: Spec, work: Path) -> list[Path]:
    """The binary .rpm files rpmbuild makes from ``spec``."""
    rpmbuild = require_tool("rpmbuild", "rpm")
    top = work / f"build-{spec.name}-{spec.version}-{spec.release}-{spec.arch}"
    top.mkdir(parents=True, exist_ok=True)
    spec_file = top / f"{spec.name}.spec"
    spec_file.write_text(spec.text())
    _run([rpmbuild, "--quiet", "--define", f"_topdir {top}", "--target", spec.arch, "-bb", str(spec_file)])
    rpms = sorted((top / "RPMS").rglob("*.rpm"))
    if not rpms:
        raise RuntimeError(f"rpmbuild made no package from {spec_file}")
    return rpms


def install_sqlite(rpms: Sequence[Path], dbpath: Path) -> Path:
    """``rpmdb.sqlite`` written by rpm itself with ``rpms`` installed (headers only)."""
    rpm = require_tool("rpm", "rpm")
    dbpath.mkdir(parents=True, exist_ok=True)
    _run([
        rpm, "--dbpath", str(dbpath), "--define", "_db_backend sqlite",
        "--justdb", "--nodeps", "--noscripts", "--notriggers", "--ignorearch", "--ignoreos",
        "-i", *map(str, rpms),
    ])
    return dbpath / "rpmdb.sqlite"


def stored_blobs(sqlite_db: Path) -> list[tuple[int, bytes]]:
    """(instance, header blob) pairs exactly as rpm stored them."""
    connection = sqlite3.connect(f"file:{sqlite_db}?mode=ro", uri=True)
    try:
        return [(int(h), bytes(b)) for h, b in connection.execute("SELECT hnum, blob FROM Packages ORDER BY hnum")]
    finally:
        connection.close()


def rpm_query(dbpath: Path, backend: str) -> list[str]:
    """``NAME EPOCHNUM:VERSION-RELEASE ARCH`` of every package, as rpm itself reads ``dbpath``."""
    rpm = require_tool("rpm", "rpm")
    out = _run([
        rpm, "--dbpath", str(dbpath), "--define", f"_db_backend {backend}",
        "-qa", "--qf", "%{NAME} %{EPOCHNUM}:%{VERSION}-%{RELEASE} %{ARCH}\\n",
    ])
    return sorted(line for line in out.splitlines() if line)


def write_bdb(
    blobs: Sequence[tuple[int, bytes]], dbpath: Path, pagesize: int = 4096, big_endian: bool = False
) -> Path:
    """A Berkeley DB hash ``Packages`` holding ``blobs``, checked by rpm's bdb_ro."""
    db_load = require_tool("db5.3_load", "db5.3-util")
    dbpath.mkdir(parents=True, exist_ok=True)
    target = dbpath / "Packages"
    target.unlink(missing_ok=True)
    key = struct.Struct(">I" if big_endian else "<I")
    next_instance = max((h for h, _ in blobs), default=0) + 1
    lines = ["VERSION=3", "format=bytevalue", "type=hash", f"db_pagesize={pagesize}"]
    if big_endian:
        lines.append("db_lorder=4321")
    lines.append("HEADER=END")
    lines += [" " + key.pack(0).hex(), " " + key.pack(next_instance).hex()]
    for instance, blob in blobs:
        lines += [" " + key.pack(instance).hex(), " " + blob.hex()]
    lines.append("DATA=END")
    dump = dbpath / "Packages.dump"
    dump.write_text("\n".join(lines) + "\n")
    _run([db_load, "-f", str(dump), str(target)])
    dump.unlink()
    return target


def write_ndb(blobs: Sequence[tuple[int, bytes]], dbpath: Path, generation: int = 7) -> Path:
    """An ndb ``Packages.db`` laid out as rpm's rpmpkg.c writes one."""
    page, slot_size, blk = 4096, 16, 16
    head_size, tail_size = 16, 12
    slots_per_page = page // slot_size
    slotnpages = max(1, -(-(len(blobs) + 2) // slots_per_page))
    nextpkgidx = max((h for h, _ in blobs), default=0) + 1
    out = bytearray(struct.pack("<4sIIII12x", b"RpmP", 0, generation, slotnpages, nextpkgidx))
    slots = bytearray()
    area = bytearray()
    blkoff = slotnpages * page // blk
    now = int(time.time())
    for pkgidx, blob in blobs:
        blkcnt = (head_size + len(blob) + tail_size + blk - 1) // blk
        head = struct.pack("<4sIII", b"BlbS", pkgidx, now, len(blob))
        pad = bytes(blkcnt * blk - head_size - len(blob) - tail_size)
        adler = zlib.adler32(head + blob + pad)
        area += head + blob + pad + struct.pack("<II4s", adler, len(blob), b"BlbE")
        slots += struct.pack("<4sIII", b"Slot", pkgidx, blkoff, blkcnt)
        blkoff += blkcnt
    free = slotnpages * slots_per_page - 2 - len(blobs)
    slots += struct.pack("<4s12x", b"Slot") * free
    out += slots + area
    dbpath.mkdir(parents=True, exist_ok=True)
    target = dbpath / "Packages.db"
    target.write_bytes(bytes(out))
    return target
