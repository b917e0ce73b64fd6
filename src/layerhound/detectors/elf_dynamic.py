"""What the dynamic loader would read from an ELF file: its dynamic section.

Reachability needs, for sshd and every shared library, the DT_NEEDED list,
DT_RPATH/DT_RUNPATH, DT_SONAME, the ELF class and machine (the loader skips
libraries of the wrong class) and PT_INTERP. This reads exactly those from
the program headers with ``struct`` — no section headers, no symbol tables —
because it runs on every library of every image and must cost microseconds,
not the milliseconds a general ELF library spends building its object model.
The file is parsed as bytes; nothing is loaded.
"""

from __future__ import annotations

import posixpath
import struct
from collections.abc import Iterable
from typing import Any

from layerhound.detectors.base import ELF_MAGIC, Detector, Interest, is_elf
from layerhound.detectors.elfscan import ElfFormatError
from layerhound.model import Entry, Fact, Finding

COLLECTOR = "elf-dynamic"

ET_EXEC, ET_DYN = 2, 3
PT_LOAD, PT_DYNAMIC, PT_INTERP = 1, 2, 3
DT_NULL, DT_NEEDED, DT_STRTAB, DT_STRSZ, DT_SONAME, DT_RPATH, DT_RUNPATH, DT_FLAGS_1 = (
    0, 1, 5, 10, 14, 15, 29, 0x6FFFFFFB
)
MACHINES = {3: "i386", 62: "x86_64", 183: "aarch64", 40: "arm", 8: "mips", 21: "ppc64", 22: "s390x", 243: "riscv"}
MAX_DYNAMIC_ENTRIES = 4096
MAX_PROGRAM_HEADERS = 256


def _header_fields(head: bytes) -> tuple[int, str, int] | None:
    """(class bits, byte order, e_type) from the first 18 bytes, or None."""
    if len(head) < 18 or not is_elf(head) or head[4] not in (1, 2) or head[5] not in (1, 2):
        return None
    order = "<" if head[5] == 1 else ">"
    (e_type,) = struct.unpack_from(order + "H", head, 16)
    return (64 if head[4] == 2 else 32), order, e_type


def parse_dynamic(data: bytes) -> dict[str, Any]:
    """The loader-relevant facts of an ELF executable or shared object."""
    fields = _header_fields(data[:18])
    if fields is None:
        raise ElfFormatError("not an ELF file")
    bits, order, e_type = fields
    if bits == 64:
        ehdr = struct.Struct(order + "HHIQQQIHHHHHH")
        phdr = struct.Struct(order + "IIQQQQQQ")  # type, flags, offset, vaddr, paddr, filesz, memsz, align
        dyn = struct.Struct(order + "qQ")
    else:
        ehdr = struct.Struct(order + "HHIIIIIHHHHHH")
        phdr = struct.Struct(order + "IIIIIIII")  # type, offset, vaddr, paddr, filesz, memsz, flags, align
        dyn = struct.Struct(order + "iI")
    if len(data) < 16 + ehdr.size:
        raise ElfFormatError("truncated ELF header")
    (_, machine, _, _, phoff, _, _, _, phentsize, phnum, *_rest) = ehdr.unpack_from(data, 16)
    facts: dict[str, Any] = {
        "class": bits,
        "machine": MACHINES.get(machine, str(machine)),
        "type": {ET_EXEC: "exec", ET_DYN: "dyn"}.get(e_type, str(e_type)),
        "needed": [],
        "rpath": [],
        "runpath": [],
        "soname": None,
        "interp": None,
    }
    if phnum > MAX_PROGRAM_HEADERS or phentsize < phdr.size:
        raise ElfFormatError(f"implausible program header table ({phnum} x {phentsize})")
    loads: list[tuple[int, int, int]] = []  # (vaddr, offset, filesz)
    dynamic: tuple[int, int] | None = None
    for index in range(phnum):
        start = phoff + index * phentsize
        if start + phdr.size > len(data):
            raise ElfFormatError("program header table past end of file")
        values = phdr.unpack_from(data, start)
        if bits == 64:
            p_type, _, p_offset, p_vaddr, _, p_filesz, _, _ = values
        else:
            p_type, p_offset, p_vaddr, _, p_filesz, _, _, _ = values
        if p_type == PT_LOAD:
            loads.append((p_vaddr, p_offset, p_filesz))
        elif p_type == PT_DYNAMIC:
            dynamic = (p_offset, p_filesz)
        elif p_type == PT_INTERP and p_offset + p_filesz <= len(data):
            facts["interp"] = data[p_offset : p_offset + p_filesz].split(b"\0", 1)[0].decode("utf-8", "replace")
    if dynamic is None:
        facts["static"] = True
        return facts

    entries: list[tuple[int, int]] = []
    offset, size = dynamic
    end = min(offset + size, len(data))
    while offset + dyn.size <= end and len(entries) < MAX_DYNAMIC_ENTRIES:
        tag, value = dyn.unpack_from(data, offset)
        if tag == DT_NULL:
            break
        entries.append((tag, value))
        offset += dyn.size
    strtab = next((v for t, v in entries if t == DT_STRTAB), None)
    if strtab is None:
        return facts
    strtab_offset = _vaddr_to_offset(strtab, loads)
    if strtab_offset is None:
        raise ElfFormatError("DT_STRTAB outside every PT_LOAD segment")

    def string(index: int) -> str:
        start = strtab_offset + index
        if start >= len(data):
            raise ElfFormatError("dynamic string past end of file")
        stop = data.find(b"\0", start)
        return data[start : stop if stop >= 0 else len(data)].decode("utf-8", "replace")

    for tag, value in entries:
        if tag == DT_NEEDED:
            facts["needed"].append(string(value))
        elif tag == DT_SONAME:
            facts["soname"] = string(value)
        elif tag == DT_RPATH:
            facts["rpath"].extend(p for p in string(value).split(":") if p)
        elif tag == DT_RUNPATH:
            facts["runpath"].extend(p for p in string(value).split(":") if p)
        elif tag == DT_FLAGS_1:
            facts["pie"] = bool(value & 0x08000000)
    return facts


def _vaddr_to_offset(vaddr: int, loads: list[tuple[int, int, int]]) -> int | None:
    for start, offset, filesz in loads:
        if start <= vaddr < start + filesz:
            return offset + (vaddr - start)
    return None


def is_loader_relevant(path: str) -> bool:
    """Shared objects by name, and the programs reachability starts from."""
    name = posixpath.basename(path)
    return ".so" in name or name in ("sshd", "ld.so")


class ElfDynamicFacts(Detector):
    """Records each shared object's and sshd's dynamic section as a fact."""

    name = COLLECTOR
    version = 1
    max_size = 512 * 1024 * 1024

    def interest(self) -> Interest:
        return Interest(heads=(ELF_MAGIC,))

    def wants(self, entry: Entry, head: bytes) -> bool:
        fields = _header_fields(head)
        return fields is not None and fields[2] in (ET_EXEC, ET_DYN) and is_loader_relevant(entry.path)

    def rule_tables(self) -> dict[str, Any]:
        return {"machines": MACHINES}

    def inspect(self, entry: Entry, data: bytes) -> Iterable[Finding | Fact]:
        yield Fact(COLLECTOR, entry.path, parse_dynamic(data))
