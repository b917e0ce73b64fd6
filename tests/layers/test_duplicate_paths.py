"""A path that appears twice in one layer is what its last entry says, as runtimes unpack it.

Checked against umoci's unpacking of the same layout: the bytes left at the path are the
last copy's. A finding about the earlier copy is history (never in the final filesystem),
and an implant in the last copy is in the final filesystem whatever came before it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.cli import scan_json
from tests.support.imagewriter import ImageSpec, Layer, file, write_oci

LIB = "/usr/lib/x86_64-linux-gnu/liblzma.so.5.6.1"
CLEAN = b"\x7fELF\x02\x01\x01" + bytes(9) + b"\x03\x00\x3e\x00" + b"not the implant" * 100


def unpacked_by_umoci(layout: Path, bundle: Path) -> bytes:
    subprocess.run(["umoci", "unpack", "--rootless", "--image", f"{layout}:latest", str(bundle)],
                   check=True, capture_output=True)
    return (bundle / "rootfs" / LIB.lstrip("/")).read_bytes()


@pytest.mark.parametrize("implant_last", [False, True], ids=["implant-then-clean", "clean-then-implant"])
def test_the_last_copy_of_a_path_is_the_one_judged_in_place(tmp_path: Path, implant_so: bytes,
                                                             implant_last: bool) -> None:
    copies = [CLEAN, implant_so] if implant_last else [implant_so, CLEAN]
    layer = Layer([(LIB, file(copies[0], 0o755)), (LIB, file(copies[1], 0o755))])
    write_oci(tmp_path / "layout", ImageSpec([layer]))
    assert unpacked_by_umoci(tmp_path / "layout", tmp_path / "bundle") == copies[1]
    run = scan_json("--no-cache", f"oci:{tmp_path / 'layout'}:latest")
    [image] = run.images
    signatures = [f for f in image["findings"] if f["kind"] == "signature"]
    assert signatures, image["findings"]
    assert {f["in_final_fs"] for f in signatures} == {implant_last}
    if implant_last:
        assert image["verdict"] in ("backdoored-reachable", "backdoored-dormant")
    else:
        assert image["verdict"] == "backdoor-in-history"
        assert all(f["evidence"].get("replaced_later_in_layer") for f in signatures)


def test_a_hard_link_made_before_the_replacement_keeps_the_implant(tmp_path: Path, implant_so: bytes) -> None:
    """implant, a hard link to it, then a clean copy over the first name: the link still holds the implant."""
    from tests.support.imagewriter import hardlink

    link = "/usr/lib/x86_64-linux-gnu/liblzma.so.5"
    layer = Layer([(LIB, file(implant_so, 0o755)), (link, hardlink(LIB)), (LIB, file(CLEAN, 0o755))])
    write_oci(tmp_path / "layout", ImageSpec([layer]))
    assert unpacked_by_umoci(tmp_path / "layout", tmp_path / "bundle") == CLEAN
    assert (tmp_path / "bundle" / "rootfs" / link.lstrip("/")).read_bytes() == implant_so
    run = scan_json("--no-cache", f"oci:{tmp_path / 'layout'}:latest")
    [image] = run.images
    assert image["verdict"] in ("backdoored-reachable", "backdoored-dormant"), image["reasons"]
    signatures = [f for f in image["findings"] if f["kind"] == "signature"]
    assert {(f["path"], f["in_final_fs"]) for f in signatures} == {(LIB, False), (link, True)}
