"""Benchmark: what the structural IFUNC detector adds to a layer scan.

Issue 3 requires that scanning a bookworm + openssh-server image stays within
1.5x of the same scan without the structural detector. This builds one gzip
layer from the debootstrapped root (as bench/layer_walk.py does) and times, in
the same process and on the same blob, best of ROUNDS each, alternating so
that drift hits both sides alike:

  without   walk_layer with every registered detector except ifunc-structure
  with      the same plus ifunc-structure

and prints the ratio with/without. Run: .venv/bin/python bench/structure_overhead.py
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.layer_walk import blob_layer, build_blob
from layerhound.detectors.base import Detector
from layerhound.detectors.registry import ALL_DETECTORS
from layerhound.detectors.structure import StructureDetector
from layerhound.layers.walk import walk_layer
from tests.support.debian import debootstrap_rootfs

ROUNDS = 3
LIMIT = 1.5


def scan(blob: bytes, digest: str, detectors: Sequence[Detector]) -> float:
    start = time.perf_counter()
    result = walk_layer(blob_layer(blob, digest), detectors)
    elapsed = time.perf_counter() - start
    assert not result.findings, result.findings
    assert not result.stats.detector_errors, result.stats.detector_errors
    return elapsed


def detector_sets() -> tuple[tuple[Detector, ...], tuple[Detector, ...]]:
    """(without, with) the structural detector, whether or not it is registered yet."""
    structure = next((d for d in ALL_DETECTORS if d.name == StructureDetector.name), None) or StructureDetector()
    without = tuple(d for d in ALL_DETECTORS if d.name != StructureDetector.name)
    return without, (*without, structure)


def main() -> None:
    root = debootstrap_rootfs("bookworm-ssh", include=("openssh-server",))
    blob = build_blob(root)
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    without, with_structure = detector_sets()
    scan(blob, digest, with_structure)  # warm-up: imports, capstone handles, page cache
    t_without: list[float] = []
    t_with: list[float] = []
    for _ in range(ROUNDS):
        t_without.append(scan(blob, digest, without))
        t_with.append(scan(blob, digest, with_structure))
    best_without, best_with = min(t_without), min(t_with)
    ratio = best_with / best_without
    print(f"layer: {len(blob) / 1e6:.1f} MB gzip; detectors: {', '.join(d.name for d in with_structure)}")
    print(f"walk_layer without ifunc-structure: {best_without:.3f} s (best of {ROUNDS})")
    print(f"walk_layer with ifunc-structure:    {best_with:.3f} s (best of {ROUNDS})")
    print(f"ratio with/without: {ratio:.3f}x (limit {LIMIT}x) {'OK' if ratio <= LIMIT else 'OVER'}")


if __name__ == "__main__":
    main()
