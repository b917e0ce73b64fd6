"""The byte-signature detector, on libraries compiled from tests/samples/implant_sim.c."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from layerhound.detectors.base import HEAD_SIZE
from layerhound.detectors.signatures import (
    GET_CPUID_PROLOGUE,
    SIGNATURE_RULE,
    YARA_OPCODES,
    ByteSignatureDetector,
)
from layerhound.model import Entry, EntryType, Finding, Indicates, Kind
from tests.support.compile import IMPLANT_SIM, compile_object, compile_shared

LIB_PATH = "/usr/lib/x86_64-linux-gnu/liblzma.so.5"
DETECTOR = ByteSignatureDetector()


def compile_hex_pattern(pattern: str) -> re.Pattern[bytes]:
    """A YARA-style hex string as a bytes regex (``??`` matches any byte): the oracle the
    detector's YARA-X rule is checked against, written independently of it."""
    parts = [b"." if tok == "??" else re.escape(bytes.fromhex(tok)) for tok in pattern.split()]
    return re.compile(b"".join(parts), re.DOTALL)


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("implant-sim")


def scan(path: Path, in_image: str = LIB_PATH) -> list[Finding]:
    data = path.read_bytes()
    entry = Entry(in_image, EntryType.FILE, size=len(data))
    assert DETECTOR.wants(entry, data[:HEAD_SIZE])
    return list(DETECTOR.inspect(entry, data))


def test_prologue_variant_is_found(build_dir: Path) -> None:
    lib = compile_shared(IMPLANT_SIM, build_dir, defines=("WITH_PROLOGUE",))
    [finding] = scan(lib)
    assert finding.rule == "xz-get-cpuid-prologue"
    assert finding.kind is Kind.SIGNATURE
    assert finding.indicates is Indicates.IMPLANT
    assert finding.path == LIB_PATH
    offset = finding.evidence["offset"]
    data = lib.read_bytes()
    assert data[offset : offset + len(GET_CPUID_PROLOGUE)] == GET_CPUID_PROLOGUE


def test_prologue_survives_stripping(build_dir: Path) -> None:
    lib = compile_shared(IMPLANT_SIM, build_dir, defines=("WITH_PROLOGUE",), strip=True)
    assert [f.rule for f in scan(lib)] == ["xz-get-cpuid-prologue"]


def test_yara_variant_is_found_with_all_three_offsets(build_dir: Path) -> None:
    lib = compile_shared(IMPLANT_SIM, build_dir, defines=("WITH_YARA",))
    [finding] = scan(lib)
    assert finding.rule == "xz-yara-opcodes"
    assert finding.kind is Kind.SIGNATURE
    assert finding.indicates is Indicates.IMPLANT
    offsets = finding.evidence["offsets"]
    assert set(offsets) == {"op1", "op2", "op3"}
    data = lib.read_bytes()
    for name, hexstr in YARA_OPCODES.items():
        assert compile_hex_pattern(hexstr).match(data, offsets[name]), name


def test_partial_yara_variant_is_not_enough(build_dir: Path) -> None:
    lib = compile_shared(IMPLANT_SIM, build_dir, defines=("WITH_YARA_PARTIAL",))
    data = lib.read_bytes()
    # The two sequences really are in the file; the third is what is missing.
    assert compile_hex_pattern(YARA_OPCODES["op1"]).search(data)
    assert compile_hex_pattern(YARA_OPCODES["op2"]).search(data)
    assert not compile_hex_pattern(YARA_OPCODES["op3"]).search(data)
    assert scan(lib) == []


def test_structure_only_variant_has_no_signature(build_dir: Path) -> None:
    assert scan(compile_shared(IMPLANT_SIM, build_dir)) == []


def test_both_signatures_give_two_findings(build_dir: Path) -> None:
    lib = compile_shared(IMPLANT_SIM, build_dir, defines=("WITH_PROLOGUE", "WITH_YARA"))
    assert sorted(f.rule for f in scan(lib)) == ["xz-get-cpuid-prologue", "xz-yara-opcodes"]


def test_relocatable_object_indicates_payload(build_dir: Path) -> None:
    obj = compile_object(
        IMPLANT_SIM, build_dir, defines=("WITH_PROLOGUE",), name="liblzma_la-crc64-fast.o"
    )
    [finding] = scan(obj, "/build/xz/src/liblzma/liblzma_la-crc64-fast.o")
    assert finding.rule == "xz-get-cpuid-prologue"
    assert finding.indicates is Indicates.PAYLOAD


def test_hex_pattern_wildcard_matches_any_byte() -> None:
    regex = compile_hex_pattern("E8 ?? ?? 2E 89")
    assert regex.search(b"\x00\xe8\x0a\xff\x2e\x89")  # wildcard over a newline byte
    assert regex.search(b"\xe8\x2e\x2e\x2e\x89")  # '.' in the data is not special
    assert not regex.search(b"\xe8\x00\x2e\x89")  # one wildcard byte short


def test_wants_only_elf() -> None:
    entry = Entry("/usr/lib/liblzma.so.5", EntryType.FILE, size=1000)
    assert DETECTOR.wants(entry, b"\x7fELF\x02\x01\x01")
    assert not DETECTOR.wants(entry, b"!<arch>\n")
    assert not DETECTOR.wants(entry, GET_CPUID_PROLOGUE)


def test_the_rule_reports_each_strings_first_offset_as_a_regex_search_does() -> None:
    """A decoy (op1 up to its wildcards) before the real match, and op2 twice: the offsets are the
    first full matches, as an independent regex finds them."""
    for name, hexstr in YARA_OPCODES.items():
        assert f"${name} = {{ {hexstr} }}" in SIGNATURE_RULE
    detector = ByteSignatureDetector()
    pieces = [bytes.fromhex(YARA_OPCODES[name].replace("??", "00")) for name in ("op1", "op2", "op3")]
    elf = b"\x7fELF\x02\x01\x01" + b"\x00" * 9 + b"\x03\x00" + b"\x00" * 46
    # The decoy is op1 up to its wildcards: a search that stopped at a literal prefix would report it.
    decoy = pieces[0][:22]
    data = elf + decoy + b"\x90" * 7 + b"".join(pieces) + pieces[1]
    [finding] = [f for f in detector.inspect(Entry("/x.so", EntryType.FILE, len(data), 0o755), data)
                 if f.rule == "xz-yara-opcodes"]
    expected = {name: compile_hex_pattern(YARA_OPCODES[name]).search(data).start()  # type: ignore[union-attr]
                for name in ("op1", "op2", "op3")}
    assert finding.evidence["offsets"] == expected
    assert expected["op1"] == len(elf) + len(decoy) + 7
