"""Fast, struct-based reading of x86-64 ELF files for the structural detector.

Why: the structural detector must look at every ELF shared object and object
file of an image, yet almost none of them use GNU IFUNC. Parsing them with a
full ELF library costs more than the rest of the scan, so the cheap questions
(is there any IFUNC symbol or IRELATIVE relocation? where are the resolvers?
what does ``.eh_frame`` cover?) are answered here from the raw bytes with
``struct`` and a few slices. Only files that pass these checks have their
symbol tables read and are handed to capstone.

Everything is read from the ``bytes`` of the file; nothing is loaded,
mapped or executed. Malformed input raises ``ElfFormatError``; callers treat
it as "not a candidate".
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

ELFCLASS64 = 2
ELFDATA2LSB = 1
ET_REL = 1
ET_EXEC = 2
ET_DYN = 3
EM_X86_64 = 62

SHT_PROGBITS = 1
SHT_SYMTAB = 2
SHT_RELA = 4
SHT_NOBITS = 8
SHT_DYNSYM = 11
SHF_WRITE = 0x1
SHF_ALLOC = 0x2
SHF_EXECINSTR = 0x4
SHF_TLS = 0x400

SHN_UNDEF = 0
SHN_LORESERVE = 0xFF00
SHN_ABS = 0xFFF1
SHN_COMMON = 0xFFF2

PT_TLS = 7

STB_LOCAL = 0
STV_INTERNAL = 1
STV_HIDDEN = 2

STT_OBJECT = 1
STT_FUNC = 2
STT_SECTION = 3
STT_TLS = 6
STT_GNU_IFUNC = 10

R_X86_64_IRELATIVE = 37

REL_SECTION_SHIFT = 32
"""Relocatable objects have no addresses: section ``i`` is given the synthetic
base ``i << 32`` so code, data and relocations share one address space."""

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_SHDR = struct.Struct("<IIQQQQIIQQ")
_SYM = struct.Struct("<IBBHQQ")
_RELA = struct.Struct("<QQq")

# Byte translation tables: map a symbol's st_info byte to 1 when its type is
# STT_GNU_IFUNC, a relocation's first r_info byte to 1 when it is IRELATIVE.
IFUNC_TABLE = bytes(1 if (b & 0xF) == STT_GNU_IFUNC else 0 for b in range(256))
IRELATIVE_TABLE = bytes(1 if b == R_X86_64_IRELATIVE else 0 for b in range(256))


class ElfFormatError(ValueError):
    """The bytes claim to be ELF but are not well formed (or not a kind this module reads)."""


class ElfBoundError(ValueError):
    """A well-formed file whose tables are over a bound this module sets: not analysed, and said so.

    Not an ``ElfFormatError``: that one means "no candidate", this one must reach the report.
    """


MAX_SYMBOLS = 1 << 18
"""Symbol table entries read from one file, all its SHT_SYMTAB/SHT_DYNSYM tables together
(262,144; a large shared library has tens of thousands). The bound is on the sum, so tens of
thousands of overlapping tables over one region cost no more than one."""
MAX_RELOCATIONS = 1 << 19
"""SHT_RELA entries read from one file, all tables together (524,288)."""
MAX_NAME = 4096
"""Longest symbol or section name read; a longer one (no NUL in reach) is cut there."""
MAX_NAME_BYTES = 16 << 20
"""Name bytes decoded for one file; each string table offset is decoded once."""


def head_is_x86_64_candidate(head: bytes) -> bool:
    """True for a little-endian ELF64 x86-64 shared object, executable (PIE, static-pie or a
    static ET_EXEC: a static link of the implant's objects carries its resolvers) or object file.

    Looks only at the first 20 bytes: magic, class, data, e_type, e_machine.
    """
    if len(head) < 20 or head[:4] != b"\x7fELF" or head[4] != ELFCLASS64 or head[5] != ELFDATA2LSB:
        return False
    e_type, e_machine = struct.unpack_from("<HH", head, 16)
    return e_type in (ET_REL, ET_EXEC, ET_DYN) and e_machine == EM_X86_64


def quick_has_ifunc(data: bytes) -> bool:
    """Any STT_GNU_IFUNC symbol or (linked files) IRELATIVE relocation?

    The pre-check every candidate file goes through, so it builds no objects:
    one pass over the raw section headers, and for symbol and relocation
    tables one byte column (every 24th byte) run through a translation table.
    False for anything malformed.
    """
    return quick_ifunc_scan(data)[0]


def quick_ifunc_scan(data: bytes) -> tuple[bool, list[tuple[int, int]]]:
    """``quick_has_ifunc``'s answer, and the [start, end) file ranges of the tables it tested
    (a test over the tables PT_DYNAMIC names can skip those: ``elfsegments``)."""
    tested: list[tuple[int, int]] = []
    if len(data) < _EHDR.size:
        return False, tested
    fields = _EHDR.unpack_from(data, 0)
    e_type, shoff, shentsize, shnum = fields[1], fields[6], fields[11], fields[12]
    if shoff == 0 or shentsize != _SHDR.size or shoff + shnum * shentsize > len(data):
        return False, tested
    headers = data[shoff : shoff + shnum * shentsize]
    entries = 0
    for _name, stype, _flags, _addr, offset, size, _link, _info, _align, entsize in _SHDR.iter_unpack(headers):
        if entsize != 24 or offset + size > len(data) or stype not in (SHT_SYMTAB, SHT_DYNSYM, SHT_RELA):
            continue
        entries += size // 24
        if entries > MAX_SYMBOLS + MAX_RELOCATIONS:
            return True, tested  # over the bound: ``ElfImage`` refuses the file, and the report says why
        if stype in (SHT_SYMTAB, SHT_DYNSYM):
            column, table = data[offset + 4 : offset + size : 24], IFUNC_TABLE  # st_info
        elif stype == SHT_RELA and e_type != ET_REL:
            # r_info's low byte is the whole type on x86-64 (types < 256)
            column, table = data[offset + 8 : offset + size : 24], IRELATIVE_TABLE
        else:
            continue
        if column.translate(table).find(1) >= 0:
            return True, tested
        tested.append((offset, offset + size))
    return False, tested


@dataclass(frozen=True, slots=True)
class Section:
    """One section header, with the address the analysis uses for it."""

    index: int
    name: str
    type: int
    flags: int
    base: int
    """sh_addr, or the synthetic ``index << 32`` in a relocatable object."""
    offset: int
    size: int
    link: int
    info: int
    entsize: int

    @property
    def end(self) -> int:
        return self.base + self.size

    @property
    def executable(self) -> bool:
        return bool(self.flags & SHF_EXECINSTR)


@dataclass(frozen=True, slots=True)
class Symbol:
    """One symbol table entry, address already in the analysis' address space."""

    name: str
    info: int
    other: int
    shndx: int
    value: int
    size: int
    address: int

    @property
    def type(self) -> int:
        return self.info & 0xF

    @property
    def binding(self) -> int:
        return self.info >> 4

    @property
    def visibility(self) -> int:
        return self.other & 0x3

    @property
    def defined(self) -> bool:
        return self.shndx != SHN_UNDEF


class ElfImage:
    """The sections of one ELF64 LE file and helpers to read by address.

    ``view`` says where the sections come from: "sections", the section headers; or
    "segments", the sections the program headers imply (``elfsegments``), for a linked file
    whose section headers are missing, zeroed or lying.
    """

    def __init__(self, data: bytes, implied: tuple[list[Section], list[Section]] | None = None) -> None:
        if len(data) < _EHDR.size or data[:4] != b"\x7fELF":
            raise ElfFormatError("not an ELF file")
        if data[4] != ELFCLASS64 or data[5] != ELFDATA2LSB:
            raise ElfFormatError("not little-endian ELF64")
        fields = _EHDR.unpack_from(data, 0)
        self.data = data
        self.e_type: int = fields[1]
        self.e_machine: int = fields[2]
        shoff, shentsize, shnum, shstrndx = fields[6], fields[11], fields[12], fields[13]
        self.is_rel = self.e_type == ET_REL
        self.program_headers = (fields[5], fields[9], fields[10])
        """(e_phoff, e_phentsize, e_phnum)."""
        self._names: dict[int, str] = {}
        self._name_bytes = 0
        self.sections: list[Section] = []
        self._alloc: list[Section] = []
        self.view = "sections" if implied is None else "segments"
        if implied is not None:
            self.sections, self._alloc = implied
        elif shoff and shnum:
            if shentsize != _SHDR.size or shoff + shnum * shentsize > len(data):
                raise ElfFormatError("section header table out of bounds")
            raw = [_SHDR.unpack_from(data, shoff + i * shentsize) for i in range(shnum)]
            names_off = raw[shstrndx][4] if shstrndx < shnum else 0
            for index, (name, stype, flags, addr, offset, size, link, info, _align, entsize) in enumerate(raw):
                base = (index << REL_SECTION_SHIFT) if self.is_rel else addr
                self.sections.append(
                    Section(index, self._cstr(names_off + name), stype, flags, base, offset, size, link, info, entsize)
                )
            self._alloc = sorted((s for s in self.sections if s.base and s.size), key=lambda s: s.base)
        self._check_table_bounds()

    def _check_table_bounds(self) -> None:
        symbols = sum(sec.size // _SYM.size for sec in self._symbol_tables() if self._in_file(sec))
        relocations = sum(
            sec.size // _RELA.size
            for sec in self.sections
            if sec.type == SHT_RELA and sec.entsize == _RELA.size and self._in_file(sec)
        )
        if symbols > MAX_SYMBOLS:
            raise ElfBoundError(f"{symbols} symbol table entries, over the bound of {MAX_SYMBOLS}; not analysed")
        if relocations > MAX_RELOCATIONS:
            raise ElfBoundError(f"{relocations} relocations, over the bound of {MAX_RELOCATIONS}; not analysed")

    def _in_file(self, sec: Section) -> bool:
        return sec.type != SHT_NOBITS and sec.offset + sec.size <= len(self.data)

    def _cstr(self, offset: int) -> str:
        """The NUL-terminated name at ``offset``, at most ``MAX_NAME`` bytes, each offset decoded once."""
        cached = self._names.get(offset)
        if cached is not None:
            return cached
        if offset >= len(self.data):
            return ""
        end = self.data.find(b"\0", offset, offset + MAX_NAME)
        name = self.data[offset : end if end >= 0 else offset + MAX_NAME].decode("latin-1")
        self._name_bytes += len(name)
        if self._name_bytes > MAX_NAME_BYTES:
            raise ElfBoundError(f"symbol and section names over {MAX_NAME_BYTES} bytes; not analysed")
        self._names[offset] = name
        return name

    def section(self, name: str) -> Section | None:
        """The first section called ``name``."""
        for sec in self.sections:
            if sec.name == name:
                return sec
        return None

    def section_at(self, address: int) -> Section | None:
        """The allocated section containing ``address``."""
        for sec in self._alloc:
            if sec.base <= address < sec.end:
                return sec
            if sec.base > address:
                break
        return None

    def contents(self, sec: Section) -> bytes:
        """A section's bytes (empty for NOBITS or out-of-range headers)."""
        if sec.type == SHT_NOBITS or sec.offset + sec.size > len(self.data):
            return b""
        return self.data[sec.offset : sec.offset + sec.size]

    def read(self, address: int, length: int) -> bytes:
        """Up to ``length`` bytes of file-backed code or data at ``address``."""
        sec = self.section_at(address)
        if sec is None or sec.type == SHT_NOBITS:
            return b""
        start = sec.offset + (address - sec.base)
        stop = sec.offset + min(sec.size, address - sec.base + length)
        return self.data[start:stop]

    # -- symbols and relocations --------------------------------------------

    def _symbol_tables(self) -> Iterator[Section]:
        for sec in self.sections:
            if sec.type in (SHT_SYMTAB, SHT_DYNSYM) and sec.entsize == _SYM.size:
                yield sec

    def has_ifunc(self) -> bool:
        """Any STT_GNU_IFUNC symbol, or (linked files) any IRELATIVE relocation.

        The column trick (every 24th byte) keeps this to a few microseconds
        even for a symbol table of thousands of entries.
        """
        for sec in self._symbol_tables():
            column = self.contents(sec)[4::_SYM.size]
            if column.translate(IFUNC_TABLE).find(1) >= 0:
                return True
        if not self.is_rel:
            for sec in self.sections:
                if sec.type == SHT_RELA and sec.entsize == _RELA.size:
                    column = self.contents(sec)[8::_RELA.size]
                    # r_info's low byte is the whole type on x86-64 (types < 256)
                    if column.translate(IRELATIVE_TABLE).find(1) >= 0:
                        return True
        return False

    def symbols(self, sec: Section) -> Iterator[Symbol]:
        """Every entry of one symbol table."""
        strtab = self.sections[sec.link] if sec.link < len(self.sections) else None
        str_off = strtab.offset if strtab is not None else 0
        for name, info, other, shndx, value, size in _SYM.iter_unpack(self._whole_entries(sec, _SYM)):
            yield Symbol(self._cstr(str_off + name) if name else "", info, other, shndx, value, size,
                         self.symbol_address(shndx, value))

    def _whole_entries(self, sec: Section, entry: struct.Struct) -> bytes:
        """A table's bytes up to its last whole entry (a lying sh_size leaves a tail)."""
        body = self.contents(sec)
        return body[: len(body) - len(body) % entry.size]

    def symbol(self, sec: Section, index: int) -> Symbol | None:
        """Entry ``index`` of one symbol table (None past its end)."""
        if sec.entsize != _SYM.size or not self._in_file(sec) or not 0 <= index < sec.size // _SYM.size:
            return None
        name, info, other, shndx, value, size = _SYM.unpack_from(self.data, sec.offset + index * _SYM.size)
        strtab = self.sections[sec.link] if sec.link < len(self.sections) else None
        str_off = strtab.offset if strtab is not None else 0
        return Symbol(self._cstr(str_off + name) if name else "", info, other, shndx, value, size,
                      self.symbol_address(shndx, value))

    def is_local_code(self, address: int) -> bool:
        """Inside an executable section that is not a PLT: in the segments view, where no section
        says where ``.plt`` ends, a PLT stub is told by its first instruction."""
        sec = self.section_at(address)
        if sec is None or not sec.executable or sec.name.startswith(".plt"):
            return False
        return self.view == "sections" or not looks_like_plt_stub(self.read(address, 8))

    def segment_types(self) -> list[int]:
        """p_type of every program header that lies inside the file."""
        phoff, phentsize, phnum = self.program_headers
        if phentsize < 4 or phoff + phnum * phentsize > len(self.data):
            return []
        return [int.from_bytes(self.data[phoff + i * phentsize : phoff + i * phentsize + 4], "little")
                for i in range(phnum)]

    def symbol_address(self, shndx: int, value: int) -> int:
        """Where a symbol lives in the analysis' address space (0 when nowhere)."""
        if not self.is_rel:
            return value
        if shndx == SHN_UNDEF or shndx >= SHN_LORESERVE or shndx >= len(self.sections):
            return 0
        return self.sections[shndx].base + value

    def ifunc_symbols(self) -> dict[int, str]:
        """Resolver address -> IFUNC symbol name, from .symtab and .dynsym."""
        found: dict[int, str] = {}
        for sec in self._symbol_tables():
            column = self.contents(sec)[4::_SYM.size]
            if column.translate(IFUNC_TABLE).find(1) < 0:
                continue
            for sym in self.symbols(sec):
                if sym.type == STT_GNU_IFUNC and sym.defined and sym.address:
                    found.setdefault(sym.address, sym.name)
        return found

    def _irelative(self, sec: Section) -> Iterator[int]:
        for _offset, info, addend in _RELA.iter_unpack(self._whole_entries(sec, _RELA)):
            if info & 0xFFFFFFFF == R_X86_64_IRELATIVE:
                yield addend

    def irelative_resolvers(self) -> set[int]:
        """Resolver addresses named by IRELATIVE relocations (hidden IFUNCs too)."""
        if self.is_rel:
            return set()
        found: set[int] = set()
        for sec in self.sections:
            if sec.type == SHT_RELA and sec.entsize == _RELA.size:
                found.update(self._irelative(sec))
        return found

    def relocations(self, sec: Section) -> Iterator[tuple[int, int, int, int]]:
        """(r_offset, type, symbol index, addend) of one SHT_RELA section."""
        for offset, info, addend in _RELA.iter_unpack(self._whole_entries(sec, _RELA)):
            yield offset, info & 0xFFFFFFFF, info >> 32, addend

    # -- unwind coverage ----------------------------------------------------

    def eh_frame_ranges(self) -> list[tuple[int, int]]:
        """[start, end) of every function .eh_frame describes.

        Parses only what is needed for the ranges: CIE augmentation (for the
        FDE pointer encoding) and each FDE's pc_begin / pc_range. In an object
        file pc_begin is found through .rela.eh_frame, as the linker would.
        """
        sec = self.section(".eh_frame")
        if sec is None or sec.type == SHT_NOBITS:
            return []
        body = self.contents(sec)
        relocs: dict[int, int] = {}
        if self.is_rel:
            relocs = self._eh_frame_relocs(sec)
        ranges: list[tuple[int, int]] = []
        encodings: dict[int, int] = {}
        pos = 0
        while pos + 4 <= len(body):
            length = struct.unpack_from("<I", body, pos)[0]
            if length == 0:
                break  # terminator
            header = 4
            if length == 0xFFFFFFFF:
                if pos + 12 > len(body):
                    break
                length = struct.unpack_from("<Q", body, pos + 4)[0]
                header = 12
            start = pos + header
            end = start + length
            if end > len(body) or length < 4:
                break
            cie_id = struct.unpack_from("<I", body, start)[0]
            if cie_id == 0:
                encodings[pos] = _cie_fde_encoding(body, start + 4, end)
            else:
                cie_pos = start - cie_id
                encoding = encodings.get(cie_pos, 0)
                field = start + 4
                begin = relocs.get(field) if self.is_rel else read_encoded(body, field, encoding, sec.base + field)
                size = read_encoded(body, field + _encoded_size(encoding), encoding & 0x0F, 0)
                if begin is not None and size is not None and size > 0:
                    ranges.append((begin, begin + size))
            pos = end
        return ranges

    def _eh_frame_relocs(self, eh: Section) -> dict[int, int]:
        """Offset in .eh_frame -> address the relocation there points to."""
        out: dict[int, int] = {}
        for rela in self.sections:
            if rela.type != SHT_RELA or rela.info != eh.index or rela.link >= len(self.sections):
                continue
            symtab = self.sections[rela.link]
            syms = self.contents(symtab)
            for offset, _rtype, symidx, addend in self.relocations(rela):
                if (symidx + 1) * _SYM.size > len(syms):
                    continue
                _n, _i, _o, shndx, value, _s = _SYM.unpack_from(syms, symidx * _SYM.size)
                address = self.symbol_address(shndx, value)
                if address:
                    out[offset] = address + addend
        return out

    def largest_unwind_gap(self) -> tuple[int, str, int]:
        """(bytes, section, address) of the longest stretch of .text no FDE covers."""
        ranges = sorted(self.eh_frame_ranges())
        best = (0, "", 0)
        for sec in self.sections:
            if not sec.executable or sec.type != SHT_PROGBITS or not sec.name.startswith(".text"):
                continue
            cursor = sec.base
            for lo, hi in ranges:
                if hi <= cursor or lo >= sec.end:
                    continue
                if lo > cursor and lo - cursor > best[0]:
                    best = (lo - cursor, sec.name, cursor)
                cursor = max(cursor, hi)
            if sec.end - cursor > best[0]:
                best = (sec.end - cursor, sec.name, cursor)
        return best


def looks_like_plt_stub(code: bytes) -> bool:
    """A PLT entry's first instruction: ``jmp *slot(%rip)`` (``.plt.sec``, ``.plt.got``, a lazy
    ``.plt`` entry) or PLT0's ``push slot(%rip)``, after an optional ``endbr64`` and ``bnd``."""
    if code.startswith(b"\xf3\x0f\x1e\xfa"):
        code = code[4:]
    if code.startswith(b"\xf2"):
        code = code[1:]
    return code.startswith((b"\xff\x25", b"\xff\x35"))


def _uleb(body: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while pos < len(body):
        byte = body[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return result, pos


def _cie_fde_encoding(body: bytes, pos: int, end: int) -> int:
    """The FDE pointer encoding a CIE declares (augmentation 'R'), DW_EH_PE_absptr by default."""
    version = body[pos]
    pos += 1
    aug_end = body.find(b"\0", pos, end)
    if aug_end < 0:
        return 0
    augmentation = body[pos:aug_end]
    pos = aug_end + 1
    if b"eh" in augmentation:
        pos += 8
    _code_align, pos = _uleb(body, pos)
    _data_align, pos = _uleb(body, pos)  # sleb, but only skipped
    if version == 1:
        pos += 1
    else:
        _ra, pos = _uleb(body, pos)
    if not augmentation.startswith(b"z"):
        return 0
    _aug_len, pos = _uleb(body, pos)
    for char in augmentation[1:].decode("latin-1"):
        if pos >= end:
            break
        if char == "R":
            return body[pos]
        if char == "L":
            pos += 1
        elif char == "P":
            personality = body[pos]
            pos += 1 + _encoded_size(personality)
        elif char in "SB":
            continue
        else:
            break
    return 0


def _encoded_size(encoding: int) -> int:
    return {0x00: 8, 0x02: 2, 0x03: 4, 0x04: 8, 0x0A: 2, 0x0B: 4, 0x0C: 8}.get(encoding & 0x0F, 8)


def read_encoded(body: bytes, pos: int, encoding: int, field_address: int) -> int | None:
    """Decode one DW_EH_PE-encoded pointer (absolute or pc-relative only)."""
    fmt = {0x00: "<Q", 0x02: "<H", 0x03: "<I", 0x04: "<Q", 0x0A: "<h", 0x0B: "<i", 0x0C: "<q"}.get(encoding & 0x0F)
    if fmt is None or pos + struct.calcsize(fmt) > len(body):
        return None
    value: int = struct.unpack_from(fmt, body, pos)[0]
    application = encoding & 0x70
    if application == 0x10:  # DW_EH_PE_pcrel
        value += field_address
    elif application != 0:
        return None  # datarel/textrel/funcrel do not occur in x86-64 .eh_frame
    return value & 0xFFFFFFFFFFFFFFFF
