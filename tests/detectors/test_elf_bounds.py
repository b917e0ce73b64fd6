"""Symbol and relocation tables of crafted ELF files, and the IFUNC walk: every count, size, name and
call graph is bounded.

The files are written here, byte by byte (an ELF header, one symbol region, a string table and
as many section headers as the case needs): tens of thousands of symbol tables over one region,
names with no NUL in reach, sizes that lie. Each is judged under an address-space cap. The walk's
cases are the project's own sample built with STAGE_HOPS or DECOY_CALLS (tests/samples/implant_sim.c).
"""

from __future__ import annotations

import struct
import textwrap
from pathlib import Path
from typing import Any

import pytest

from layerhound.detectors.elfscan import MAX_NAME, MAX_SYMBOLS, ElfBoundError, ElfImage
from layerhound.detectors.registry import ALL_DETECTORS
from layerhound.detectors.structure import MAX_DEPTH, MAX_FUNCS, StructureDetector
from layerhound.layers.walk import walk_layer
from tests.layers.test_walk import blob_layer, tar_bytes
from tests.support.capped import run_capped
from tests.support.compile import IMPLANT_SIM, compile_shared

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
        from layerhound.detectors.structure import MAX_DEPTH, MAX_FUNCS, StructureDetector
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

    chosen, found = StructureDetector._resolvers(Tables())  # type: ignore[arg-type]
    assert len(chosen) == MAX_RESOLVERS and found == 1200
    assert chosen[0] == (0x1000 + 599, "lzma_crc32")
    assert all(name is not None for _, name in chosen)  # named ones fill the bound before hidden ones


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("walk-bounds")


def walk_of(build_dir: Path, define: str, opt: str) -> dict[str, Any]:
    """The structure evidence of the project's sample built with ``define`` (see implant_sim.c)."""
    evidence = StructureDetector().assess(compile_shared(IMPLANT_SIM, build_dir, [define], opt).read_bytes())
    assert evidence is not None
    return evidence


@pytest.mark.parametrize("opt", ["-O2", "-Os"])
def test_the_walk_follows_calls_three_deep_and_no_deeper(build_dir: Path, opt: str) -> None:
    """The hidden stage (the GOT write and the .bss counter) one hop deeper is out of reach: the
    file is judged on what was seen, and the evidence counts the call it did not follow."""
    at_bound = walk_of(build_dir, "STAGE_HOPS=1", opt)
    assert at_bound["flagged"] and at_bound["properties"]["got_write"]
    assert {"name": "lh_sim_stage", "depth": MAX_DEPTH} in [
        {"name": f["name"], "depth": f["depth"]} for f in at_bound["hidden_functions"]
    ]
    assert set(at_bound["walk_limits"].values()) == {0}

    beyond = walk_of(build_dir, "STAGE_HOPS=2", opt)
    assert not beyond["flagged"] and not beyond["properties"]["got_write"] and not beyond["bss_counter"]
    assert max(f["depth"] for f in beyond["hidden_functions"]) == MAX_DEPTH
    assert "lh_sim_stage" not in [f["name"] for f in beyond["hidden_functions"]]
    assert beyond["walk_limits"]["calls_beyond_depth"] == 1


@pytest.mark.parametrize("opt", ["-O2", "-Os"])
def test_the_walk_reads_thirty_two_functions_and_no_more(build_dir: Path, opt: str) -> None:
    """_get_cpuid, then 30 decoys, then the stage: the 32nd function is read. One more decoy pushes
    the stage past the bound; the evidence counts the function left unread."""
    at_bound = walk_of(build_dir, "DECOY_CALLS=30", opt)
    names = [f["name"] for f in at_bound["hidden_functions"]]
    assert len(names) == MAX_FUNCS and names[0] == "_get_cpuid" and names[-1] == "lh_sim_stage"
    assert at_bound["flagged"] and at_bound["properties"]["got_write"]
    assert at_bound["walk_limits"]["functions_beyond_count"] == 0

    beyond = walk_of(build_dir, "DECOY_CALLS=31", opt)
    names = [f["name"] for f in beyond["hidden_functions"]]
    assert len(names) == MAX_FUNCS and "lh_sim_stage" not in names
    assert not beyond["flagged"] and not beyond["properties"]["got_write"]
    assert beyond["walk_limits"] == {"resolvers_not_analysed": 0, "calls_beyond_depth": 0, "functions_beyond_count": 1}
