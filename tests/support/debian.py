"""Real Debian material for tests and the demo: root filesystems and packages.

Everything is built once per machine under a cache directory and reused; a
lock file serialises concurrent builders (pytest-xdist workers), and a marker
file written last means a killed build is redone, never half-used.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CACHE = Path(os.environ.get("LAYERHOUND_TEST_CACHE", Path.home() / ".cache" / "layerhound-tests"))
DEFAULT_MIRROR = "http://deb.debian.org/debian"


def mirror() -> str:
    """The Debian mirror this machine's apt uses (the only one reachable here)."""
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.exists():
        match = re.search(r"^URIs:\s*(\S+/debian)\s*$", sources.read_text(), re.M)
        if match:
            return match.group(1)
    return DEFAULT_MIRROR


@contextmanager
def _locked(name: str) -> Iterator[Path]:
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield CACHE / name


def debootstrap_rootfs(name: str, include: tuple[str, ...] = (), suite: str = "bookworm") -> Path:
    """A ``debootstrap --variant=minbase`` root filesystem with extra packages."""
    with _locked(name) as target:
        marker = target / ".layerhound-complete"
        if marker.exists():
            return target
        shutil.rmtree(target, ignore_errors=True)
        command = ["debootstrap", "--variant=minbase"]
        if include:
            command.append("--include=" + ",".join(include))
        command += [suite, str(target), mirror()]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"debootstrap failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        # The apt cache holds .deb files debootstrap used; they would be scanned
        # as archives and only slow the tests down.
        for deb in (target / "var/cache/apt/archives").glob("*.deb"):
            deb.unlink()
        marker.write_text("ok\n")
        return target


def apt_download(package: str) -> Path:
    """A real ``.deb`` of this machine's Debian release, fetched with apt-get download."""
    with _locked(f"debs-{package}") as target:
        existing = sorted(target.glob(f"{package}_*.deb")) if target.exists() else []
        if existing:
            return existing[-1]
        target.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["apt-get", "download", package], cwd=target, capture_output=True, text=True)
        if done.returncode != 0:
            # A fresh machine may not have its package lists yet.
            subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True)
            subprocess.run(["apt-get", "download", package], cwd=target, check=True, capture_output=True)
        return sorted(target.glob(f"{package}_*.deb"))[-1]


def deb_data_files(deb: Path) -> dict[str, tuple[str, bytes | str]]:
    """The files of a .deb's data archive: path -> ("file", bytes) or ("symlink", target).

    Read with dpkg-deb --fsys-tarfile into memory: a test builds image layers
    from Debian's own bytes without installing the package anywhere.
    """
    import io
    import tarfile

    tar_bytes = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], check=True, capture_output=True).stdout
    files: dict[str, tuple[str, bytes | str]] = {}
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as archive:
        for info in archive:
            path = "/" + info.name.lstrip("./")
            if info.isreg():
                extracted = archive.extractfile(info)
                assert extracted is not None
                files[path] = ("file", extracted.read())
            elif info.issym():
                files[path] = ("symlink", info.linkname)
    return files


def deb_control(deb: Path) -> str:
    """The control stanza of a .deb, as dpkg would copy it into its status file."""
    return subprocess.run(["dpkg-deb", "-f", str(deb)], check=True, capture_output=True, text=True).stdout
