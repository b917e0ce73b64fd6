"""Debian's Chromium, headless, for the HTML report: the DOM after scripts ran, and a screenshot.

Started the way this machine's network needs (no background networking, no
component updates, a fresh profile), as root with ``--no-sandbox``. The page
itself reports what happened to it in ``<body>`` attributes (``data-ready``
once its script ran, ``data-errors`` for uncaught errors, ``data-blocked`` for
any fetch the Content-Security-Policy stopped), which ``--dump-dom`` shows.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from tests.support.registry import require_tool

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--mute-audio"]


def chromium(page: Path, *args: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="layerhound-chromium-") as profile:
        return subprocess.run(
            [require_tool("chromium"), *FLAGS, f"--user-data-dir={profile}", *args, page.resolve().as_uri()],
            capture_output=True, text=True, timeout=120,
        )


def dump_dom(page: Path) -> str:
    """The page's DOM once loaded and its scripts ran."""
    done = chromium(page, "--virtual-time-budget=2000", "--dump-dom")
    if done.returncode != 0:
        raise RuntimeError(f"chromium --dump-dom failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


def screenshot(page: Path, out: Path, size: str = "1280,1800") -> Path:
    done = chromium(page, f"--window-size={size}", f"--screenshot={out.resolve()}")
    if done.returncode != 0 or not out.exists():
        raise RuntimeError(f"chromium --screenshot failed ({done.returncode}): {done.stderr[-2000:]}")
    return out
