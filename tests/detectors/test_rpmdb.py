"""The rpm detector on real rpm databases in all three formats.

Every database here holds headers built by ``rpmbuild`` and installed by
``rpm`` (see tests/support/rpmdb.py for how the Berkeley DB and ndb containers
are made, and which of them rpm itself reads back).
"""

from __future__ import annotations

import builtins
import os
import struct
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from layerhound.detectors.base import HEAD_SIZE
from layerhound.detectors.rpm_header import RpmHeaderError, parse_header
from layerhound.detectors.rpm_storage import RpmDatabaseError, header_blobs, sniff
from layerhound.detectors.rpmdb import RpmDbDetector
from layerhound.model import Entry, EntryType, Fact, Finding, Indicates, Kind
from tests.support.detect import run_detector
from tests.support.rpmdb import (
    Spec,
    build_rpms,
    install_sqlite,
    rpm_query,
    stored_blobs,
    write_bdb,
    write_ndb,
)

DETECTOR = RpmDbDetector()
FEDORA = "Fedora Project"

SCENARIOS: dict[str, tuple[Spec, ...]] = {
    "fedora": (
        # A long description makes each header several Berkeley DB pages long.
        Spec("xz", "5.6.0", "2.fc40", vendor=FEDORA, subpackages=("xz-libs", "xz-fancy-tools"), description_lines=150),
        Spec("bash", "5.2.26", "3.fc40", vendor=FEDORA),
        Spec("libfoo", "5.6.0", "2.fc40", vendor=FEDORA),
    ),
    "fedora-clean": (
        Spec("xz", "5.4.6", "3.fc41", vendor=FEDORA, epoch=1, subpackages=("xz-libs",)),
        Spec("bash", "5.2.26", "3.fc40", vendor=FEDORA),
    ),
    "fedora-aarch64": (Spec("xz", "5.6.1", "1.fc41", vendor=FEDORA, arch="aarch64", main=False,
                            subpackages=("xz-libs",)),),
    "opensuse": (Spec("xz", "5.6.1", "1.1", vendor="openSUSE", distribution="openSUSE Tumbleweed",
                      subpackages=("liblzma5",)),),
    "opensuse-fixed": (Spec("xz", "5.6.1.revertto5.4", "3.2", vendor="openSUSE",
                            distribution="openSUSE Tumbleweed", subpackages=("liblzma5",)),),
    "unknown-vendor": (Spec("xz", "5.6.0", "1.el9", vendor="Example Corp", main=False, subpackages=("xz-libs",)),),
}

# package -> (version as rpm -q prints it, affected, injected_builds, distro)
EXPECTED: dict[str, dict[str, tuple[str, bool, bool | None, str | None]]] = {
    "fedora": {
        "xz": ("5.6.0-2.fc40", True, True, "fedora"),
        "xz-libs": ("5.6.0-2.fc40", True, True, "fedora"),
        "xz-fancy-tools": ("5.6.0-2.fc40", True, True, "fedora"),  # known by its SOURCERPM only
    },
    "fedora-clean": {
        "xz": ("1:5.4.6-3.fc41", False, None, "fedora"),
        "xz-libs": ("1:5.4.6-3.fc41", False, None, "fedora"),
    },
    "fedora-aarch64": {"xz-libs": ("5.6.1-1.fc41", True, False, "fedora")},
    "opensuse": {
        "xz": ("5.6.1-1.1", True, True, "opensuse"),
        "liblzma5": ("5.6.1-1.1", True, True, "opensuse"),
    },
    "opensuse-fixed": {
        "xz": ("5.6.1.revertto5.4-3.2", False, None, "opensuse"),
        "liblzma5": ("5.6.1.revertto5.4-3.2", False, None, "opensuse"),
    },
    "unknown-vendor": {"xz-libs": ("5.6.0-1.el9", True, None, "rpm-unknown")},
}

FORMATS = {
    "sqlite": "/usr/lib/sysimage/rpm/rpmdb.sqlite",
    "bdb": "/var/lib/rpm/Packages",
    "bdb-512": "/var/lib/rpm/Packages",
    "bdb-64k": "/var/lib/rpm/Packages",
    "bdb-big-endian": "/var/lib/rpm/Packages",
    "ndb": "/usr/lib/sysimage/rpm/Packages.db",
}

BDB_VARIANTS = ("bdb", "bdb-512", "bdb-64k", "bdb-big-endian")


@dataclass(frozen=True)
class Databases:
    """One scenario's packages in every format, and what rpm itself lists."""

    files: dict[str, Path]
    rpm_lists: dict[str, list[str]]


@pytest.fixture(scope="session")
def rpmdbs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Databases]:
    """Every scenario built once per session: rpmbuild, rpm install, then the other containers."""
    work = tmp_path_factory.mktemp("rpmdb")
    built: dict[str, Databases] = {}
    for name, specs in SCENARIOS.items():
        rpms = [path for spec in specs for path in build_rpms(spec, work / "rpms")]
        sqlite = install_sqlite(rpms, work / name / "sqlite")
        blobs = stored_blobs(sqlite)
        files = {
            "sqlite": sqlite,
            "bdb": write_bdb(blobs, work / name / "bdb"),
            "bdb-512": write_bdb(blobs, work / name / "bdb-512", pagesize=512),
            # Pages so large that small headers sit inline in the hash page (H_KEYDATA).
            "bdb-64k": write_bdb(blobs, work / name / "bdb-64k", pagesize=65536),
            "bdb-big-endian": write_bdb(blobs, work / name / "bdb-be", big_endian=True),
            "ndb": write_ndb(blobs, work / name / "ndb"),
        }
        lists = {"sqlite": rpm_query(sqlite.parent, "sqlite")}
        for variant in BDB_VARIANTS:
            lists[variant] = rpm_query(files[variant].parent, "bdb_ro")
        built[name] = Databases(files, lists)
    return built


def inspect(path: str, data: bytes) -> tuple[list[Finding], list[Fact]]:
    return run_detector(DETECTOR, path, data)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_format_reports_the_same_packages(
    rpmdbs: dict[str, Databases], scenario: str, fmt: str
) -> None:
    path = FORMATS[fmt]
    findings, facts = inspect(path, rpmdbs[scenario].files[fmt].read_bytes())
    expected = dict(EXPECTED[scenario])
    if fmt == "ndb" and scenario == "unknown-vendor":
        # Only SUSE uses ndb: with no dist tag and an unknown vendor, the format decides.
        expected = {"xz-libs": ("5.6.0-1.el9", True, True, "opensuse")}
    got = {
        f.data["package"]: (f.data["version"], f.data["affected"], f.data["injected_builds"], f.data["distro"])
        for f in facts
    }
    assert got == expected
    assert len(facts) == len(expected)
    for fact in facts:
        assert fact.collector == "packages"
        assert fact.path == path
        assert fact.data["database"] == "rpm"
        assert fact.data["format"] == fmt.split("-")[0]
    affected = {name for name, (_v, hit, _i, _d) in expected.items() if hit}
    assert {f.evidence["package"] for f in findings} == affected
    for finding in findings:
        version, _hit, injected, distro = expected[finding.evidence["package"]]
        assert finding.rule == "rpm-affected-version"
        assert finding.kind is Kind.PACKAGE
        assert finding.indicates is Indicates.AFFECTED_VERSION
        assert finding.path == path
        assert finding.layer is None and finding.sha256 is None
        assert {k: finding.evidence[k] for k in ("version", "database", "distro", "injected_builds")} == {
            "version": version, "database": "rpm", "distro": distro, "injected_builds": injected,
        }


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_rpm_itself_reads_our_berkeley_db_files(rpmdbs: dict[str, Databases], scenario: str) -> None:
    lists = rpmdbs[scenario].rpm_lists
    assert lists["sqlite"], "rpm lists no package in its own sqlite database"
    for variant in BDB_VARIANTS:
        assert lists[variant] == lists["sqlite"]


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_header_of_every_format_matches_what_rpm_lists(rpmdbs: dict[str, Databases], fmt: str) -> None:
    """Not only the xz packages: every header is decoded as rpm decodes it."""
    for name, dbs in rpmdbs.items():
        kind, blobs = header_blobs(dbs.files[fmt].read_bytes())
        assert kind == fmt.split("-")[0]
        ours = sorted(
            f"{p.name} {p.epoch or 0}:{p.version}-{p.release} {p.arch}" for p in map(parse_header, blobs)
        )
        assert ours == dbs.rpm_lists["sqlite"], name


def test_headers_span_several_overflow_pages(rpmdbs: dict[str, Databases]) -> None:
    data = rpmdbs["fedora"].files["bdb-512"].read_bytes()
    assert struct.unpack_from("<I", data, 20)[0] == 512
    _kind, blobs = header_blobs(data)
    assert max(len(b) for b in blobs) > 10 * 512


def test_small_headers_sit_inline_in_64k_pages(rpmdbs: dict[str, Databases]) -> None:
    data = rpmdbs["opensuse"].files["bdb-64k"].read_bytes()
    item_types = set()
    for n in range(1, len(data) // 65536):
        if data[n * 65536 + 25] == 13:
            entries = struct.unpack_from("<H", data, n * 65536 + 20)[0]
            for i in range(1, entries, 2):
                offset = struct.unpack_from("<H", data, n * 65536 + 26 + 2 * i)[0]
                item_types.add(data[n * 65536 + offset])
    assert item_types == {1}  # H_KEYDATA only: no overflow page at all
    findings, _ = inspect(FORMATS["bdb-64k"], data)
    assert len(findings) == 2


def test_rpm_wrote_its_sqlite_database_in_wal_mode(rpmdbs: dict[str, Databases]) -> None:
    """The in-memory open must cope with the WAL flag rpm leaves in the header."""
    data = rpmdbs["fedora"].files["sqlite"].read_bytes()
    assert data[18:20] == b"\x02\x02"
    findings, _facts = inspect(FORMATS["sqlite"], data)
    assert len(findings) == 3
    assert data[18:20] == b"\x02\x02"


def test_the_scanned_bytes_never_touch_the_disk(
    rpmdbs: dict[str, Databases], monkeypatch: pytest.MonkeyPatch
) -> None:
    def forbidden(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("the rpm detector tried to open or create a file")

    payloads = {fmt: rpmdbs["opensuse"].files[fmt].read_bytes() for fmt in FORMATS}
    for target, name in ((builtins, "open"), (os, "open"), (tempfile, "mkstemp"),
                         (tempfile, "NamedTemporaryFile"), (tempfile, "TemporaryDirectory")):
        monkeypatch.setattr(target, name, forbidden)
    for fmt, data in payloads.items():
        findings, _ = inspect(FORMATS[fmt], data)
        assert len(findings) == 2, fmt


@pytest.mark.parametrize(
    ("path", "wanted"),
    [
        ("/var/lib/rpm/rpmdb.sqlite", True),
        ("/usr/lib/sysimage/rpm/rpmdb.sqlite", True),
        ("/var/lib/rpm/Packages", True),
        ("/usr/lib/sysimage/rpm/Packages", True),
        ("/usr/lib/sysimage/rpm/Packages.db", True),
        ("/usr/share/rpm/Packages", True),
        ("/var/lib/rpm/Name", False),
        ("/var/lib/rpm/rpmdb.sqlite-wal", False),
        ("/var/lib/rpm/Index.db", False),
        ("/home/user/rpm/Packages", False),
        ("/var/lib/rpm/sub/Packages", False),
    ],
)
def test_wants_only_rpm_databases(path: str, wanted: bool) -> None:
    assert DETECTOR.wants(Entry(path, EntryType.FILE, size=4096), b"\0" * HEAD_SIZE) is wanted


def test_rule_tables_carry_the_affected_rpm_rows() -> None:
    tables = DETECTOR.rule_tables()
    distros = {row["distro"] for row in tables["affected"]}
    assert distros == {"fedora", "opensuse", "rpm-unknown"}
    assert all(row["ecosystem"] == "rpm" for row in tables["affected"])


# --------------------------------------------------------------------------
# Corrupt databases: a clear error, quickly, never a hang
# --------------------------------------------------------------------------


def expect_error(path: str, data: bytes, match: str, error: type[Exception] = RpmDatabaseError) -> None:
    entry = Entry(path, EntryType.FILE, size=len(data))
    started = time.monotonic()
    with pytest.raises(error, match=match):
        list(DETECTOR.inspect(entry, data))
    assert time.monotonic() - started < 5


def _bdb_pages(data: bytes) -> list[tuple[int, int, int]]:
    """(pgno, type, next) of every page of a little-endian Berkeley DB file."""
    size = struct.unpack_from("<I", data, 20)[0]
    return [
        (n, data[n * size + 25], struct.unpack_from("<I", data, n * size + 16)[0])
        for n in range(len(data) // size)
    ]


def _patch(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


def test_unknown_format_is_an_error() -> None:
    expect_error("/var/lib/rpm/Packages", b"\x00garbage" * 1000, "not an rpm database")


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_truncated_database_is_an_error(rpmdbs: dict[str, Databases], fmt: str) -> None:
    data = rpmdbs["fedora"].files[fmt].read_bytes()
    cut = data[: len(data) // 2 + 3]
    with pytest.raises((RpmDatabaseError, RpmHeaderError)):
        list(DETECTOR.inspect(Entry(FORMATS[fmt], EntryType.FILE, size=len(cut)), cut))


def test_sqlite_with_a_broken_page_is_an_error(rpmdbs: dict[str, Databases]) -> None:
    data = bytearray(rpmdbs["fedora"].files["sqlite"].read_bytes())
    page = struct.unpack_from(">H", data, 16)[0]
    for n in range(1, len(data) // page):
        data[n * page : n * page + 64] = b"\xff" * 64  # every b-tree page header
    expect_error(FORMATS["sqlite"], bytes(data), "rpmdb.sqlite")


def test_sqlite_without_a_packages_table_is_an_error(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "other.sqlite"
    connection = sqlite3.connect(db)
    connection.execute("CREATE TABLE Other (x)")
    connection.commit()
    connection.close()
    expect_error(FORMATS["sqlite"], db.read_bytes(), "without a Packages table")


@pytest.mark.parametrize(
    ("schema", "insert", "message"),
    [
        ("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY, blob BLOB AS (zeroblob(900000000)) VIRTUAL)",
         "INSERT INTO Packages (hnum) VALUES (1)", r"generated columns \(blob\)"),
        ("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY, n INT, blob BLOB AS (zeroblob(n)) STORED)",
         "INSERT INTO Packages (hnum, n) VALUES (1, 64)", r"generated columns \(blob\)"),
        ("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY, blob BLOB)",
         "INSERT INTO Packages VALUES (1, zeroblob(20000000))", "string or blob too big"),
    ],
)
def test_sqlite_that_would_compute_or_allocate_is_an_error(
    tmp_path: Path, schema: str, insert: str, message: str
) -> None:
    """rpm never writes a generated column; a blob over the value bound stops sqlite, not memory."""
    import sqlite3

    db = tmp_path / "rpmdb.sqlite"
    connection = sqlite3.connect(db)
    connection.execute(schema)
    connection.execute(insert)
    connection.commit()
    connection.close()
    expect_error(FORMATS["sqlite"], db.read_bytes(), message)


def test_bdb_overflow_cycle_ends_in_an_error(rpmdbs: dict[str, Databases]) -> None:
    """Chains that loop forever and items that claim the whole file: bounded, then an error."""
    buffer = bytearray(rpmdbs["fedora"].files["bdb-512"].read_bytes())
    for n, kind, nxt in _bdb_pages(bytes(buffer)):
        if kind == 7 and nxt == 0:
            struct.pack_into("<I", buffer, n * 512 + 16, n)  # the last page points to itself
        if kind == 13:
            entries = struct.unpack_from("<H", buffer, n * 512 + 20)[0]
            for i in range(entries):
                offset = struct.unpack_from("<H", buffer, n * 512 + 26 + 2 * i)[0]
                if buffer[n * 512 + offset] == 3:  # H_OFFPAGE: claim the file's size
                    struct.pack_into("<I", buffer, n * 512 + offset + 8, len(buffer))
    expect_error(FORMATS["bdb"], bytes(buffer), "overflow chain loops")


def test_bdb_overflow_pointing_outside_the_file_is_an_error(rpmdbs: dict[str, Databases]) -> None:
    data = rpmdbs["fedora"].files["bdb-512"].read_bytes()
    first_overflow = next(n for n, kind, _ in _bdb_pages(data) if kind == 7)
    bad = _patch(data, first_overflow * 512 + 16, "<I", 0x7FFFFFFF)
    expect_error(FORMATS["bdb"], bad, "outside the file|overflow")


def test_bdb_page_claiming_too_many_items_is_an_error(rpmdbs: dict[str, Databases]) -> None:
    data = rpmdbs["fedora"].files["bdb"].read_bytes()
    hash_page = next(n for n, kind, _ in _bdb_pages(data) if kind == 13)
    bad = _patch(data, hash_page * 4096 + 20, "<H", 0xFFFE)
    expect_error(FORMATS["bdb"], bad, "claims 65534 items")


def test_bdb_metadata_with_a_bad_page_size_is_an_error(rpmdbs: dict[str, Databases]) -> None:
    data = rpmdbs["fedora"].files["bdb"].read_bytes()
    expect_error(FORMATS["bdb"], _patch(data, 20, "<I", 1000), "page size 1000")


def test_bdb_checksummed_is_refused_like_rpm_does(rpmdbs: dict[str, Databases]) -> None:
    data = bytearray(rpmdbs["fedora"].files["bdb"].read_bytes())
    data[26] |= 0x01
    expect_error(FORMATS["bdb"], bytes(data), "checksums")


def test_ndb_adler32_mismatch_is_an_error(rpmdbs: dict[str, Databases]) -> None:
    data = bytearray(rpmdbs["opensuse"].files["ndb"].read_bytes())
    data[4096 + 100] ^= 0xFF  # inside the first blob
    expect_error(FORMATS["ndb"], bytes(data), "Adler-32")


def test_ndb_slot_beyond_the_file_is_an_error(rpmdbs: dict[str, Databases]) -> None:
    data = rpmdbs["opensuse"].files["ndb"].read_bytes()
    expect_error(FORMATS["ndb"], _patch(data, 32 + 12, "<I", 0xFFFFFF), "truncated")


def test_ndb_huge_slot_page_count_is_an_error(rpmdbs: dict[str, Databases]) -> None:
    data = rpmdbs["opensuse"].files["ndb"].read_bytes()
    expect_error(FORMATS["ndb"], _patch(data, 12, "<I", 0xFFFFFFFF), "slot pages")


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda blob: struct.pack(">II", 0x10000000, 8) + blob[8:], "index entries"),
        (lambda blob: struct.pack(">II", 3, 0x7FFFFFFF) + blob[8:], "data store"),
        (lambda blob: blob[: len(blob) // 2], "needs"),
    ],
)
def test_broken_header_is_an_error_naming_the_package(
    rpmdbs: dict[str, Databases], tmp_path: Path, mutate: Callable[[bytes], bytes], match: str
) -> None:
    blobs = stored_blobs(rpmdbs["fedora"].files["sqlite"])
    blobs[1] = (blobs[1][0], mutate(blobs[1][1]))
    data = write_ndb(blobs, tmp_path).read_bytes()
    expect_error(FORMATS["ndb"], data, rf"package #2: .*{match}", RpmHeaderError)


def test_sniff_names_the_three_formats(rpmdbs: dict[str, Databases]) -> None:
    files = rpmdbs["opensuse"].files
    assert sniff(files["sqlite"].read_bytes()) == "sqlite"
    assert sniff(files["bdb"].read_bytes()) == "bdb"
    assert sniff(files["bdb-big-endian"].read_bytes()) == "bdb"
    assert sniff(files["ndb"].read_bytes()) == "ndb"
    assert sniff(b"") is None
