"""The known-hash detector: exact published artifacts, and nothing else."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from layerhound.detectors.base import HEAD_SIZE
from layerhound.detectors.hashes import KNOWN_BAD, SIZE_CAP, KnownBad, KnownHashDetector
from layerhound.model import Entry, EntryType, Finding, Indicates, Kind

EXPECTED = {
    # digest: (indicates, version, published basename)
    "319feb5a9cddd81955d915b5632b4a5f8f9080281fb46e2f6d69d53f693c23ae": (Indicates.IMPLANT, "5.6.0", "liblzma.so.5.6.0"),
    "605861f833fc181c7cdcabd5577ddb8989bea332648a8f498b4eef89b8f85ad4": (Indicates.IMPLANT, "5.6.1", "liblzma.so.5.6.1"),
    "8fa641c454c3e0f76de73b7cc3446096b9c8b9d33d406d38b8ac76090b0344fd": (Indicates.IMPLANT, None, None),
    "5448850cdc3a7ae41ff53b433c2adbd0ff492515012412ee63a40d2685db3049": (Indicates.IMPLANT, None, None),
    "257fc477b9684863e0822cbad3606d76c039be8dd51cdc13b73e74e93d7b04cc": (Indicates.IMPLANT, "5.6.1", None),
    "b418bfd34aa246b2e7b5cb5d263a640e5d080810f767370c4d2c24662a274963": (Indicates.PAYLOAD, "5.6.1", "liblzma_la-crc64-fast.o"),
    "cbeef92e67bf41ca9c015557d81f39adaba67ca9fb3574139754999030b83537": (Indicates.PAYLOAD, "5.6.0", "liblzma_la-crc64-fast.o"),
    "0f5c81f14171b74fcc9777d302304d964e63ffc2d7b634ef023a7249d9b5d875": (Indicates.SOURCE, "5.6.0", "xz-5.6.0.tar.gz"),
    "cdafe1632f139c82937cc1ed824f7a60b7b0a0619dfbbd681dcac02b1ac28f5b": (Indicates.SOURCE, "5.6.0", "xz-5.6.0.tar.xz"),
    "2398f4a8e53345325f44bdd9f0cc7401bd9025d736c6d43b372f4dea77bf75b8": (Indicates.SOURCE, "5.6.1", "xz-5.6.1.tar.gz"),
    "f334777310ca3ae9ba07206d78ed286a655aa3f44eec27854f740c26b2cd2ed0": (Indicates.SOURCE, "5.6.1", "xz-5.6.1.tar.xz"),
    "054003928e240de8b9f3232e1bb885a5b6cc09488742159a0e3d6080e16499f4": (Indicates.SOURCE, None, "build-to-host.m4"),
    "13bdc7473154593a0cf6456561cd543f1f341a7621f5863054c88ba49534e569": (Indicates.SOURCE, "5.6.0", "bad-3-corrupt_lzma2.xz"),
    "ecda10d8877d555dbda4a4eba329e146b2be8ac4b7915fb723eaacc9f89d16bd": (Indicates.SOURCE, "5.6.1", "bad-3-corrupt_lzma2.xz"),
    "616e38159153b8aa2a98193ae5325597b8732443421c81d0a57bd878b2c6d2a8": (Indicates.SOURCE, "5.6.0", "good-large_compressed.lzma"),
    "9aef898229de60f94cdea42f19268e6e3047f7136f2ff97510390a2deeda7032": (Indicates.SOURCE, "5.6.1", "good-large_compressed.lzma"),
}


def run(detector: KnownHashDetector, path: str, data: bytes) -> list[Finding]:
    entry = Entry(path, EntryType.FILE, size=len(data))
    if not detector.wants(entry, data[:HEAD_SIZE]):
        return []
    return list(detector.inspect(entry, data))


def test_table_holds_exactly_the_published_hashes() -> None:
    assert set(KNOWN_BAD) == set(EXPECTED)
    for digest, known in KNOWN_BAD.items():
        assert (known.indicates, known.version, known.filename) == EXPECTED[digest], digest
        assert known.description


def test_table_keys_are_lowercase_sha256() -> None:
    for digest in KNOWN_BAD:
        assert len(digest) == 64 and digest == digest.lower()
        int(digest, 16)


def test_injected_hash_matches_a_harmless_file(tmp_path: Path) -> None:
    # A stand-in for the real artifact: the test never needs the malware itself.
    sample = tmp_path / "liblzma.so.5.6.1"
    sample.write_bytes(b"\x7fELF" + b"harmless stand-in for a known-bad build" * 50)
    data = sample.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    detector = KnownHashDetector(
        extra={digest: KnownBad("test stand-in", Indicates.IMPLANT, "5.6.1", "liblzma.so.5.6.1")}
    )
    [finding] = run(detector, "/usr/lib/x86_64-linux-gnu/liblzma.so.5.6.1", data)
    assert finding.rule == "known-bad-hash"
    assert finding.kind is Kind.HASH
    assert finding.indicates is Indicates.IMPLANT
    assert finding.path == "/usr/lib/x86_64-linux-gnu/liblzma.so.5.6.1"
    assert finding.sha256 is None and finding.layer is None
    assert finding.evidence == {
        "matches": "test stand-in", "version": "5.6.1", "published_as": "liblzma.so.5.6.1",
    }
    # One byte changed: no match.
    assert run(detector, "/usr/lib/liblzma.so.5.6.1", data[:-1] + b"!") == []


@pytest.mark.parametrize("indicates", [Indicates.PAYLOAD, Indicates.SOURCE])
def test_finding_carries_the_entry_kind(indicates: Indicates) -> None:
    data = b"dnl a build-to-host.m4 stand-in\n"
    detector = KnownHashDetector(
        extra={hashlib.sha256(data).hexdigest(): KnownBad("stand-in", indicates)}
    )
    [finding] = run(detector, "/src/xz/m4/build-to-host.m4", data)
    assert finding.indicates is indicates


def test_injection_does_not_change_the_builtin_table() -> None:
    KnownHashDetector(extra={"0" * 64: KnownBad("x", Indicates.SOURCE)})
    assert "0" * 64 not in KNOWN_BAD
    assert "0" * 64 not in KnownHashDetector().rule_tables()["known_bad"]


def test_random_data_does_not_match() -> None:
    detector = KnownHashDetector()
    for size in (0, 1, 4096, 300_000):
        data = b"\x7fELF" + os.urandom(size)
        assert run(detector, "/usr/lib/liblzma.so.5.6.1", data) == []


def test_real_debian_liblzma_does_not_match() -> None:
    host = sorted(Path("/usr/lib/x86_64-linux-gnu").glob("liblzma.so.5.*"))
    files = [p for p in host if p.is_file() and not p.is_symlink()]
    assert files, "this Debian machine has liblzma5"
    detector = KnownHashDetector()
    for path in files:
        data = path.read_bytes()  # read as data only, never loaded
        entry = Entry(f"/usr/lib/x86_64-linux-gnu/{path.name}", EntryType.FILE, size=len(data))
        assert detector.wants(entry, data[:HEAD_SIZE])
        assert list(detector.inspect(entry, data)) == []


@pytest.mark.parametrize(
    ("path", "head"),
    [
        ("/usr/lib/libfoo.so", b"\x7fELF\x02\x01\x01"),
        ("/root/archive.bin", b"\x1f\x8b\x08\x00"),
        ("/root/archive.bin", b"\xfd7zXZ\x00\x00\x04"),
        ("/root/payload.bin", b"\x5d\x00\x00\x80\x00"),
        ("/src/xz-5.6.1/m4/build-to-host.m4", b"# build-to-host.m4 serial 30\n"),
        ("/src/xz-5.6.1/tests/files/bad-3-corrupt_lzma2.xz", b"\xfd7zXZ\x00"),
        ("/src/xz-5.6.1/tests/files/good-large_compressed.lzma", b"garbage"),
        ("/build/liblzma_la-crc64-fast.o", b"not elf"),
        ("/srv/xz-5.6.1.tar.gz", b"renamed"),
        ("/srv/xz-5.6.1.tar.xz", b"renamed"),
        ("/srv/other.m4", b"dnl"),
    ],
)
def test_wants_candidates(path: str, head: bytes) -> None:
    assert KnownHashDetector().wants(Entry(path, EntryType.FILE, size=1000), head)


def test_wants_known_basename_regardless_of_content() -> None:
    # liblzma.so.5.6.1 has no suffix that wants() knows: only the table name.
    entry = Entry("/opt/liblzma.so.5.6.1", EntryType.FILE, size=1000)
    assert KnownHashDetector().wants(entry, b"plain text")


@pytest.mark.parametrize(
    ("path", "head"),
    [
        ("/etc/passwd", b"root:x:0:0:root:/root:/bin/bash\n"),
        ("/usr/share/doc/readme.txt", b"hello"),
        ("/usr/bin/script.sh", b"#!/bin/sh\n"),
    ],
)
def test_skips_other_files(path: str, head: bytes) -> None:
    assert not KnownHashDetector().wants(Entry(path, EntryType.FILE, size=1000), head)


def test_skips_files_above_the_size_cap() -> None:
    detector = KnownHashDetector()
    head = b"\x7fELF\x02\x01\x01"
    assert detector.wants(Entry("/usr/bin/big", EntryType.FILE, size=SIZE_CAP), head)
    assert not detector.wants(Entry("/usr/bin/big", EntryType.FILE, size=SIZE_CAP + 1), head)
