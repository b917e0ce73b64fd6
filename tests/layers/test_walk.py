"""The layer engine: one streamed pass, digest checked, candidates only, whiteouts kept."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import pytest
import zstandard

from layerhound.detectors.base import Detector, is_elf
from layerhound.errors import CorruptLayer, DigestMismatch
from layerhound.layers.layer import TarBlobLayer
from layerhound.layers.walk import walk_layer
from layerhound.model import Entry, EntryType, Finding, Indicates, Kind

ELF = b"\x7fELF" + b"\x02\x01\x01" + b"\x00" * 57


def tar_bytes(members: list[tuple[str, str, bytes | str]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            info.mtime = 1
            if kind == "file":
                assert isinstance(payload, bytes)
                info.size = len(payload)
                archive.addfile(info, io.BytesIO(payload))
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
                archive.addfile(info)
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, str(payload)
                archive.addfile(info)
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, str(payload)
                archive.addfile(info)
    return buffer.getvalue()


def blob_layer(blob: bytes, digest: str | None = None, size: int | None = None) -> TarBlobLayer:
    @contextmanager
    def opener() -> Iterator[io.BytesIO]:
        yield io.BytesIO(blob)

    digest = digest or "sha256:" + hashlib.sha256(blob).hexdigest()
    return TarBlobLayer(digest, len(blob) if size is None else size, "", opener)


class RecordingDetector(Detector):
    """Wants ELF files; records what it was given so tests can see what was read."""

    name = "recording"
    version = 1
    max_size = 1000

    def __init__(self) -> None:
        self.seen: list[str] = []

    def wants(self, entry: Entry, head: bytes) -> bool:
        return is_elf(head)

    def rule_tables(self) -> dict[str, object]:
        return {}

    def inspect(self, entry: Entry, data: bytes) -> Iterable[Finding]:
        self.seen.append(entry.path)
        yield Finding("r", Kind.SIGNATURE, Indicates.IMPLANT, entry.path, evidence={"n": len(data)})


class ExplodingDetector(RecordingDetector):
    name = "exploding"

    def inspect(self, entry: Entry, data: bytes) -> Iterable[Finding]:
        raise ValueError("bad ELF header")


MEMBERS: list[tuple[str, str, bytes | str]] = [
    ("./usr", "dir", b""),
    ("./usr/lib/liblzma.so.5.6.1", "file", ELF + b"x" * 100),
    ("./usr/lib/liblzma.so.5", "symlink", "liblzma.so.5.6.1"),
    ("./usr/lib/hard", "hardlink", "./usr/lib/liblzma.so.5.6.1"),
    ("./usr/lib/big.so", "file", ELF + b"y" * 5000),
    ("./etc/text", "file", b"hello"),
    ("./etc/.wh.removed", "file", b""),
    ("./opt/.wh..wh..opq", "file", b""),
    ("../../escape", "file", b"data"),
]


@pytest.mark.parametrize("compress", ["none", "gzip", "zstd"])
def test_walk_reads_only_candidates_and_records_everything(compress: str) -> None:
    raw = tar_bytes(MEMBERS)
    blob = {"none": raw, "gzip": gzip.compress(raw), "zstd": zstandard.compress(raw)}[compress]
    detector = RecordingDetector()
    result = walk_layer(blob_layer(blob), [detector])

    assert detector.seen == ["/usr/lib/liblzma.so.5.6.1"]  # big.so is over max_size
    assert result.stats.skipped_oversize == ["/usr/lib/big.so"]
    assert result.stats.elf_files == 2 and result.stats.files_read == 1
    assert result.stats.compression == compress
    assert result.whiteouts == ["/etc/removed"] and result.opaque_dirs == ["/opt"]
    by_path = {e.path: e for e in result.entries}
    assert by_path["/usr/lib/liblzma.so.5"].type is EntryType.SYMLINK
    assert by_path["/usr/lib/hard"].linkname == "/usr/lib/liblzma.so.5.6.1"
    assert "/escape" in by_path  # ../.. cannot climb out of the image root
    [finding] = result.findings
    assert finding.layer == result.digest
    assert finding.sha256 == hashlib.sha256(ELF + b"x" * 100).hexdigest()


def test_digest_mismatch_is_raised_after_full_read() -> None:
    blob = gzip.compress(tar_bytes(MEMBERS))
    wrong = "sha256:" + "0" * 64
    with pytest.raises(DigestMismatch):
        walk_layer(blob_layer(blob, digest=wrong), [])


@pytest.mark.parametrize("cut", [0.3, 0.9])
def test_truncated_gzip_layer_is_corrupt(cut: float) -> None:
    blob = gzip.compress(tar_bytes(MEMBERS) + b"\0" * 4096)
    truncated = blob[: int(len(blob) * cut)]
    with pytest.raises(CorruptLayer):
        walk_layer(blob_layer(truncated, size=len(truncated)), [])


def test_garbage_blob_is_corrupt() -> None:
    blob = b"\x1f\x8b" + b"not really gzip" * 100
    with pytest.raises(CorruptLayer):
        walk_layer(blob_layer(blob), [])


def test_size_mismatch_is_corrupt() -> None:
    blob = tar_bytes(MEMBERS)
    with pytest.raises(CorruptLayer):
        walk_layer(blob_layer(blob, size=len(blob) + 10), [])


def test_detector_failure_is_reported_not_raised() -> None:
    result = walk_layer(blob_layer(tar_bytes(MEMBERS)), [ExplodingDetector()])
    assert result.findings == []
    assert result.stats.detector_errors == ["exploding: /usr/lib/liblzma.so.5.6.1: bad ELF header"]


def test_corrupt_deflate_block_with_matching_digest_is_corrupt_layer() -> None:
    """A blob whose digest is right but whose deflate stream is broken (ISA-L's own error)."""
    raw = tar_bytes([("./big", "file", bytes(range(256)) * 4000)])
    blob = bytearray(gzip.compress(raw))
    for offset in range(40, 400, 7):
        blob[offset] ^= 0xFF
    with pytest.raises(CorruptLayer):
        walk_layer(blob_layer(bytes(blob)), [])


@pytest.mark.parametrize("record", [tarfile.XHDTYPE, tarfile.GNUTYPE_LONGNAME])
def test_huge_tar_metadata_record_is_refused_not_read(record: bytes) -> None:
    """A pax header or GNU long name declaring 1 GiB is refused before it is read."""
    info = tarfile.TarInfo("././@PaxHeader" if record == tarfile.XHDTYPE else "././@LongLink")
    info.type = record
    info.size = 1 << 30
    header = info.tobuf(format=tarfile.GNU_FORMAT if record == tarfile.GNUTYPE_LONGNAME else tarfile.USTAR_FORMAT)
    blob = header + b"x" * 4096
    with pytest.raises(CorruptLayer, match="tar metadata record of 1073741824 bytes"):
        walk_layer(blob_layer(blob), [])
