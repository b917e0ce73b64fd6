"""Benchmark: scanning a layer vs merely decompressing and listing it.

Builds one gzip layer from a debootstrapped Debian bookworm (+ openssh-server),
then times, in the same process and on the same bytes:

  baseline  decompress (ISA-L) and list every tar member, reading all data
  scan      layerhound's walk_layer with every detector

and prints the ratio scan/baseline. Run: .venv/bin/python bench/layer_walk.py
"""

from __future__ import annotations

import hashlib
import io
import sys
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from isal import igzip

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from layerhound.detectors.registry import ALL_DETECTORS
from layerhound.layers.layer import TarBlobLayer
from layerhound.layers.walk import walk_layer
from tests.support.debian import debootstrap_rootfs

ROUNDS = 3


def build_blob(root: Path) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        archive.add(str(root), arcname=".", recursive=True)
    return igzip.compress(raw.getvalue(), compresslevel=1)


def baseline(blob: bytes) -> int:
    members = 0
    with igzip.IGzipFile(fileobj=io.BytesIO(blob)) as stream, tarfile.open(fileobj=stream, mode="r|") as archive:
        for info in archive:
            members += 1
            if info.isreg():
                handle = archive.extractfile(info)
                assert handle is not None
                while handle.read(1 << 20):
                    pass
    return members


def blob_layer(blob: bytes, digest: str) -> TarBlobLayer:
    """The blob as a layer read from memory (no disk or network in the timing)."""

    @contextmanager
    def opener() -> Iterator[io.BytesIO]:
        yield io.BytesIO(blob)

    return TarBlobLayer(digest, len(blob), "", opener)


def scan(blob: bytes, digest: str) -> int:
    result = walk_layer(blob_layer(blob, digest), ALL_DETECTORS)
    assert not result.findings, result.findings
    return result.stats.entries


def best(fn, *args) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    root = debootstrap_rootfs("bookworm-ssh", include=("openssh-server",))
    blob = build_blob(root)
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    members = baseline(blob)
    t_base = best(baseline, blob)
    t_scan = best(scan, blob, digest)
    print(f"layer: {len(blob) / 1e6:.1f} MB gzip, {members} members")
    print(f"baseline (decompress + list + read all): {t_base:.3f} s")
    print(f"layerhound walk_layer (all detectors):   {t_scan:.3f} s")
    print(f"ratio scan/baseline: {t_scan / t_base:.2f}x")


if __name__ == "__main__":
    main()
