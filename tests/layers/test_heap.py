"""A file held whole costs its size once, and files held in turn do not add up.

Measured on the real CLI under GNU time: a zstd layer of eight 40 MiB shared objects (held
whole for the structure detector, one at a time), with about 65 MiB of interpreter and libraries besides
(14 of them YARA-X's compiled signature rule).
A join that kept a file's chunks alive beside it, or held files left resident, would fail.
Whether ``heap.bound_heap`` matters shows on real layers (``make bench``), where large
allocations interleave with small ones; here only that it takes effect.
"""

from __future__ import annotations

from pathlib import Path

from layerhound.layers.heap import bound_heap
from tests.support.cli import measured_scan
from tests.support.imagewriter import ImageSpec, Layer, write_oci

SIZE = 40 * 1024 * 1024
FILES = 8


def test_the_threshold_is_set_on_glibc() -> None:
    assert bound_heap() is True


def test_large_files_held_in_turn_do_not_add_up(tmp_path: Path) -> None:
    lib = tmp_path / "root" / "usr" / "lib"
    lib.mkdir(parents=True)
    header = b"\x7fELF\x02\x01\x01" + b"\0" * 9 + b"\x03\x00\x3e\x00"  # ET_DYN, x86-64: held to be parsed
    for index in range(FILES):
        with (lib / f"libbig{index}.so").open("wb") as handle:
            handle.write(header)
            handle.write(bytes([index + 1]) * (SIZE - len(header)))
    write_oci(tmp_path / "layout", ImageSpec([Layer.from_dir(tmp_path / "root")]), compression="zstd")
    done = measured_scan(f"oci:{tmp_path / 'layout'}:latest", tmp_path / "out.json")
    assert done.status == 0, done.stderr
    peak_mib = done.peak_mib
    assert peak_mib < (SIZE >> 20) + 64, f"peak {peak_mib:.0f} MiB for {FILES} files of {SIZE >> 20} MiB"
