"""Symbol and relocation tables of crafted ELF files: every count, size and name is bounded.

The files are written here, byte by byte (an ELF header, one symbol region, a string table and
as many section headers as the case needs): tens of thousands of symbol tables over one region,
names with no NUL in reach, sizes that lie. Each is judged under an address-space cap.
"""

from __future__ import annotations

import struct
import textwrap

from layerhound.detectors.elfscan import MAX_NAME, MAX_SYMBOLS, ElfBoundError, ElfImage
from layerhound.detectors.registry import ALL_DETECTORS
from layerhound.detectors.structure import StructureDetector
from layerhound.layers.walk import walk_layer
from tests.layers.test_walk import blob_layer, tar_bytes
from tests.support.capped import run_capped

SYM = struct.Struct("<IBBHQQ")
SHDR = struct.Struct("<IIQQQQIIQQ")
IFUNC_GLOBAL = 0x10 | 10  # STB_GLOBAL, STT_GNU_IFUNC


def crafted_elf(symbols: int, tables: int, strtab: bytes, name_step: int = 0, table_size: int | None = None) -> bytes:
    """An x86-64 ET_DYN whose ``tables`` SHT_SYMTAB headers all cover one region of IFUNC symbols."""
    region = SYM.pack(0, 0, 0, 0, 0, 0) + b"".join(
        SYM.pack(1 + (i * name_step) % max(1, len(strtab) - 1), IFUNC_GLOBAL, 0, 1, 0x1000 + i, 8)
        for i in range(symbols - 1)
    )
    symtab_off = 64
    strtab_off = symtab_off + len(region)
    shoff = (strtab_off + len(strtab) + 7) & ~7
    headers = [SHDR.pack(0, 0, 0, 0, 0, 0, 0, 0, 0, 0), SHDR.pack(0, 3, 0, 0, strtab_off, len(strtab), 0, 0, 1, 0)]
    size = len(region) if table_size is None else table_size
    headers += [SHDR.pack(0, 2, 0, 0, symtab_off, size, 1, 1, 8, 24)] * tables
    ident = b"\x7fELF\x02\x01\x01" + bytes(9)
    ehdr = struct.pack("<16sHHIQQQIHHHHHH", ident, 3, 62, 1, 0, 0, shoff, 0, 64, 56, 0, 64, len(headers), 1)
    body = ehdr + region + strtab
    return body + bytes(shoff - len(body)) + b"".join(headers)


def test_tens_of_thousands_of_overlapping_symbol_tables_hit_the_bound_and_say_so() -> None:
    data = crafted_elf(symbols=200, tables=20_000, strtab=b"\0lzma_crc32\0")
    try:
        ElfImage(data)
    except ElfBoundError as exc:
        assert f"over the bound of {MAX_SYMBOLS}" in str(exc) and "4000000 symbol table entries" in str(exc)
    else:
        raise AssertionError("20,000 overlapping symbol tables were read")
    layer = walk_layer(blob_layer(tar_bytes([("usr/lib/liblzma.so.5", "file", data)])), ALL_DETECTORS)
    [error] = layer.stats.detector_errors
    assert error.startswith("ifunc-structure: /usr/lib/liblzma.so.5: ") and "not analysed" in error


def test_names_without_a_nul_are_cut_and_their_total_is_bounded() -> None:
    strtab = b"\0" + b"A" * (8 << 20)
    one = ElfImage(crafted_elf(symbols=3, tables=1, strtab=strtab))
    [sec] = [s for s in one.sections if s.type == 2]
    assert [len(sym.name) for sym in one.symbols(sec)] == [0, MAX_NAME, MAX_NAME]
    many = ElfImage(crafted_elf(symbols=10_000, tables=1, strtab=strtab, name_step=41))
    [sec] = [s for s in many.sections if s.type == 2]
    try:
        list(many.symbols(sec))
    except ElfBoundError as exc:
        assert "names over 16777216 bytes" in str(exc)
    else:
        raise AssertionError("40 MB of names were decoded")


def test_lying_table_sizes_are_neither_read_past_the_file_nor_a_crash() -> None:
    past_the_end = ElfImage(crafted_elf(symbols=4, tables=1, strtab=b"\0f\0", table_size=1 << 40))
    [sec] = [s for s in past_the_end.sections if s.type == 2]
    assert list(past_the_end.symbols(sec)) == []
    ragged = ElfImage(crafted_elf(symbols=4, tables=1, strtab=b"\0f\0", table_size=24 * 3 + 5))
    [sec] = [s for s in ragged.sections if s.type == 2]
    assert len(list(ragged.symbols(sec))) == 3
    assert StructureDetector().assess(crafted_elf(symbols=4, tables=1, strtab=b"\0f\0", table_size=101)) is None


def test_the_worst_crafted_tables_stay_under_a_256_mib_address_space() -> None:
    """Overlapping tables and NUL-less names together, judged by the detector in a capped process."""
    program = textwrap.dedent("""
        from tests.detectors.test_elf_bounds import crafted_elf
        from layerhound.detectors.elfscan import ElfBoundError
        from layerhound.detectors.structure import StructureDetector
        from layerhound.model import Entry, EntryType
        cases = [crafted_elf(200, 20_000, b"\\0lzma_crc32\\0"),
                 crafted_elf(100_000, 2, b"\\0" + b"A" * (8 << 20), name_step=41)]
        for data in cases:
            try:
                list(StructureDetector().inspect(Entry("/l.so", EntryType.FILE, len(data)), data))
                print("judged")
            except ElfBoundError as exc:
                print("bound:", exc)
    """)
    done = run_capped(program, cap_mib=256)
    assert done.status == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"bound: 4000000 symbol table entries, over the bound of {MAX_SYMBOLS}; not analysed",
        "bound: symbol and section names over 16777216 bytes; not analysed",
    ]


def test_resolvers_are_bounded_and_lzma_ones_go_first() -> None:
    """600 named IFUNC resolvers and 600 hidden ones (IRELATIVE only): 512 are analysed, lzma_* first."""
    from layerhound.detectors.structure import MAX_RESOLVERS

    class Tables:
        def ifunc_symbols(self) -> dict[int, str]:
            return {0x1000 + i: ("lzma_crc32" if i == 599 else f"f{i}") for i in range(600)}

        def irelative_resolvers(self) -> set[int]:
            return {0x9000 + i for i in range(600)} | {0x1000}

    chosen = StructureDetector._resolvers(Tables())  # type: ignore[arg-type]
    assert len(chosen) == MAX_RESOLVERS
    assert chosen[0] == (0x1000 + 599, "lzma_crc32")
    assert all(name is not None for _, name in chosen)  # named ones fill the bound before hidden ones
