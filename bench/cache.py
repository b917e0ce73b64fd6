"""Benchmark: a scan with an empty layer cache vs the same scan fully cached.

Builds an OCI layout holding the debootstrapped Debian bookworm (+ openssh-server)
as one gzip layer, as tests/conftest.py's ``bookworm_layer`` does, then times
``scan_references`` on it, best of 3 each:

  first   a fresh cache: the blob is read, walked and its result stored
  cached  the same cache again: one lookup, no blob opened, assessment only

and prints the ratio cached/first. Run: .venv/bin/python bench/cache.py
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from isal import igzip

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from layerhound.detectors.registry import ALL_DETECTORS
from layerhound.model import ImageResult
from layerhound.scan import scan_references
from layerhound.store.cache import CACHE_FILE, LayerCache
from tests.support.debian import debootstrap_rootfs
from tests.support.imagewriter import OCI_LAYER_GZIP, ImageSpec, Layer, write_oci

ROUNDS = 3


def build_layout(out: Path) -> str:
    root = debootstrap_rootfs("bookworm-ssh", include=("openssh-server",))
    tar = Layer.from_dir(root).tar_bytes()
    blob = igzip.compress(tar, compresslevel=1)
    layer = Layer.raw_blob(blob, "sha256:" + hashlib.sha256(tar).hexdigest(), OCI_LAYER_GZIP)
    write_oci(out, ImageSpec([layer], cmd=["/usr/sbin/sshd", "-D"]), tag="bookworm")
    print(f"layer: {len(blob) / 1e6:.1f} MB gzip, {len(tar) / 1e6:.1f} MB tar")
    return f"oci:{out}:bookworm"


def scan(ref: str, cache_path: Path) -> ImageResult:
    with LayerCache(cache_path) as cache:
        [result] = scan_references([ref], ALL_DETECTORS, cache=cache)
    return result


def best(fn: Callable[[], ImageResult]) -> tuple[float, ImageResult]:
    times, result = [], None
    for _ in range(ROUNDS):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    assert result is not None
    return min(times), result


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="layerhound-bench-") as tmp:
        ref = build_layout(Path(tmp) / "layout")
        fresh = iter(range(ROUNDS))
        t_first, first = best(lambda: scan(ref, Path(tmp) / f"cache-{next(fresh)}" / CACHE_FILE))
        warm = Path(tmp) / "cache-0" / CACHE_FILE
        t_cached, cached = best(lambda: scan(ref, warm))
        assert not any(layer.cached for layer in first.layers)
        assert all(layer.cached for layer in cached.layers)
        assert (cached.verdict, cached.reasons) == (first.verdict, first.reasons), (cached, first)
        print(f"cache file: {warm.stat().st_size / 1e6:.1f} MB, {first.layers[0].stats.entries} entries")
        print(f"first scan (empty cache, blob read and stored): {t_first:.3f} s")
        print(f"second scan (fully cached, no blob opened):     {t_cached:.3f} s")
        print(f"ratio cached/first: {t_cached / t_first:.3f} ({t_first / t_cached:.0f}x faster)")


if __name__ == "__main__":
    main()
