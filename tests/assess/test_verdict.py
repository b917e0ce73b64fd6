"""The verdict ladder and the simple reachability rule, on hand-made layer results."""

from __future__ import annotations

from typing import Any

from layerhound.assess.verdict import assess_image
from layerhound.model import Entry, EntryType, Fact, Finding, Indicates, Kind, LayerResult, Verdict

LIB = "/usr/lib/x86_64-linux-gnu"
SSHD_CONFIG: dict[str, Any] = {"config": {"Cmd": ["/usr/sbin/sshd", "-D"], "ExposedPorts": {"22/tcp": {}}}}


def implant(path: str) -> Finding:
    return Finding("xz-get-cpuid-prologue", Kind.SIGNATURE, Indicates.IMPLANT, path, layer="sha256:" + "a" * 64)


def affected(version: str = "5.6.1-1") -> Finding:
    return Finding(
        "dpkg-affected-version",
        Kind.PACKAGE,
        Indicates.AFFECTED_VERSION,
        "/var/lib/dpkg/status",
        evidence={"package": "liblzma5", "version": version, "database": "dpkg"},
    )


def elf(path: str, needed: list[str], soname: str | None = None) -> Fact:
    return Fact(
        "elf-dynamic",
        path,
        {
            "class": 64,
            "machine": "x86_64",
            "type": "dyn",
            "needed": needed,
            "rpath": [],
            "runpath": [],
            "soname": soname,
        },
    )


def base_layer(*findings: Finding, sshd: bool = True, lib_name: str = "liblzma.so.5.6.1") -> LayerResult:
    """A usrmerged Debian-like layout: sshd → libsystemd.so.0 → liblzma.so.5 (the chain distributions made)."""
    entries = [
        Entry("/lib", EntryType.SYMLINK, linkname="usr/lib"),
        Entry("/usr", EntryType.DIR),
        Entry(LIB, EntryType.DIR),
        Entry(f"{LIB}/{lib_name}", EntryType.FILE, 200),
        Entry(f"{LIB}/liblzma.so.5", EntryType.SYMLINK, linkname=lib_name),
        Entry(f"{LIB}/libsystemd.so.0.35.0", EntryType.FILE, 200),
        Entry(f"{LIB}/libsystemd.so.0", EntryType.SYMLINK, linkname="libsystemd.so.0.35.0"),
        Entry("/var/lib/dpkg/status", EntryType.FILE, 100),
    ]
    facts = [
        elf(f"{LIB}/{lib_name}", ["libc.so.6"], "liblzma.so.5"),
        elf(f"{LIB}/libsystemd.so.0.35.0", ["liblzma.so.5", "libc.so.6"], "libsystemd.so.0"),
    ]
    if sshd:
        entries.append(Entry("/usr/sbin/sshd", EntryType.FILE, 900))
        facts.append(elf("/usr/sbin/sshd", ["libsystemd.so.0", "libc.so.6"]))
    return LayerResult(digest="sha256:" + "a" * 64, size=1, entries=entries, findings=list(findings), facts=facts)


def verdict(layers: list[LayerResult], config: dict[str, Any] | None = None) -> tuple[Verdict, list[str]]:
    result = assess_image("test", None, None, SSHD_CONFIG if config is None else config, layers)
    return result.verdict, result.reasons


def test_implant_loaded_by_running_sshd_is_reachable() -> None:
    v, reasons = verdict([base_layer(implant(f"{LIB}/liblzma.so.5.6.1"), affected())])
    assert v is Verdict.BACKDOORED_REACHABLE
    assert any(
        "/usr/sbin/sshd → libsystemd.so.0" in r and "liblzma.so.5 (/usr/lib/x86_64-linux-gnu/liblzma.so.5.6.1" in r
        for r in reasons
    ), reasons
    assert any("package database agrees" in r for r in reasons)


def test_no_sshd_makes_it_dormant_and_says_why() -> None:
    v, reasons = verdict([base_layer(implant(f"{LIB}/liblzma.so.5.6.1"), sshd=False)])
    assert v is Verdict.BACKDOORED_DORMANT
    assert any("no sshd binary" in r for r in reasons)
    assert any("version-matching scanner would miss" in r for r in reasons)


def test_image_that_does_not_start_sshd_is_dormant() -> None:
    layer = base_layer(implant(f"{LIB}/liblzma.so.5.6.1"))
    layer.entries.append(Entry("/usr/bin/bash", EntryType.FILE, 10))
    layer.entries.append(Entry("/bin", EntryType.SYMLINK, linkname="usr/bin"))
    v, reasons = verdict([layer], {"config": {"Cmd": ["/bin/bash"]}})
    assert v is Verdict.BACKDOORED_DORMANT
    assert any("does not start sshd: /bin/bash" in r for r in reasons)


def test_implant_off_the_search_path_is_dormant() -> None:
    layer = base_layer(implant("/opt/app/liblzma.so.5"), lib_name="liblzma.so.5.4.1")
    layer.entries.append(Entry("/opt/app/liblzma.so.5", EntryType.FILE, 10))
    layer.facts.append(elf("/opt/app/liblzma.so.5", ["libc.so.6"], "liblzma.so.5"))
    v, reasons = verdict([layer])
    assert v is Verdict.BACKDOORED_DORMANT
    assert any(
        "would load liblzma.so.5 from /usr/lib/x86_64-linux-gnu/liblzma.so.5.4.1" in r
        and "not the implant (/opt/app/liblzma.so.5)" in r
        for r in reasons
    ), reasons


def test_implant_deleted_in_upper_layer_is_history() -> None:
    upper = LayerResult(digest="sha256:" + "b" * 64, size=1, whiteouts=[f"{LIB}/liblzma.so.5.6.1"])
    v, reasons = verdict([base_layer(implant(f"{LIB}/liblzma.so.5.6.1")), upper])
    assert v is Verdict.BACKDOOR_IN_HISTORY
    assert "lower layer" in reasons[0]


def test_implant_replaced_by_clean_file_is_history() -> None:
    upper = LayerResult(
        digest="sha256:" + "b" * 64, size=1, entries=[Entry(f"{LIB}/liblzma.so.5.6.1", EntryType.FILE, 5)]
    )
    v, _ = verdict([base_layer(implant(f"{LIB}/liblzma.so.5.6.1")), upper])
    assert v is Verdict.BACKDOOR_IN_HISTORY


def test_affected_version_with_clean_bytes() -> None:
    v, reasons = verdict([base_layer(affected("5.6.0-0.2"))])
    assert v is Verdict.AFFECTED_VERSION_NOT_INJECTED
    assert "liblzma5 5.6.0-0.2" in reasons[0]


def test_source_material_only() -> None:
    src = Finding("known-bad-hash", Kind.HASH, Indicates.SOURCE, "/src/xz-5.6.1.tar.gz")
    layer = base_layer(src, affected())
    layer.entries.append(Entry("/src/xz-5.6.1.tar.gz", EntryType.FILE, 10))
    v, _ = verdict([layer])
    assert v is Verdict.SOURCE_ARTIFACTS


def test_payload_object_is_dormant() -> None:
    payload = Finding("known-bad-hash", Kind.HASH, Indicates.PAYLOAD, "/build/liblzma_la-crc64-fast.o")
    layer = base_layer(payload)
    layer.entries.append(Entry("/build/liblzma_la-crc64-fast.o", EntryType.FILE, 10))
    v, _ = verdict([layer])
    assert v is Verdict.BACKDOORED_DORMANT


def test_nothing_is_clean() -> None:
    v, reasons = verdict([base_layer()])
    assert v is Verdict.CLEAN and reasons == ["no evidence of CVE-2024-3094"]


def test_verdict_ranks_follow_design_order() -> None:
    ladder = [
        Verdict.CLEAN,
        Verdict.AFFECTED_VERSION_NOT_INJECTED,
        Verdict.SOURCE_ARTIFACTS,
        Verdict.BACKDOOR_IN_HISTORY,
        Verdict.BACKDOORED_DORMANT,
        Verdict.BACKDOORED_REACHABLE,
    ]
    assert [v.rank for v in ladder] == sorted(v.rank for v in ladder)
    assert Verdict.ERROR.rank < Verdict.CLEAN.rank
