"""Every error layerhound raises on purpose.

    LayerhoundError                 base; str(e) is a message for a person
    ├── UsageError                  the command line is wrong (exit 2, no scan)
    ├── ReferenceError_             a reference cannot be parsed
    └── ScanError                   one image cannot be scanned (verdict "error")
        ├── SourceError             the source is missing or malformed
        │   ├── ManifestError       manifest/index/config unreadable or invalid
        │   └── RegistryError       a registry refused, failed or could not be reached
        │       └── PullBudgetExhausted   Docker Hub's pull budget is down to the reserve
        ├── InternalError           a bug of ours while scanning one image (please report)
        └── BlobError               a blob cannot be read
            ├── DigestMismatch      bytes do not match the digest that names them
            └── CorruptLayer        compression or tar stream is broken/truncated

A ``ScanError`` fails only the image it belongs to; the other images of the
same command go on. Other libraries' exceptions are translated at the boundary
(``raise ... from``) so that no traceback reaches a user for bad input.

Every ``ScanError`` has a ``kind`` (stable, for machines: "registry",
"manifest", "digest-mismatch", …), an HTTP ``status`` when a registry
answered, and ``retryable``: whether the same request may succeed later. A
failed image keeps all three (``model.Failure``), so a crawl can tell "retry
later" (rate limit, 5xx, dropped connection) from "gone" (404) or "broken".
"""

from __future__ import annotations

import urllib.parse


class LayerhoundError(Exception):
    """Base of all deliberate errors."""


class UsageError(LayerhoundError):
    """The command line is wrong."""


class ReferenceError_(LayerhoundError):
    """A reference string is not one of the supported transports."""


class ScanError(LayerhoundError):
    """One image could not be scanned."""

    kind = "scan"
    status: int | None = None
    retryable = False


class SourceError(ScanError):
    """The source (directory, archive, registry) is missing or malformed."""

    kind = "source"


class ManifestError(SourceError):
    """A manifest, index or config is unreadable or invalid."""

    kind = "manifest"


def redact_url(url: str) -> str:
    """``url`` without anything that can be a secret: user info and query.

    Registries redirect blob downloads to signed storage URLs whose query is
    a bearer credential in all but name, so the query goes too.
    """
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "(unparseable URL)"
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is not None:
        netloc = f"{netloc}:{port}"
    query = "?…" if parts.query else ""
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", "")) + query


class RegistryError(SourceError):
    """A registry answered with an error, or could not be reached.

    ``status`` is the HTTP status (None when no answer came), ``retryable``
    says whether the same request may succeed later (5xx, 429, a dropped
    connection, a rate-limit budget), and ``url`` is the request URL without
    credentials or query. The message never contains credentials.
    """

    kind = "registry"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = False,
        url: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.url = redact_url(url) if url else None


class PullBudgetExhausted(RegistryError):
    """Docker Hub's pull budget is down to the reserve: stop pulling, resume later."""

    kind = "rate-limit"


class InternalError(ScanError):
    """A bug of layerhound's met while scanning one image: that image fails, the run goes on."""

    kind = "internal"


class BlobError(ScanError):
    """A blob could not be read completely and correctly."""

    kind = "blob"


class DigestMismatch(BlobError):
    """A blob's bytes do not hash to the digest that names it."""

    kind = "digest-mismatch"

    def __init__(self, expected: str, actual: str, what: str = "blob") -> None:
        super().__init__(f"{what} digest mismatch: expected {expected}, got {actual}")
        self.expected = expected
        self.actual = actual


class CorruptLayer(BlobError):
    """The compressed stream or the tar inside it is broken or truncated."""

    kind = "corrupt-layer"
