"""The sections a linked ELF file's program headers imply, for when its section headers cannot be trusted.

Why: the loader never reads section headers. ``sstrip`` removes them, and an attacker can zero
them or make them lie, and the library still loads and its IFUNC resolvers still run. Everything
the structure detector needs is also reachable from the program headers:

* PT_DYNAMIC gives the dynamic symbols (DT_SYMTAB, counted from DT_GNU_HASH or DT_HASH), their
  names (DT_STRTAB, DT_STRSZ) and the relocations (DT_RELA, DT_JMPREL), IRELATIVE and GLOB_DAT ones
  among them;
* PT_LOAD gives the code (executable segments), the read-only data, the data and its zero-filled
  tail (.bss); the GOT is where the GLOB_DAT and JUMP_SLOT relocations and DT_PLTGOT point;
* PT_GNU_EH_FRAME leads to .eh_frame (for unwind coverage); PT_TLS to the TLS template.

From these, ``segment_sections`` builds ``elfscan.Section``s with the names and flags the
detector reads (``.text``, ``.got``, ``.got.plt``, ``.bss``, ``.dynsym``…), so one analysis runs
over either view, and the finding says which view it used. What this view cannot know, it does
without: local function names (gone with ``.symtab`` from any stripped file), and where ``.plt``
ends inside the code (a call into a PLT stub is told by the stub's first instruction:
``ElfImage.is_local_code``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from layerhound.detectors.elfscan import (
    ET_REL,
    IFUNC_TABLE,
    IRELATIVE_TABLE,
    SHF_ALLOC,
    SHF_EXECINSTR,
    SHF_TLS,
    SHF_WRITE,
    SHT_DYNSYM,
    SHT_NOBITS,
    SHT_PROGBITS,
    SHT_RELA,
    ElfFormatError,
    ElfImage,
    Section,
    quick_ifunc_scan,
    read_encoded,
)

PT_LOAD, PT_DYNAMIC, PT_TLS = 1, 2, 7
PT_GNU_EH_FRAME = 0x6474E550
PT_GNU_RELRO = 0x6474E552
PF_X, PF_W = 1, 2
SHT_STRTAB = 3

DT_NULL, DT_PLTRELSZ, DT_PLTGOT, DT_HASH, DT_STRTAB, DT_SYMTAB = 0, 2, 3, 4, 5, 6
DT_RELA, DT_RELASZ, DT_RELAENT, DT_STRSZ, DT_SYMENT, DT_PLTREL, DT_JMPREL = 7, 8, 9, 10, 11, 20, 23
DT_GNU_HASH = 0x6FFFFEF5

R_X86_64_GLOB_DAT, R_X86_64_JUMP_SLOT = 6, 7
GOT_SLOT_TYPES = frozenset({R_X86_64_GLOB_DAT, R_X86_64_JUMP_SLOT, 16, 18})
"""Relocations whose target is a GOT slot: GLOB_DAT, JUMP_SLOT, DTPMOD64, TPOFF64."""
POINTER_TYPES = frozenset({1, 8, 37})
"""R_X86_64_64, RELATIVE, IRELATIVE: a pointer, in the GOT when it sits where .got does."""

MAX_SEGMENTS = 256
MAX_DYNAMIC_ENTRIES = 4096
MAX_DYNAMIC_SYMBOLS = 1 << 18
"""The same bound as ``elfscan.MAX_SYMBOLS``: a count from a hash table above it is refused."""
MAX_HASH_BUCKETS = 1 << 20

_PHDR = struct.Struct("<IIQQQQQQ")
_DYN = struct.Struct("<qQ")
_RELA_SIZE = 24
_SYM_SIZE = 24


@dataclass(frozen=True, slots=True)
class Segment:
    """One program header: where it lies in the file and in memory."""

    type: int
    flags: int
    offset: int
    vaddr: int
    filesz: int
    memsz: int


def read_segments(data: bytes, phoff: int, phentsize: int, phnum: int) -> list[Segment]:
    """The program headers, as the loader reads them (each must lie inside the file)."""
    if phnum > MAX_SEGMENTS or (phnum and phentsize < _PHDR.size):
        raise ElfFormatError(f"implausible program header table ({phnum} x {phentsize})")
    segments = []
    for index in range(phnum):
        at = phoff + index * phentsize
        if at + _PHDR.size > len(data):
            raise ElfFormatError("program header table past end of file")
        p_type, p_flags, p_offset, p_vaddr, _paddr, p_filesz, p_memsz, _align = _PHDR.unpack_from(data, at)
        segments.append(Segment(p_type, p_flags, p_offset, p_vaddr, p_filesz, p_memsz))
    return segments


class _AddressMap:
    """Virtual address -> file offset through the PT_LOAD segments' file-backed parts."""

    def __init__(self, loads: list[Segment], size: int) -> None:
        self._loads = [(s.vaddr, s.offset, min(s.filesz, max(0, size - s.offset))) for s in loads]

    def offset(self, vaddr: int) -> int | None:
        for start, offset, filesz in self._loads:
            if start <= vaddr < start + filesz:
                return offset + (vaddr - start)
        return None

    def room(self, vaddr: int) -> int:
        """File-backed bytes from ``vaddr`` to the end of its segment (0 if it is in none)."""
        for start, _offset, filesz in self._loads:
            if start <= vaddr < start + filesz:
                return start + filesz - vaddr
        return 0


def dynamic_entries(data: bytes, segments: list[Segment]) -> dict[int, int]:
    """The first value of each tag of PT_DYNAMIC, up to DT_NULL (empty without PT_DYNAMIC)."""
    dynamic = next((s for s in segments if s.type == PT_DYNAMIC), None)
    return {} if dynamic is None else _dynamic_tags(data, dynamic.offset, dynamic.filesz)


def _dynamic_tags(data: bytes, offset: int, filesz: int) -> dict[int, int]:
    """The dynamic entries at ``offset``: the first value of each tag, up to DT_NULL (the loader
    reads no further). One unpack, no loop in Python: the pre-check runs on every linked file."""
    raw = data[offset : offset + min(filesz, MAX_DYNAMIC_ENTRIES * _DYN.size)]
    entries = list(_DYN.iter_unpack(raw[: len(raw) - len(raw) % _DYN.size]))
    kinds = [tag for tag, _ in entries]
    end = kinds.index(DT_NULL) if DT_NULL in kinds else len(kinds)
    return dict(reversed(entries[:end]))


def dynamic_symbol_count(data: bytes, tags: dict[int, int], where: _AddressMap) -> int:
    """How many entries DT_SYMTAB has: the loader's own answer, from the hash tables.

    DT_GNU_HASH: one past the last symbol of the longest-reaching chain; DT_HASH: nchain.
    Neither (a file the loader could not look a symbol up in): the bytes up to DT_STRTAB when
    the strings follow the symbols, as every linker lays them out.
    """
    gnu = where.offset(tags[DT_GNU_HASH]) if DT_GNU_HASH in tags else None
    if gnu is not None:
        if gnu + 16 > len(data):
            raise ElfFormatError("DT_GNU_HASH past end of file")
        nbuckets, symoffset, bloom_size, _shift = struct.unpack_from("<IIII", data, gnu)
        if nbuckets > MAX_HASH_BUCKETS or bloom_size > MAX_HASH_BUCKETS:
            raise ElfFormatError(f"implausible DT_GNU_HASH ({nbuckets} buckets, {bloom_size} bloom words)")
        buckets_at = gnu + 16 + bloom_size * 8
        chains_at = buckets_at + nbuckets * 4
        if chains_at > len(data):
            raise ElfFormatError("DT_GNU_HASH buckets past end of file")
        last: int = max(struct.unpack_from(f"<{nbuckets}I", data, buckets_at), default=0)
        if last < symoffset:
            return int(symoffset)
        index = last
        while index < MAX_DYNAMIC_SYMBOLS:
            at = chains_at + (index - symoffset) * 4
            if at + 4 > len(data):
                raise ElfFormatError("DT_GNU_HASH chain past end of file")
            if struct.unpack_from("<I", data, at)[0] & 1:
                return index + 1
            index += 1
        return index
    hashed = where.offset(tags[DT_HASH]) if DT_HASH in tags else None
    if hashed is not None:
        if hashed + 8 > len(data):
            raise ElfFormatError("DT_HASH past end of file")
        nchain: int = struct.unpack_from("<II", data, hashed)[1]
        return nchain
    symtab, strtab = tags.get(DT_SYMTAB, 0), tags.get(DT_STRTAB, 0)
    return (strtab - symtab) // _SYM_SIZE if strtab > symtab else 0


def open_image(data: bytes) -> ElfImage:
    """The file as its section headers describe it, unless they show no IFUNC and the program
    headers do: then as the program headers imply (headers missing, zeroed or lying).

    A relocatable object has no program headers: its section headers are all there is.
    """
    try:
        described: ElfImage | None = ElfImage(data)
    except ElfFormatError:
        if len(data) < 18 or data[16] == ET_REL:
            raise
        described = None  # a section header table out of bounds: the loader never reads it
    if described is not None and (described.is_rel or described.has_ifunc()):
        return described
    try:
        implied = ElfImage(data, segment_sections(data))
    except ElfFormatError:
        if described is None:
            raise
        return described
    if implied.has_ifunc() or described is None:
        return implied
    return described


def has_ifunc_in_either_view(data: bytes) -> bool:
    """``quick_ifunc_scan`` over the section headers, then over the tables PT_DYNAMIC names.

    The second is what a stripped or lying file is caught by. It runs on every linked ELF file,
    so it builds nothing: one unpack of the program headers and of the dynamic entries, and the
    same column test over DT_SYMTAB (read up to the next table PT_DYNAMIC points to, a superset
    of the symbols: a false candidate costs only the exact count in ``open_image``) and over
    DT_RELA and DT_JMPREL.
    """
    found, tested = quick_ifunc_scan(data)
    if found:
        return True
    if len(data) < 64 or data[16] == ET_REL:
        return False
    phoff, phentsize, phnum = _program_header_table(data)
    if phentsize != _PHDR.size or phnum > MAX_SEGMENTS or phoff + phnum * _PHDR.size > len(data):
        return False
    loads: list[tuple[int, int, int]] = []
    dynamic = None
    for p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz, _memsz, _align in _PHDR.iter_unpack(
        data[phoff : phoff + phnum * _PHDR.size]
    ):
        if p_type == PT_LOAD:
            loads.append((p_vaddr, p_offset, min(p_filesz, max(0, len(data) - p_offset))))
        elif p_type == PT_DYNAMIC:
            dynamic = (p_offset, p_filesz)
    if dynamic is None:
        return False
    tags = _dynamic_tags(data, *dynamic)

    def column(vaddr: int | None, size: int | None, at: int, table: bytes) -> bool:
        if vaddr is None:
            return False
        for start, offset, filesz in loads:
            if start <= vaddr < start + filesz:
                first = offset + vaddr - start
                end = offset + filesz if size is None else min(offset + filesz, first + size)
                if any(low == first and end <= high for low, high in tested):
                    return False  # the section headers' table of the same bytes: tested already
                return data[first + at : end : 24].translate(table).find(1) >= 0
        return False

    symtab = tags.get(DT_SYMTAB)
    if symtab is not None:
        following = [value for tag, value in tags.items() if tag in _TABLE_TAGS and value > symtab]
        if column(symtab, (min(following) - symtab) if following else None, 4, IFUNC_TABLE):
            return True
    return column(tags.get(DT_RELA), tags.get(DT_RELASZ, 0), 8, IRELATIVE_TABLE) or column(
        tags.get(DT_JMPREL), tags.get(DT_PLTRELSZ, 0), 8, IRELATIVE_TABLE)


_TABLE_TAGS = frozenset({DT_PLTGOT, DT_HASH, DT_STRTAB, DT_RELA, DT_JMPREL, DT_GNU_HASH, 12, 13, 25, 26,
                         0x6FFFFFF0, 0x6FFFFFFC, 0x6FFFFFFE})
"""Tags whose value is the address of a table (DT_INIT, DT_FINI, DT_INIT_ARRAY, DT_FINI_ARRAY,
DT_VERSYM, DT_VERDEF and DT_VERNEED besides the named ones): where DT_SYMTAB can end at the latest."""


def _program_header_table(data: bytes) -> tuple[int, int, int]:
    phoff: int = struct.unpack_from("<Q", data, 32)[0]
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    return phoff, phentsize, phnum


def implied_tables(data: bytes) -> list[Section]:
    """.dynstr, .dynsym, .rela.dyn, .rela.plt and .eh_frame as PT_DYNAMIC and PT_GNU_EH_FRAME name them."""
    segments = read_segments(data, *_program_header_table(data))
    loads = [s for s in segments if s.type == PT_LOAD]
    return _tables(data, segments, _AddressMap(loads, len(data)), dynamic_entries(data, segments))


def _tables(data: bytes, segments: list[Segment], where: _AddressMap, tags: dict[int, int]) -> list[Section]:
    sections: list[Section] = [Section(0, "", 0, 0, 0, 0, 0, 0, 0, 0)]

    def table(name: str, stype: int, vaddr: int | None, size: int, link: int = 0, entsize: int = 0) -> int:
        offset = where.offset(vaddr) if vaddr is not None else None
        if offset is None or size <= 0:
            return 0
        size = min(size, len(data) - offset)
        sections.append(Section(len(sections), name, stype, 0, vaddr or 0, offset, size, link, 0, entsize))
        return len(sections) - 1

    dynstr = table(".dynstr", SHT_STRTAB, tags.get(DT_STRTAB), tags.get(DT_STRSZ, 0))
    dynsym = 0
    if DT_SYMTAB in tags and tags.get(DT_SYMENT, _SYM_SIZE) == _SYM_SIZE:
        try:
            count = min(dynamic_symbol_count(data, tags, where), MAX_DYNAMIC_SYMBOLS + 1)
        except ElfFormatError:
            count = 0  # a hash table no loader could use: no symbols, the relocations still count
        dynsym = table(".dynsym", SHT_DYNSYM, tags[DT_SYMTAB], count * _SYM_SIZE, dynstr, _SYM_SIZE)
    if tags.get(DT_RELAENT, _RELA_SIZE) == _RELA_SIZE:
        table(".rela.dyn", SHT_RELA, tags.get(DT_RELA), tags.get(DT_RELASZ, 0), dynsym, _RELA_SIZE)
        if tags.get(DT_PLTREL, DT_RELA) == DT_RELA:
            table(".rela.plt", SHT_RELA, tags.get(DT_JMPREL), tags.get(DT_PLTRELSZ, 0), dynsym, _RELA_SIZE)
    eh_frame = _eh_frame_address(data, segments, where)
    if eh_frame is not None:
        table(".eh_frame", SHT_PROGBITS, eh_frame, where.room(eh_frame))
    return sections


def segment_sections(data: bytes) -> tuple[list[Section], list[Section]]:
    """The sections the program headers imply, and those of them that map memory (by address).

    Tables (``implied_tables``) come first and are not in the memory map; the map has one
    section per part of a PT_LOAD: code, read-only data, data around the GOT, .bss.
    """
    segments = read_segments(data, *_program_header_table(data))
    loads = [s for s in segments if s.type == PT_LOAD]
    where = _AddressMap(loads, len(data))
    tags = dynamic_entries(data, segments)
    sections = _tables(data, segments, where, tags)
    got = _got_ranges(data, [sec for sec in sections if sec.type == SHT_RELA], tags, segments)
    alloc: list[Section] = []

    def piece(name: str, stype: int, flags: int, base: int, offset: int, size: int) -> None:
        if size > 0:
            section = Section(len(sections), name, stype, flags, base, offset, size, 0, 0, 0)
            sections.append(section)
            alloc.append(section)

    for load in sorted(loads, key=lambda s: s.vaddr):
        filesz = min(load.filesz, max(0, len(data) - load.offset))
        if load.flags & PF_X:
            piece(".text", SHT_PROGBITS, SHF_ALLOC | SHF_EXECINSTR, load.vaddr, load.offset, filesz)
        elif load.flags & PF_W:
            cursor = load.vaddr
            for name, low, high in got:
                low, high = max(low, cursor), min(high, load.vaddr + filesz)
                if low >= high:
                    continue
                piece(".data", SHT_PROGBITS, SHF_ALLOC | SHF_WRITE, cursor, load.offset + cursor - load.vaddr,
                      low - cursor)
                piece(name, SHT_PROGBITS, SHF_ALLOC | SHF_WRITE, low, load.offset + low - load.vaddr, high - low)
                cursor = high
            piece(".data", SHT_PROGBITS, SHF_ALLOC | SHF_WRITE, cursor, load.offset + cursor - load.vaddr,
                  load.vaddr + filesz - cursor)
            piece(".bss", SHT_NOBITS, SHF_ALLOC | SHF_WRITE, load.vaddr + filesz, 0, load.memsz - filesz)
        else:
            piece(".rodata", SHT_PROGBITS, SHF_ALLOC, load.vaddr, load.offset, filesz)
    for tls in (s for s in segments if s.type == PT_TLS):
        sections.append(Section(len(sections), ".tdata", SHT_PROGBITS, SHF_ALLOC | SHF_WRITE | SHF_TLS, tls.vaddr,
                                tls.offset, tls.filesz, 0, 0, 0))
    alloc.sort(key=lambda s: s.base)
    return sections, alloc


def _eh_frame_address(data: bytes, segments: list[Segment], where: _AddressMap) -> int | None:
    """Where .eh_frame starts: the pointer at the head of .eh_frame_hdr (PT_GNU_EH_FRAME)."""
    header = next((s for s in segments if s.type == PT_GNU_EH_FRAME), None)
    if header is None or header.offset + 4 > len(data) or data[header.offset] != 1:
        return None
    encoding = data[header.offset + 1]
    body = data[header.offset : header.offset + min(header.filesz, 16)]
    return read_encoded(body, 4, encoding, header.vaddr + 4)


def _got_ranges(data: bytes, relocations: list[Section], tags: dict[int, int],
                segments: list[Segment]) -> list[tuple[str, int, int]]:
    """[start, end) of .got and of .got.plt, by address; one ``.got`` if they meet.

    .got.plt: DT_PLTGOT's three reserved words and the slots DT_JMPREL patches (JUMP_SLOT, and
    IRELATIVE in glibc). .got: the slots GLOB_DAT
    and the TLS relocations fill, widened to where the linker puts the section: from the end of
    .dynamic (PT_DYNAMIC) when it lies just below, up to .got.plt when that follows in the same
    segment (the slots between hold addresses of local data, relocated RELATIVE or not at all).
    """
    got: list[int] = []
    plt: list[int] = []
    pointers: list[int] = []
    for sec in relocations:
        body = data[sec.offset : sec.offset + sec.size - sec.size % _RELA_SIZE]
        for offset, info, _addend in struct.iter_unpack("<QQq", body):
            rtype = info & 0xFFFFFFFF
            if sec.name == ".rela.plt" or rtype == R_X86_64_JUMP_SLOT:  # DT_JMPREL patches .got.plt only
                plt.append(offset)
            elif rtype in GOT_SLOT_TYPES:
                got.append(offset)
            elif rtype in POINTER_TYPES:
                pointers.append(offset)
    if DT_PLTGOT in tags:
        plt += [tags[DT_PLTGOT], tags[DT_PLTGOT] + 16]
    ranges: list[tuple[str, int, int]] = []
    plt_range = (min(plt), max(plt) + 8) if plt else None
    relro = next((s for s in segments if s.type == PT_GNU_RELRO), None)
    dynamic = next((s for s in segments if s.type == PT_DYNAMIC), None)
    if relro is not None and dynamic is not None and relro.vaddr <= dynamic.vaddr:
        # .got closes the RELRO region, right after .dynamic: the pointers relocated there (a
        # static-pie's GOT slots are all RELATIVE, it has no GLOB_DAT) are GOT slots too.
        dynamic_end = (dynamic.vaddr + dynamic.memsz + 7) & ~7
        got += [slot for slot in pointers if dynamic_end <= slot < relro.vaddr + relro.memsz]
    if got:
        low, high = min(got), max(got) + 8
        load = next((s for s in segments if s.type == PT_LOAD and s.vaddr <= low < s.vaddr + s.memsz), None)
        if load is not None and dynamic is not None:
            dynamic_end = (dynamic.vaddr + dynamic.memsz + 7) & ~7
            if load.vaddr <= dynamic.vaddr and dynamic_end <= low:
                low = dynamic_end
        if load is not None and plt_range is not None and high <= plt_range[0] < load.vaddr + load.memsz:
            high = plt_range[0]
        ranges.append((".got", low, high))
    if plt_range is not None:
        if ranges and plt_range[0] < ranges[0][2] + 8 and plt_range[1] > ranges[0][1]:
            _, low, high = ranges.pop()
            ranges.append((".got", min(low, plt_range[0]), max(high, plt_range[1])))
        else:
            ranges.append((".got.plt", *plt_range))
    return sorted(ranges, key=lambda r: r[1])

