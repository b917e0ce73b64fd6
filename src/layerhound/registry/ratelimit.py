"""Being a good citizen: Docker Hub's pull budget and per-host concurrency.

Docker Hub counts every manifest GET as a pull and says how many are left in
``ratelimit-remaining: 95;w=21600`` (pulls; window in seconds). ``PullBudget``
remembers the last figure a host gave and refuses further pulls once only the
reserve is left, so a crawl stops and says so instead of burning the quota
(and then failing with ``429`` for hours). HEAD requests do not count as
pulls and are never refused.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from layerhound.errors import PullBudgetExhausted

_RATELIMIT_RE = re.compile(r"^\s*(\d+)(?:\s*;\s*w\s*=\s*(\d+))?")


@dataclass(frozen=True)
class RateLimit:
    """One reading of ``ratelimit-limit``/``ratelimit-remaining``."""

    remaining: int
    window: int | None
    limit: int | None = None


def parse_ratelimit(value: str | None) -> tuple[int, int | None] | None:
    """``"95;w=21600"`` → ``(95, 21600)``; None when absent or unreadable."""
    if not value:
        return None
    match = _RATELIMIT_RE.match(value)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2)) if match.group(2) else None


class PullBudget:
    """The last rate-limit reading of one host, and the reserve to keep."""

    def __init__(self, host: str, reserve: int) -> None:
        self.host = host
        self.reserve = max(0, reserve)
        self.last: RateLimit | None = None
        self._lock = threading.Lock()

    def observe(self, headers: Mapping[str, str]) -> None:
        """Remember the figures of a response that carries them."""
        remaining = parse_ratelimit(headers.get("ratelimit-remaining"))
        if remaining is None:
            return
        limit = parse_ratelimit(headers.get("ratelimit-limit"))
        with self._lock:
            self.last = RateLimit(remaining[0], remaining[1], limit[0] if limit else None)

    def check(self, url: str | None = None) -> None:
        """Raise ``PullBudgetExhausted`` when the next pull would eat into the reserve."""
        with self._lock:
            last = self.last
        if last is None or last.remaining > self.reserve:
            return
        window = f" (window {last.window} s)" if last.window else ""
        raise PullBudgetExhausted(
            f"{self.host}: pull rate limit nearly used up: {last.remaining} pulls left{window}, "
            f"keeping a reserve of {self.reserve}; stopping instead of burning the quota — try again later",
            retryable=True,
            url=url,
        )


class HostSlots:
    """At most ``limit`` threads at a time working against one host.

    Re-entrant per thread: a thread that already holds a slot (say, reading
    one blob while it opens another) does not wait for a second one, so
    nested use can never deadlock, even with a limit of 1.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("concurrency must be at least 1")
        self.limit = limit
        self._semaphore = threading.BoundedSemaphore(limit)
        self._lock = threading.Lock()
        self._held = threading.local()
        self.active = 0
        self.peak = 0
        """Most threads seen at once (for tests and diagnostics)."""

    def __enter__(self) -> HostSlots:
        depth: int = getattr(self._held, "depth", 0)
        if depth == 0:
            self._semaphore.acquire()
            with self._lock:
                self.active += 1
                self.peak = max(self.peak, self.active)
        self._held.depth = depth + 1
        return self

    def __exit__(self, *exc: object) -> None:
        depth: int = self._held.depth - 1
        self._held.depth = depth
        if depth == 0:
            with self._lock:
                self.active -= 1
            self._semaphore.release()
