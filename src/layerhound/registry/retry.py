"""When to try a request again, and how long to wait first.

Transient failures (5xx, dropped connections) are retried a bounded number of
times with exponential backoff and jitter, so a fleet of scanners does not
hammer a struggling registry in lock-step. A ``429`` waits as long as the
registry asks in ``Retry-After`` — unless that is longer than we are willing
to wait, in which case the caller fails with a clear message instead of
hanging or retrying early.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import datetime

_RNG = random.Random()

RETRY_STATUSES = frozenset({500, 502, 503, 504})
"""Server errors worth another try (501, 505 and the like are not)."""


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds of the retry loop of one request."""

    attempts: int = 4
    """Tries in all, the first included (so ``attempts - 1`` retries)."""
    base_delay: float = 0.5
    """Seconds before the first retry; doubled for each further one."""
    max_delay: float = 8.0
    """Cap of one backoff delay."""
    max_retry_after: float = 60.0
    """The longest ``Retry-After`` honoured; a registry asking for more fails the request."""

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < 0 or self.max_retry_after < 0:
            raise ValueError("delays must not be negative")

    def backoff(self, retry: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (0 for the first).

        "Equal jitter": half the exponential delay is fixed, the other half
        random, so retries spread out but never come back immediately.
        """
        ceiling = min(self.max_delay, self.base_delay * (2.0**retry))
        generator: random.Random = rng or _RNG
        return ceiling / 2 + generator.uniform(0, ceiling / 2)


def parse_retry_after(value: str | None, now: datetime.datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); None if absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    import datetime
    import email.utils  # an HTTP date is rare: neither is loaded for every command

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    now = now or datetime.datetime.now(datetime.UTC)
    return max(0.0, (when - now).total_seconds())
