"""The per-distribution table, the version orderings, and every package detector alike.

The rpm and pacman orderings are checked against the package managers' own C
libraries (``librpmio`` from Debian's ``rpm``, ``libalpm`` from ``libalpm13``)
through ctypes, on every pair of a pool of awkward versions; apk has no
library on Debian, so its ordering is checked against orderings of the kinds
apk-tools' own test data lists.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from layerhound.detectors.apk import ApkDetector
from layerhound.detectors.base import Detector
from layerhound.detectors.dpkg import DpkgDetector
from layerhound.detectors.pacman import PacmanDetector
from layerhound.detectors.rpmdb import RpmDbDetector
from layerhound.detectors.xz_versions import (
    TABLE,
    Ecosystem,
    apk_compare,
    apk_version_valid,
    dpkg_compare,
    guess_rpm_distro,
    is_xz_package,
    judge,
    pacman_vercmp,
    rpm_compare,
    rpmvercmp,
    rule_table,
)
from layerhound.model import Indicates, Kind
from tests.support.detect import run_detector
from tests.support.rpmdb import Spec, build_rpms, install_sqlite


def _library(name: str, soname: str, package: str) -> ctypes.CDLL:
    """A package manager's C library; its absence fails (the Makefile installs it)."""
    try:
        return ctypes.CDLL(soname)
    except OSError as exc:
        raise RuntimeError(f"{soname} not loadable ({exc}): install Debian package {package}") from exc


@pytest.fixture(scope="module")
def librpm_vercmp() -> Any:
    lib = _library("rpmio", "librpmio.so.9", "rpm")
    lib.rpmvercmp.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    lib.rpmvercmp.restype = ctypes.c_int
    return lib.rpmvercmp


@pytest.fixture(scope="module")
def libalpm_vercmp() -> Any:
    lib = _library("alpm", "libalpm.so.13", "libalpm13")
    lib.alpm_pkg_vercmp.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    lib.alpm_pkg_vercmp.restype = ctypes.c_int
    return lib.alpm_pkg_vercmp


def _sign(n: int) -> int:
    return (n > 0) - (n < 0)


# --------------------------------------------------------------------------
# Orderings
# --------------------------------------------------------------------------

RPM_POOL = [
    "", "1.0", "1.0.0", "1.0a", "1.0aa", "1.0b", "1.0B", "1.0~rc1", "1.0~rc2", "1.0~~", "1.0~",
    "1.0^", "1.0^git1", "1.0^git2", "1.0~rc1^git1", "1.0^git1~pre", "1.01", "1.001", "01.1",
    "10.0001", "10.1", "2_0", "2.0", "a", "a+", "_+", "+", "1..0", "1.0.", ".1.0", "xyz10",
    "xyz10.1", "5.4.6", "5.6.0", "5.6.1", "5.6.1.revertto5.4", "5.6.1a", "5.6.1~beta", "5.6.10",
    "5.6.1.1", "5.6.1+really5.4.5", "20240329", "2.fc40", "2.fc41", "1.1", "3.2",
]
PACMAN_POOL = [
    "5.6.0-1", "5.6.1-1", "5.6.1-2", "5.6.1", "5.6.1-1.1", "5.6.1.1-1", "5.6.1a-1", "5.6.1rc1-1",
    "5.6.1+r12+gdeadbeef-1", "5.6.1_r1-1", "5.6.1-10", "1:5.4.6-1", "0:5.6.1-1", ":5.6.1-1",
    "2:1.0-1", "1.0..1-1", "1.0.1-1", "1.0-1-1", "1.0~1-1", "a-1", "1-a", "1.0a-1", "1.0-a",
    "5.4.6-1", "1.0", "1.0.", "1..0", "..", "",
]


def test_rpmvercmp_agrees_with_librpmio(librpm_vercmp: Any) -> None:
    for a, b in itertools.product(RPM_POOL, repeat=2):
        expected = _sign(librpm_vercmp(a.encode(), b.encode()))
        assert rpmvercmp(a, b) == expected, (a, b)


def test_pacman_vercmp_agrees_with_libalpm(libalpm_vercmp: Any) -> None:
    for a, b in itertools.product(PACMAN_POOL + RPM_POOL, repeat=2):
        expected = _sign(libalpm_vercmp(a.encode(), b.encode()))
        assert pacman_vercmp(a, b) == expected, (a, b)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("5.6.0-2.fc40", "5.6.0-1.fc40", 1),
        ("1:5.4.6-3.fc41", "5.6.1-1.fc41", 1),  # the epoch wins over everything
        ("5.6.1", "5.6.1-1", 0),  # a missing release matches any release
        ("0:5.6.1-1", "5.6.1-1", 0),
        ("5.6.1.revertto5.4-3.2", "5.6.1-1.1", 1),
    ],
)
def test_rpm_evr_compare(a: str, b: str, expected: int) -> None:
    assert rpm_compare(a, b) == expected
    assert rpm_compare(b, a) == -expected


APK_ORDERED = [
    # (lower, higher): the forms apk-tools' own version tests exercise.
    ("5.6.1-r1", "5.6.1-r2"),
    ("5.6.1", "5.6.1-r0"),
    ("5.6.0-r9", "5.6.1-r0"),
    ("5.6.1_rc1-r0", "5.6.1-r0"),
    ("5.6.1_alpha", "5.6.1_beta"),
    ("5.6.1_beta", "5.6.1_pre"),
    ("5.6.1_pre", "5.6.1_rc"),
    ("5.6.1", "5.6.1_p1"),
    ("5.6.1_p9", "5.6.1_p10"),
    ("5.6.1_git20240301", "5.6.1_p1"),
    ("5.6.1_cvs", "5.6.1_svn"),
    ("5.6.1", "5.6.1a"),
    ("5.6.1a", "5.6.1b"),
    ("5.6.1b-r3", "5.6.1c"),
    ("1.06", "1.1"),  # leading zeros sort below
    ("1.1", "1.10"),
    ("0.1.0_alpha_pre2", "0.1.0_alpha"),
    ("5.4.6-r0", "5.6.0-r0"),
    ("1.0.0_pre20191002222144-r0", "1.0.0_pre20210530193627-r0"),
    ("1.3_pre1-r1", "1.3.2"),
    ("104-r9", "104-r11"),
    ("7.0.17", "7.0.174"),
    ("3.0.20060720", "20060720"),
]


@pytest.mark.parametrize(("low", "high"), APK_ORDERED)
def test_apk_ordering(low: str, high: str) -> None:
    assert apk_version_valid(low) and apk_version_valid(high)
    assert apk_compare(low, high) == -1
    assert apk_compare(high, low) == 1
    assert apk_compare(low, low) == 0


@pytest.mark.parametrize("version", ["5.6.1-x1", "5.6.1_foo", "abc", "5.6.1 ", "5.6.1-r1_p1"])
def test_apk_rejects_what_apk_rejects(version: str) -> None:
    assert not apk_version_valid(version)


def test_dpkg_ordering_gets_the_debian_fix_right() -> None:
    assert dpkg_compare("5.6.1+really5.4.5-1", "5.6.1-1") == 1
    assert dpkg_compare("5.5.1alpha-0.1", "5.5.1-1") == 1  # no tilde: letters sort after the end
    assert dpkg_compare("5.6.0-0.1", "5.5.1alpha-0.1") == 1
    with pytest.raises(ValueError):
        dpkg_compare("not a version!", "1")


# --------------------------------------------------------------------------
# The table: boundary versions per distribution
# --------------------------------------------------------------------------

CASES: list[tuple[str, str, str, str | None, str | None, str | None, bool, bool | None, str | None]] = [
    # ecosystem, package, version, release, distro_hint, arch, affected, injected, distro
    ("dpkg", "liblzma5", "5.5.1alpha-0.1", None, None, "amd64", True, True, "debian"),
    ("dpkg", "liblzma5", "5.6.0-0.2", None, None, "amd64", True, True, "debian"),
    ("dpkg", "xz-utils", "5.6.1-1", None, None, "amd64", True, True, "debian"),
    ("dpkg", "liblzma5", "5.6.1-1", None, "kali", "amd64", True, True, "debian"),
    ("dpkg", "liblzma5", "5.6.1-1", None, None, "arm64", True, False, "debian"),
    ("dpkg", "liblzma5", "5.6.1-1", None, None, "i386", True, False, "debian"),
    ("dpkg", "liblzma-doc", "5.6.1-1", None, None, "all", True, True, "debian"),
    ("dpkg", "liblzma5", "5.6.1+really5.4.5-1", None, None, "amd64", False, None, "debian"),
    ("dpkg", "liblzma5", "5.4.5-0.3", None, None, "amd64", False, None, "debian"),
    ("dpkg", "liblzma5", "5.5.0-1", None, None, "amd64", False, None, "debian"),
    ("rpm", "xz-libs", "5.6.0", "1.fc40", None, "x86_64", True, True, "fedora"),
    ("rpm", "xz-libs", "5.6.0", "2.fc40", None, "x86_64", True, True, "fedora"),
    ("rpm", "xz", "5.6.1", "1.fc41", None, "x86_64", True, True, "fedora"),
    ("rpm", "xz", "5.6.0", "3.fc41", None, "x86_64", True, True, "fedora"),
    ("rpm", "xz-libs", "5.6.0", "2.fc40", None, "aarch64", True, False, "fedora"),
    ("rpm", "xz-libs", "5.6.0", "2.fc40", None, "noarch", True, True, "fedora"),
    ("rpm", "xz-libs", "5.4.6", "1.fc40", None, "x86_64", False, None, "fedora"),
    ("rpm", "xz-libs", "5.4.6", "3.fc41", None, "x86_64", False, None, "fedora"),
    ("rpm", "xz-libs", "5.6.2", "1.fc41", None, "x86_64", False, None, "fedora"),
    ("rpm", "xz-libs", "5.6.0", "1.fc39", None, "x86_64", True, None, "fedora"),  # never shipped: unknown build
    ("rpm", "liblzma5", "5.6.0", "1.1", "opensuse", "x86_64", True, True, "opensuse"),
    ("rpm", "liblzma5", "5.6.1", "2.1", "opensuse", "x86_64", True, True, "opensuse"),
    ("rpm", "liblzma5", "5.6.1.revertto5.4", "3.2", "opensuse", "x86_64", False, None, "opensuse"),
    ("rpm", "liblzma5", "5.4.6", "1.1", "opensuse", "x86_64", False, None, "opensuse"),
    ("rpm", "xz-libs", "5.6.1", "1.el9", None, "x86_64", True, None, "rpm-unknown"),
    ("apk", "xz-libs", "5.6.0-r0", None, None, "x86_64", True, False, "alpine"),
    ("apk", "xz-libs", "5.6.1-r0", None, None, "x86_64", True, False, "alpine"),
    ("apk", "xz-libs", "5.6.1-r1", None, None, "x86_64", True, False, "alpine"),
    ("apk", "xz", "5.6.1-r2", None, None, "x86_64", False, None, "alpine"),
    ("apk", "xz", "5.4.6-r0", None, None, "x86_64", False, None, "alpine"),
    ("apk", "xz", "5.6.0_rc1-r0", None, None, "x86_64", False, None, "alpine"),
    ("apk", "xz", "5.6.2-r0", None, None, "x86_64", False, None, "alpine"),
    ("pacman", "xz", "5.6.0-1", None, None, "x86_64", True, False, "arch"),
    ("pacman", "xz", "5.6.1-1", None, None, "x86_64", True, False, "arch"),
    ("pacman", "lib32-xz", "5.6.1-1", None, None, "x86_64", True, False, "arch"),
    ("pacman", "xz", "5.6.1-2", None, None, "x86_64", False, None, "arch"),
    ("pacman", "xz", "5.4.6-1", None, None, "x86_64", False, None, "arch"),
    ("pacman", "xz", "1:5.6.0-1", None, None, "x86_64", False, None, "arch"),
    ("homebrew", "xz", "5.6.1", None, None, None, True, False, "homebrew"),
    ("homebrew", "xz", "5.6.1_1", None, None, None, True, False, "homebrew"),
    ("homebrew", "xz", "5.6.2", None, None, None, False, None, "homebrew"),
]


@pytest.mark.parametrize(
    ("ecosystem", "package", "version", "release", "hint", "arch", "affected", "injected", "distro"), CASES
)
def test_judge_boundaries(
    ecosystem: str, package: str, version: str, release: str | None, hint: str | None, arch: str | None,
    affected: bool, injected: bool | None, distro: str | None,
) -> None:
    claim = judge(ecosystem, package, version, release, hint, arch=arch)
    assert (claim.affected, claim.injected, claim.distro) == (affected, injected, distro), claim.reason
    assert claim.reason


def test_rpm_version_may_carry_epoch_and_release() -> None:
    assert judge("rpm", "xz-libs", "1:5.6.0-2.fc40").affected
    assert judge("rpm", "xz-libs", "1:5.6.0", "2.fc40").injected is True
    assert not judge("rpm", "xz-libs", "1:5.4.6-3.fc40").affected


def test_not_an_xz_package() -> None:
    claim = judge("dpkg", "libfoo1", "5.6.1-1")
    assert not claim.affected and "not an xz package" in claim.reason
    assert not judge("rpm", "libfoo", "5.6.0", "2.fc40").affected


@pytest.mark.parametrize(
    ("ecosystem", "name", "source", "expected"),
    [
        ("dpkg", "liblzma-foo", "xz-utils", True),
        ("dpkg", "liblzma-foo", "foo", False),
        ("rpm", "xz-extra", "xz-5.6.0-2.fc40.src.rpm", True),
        ("rpm", "xz-java", "xz-java-1.9-1.fc40.src.rpm", False),
        ("apk", "xz-extra", "xz", True),
        ("apk", "xz-extra", "xzfoo", False),
        ("pacman", "xz-extra", "xz", True),
        ("pacman", "xz", None, True),
        ("pacman", "xz-utils", None, False),
    ],
)
def test_family_by_source(ecosystem: str, name: str, source: str | None, expected: bool) -> None:
    assert is_xz_package(ecosystem, name, source) is expected


def test_unparsable_version_is_not_affected_and_says_why() -> None:
    claim = judge("dpkg", "liblzma5", "not a version!")
    assert not claim.affected and "unparsable" in claim.reason
    claim = judge("apk", "xz-libs", "5.6.1-x1")
    assert not claim.affected and "unparsable" in claim.reason


@pytest.mark.parametrize(
    ("release", "vendor", "distribution", "fmt", "expected"),
    [
        ("2.fc40", None, None, "sqlite", "fedora"),
        ("1.1", "openSUSE", "openSUSE Tumbleweed", "ndb", "opensuse"),
        ("1.1", "SUSE LLC <https://www.suse.com/>", None, "bdb", "opensuse"),
        ("1.1", None, None, "ndb", "opensuse"),
        ("1.el9", "Red Hat, Inc.", None, "sqlite", None),
        ("1.el9", None, None, "bdb", None),
    ],
)
def test_guess_rpm_distro(
    release: str, vendor: str | None, distribution: str | None, fmt: str, expected: str | None
) -> None:
    assert guess_rpm_distro(release, vendor, distribution, fmt) == expected


def test_table_records_injection_per_distribution() -> None:
    injected = {row.distro: row.injected for row in TABLE}
    assert injected == {
        "debian": True, "fedora": True, "opensuse": True,
        "alpine": False, "arch": False, "homebrew": False, "rpm-unknown": None,
    }
    for ecosystem in Ecosystem:
        rows = rule_table(ecosystem)
        assert rows and all(row["ecosystem"] == ecosystem.value for row in rows)


# --------------------------------------------------------------------------
# Every package detector alike
# --------------------------------------------------------------------------

FINDING_KEYS = {"package", "version", "database", "distro", "injected_builds"}
FACT_KEYS = {"database", "package", "version", "affected", "injected_builds", "distro"}


def _dpkg(version: str, package: str = "liblzma5", arch: str = "amd64") -> str:
    return (
        f"Package: {package}\nStatus: install ok installed\nArchitecture: {arch}\n"
        f"Source: xz-utils\nVersion: {version}\nDescription: x\n"
    )


def _apk(version: str, package: str = "xz-libs") -> str:
    return f"C:Q1abc=\nP:{package}\nV:{version}\nA:x86_64\no:xz\nT:x\n"


def _pacman(version: str) -> str:
    return f"%NAME%\nxz\n\n%VERSION%\n{version}\n\n%BASE%\nxz\n\n%ARCH%\nx86_64\n"


@pytest.fixture(scope="module")
def rpm_databases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """rpm writes one database with the affected, one with the fixed Fedora build."""
    work = tmp_path_factory.mktemp("alike")
    out = {}
    for label, version, release in (("affected", "5.6.0", "2.fc40"), ("clean", "5.4.6", "1.fc40")):
        rpms = build_rpms(Spec("xz", version, release, vendor="Fedora Project", main=False,
                               subpackages=("xz-libs",)), work / label)
        out[label] = install_sqlite(rpms, work / label / "db").read_bytes()
    return out


def _cases(rpm_databases: dict[str, bytes]) -> Iterator[tuple[Detector, str, bytes, bytes, str]]:
    """(detector, path, affected database, clean database, database name)."""
    yield (DpkgDetector(), "/var/lib/dpkg/status", _dpkg("5.6.1-1").encode(), _dpkg("5.6.1+really5.4.5-1").encode(),
           "dpkg")
    yield ApkDetector(), "/lib/apk/db/installed", _apk("5.6.1-r1").encode(), _apk("5.6.1-r2").encode(), "apk"
    yield (PacmanDetector(), "/var/lib/pacman/local/xz-5.6.1-1/desc", _pacman("5.6.1-1").encode(),
           _pacman("5.6.1-2").encode(), "pacman")
    yield (RpmDbDetector(), "/var/lib/rpm/rpmdb.sqlite", rpm_databases["affected"], rpm_databases["clean"], "rpm")


def test_every_package_detector_reports_alike(rpm_databases: dict[str, bytes]) -> None:
    for detector, path, affected, clean, database in _cases(rpm_databases):
        findings, facts = run_detector(detector, path, affected)
        assert len(findings) == 1 and len(facts) == 1, database
        finding, fact = findings[0], facts[0]
        assert finding.rule == f"{database}-affected-version"
        assert finding.kind is Kind.PACKAGE and finding.indicates is Indicates.AFFECTED_VERSION
        assert finding.path == path
        assert set(finding.evidence) >= FINDING_KEYS, database
        assert finding.evidence["database"] == database
        assert isinstance(finding.evidence["injected_builds"], bool)
        assert fact.collector == "packages" and fact.path == path
        assert set(fact.data) >= FACT_KEYS, database
        assert fact.data["affected"] is True
        assert fact.data["injected_builds"] == finding.evidence["injected_builds"]
        assert fact.data["version"] == finding.evidence["version"]

        findings, facts = run_detector(detector, path, clean)
        assert findings == [], database
        [fact] = facts
        assert fact.data["affected"] is False and fact.data["injected_builds"] is None
        assert set(fact.data) >= FACT_KEYS
        assert detector.rule_tables()["affected"] == rule_table(database), database


# dpkg facts (the dpkg detector's findings are tested in test_dpkg.py)


def test_dpkg_fact_for_every_installed_xz_package_only() -> None:
    text = "\n".join([
        _dpkg("5.6.1-1"),
        _dpkg("5.6.1+really5.4.5-1", package="xz-utils"),
        "Package: libc6\nStatus: install ok installed\nVersion: 2.36-9\n",
        "Package: liblzma-dev\nStatus: deinstall ok config-files\nSource: xz-utils\nVersion: 5.6.1-1\n",
    ])
    findings, facts = run_detector(DpkgDetector(), "/var/lib/dpkg/status", text.encode())
    assert [f.evidence["package"] for f in findings] == ["liblzma5"]
    assert {f.data["package"]: f.data["affected"] for f in facts} == {"liblzma5": True, "xz-utils": False}
    assert all(f.collector == "packages" and f.data["database"] == "dpkg" for f in facts)


def test_dpkg_fact_for_an_arm64_build_says_not_injected() -> None:
    findings, facts = run_detector(DpkgDetector(), "/var/lib/dpkg/status", _dpkg("5.6.1-1", arch="arm64").encode())
    assert findings[0].evidence["injected_builds"] is False
    assert facts[0].data["injected_builds"] is False and facts[0].data["arch"] == "arm64"


def test_dpkg_fact_for_an_unparsable_version() -> None:
    findings, facts = run_detector(DpkgDetector(), "/var/lib/dpkg/status", _dpkg("not a version!").encode())
    assert findings == []
    assert facts[0].data["affected"] is False


def test_dpkg_facts_of_this_machine() -> None:
    """This machine's real status file: its xz packages are facts, none affected."""
    status = Path("/var/lib/dpkg/status")
    findings, facts = run_detector(DpkgDetector(), str(status), status.read_bytes())
    assert findings == []
    assert "liblzma5" in {f.data["package"] for f in facts}
    assert not any(f.data["affected"] for f in facts)
