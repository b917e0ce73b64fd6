"""The structural IFUNC-hook detector, on the project's own samples.

Positives are compiled from tests/samples/implant_sim.c in every variant the
issue names (-O0/-O2/-Os, stripped or not, with or without the published
signature bytes, shared library or relocatable object); controls from
cpu_supports_ctl.c and nocfi_asm_ctl.S. The samples are inert and are only
read as bytes.
"""

from __future__ import annotations

import hashlib
import io
import struct
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from layerhound.detectors.base import HEAD_SIZE, Detector
from layerhound.detectors.elfscan import ElfImage, head_is_x86_64_candidate
from layerhound.detectors.hashes import KnownHashDetector
from layerhound.detectors.registry import ALL_DETECTORS
from layerhound.detectors.signatures import ByteSignatureDetector
from layerhound.detectors.structure import EH_FRAME_GAP_MIN, RULE, StructureDetector, iter_findings
from layerhound.layers.layer import TarBlobLayer
from layerhound.layers.walk import walk_layer
from layerhound.model import Entry, EntryType, Finding, Indicates, Kind
from layerhound.store.serialize import encode
from tests.support.compile import (
    CPU_SUPPORTS_CTL,
    IMPLANT_SIM,
    LD_LINUX_FLAG,
    NOCFI_ASM_CTL,
    compile_object,
    compile_shared,
)

LIB_PATH = "/usr/lib/x86_64-linux-gnu/liblzma.so.5.6.1"
OBJ_PATH = "/build/xz-5.6.1/src/liblzma/liblzma_la-crc64-fast.o"
DETECTOR = StructureDetector()
SIGNATURES = ("WITH_PROLOGUE", "WITH_YARA")
FULL = ("WITH_UNWIND_GAP",)
"""Every documented trait; with ``LD_LINUX_FLAG`` at link time."""
ALL_PROPERTIES = (
    "ifunc_resolver_calls_local",
    "got_write",
    "got_call",
    "bss_counter",
    "frame_pointer_arg",
    "tls_get_addr_without_tls",
    "needs_ld_linux",
    "eh_frame_gap",
    "hidden_code_without_strings",
)


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("structure")


def scan(data: bytes, path: str = LIB_PATH, detector: Detector = DETECTOR) -> list[Finding]:
    entry = Entry(path, EntryType.FILE, size=len(data))
    if not detector.wants(entry, data[:HEAD_SIZE]):
        return []
    return iter_findings(detector.inspect(entry, data))


def assess(data: bytes) -> dict[str, Any]:
    evidence = DETECTOR.assess(data)
    assert evidence is not None
    return evidence


# -- positives ----------------------------------------------------------------


@pytest.mark.parametrize("signatures", [(), SIGNATURES], ids=["structure-only", "with-signatures"])
@pytest.mark.parametrize("strip", [False, True], ids=["unstripped", "stripped"])
@pytest.mark.parametrize("opt", ["-O0", "-O2", "-Os"])
def test_shared_library_variants_are_flagged(
    build_dir: Path, opt: str, strip: bool, signatures: tuple[str, ...]
) -> None:
    lib = compile_shared(
        IMPLANT_SIM, build_dir, defines=(*FULL, *signatures), opt=opt, strip=strip, ldflags=[LD_LINUX_FLAG]
    )
    data = lib.read_bytes()
    [finding] = scan(data)
    assert finding.rule == RULE
    assert finding.kind is Kind.STRUCTURE
    assert finding.indicates is Indicates.IMPLANT
    assert finding.path == LIB_PATH
    evidence = finding.evidence
    assert evidence["flagged"] and evidence["confidence_level"] == "high"
    assert evidence["confidence"] == 1.0 and evidence["score"] == evidence["max_score"]
    assert {p: evidence["properties"][p] for p in ALL_PROPERTIES} == dict.fromkeys(ALL_PROPERTIES, True)
    assert sorted(r["symbol"] for r in evidence["hooked_resolvers"]) == ["lzma_crc32", "lzma_crc64"]
    assert all(not r["cpuid_inline"] and r["frame_pointer_args"] for r in evidence["hooked_resolvers"])
    assert evidence["got_slot_restored"] is True
    assert all("lh_sim_probe" in w["slot"] for w in evidence["got_write"])
    assert evidence["eh_frame_gap_bytes"] >= EH_FRAME_GAP_MIN
    assert evidence["dt_needed"] == ["ld-linux-x86-64.so.2"] or "ld-linux-x86-64.so.2" in evidence["dt_needed"]
    if not strip:
        callees = {c["name"] for r in evidence["hooked_resolvers"] for c in r["callees"]}
        assert callees == {"_get_cpuid"}
        assert {f["name"] for f in evidence["hidden_functions"]} >= {"_get_cpuid", "lh_sim_stage"}
        assert evidence["bss_counter"][0]["symbol"] == "lh_sim_calls"
    if not signatures:
        # The structural detector alone catches it: no published bytes, no known hash.
        assert scan(data, detector=ByteSignatureDetector()) == []
        assert scan(data, detector=KnownHashDetector()) == []
    else:
        assert {f.rule for f in scan(data, detector=ByteSignatureDetector())} == {
            "xz-get-cpuid-prologue",
            "xz-yara-opcodes",
        }


@pytest.mark.parametrize("cflags", [(), ("-ffunction-sections", "-fdata-sections")], ids=["text", "func-sections"])
@pytest.mark.parametrize("signatures", [(), SIGNATURES], ids=["structure-only", "with-signatures"])
@pytest.mark.parametrize("opt", ["-O0", "-O2", "-Os"])
def test_relocatable_object_variants_are_payload(
    build_dir: Path, opt: str, signatures: tuple[str, ...], cflags: tuple[str, ...]
) -> None:
    obj = compile_object(
        IMPLANT_SIM, build_dir, defines=(*FULL, *signatures), opt=opt, name="liblzma_la-crc64-fast.o", cflags=cflags
    )
    data = obj.read_bytes()
    [finding] = scan(data, OBJ_PATH)
    assert finding.rule == RULE and finding.kind is Kind.STRUCTURE
    assert finding.indicates is Indicates.PAYLOAD
    evidence = finding.evidence
    assert evidence["confidence_level"] == "high" and evidence["confidence"] == 1.0
    # An object file has no DT_NEEDED: the property does not apply, nor count.
    assert evidence["needs_ld_linux"] is None and evidence["max_score"] == 10
    for prop in ALL_PROPERTIES:
        assert evidence["properties"][prop] is (prop != "needs_ld_linux"), prop
    callees = {c["name"] for r in evidence["hooked_resolvers"] for c in r["callees"]}
    assert callees == {"_get_cpuid"}
    assert any("lh_sim_probe" in w["slot"] for w in evidence["got_write"])
    if not signatures:
        assert scan(data, OBJ_PATH, ByteSignatureDetector()) == []


@pytest.mark.parametrize("signatures", [(), SIGNATURES], ids=["structure-only", "with-signatures"])
def test_default_build_used_by_other_tests_is_flagged(build_dir: Path, signatures: tuple[str, ...]) -> None:
    """The plain build other tests and the demo use (no unwind gap, no extra
    link flag): the __tls_get_addr import alone brings ld-linux into DT_NEEDED
    (libc.so's linker script names it AS_NEEDED), as it would for a real build."""
    [finding] = scan(compile_shared(IMPLANT_SIM, build_dir, defines=signatures).read_bytes())
    evidence = finding.evidence
    assert evidence["properties"]["needs_ld_linux"] and not evidence["properties"]["eh_frame_gap"]
    assert evidence["score"] == 10 and evidence["confidence_level"] == "high"


def test_hook_alone_without_file_level_traits_is_still_flagged(build_dir: Path) -> None:
    """A next implant may drop the TLS import, the unwind gap and ld-linux: the
    hook reached from the resolvers is enough for a (medium) finding."""
    lib = compile_shared(IMPLANT_SIM, build_dir, defines=("NO_TLS_REF",), opt="-O2")
    [finding] = scan(lib.read_bytes())
    evidence = finding.evidence
    props = evidence["properties"]
    assert not props["tls_get_addr_without_tls"] and not props["needs_ld_linux"] and not props["eh_frame_gap"]
    assert props["got_write"] and props["got_call"] and props["bss_counter"] and props["frame_pointer_arg"]
    assert evidence["confidence_level"] == "medium"
    assert evidence["score"] == 7 and 0 < evidence["confidence"] < 1


def test_unwind_gap_from_a_separate_assembly_unit(build_dir: Path) -> None:
    """The code without unwind information may come from another translation
    unit (here the hand-written assembly of the control sample)."""
    lib = compile_shared(
        IMPLANT_SIM, build_dir, extra_sources=[NOCFI_ASM_CTL], ldflags=[LD_LINUX_FLAG]
    )
    [finding] = scan(lib.read_bytes())
    evidence = finding.evidence
    assert evidence["properties"]["eh_frame_gap"] and evidence["confidence_level"] == "high"
    assert evidence["eh_frame_gap_bytes"] >= EH_FRAME_GAP_MIN


def test_evidence_is_json_serialisable(build_dir: Path) -> None:
    import json

    [finding] = scan(compile_shared(IMPLANT_SIM, build_dir, ldflags=[LD_LINUX_FLAG]).read_bytes())
    assert json.loads(json.dumps(encode(finding)))["evidence"]["flagged"] is True


def test_found_by_the_layer_engine_with_every_detector(build_dir: Path) -> None:
    """In a real walk the finding carries the layer digest and the file's sha256."""
    data = compile_shared(IMPLANT_SIM, build_dir, opt="-Os", strip=True, ldflags=[LD_LINUX_FLAG]).read_bytes()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        info = tarfile.TarInfo(LIB_PATH.lstrip("/"))
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    blob = raw.getvalue()

    @contextmanager
    def opener() -> Iterator[io.BytesIO]:
        yield io.BytesIO(blob)

    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    detectors = (*[d for d in ALL_DETECTORS if d.name != DETECTOR.name], DETECTOR)
    result = walk_layer(TarBlobLayer(digest, len(blob), "", opener), detectors)
    assert result.stats.detector_errors == []
    [finding] = result.findings  # structure only: the variant has no signature bytes
    assert finding.rule == RULE and finding.layer == digest
    assert finding.sha256 == hashlib.sha256(data).hexdigest()


# -- controls -------------------------------------------------------------------


@pytest.mark.parametrize("opt", ["-O0", "-O2", "-Os"])
def test_honest_resolver_calling_local_helper_is_clean(build_dir: Path, opt: str) -> None:
    """NO_HOOK: the resolvers still hand frame pointers to the local _get_cpuid,
    and the file keeps every file-level trait; without the hook it is clean."""
    lib = compile_shared(IMPLANT_SIM, build_dir, defines=(*FULL, "NO_HOOK"), opt=opt, ldflags=[LD_LINUX_FLAG])
    data = lib.read_bytes()
    assert scan(data) == []
    evidence = assess(data)
    props = evidence["properties"]
    assert props["ifunc_resolver_calls_local"] and props["frame_pointer_arg"]
    assert props["tls_get_addr_without_tls"] and props["needs_ld_linux"] and props["eh_frame_gap"]
    assert not props["got_write"] and not props["bss_counter"]
    assert evidence["gate"] is False and evidence["flagged"] is False


@pytest.mark.parametrize("decoys", [False, True], ids=["plain", "with-decoys"])
@pytest.mark.parametrize("opt", ["-O0", "-O2"])
def test_builtin_cpu_supports_resolver_is_clean(build_dir: Path, opt: str, decoys: bool) -> None:
    lib = compile_shared(
        CPU_SUPPORTS_CTL,
        build_dir,
        defines=("WITH_DECOYS",) if decoys else (),
        opt=opt,
        soname="libctl.so.1",
        ldflags=[LD_LINUX_FLAG] if decoys else [],
    )
    data = lib.read_bytes()
    assert scan(data, "/usr/lib/x86_64-linux-gnu/libctl.so.1") == []
    # Why it is clean: the resolver does call a local function (libgcc's
    # __cpu_indicator_init, linked in statically), but nothing reached from it
    # writes a GOT slot or counts in .bss.
    evidence = assess(data)
    [resolver] = evidence["hooked_resolvers"]
    assert resolver["symbol"] == "ctl_sum"
    assert [c["name"] for c in resolver["callees"]] == ["__cpu_indicator_init"]
    assert ElfImage(data).section(".symtab") is not None
    assert evidence["properties"]["ifunc_resolver_calls_local"] is True
    assert evidence["gate"] is False and evidence["flagged"] is False
    if decoys:
        assert evidence["properties"]["tls_get_addr_without_tls"] and evidence["properties"]["eh_frame_gap"]


def test_assembly_without_unwind_info_is_clean(build_dir: Path) -> None:
    lib = compile_shared(NOCFI_ASM_CTL, build_dir, soname="libctlasm.so.1")
    data = lib.read_bytes()
    gap, section, _at = ElfImage(data).largest_unwind_gap()
    assert gap >= EH_FRAME_GAP_MIN and section == ".text"  # the gap really is there
    assert scan(data, "/usr/lib/x86_64-linux-gnu/libctlasm.so.1") == []
    assert DETECTOR.assess(data) is None  # no IFUNC at all: never a candidate


def test_gap_alone_object_file_is_clean(build_dir: Path) -> None:
    obj = compile_object(
        CPU_SUPPORTS_CTL, build_dir, defines=("WITH_DECOYS",), name="ctl.o", cflags=("-fno-asynchronous-unwind-tables",)
    )
    data = obj.read_bytes()
    assert scan(data, "/build/ctl.o") == []


# -- input handling ---------------------------------------------------------------


def _patched(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


def test_only_x86_64_shared_objects_executables_and_objects_are_wanted(build_dir: Path) -> None:
    data = compile_shared(IMPLANT_SIM, build_dir).read_bytes()
    entry = Entry(LIB_PATH, EntryType.FILE, size=len(data))
    assert DETECTOR.wants(entry, data[:HEAD_SIZE])
    aarch64 = _patched(data, 18, "<H", 183)  # EM_AARCH64
    assert not DETECTOR.wants(entry, aarch64[:HEAD_SIZE])
    assert list(DETECTOR.inspect(entry, aarch64)) == []
    assert DETECTOR.wants(entry, _patched(data, 16, "<H", 2)[:HEAD_SIZE])  # ET_EXEC: a static link
    assert not DETECTOR.wants(entry, _patched(data, 16, "<H", 4)[:HEAD_SIZE])  # ET_CORE
    elf32 = data[:4] + b"\x01" + data[5:]
    assert not DETECTOR.wants(entry, elf32[:HEAD_SIZE])
    assert not DETECTOR.wants(entry, b"!<arch>\n" + b"\0" * 56)
    assert not head_is_x86_64_candidate(b"\x7fELF")


def test_truncated_or_garbled_files_give_nothing(build_dir: Path) -> None:
    data = compile_shared(IMPLANT_SIM, build_dir).read_bytes()
    for broken in (data[:64], data[:4096], data[: len(data) // 2], data[:40] + b"\xff" * 24 + data[64:]):
        assert scan(broken) == []


def test_rule_tables_name_every_weight() -> None:
    tables = DETECTOR.rule_tables()
    assert tables["rule"] == RULE
    assert set(tables["weights"]) == {
        "got_write",
        "got_call",
        "bss_counter",
        "frame_pointer_arg",
        "tls_get_addr_without_tls",
        "needs_ld_linux",
        "eh_frame_gap",
    }
    assert DETECTOR.name == "ifunc-structure" and DETECTOR.version == 4
    assert tables["bounds"]["max_size"] == 64 * 1024 * 1024  # held whole to be parsed: see base.HOLD_MAX


def test_glibc_resolvers_are_judged_quickly_and_clean() -> None:
    """libc.so.6 has dozens of IFUNC resolvers (and IRELATIVE relocations); none
    calls local code, so the cheap stage ends the analysis."""
    libc = Path("/usr/lib/x86_64-linux-gnu/libc.so.6").read_bytes()
    image = ElfImage(libc)
    assert image.has_ifunc() and len(image.ifunc_symbols()) > 40
    start = time.perf_counter()
    for _ in range(5):
        assert scan(libc, "/usr/lib/x86_64-linux-gnu/libc.so.6") == []
    per_call = (time.perf_counter() - start) / 5
    assert DETECTOR.assess(libc) is None
    assert per_call < 0.25, f"{per_call:.3f} s per libc.so.6"


# -- the fast ELF reader and the cheap walk agree with the thorough tools -------------


def test_eh_frame_ranges_match_pyelftools(build_dir: Path) -> None:
    from elftools.dwarf.callframe import FDE
    from elftools.elf.elffile import ELFFile

    for path in (
        compile_shared(IMPLANT_SIM, build_dir, opt="-O2"),
        compile_shared(CPU_SUPPORTS_CTL, build_dir, soname="libctl.so.1"),
        Path("/usr/lib/x86_64-linux-gnu/libc.so.6"),
    ):
        data = path.read_bytes()
        dwarf = ELFFile(io.BytesIO(data)).get_dwarf_info()
        expected = sorted(
            (e.header["initial_location"], e.header["initial_location"] + e.header["address_range"])
            for e in dwarf.EH_CFI_entries()
            if isinstance(e, FDE)
        )
        assert sorted(ElfImage(data).eh_frame_ranges()) == expected, path


def test_eh_frame_ranges_of_an_object_file_start_at_its_functions(build_dir: Path) -> None:
    """In a .o the FDEs point at functions only through .rela.eh_frame."""
    image = ElfImage(compile_object(IMPLANT_SIM, build_dir, defines=FULL, opt="-O2", name="sim.o").read_bytes())
    symtab = image.section(".symtab")
    assert symtab is not None
    functions = {s.address for s in image.symbols(symtab) if s.type in (2, 10) and s.defined}
    starts = {lo for lo, _hi in image.eh_frame_ranges()}
    assert starts and starts <= functions
    assert "lh_sim_table_code" in {s.name for s in image.symbols(symtab)}
    gap, _section, _at = image.largest_unwind_gap()
    assert gap >= EH_FRAME_GAP_MIN  # the asm filler, and nothing else that large


def test_quick_ifunc_check_agrees_with_the_full_reader(build_dir: Path) -> None:
    from layerhound.detectors.elfscan import quick_has_ifunc

    paths = [
        compile_shared(IMPLANT_SIM, build_dir),
        compile_object(IMPLANT_SIM, build_dir, name="sim.o"),
        compile_shared(NOCFI_ASM_CTL, build_dir, soname="libctlasm.so.1"),
        *sorted(Path("/usr/lib/x86_64-linux-gnu").glob("lib[a-f]*.so.*"))[:60],
    ]
    verdicts = {}
    for path in paths:
        if path.is_symlink():
            continue
        data = path.read_bytes()
        if not head_is_x86_64_candidate(data[:20]):
            continue
        verdicts[path.name] = quick_has_ifunc(data)
        assert verdicts[path.name] == ElfImage(data).has_ifunc(), path
    assert verdicts["liblzma.so.5"] is True and verdicts["sim.o"] is True
    assert verdicts["libctlasm.so.1"] is False


@pytest.mark.parametrize(
    "sample",
    ["implant-O0-stripped", "implant-Os", "cpu-supports-decoys", "host-ld.so", "host-libatomic"],
)
def test_cheap_walk_never_hides_what_the_detailed_walk_finds(
    build_dir: Path, sample: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cheap walk may skip the detailed one only where it cannot matter:
    forcing the detailed walk everywhere gives the same properties."""
    from layerhound.detectors import structure

    data = {
        "implant-O0-stripped": lambda: compile_shared(IMPLANT_SIM, build_dir, defines=FULL, opt="-O0", strip=True),
        "implant-Os": lambda: compile_shared(IMPLANT_SIM, build_dir, opt="-Os"),
        "cpu-supports-decoys": lambda: compile_shared(
            CPU_SUPPORTS_CTL, build_dir, defines=("WITH_DECOYS",), soname="libctl.so.1"
        ),
        "host-ld.so": lambda: Path("/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"),
        "host-libatomic": lambda: Path("/usr/lib/x86_64-linux-gnu/libatomic.so.1").resolve(),
    }[sample]().read_bytes()
    cheap = assess(data)
    original = structure._lite_walk

    def always_detailed(*args: Any) -> tuple[Any, bool]:
        return original(*args)[0], True

    monkeypatch.setattr(structure, "_lite_walk", always_detailed)
    thorough = StructureDetector().assess(data)
    assert thorough is not None
    assert thorough["hidden_functions_walked_in_detail"] == len(thorough["hidden_functions"])
    cheap.pop("hidden_functions_walked_in_detail")
    thorough.pop("hidden_functions_walked_in_detail")
    assert cheap == thorough
