"""The small parsers' bounds of the README's table, each hit by a crafted input of this test's own.

Each asserts the documented refusal (the detector's own error, which the walk turns into a
note), and for readers that search for terminators, that a file with none is judged at once
(a subprocess with a timeout and an address-space cap bounds the wait and the memory: no
timing is asserted).
"""

from __future__ import annotations

import struct

import pytest

from layerhound.detectors.elf_dynamic import MAX_PROGRAM_HEADERS, parse_dynamic
from layerhound.detectors.elfscan import ElfFormatError
from layerhound.detectors.loader_config import (
    MAX_CACHE_ENTRIES,
    NEW_CACHE_MAGIC,
    NEW_ENTRY,
    NEW_HEADER,
    OLD_CACHE_MAGIC,
    CacheFormatError,
    parse_ld_so_cache,
)
from layerhound.detectors.rpm_header import MAX_DATA_SIZE, MAX_INDEX_ENTRIES, RpmHeaderError, parse_header
from tests.support.capped import run_capped


@pytest.mark.parametrize(
    ("counts", "message"),
    [((MAX_INDEX_ENTRIES + 1, 16), f"claims {MAX_INDEX_ENTRIES + 1} index entries"),
     ((0, 16), "claims 0 index entries"),
     ((1, MAX_DATA_SIZE + 1), f"claims a {MAX_DATA_SIZE + 1}-byte data store"),
     ((4, 1 << 20), "needs")],
)
def test_rpm_header_counts_are_checked_before_anything_is_read(counts: tuple[int, int], message: str) -> None:
    with pytest.raises(RpmHeaderError, match=message):
        parse_header(struct.pack(">II", *counts) + bytes(64))


def _cache(entries: int, strings: bytes, claimed: int | None = None) -> bytes:
    header = NEW_HEADER.pack(NEW_CACHE_MAGIC, entries if claimed is None else claimed, len(strings), 0, 0)
    start = NEW_HEADER.size + entries * NEW_ENTRY.size
    body = b"".join(NEW_ENTRY.pack(0x0303, start + i, start + i, 0, 0) for i in range(entries))
    return header + body + strings


def test_ld_so_cache_entry_count_is_bounded() -> None:
    with pytest.raises(CacheFormatError, match=f"claims {MAX_CACHE_ENTRIES + 1} entries"):
        parse_ld_so_cache(_cache(1, b"a\0", claimed=MAX_CACHE_ENTRIES + 1))
    with pytest.raises(CacheFormatError, match="do not fit the file"):
        parse_ld_so_cache(_cache(1, b"a\0", claimed=1000))


def test_ld_so_cache_too_short_for_its_old_header_is_refused() -> None:
    with pytest.raises(CacheFormatError):
        parse_ld_so_cache(OLD_CACHE_MAGIC)


def test_ld_so_cache_strings_without_a_nul_are_judged_at_once() -> None:
    """200,000 entries pointing into 16 MiB without a NUL: each search is bounded, not the whole file."""
    program = (
        "from tests.detectors.test_parser_bounds import _cache\n"
        "from layerhound.detectors.loader_config import parse_ld_so_cache, CacheFormatError\n"
        "data = _cache(200_000, b'x' * (16 << 20))\n"
        "try:\n"
        "    parse_ld_so_cache(data)\n"
        "except CacheFormatError as exc:\n"
        "    print(exc)\n"
    )
    done = run_capped(program, cap_mib=512, timeout=120)
    assert done.status == 0, done.stderr
    assert "string" in done.stdout


def test_elf_program_header_count_is_bounded() -> None:
    ident = b"\x7fELF\x02\x01\x01" + bytes(9)
    header = struct.pack("<16sHHIQQQIHHHHHH", ident, 3, 62, 1, 0, 64, 0, 0, 64, 56, MAX_PROGRAM_HEADERS + 1, 64, 0, 0)
    with pytest.raises(ElfFormatError, match=f"implausible program header table \\({MAX_PROGRAM_HEADERS + 1} x 56\\)"):
        parse_dynamic(header + bytes(56 * 300))
