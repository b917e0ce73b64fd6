"""The real command line in a subprocess, as a user runs it: ``layerhound scan … --format json``."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ScanRun:
    status: int
    images: list[dict[str, Any]]
    """The JSON report's images ([] when nothing was printed)."""
    stderr: str


def scan_json(*args: str, env: Mapping[str, str] | None = None, timeout: float = 300) -> ScanRun:
    """``layerhound scan --no-progress --format json ARGS…`` from the checkout, in ``env`` (default: this one's)."""
    done = subprocess.run(
        [sys.executable, "-m", "layerhound", "scan", "--no-progress", "--format", "json", *args],
        capture_output=True, text=True, timeout=timeout, cwd=REPO, env=None if env is None else dict(env),
        check=False,
    )
    images = json.loads(done.stdout)["images"] if done.stdout.strip() else []
    return ScanRun(done.returncode, images, done.stderr)


@dataclass(frozen=True)
class MeasuredScan:
    status: int
    peak_mib: float
    """Peak resident memory of the scan process, as GNU time reports it."""
    stderr: str


def measured_scan(reference: str, out: Path, timeout: float = 600) -> MeasuredScan:
    """``layerhound scan --no-cache --format json -o OUT REFERENCE`` under GNU time.

    Under ``/usr/bin/time``, a small process: the peak RSS the kernel reports for a child of
    pytest would count the memory of the process it was forked from.
    """
    done = subprocess.run(
        ["/usr/bin/time", "-f", "%M", sys.executable, "-m", "layerhound", "scan", "--no-cache", "--no-progress",
         "--format", "json", "-o", str(out), reference],
        capture_output=True, text=True, timeout=timeout, cwd=REPO, check=False,
    )
    *scan_stderr, peak = done.stderr.rstrip("\n").split("\n")
    return MeasuredScan(done.returncode, int(peak) / 1024, "\n".join(scan_stderr))
