"""The apk detector: Alpine's installed database, written by the tests."""

from __future__ import annotations

import pytest

from layerhound.detectors.apk import ApkDetector, parse_installed
from layerhound.model import Entry, EntryType, Fact, Finding, Indicates, Kind
from tests.support.detect import run_detector

INSTALLED = "/lib/apk/db/installed"
DETECTOR = ApkDetector()


def stanza(name: str, version: str, origin: str | None = "xz", arch: str = "x86_64") -> str:
    """One package as apk writes it, file lists and all."""
    lines = ["C:Q1Jw8Dd3xXgk6CtVZyN5AnJx2jNOI=", f"P:{name}", f"V:{version}", f"A:{arch}",
             "S:112233", "I:445566", "T:test package", "U:https://tukaani.org/xz", "L:0BSD"]
    if origin is not None:
        lines.append(f"o:{origin}")
    lines += ["m:Test <test@example.org>", "t:1711000000", "c:0123456789abcdef", "D:so:libc.musl-x86_64.so.1",
              "p:so:liblzma.so.5=5.6.1", "F:usr", "F:usr/lib", "R:liblzma.so.5", "a:0:0:777",
              "Z:Q1abcdefghijklmnopqrstuvwxyz0=", "R:liblzma.so.5.6.1", "a:0:0:755", "Z:Q1bcdefghijklmnopqrstuvwxyz01="]
    return "\n".join(lines) + "\n"


def run(text: str, path: str = INSTALLED) -> tuple[list[Finding], list[Fact]]:
    return run_detector(DETECTOR, path, text.encode())


@pytest.mark.parametrize(
    ("version", "affected"),
    [
        ("5.6.0-r0", True),
        ("5.6.0-r1", True),
        ("5.6.1-r0", True),
        ("5.6.1-r1", True),
        ("5.6.1-r2", False),
        ("5.6.1-r3", False),
        ("5.6.2-r0", False),
        ("5.4.6-r0", False),
        ("5.4.5-r0", False),
        ("5.6.0_rc1-r0", False),
    ],
)
@pytest.mark.parametrize("package", ["xz", "xz-libs", "xz-dev"])
def test_alpine_boundaries(package: str, version: str, affected: bool) -> None:
    findings, facts = run(stanza(package, version))
    [fact] = facts
    assert fact.collector == "packages" and fact.path == INSTALLED
    assert fact.data == {
        "database": "apk", "package": package, "version": version, "affected": affected,
        "injected_builds": False if affected else None, "distro": "alpine", "arch": "x86_64", "origin": "xz",
    }
    if not affected:
        assert findings == []
        return
    [finding] = findings
    assert finding.rule == "apk-affected-version"
    assert finding.kind is Kind.PACKAGE and finding.indicates is Indicates.AFFECTED_VERSION
    assert finding.path == INSTALLED and finding.layer is None and finding.sha256 is None
    assert finding.evidence == {
        "package": package, "version": version, "database": "apk", "distro": "alpine",
        "injected_builds": False, "arch": "x86_64", "origin": "xz",
    }


def test_a_whole_database_reports_only_xz() -> None:
    text = "\n".join([
        stanza("musl", "1.2.5-r0", origin="musl"),
        stanza("xz-libs", "5.6.1-r1"),
        stanza("busybox", "1.36.1-r15", origin="busybox"),
        stanza("xz", "5.6.1-r1"),
        stanza("liblzma-frobnicator", "5.6.1-r1", origin="xz"),  # a subpackage known by its origin
        stanza("libfoo", "5.6.1-r1", origin="foo"),  # an affected-looking version of something else
    ])
    findings, facts = run(text)
    assert sorted(f.evidence["package"] for f in findings) == ["liblzma-frobnicator", "xz", "xz-libs"]
    assert sorted(f.data["package"] for f in facts) == ["liblzma-frobnicator", "xz", "xz-libs"]


def test_stanza_without_origin_is_known_by_name() -> None:
    [finding], _ = run(stanza("xz-libs", "5.6.0-r0", origin=None))
    assert "origin" not in finding.evidence


def test_aarch64_is_not_injected_either() -> None:
    [finding], [fact] = run(stanza("xz-libs", "5.6.1-r1", arch="aarch64"))
    assert finding.evidence["injected_builds"] is False and fact.data["arch"] == "aarch64"


def test_invalid_version_is_a_fact_not_a_finding() -> None:
    findings, [fact] = run(stanza("xz-libs", "5.6.1-x1"))
    assert findings == [] and fact.data["affected"] is False


def test_crlf_and_missing_final_newline() -> None:
    text = stanza("xz-libs", "5.6.1-r1").replace("\n", "\r\n").rstrip()
    findings, _ = run(text)
    assert [f.evidence["version"] for f in findings] == ["5.6.1-r1"]


def test_parse_installed_keeps_the_first_value_of_repeated_keys() -> None:
    [parsed] = list(parse_installed(stanza("xz-libs", "5.6.1-r1")))
    assert parsed["P"] == "xz-libs" and parsed["R"] == "liblzma.so.5" and parsed["o"] == "xz"


def test_empty_database() -> None:
    entry = Entry(INSTALLED, EntryType.FILE, size=1)
    assert list(DETECTOR.inspect(entry, b"\n")) == []


@pytest.mark.parametrize(
    ("path", "wanted"),
    [
        ("/lib/apk/db/installed", True),
        ("/usr/lib/apk/db/installed", True),
        ("/lib/apk/db/triggers", False),
        ("/lib/apk/db/installed.old", False),
        ("/var/lib/apk/db/installed", False),
        ("/etc/apk/world", False),
    ],
)
def test_wants_only_the_installed_database(path: str, wanted: bool) -> None:
    assert DETECTOR.wants(Entry(path, EntryType.FILE, size=100), b"C:Q1") is wanted
