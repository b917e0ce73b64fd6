"""Structural detection of IFUNC-hooking implants in x86-64 ELF files.

Why: hashes and byte signatures only catch the builds already published. A
re-keyed, recompiled or next implant of the CVE-2024-3094 kind keeps its
*shape*, because the shape is how it gets control: public analyses of the
backdoored liblzma document that

* the GNU IFUNC resolvers of ``lzma_crc32``/``lzma_crc64`` no longer run
  ``cpuid`` themselves but pass pointers into their own stack frame to a
  local, non-PLT function (``_get_cpuid``);
* code reached from there counts its invocations in ``.bss``, temporarily
  overwrites a GOT slot and calls through it (the hook);
* the library imports ``__tls_get_addr`` without having any TLS, and needs
  ``ld-linux-x86-64.so.2`` (a clean liblzma needs only libc);
* tens of KB of ``.text`` have no ``.eh_frame`` coverage, and the hidden code
  references no plaintext strings.

This detector checks those properties on the bytes, with its own bounded ELF
reader (``elfscan``) and capstone, and reports each of them plus a confidence. Any single property also
occurs in honest code (glibc's IFUNC resolvers, ``__builtin_cpu_supports``
resolvers calling libgcc's local ``__cpu_indicator_init``, libcrypto's
assembly without unwind info), so the rule is a combination:

    gate      some IFUNC resolver directly calls a local, non-PLT function, and
              code reached from it (<= MAX_DEPTH calls deep) writes a GOT slot
              or increments a .bss counter;
    score     the weighted properties of ``WEIGHTS`` that held;
    finding   gate and score >= THRESHOLD; confidence = score / applicable
              maximum, "high" from HIGH_SCORE on, else "medium".

Cost: nearly no ELF file uses IFUNC. ``inspect`` first checks, with a
struct-based pass over the raw section headers (``elfscan``), for any
STT_GNU_IFUNC symbol or IRELATIVE relocation, then disassembles each resolver
cheaply (bounded instructions, no operand details) looking for a direct call
into local code. Only files passing both get their symbol tables read and the detailed
walk (glibc's libc.so.6 never does: its resolvers make no calls; ld.so's and
libatomic's do, and are cleared). Even then, a reached function is walked
with operand details only if its cheap walk shows a rip-relative GOT
reference or .bss write, the only places a hook or a counter can come from.
Every walk is bounded (instructions per function, functions, depth).
Nothing is loaded or executed: the file is parsed from its bytes.

A shared object or PIE is reported as ``IMPLANT``; a relocatable object (the
leftover ``liblzma_la-crc64-fast.o`` kind) as ``PAYLOAD``.
"""

from __future__ import annotations

import functools
import re
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from layerhound.detectors.base import ELF_MAGIC, HOLD_MAX, Detector, Interest
from layerhound.detectors.elf_dynamic import parse_dynamic
from layerhound.detectors.elfscan import (
    ET_REL,
    PT_TLS,
    SHF_ALLOC,
    SHF_EXECINSTR,
    SHF_TLS,
    SHF_WRITE,
    SHN_ABS,
    SHN_COMMON,
    SHN_UNDEF,
    SHT_DYNSYM,
    SHT_NOBITS,
    SHT_RELA,
    SHT_SYMTAB,
    STB_LOCAL,
    STT_FUNC,
    STT_GNU_IFUNC,
    STT_OBJECT,
    STT_SECTION,
    STT_TLS,
    STV_HIDDEN,
    STV_INTERNAL,
    ElfFormatError,
    ElfImage,
    Section,
    head_is_x86_64_candidate,
)
from layerhound.detectors.elfsegments import has_ifunc_in_either_view, open_image
from layerhound.model import Entry, Fact, Finding, Indicates, Kind

# capstone is loaded by the first file that needs it (``_load_libraries``), not when the detector
# is imported: ``layerhound --version`` and scans without ELF candidates never pay its import.
capstone: Any = None
x86: Any = None


def _load_libraries() -> None:
    global capstone, x86
    if capstone is not None:
        return
    import capstone as capstone_module  # type: ignore[import-untyped]
    from capstone import x86 as x86_module

    x86 = x86_module
    capstone = capstone_module


RULE: Final = "ifunc-resolver-hook"

WEIGHTS: Final[dict[str, int]] = {
    "got_write": 3,
    "got_call": 1,
    "bss_counter": 2,
    "frame_pointer_arg": 1,
    "tls_get_addr_without_tls": 2,
    "needs_ld_linux": 1,
    "eh_frame_gap": 1,
}
"""How much each property counts. The hook itself (a GOT write reached from a
resolver) weighs most; file-level oddities only corroborate."""

THRESHOLD: Final = 5
HIGH_SCORE: Final = 8
EH_FRAME_GAP_MIN: Final = 16 * 1024
"""Uncovered .text bytes from which the unwind gap counts ("tens of KB")."""

MAX_RESOLVERS: Final = 512
RESOLVER_BYTES: Final = 1024
RESOLVER_INSNS: Final = 160
FUNC_INSNS: Final = 1200
MAX_DEPTH: Final = 3
MAX_FUNCS: Final = 32
"""Bounds that keep glibc-sized files (hundreds of resolvers) cheap."""

LD_LINUX: Final = "ld-linux-x86-64.so.2"
TLS_RELOC_TYPES: Final = frozenset({16, 17, 18, 19, 20, 21, 22, 23, 34, 35, 36})
"""R_X86_64_DTPMOD64 ... TPOFF32, GOTPC32_TLSDESC, TLSDESC_CALL, TLSDESC."""
GOT_SLOT_RELOCS: Final = frozenset({9, 41, 42})  # GOTPCREL, GOTPCRELX, REX_GOTPCRELX
GOT_BASE_RELOCS: Final = frozenset({26, 29})  # GOTPC32, GOTPC64
GOT_SECTIONS: Final = frozenset({".got", ".got.plt"})
ARG_REGS: Final = ("rdi", "rsi", "rdx", "rcx", "r8", "r9")
CALLER_SAVED: Final = frozenset({"rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11"})
INCREMENTS: Final = frozenset({"add", "sub", "inc", "dec", "xadd", "adc", "sbb"})
STOPPERS: Final = frozenset({"ret", "retf", "ud2", "hlt", "int3"})

def _canonical_registers() -> dict[str, str]:
    """Every x86-64 general register name -> its 64-bit register."""
    out: dict[str, str] = {}
    for full, d, w, b in (("rax", "eax", "ax", "al"), ("rbx", "ebx", "bx", "bl"),
                          ("rcx", "ecx", "cx", "cl"), ("rdx", "edx", "dx", "dl"),
                          ("rsi", "esi", "si", "sil"), ("rdi", "edi", "di", "dil"),
                          ("rbp", "ebp", "bp", "bpl"), ("rsp", "esp", "sp", "spl")):
        out.update({full: full, d: full, w: full, b: full})
    out.update({"ah": "rax", "bh": "rbx", "ch": "rcx", "dh": "rdx", "rip": "rip"})
    for n in range(8, 16):
        out.update({f"r{n}": f"r{n}", f"r{n}d": f"r{n}", f"r{n}w": f"r{n}", f"r{n}b": f"r{n}"})
    return out


_REGS: Final = _canonical_registers()

Tag = tuple[Any, ...]
"""Abstract value of a register or stack slot: ("frame", (base, disp)): a pointer
into the stack frame; ("gotaddr", slot): the address of a GOT slot; ("gotval",
slot): what a GOT slot holds; ("bssval", key) / ("bssinc", key): a .bss
variable's value, before / after arithmetic on it."""


def _in_a_section(shndx: int) -> bool:
    """A symbol defined in a section: not undefined, absolute or COMMON (pyelftools' reading)."""
    return shndx not in (SHN_UNDEF, SHN_ABS, SHN_COMMON)


@dataclass(slots=True)
class _Reloc:
    """One relocation patching code of a relocatable object."""

    offset: int
    type: int
    symbol: str
    address: int
    """Where the symbol lives (0 when undefined or COMMON)."""
    local: bool
    common: bool
    addend: int


@dataclass(slots=True)
class _FunctionReport:
    """What the abstract walk of one function found."""

    address: int
    local_calls: list[int] = field(default_factory=list)
    frame_args: list[str] = field(default_factory=list)
    got_writes: list[tuple[int, Any]] = field(default_factory=list)
    got_calls: list[tuple[int, Any]] = field(default_factory=list)
    bss_counters: list[tuple[int, Any]] = field(default_factory=list)
    string_refs: list[int] = field(default_factory=list)
    has_cpuid: bool = False
    instructions: int = 0


class _Program:
    """The candidate file as the deep analysis sees it: elfscan's bounded tables, with names."""

    def __init__(self, img: ElfImage, data: bytes) -> None:
        self.img = img
        self.is_rel = img.is_rel
        self.functions: dict[int, tuple[str, int]] = {}
        self.objects: dict[int, str] = {}
        self.relocs: dict[int, _Reloc] = {}
        self._read_symbols()
        if self.is_rel:
            self._read_code_relocations()

    # -- tables ---------------------------------------------------------------

    def _read_symbols(self) -> None:
        """Function extents and names (for walks and reports), data symbol names."""
        for sec in self.img.sections:
            if sec.type not in (SHT_SYMTAB, SHT_DYNSYM):
                continue
            for sym in self.img.symbols(sec):
                if not _in_a_section(sym.shndx):
                    continue
                if sym.type == STT_OBJECT and sym.name:
                    self.objects.setdefault(sym.address, sym.name)
                if sym.type not in (STT_FUNC, STT_GNU_IFUNC):
                    continue
                if sym.address and (sym.address not in self.functions or not self.functions[sym.address][1]):
                    self.functions[sym.address] = (sym.name, sym.size)

    def _read_code_relocations(self) -> None:
        """Relocations of executable sections (.rela.text...), keyed by the
        synthetic address they patch: how an object file names call targets."""
        sections = self.img.sections
        for rela in sections:
            if rela.type != SHT_RELA or rela.info >= len(sections) or not sections[rela.info].executable:
                continue
            table = sections[rela.link] if rela.link < len(sections) else None
            if table is not None and table.type not in (SHT_SYMTAB, SHT_DYNSYM):
                table = None
            target = sections[rela.info]
            for offset, rtype, symidx, addend in self.img.relocations(rela):
                sym = self.img.symbol(table, symidx) if table is not None else None
                name, address, local, common = "", 0, False, False
                if sym is not None:
                    name = sym.name
                    if sym.type == STT_SECTION and _in_a_section(sym.shndx):
                        name = sections[sym.shndx].name if sym.shndx < len(sections) else name
                    common = sym.shndx == SHN_COMMON
                    if _in_a_section(sym.shndx):
                        address = sym.address
                        local = sym.binding == STB_LOCAL or sym.visibility in (STV_INTERNAL, STV_HIDDEN)
                self.relocs[target.base + offset] = _Reloc(
                    target.base + offset, rtype, name, address, local, common, addend
                )

    @functools.cached_property
    def got_names(self) -> dict[int, str]:
        """GOT slot address -> symbol, from 64/GLOB_DAT/JUMP_SLOT relocations.

        Only for reporting a GOT write, so read on first use."""
        names: dict[int, str] = {}
        sections = self.img.sections
        for sec in sections:
            if sec.type != SHT_RELA or not sec.link or sec.link >= len(sections):
                continue
            symtab = sections[sec.link]
            if symtab.type not in (SHT_SYMTAB, SHT_DYNSYM):
                continue
            for offset, rtype, symidx, _addend in self.img.relocations(sec):
                if rtype in (1, 6, 7) and symidx:
                    sym = self.img.symbol(symtab, symidx)
                    names[offset] = sym.name if sym is not None else ""
        return names

    # -- addresses ------------------------------------------------------------

    def describe(self, address: Any) -> str:
        """An address as a report shows it: hex, or section+offset in an object."""
        if not isinstance(address, int):
            return str(address)
        if self.is_rel:
            sec = self.img.section_at(address)
            return f"{sec.name}+{address - sec.base:#x}" if sec else hex(address)
        return hex(address)

    def data_name(self, key: Any) -> str | None:
        """The data symbol at an address (or the COMMON symbol's own name)."""
        return self.objects.get(key) if isinstance(key, int) else str(key)

    def name_of(self, address: int) -> str | None:
        entry = self.functions.get(address)
        return entry[0] if entry and entry[0] else None

    def is_local_code(self, address: int) -> bool:
        return self.img.is_local_code(address)

    def reloc_in(self, insn: Any) -> _Reloc | None:
        if not self.relocs:
            return None
        for at in range(insn.address + 1, insn.address + insn.size):
            rel = self.relocs.get(at)
            if rel is not None:
                return rel
        return None

    def classify(self, address: int) -> str:
        """'got', 'bss', 'rodata', 'code', 'data' or '' for an address."""
        sec = self.img.section_at(address)
        if sec is None:
            return ""
        return _classify_section(sec)

    def c_string_at(self, address: int) -> bool:
        """Is there a printable NUL-terminated string of >= 4 characters?"""
        raw = self.img.read(address, 256)
        end = raw.find(b"\0")
        text = raw[:end] if end >= 0 else b""
        return len(text) >= 4 and all(32 <= c < 127 or c in (9, 10, 13) for c in text)


def _classify_section(sec: Section) -> str:
    if sec.name in GOT_SECTIONS:
        return "got"
    if sec.flags & SHF_TLS or not sec.flags & SHF_ALLOC:
        return ""
    if sec.flags & SHF_EXECINSTR:
        return "code"
    if sec.type == SHT_NOBITS and sec.flags & SHF_WRITE:
        return "bss"
    if not sec.flags & SHF_WRITE:
        return "rodata"
    return "data"


@dataclass(frozen=True, slots=True)
class _Loc:
    """Where a memory operand points: kind in got/bss/rodata/data/code/stack/via/ext."""

    kind: str
    key: Any
    tag: Tag | None = None
    disp: int = 0


class _Flow:
    """A function's extent and control-flow edges during a linear walk.

    Shared by the cheap walk (no operand details) and the detailed one, so
    both see the same functions and the same call graph. With a symbol size
    the function is exactly that; without one (stripped files) it ends at a
    return or unconditional jump that no pending forward branch jumps past.
    An unconditional jump leaving the function (before its start, to another
    known function, past its known end) is a tail call: a call edge.
    """

    __slots__ = ("count", "end", "functions", "limit", "max_forward", "read_size", "start")

    def __init__(self, prog: _Program, start: int, limit: int) -> None:
        known = prog.functions.get(start)
        size = known[1] if known and known[1] else 0
        self.start = start
        self.end = start + size if size else 0
        self.limit = limit
        self.max_forward = start
        self.count = 0
        self.functions = prog.functions
        self.read_size = size if size else limit * 8

    def admit(self, address: int) -> bool:
        """Count one more instruction; False once past the bounds."""
        self.count += 1
        return self.count <= self.limit and not (self.end and address >= self.end)

    def ends_at_stopper(self, address: int) -> bool:
        """Does a return (ud2, hlt...) here end the function?"""
        return not self.end and address >= self.max_forward

    def branch(
        self, address: int, next_ip: int, mnemonic: str, target: int | None, local: bool
    ) -> tuple[bool, int | None]:
        """(function ends here, local call edge) for a call or jump.

        ``target`` is None for indirect branches and 0 for external ones.
        """
        at_end = mnemonic == "jmp" and (next_ip >= self.end if self.end else address >= self.max_forward)
        if target is None:
            return at_end, None
        if mnemonic == "jmp":
            leaves = (
                target < self.start
                or (self.end and target >= self.end)
                or (target != self.start and target in self.functions)
            )
            if not leaves:
                if target > address:
                    self.max_forward = max(self.max_forward, target)
                    return False, None
                return at_end, None  # a backward jump may end the function
        elif mnemonic != "call":  # conditional jump
            if target > address:
                self.max_forward = max(self.max_forward, target)
            return False, None
        edge = target if local and target != next_ip else None
        return mnemonic == "jmp" and at_end, edge


_RIP_OPERAND = re.compile(r"\[rip ([+-]) (0x[0-9a-f]+|[0-9]+)\]")


def _lite_walk(prog: _Program, lite: Any, start: int, limit: int) -> tuple[_FunctionReport, bool]:
    """Cheap walk of a function in a linked file: (edges and string references,
    whether the detailed walk is needed).

    The detailed walk can only find a GOT write, a call through a GOT slot or
    a .bss counter in a function that references the GOT rip-relatively or
    writes rip-relatively into .bss (its only sources for those facts), so a
    function without such an instruction is fully judged here, at a fraction
    of the cost. Object files always get the detailed walk (relocations).
    """
    report = _FunctionReport(start)
    flow = _Flow(prog, start, limit)
    needs_detail = False
    for address, size, mnemonic, op_str in lite.disasm_lite(prog.img.read(start, flow.read_size), start):
        if not flow.admit(address):
            break
        report.instructions += 1
        next_ip = address + size
        if mnemonic == "cpuid":
            report.has_cpuid = True
        match = _RIP_OPERAND.search(op_str) if "rip" in op_str else None
        if match is not None:
            disp = int(match[2], 0)
            referenced = next_ip + (disp if match[1] == "+" else -disp)
            kind = prog.classify(referenced)
            comma = op_str.find(",")
            first_operand = comma < 0 or match.start() < comma
            if kind == "got" or (kind == "bss" and first_operand):
                needs_detail = True
            elif kind == "rodata" and mnemonic == "lea" and prog.c_string_at(referenced):
                report.string_refs.append(address)
        if mnemonic in STOPPERS:
            if flow.ends_at_stopper(address):
                break
            continue
        if mnemonic == "call" or mnemonic.startswith("j"):
            target = int(op_str, 16) if op_str.startswith("0x") else None
            local = target is not None and prog.is_local_code(target)
            stop, edge = flow.branch(address, next_ip, mnemonic, target, local)
            if edge is not None:
                report.local_calls.append(edge)
            if stop:
                break
    return report, needs_detail


class _Walker:
    """Abstract, linear walk of one function's instructions.

    Tracks just enough dataflow (registers and stack slots holding a GOT slot
    address, a GOT value, a .bss value, a frame pointer) to recognise, at any
    optimisation level: a store into a GOT slot, a call through it, a .bss
    read-modify-write increment, and frame pointers passed to local calls.
    Branches are not followed; the linear order is a good enough
    approximation for these few patterns, and keeps the cost bounded.
    """

    def __init__(self, prog: _Program, md: Any) -> None:
        self.prog = prog
        self.md = md

    def walk(self, start: int, limit: int) -> _FunctionReport:
        prog = self.prog
        report = _FunctionReport(start)
        flow = _Flow(prog, start, limit)
        regs: dict[str, Tag] = {}
        stack: dict[tuple[str, int], Tag] = {}
        for insn in self.md.disasm(prog.img.read(start, flow.read_size), start):
            if not flow.admit(insn.address):
                break
            report.instructions += 1
            mnemonic = insn.mnemonic
            if mnemonic == "cpuid":
                report.has_cpuid = True
            self._check_memory_writes(insn, regs, report)
            if mnemonic in STOPPERS:
                if flow.ends_at_stopper(insn.address):
                    break
                continue
            if mnemonic == "call" or mnemonic.startswith("j"):
                if self._branch(insn, regs, report, flow):
                    break
                if mnemonic == "call":
                    for reg in CALLER_SAVED:
                        regs.pop(reg, None)
                continue
            self._dataflow(insn, regs, stack, report)
        return report

    # -- pieces of the walk ---------------------------------------------------

    def _resolve(self, insn: Any, op: Any, regs: dict[str, Tag]) -> _Loc | None:
        """Resolve a memory operand to what it points at."""
        mem = op.mem
        base = _REGS.get(insn.reg_name(mem.base), "") if mem.base else ""
        if base == "rip":
            return self._rip_target(insn, mem.disp)
        if mem.index:
            return None
        if base == "rsp" or (base == "rbp" and regs.get("rbp", ("",))[0] == "frame"):
            return _Loc("stack", (base, mem.disp))
        if base and base in regs:
            return _Loc("via", base, regs[base], mem.disp)
        return None

    def _rip_target(self, insn: Any, disp: int) -> _Loc:
        prog = self.prog
        next_ip = insn.address + insn.size
        if prog.is_rel:
            rel = prog.reloc_in(insn)
            if rel is not None:
                if rel.type in GOT_SLOT_RELOCS:
                    return _Loc("got", rel.symbol)
                if rel.type in GOT_BASE_RELOCS:
                    return _Loc("got", "_GLOBAL_OFFSET_TABLE_")
                if rel.common:
                    return _Loc("bss", rel.symbol)
                if not rel.address:
                    return _Loc("ext", rel.symbol)
                address = rel.address + rel.addend + (next_ip - rel.offset)
                return _Loc(prog.classify(address) or "data", address)
        address = next_ip + disp
        return _Loc(prog.classify(address) or "data", address)

    def _check_memory_writes(self, insn: Any, regs: dict[str, Tag], report: _FunctionReport) -> None:
        """Any explicit memory write into a GOT slot, and .bss increments in place."""
        for op in insn.operands:
            if op.type != x86.X86_OP_MEM or not op.access & capstone.CS_AC_WRITE:
                continue
            loc = self._resolve(insn, op, regs)
            if loc is None:
                continue
            slot = _got_slot(loc)
            if slot is not None:
                report.got_writes.append((insn.address, slot))
            elif (
                loc.kind == "bss"
                and insn.mnemonic in INCREMENTS
                and op.access & capstone.CS_AC_READ
            ):
                report.bss_counters.append((insn.address, loc.key))

    def _branch(self, insn: Any, regs: dict[str, Tag], report: _FunctionReport, flow: _Flow) -> bool:
        """Calls and jumps: call edges, frame-pointer arguments, calls through a
        GOT slot. Returns True when the function ends here."""
        prog = self.prog
        mnemonic = insn.mnemonic
        op = insn.operands[0] if insn.operands else None
        next_ip = insn.address + insn.size
        if op is None:
            return False
        if op.type == x86.X86_OP_IMM:
            target = op.imm
            local = False
            rel = prog.reloc_in(insn) if prog.is_rel else None
            if rel is not None:
                local = rel.local and bool(rel.address)
                target = rel.address + rel.addend + (next_ip - rel.offset) if local else 0
            elif target:
                local = prog.is_local_code(target)
            stop, edge = flow.branch(insn.address, next_ip, mnemonic, target, local)
            if edge is not None:
                report.local_calls.append(edge)
                args = [
                    f"{reg}={_frame_source(regs[reg])}" for reg in ARG_REGS if regs.get(reg, ("",))[0] == "frame"
                ]
                if args and mnemonic == "call":
                    report.frame_args.append(f"{prog.describe(insn.address)}: " + ", ".join(args))
            return stop
        # indirect call or jump
        slot: Any = None
        if op.type == x86.X86_OP_MEM:
            loc = self._resolve(insn, op, regs)
            slot = _got_slot(loc) if loc is not None else None
        elif op.type == x86.X86_OP_REG:
            tag = regs.get(_REGS.get(insn.reg_name(op.reg), ""))
            if tag is not None and tag[0] == "gotval":
                slot = tag[1]
        if slot is not None:
            report.got_calls.append((insn.address, slot))
        return flow.branch(insn.address, next_ip, mnemonic, None, False)[0]

    def _dataflow(
        self,
        insn: Any,
        regs: dict[str, Tag],
        stack: dict[tuple[str, int], Tag],
        report: _FunctionReport,
    ) -> None:
        mnemonic = insn.mnemonic
        ops = insn.operands
        dst = _REGS.get(insn.reg_name(ops[0].reg), "") if ops and ops[0].type == x86.X86_OP_REG else ""
        new: Tag | None = None
        handled = False
        if mnemonic == "lea" and dst and len(ops) == 2:
            handled = True
            loc = self._resolve(insn, ops[1], regs)
            if loc is not None:
                if loc.kind == "got":
                    new = ("gotaddr", loc.key)
                elif loc.kind == "stack":
                    new = ("frame", loc.key)
                elif loc.kind == "via" and loc.tag is not None:
                    new = _offset(loc.tag, loc.disp)
                elif loc.kind == "rodata" and isinstance(loc.key, int) and self.prog.c_string_at(loc.key):
                    report.string_refs.append(insn.address)
        elif mnemonic in ("mov", "movabs") and len(ops) == 2:
            src = ops[1]
            if dst and src.type == x86.X86_OP_REG:
                handled = True
                name = _REGS.get(insn.reg_name(src.reg), "")
                new = ("frame", (name, 0)) if name == "rsp" else regs.get(name)
            elif dst and src.type == x86.X86_OP_MEM:
                handled = True
                loc = self._resolve(insn, src, regs)
                if loc is not None:
                    if loc.kind == "via" and loc.tag is not None and loc.tag[0] == "gotaddr":
                        new = ("gotval", _slot_plus(loc.tag[1], loc.disp))
                    elif loc.kind == "got":
                        new = ("gotval", loc.key)
                    elif loc.kind == "bss":
                        new = ("bssval", loc.key)
                    elif loc.kind == "stack":
                        new = stack.get(loc.key)
            elif ops[0].type == x86.X86_OP_MEM:
                handled = True
                loc = self._resolve(insn, ops[0], regs)
                tag = regs.get(_REGS.get(insn.reg_name(src.reg), "")) if src.type == x86.X86_OP_REG else None
                if loc is not None and loc.kind == "stack":
                    if tag is None:
                        stack.pop(loc.key, None)
                    else:
                        stack[loc.key] = tag
                elif loc is not None and loc.kind == "bss" and tag is not None and tag[:2] == ("bssinc", loc.key):
                    report.bss_counters.append((insn.address, loc.key))
        elif mnemonic in INCREMENTS and dst:
            handled = True
            tag = regs.get(dst)
            if tag is not None:
                if tag[0] in ("bssval", "bssinc"):
                    new = ("bssinc", tag[1])
                elif tag[0] in ("frame", "gotaddr") and len(ops) == 2 and ops[1].type == x86.X86_OP_IMM:
                    sign = -1 if mnemonic == "sub" else 1
                    new = _offset(tag, sign * ops[1].imm)
        if handled and dst:
            if new is None:
                regs.pop(dst, None)
            else:
                regs[dst] = new
            return
        # Anything else that writes a register makes its abstract value unknown.
        try:
            _read, written = insn.regs_access()
        except capstone.CsError:
            return
        for reg_id in written:
            regs.pop(_REGS.get(insn.reg_name(reg_id), ""), None)


def _frame_source(tag: Tag) -> str:
    base, disp = tag[1] if isinstance(tag[1], tuple) else ("rsp", 0)
    return f"[{base}{disp:+#x}]" if disp else f"[{base}]"


def _offset(tag: Tag, delta: int) -> Tag:
    if tag[0] == "gotaddr":
        return ("gotaddr", _slot_plus(tag[1], delta))
    if tag[0] == "frame" and isinstance(tag[1], tuple):
        return ("frame", (tag[1][0], tag[1][1] + delta))
    if tag[0] in ("bssval", "bssinc") and delta:
        return ("bssinc", tag[1])
    return tag


def _slot_plus(slot: Any, delta: int) -> Any:
    """A GOT slot displaced by ``delta`` (addresses add; named slots get +N)."""
    if not delta:
        return slot
    if isinstance(slot, int):
        return slot + delta
    return f"{slot}{delta:+#x}"


def _got_slot(loc: _Loc) -> Any:
    """The GOT slot a memory operand designates, or None."""
    if loc.kind == "got":
        return loc.key
    if loc.kind == "via" and loc.tag is not None and loc.tag[0] == "gotaddr":
        return _slot_plus(loc.tag[1], loc.disp)
    return None


class StructureDetector(Detector):
    """Judge x86-64 ELF files by the structure of an IFUNC-resolver hook."""

    name = "ifunc-structure"
    version = 4
    max_size = HOLD_MAX

    def __init__(self) -> None:
        self._lite: Any = None
        self._detail: Any = None

    def _disassemblers(self) -> tuple[Any, Any]:
        """Two capstone handles: without operand details (fast) and with them."""
        if self._lite is None:
            _load_libraries()
            self._lite = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
            self._detail = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
            self._detail.detail = True
        return self._lite, self._detail

    def interest(self) -> Interest:
        return Interest(heads=(ELF_MAGIC,))

    def wants(self, entry: Entry, head: bytes) -> bool:
        """x86-64 shared objects, PIEs and relocatable objects; no other machine."""
        return head_is_x86_64_candidate(head)

    def rule_tables(self) -> dict[str, Any]:
        """Weights, threshold and bounds: every number the verdict depends on."""
        return {
            "rule": RULE,
            "weights": WEIGHTS,
            "threshold": THRESHOLD,
            "high_score": HIGH_SCORE,
            "eh_frame_gap_min": EH_FRAME_GAP_MIN,
            "bounds": {
                "max_size": self.max_size,
                "max_resolvers": MAX_RESOLVERS,
                "resolver_insns": RESOLVER_INSNS,
                "func_insns": FUNC_INSNS,
                "max_depth": MAX_DEPTH,
                "max_funcs": MAX_FUNCS,
            },
        }

    def inspect(self, entry: Entry, data: bytes) -> Iterator[Finding | Fact]:
        evidence = self.assess(data)
        if evidence is None or not evidence["flagged"]:
            return
        yield Finding(
            rule=RULE,
            kind=Kind.STRUCTURE,
            indicates=Indicates.PAYLOAD if data[16] == ET_REL else Indicates.IMPLANT,
            path=entry.path,
            evidence=evidence,
        )

    def assess(self, data: bytes) -> dict[str, Any] | None:
        """Every property and the score, whether or not they add up to a finding.

        None when the file is no candidate at all: not x86-64 ET_DYN/ET_REL,
        no IFUNC, or no resolver making a direct call into local code. Tests
        use it to show *why* a control library is clean.
        """
        if not head_is_x86_64_candidate(data[:20]) or not has_ifunc_in_either_view(data):
            return None
        _load_libraries()
        try:
            img = open_image(data)
        except ElfFormatError:
            return None
        resolvers, found = self._resolvers(img)
        lite, detail = self._disassemblers()
        candidates = [(addr, name) for addr, name in resolvers if self._calls_local_code(img, lite, addr)]
        if not candidates:
            return None
        return self._analyse(img, data, lite, detail, candidates, len(resolvers), found)

    # -- stage 1: cheap ---------------------------------------------------------

    @staticmethod
    def _resolvers(img: ElfImage) -> tuple[list[tuple[int, str | None]], int]:
        """Resolver addresses, named ones first (lzma_* first of all), bounded; and how many there are."""
        named = img.ifunc_symbols()
        hidden = img.irelative_resolvers() - set(named)
        ordered = sorted(named.items(), key=lambda kv: (not kv[1].startswith("lzma_"), kv[0]))
        out: list[tuple[int, str | None]] = [(addr, name) for addr, name in ordered]
        out += [(addr, None) for addr in sorted(hidden)]
        return out[:MAX_RESOLVERS], len(out)

    @staticmethod
    def _calls_local_code(img: ElfImage, lite: Any, address: int) -> bool:
        """Does the resolver make a direct call that may land in local code?

        No operand details, a bounded number of instructions, and the usual
        function-end heuristic (a return with no pending forward branch). In an
        object file an unrelocated call is kept as a candidate: its relocation
        is read in stage 2.
        """
        code = img.read(address, RESOLVER_BYTES)
        max_forward = address
        for count, (at, _size, mnemonic, op_str) in enumerate(lite.disasm_lite(code, address)):
            if count >= RESOLVER_INSNS:
                break
            if mnemonic == "call" and op_str.startswith("0x"):
                target = int(op_str, 16)
                if img.is_rel:
                    return True
                if img.is_local_code(target):
                    return True
            elif mnemonic.startswith("j") and op_str.startswith("0x"):
                target = int(op_str, 16)
                if target > at:
                    max_forward = max(max_forward, target)
                elif mnemonic == "jmp" and at >= max_forward:
                    break  # backward jump ending the function
            elif mnemonic in STOPPERS and at >= max_forward:
                break
        return False

    # -- stage 2: full analysis ---------------------------------------------------

    def _analyse(
        self,
        img: ElfImage,
        data: bytes,
        lite: Any,
        detail: Any,
        candidates: list[tuple[int, str | None]],
        resolvers_analysed: int,
        resolvers_found: int,
    ) -> dict[str, Any] | None:
        """Resolvers in detail, then the code they reach, then file-level traits."""
        prog = _Program(img, data)
        walker = _Walker(prog, detail)
        hooked: list[dict[str, Any]] = []
        frontier: deque[tuple[int, int]] = deque()
        frame_args: list[str] = []
        reports: list[_FunctionReport] = []
        for address, name in candidates:
            report = walker.walk(address, RESOLVER_INSNS)
            if not report.local_calls:
                continue
            reports.append(report)
            frame_args += report.frame_args
            hooked.append(
                {
                    "symbol": name or prog.name_of(address),
                    "resolver": prog.describe(address),
                    "cpuid_inline": report.has_cpuid,
                    "callees": [{"address": prog.describe(t), "name": prog.name_of(t)} for t in report.local_calls],
                    "frame_pointer_args": report.frame_args,
                }
            )
            frontier += [(t, 1) for t in report.local_calls]
        if not hooked:
            return None
        seen = {address for address, _ in candidates}
        hidden: list[dict[str, Any]] = []
        detailed = 0
        beyond_depth: set[int] = set()
        while frontier and len(hidden) < MAX_FUNCS:
            address, depth = frontier.popleft()
            if address in seen:
                continue
            if depth > MAX_DEPTH:
                beyond_depth.add(address)
                continue
            seen.add(address)
            if prog.is_rel:
                report = walker.walk(address, FUNC_INSNS)
            else:
                report, needs_detail = _lite_walk(prog, lite, address, FUNC_INSNS)
                if needs_detail:
                    report = walker.walk(address, FUNC_INSNS)
                    detailed += 1
            reports.append(report)
            hidden.append({"address": prog.describe(address), "name": prog.name_of(address), "depth": depth})
            frontier += [(t, depth + 1) for t in report.local_calls]
        left = {address: depth for address, depth in reversed(frontier) if address not in seen}
        beyond_depth |= {address for address, depth in left.items() if depth > MAX_DEPTH}
        walk_limits = {
            "resolvers_not_analysed": resolvers_found - resolvers_analysed,
            "calls_beyond_depth": len(beyond_depth),
            "functions_beyond_count": sum(1 for depth in left.values() if depth <= MAX_DEPTH),
        }

        writes = [(site, slot) for r in reports for site, slot in r.got_writes]
        written = {slot for _, slot in writes}
        calls = [(site, slot) for r in reports for site, slot in r.got_calls if slot in written]
        counters = [(site, key) for r in reports for site, key in r.bss_counters]
        strings = [site for r in reports[len(hooked):] for site in r.string_refs]
        tls = self._tls_get_addr_without_tls(prog)
        needs = self._needed(prog)
        gap, gap_section, gap_at = img.largest_unwind_gap()

        props: dict[str, bool] = {
            "got_write": bool(writes),
            "got_call": bool(calls),
            "bss_counter": bool(counters),
            "frame_pointer_arg": bool(frame_args),
            "tls_get_addr_without_tls": tls,
            "needs_ld_linux": LD_LINUX in needs,
            "eh_frame_gap": gap >= EH_FRAME_GAP_MIN,
        }
        applicable = dict(WEIGHTS)
        if prog.is_rel:
            del applicable["needs_ld_linux"]  # object files have no DT_NEEDED
        score = sum(w for p, w in applicable.items() if props[p])
        maximum = sum(applicable.values())
        gate = props["got_write"] or props["bss_counter"]

        def slot_name(slot: Any) -> str:
            if isinstance(slot, int):
                named = prog.got_names.get(slot)
                return f"{slot:#x} ({named})" if named else hex(slot)
            return f"GOT[{slot}]"

        flagged = gate and score >= THRESHOLD
        return {
            "flagged": flagged,
            "elf_view": img.view,
            "confidence": round(score / maximum, 2),
            "confidence_level": "high" if score >= HIGH_SCORE else "medium" if flagged else "low",
            "score": score,
            "max_score": maximum,
            "threshold": THRESHOLD,
            "gate": gate,
            "properties": {"ifunc_resolver_calls_local": True, **props, "hidden_code_without_strings": not strings},
            "resolvers_analysed": resolvers_analysed,
            "hooked_resolvers": hooked,
            "hidden_functions": hidden,
            "hidden_functions_walked_in_detail": detailed if not prog.is_rel else len(hidden),
            "walk_limits": walk_limits,
            "got_write": [{"site": prog.describe(s), "slot": slot_name(k)} for s, k in writes[:8]] or False,
            "got_slot_restored": any(sum(1 for _, k in writes if k == slot) >= 2 for slot in written),
            "got_call": [{"site": prog.describe(s), "slot": slot_name(k)} for s, k in calls[:8]] or False,
            "bss_counter": [
                {"site": prog.describe(s), "address": prog.describe(k), "symbol": prog.data_name(k)}
                for s, k in counters[:8]
            ]
            or False,
            "tls_get_addr_without_tls": tls,
            "needs_ld_linux": props["needs_ld_linux"] if not prog.is_rel else None,
            "dt_needed": needs,
            "eh_frame_gap_bytes": gap,
            "eh_frame_gap_at": prog.describe(gap_at) if gap else None,
            "eh_frame_gap_section": gap_section or None,
            "hidden_code_string_refs": [prog.describe(s) for s in strings[:8]],
        }

    @staticmethod
    def _needed(prog: _Program) -> list[str]:
        """DT_NEEDED entries (empty for object files), read the way the loader reads them."""
        if prog.is_rel:
            return []
        try:
            needed: list[str] = parse_dynamic(prog.img.data)["needed"]
        except ElfFormatError:
            return []  # dynamic strings no loader could read: nothing is needed
        return needed

    @staticmethod
    def _tls_get_addr_without_tls(prog: _Program) -> bool:
        """Imports ``__tls_get_addr`` yet has no TLS segment, section, symbol or relocation."""
        img = prog.img
        imports = False
        for sec in img.sections:
            if sec.type not in (SHT_SYMTAB, SHT_DYNSYM):
                continue
            for sym in img.symbols(sec):
                if sym.type == STT_TLS and sym.defined:
                    return False
                if sym.name == "__tls_get_addr" and not sym.defined and sym.type in (STT_FUNC, 0, STT_GNU_IFUNC):
                    imports = True
        if not imports:
            return False
        if PT_TLS in img.segment_types():
            return False
        if any(sec.flags & SHF_TLS for sec in img.sections):
            return False
        return not any(
            rtype in TLS_RELOC_TYPES
            for sec in img.sections
            if sec.type == SHT_RELA
            for _o, rtype, _s, _a in img.relocations(sec)
        )


def iter_findings(items: Iterable[Finding | Fact]) -> list[Finding]:
    """Only the findings of an ``inspect`` run (tests and the benchmark use it)."""
    return [item for item in items if isinstance(item, Finding)]
