"""Debian's podman as the tests' local container engine.

Everything podman keeps (storage with the ``vfs`` driver, run state, events)
lives in a directory of the test's own, so nothing of the machine's podman is
touched and no systemd, network or overlay mount is needed. ``podman system
service`` on a unix socket in that directory answers the Docker Engine API (and
libpod's), which is what layerhound scans through as ``docker-daemon:`` and
``podman:``. Installed by ``make system-deps``, never skipped.
"""

from __future__ import annotations

import atexit
import http.client
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.registry import require_tool


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=5)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(str(self._path))


class Podman:
    """A private podman: its storage under ``workdir``, its API service on ``socket``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        # podman refuses a runroot over 50 characters, and a socket path has 107 at most: both go
        # in a short directory of their own (run state only; the images stay under workdir).
        self.short = Path(tempfile.mkdtemp(prefix="lh-podman-", dir="/tmp"))
        atexit.register(shutil.rmtree, self.short, True)
        self.socket = self.short / "podman.sock"
        self.url = f"unix://{self.socket}"
        self._service: subprocess.Popen[bytes] | None = None
        self.log = workdir / "service.log"

    def command(self, *args: str | Path) -> list[str]:
        return [
            require_tool("podman"),
            "--root", str(self.workdir / "storage"),
            "--runroot", str(self.short / "run"),
            "--tmpdir", str(self.workdir / "tmp"),
            "--storage-driver", "vfs",
            "--cgroup-manager", "cgroupfs",
            "--events-backend", "file",
            *[str(a) for a in args],
        ]

    def run(self, *args: str | Path, timeout: float = 300) -> str:
        done = subprocess.run(self.command(*args), capture_output=True, text=True, timeout=timeout, check=False)
        assert done.returncode == 0, f"podman {' '.join(map(str, args))} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def start(self) -> Podman:
        """Start ``podman system service`` and wait until ``/_ping`` answers."""
        self.socket.unlink(missing_ok=True)
        with open(self.log, "ab") as log:
            self._service = subprocess.Popen(
                self.command("system", "service", "--time", "0", self.url),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        atexit.register(self.stop)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._service.poll() is not None:
                raise RuntimeError(f"podman system service exited:\n{self.log.read_text()}")
            if self.ping():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"podman system service did not answer:\n{self.log.read_text()}")

    def ping(self) -> bool:
        connection = _UnixConnection(self.socket)
        try:
            connection.request("GET", "/_ping")
            return connection.getresponse().status == 200
        except OSError:
            return False
        finally:
            connection.close()

    def stop(self) -> None:
        if self._service is not None and self._service.poll() is None:
            self._service.terminate()
            try:
                self._service.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._service.kill()
                self._service.wait()
        self._service = None
