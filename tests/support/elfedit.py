"""Section headers taken away from a linked ELF64 file, as ``sstrip`` or an attacker leaves them.

The loader never reads section headers, so every variant here still loads and runs the same
way; only a reader that trusts section headers is blinded. Written here (not ``sstrip`` from
ELFkickers, which Debian does not package) from the ELF specification's header layout.
"""

from __future__ import annotations

import struct

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_PHDR = struct.Struct("<IIQQQQQQ")
_SHDR = struct.Struct("<IIQQQQIIQQ")
SHT_PROGBITS, SHT_SYMTAB, SHT_RELA, SHT_DYNSYM = 1, 2, 4, 11


def _header(data: bytes) -> list[int]:
    return list(_EHDR.unpack_from(data, 0))


def sstripped(data: bytes) -> bytes:
    """What ``sstrip`` writes: no section header table (e_shoff, e_shnum, e_shstrndx zero) and
    nothing after the end of the last segment (the header table, .symtab, .shstrtab go with it)."""
    fields = _header(data)
    phoff, phentsize, phnum = fields[5], fields[9], fields[10]
    end = phoff + phentsize * phnum
    for index in range(phnum):
        _t, _f, offset, _v, _p, filesz, _m, _a = _PHDR.unpack_from(data, phoff + index * phentsize)
        end = max(end, offset + filesz)
    fields[6], fields[12], fields[13] = 0, 0, 0
    return _EHDR.pack(*fields) + data[_EHDR.size : end]


def zeroed_section_headers(data: bytes) -> bytes:
    """The section header table overwritten with zeros, its place and count left as they were."""
    fields = _header(data)
    shoff, shentsize, shnum = fields[6], fields[11], fields[12]
    return data[:shoff] + bytes(shentsize * shnum) + data[shoff + shentsize * shnum :]


def lying_section_headers(data: bytes) -> bytes:
    """Every symbol table and relocation section header retyped SHT_PROGBITS: the tables are
    still where PT_DYNAMIC says, but a reader of section headers finds none of them."""
    fields = _header(data)
    shoff, shentsize, shnum = fields[6], fields[11], fields[12]
    out = bytearray(data)
    for index in range(shnum):
        at = shoff + index * shentsize
        values = list(_SHDR.unpack_from(out, at))
        if values[1] in (SHT_SYMTAB, SHT_DYNSYM, SHT_RELA):
            values[1] = SHT_PROGBITS
            _SHDR.pack_into(out, at, *values)
    return bytes(out)


VARIANTS = {"sstripped": sstripped, "zeroed": zeroed_section_headers, "lying": lying_section_headers}
"""Each way of taking the section headers away, by the name the tests give it."""
