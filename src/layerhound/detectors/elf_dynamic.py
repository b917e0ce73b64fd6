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
from collections.abc import Callable, Iterable
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


Reader = Callable[[int, int], bytes]
"""``read(offset, n)``: up to ``n`` bytes of the file from ``offset``, fewer only where the file
(or what is held of it) ends; raises ``ElfFormatError`` for bytes not held."""

MAX_STRING = 4096
"""Longest dynamic string read (a DT_NEEDED name, an RPATH): PATH_MAX."""


def parse_dynamic(data: bytes) -> dict[str, Any]:
    """The loader-relevant facts of an ELF executable or shared object held whole."""
    return parse_dynamic_from(lambda offset, n: data[offset : offset + n], len(data))


def parse_dynamic_from(read: Reader, size: int) -> dict[str, Any]:
    """The loader-relevant facts of an ELF file of ``size`` bytes, read through ``read``."""
    fields = _header_fields(read(0, 18))
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
    header = read(16, ehdr.size)
    if len(header) < ehdr.size:
        raise ElfFormatError("truncated ELF header")
    (_, machine, _, _, phoff, _, _, _, phentsize, phnum, *_rest) = ehdr.unpack(header)
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
    loads, dynamic, interp = program_headers(read, size, bits, phdr, phoff, phentsize, phnum)
    if interp is not None:
        facts["interp"] = read(*interp).split(b"\0", 1)[0].decode("utf-8", "replace")
    if dynamic is None:
        facts["static"] = True
        return facts

    entries: list[tuple[int, int]] = []
    offset, length = dynamic
    table = read(offset, min(length, MAX_DYNAMIC_ENTRIES * dyn.size, max(0, size - offset)))
    for at in range(0, len(table) - dyn.size + 1, dyn.size):
        tag, value = dyn.unpack_from(table, at)
        if tag == DT_NULL:
            break
        entries.append((tag, value))
    strtab = next((v for t, v in entries if t == DT_STRTAB), None)
    if strtab is None:
        return facts
    strtab_offset = _vaddr_to_offset(strtab, loads)
    if strtab_offset is None:
        raise ElfFormatError("DT_STRTAB outside every PT_LOAD segment")

    def string(index: int) -> str:
        start = strtab_offset + index
        if start >= size:
            raise ElfFormatError("dynamic string past end of file")
        text = read(start, min(MAX_STRING, size - start))
        return text.split(b"\0", 1)[0].decode("utf-8", "replace")

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


def program_headers(
    read: Reader, size: int, bits: int, phdr: struct.Struct, phoff: int, phentsize: int, phnum: int
) -> tuple[list[tuple[int, int, int]], tuple[int, int] | None, tuple[int, int] | None]:
    """PT_LOAD segments as (vaddr, offset, filesz), and the (offset, size) of PT_DYNAMIC and PT_INTERP."""
    if phnum > MAX_PROGRAM_HEADERS or phentsize < phdr.size:
        raise ElfFormatError(f"implausible program header table ({phnum} x {phentsize})")
    loads: list[tuple[int, int, int]] = []
    dynamic: tuple[int, int] | None = None
    interp: tuple[int, int] | None = None
    for index in range(phnum):
        start = phoff + index * phentsize
        if start + phdr.size > size:
            raise ElfFormatError("program header table past end of file")
        values = phdr.unpack(read(start, phdr.size))
        if bits == 64:
            p_type, _, p_offset, p_vaddr, _, p_filesz, _, _ = values
        else:
            p_type, p_offset, p_vaddr, _, p_filesz, _, _, _ = values
        if p_type == PT_LOAD:
            loads.append((p_vaddr, p_offset, p_filesz))
        elif p_type == PT_DYNAMIC:
            dynamic = (p_offset, p_filesz)
        elif p_type == PT_INTERP and p_offset + p_filesz <= size:
            interp = (p_offset, min(p_filesz, MAX_STRING))
    return loads, dynamic, interp


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
    version = 2
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

    def scanner(self, entry: Entry, head: bytes) -> DynamicScanner:
        return DynamicScanner(entry, head)


HELD_PREFIX = 16 * 1024 * 1024
"""Bytes kept from the start of an ELF file read as a stream: the headers and, in every layout
linkers write, the dynamic string table (it precedes the code)."""


class DynamicScanner:
    """Keeps of a streamed ELF file only what ``parse_dynamic_from`` reads.

    The first ``HELD_PREFIX`` bytes (headers, program headers, .dynstr), and the PT_DYNAMIC and
    PT_INTERP ranges once the program headers have passed, wherever they lie. A read outside
    what was kept is an ``ElfFormatError``, reported against the file like any parse error.
    """

    def __init__(self, entry: Entry, head: bytes) -> None:
        self._entry = entry
        self._size = entry.size
        self._ranges: list[tuple[int, int]] = [(0, min(self._size, HELD_PREFIX))]
        self._held: list[tuple[int, bytearray]] = []
        self._offset = 0
        self._learned = False

    def feed(self, piece: bytes) -> None:
        start, end = self._offset, self._offset + len(piece)
        for low, high in self._ranges:
            keep_from, keep_to = max(low, start), min(high, end)
            if keep_from < keep_to:
                part = piece[keep_from - start : keep_to - start]
                last = self._held[-1] if self._held else None
                if last is not None and last[0] + len(last[1]) == keep_from:
                    last[1].extend(part)
                else:
                    self._held.append((keep_from, bytearray(part)))
        self._offset = end
        if not self._learned and (self._offset >= HELD_PREFIX or self._offset >= self._size):
            self._learn()

    def _learn(self) -> None:
        """Add PT_DYNAMIC and PT_INTERP to what is kept, from the program headers seen so far."""
        self._learned = True
        try:
            fields = _header_fields(self.read(0, 18))
            if fields is None:
                return
            bits, order, _ = fields
            ehdr = struct.Struct(order + ("HHIQQQIHHHHHH" if bits == 64 else "HHIIIIIHHHHHH"))
            phdr = struct.Struct(order + ("IIQQQQQQ" if bits == 64 else "IIIIIIII"))
            (_, _, _, _, phoff, _, _, _, phentsize, phnum, *_rest) = ehdr.unpack(self.read(16, ehdr.size))
            _, dynamic, interp = program_headers(self.read, self._size, bits, phdr, phoff, phentsize, phnum)
        except (ElfFormatError, struct.error):
            return  # parse_dynamic_from reports it at the end
        for found in (dynamic, interp):
            if found is not None:
                offset, length = found
                self._ranges.append((offset, offset + min(length, MAX_DYNAMIC_ENTRIES * 16)))

    def read(self, offset: int, n: int) -> bytes:
        for start, data in self._held:
            if start <= offset < start + len(data) or (n == 0 and start <= offset <= start + len(data)):
                return bytes(data[offset - start : offset - start + n])
        raise ElfFormatError(
            f"bytes at {offset} of this {self._size}-byte file are past the {HELD_PREFIX}-byte start "
            "and the dynamic segment held of it"
        )

    def finish(self, sha256: str) -> Iterable[Finding | Fact]:
        yield Fact(COLLECTOR, self._entry.path, parse_dynamic_from(self.read, self._size))
