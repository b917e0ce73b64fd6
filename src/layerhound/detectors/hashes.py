"""Whole-file sha256 matches against published CVE-2024-3094 artifacts.

Why: an exact hash is the strongest evidence there is. It cannot misfire on a
legitimate file, and it names precisely which artifact is present: a built
implant, the payload object, a release tarball or one of the files that only
exist to smuggle the payload into a build. Its weakness is that any rebuild
escapes it, which is what the signature and structure detectors are for.

The detector hashes the data itself instead of trusting the engine's digest,
so it stays correct whatever the engine chooses to hash or cache.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from layerhound.detectors.base import ELF_MAGIC, Detector, Interest, is_elf
from layerhound.model import Entry, Finding, Indicates, Kind


@dataclass(frozen=True, slots=True)
class KnownBad:
    """What one known-bad sha256 stands for."""

    description: str
    indicates: Indicates
    version: str | None = None
    """The xz release the artifact belongs to, when the publication says so."""
    filename: str | None = None
    """Basename the artifact is published under; ``wants`` accepts it whatever
    its first bytes are."""


KNOWN_BAD: Mapping[str, KnownBad] = {
    # Built implants: loadable liblzma with the backdoor linked in.
    "319feb5a9cddd81955d915b5632b4a5f8f9080281fb46e2f6d69d53f693c23ae": KnownBad(
        "liblzma.so.5.6.0 from Debian xz-utils 5.6.0-0.2 (backdoored)",
        Indicates.IMPLANT, "5.6.0", "liblzma.so.5.6.0",
    ),
    "605861f833fc181c7cdcabd5577ddb8989bea332648a8f498b4eef89b8f85ad4": KnownBad(
        "liblzma.so.5.6.1 from Debian xz-utils 5.6.1-1 (backdoored)",
        Indicates.IMPLANT, "5.6.1", "liblzma.so.5.6.1",
    ),
    "8fa641c454c3e0f76de73b7cc3446096b9c8b9d33d406d38b8ac76090b0344fd": KnownBad(
        "backdoored liblzma build listed in public CVE-2024-3094 indicators",
        Indicates.IMPLANT,
    ),
    "5448850cdc3a7ae41ff53b433c2adbd0ff492515012412ee63a40d2685db3049": KnownBad(
        "backdoored liblzma build listed in public CVE-2024-3094 indicators",
        Indicates.IMPLANT,
    ),
    "257fc477b9684863e0822cbad3606d76c039be8dd51cdc13b73e74e93d7b04cc": KnownBad(
        "backdoored liblzma.so.5.6.1 build listed in public analyses",
        Indicates.IMPLANT, "5.6.1",
    ),
    # The payload object spliced into the build; not loadable by itself.
    "b418bfd34aa246b2e7b5cb5d263a640e5d080810f767370c4d2c24662a274963": KnownBad(
        "payload object liblzma_la-crc64-fast.o extracted from xz 5.6.1",
        Indicates.PAYLOAD, "5.6.1", "liblzma_la-crc64-fast.o",
    ),
    "cbeef92e67bf41ca9c015557d81f39adaba67ca9fb3574139754999030b83537": KnownBad(
        "payload object liblzma_la-crc64-fast.o extracted from xz 5.6.0",
        Indicates.PAYLOAD, "5.6.0", "liblzma_la-crc64-fast.o",
    ),
    # Release tarballs: the only place the trigger m4 was ever published.
    "0f5c81f14171b74fcc9777d302304d964e63ffc2d7b634ef023a7249d9b5d875": KnownBad(
        "release tarball xz-5.6.0.tar.gz", Indicates.SOURCE, "5.6.0", "xz-5.6.0.tar.gz",
    ),
    "cdafe1632f139c82937cc1ed824f7a60b7b0a0619dfbbd681dcac02b1ac28f5b": KnownBad(
        "release tarball xz-5.6.0.tar.xz", Indicates.SOURCE, "5.6.0", "xz-5.6.0.tar.xz",
    ),
    "2398f4a8e53345325f44bdd9f0cc7401bd9025d736c6d43b372f4dea77bf75b8": KnownBad(
        "release tarball xz-5.6.1.tar.gz", Indicates.SOURCE, "5.6.1", "xz-5.6.1.tar.gz",
    ),
    "f334777310ca3ae9ba07206d78ed286a655aa3f44eec27854f740c26b2cd2ed0": KnownBad(
        "release tarball xz-5.6.1.tar.xz", Indicates.SOURCE, "5.6.1", "xz-5.6.1.tar.xz",
    ),
    # Unpacked source: the configure trigger and the disguised payload files.
    "054003928e240de8b9f3232e1bb885a5b6cc09488742159a0e3d6080e16499f4": KnownBad(
        "trigger m4/build-to-host.m4 from the xz release tarballs",
        Indicates.SOURCE, None, "build-to-host.m4",
    ),
    "13bdc7473154593a0cf6456561cd543f1f341a7621f5863054c88ba49534e569": KnownBad(
        "stage-1 carrier tests/files/bad-3-corrupt_lzma2.xz from xz 5.6.0",
        Indicates.SOURCE, "5.6.0", "bad-3-corrupt_lzma2.xz",
    ),
    "ecda10d8877d555dbda4a4eba329e146b2be8ac4b7915fb723eaacc9f89d16bd": KnownBad(
        "stage-1 carrier tests/files/bad-3-corrupt_lzma2.xz from xz 5.6.1",
        Indicates.SOURCE, "5.6.1", "bad-3-corrupt_lzma2.xz",
    ),
    "616e38159153b8aa2a98193ae5325597b8732443421c81d0a57bd878b2c6d2a8": KnownBad(
        "payload carrier tests/files/good-large_compressed.lzma from xz 5.6.0",
        Indicates.SOURCE, "5.6.0", "good-large_compressed.lzma",
    ),
    "9aef898229de60f94cdea42f19268e6e3047f7136f2ff97510390a2deeda7032": KnownBad(
        "payload carrier tests/files/good-large_compressed.lzma from xz 5.6.1",
        Indicates.SOURCE, "5.6.1", "good-large_compressed.lzma",
    ),
}
"""sha256 (lowercase hex) of every known-bad file -> what it is."""

SIZE_CAP = 32 * 1024 * 1024
"""No file above this size is read. Safe: the largest known artifact, a
release tarball, is under 3 MB, and a hash matches only identical bytes."""

WANTED_SUFFIXES = (".m4", ".o", ".xz", ".lzma", ".tar.gz", ".tar.xz")

_GZIP_MAGIC = b"\x1f\x8b"
_XZ_MAGIC = b"\xfd7zXZ\x00"
_LZMA_ALONE_MAGIC = b"\x5d\x00\x00"
"""LZMA_Alone has no magic; properties byte 0x5d plus a small dictionary size
is what xz itself writes, and what the payload carrier starts with."""


class KnownHashDetector(Detector):
    """Match whole files against the sha256 of published backdoor artifacts."""

    name = "known-hashes"
    version = 1
    max_size = SIZE_CAP

    def __init__(self, extra: Mapping[str, KnownBad] | None = None) -> None:
        """``extra`` adds entries to the built-in table (tests use it to prove a
        match on a harmless file instead of shipping real malware)."""
        self._table: dict[str, KnownBad] = {**KNOWN_BAD, **(extra or {})}
        self._names = frozenset(k.filename for k in self._table.values() if k.filename)

    def interest(self) -> Interest:
        return Interest(
            heads=(ELF_MAGIC, _GZIP_MAGIC, _XZ_MAGIC, _LZMA_ALONE_MAGIC), names=self._names, suffixes=WANTED_SUFFIXES
        )

    def wants(self, entry: Entry, head: bytes) -> bool:
        if entry.size > SIZE_CAP:
            return False
        if (
            is_elf(head)
            or head.startswith(_GZIP_MAGIC)
            or head.startswith(_XZ_MAGIC)
            or head.startswith(_LZMA_ALONE_MAGIC)
        ):
            return True
        base = posixpath.basename(entry.path)
        return base in self._names or base.endswith(WANTED_SUFFIXES)

    def inspect(self, entry: Entry, data: bytes) -> Iterator[Finding]:
        return self.inspect_hashed(entry, data, hashlib.sha256(data).hexdigest())

    def scanner(self, entry: Entry, head: bytes) -> HashScanner:
        return HashScanner(self, entry)

    def inspect_hashed(self, entry: Entry, data: bytes, sha256: str) -> Iterator[Finding]:
        known = self._table.get(sha256)
        if known is None:
            return
        yield Finding(
            rule="known-bad-hash",
            kind=Kind.HASH,
            indicates=known.indicates,
            path=entry.path,
            evidence={
                "matches": known.description,
                "version": known.version,
                "published_as": known.filename,
            },
        )

    def rule_tables(self) -> dict[str, Any]:
        """The data this detector's findings depend on, for the rules version."""
        return {
            "known_bad": {
                digest: [k.description, k.indicates.value, k.version, k.filename]
                for digest, k in sorted(self._table.items())
            },
            "size_cap": SIZE_CAP,
            "suffixes": list(WANTED_SUFFIXES),
        }


class HashScanner:
    """The known-hashes check needs only the hash the walk computes; the pieces are not looked at."""

    def __init__(self, detector: KnownHashDetector, entry: Entry) -> None:
        self._detector = detector
        self._entry = entry

    def feed(self, piece: bytes) -> None:
        pass

    def finish(self, sha256: str) -> Iterator[Finding]:
        return self._detector.inspect_hashed(self._entry, b"", sha256)
