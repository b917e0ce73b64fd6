"""A Python program in a subprocess whose address space is capped with ``resource.setrlimit``.

Why a subprocess: a hostile input's memory bound is only proven where going over it fails
(``MemoryError``, exit status 1) instead of being absorbed by pytest's own heap.
"""

from __future__ import annotations

import resource
import subprocess
import sys
from dataclasses import dataclass

from tests.support.cli import REPO


@dataclass(frozen=True)
class CappedRun:
    status: int
    stdout: str
    stderr: str


def run_capped(program: str, cap_mib: int, timeout: float = 120) -> CappedRun:
    """``python -c PROGRAM`` from the checkout, its address space limited to ``cap_mib`` MiB."""
    cap = cap_mib << 20

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO, preexec_fn=limit, check=False)
    return CappedRun(done.returncode, done.stdout, done.stderr)
