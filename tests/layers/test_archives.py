"""Archives inside layers: deb, rpm, tar.*, zip opened in memory and judged by the same detectors.

The positives are the project's own inert implant look-alike (tests/samples,
compiled here), packaged by the real tools (``dpkg-deb --build``, ``rpmbuild``)
or by Python's tarfile/zipfile. The negative is Debian's own liblzma5 package.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import shutil
import struct
import subprocess
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
import zstandard

from layerhound.detectors.base import Detector
from layerhound.detectors.registry import ALL_DETECTORS
from layerhound.layers import archives
from layerhound.layers.walk import walk_layer
from layerhound.model import Entry, Fact, Finding, Indicates, Kind, LayerResult
from tests.layers.test_walk import blob_layer, tar_bytes
from tests.support.compile import IMPLANT_SIM, compile_shared
from tests.support.debian import apt_download, deb_data_files

LIB = "usr/lib/x86_64-linux-gnu"
SO = f"{LIB}/liblzma.so.5.6.1"
PROLOGUE = "xz-get-cpuid-prologue"
CACHE = "/var/cache/apt/archives"


def require(tool: str) -> str:
    """A packaging tool the tests run; its absence is a failure, never a skip."""
    path = shutil.which(tool)
    if path is None:
        raise RuntimeError(f"{tool} is not installed: run `make setup` first")
    return path


@pytest.fixture(scope="module")
def implant(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The project's inert look-alike with the published _get_cpuid prologue."""
    out = tmp_path_factory.mktemp("implant")
    return compile_shared(IMPLANT_SIM, out, defines=("WITH_PROLOGUE",)).read_bytes()


# ---------------------------------------------------------------- archive builders


def build_deb(tmp: Path, files: Mapping[str, bytes], compression: str = "xz", package: str = "liblzma5") -> bytes:
    """A real .deb from a staging directory, built by dpkg-deb."""
    stage = tmp / f"stage-{package}-{compression}"
    (stage / "DEBIAN").mkdir(parents=True)
    (stage / "DEBIAN/control").write_text(
        f"Package: {package}\nVersion: 5.6.1-1\nArchitecture: amd64\n"
        "Maintainer: layerhound tests <tests@example.invalid>\nDescription: test package\n"
    )
    for name, data in files.items():
        target = stage / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    out = tmp / f"{package}-{compression}.deb"
    cmd = [require("dpkg-deb"), "--root-owner-group", f"-Z{compression}", "--build", str(stage), str(out)]
    subprocess.run(cmd, check=True, capture_output=True)
    return out.read_bytes()


RPM_PAYLOADS = {"gzip": "w9.gzdio", "xz": "w6.xzdio", "zstd": "w19.zstdio", "bzip2": "w9.bzdio"}


def build_rpm(tmp: Path, files: Mapping[str, bytes], compression: str) -> bytes:
    """A real .rpm built by rpmbuild from prebuilt files (no strip, no debuginfo)."""
    top = tmp / f"rpm-{compression}"
    sources = top / "SOURCES"
    sources.mkdir(parents=True)
    install, listed = [], []
    for index, (name, data) in enumerate(files.items()):
        (sources / f"f{index}").write_bytes(data)
        install.append(f"install -D -m 0644 %{{_sourcedir}}/f{index} %{{buildroot}}/{name}")
        listed.append(f"/{name}")
    spec = top / "xz-libs.spec"
    spec.write_text(
        "Name: xz-libs\nVersion: 5.6.1\nRelease: 1\nSummary: test\nLicense: 0BSD\nAutoReqProv: no\n"
        "%description\ntest package\n%install\n" + "\n".join(install) + "\n%files\n" + "\n".join(listed) + "\n"
    )
    cmd = [
        require("rpmbuild"), "-bb", "--target", "x86_64",
        "--define", f"_topdir {top}",
        "--define", "__os_install_post %{nil}",
        "--define", "debug_package %{nil}",
        "--define", f"_binary_payload {RPM_PAYLOADS[compression]}",
        str(spec),
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    [rpm] = (top / "RPMS").rglob("*.rpm")
    return rpm.read_bytes()


def build_tar(files: Mapping[str, bytes], compression: str = "none") -> bytes:
    raw = tar_bytes([(name, "file", data) for name, data in files.items()])
    return {
        "none": lambda: raw,
        "gzip": lambda: gzip.compress(raw),
        "xz": lambda: lzma.compress(raw),
        "zstd": lambda: zstandard.compress(raw),
        "bzip2": lambda: bz2.compress(raw),
    }[compression]()


def build_zip(files: Mapping[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for index, (name, data) in enumerate(files.items()):
            method = zipfile.ZIP_DEFLATED if index % 2 == 0 else zipfile.ZIP_STORED
            archive.writestr(zipfile.ZipInfo(name, (2024, 3, 29, 0, 0, 0)), data, compress_type=method)
    return buffer.getvalue()


def build_ar(members: list[tuple[str, bytes]]) -> bytes:
    """A System V ar archive, as a .deb is (for data.tar variants dpkg-deb cannot write)."""
    out = bytearray(archives.AR_MAGIC)
    for name, data in members:
        out += f"{name:<16}{0:<12}{0:<6}{0:<6}{0o100644:<8o}{len(data):<10}`\n".encode()
        out += data + (b"\n" if len(data) % 2 else b"")
    return bytes(out)


def scan(files: Mapping[str, bytes], detectors: Iterable[Detector] = ALL_DETECTORS) -> LayerResult:
    """Walk one layer holding ``files`` (in-image path -> bytes)."""
    return walk_layer(blob_layer(tar_bytes([(f".{p}", "file", d) for p, d in files.items()])), list(detectors))


def archive_findings(result: LayerResult, rule: str = PROLOGUE) -> list[Finding]:
    return [f for f in result.findings if f.rule == rule]


# ---------------------------------------------------------------- formats


@pytest.mark.parametrize("compression", ["xz", "gzip", "zstd", "none"])
def test_implant_in_a_deb_built_by_dpkg_deb(tmp_path: Path, implant: bytes, compression: str) -> None:
    deb = build_deb(tmp_path, {SO: implant, "usr/share/doc/liblzma5/copyright": b"text"}, compression)
    path = f"{CACHE}/liblzma5_5.6.1-1_amd64.deb"
    result = scan({path: deb})

    [finding] = archive_findings(result)
    assert finding.kind is Kind.ARCHIVE
    assert finding.indicates is Indicates.PAYLOAD  # a packaged implant cannot be loaded as is
    assert finding.path == path
    assert finding.sha256 == hashlib.sha256(deb).hexdigest()  # the file of the image, not the member
    assert finding.layer == result.digest
    ev = finding.evidence
    assert ev["member"] == SO
    assert ev["member_sha256"] == hashlib.sha256(implant).hexdigest()
    assert ev["archive_chain"] == [path] and ev["archive_formats"] == ["deb"]
    assert ev["inner_kind"] == "signature" and ev["inner_indicates"] == "implant"
    assert "offset" in ev  # the inner detector's own evidence is kept
    stats = result.stats
    assert stats.archives == 1 and stats.archive_members == 2 and stats.archive_elf_files == 1
    assert stats.archive_bytes == len(implant) + 4
    # Layer counters describe the layer's own files only.
    assert stats.elf_files == 0 and stats.files_read == 1
    assert stats.archive_notes == [] and stats.detector_errors == []
    assert result.facts == []  # facts about members describe nothing installed


def test_deb_with_bzip2_data_tar(implant: bytes) -> None:
    """dpkg reads data.tar.bz2 (old packages) though dpkg-deb no longer writes it."""
    control = build_tar({"./control": b"Package: liblzma5\n"}, "gzip")
    data = build_tar({f"./{SO}": implant}, "bzip2")
    deb = build_ar([("debian-binary", b"2.0\n"), ("control.tar.gz", control), ("data.tar.bz2", data)])
    [finding] = archive_findings(scan({"/tmp/old.deb": deb}))
    assert finding.evidence["member"] == SO


@pytest.mark.parametrize("compression", ["xz", "gzip", "zstd", "bzip2"])
def test_implant_in_an_rpm_built_by_rpmbuild(tmp_path: Path, implant: bytes, compression: str) -> None:
    rpm = build_rpm(tmp_path, {"usr/lib64/liblzma.so.5.6.1": implant, "usr/share/doc/xz/NEWS": b"news"}, compression)
    assert rpm[:4] == archives.RPM_MAGIC
    result = scan({"/root/rpmbuild/RPMS/x86_64/xz-libs-5.6.1-1.x86_64.rpm": rpm})
    [finding] = archive_findings(result)
    assert finding.indicates is Indicates.PAYLOAD and finding.kind is Kind.ARCHIVE
    assert finding.evidence["member"] == "usr/lib64/liblzma.so.5.6.1"
    assert finding.evidence["archive_formats"] == ["rpm"]
    assert result.stats.archive_members == 2 and result.stats.archive_notes == []


@pytest.mark.parametrize("compression", ["none", "gzip", "xz", "zstd", "bzip2"])
def test_implant_in_a_tarball(implant: bytes, compression: str) -> None:
    tarball = build_tar({"./build/lib/.libs/liblzma.so.5.6.1": implant}, compression)
    # A neutral name: recognised by content (tar's magic sits past HEAD_SIZE).
    result = scan({"/srv/artifact.bin": tarball})
    [finding] = archive_findings(result)
    assert finding.path == "/srv/artifact.bin"
    assert finding.evidence["member"] == "build/lib/.libs/liblzma.so.5.6.1"
    assert finding.evidence["archive_formats"] == ["tar"]


def test_implant_in_a_zip_and_member_names_cannot_escape(implant: bytes) -> None:
    payload = build_zip({"../../etc/readme.txt": b"hello", "../../lib/liblzma.so.5.6.1": implant})
    result = scan({"/opt/app/plugins.zip": payload})
    [finding] = archive_findings(result)
    assert finding.evidence["member"] == "lib/liblzma.so.5.6.1"  # normalised, never a host path
    assert finding.evidence["archive_formats"] == ["zip"]
    assert result.stats.archive_members == 2


def test_relocatable_payload_object_stays_payload(tmp_path: Path) -> None:
    from tests.support.compile import compile_object

    obj = compile_object(IMPLANT_SIM, tmp_path, defines=("WITH_PROLOGUE",), name="liblzma_la-crc64-fast.o")
    result = scan({"/build.tar.gz": build_tar({"./src/liblzma/.libs/liblzma_la-crc64-fast.o": obj.read_bytes()},
                                              "gzip")})
    [finding] = archive_findings(result)
    assert finding.indicates is Indicates.PAYLOAD and finding.evidence["inner_indicates"] == "payload"


def test_nested_zip_in_tarball_in_deb(tmp_path: Path, implant: bytes) -> None:
    inner_zip = build_zip({"lib/liblzma.so.5.6.1": implant})
    tarball = build_tar({"./inner/payload.zip": inner_zip}, "gzip")
    deb = build_deb(tmp_path, {"opt/bundle.tar.gz": tarball}, "xz", package="bundle")
    path = f"{CACHE}/bundle_1_amd64.deb"
    result = scan({path: deb})
    [finding] = archive_findings(result)
    assert finding.path == path
    assert finding.evidence["archive_chain"] == [path, "opt/bundle.tar.gz", "inner/payload.zip"]
    assert finding.evidence["archive_formats"] == ["deb", "tar", "zip"]
    assert finding.evidence["member"] == "lib/liblzma.so.5.6.1"
    assert result.stats.archives == 3 and result.stats.archive_notes == []


# ---------------------------------------------------------------- bounds and damage


def test_nesting_deeper_than_the_bound_is_reported(implant: bytes) -> None:
    level4 = build_tar({"./lib/liblzma.so.5.6.1": implant}, "xz")
    level3 = build_zip({"l4.tar.xz": level4})
    level2 = build_tar({"./l3.zip": level3}, "gzip")
    level1 = build_tar({"./l2.tar.gz": level2})
    result = scan({"/l1.tar": level1})
    assert archive_findings(result) == []
    assert result.stats.archives == 3
    [note] = result.stats.archive_notes
    assert note == "/l1.tar!/l2.tar.gz!/l3.zip!/l4.tar.xz: tar archive nested deeper than 3 levels, not opened"


def test_bytes_bound_is_reported_and_stops_the_archive(monkeypatch: pytest.MonkeyPatch, implant: bytes) -> None:
    bound = len(implant) + 10_000
    monkeypatch.setattr(archives, "MAX_BYTES", bound)
    tarball = build_tar({"./a/first.so": implant, "./b/filler": b"\0" * 20_000, "./c/last.so": implant}, "gzip")
    result = scan({"/big.tar.gz": tarball, "/usr/lib/plain.so": implant})
    members = [f.evidence.get("member") for f in archive_findings(result)]
    assert members == ["a/first.so", None]  # judged before the bound; c/last.so is past it
    [note] = result.stats.archive_notes
    assert note.startswith(
        f"/big.tar.gz: over the archive bound (more than {bound} uncompressed bytes at /big.tar.gz!/b/filler)"
    )
    assert "the rest of this tar archive is not inspected" in note
    # The rest of the layer goes on.
    assert any(f.path == "/usr/lib/plain.so" and f.kind is Kind.SIGNATURE for f in result.findings)


def test_bytes_bound_counts_nested_archives_once_per_outer(monkeypatch: pytest.MonkeyPatch, implant: bytes) -> None:
    """A nested archive is a member of its parent and its members count again:
    the bound is on the bytes decompressed and examined."""
    inner = build_tar({"./x.so": implant, "./y.so": implant}, "none")
    monkeypatch.setattr(archives, "MAX_BYTES", len(inner) + len(implant) + len(implant) // 2)
    outer = build_tar({"./inner.tar": inner, "./z.so": implant}, "none")
    result = scan({"/outer.tar": outer})
    [note] = result.stats.archive_notes
    assert note.startswith("/outer.tar: over the archive bound") and "at /outer.tar!/inner.tar!/y.so" in note


def test_member_count_bound_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archives, "MAX_MEMBERS", 5)
    tarball = build_tar({f"./f{i}": b"x" for i in range(10)}, "gzip")
    result = scan({"/many.tar.gz": tarball})
    [note] = result.stats.archive_notes
    assert "more than 5 members" in note
    assert result.stats.archive_members == 5


def test_archive_over_its_size_bound_is_reported_not_opened(monkeypatch: pytest.MonkeyPatch, implant: bytes) -> None:
    monkeypatch.setattr(archives, "ARCHIVE_MAX_SIZE", 1000)
    result = scan({"/big.zip": build_zip({"lib.so": implant})})
    assert archive_findings(result) == [] and result.stats.archives == 0
    [note] = result.stats.archive_notes
    assert note.startswith("/big.zip: zip archive of ") and note.endswith("over the 1000-byte bound, not opened")


def truncated(data: bytes, fraction: float = 0.6) -> bytes:
    return data[: int(len(data) * fraction)]


@pytest.mark.parametrize("kind", ["tar.gz", "tar.xz", "tar.zst", "deb", "rpm", "zip", "a"])
def test_corrupt_archive_is_reported_and_the_layer_goes_on(tmp_path: Path, implant: bytes, kind: str) -> None:
    # Incompressible, so that the cut lands inside the archive's data.
    filler = b"".join(hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(4000))
    files = {"docs/filler": filler, "lib/liblzma.so.5.6.1": implant}
    whole = {
        "tar.gz": lambda: build_tar({f"./{k}": v for k, v in files.items()}, "gzip"),
        "tar.xz": lambda: build_tar({f"./{k}": v for k, v in files.items()}, "xz"),
        "tar.zst": lambda: build_tar({f"./{k}": v for k, v in files.items()}, "zstd"),
        "deb": lambda: build_deb(tmp_path, {f"usr/{k}": v for k, v in files.items()}, "gzip"),
        "rpm": lambda: build_rpm(tmp_path, {f"usr/{k}": v for k, v in files.items()}, "gzip"),
        "zip": lambda: build_zip(files),
        "a": lambda: build_ar([(f"{k.replace('/', '_')}/", v) for k, v in files.items()]),
    }[kind]()
    result = scan({f"/dl/broken.{kind}": truncated(whole), "/usr/lib/x86_64-linux-gnu/liblzma.so.5.6.1": implant})
    [note] = result.stats.archive_notes
    assert note.startswith(f"/dl/broken.{kind}: corrupt or unreadable ")
    assert note.endswith("members after that point are not inspected")
    # The implant in the layer itself is still found: one bad archive hides nothing else.
    assert [f.path for f in archive_findings(result)] == ["/usr/lib/x86_64-linux-gnu/liblzma.so.5.6.1"]


def test_file_named_like_an_archive_but_not_one_is_reported() -> None:
    result = scan({"/dl/pkg.deb": b"<html>404 not found</html>", "/dl/src.tar.gz": b"\x1f\x8b\x08garbage" * 10})
    notes = sorted(result.stats.archive_notes)
    assert len(notes) == 2
    assert notes[0].startswith("/dl/pkg.deb: corrupt or unreadable deb archive (not an ar archive")
    assert notes[1].startswith("/dl/src.tar.gz: corrupt or unreadable tar archive")


def test_encrypted_zip_member_is_reported(implant: bytes) -> None:
    data = bytearray(build_zip({"secret.so": implant, "plain.so": implant}))
    # Mark the first member encrypted in its local and central headers.
    data[6] |= 1
    central = data.index(b"PK\x01\x02")
    data[central + 8] |= 1
    result = scan({"/x.zip": bytes(data)})
    assert result.stats.archive_notes == ["/x.zip!/secret.so: not inspected: encrypted zip member"]
    assert [f.evidence["member"] for f in archive_findings(result)] == ["plain.so"]


def test_clean_compressed_files_are_each_one_file_and_give_nothing() -> None:
    changelog = gzip.compress(b"xz-utils (5.4.1-1) unstable; urgency=medium\n" * 50)
    script = gzip.compress(b"#!/bin/sh\nexec /usr/sbin/sshd -D\n")
    result = scan({"/usr/share/doc/xz-utils/changelog.Debian.gz": changelog, "/x.xz": lzma.compress(b"a" * 1000),
                   "/opt/start.sh.gz": script})
    # What the changelog and the run of a's hold no detector reads (seen from their decompressed
    # start): they are not opened. The script is, and judged as one file.
    assert result.stats.archives == 1 and result.stats.archive_members == 1
    assert result.stats.archive_notes == [] and result.findings == []


COMPRESSORS = {
    "gzip": ["gzip", "-c"],
    "xz": ["xz", "-c"],
    "lzma": ["xz", "--format=lzma", "-c"],
    "zstd": ["zstd", "-q", "-c"],
    "bzip2": ["bzip2", "-c"],
    "lz4": ["lz4", "-q", "-c"],
}
"""Each compression's own tool (make setup installs them), writing to stdout."""
SUFFIXES = {"gzip": ".gz", "xz": ".xz", "lzma": ".lzma", "zstd": ".zst", "bzip2": ".bz2", "lz4": ".lz4"}


def compressed(tool: str, data: bytes) -> bytes:
    command = COMPRESSORS[tool]
    return subprocess.run([require(command[0]), *command[1:]], input=data, capture_output=True, check=True).stdout


@pytest.mark.parametrize("tool", sorted(COMPRESSORS))
def test_an_implant_compressed_on_its_own_is_found_and_cannot_be_loaded(implant: bytes, tool: str) -> None:
    """``liblzma.so.5.6.1.<ext>`` written by the compression's tool, under a neutral name too:
    recognised by content, decompressed in memory, judged, and payload (nothing loads it)."""
    for name in (f"/opt/lib/liblzma.so.5.6.1{SUFFIXES[tool]}", "/opt/lib/blob"):
        result = scan({name: compressed(tool, implant)})
        [finding] = archive_findings(result)
        assert finding.path == name and finding.indicates is Indicates.PAYLOAD
        assert finding.evidence["archive_formats"] == [tool]
        assert finding.evidence["member"] == ("blob" if name.endswith("blob") else "liblzma.so.5.6.1")
        assert finding.evidence["member_sha256"] == hashlib.sha256(implant).hexdigest()
        assert result.stats.archive_notes == []


def test_a_compressed_implant_inside_a_zip_inside_a_tarball_is_found(implant: bytes) -> None:
    inner = build_zip({"plugins/liblzma.so.5.6.1.xz": compressed("xz", implant)})
    result = scan({"/srv/bundle.tar.gz": build_tar({"./bundle.zip": inner}, "gzip")})
    [finding] = archive_findings(result)
    assert finding.evidence["archive_formats"] == ["tar", "zip", "xz"]
    assert finding.evidence["member"] == "liblzma.so.5.6.1"


def test_a_compressed_file_over_its_bound_is_reported_not_judged(monkeypatch: pytest.MonkeyPatch,
                                                                  implant: bytes) -> None:
    monkeypatch.setattr(archives, "COMPRESSED_FILE_MAX", len(implant) - 1)
    result = scan({"/opt/liblzma.so.5.6.1.gz": compressed("gzip", implant)})
    assert archive_findings(result) == []
    assert result.stats.archive_notes == [
        f"/opt/liblzma.so.5.6.1.gz!/liblzma.so.5.6.1: not inspected: decompresses to more than the "
        f"{len(implant) - 1}-byte bound"
    ]


@pytest.mark.parametrize("tool", sorted(COMPRESSORS))
def test_a_truncated_compressed_file_is_reported_and_the_layer_goes_on(implant: bytes, tool: str) -> None:
    cut = compressed(tool, implant)[:-40]
    name = f"/dl/broken{SUFFIXES[tool]}"
    result = scan({name: cut, "/usr/lib/liblzma.so.5.6.1": implant})
    [note] = result.stats.archive_notes
    assert note.startswith(f"{name}: corrupt or unreadable {tool} archive"), note
    assert [f.path for f in archive_findings(result)] == ["/usr/lib/liblzma.so.5.6.1"]


def test_ustar_at_offset_257_without_a_valid_header_is_no_archive() -> None:
    data = bytearray(b"A" * 1024)
    data[257:262] = b"ustar"
    result = scan({"/data/blob.bin": bytes(data)})
    assert result.stats.archives == 0 and result.stats.archive_notes == []


def test_the_payload_object_in_a_static_library_built_by_ar(tmp_path: Path) -> None:
    """A ``liblzma.a`` as ``ar`` writes it (GNU long names: the member's name is over 15 bytes),
    its symbol index first: the object inside is judged like any file, and is payload."""
    from tests.support.compile import compile_object

    obj = compile_object(IMPLANT_SIM, tmp_path, defines=("WITH_PROLOGUE", "WITH_UNWIND_GAP"),
                         name="liblzma_la-crc64-fast.o")
    clean = compile_object(IMPLANT_SIM, tmp_path, defines=("NO_HOOK",), name="check.o")
    library = tmp_path / "liblzma.a"
    subprocess.run([require("ar"), "rcs", str(library), str(clean), str(obj)], check=True)
    data = library.read_bytes()
    assert b"//" in data[:200] and b"/\n" in data  # the symbol index and the long-name table are there
    result = scan({"/usr/lib/x86_64-linux-gnu/liblzma.a": data})
    findings = [f for f in result.findings if f.path == "/usr/lib/x86_64-linux-gnu/liblzma.a"]
    assert {f.rule for f in findings} >= {PROLOGUE, "ifunc-resolver-hook"}
    for finding in findings:
        assert finding.indicates is Indicates.PAYLOAD
        assert finding.evidence["member"] == "liblzma_la-crc64-fast.o"
        assert finding.evidence["archive_formats"] == ["ar"]
    assert result.stats.archive_members == 2 and result.stats.archive_notes == []


def build_bsd_ar(members: list[tuple[str, bytes]]) -> bytes:
    """A BSD ar archive (as macOS and llvm-ar write): each name in the member's data, ``#1/N``."""
    out = bytearray(archives.AR_MAGIC)
    out += f"{'__.SYMDEF SORTED':<16}{0:<12}{0:<6}{0:<6}{0o100644:<8o}{8:<10}`\n".encode() + bytes(8)
    for name, data in members:
        encoded = name.encode()
        body = encoded + data
        out += f"{'#1/' + str(len(encoded)):<16}{0:<12}{0:<6}{0:<6}{0o100644:<8o}{len(body):<10}`\n".encode()
        out += body + (b"\n" if len(body) % 2 else b"")
    return bytes(out)


def test_bsd_ar_member_names_are_read_from_the_member(implant: bytes) -> None:
    library = build_bsd_ar([("odd.txt", b"x"), ("lib/../../liblzma.so.5.6.1", implant)])
    result = scan({"/opt/libxz.a": library})
    [finding] = archive_findings(result)
    assert finding.evidence["member"] == "liblzma.so.5.6.1"  # normalised, never a host path
    assert finding.evidence["archive_formats"] == ["ar"]
    assert result.stats.archive_members == 2


@pytest.mark.parametrize(
    ("name", "problem"),
    [("/999", "names no entry of the long-name table"), ("#1/99999", "bad BSD ar name length")],
)
def test_an_ar_member_naming_what_is_not_there_is_reported(implant: bytes, name: str, problem: str) -> None:
    result = scan({"/opt/broken.a": build_ar([(name, implant)]), "/usr/lib/liblzma.so.5.6.1": implant})
    [note] = result.stats.archive_notes
    assert note.startswith("/opt/broken.a: corrupt or unreadable ar archive") and problem in note
    assert [f.path for f in archive_findings(result)] == ["/usr/lib/liblzma.so.5.6.1"]


# ---------------------------------------------------------------- what member findings mean


class ClaimsEverything(Detector):
    """Reports one finding of every kind and a fact for any file named 'status'."""

    name = "claims"
    version = 1

    def wants(self, entry: Entry, head: bytes) -> bool:
        return entry.path.endswith("/status")

    def rule_tables(self) -> dict[str, Any]:
        return {}

    def inspect(self, entry: Entry, data: bytes) -> Iterable[Finding | Fact]:
        for indicates in Indicates:
            yield Finding(f"r-{indicates.value}", Kind.PACKAGE, indicates, entry.path)
        yield Fact("claims", entry.path, {"x": 1})


def test_indicates_inside_archives_and_dropped_facts() -> None:
    tarball = build_tar({"./rootfs/var/lib/dpkg/status": b"Package: liblzma5\n"}, "gzip")
    result = scan({"/backup/rootfs.tar.gz": tarball, "/var/lib/dpkg/status": b"x"}, [ClaimsEverything()])
    inside = {f.evidence["inner_indicates"]: f.indicates for f in result.findings if f.kind is Kind.ARCHIVE}
    assert inside == {
        "implant": Indicates.PAYLOAD,
        "payload": Indicates.PAYLOAD,
        "source": Indicates.SOURCE,
    }  # affected-version and inconsistency describe another system: dropped
    assert [fact.path for fact in result.facts] == ["/var/lib/dpkg/status"]  # only the layer's own file
    assert len([f for f in result.findings if f.kind is Kind.PACKAGE]) == len(Indicates)


def test_detector_error_inside_an_archive_names_the_member() -> None:
    class Exploding(ClaimsEverything):
        name = "exploding"

        def inspect(self, entry: Entry, data: bytes) -> Iterable[Finding | Fact]:
            raise ValueError("boom")

    result = scan({"/a.zip": build_zip({"etc/status": b"x"})}, [Exploding()])
    assert result.stats.detector_errors == ["exploding: /a.zip!/etc/status: boom"]


def test_source_trigger_inside_a_tarball() -> None:
    from layerhound.detectors.source_artifacts import TRIGGER_MARKERS

    m4 = b"# build-to-host.m4 serial 30\n" + b"\n".join(TRIGGER_MARKERS.values()) + b"\n"
    tarball = build_tar({"./xz-5.6.1/m4/build-to-host.m4": m4, "./xz-5.6.1/README": b"XZ Utils"}, "xz")
    result = scan({"/usr/src/xz-5.6.1.tar.xz": tarball})
    [finding] = [f for f in result.findings if f.rule == "xz-trigger-m4"]
    assert finding.kind is Kind.ARCHIVE and finding.indicates is Indicates.SOURCE
    assert finding.evidence["member"] == "xz-5.6.1/m4/build-to-host.m4"
    assert finding.evidence["inner_kind"] == "source"


# ---------------------------------------------------------------- real negative


def test_debian_liblzma5_deb_in_the_apt_cache_is_clean() -> None:
    deb = apt_download("liblzma5")
    result = scan({f"{CACHE}/{deb.name}": deb.read_bytes()})
    assert result.findings == [] and result.facts == []
    stats = result.stats
    # The deb is opened; the compressed files in it (its changelogs: text no detector reads) are not.
    compressed_files = sum(1 for path in deb_data_files(deb) if path.endswith(".gz"))
    assert compressed_files >= 1 and stats.archives == 1
    assert stats.archive_elf_files >= 1 and stats.archive_members_read >= 1
    assert stats.archive_notes == [] and stats.detector_errors == []


def test_sniff_recognises_by_content() -> None:
    tar, zip_, fmt = archives.Format.TAR, archives.Format.ZIP, archives.Candidate
    plain_tar = build_tar({"./a": b"x"})
    assert archives.sniff("/x", plain_tar[: archives.PEEK_SIZE], len(plain_tar)) == fmt(tar, True, False)
    gz = gzip.compress(plain_tar)
    assert archives.sniff("/x", gz[:512], len(gz)) == fmt(tar, True, False)
    assert archives.sniff("/x", b"PK\x03\x04rest", 8) == fmt(zip_, True, False)
    assert archives.sniff("/x", b"\x7fELF" + b"\0" * 60, 64) is None
    # zstd needs whole blocks: undecided from the peek, decided on the whole file.
    zst = zstandard.compress(plain_tar)
    assert archives.sniff("/x.tar.zst", zst[:512], len(zst)) == fmt(tar, False, True, "x.tar", "zstd")
    assert archives.sniff("/x", struct.pack(">I", 0xEDABEEDB) + b"\0" * 92, 96) == fmt(
        archives.Format.RPM, True, False
    )
    # A compressed file that is no tarball is one file: its member is named as gunzip names it.
    small = gzip.compress(b"short text")
    assert archives.sniff("/changelog.gz", small, len(small)) == fmt(archives.Format.GZIP, True, False, "changelog",
                                                                      "gzip", b"short text")
    assert archives.sniff("/data.tgz", small, len(small)) == fmt(tar, False, True)  # named: opened, fails
    assert archives.inner_name("/usr/share/man/man1/xz.1.gz") == "xz.1"
    assert archives.inner_name("/srv/release.tgz") == "release.tar" and archives.inner_name("/srv/blob") == "blob"


def test_rule_tables_follow_the_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    before = archives.rule_tables()
    assert before["inside"] == {"implant": "payload", "payload": "payload", "source": "source"}
    monkeypatch.setattr(archives, "MAX_DEPTH", 4)
    assert archives.rule_tables() != before
