"""Files no detector must parse whole are hashed and signature-scanned as they pass.

The signature scan over pieces must give what one search of the whole file gives, for
any cut, including cuts through a match; and a file far larger than memory should allow
is judged without being held (measured on the real CLI under GNU time).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from layerhound.detectors.signatures import GET_CPUID_PROLOGUE, ByteSignatureDetector
from layerhound.model import Entry, EntryType
from tests.support.cli import measured_scan

DETECTOR = ByteSignatureDetector()


def findings_in_pieces(data: bytes, cuts: list[int]) -> list[tuple[str, object]]:
    entry = Entry("/usr/lib/x.so", EntryType.FILE, len(data), 0o755)
    scanner = DETECTOR.scanner(entry, data[:64])
    for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
        scanner.feed(data[start:end])
    return [(f.rule, f.evidence) for f in scanner.finish("")]


def test_pieces_cut_anywhere_find_what_the_whole_file_finds(implant_so: bytes) -> None:
    entry = Entry("/usr/lib/x.so", EntryType.FILE, len(implant_so), 0o755)
    whole = [(f.rule, f.evidence) for f in DETECTOR.inspect(entry, implant_so)]
    assert {rule for rule, _ in whole} == {"xz-get-cpuid-prologue", "xz-yara-opcodes"}
    at = implant_so.find(GET_CPUID_PROLOGUE)
    for cut in range(at - 2, at + len(GET_CPUID_PROLOGUE) + 2):  # every cut through the prologue
        assert findings_in_pieces(implant_so, [cut]) == whole
    for size in (1, 7, 33, 4096):  # pieces smaller than the patterns, too
        assert findings_in_pieces(implant_so, list(range(size, len(implant_so), size))) == whole


def test_a_pattern_repeated_reports_its_first_offset(implant_so: bytes) -> None:
    doubled = implant_so + implant_so
    first = findings_in_pieces(doubled, [len(implant_so) // 2, len(implant_so) + 5])
    assert first == findings_in_pieces(implant_so, [])


BIG = 400 * 1024 * 1024


def test_a_file_larger_than_any_bound_is_scanned_in_flat_memory(tmp_path: Path) -> None:
    """A 400 MiB executable (not a shared object: no detector parses it) with the prologue at its end.

    Before, it was over the signature detector's 256 MiB bound and never read; held whole it would
    cost 400 MiB. A sparse file on the host, so the test writes almost nothing to disk.
    """
    root = tmp_path / "root"
    (root / "opt" / "bin").mkdir(parents=True)
    tool = root / "opt" / "bin" / "bigtool"
    with tool.open("wb") as handle:
        handle.write(b"\x7fELF\x02\x01\x01" + b"\0" * 9 + b"\x02\x00\x3e\x00")  # ET_EXEC, x86-64
        handle.seek(BIG - len(GET_CPUID_PROLOGUE))
        handle.write(GET_CPUID_PROLOGUE)
    done = measured_scan(f"rootfs:{root}", tmp_path / "out.json")
    assert done.status == 1, done.stderr  # found
    peak_mib = done.peak_mib
    assert peak_mib < 120, f"peak {peak_mib:.0f} MiB for a {BIG >> 20} MiB file"
    report = json.loads((tmp_path / "out.json").read_text())
    [finding] = [f for f in report["images"][0]["findings"] if f["rule"] == "xz-get-cpuid-prologue"]
    assert finding["evidence"]["offset"] == BIG - len(GET_CPUID_PROLOGUE)
    assert finding["sha256"] == hashlib.sha256(tool.read_bytes()).hexdigest()


@pytest.mark.parametrize("size", [0, 5])
def test_tiny_pieces_at_the_start(size: int, implant_so: bytes) -> None:
    assert findings_in_pieces(implant_so, [size] if size else []) == findings_in_pieces(implant_so, [])


def test_dynamic_facts_from_pieces_equal_those_from_the_whole_file(bookworm_root: Path) -> None:
    """Every ELF file of a real Debian root, fed in odd-sized pieces, gives the facts parse_dynamic gives."""
    from layerhound.detectors.elf_dynamic import ElfDynamicFacts, parse_dynamic

    detector = ElfDynamicFacts()
    compared = 0
    for path in sorted(bookworm_root.glob("usr/*/**/*")):
        if path.is_symlink() or not path.is_file() or path.stat().st_size < 64:
            continue
        data = path.read_bytes()
        if data[:4] != b"\x7fELF":
            continue
        entry = Entry("/" + str(path.relative_to(bookworm_root)), EntryType.FILE, len(data), 0o755)
        try:
            whole = parse_dynamic(data)
        except Exception as exc:  # the same error must come from the pieces
            whole = {"error": type(exc).__name__}
        scanner = detector.scanner(entry, data[:64])
        try:
            for at in range(0, len(data), 65_537):
                scanner.feed(data[at : at + 65_537])
            [fact] = scanner.finish("")
            streamed = fact.data
        except Exception as exc:
            streamed = {"error": type(exc).__name__}
        assert streamed == whole, entry.path
        compared += 1
    assert compared > 300


ARCHIVE = 300 * 1024 * 1024


def test_a_large_tarball_in_a_layer_is_opened_as_it_passes(tmp_path: Path, implant_so: bytes) -> None:
    """A 300 MiB .tar.gz (over the 64 MiB an archive may be held) with the implant after its filler.

    It used to be held whole (up to 512 MiB); now its members are judged as the layer streams by.
    """
    import gzip
    import io
    import tarfile

    from tests.support.imagewriter import ImageSpec, Layer, write_oci

    inner = io.BytesIO()
    with gzip.GzipFile(fileobj=inner, mode="wb", compresslevel=1) as compressed, \
            tarfile.open(fileobj=compressed, mode="w|") as archive:
        filler = tarfile.TarInfo("xz-5.6.1/filler.bin")
        filler.size = ARCHIVE
        archive.addfile(filler, io.BytesIO(bytes(ARCHIVE)))
        lib = tarfile.TarInfo("xz-5.6.1/lib/liblzma.so.5.6.1")
        lib.size = len(implant_so)
        archive.addfile(lib, io.BytesIO(implant_so))
    tarball = inner.getvalue()
    write_oci(tmp_path / "layout", ImageSpec([Layer.files({"srv/dl/release.tar.gz": tarball})]), compression="zstd")
    done = measured_scan(f"oci:{tmp_path / 'layout'}:latest", tmp_path / "out.json")
    status, peak_mib = done.status, done.peak_mib
    assert status == 1
    assert peak_mib < 120, f"peak {peak_mib:.0f} MiB"
    report = json.loads((tmp_path / "out.json").read_text())
    inside = [f for f in report["images"][0]["findings"] if f["kind"] == "archive"]
    assert inside and {f["path"] for f in inside} == {"/srv/dl/release.tar.gz"}
    assert {f["sha256"] for f in inside} == {hashlib.sha256(tarball).hexdigest()}
    assert {f["evidence"]["member"] for f in inside} == {"xz-5.6.1/lib/liblzma.so.5.6.1"}


def test_a_large_zip_on_the_host_is_opened_where_it_lies(tmp_path: Path, implant_so: bytes) -> None:
    """A 300 MiB zip of stored members on the host: read with pread as its members are reached, never held."""
    import zipfile

    root = tmp_path / "root"
    (root / "opt").mkdir(parents=True)
    bundle = root / "opt" / "bundle.zip"
    with zipfile.ZipFile(bundle, "w", zipfile.ZIP_STORED) as archive:
        with archive.open("data/filler.bin", "w", force_zip64=True) as member:
            block = bytes(1 << 20)
            for _ in range(ARCHIVE >> 20):
                member.write(block)
        archive.writestr("native/liblzma.so.5", implant_so)
    done = measured_scan(f"rootfs:{root}", tmp_path / "out.json")
    status, peak_mib = done.status, done.peak_mib
    assert status == 1
    assert peak_mib < 120, f"peak {peak_mib:.0f} MiB"
    report = json.loads((tmp_path / "out.json").read_text())
    inside = [f for f in report["images"][0]["findings"] if f["kind"] == "archive"]
    assert inside and {f["sha256"] for f in inside} == {hashlib.sha256(bundle.read_bytes()).hexdigest()}
