"""The tar reader: the members and bytes Go's archive/tar would give, and its refusals.

Sparse files are written by GNU tar itself (every format it has), and the reader's view
is compared with the file on disk; the other cases are planted in tars that Python's
tarfile writes.
"""

from __future__ import annotations

import hashlib
import io
import lzma
import os
import random
import subprocess
import tarfile
from functools import partial
from pathlib import Path

import pytest
import zstandard

from layerhound.errors import CorruptLayer
from layerhound.layers import tarstream
from layerhound.layers.stream import zstd_reader
from layerhound.layers.tarstream import BLOCK, Kind, TarFormatError, TarReader
from layerhound.layers.walk import walk_layer
from tests.layers.test_walk import blob_layer, tar_bytes


def read_all(data: bytes, chunk: int = 1000) -> list[tuple[str, Kind, int, str, bytes]]:
    """Every member as (name, kind, size, link, content); chunks smaller than a block on purpose."""
    source = io.BytesIO(data)
    reader = TarReader(partial(source.read, chunk))
    out = []
    for header in reader:
        content = reader.data.read() if header.kind is Kind.FILE and reader.data is not None else b""
        out.append((header.name, header.kind, header.size, header.linkname, content))
    return out


def test_members_names_links_and_contents_match_tarfile() -> None:
    long_dir = "d" * 120
    blob = tar_bytes([
        ("a", "file", b"hello"),
        (f"{long_dir}/{'é' * 70}", "file", os.urandom(5000)),
        ("dir", "dir", b""),
        ("sym", "symlink", "a"),
        ("hard", "hardlink", "a"),
        ("empty", "file", b""),
    ])
    mine = read_all(blob)
    with tarfile.open(fileobj=io.BytesIO(blob)) as archive:
        theirs = [
            (info.name, info.linkname, archive.extractfile(info).read() if info.isreg() else b"")  # type: ignore[union-attr]
            for info in archive
        ]
    assert [(name.rstrip("/"), link, content) for name, _, _, link, content in mine] == theirs
    kinds = [Kind.FILE, Kind.FILE, Kind.DIR, Kind.SYMLINK, Kind.HARDLINK, Kind.FILE]
    assert [kind for _, kind, _, _, _ in mine] == kinds


@pytest.mark.parametrize(("tar_format", "sparse_version"), [
    ("gnu", None), ("oldgnu", None), ("posix", "0.0"), ("posix", "0.1"), ("posix", "1.0"),
])
def test_gnu_tar_sparse_files_read_with_their_holes(
    tmp_path: Path, tar_format: str, sparse_version: str | None
) -> None:
    sparse = tmp_path / "src" / "sparse"
    sparse.parent.mkdir()
    with sparse.open("wb") as handle:
        handle.truncate(6 * 1024 * 1024)
        for offset, data in ((1 << 20, b"first"), (4_000_001, b"second"), (6 * 1024 * 1024 - 3, b"end")):
            handle.seek(offset)
            handle.write(data)
    (tmp_path / "src" / "after").write_bytes(b"the member after")
    command = ["tar", "--sparse", f"--format={tar_format}", "-cf", "-", "-C", str(tmp_path), "src/sparse", "src/after"]
    if sparse_version:
        command.insert(2, f"--sparse-version={sparse_version}")
    blob = subprocess.run(command, check=True, capture_output=True).stdout
    members = read_all(blob, chunk=777)
    sizes = [(name, size) for name, _, size, _, _ in members]
    assert sizes == [("src/sparse", sparse.stat().st_size), ("src/after", 16)]
    assert hashlib.sha256(members[0][4]).digest() == hashlib.sha256(sparse.read_bytes()).digest()
    assert members[1][4] == b"the member after"


def test_a_zero_block_in_the_middle_is_not_the_end() -> None:
    """tarfile stops at a lone zero block, hiding what follows; runtimes refuse the layer."""
    first = tar_bytes([("a", "file", b"x" * 10)])
    second = tar_bytes([("lib/liblzma.so.5", "file", b"y" * 10)])
    planted = first[: BLOCK * 2] + bytes(BLOCK) + second
    with pytest.raises(TarFormatError, match="zero block followed by data"):
        read_all(planted)
    with pytest.raises(CorruptLayer, match="zero block followed by data"):
        walk_layer(blob_layer(planted), [])


def test_a_bad_header_checksum_is_an_error_not_the_end() -> None:
    blob = bytearray(tar_bytes([("a", "file", b"x" * 10), ("b", "file", b"y" * 10)]))
    second = BLOCK * 2  # a's header, a's data block
    blob[second + 1] ^= 0x01  # the second member's name, so its checksum no longer matches
    with pytest.raises(CorruptLayer, match="bad tar header checksum at 1024"):
        walk_layer(blob_layer(bytes(blob)), [])


@pytest.mark.parametrize("cut", ["in a header", "in data"])
def test_a_stream_ending_inside_a_member_is_refused(cut: str) -> None:
    blob = tar_bytes([("a", "file", b"x" * 3000), ("b", "file", b"y")])
    end = BLOCK * 7 + 100 if cut == "in a header" else BLOCK * 3
    with pytest.raises(TarFormatError, match="ends inside"):
        read_all(blob[:end])


def test_ends_without_end_blocks_or_after_one_are_clean() -> None:
    blob = tar_bytes([("a", "file", b"x" * 10)])
    assert [m[0] for m in read_all(blob[: BLOCK + 10])] == ["a"]  # no padding, no end blocks (umoci)
    assert [m[0] for m in read_all(blob[: BLOCK * 3])] == ["a"]  # one zero block


def test_header_only_types_carry_no_data_whatever_their_size_field() -> None:
    """A directory header claiming 512 bytes is followed by the next header, as Go reads it."""
    info = tarfile.TarInfo("dir")
    info.type, info.size = tarfile.DIRTYPE, BLOCK
    header = bytearray(info.tobuf(format=tarfile.USTAR_FORMAT))
    header[124:136] = b"%011o\0" % BLOCK
    header[148:156] = b"        "
    header[148:156] = b"%06o\0 " % sum(header)
    blob = bytes(header) + tar_bytes([("after", "file", b"z")])
    assert [(name, kind) for name, kind, *_ in read_all(blob)] == [("dir/", Kind.DIR), ("after", Kind.FILE)]


def test_zstd_starting_with_a_skippable_frame_is_read_and_truncation_is_refused() -> None:
    blob = tar_bytes([("a", "file", os.urandom(300_000))])
    skippable = b"\x50\x2a\x4d\x18" + (4).to_bytes(4, "little") + b"meta"
    compressed = skippable + zstandard.compress(blob)
    layer = walk_layer(blob_layer(compressed), [])
    assert [e.path for e in layer.entries] == ["/a"] and layer.stats.compression == "zstd"
    for broken, reason in ((compressed[:-7], "truncated"), (compressed + b"garbage!", "no zstd frame")):
        with pytest.raises(zstandard.ZstdError, match=reason):
            zstd_reader(io.BytesIO(broken)).read()
        with pytest.raises(CorruptLayer, match=reason):
            walk_layer(blob_layer(broken), [])


XZ_CASES = {
    "one stream": lambda x: x,
    "two streams": lambda x: x + x,
    "padding of eight NULs": lambda x: x + b"\0" * 8,
    "padding between streams": lambda x: x + b"\0" * 4 + x,
    "padding of three NULs": lambda x: x + b"\0" * 3,
    "trailing garbage": lambda x: x + b"garbage!",
    "padding then garbage": lambda x: x + b"\0" * 4 + b"xy",
    "truncated": lambda x: x[:-5],
    "odd padding before a stream": lambda x: x + b"\0" * 2 + x,
}


@pytest.mark.parametrize("case", sorted(XZ_CASES))
def test_xz_is_accepted_and_refused_exactly_as_the_xz_tool_does(case: str, tmp_path: Path) -> None:
    blob = tar_bytes([("a", "file", os.urandom(300_000))])
    data = XZ_CASES[case](lzma.compress(blob))
    path = tmp_path / "layer.tar.xz"
    path.write_bytes(data)
    xz_accepts = subprocess.run(["xz", "-t", str(path)], capture_output=True).returncode == 0
    try:
        layer = walk_layer(blob_layer(data), [])
    except CorruptLayer as exc:
        assert not xz_accepts, f"refused what xz accepts: {exc}"
        assert "xz" in str(exc)
    else:
        assert xz_accepts, "accepted what the xz tool refuses"
        assert layer.stats.compression == "xz" and layer.entries[0].path == "/a"


def test_the_header_byte_sum_is_the_sum_of_the_bytes_even_where_adler32_would_wrap() -> None:
    """All-0xFF (130,560: twice Adler-32's modulus) and random blocks, of header size and others."""
    rng = random.Random(3094)
    blocks = [b"\xff" * 512, b"\x00" * 512, b"\xff" * 257, b""]
    blocks += [rng.randbytes(rng.choice((1, 255, 256, 511, 512, 1024))) for _ in range(500)]
    for block in blocks:
        assert tarstream._byte_sum(block) == sum(block)
