"""Every error layerhound raises on purpose.

    LayerhoundError                 base; str(e) is a message for a person
    ├── UsageError                  the command line is wrong (exit 2, no scan)
    ├── ReferenceError_             a reference cannot be parsed
    └── ScanError                   one image cannot be scanned (verdict "error")
        ├── SourceError             the source is missing or malformed
        │   └── ManifestError       manifest/index/config unreadable or invalid
        └── BlobError               a blob cannot be read
            ├── DigestMismatch      bytes do not match the digest that names them
            └── CorruptLayer        compression or tar stream is broken/truncated

A ``ScanError`` fails only the image it belongs to; the other images of the
same command go on. Other libraries' exceptions are translated at the boundary
(``raise ... from``) so that no traceback reaches a user for bad input.
"""

from __future__ import annotations


class LayerhoundError(Exception):
    """Base of all deliberate errors."""


class UsageError(LayerhoundError):
    """The command line is wrong."""


class ReferenceError_(LayerhoundError):
    """A reference string is not one of the supported transports."""


class ScanError(LayerhoundError):
    """One image could not be scanned."""


class SourceError(ScanError):
    """The source (directory, archive, registry) is missing or malformed."""


class ManifestError(SourceError):
    """A manifest, index or config is unreadable or invalid."""


class BlobError(ScanError):
    """A blob could not be read completely and correctly."""


class DigestMismatch(BlobError):
    """A blob's bytes do not hash to the digest that names it."""

    def __init__(self, expected: str, actual: str, what: str = "blob") -> None:
        super().__init__(f"{what} digest mismatch: expected {expected}, got {actual}")
        self.expected = expected
        self.actual = actual


class CorruptLayer(BlobError):
    """The compressed stream or the tar inside it is broken or truncated."""
