"""Image configs by digest, in the ``configs`` table, shared by the cache and the store.

Configs are content-addressed and immutable, so they need no version: with
them kept, re-judging a fully stored image from a registry downloads no blob
at all (only its manifest, which a tag may move). Every read is checked
against the digest again.
"""

from __future__ import annotations

import hashlib
import time

from layerhound.store.db import Database

MAX_CONFIG = 1024 * 1024
"""Image configs larger than this are not kept (they are read from the source)."""


def matches(digest: str, data: bytes) -> bool:
    algo, _, expected = digest.partition(":")
    return algo in ("sha256", "sha512") and hashlib.new(algo, data).hexdigest() == expected


def get_config(db: Database, digest: str) -> bytes | None:
    """A stored config, only if its bytes still hash to ``digest``."""
    row = db.one("SELECT value FROM configs WHERE digest = ?", (digest,))
    if row is None:
        return None
    data = bytes(row[0])
    return data if matches(digest, data) else None


def put_config(db: Database, digest: str, data: bytes) -> None:
    """Keep verified config bytes (small ones only)."""
    if len(data) <= MAX_CONFIG and matches(digest, data):
        db.execute(
            "INSERT INTO configs (digest, stored_at, value) VALUES (?, ?, ?) ON CONFLICT (digest) DO NOTHING",
            (digest, int(time.time()), data),
        )
