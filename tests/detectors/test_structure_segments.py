"""The structure detector on files whose section headers are gone, zeroed or lying, and on a
static link of the implant into a program.

Positives are the project's own sample (tests/samples/implant_sim.c) with its section headers
taken away (``tests.support.elfedit``): the loader would run it just the same, so the detector
must judge it the same, from the program headers. The implied tables are checked against the
section headers of this machine's own libraries, which describe the same bytes.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest

from layerhound.detectors.base import HEAD_SIZE
from layerhound.detectors.elfscan import (
    SHT_DYNSYM,
    SHT_RELA,
    ElfImage,
    head_is_x86_64_candidate,
    looks_like_plt_stub,
)
from layerhound.detectors.elfsegments import (
    has_ifunc_in_either_view,
    implied_tables,
    open_image,
    segment_sections,
)
from layerhound.detectors.structure import StructureDetector, iter_findings
from layerhound.model import Entry, EntryType, Indicates
from tests.support.compile import IMPLANT_SIM, LD_LINUX_FLAG, compile_shared, compile_static_executable
from tests.support.elfedit import VARIANTS, sstripped

DETECTOR = StructureDetector()
LIBDIR = Path("/usr/lib/x86_64-linux-gnu")
FULL = ("WITH_UNWIND_GAP",)


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("segments")


def host_shared_objects() -> list[bytes]:
    """Every distinct x86-64 shared object of this machine's multiarch library directory."""
    seen: set[Path] = set()
    found = []
    for path in sorted(LIBDIR.glob("*.so*")):
        real = path.resolve()
        if real in seen or not real.is_file():
            continue
        seen.add(real)
        data = real.read_bytes()
        if head_is_x86_64_candidate(data[:20]) and data[16] == 3:
            found.append(data)
    return found


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("opt", ["-O0", "-O2", "-Os"])
def test_the_implant_without_trustworthy_section_headers_is_judged_from_its_segments(
    build_dir: Path, opt: str, variant: str
) -> None:
    lib = compile_shared(IMPLANT_SIM, build_dir, defines=FULL, opt=opt, strip=True, ldflags=[LD_LINUX_FLAG])
    data = lib.read_bytes()
    described = DETECTOR.assess(data)
    assert described is not None and described["elf_view"] == "sections" and described["flagged"]
    edited = VARIANTS[variant](data)
    assert not ElfImage(edited).has_ifunc()  # a reader of section headers is blinded
    implied = DETECTOR.assess(edited)
    assert implied is not None
    assert implied["elf_view"] == "segments"
    assert implied["flagged"] and implied["confidence_level"] == "high"
    assert implied["properties"] == described["properties"]
    assert implied["score"] == described["score"]
    assert sorted(r["symbol"] for r in implied["hooked_resolvers"]) == ["lzma_crc32", "lzma_crc64"]
    assert all("lh_sim_probe" in w["slot"] for w in implied["got_write"])  # named from .dynsym via .rela
    assert implied["dt_needed"] == described["dt_needed"]
    # The code segment holds more than .text (.init, .plt, .fini): the gap may only grow by those.
    assert described["eh_frame_gap_bytes"] <= implied["eh_frame_gap_bytes"] < described["eh_frame_gap_bytes"] + 64


def test_a_clean_file_keeps_the_view_of_its_section_headers(build_dir: Path) -> None:
    lib = compile_shared(IMPLANT_SIM, build_dir, defines=FULL, opt="-O2", ldflags=[LD_LINUX_FLAG])
    assert open_image(lib.read_bytes()).view == "sections"
    libc = (LIBDIR / "libc.so.6").read_bytes()
    assert open_image(libc).view == "sections"
    assert open_image(sstripped(libc)).view == "segments"


def _sections_by_name(image: ElfImage) -> dict[str, Any]:
    return {sec.name: sec for sec in image.sections}


def test_the_implied_tables_are_where_the_section_headers_of_real_libraries_put_them() -> None:
    """For every shared object of this machine: .dynsym (its count from the hash tables), .dynstr,
    .rela.dyn, .rela.plt and .eh_frame as PT_DYNAMIC implies them lie where the section headers say;
    the implied GOT holds every slot a relocation patches, and nothing outside the real GOT."""
    checked = slots = 0
    for data in host_shared_objects():
        described = ElfImage(data)
        real = _sections_by_name(described)
        if ".dynsym" not in real:
            continue
        sections, alloc = segment_sections(data)
        implied_image = ElfImage(data, (sections, alloc))
        implied = _sections_by_name(implied_image)
        for name in (".dynsym", ".dynstr", ".rela.dyn", ".rela.plt"):
            if name in real and real[name].size:
                assert (implied[name].offset, implied[name].size) == (real[name].offset, real[name].size), name
        assert implied[".dynsym"].type == SHT_DYNSYM and implied[".rela.dyn"].type == SHT_RELA
        if ".eh_frame_hdr" in real:  # PT_GNU_EH_FRAME is what leads to .eh_frame
            assert implied[".eh_frame"].offset == real[".eh_frame"].offset
        real_got = [(real[n].base, real[n].end) for n in (".got", ".got.plt") if n in real]
        for table in (".rela.dyn", ".rela.plt"):
            if table not in real:
                continue
            for offset, rtype, _symbol, _addend in described.relocations(real[table]):
                if rtype in (6, 7, 16, 18, 37) and any(low <= offset < high for low, high in real_got):
                    found = implied_image.section_at(offset)
                    assert found is not None and found.name in (".got", ".got.plt"), (table, hex(offset))
                    slots += 1
        for sec in alloc:  # at most the alignment padding around the real GOT (16 bytes)
            if sec.name in (".got", ".got.plt"):
                low, high = min(lo for lo, _ in real_got), max(hi for _, hi in real_got)
                assert low - 16 <= sec.base and sec.end <= high + 16, (sec.name, hex(sec.base), hex(sec.end))
        checked += 1
    print(f"implied tables checked against the section headers of {checked} shared objects ({slots} GOT slots)")
    assert checked > 100 and slots > 10_000


def test_plt_entries_are_told_from_code_by_their_first_instruction() -> None:
    """Every PLT entry of this machine's libraries is a stub; the exported functions are not."""
    stubs = functions = stub_like_functions = 0
    for data in host_shared_objects():
        image = ElfImage(data)
        for sec in image.sections:
            if sec.name in (".plt.sec", ".plt.got") or (sec.name == ".plt" and sec.size > 16):
                first = sec.base + (16 if sec.name == ".plt" else 0)
                for entry in range(first, sec.end, 16 if sec.name != ".plt.got" else 8):
                    assert looks_like_plt_stub(image.read(entry, 8)), (sec.name, hex(entry))
                    stubs += 1
        dynsym = next((s for s in image.sections if s.type == SHT_DYNSYM), None)
        if dynsym is None:
            continue
        for symbol in image.symbols(dynsym):
            if symbol.type == 2 and symbol.defined and symbol.size:
                functions += 1
                stub_like_functions += looks_like_plt_stub(image.read(symbol.address, 8))
    print(f"{stubs} PLT entries, {functions} exported functions ({stub_like_functions} start like a stub)")
    assert stubs > 1000 and functions > 10_000
    assert stub_like_functions <= functions // 1000


def test_sstripped_host_libraries_with_ifunc_stay_clean() -> None:
    """Every shared object of this machine that uses IFUNC, sstripped: judged from its segments,
    and no finding (glibc's, libstdc++'s, libcrypto's resolvers among them)."""
    judged = []
    ifunc_files: list[bytes] = []
    for data in host_shared_objects():
        if not has_ifunc_in_either_view(data):
            continue
        stripped = sstripped(data)
        assert has_ifunc_in_either_view(stripped)
        evidence = DETECTOR.assess(stripped)
        judged.append(evidence)
        ifunc_files.append(data)
        assert evidence is None or (evidence["elf_view"] == "segments" and not evidence["flagged"]), evidence
    print(f"{len(judged)} IFUNC-using shared objects judged without section headers "
          f"({sum(e is not None for e in judged)} reached the full analysis)")
    assert len(judged) >= 3 and (LIBDIR / "libc.so.6").resolve().read_bytes() in ifunc_files


def _with_dynamic_tag(data: bytes, tag: int, value: int) -> bytes:
    """The first entry of PT_DYNAMIC with ``tag`` given ``value`` (the file otherwise unchanged)."""
    image = ElfImage(data)
    dynamic = next(s for s in image.sections if s.name == ".dynamic")
    out = bytearray(data)
    for at in range(dynamic.offset, dynamic.offset + dynamic.size, 16):
        if struct.unpack_from("<q", out, at)[0] == tag:
            struct.pack_into("<Q", out, at + 8, value)
            return bytes(out)
    raise AssertionError(f"no tag {tag:#x}")


@pytest.mark.parametrize(
    ("tag", "value"),
    [(0x6FFFFEF5, 0xFFFFFFFF_FFFFFFF0), (6, 1 << 40), (5, 1 << 40), (7, 0), (8, 1 << 62), (10, 1 << 62)],
    ids=["gnu-hash-nowhere", "symtab-nowhere", "strtab-nowhere", "rela-at-zero", "rela-huge", "strsz-huge"],
)
def test_lying_dynamic_entries_cost_the_file_its_analysis_never_the_scan(build_dir: Path, tag: int, value: int) -> None:
    lib = compile_shared(IMPLANT_SIM, build_dir, defines=FULL, opt="-O2", strip=True, ldflags=[LD_LINUX_FLAG])
    crafted = sstripped(_with_dynamic_tag(lib.read_bytes(), tag, value))
    evidence = DETECTOR.assess(crafted)  # no exception: a file the tables cannot be read from is no candidate
    assert evidence is None or evidence["elf_view"] == "segments"


def test_a_gnu_hash_table_claiming_a_billion_buckets_loses_the_symbols_not_the_scan(build_dir: Path) -> None:
    lib = compile_shared(IMPLANT_SIM, build_dir, defines=FULL, opt="-O2", strip=True, ldflags=[LD_LINUX_FLAG])
    data = bytearray(sstripped(lib.read_bytes()))
    image = open_image(bytes(data))
    assert image.view == "segments" and any(sec.name == ".dynsym" for sec in image.sections)
    gnu_hash = next(
        struct.unpack_from("<Q", data, at + 8)[0]
        for sec in ElfImage(lib.read_bytes()).sections if sec.name == ".dynamic"
        for at in range(sec.offset, sec.offset + sec.size, 16)
        if struct.unpack_from("<q", data, at)[0] == 0x6FFFFEF5
    )
    holder = image.section_at(gnu_hash)
    assert holder is not None
    struct.pack_into("<I", data, holder.offset + gnu_hash - holder.base, 1 << 30)
    assert not any(sec.name == ".dynsym" for sec in implied_tables(bytes(data)))
    assert any(sec.name == ".rela.dyn" for sec in implied_tables(bytes(data)))
    DETECTOR.assess(bytes(data))  # judged on what is left, without an exception


@pytest.mark.parametrize("strip", [False, True], ids=["unstripped", "stripped"])
@pytest.mark.parametrize("pie", [False, True], ids=["static", "static-pie"])
@pytest.mark.parametrize("opt", ["-O0", "-O2", "-Os"])
def test_a_static_link_of_the_implant_into_a_program_is_flagged(build_dir: Path, opt: str, pie: bool,
                                                                 strip: bool) -> None:
    """The hooked resolvers linked into an executable (ET_EXEC, or ET_DYN as static-pie): no
    DT_NEEDED and no __tls_get_addr import, the rest of the shape holds. Stripped, the resolvers
    are found through their IRELATIVE relocations only (no symbol names them)."""
    exe = compile_static_executable(IMPLANT_SIM, build_dir, defines=(*FULL, "NO_TLS_REF"), opt=opt, pie=pie,
                                    strip=strip)
    data = exe.read_bytes()
    assert data[16] == (3 if pie else 2)
    entry = Entry("/usr/local/bin/xz", EntryType.FILE, size=len(data))
    assert DETECTOR.wants(entry, data[:HEAD_SIZE])
    [finding] = iter_findings(DETECTOR.inspect(entry, data))
    assert finding.indicates is Indicates.IMPLANT
    evidence = finding.evidence
    assert evidence["flagged"] and evidence["elf_view"] == "sections"
    assert evidence["properties"]["got_write"] and evidence["properties"]["bss_counter"]
    assert not evidence["properties"]["needs_ld_linux"]
    names = sorted(str(r["symbol"]) for r in evidence["hooked_resolvers"])
    assert names == (["None"] if strip else ["lzma_crc32", "lzma_crc64"])
    if pie:  # a static-pie keeps PT_DYNAMIC (its relocations): sstripped, it is judged from its segments
        implied = DETECTOR.assess(sstripped(data))
        assert implied is not None and implied["flagged"] and implied["elf_view"] == "segments"
        assert implied["properties"] == evidence["properties"]
