"""Byte signatures of the CVE-2024-3094 implant code inside ELF files.

Why: hashes only catch the exact builds that were published. The implant's
machine code is the same object file spliced into every backdoored build, so
its byte sequences survive relinking, stripping and repackaging. Two
independent published signatures are checked:

* the prologue of the implant's ``_get_cpuid`` helper, first published with
  the disclosure's detection script;
* the three opcode sequences of the public YARA rule, which together (and only
  together) identify the implant's code.

A match in a relocatable object (ELF type ET_REL, like the extracted payload
``liblzma_la-crc64-fast.o``) indicates ``PAYLOAD``: the code is there but
nothing can load it as is. In a shared object or executable it is ``IMPLANT``.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from typing import Any

from layerhound.detectors.base import ELF_MAGIC, HEAD_SIZE, Detector, Interest, is_elf
from layerhound.model import Entry, Finding, Indicates, Kind

GET_CPUID_PROLOGUE_HEX = (
    "f30f1efa554889f54c89ce5389fb81e7000000804883ec28488954241848894c2410"
)
GET_CPUID_PROLOGUE = bytes.fromhex(GET_CPUID_PROLOGUE_HEX)

YARA_OPCODES: dict[str, str] = {
    "op1": "48 8D 7C 24 08 F3 AB 48 8D 44 24 08 48 89 D1 4C 89 C7 48 89 C2 E8 ?? ?? ?? ?? 89 C2",
    "op2": "31 C0 49 89 FF B9 16 00 00 00 4D 89 C5 48 8D 7C 24 48 4D 89 CE F3 AB 48 8D 44 24 48",
    "op3": (
        "4D 8B 6C 24 08 45 8B 3C 24 4C 8B 63 10 89 85 78 F1 FF FF 31 C0 83 BD 78 F1 FF FF 00"
        " F3 AB 79 07"
    ),
}
"""The public YARA rule's opcode strings, as written there (``??`` = any byte)."""


SIGNATURE_RULE = (
    "rule xz_signatures {\n  strings:\n"
    f"    $prologue = {{ {GET_CPUID_PROLOGUE_HEX} }}\n"
    + "".join(f"    ${name} = {{ {hexstr} }}\n" for name, hexstr in YARA_OPCODES.items())
    + "  condition:\n    any of them\n}\n"
)
"""The published byte strings as one YARA rule, so one pass finds all four.

Why YARA-X: its atom search scans ELF bytes at 5 GB/s for all four strings at once, where one
``bytes.find`` per string managed 0.6 GB/s together (measured on this machine's libc, libcrypto,
libstdc++ and python: the signatures were a seventh of a big layer's walk). The rule's condition
is ``any``: which strings make a finding is decided here, from the first offsets it reports.
"""


class _CompiledRule(threading.local):
    """The rule compiled once per process, and a YARA-X scanner per thread (a scanner is not shared).

    Compiled on first use: a scan with no ELF file, and ``--version``, never load YARA-X.
    """

    scanner: Any = None

    def get(self) -> Any:
        if self.scanner is None:
            import yara_x

            self.scanner = yara_x.Scanner(_compiled_rule())
            self.scanner.max_matches_per_pattern(1)  # the first offset is all a finding names
        return self.scanner


@functools.cache
def _compiled_rule() -> Any:
    import yara_x

    return yara_x.compile(SIGNATURE_RULE)


_RULE = _CompiledRule()
_PATTERN_NAMES = ("prologue", *YARA_OPCODES)

_ET_REL = 1


def _indicates(data: bytes) -> Indicates:
    """PAYLOAD for a relocatable object, IMPLANT for anything loadable."""
    big_endian = data[5:6] == b"\x02"  # EI_DATA: ELFDATA2MSB
    e_type = int.from_bytes(data[16:18], "big" if big_endian else "little")
    return Indicates.PAYLOAD if e_type == _ET_REL else Indicates.IMPLANT


class ByteSignatureDetector(Detector):
    """Find the implant's published byte signatures in ELF files."""

    name = "byte-signatures"
    version = 2
    max_size = 4 * 1024 * 1024 * 1024
    """Scanned as a stream, so the bound is on time, not memory: any ELF file a layer really holds."""

    def interest(self) -> Interest:
        return Interest(heads=(ELF_MAGIC,))

    def wants(self, entry: Entry, head: bytes) -> bool:
        return is_elf(head)

    def inspect(self, entry: Entry, data: bytes) -> Iterator[Finding]:
        scanner = self.scanner(entry, data[:HEAD_SIZE])
        scanner.feed(data)
        yield from scanner.finish("")

    def scanner(self, entry: Entry, head: bytes) -> SignatureScanner:
        return SignatureScanner(entry.path, _indicates(head))

    def rule_tables(self) -> dict[str, Any]:
        """The data this detector's findings depend on, for the rules version."""
        return {"get_cpuid_prologue": GET_CPUID_PROLOGUE_HEX, "yara_opcodes": YARA_OPCODES, "max_size": self.max_size}


_OVERLAP = max(len(GET_CPUID_PROLOGUE), *(len(hexstr.split()) for hexstr in YARA_OPCODES.values())) - 1
"""Bytes of one piece kept to search with the next: a match can straddle two pieces by at most this."""


class SignatureScanner:
    """The signatures searched piece by piece; each pattern's first offset, as one search of the whole file.

    A match that straddles two pieces is found in the join of the previous piece's last
    ``_OVERLAP`` bytes and the next piece's first ``_OVERLAP``; pieces are searched in
    order, so the first offset found for a pattern is its first in the file.
    """

    def __init__(self, path: str, indicates: Indicates) -> None:
        self._path = path
        self._indicates = indicates
        self._first: dict[str, int] = {}
        self._tail = b""
        self._offset = 0

    def _search(self, data: bytes, base: int, before: int) -> None:
        """Note the patterns not found yet whose first match in ``data`` (at file offset ``base``)
        starts before ``before``."""
        for rule in _RULE.get().scan(data).matching_rules:
            for pattern in rule.patterns:
                name = pattern.identifier[1:]
                if name in self._first or not pattern.matches:
                    continue
                start = pattern.matches[0].offset
                if start < before:
                    self._first[name] = base + start

    def feed(self, piece: bytes) -> None:
        if len(self._first) == len(_PATTERN_NAMES) or not piece:
            return
        if self._tail:
            joined = self._tail + piece[:_OVERLAP]
            self._search(joined, self._offset - len(self._tail), len(self._tail))
        self._search(piece, self._offset, len(piece))
        self._tail = (self._tail + piece)[-_OVERLAP:] if len(piece) < _OVERLAP else piece[-_OVERLAP:]
        self._offset += len(piece)

    def finish(self, sha256: str) -> Iterator[Finding]:
        if "prologue" in self._first:
            yield Finding(
                rule="xz-get-cpuid-prologue",
                kind=Kind.SIGNATURE,
                indicates=self._indicates,
                path=self._path,
                evidence={"offset": self._first["prologue"]},
            )
        if all(name in self._first for name in YARA_OPCODES):  # the rule needs all three
            yield Finding(
                rule="xz-yara-opcodes",
                kind=Kind.SIGNATURE,
                indicates=self._indicates,
                path=self._path,
                evidence={"offsets": {name: self._first[name] for name in YARA_OPCODES}},
            )
