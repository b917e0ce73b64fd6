"""The zip reader: the members and bytes zipfile gives, read one directory entry at a time.

Real zips are Debian's own wheels (python3-pip-whl, which the venv of ``make setup`` needs);
the variants (every compression zipfile writes, zip64, data prepended, corruption) are
written by zipfile here.
"""

from __future__ import annotations

import glob
import io
import os
import struct
import zipfile
from pathlib import Path

import pytest

from layerhound.layers import archives
from layerhound.layers.archives import ARCHIVE_ERRORS, Candidate, Format
from layerhound.layers.fileview import FileView
from layerhound.model import EntryType

ZIP = Candidate(Format.ZIP, True, True)


def read_members(data: bytes) -> dict[str, bytes]:
    found = archives.members(ZIP, data)
    assert found is not None
    out = {}
    for member in found:
        if member.entry.type is EntryType.FILE:
            head = member.head(archives.PEEK_SIZE)
            content = member.read()
            assert content[: archives.PEEK_SIZE] == head
            out[member.name] = content
    return out


def zipfile_members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {info.filename.lstrip("/"): archive.read(info) for info in archive.infolist() if not info.is_dir()}


def test_debian_wheels_read_as_zipfile_reads_them() -> None:
    wheels = sorted(glob.glob("/usr/share/python-wheels/*.whl"))
    assert wheels, "python3-pip-whl is part of what make setup installs"
    for wheel in wheels:
        with open(wheel, "rb") as handle:
            data = handle.read()
        mine = read_members(data)
        assert mine == zipfile_members(data) and len(mine) > 50, wheel


def make_zip(compression: int, force_zip64: bool = False) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        archive.writestr("a/text.txt", b"hello " * 5000)
        archive.writestr("b/random.bin", bytes(range(256)) * 700)
        archive.writestr("empty", b"")
        archive.mkdir("c")
        with archive.open("big.bin", "w", force_zip64=force_zip64) as handle:
            handle.write(b"\x7fELF" + b"z" * 200_000)
    return buffer.getvalue()


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2,
                                         zipfile.ZIP_LZMA])
def test_every_compression_zipfile_writes(compression: int) -> None:
    data = make_zip(compression)
    assert read_members(data) == zipfile_members(data)


def test_zip64_and_prepended_data() -> None:
    data = make_zip(zipfile.ZIP_DEFLATED, force_zip64=True)
    assert read_members(data) == zipfile_members(data)
    prepended = b"#!/bin/sh\nexec something\n" + b"\0" * 1000 + data  # a self-extracting archive
    assert read_members(prepended) == zipfile_members(data)


def test_a_member_that_does_not_match_its_crc_is_an_error() -> None:
    data = bytearray(make_zip(zipfile.ZIP_STORED))
    at = data.find(b"hello hello")
    data[at] ^= 0x20
    with pytest.raises(archives.ArchiveError, match=r"a/text\.txt is corrupt \(CRC mismatch\)"):
        read_members(bytes(data))


@pytest.mark.parametrize("cut", [0.3, 0.6, 0.99])
def test_a_truncated_zip_is_an_error_never_a_partial_success(cut: float) -> None:
    data = make_zip(zipfile.ZIP_DEFLATED)
    with pytest.raises(ARCHIVE_ERRORS):
        read_members(data[: int(len(data) * cut)])


def _with_unneeded_zip64_records(data: bytes) -> bytes:
    """What PyTorch writes: a zip64 end record and locator before the end record of a small zip."""
    import struct

    end = data.rfind(b"PK\x05\x06")
    _, _, entries, total, size, offset = struct.unpack("<4HII", data[end + 4 : end + 20])
    record_at = end
    record = struct.pack("<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, entries, total, size, offset)
    locator = struct.pack("<4sIQI", b"PK\x06\x07", 0, record_at, 1)
    return data[:end] + record + locator + data[end:]


@pytest.mark.parametrize("prepended", [b"", b"#!/bin/sh\nexec python3 \"$0\"\n"])
def test_zip64_records_a_small_zip_does_not_need_are_read_as_zipfile_reads_them(prepended: bytes) -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for index in range(6):
            archive.writestr(f"model/data-{index}.pkl", b"x" * (index * 50))
    data = prepended + _with_unneeded_zip64_records(out.getvalue())
    expected = zipfile_members(data)
    assert len(expected) == 6
    assert read_members(data) == expected


@pytest.mark.parametrize("window", [1, 97, archives.ZIP_DIRECTORY_WINDOW])
def test_a_zip_on_the_host_read_a_directory_window_at_a_time_reads_as_zipfile_reads_it(
    window: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Entries that straddle a window (or are longer than one) are read whole; zip64 fields too."""
    monkeypatch.setattr(archives, "ZIP_DIRECTORY_WINDOW", window)
    wheel = sorted(glob.glob("/usr/share/python-wheels/*.whl"))[0]
    for data in (Path(wheel).read_bytes(), b"prepended" + make_zip(zipfile.ZIP_DEFLATED, force_zip64=True)):
        path = tmp_path / "on-host.zip"
        path.write_bytes(data)
        fd = os.open(path, os.O_RDONLY)
        try:
            found = {}
            for member in archives.zip_members_at(FileView(fd, 0, len(data))):
                if member.entry.type is EntryType.FILE:
                    assert member.note is None
                    found[member.name] = member.read()
        finally:
            os.close(fd)
        assert found == zipfile_members(data) and found


def _with_zip64_central_fields(data: bytes) -> bytes:
    """Every central directory entry with its sizes and offset in a zip64 extra field (0xFFFFFFFF
    in the entry), as a writer must for a member over 4 GiB; zipfile writes them only then."""
    entry = struct.Struct("<4s6H3I5H2I")
    end_at = data.rfind(b"PK\x05\x06")
    count, _, offset = struct.unpack("<HII", data[end_at + 10 : end_at + 20])
    pos, entries = offset, []
    for _ in range(count):
        fields = list(entry.unpack_from(data, pos))
        name_len, extra_len, comment_len = fields[10:13]
        name = data[pos + entry.size : pos + entry.size + name_len]
        extra = data[pos + entry.size + name_len : pos + entry.size + name_len + extra_len]
        comment = data[pos + entry.size + name_len + extra_len : pos + entry.size + name_len + extra_len + comment_len]
        usize, csize, local = fields[9], fields[8], fields[16]
        extra += struct.pack("<HHQQQ", 1, 24, usize, csize, local)
        fields[8] = fields[9] = fields[16] = 0xFFFFFFFF
        fields[11] = len(extra)
        entries.append(entry.pack(*fields) + name + extra + comment)
        pos += entry.size + name_len + extra_len + comment_len
    directory = b"".join(entries)
    end = data[end_at : end_at + 12] + struct.pack("<II", len(directory), offset) + data[end_at + 20 :]
    return data[:offset] + directory + end


@pytest.mark.parametrize("on_host", [False, True])
def test_zip64_fields_in_the_central_directory_are_read_as_zipfile_reads_them(on_host: bool, tmp_path: Path) -> None:
    data = _with_zip64_central_fields(make_zip(zipfile.ZIP_DEFLATED))
    assert data.count(b"\xff\xff\xff\xff") >= 12
    if not on_host:
        assert read_members(data) == zipfile_members(data)
        return
    path = tmp_path / "zip64.zip"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        found = {m.name: m.read() for m in archives.zip_members_at(FileView(fd, 0, len(data)))
                 if m.entry.type is EntryType.FILE}
    finally:
        os.close(fd)
    assert found == zipfile_members(data)
