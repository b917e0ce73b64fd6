"""The contract every detector keeps.

A detector is small and versioned. The layer engine streams each layer once;
for every regular file it hands the detector the entry and the first
``HEAD_SIZE`` bytes, and only if ``wants`` says yes does it read the file (up to
``max_size``) and call ``inspect``. Bumping ``version`` tells any cache that this
detector's earlier results are stale, and nothing else.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from layerhound.model import Entry, Fact, Finding

HEAD_SIZE = 64
"""Bytes of each regular file every detector may look at in ``wants``."""

ELF_MAGIC = b"\x7fELF"

HOLD_MAX = 64 * 1024 * 1024
"""The largest file a detector holds whole in memory to parse it (``inspect``); a larger one is
skipped for that detector and the layer notes it. Detectors that judge a stream (``scanner``)
hold nothing and are bound by time instead. This is what keeps a walk's memory flat."""


def is_elf(head: bytes) -> bool:
    """True when a file starts with the ELF magic."""
    return head[:4] == ELF_MAGIC


@dataclass(frozen=True)
class Interest:
    """Every file a detector's ``wants`` could say yes to is in here: a superset, as data.

    Why: ``wants`` runs for every file of every layer and archive, a dozen calls each; the
    walk joins the detectors' interests into one test and asks ``wants`` only of files that
    pass it. A file passes when its head starts with one of ``heads``, its path is one of
    ``paths`` or starts with one of ``prefixes``, or its base name is one of ``names`` or
    ends with one of ``suffixes``.
    """

    heads: tuple[bytes, ...] = ()
    paths: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()
    names: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()

    @classmethod
    def join(cls, interests: Iterable[Interest]) -> Interest:
        """One interest that passes every file any of ``interests`` passes."""
        known = list(interests)
        return cls(
            heads=tuple(sorted({head for i in known for head in i.heads})),
            paths=frozenset(path for i in known for path in i.paths),
            prefixes=tuple(sorted({prefix for i in known for prefix in i.prefixes})),
            names=frozenset(name for i in known for name in i.names),
            suffixes=tuple(sorted({suffix for i in known for suffix in i.suffixes})),
        )

    def passes(self, path: str, head: bytes) -> bool:
        if head.startswith(self.heads) or path in self.paths or path.startswith(self.prefixes):
            return True
        return path.endswith(self.suffixes) or path[path.rfind("/") + 1 :] in self.names

    def covers(self, other: Interest | None) -> bool:
        """Whether every file ``other`` passes also passes this one (None: any file, never covered)."""
        if other is None:
            return False
        return (
            all(head.startswith(self.heads) for head in other.heads)
            and all(self.passes(path, b"") for path in other.paths)
            and all(prefix.startswith(self.prefixes) for prefix in other.prefixes)
            and all(name in self.names for name in other.names)
            and all(suffix.endswith(self.suffixes) for suffix in other.suffixes)
        )

    def to_json(self) -> dict[str, list[str]]:
        return {"heads": [h.hex() for h in self.heads], "paths": sorted(self.paths), "prefixes": list(self.prefixes),
                "names": sorted(self.names), "suffixes": list(self.suffixes)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Interest:
        return cls(tuple(bytes.fromhex(h) for h in data.get("heads") or ()), frozenset(data.get("paths") or ()),
                   tuple(data.get("prefixes") or ()), frozenset(data.get("names") or ()),
                   tuple(data.get("suffixes") or ()))


class Scanner(Protocol):
    """One file fed to a detector piece by piece, for a detector that needs no more than that.

    Why: a file no detector must parse whole is then never held whole, whatever its size;
    memory stays at one piece. ``feed`` gets the pieces in order; ``finish`` the file's sha256.
    """

    def feed(self, piece: bytes) -> None: ...

    def finish(self, sha256: str) -> Iterable[Finding | Fact]: ...


class Detector(ABC):
    """One kind of evidence about single files."""

    name: ClassVar[str]
    """Stable identifier, used in the rules version and in cache keys."""
    version: ClassVar[int]
    """Bump whenever a change could alter this detector's findings."""
    max_size: ClassVar[int] = HOLD_MAX
    """Files larger than this are not read for this detector; the layer notes it."""

    @abstractmethod
    def wants(self, entry: Entry, head: bytes) -> bool:
        """Cheap filter on the header and first bytes; must not be expensive."""

    def scanner(self, entry: Entry, head: bytes) -> Scanner | None:
        """A ``Scanner`` for this file if this detector judges files as a stream (its ``max_size``
        then bounds nothing held); None: ``inspect`` is given the whole file."""
        return None

    def interest(self) -> Interest | None:
        """The files ``wants`` may accept, as data (``Interest``); None: any file, ask ``wants`` always."""
        return None

    @abstractmethod
    def rule_tables(self) -> dict[str, Any]:
        """The data this detector's findings depend on (hashes, patterns, ranges).

        Part of the rules version: a change here invalidates cached results
        exactly as a version bump would.
        """

    @abstractmethod
    def inspect(self, entry: Entry, data: bytes) -> Iterable[Finding | Fact]:
        """Judge a whole file. ``data`` is the complete content.

        Yields findings (evidence) and facts (what the assessment needs to
        know about the file, e.g. its DT_NEEDED list). Neither need fill
        ``layer`` (nor a finding its ``sha256``): the engine sets the layer
        digest and the file's sha256 where the detector left them None.
        """

    def inspect_hashed(self, entry: Entry, data: bytes, sha256: str) -> Iterable[Finding | Fact]:
        """``inspect``, given the file's sha256 (hex) that the walk has already computed.

        The walk calls this one: a detector that needs the whole file's hash overrides it and
        takes ``sha256`` instead of hashing the bytes a second time.
        """
        return self.inspect(entry, data)
