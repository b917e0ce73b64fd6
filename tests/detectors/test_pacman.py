"""The pacman detector: Arch Linux's local database, written by the tests."""

from __future__ import annotations

import pytest

from layerhound.detectors.pacman import PacmanDetector, parse_desc
from layerhound.model import Entry, EntryType, Fact, Finding, Indicates, Kind
from tests.support.detect import run_detector

DETECTOR = PacmanDetector()


def desc(name: str, version: str, base: str | None = "xz", arch: str = "x86_64") -> str:
    """A ``desc`` file as pacman writes it."""
    sections: list[tuple[str, list[str]]] = [("NAME", [name]), ("VERSION", [version])]
    if base is not None:
        sections.append(("BASE", [base]))
    sections += [
        ("DESC", ["Library and command line tools for XZ and LZMA compressed files"]),
        ("URL", ["https://tukaani.org/xz/"]),
        ("ARCH", [arch]),
        ("BUILDDATE", ["1711000000"]),
        ("INSTALLDATE", ["1711000100"]),
        ("PACKAGER", ["Test <test@example.org>"]),
        ("SIZE", ["1234567"]),
        ("LICENSE", ["GPL", "LGPL", "custom"]),
        ("VALIDATION", ["pgp"]),
        ("DEPENDS", ["sh"]),
        ("PROVIDES", ["liblzma.so=5-64"]),
    ]
    return "".join(f"%{key}%\n" + "".join(f"{v}\n" for v in values) + "\n" for key, values in sections)


def path_for(name: str, version: str) -> str:
    return f"/var/lib/pacman/local/{name}-{version}/desc"


def run(text: str, path: str) -> tuple[list[Finding], list[Fact]]:
    return run_detector(DETECTOR, path, text.encode())


@pytest.mark.parametrize(
    ("version", "affected"),
    [
        ("5.6.0-1", True),
        ("5.6.1-1", True),
        ("5.6.1-2", False),
        ("5.6.2-1", False),
        ("5.4.6-1", False),
        ("5.4.6-2", False),
        ("1:5.4.6-1", False),
    ],
)
@pytest.mark.parametrize("name", ["xz", "lib32-xz"])
def test_arch_boundaries(name: str, version: str, affected: bool) -> None:
    path = path_for(name, version)
    base = "xz" if name == "xz" else "lib32-xz"
    findings, [fact] = run(desc(name, version, base=base), path)
    assert fact.collector == "packages" and fact.path == path
    assert fact.data == {
        "database": "pacman", "package": name, "version": version, "affected": affected,
        "injected_builds": False if affected else None, "distro": "arch", "arch": "x86_64", "base": base,
    }
    if not affected:
        assert findings == []
        return
    [finding] = findings
    assert finding.rule == "pacman-affected-version"
    assert finding.kind is Kind.PACKAGE and finding.indicates is Indicates.AFFECTED_VERSION
    assert finding.path == path and finding.layer is None and finding.sha256 is None
    assert finding.evidence == {
        "package": name, "version": version, "database": "pacman", "distro": "arch",
        "injected_builds": False, "arch": "x86_64", "base": base,
    }


def test_other_packages_are_ignored() -> None:
    findings, facts = run(desc("zstd", "1.5.6-1", base="zstd"), path_for("zstd", "1.5.6-1"))
    assert findings == [] and facts == []
    findings, facts = run(desc("libfoo", "5.6.1-1", base="foo"), path_for("libfoo", "5.6.1-1"))
    assert findings == [] and facts == []


def test_a_package_split_from_xz_is_known_by_its_base() -> None:
    [finding], _ = run(desc("xz-docs", "5.6.1-1", base="xz"), path_for("xz-docs", "5.6.1-1"))
    assert finding.evidence["package"] == "xz-docs"


def test_desc_without_version_is_ignored() -> None:
    text = "%NAME%\nxz\n\n%ARCH%\nx86_64\n"
    assert run(text, path_for("xz", "5.6.1-1")) == ([], [])


def test_parse_desc_sections() -> None:
    sections = parse_desc(desc("xz", "5.6.1-1"))
    assert sections["NAME"] == ["xz"] and sections["LICENSE"] == ["GPL", "LGPL", "custom"]


@pytest.mark.parametrize(
    ("path", "wanted"),
    [
        ("/var/lib/pacman/local/xz-5.6.1-1/desc", True),
        ("/var/lib/pacman/local/xz-5.6.1-1/files", False),
        ("/var/lib/pacman/local/xz-5.6.1-1/mtree", False),
        ("/var/lib/pacman/local/desc", False),
        ("/var/lib/pacman/local/a/b/desc", False),
        ("/var/lib/pacman/sync/core.db", False),
        ("/usr/share/doc/xz/desc", False),
    ],
)
def test_wants_only_local_desc_files(path: str, wanted: bool) -> None:
    assert DETECTOR.wants(Entry(path, EntryType.FILE, size=100), b"%NAME%\n") is wanted
