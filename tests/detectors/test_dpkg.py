"""The dpkg detector: affected xz-utils versions in dpkg databases."""

from __future__ import annotations

from pathlib import Path

import pytest

from layerhound.detectors.base import HEAD_SIZE
from layerhound.detectors.dpkg import DpkgDetector
from layerhound.model import Entry, EntryType, Finding, Indicates, Kind

STATUS = "/var/lib/dpkg/status"
DETECTOR = DpkgDetector()


def stanza(package: str, version: str, status: str | None = "install ok installed",
           source: str | None = None) -> str:
    lines = [f"Package: {package}"]
    if status is not None:
        lines.append(f"Status: {status}")
    lines += ["Priority: required", "Architecture: amd64"]
    if source is not None:
        lines.append(f"Source: {source}")
    lines += [f"Version: {version}", "Description: test stanza", " with a continuation line"]
    return "\n".join(lines) + "\n"


def run(path: str, text: str) -> list[Finding]:
    data = text.encode()
    entry = Entry(path, EntryType.FILE, size=len(data))
    assert DETECTOR.wants(entry, data[:HEAD_SIZE])
    return [r for r in DETECTOR.inspect(entry, data) if isinstance(r, Finding)]


@pytest.mark.parametrize(
    ("version", "affected"),
    [
        ("5.6.0-0.1", True),
        ("5.6.0-0.2", True),
        ("5.6.1-1", True),
        ("5.5.1alpha-0.1", True),
        ("5.5.0-1", False),
        ("5.4.1-0.2", False),
        ("5.6.1+really5.4.5-1", False),
        ("5.4.5-0.3", False),
        ("5.6.2-1", False),
    ],
)
@pytest.mark.parametrize("package", ["liblzma5", "xz-utils"])
def test_version_range(package: str, version: str, affected: bool) -> None:
    findings = run(STATUS, stanza(package, version, source="xz-utils"))
    if not affected:
        assert findings == []
        return
    assert len(findings) == 1
    finding = findings[0]
    assert finding.rule == "dpkg-affected-version"
    assert finding.kind is Kind.PACKAGE
    assert finding.indicates is Indicates.AFFECTED_VERSION
    assert finding.path == STATUS
    assert finding.layer is None and finding.sha256 is None
    assert finding.evidence == {
        "package": package, "version": version, "database": "dpkg", "source": "xz-utils",
        "distro": "debian", "injected_builds": True, "arch": "amd64",
    }


def test_one_finding_per_affected_package_among_others() -> None:
    text = "\n".join([
        stanza("libc6", "2.36-9+deb12u4"),
        stanza("liblzma5", "5.6.1-1", source="xz-utils"),
        stanza("zlib1g", "1:1.2.13.dfsg-1", source="zlib"),
        stanza("xz-utils", "5.6.1-1"),
        stanza("liblzma-dev", "5.6.1-1", source="xz-utils"),
    ])
    found = sorted(f.evidence["package"] for f in run(STATUS, text))
    assert found == ["liblzma-dev", "liblzma5", "xz-utils"]


def test_binary_package_identified_by_source_field() -> None:
    # Not one of the known binary names: only "Source: xz-utils" ties it to the CVE.
    [finding] = run(STATUS, stanza("liblzma-doc", "5.6.1-1", source="xz-utils"))
    assert finding.evidence["package"] == "liblzma-doc"
    assert finding.evidence["source"] == "xz-utils"


def test_binnmu_judged_by_its_source_version() -> None:
    # A binNMU (5.6.1-1+b1) sorts above 5.6.1-1 but rebuilds the same source.
    [finding] = run(STATUS, stanza("liblzma5", "5.6.1-1+b1", source="xz-utils (5.6.1-1)"))
    assert finding.evidence["source"] == "xz-utils"
    assert finding.evidence["version"] == "5.6.1-1+b1"
    assert finding.evidence["source_version"] == "5.6.1-1"


def test_binnmu_of_the_fix_does_not_match() -> None:
    text = stanza("liblzma5", "5.6.1+really5.4.5-1+b1", source="xz-utils (5.6.1+really5.4.5-1)")
    assert run(STATUS, text) == []


def test_absent_source_defaults_to_package_name() -> None:
    [finding] = run(STATUS, stanza("xz-utils", "5.6.0-0.2"))
    assert finding.evidence["source"] == "xz-utils"


def test_unrelated_package_with_affected_looking_version() -> None:
    assert run(STATUS, stanza("libfoo1", "5.6.1-1", source="foo")) == []


@pytest.mark.parametrize(
    ("status", "counts"),
    [
        ("install ok installed", True),
        ("hold ok installed", True),
        ("install ok unpacked", True),
        ("install ok half-configured", True),
        ("deinstall ok config-files", False),
        ("purge ok not-installed", False),
    ],
)
def test_status_decides_whether_the_package_counts(status: str, counts: bool) -> None:
    findings = run(STATUS, stanza("liblzma5", "5.6.1-1", status=status, source="xz-utils"))
    assert len(findings) == (1 if counts else 0)


def test_distroless_status_d_file_without_status_field() -> None:
    path = "/var/lib/dpkg/status.d/liblzma5"
    [finding] = run(path, stanza("liblzma5", "5.6.0-0.1", status=None, source="xz-utils"))
    assert finding.path == path
    assert finding.evidence["version"] == "5.6.0-0.1"


def test_status_d_file_with_several_stanzas() -> None:
    text = stanza("liblzma5", "5.6.1-1", status=None, source="xz-utils") + "\n" + stanza(
        "xz-utils", "5.6.1-1", status=None
    )
    findings = run("/var/lib/dpkg/status.d/xz", text)
    assert sorted(f.evidence["package"] for f in findings) == ["liblzma5", "xz-utils"]


def test_fixed_version_in_status_d_does_not_match() -> None:
    text = stanza("liblzma5", "5.6.1+really5.4.5-1", status=None, source="xz-utils")
    assert run("/var/lib/dpkg/status.d/liblzma5", text) == []


def test_invalid_version_is_ignored() -> None:
    assert run(STATUS, stanza("liblzma5", "not a version!", source="xz-utils")) == []


@pytest.mark.parametrize(
    ("path", "wanted"),
    [
        ("/var/lib/dpkg/status", True),
        ("/var/lib/dpkg/status.d/liblzma5", True),
        ("/var/lib/dpkg/status.d/liblzma5.md5sums", False),
        ("/var/lib/dpkg/status-old", False),
        ("/var/lib/dpkg/status.d/sub/liblzma5", False),
        ("/usr/share/doc/liblzma5/status", False),
    ],
)
def test_wants_only_dpkg_databases(path: str, wanted: bool) -> None:
    assert DETECTOR.wants(Entry(path, EntryType.FILE, size=100), b"Package: x\n") is wanted


def test_real_status_file_of_this_machine_is_clean() -> None:
    # This machine's liblzma5 predates the backdoor: a real database, no finding.
    status = Path(STATUS)
    text = status.read_text(encoding="utf-8", errors="replace")
    assert "Package: liblzma5" in text
    assert run(STATUS, text) == []


def test_a_status_file_read_in_pieces_judges_what_the_whole_file_does(bookworm_root: Path) -> None:
    real = (bookworm_root / "var/lib/dpkg/status").read_text()
    text = "\n".join([real.rstrip("\n") + "\n", stanza("liblzma5", "5.6.1-1", source="xz-utils"),
                      stanza("xz-utils", "5.6.0-0.2")])
    data = text.encode()
    entry = Entry(STATUS, EntryType.FILE, len(data), 0o644)
    whole = list(DpkgDetector().inspect(entry, data))
    assert sum(isinstance(item, Finding) for item in whole) == 2
    for size in (1, 2, 97, 4096, 65_536):
        scanner = DpkgDetector().scanner(entry, data[:64])
        for at in range(0, len(data), size):
            scanner.feed(data[at : at + size])
        assert list(scanner.finish("")) == whole, size


def test_padding_the_status_file_past_any_bound_hides_nothing() -> None:
    """Before, a status file over 64 MiB was not read at all: padding hid an affected claim."""
    padding = "\n".join(stanza(f"pad{i}", "1.0") for i in range(2000)) + "\n"
    huge = stanza("liblzma5", "5.6.1-1", source="xz-utils") + (" " + "y" * 100 + "\n") * 20_000
    # ~70 MB of stanzas, then one of 2 MB (over the 1 MiB a stanza is held whole), then one more
    data = (padding * 250 + huge + "\n" + stanza("xz-utils", "5.6.0-0.2")).encode()
    assert len(data) > 64 * 1024 * 1024  # the old bound
    entry = Entry(STATUS, EntryType.FILE, len(data), 0o644)
    scanner = DpkgDetector().scanner(entry, data[:64])
    for at in range(0, len(data), 1 << 20):
        scanner.feed(data[at : at + (1 << 20)])
    found = [item for item in scanner.finish("") if isinstance(item, Finding)]
    assert sorted(f.evidence["package"] for f in found) == ["liblzma5", "xz-utils"]
