"""Progress of a crawl on stderr: a live line on a terminal, plain lines otherwise.

Shown: repositories and tags planned, images judged (and already known),
layers read of those handed out, bytes downloaded, rate and an ETA from the
bytes still queued. Plain mode (a log file, CI) prints one line per image and
a status line at most every ``PLAIN_EVERY`` seconds, never a control character.
"""

from __future__ import annotations

import re
import sys
import time
from typing import TextIO

from layerhound.crawl.worker import LayerOutcome
from layerhound.model import ImageResult

PLAIN_EVERY = 10.0
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class CrawlProgress:
    """A ``CrawlObserver`` that writes to ``stream`` (stderr by default)."""

    def __init__(self, stream: TextIO | None = None, live: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.started = time.monotonic()
        self.repositories = self.tags = 0
        self.images = self.known = self.errors = 0
        self.layers_queued = self.layers_done = 0
        self.bytes_queued = self.bytes_done = 0
        self._last_plain = 0.0
        self._drawn = False

    # -- observer ------------------------------------------------------------

    def planned(self, repository: str, tags: int) -> None:
        self.repositories += 1
        self.tags += tags
        self._line(f"{repository}: {tags} tag{'s' if tags != 1 else ''} to look at")

    def layer_queued(self, size: int) -> None:
        self.layers_queued += 1
        self.bytes_queued += size
        self._status()

    def layer_finished(self, outcome: LayerOutcome, size: int) -> None:
        self.layers_done += 1
        self.bytes_done += size
        if outcome.failure is not None:
            self._line(f"layer {outcome.digest}: {outcome.failure.message}")
        self._status()

    def image_finished(self, result: ImageResult, skipped: bool) -> None:
        if skipped:
            self.known += 1
        else:
            self.images += 1
        self.errors += result.verdict.value == "error"
        platform = f" [{result.platform}]" if result.platform else ""
        known = " (already judged)" if skipped else ""
        self._line(f"{result.ref}{platform}: {result.verdict.value}{known}")

    def note(self, message: str) -> None:
        self._line(f"note: {message}")

    # -- drawing -------------------------------------------------------------

    def summary(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = self.bytes_done / elapsed
        left = max(self.bytes_queued - self.bytes_done, 0)
        eta = _duration(left / rate) if rate > 0 and left else "-"
        return (
            f"{self.repositories} repos, {self.tags} tags | images {self.images} judged, {self.known} known, "
            f"{self.errors} errors | layers {self.layers_done}/{self.layers_queued}, "
            f"{_size(self.bytes_done)}/{_size(self.bytes_queued)} at {_size(rate)}/s, ETA {eta}"
        )

    def _status(self) -> None:
        now = time.monotonic()
        if self.live:
            self.stream.write("\r\x1b[2K" + self.summary()[:200])
            self.stream.flush()
            self._drawn = True
        elif now - self._last_plain >= PLAIN_EVERY:
            self._last_plain = now
            self.stream.write(f"progress: {self.summary()}\n")
            self.stream.flush()

    def _line(self, text: str) -> None:
        text = _CONTROL.sub("\N{REPLACEMENT CHARACTER}", text)  # registry text never drives the terminal
        if self.live and self._drawn:
            self.stream.write("\r\x1b[2K")
        self.stream.write(text + "\n")
        if self.live:
            self.stream.write(self.summary()[:200])
            self._drawn = True
        self.stream.flush()

    def close(self) -> None:
        if self.live and self._drawn:
            self.stream.write("\r\x1b[2K")
        self.stream.write(f"done in {_duration(time.monotonic() - self.started)}: {self.summary()}\n")
        self.stream.flush()
