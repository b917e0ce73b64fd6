"""Benchmark: a crawl of 200 images over 4 shared bases vs a scan of just their unique layers.

Builds 4 bases, each one gzip layer of a debootstrapped Debian bookworm
(+ openssh-server) made distinct by one file, and 50 images on each with one
small layer of their own; pushes them to Debian's docker-registry on loopback
(skopeo), then times, in the same run and against the same registry:

  layers  every unique layer (4 bases + 200 small ones) downloaded and judged
          once, on a pool of --jobs worker processes: the least any crawl must do
  crawl   ``layerhound crawl`` of the 4 repositories of derived images and the
          bases, into a fresh SQLite store, with the same --jobs: tag listing,
          HEADs, manifests, configs, layers, 200 assessments, store writes,
          lineage

and prints crawl/layers (the issue's bound: 1.3). Best of --rounds each.

    .venv/bin/python bench/crawl.py [--jobs 2] [--rounds 2]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import io
import multiprocessing
import resource
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from isal import igzip

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from layerhound.cli import main as layerhound
from layerhound.crawl.worker import judge_layer_task
from layerhound.detectors.registry import ALL_DETECTORS
from layerhound.layers.ref import BlobSource, LayerRef
from layerhound.registry.settings import RegistrySettings
from layerhound.store.results import ResultStore
from tests.support.debian import debootstrap_rootfs
from tests.support.imagewriter import OCI_LAYER_GZIP, ImageSpec, Layer, WrittenImage, write_oci
from tests.support.registry import RegistryServer, push

BASES, PER_BASE = 4, 50


def base_blob(root: Path, number: int) -> Layer:
    """The Debian root as one gzip layer, with one file that makes it base ``number``."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        archive.add(str(root), arcname=".", recursive=True)
        marker = f"base {number}\n".encode()
        info = tarfile.TarInfo("etc/layerhound-base")
        info.size = len(marker)
        archive.addfile(info, io.BytesIO(marker))
    tar = raw.getvalue()
    return Layer.raw_blob(igzip.compress(tar, compresslevel=1), "sha256:" + hashlib.sha256(tar).hexdigest(),
                          OCI_LAYER_GZIP)


def build(layout: Path, registry: RegistryServer) -> list[WrittenImage]:
    root = debootstrap_rootfs("bookworm-ssh", include=("openssh-server",))
    written: list[WrittenImage] = []
    for b in range(BASES):
        base = base_blob(root, b)
        image = write_oci(layout, ImageSpec([base], created=f"2024-03-{b + 1:02d}T00:00:00Z"), tag=f"base{b}")
        push(f"oci:{layout}:base{b}", registry, f"bench/base{b}", "latest")
        written.append(image)
        for n in range(PER_BASE):
            app = Layer.files({f"/opt/app/{n}.txt": f"app {n} on base {b}\n" * 20, "/opt/app/VERSION": f"{n}\n"})
            spec = ImageSpec([base, app], created=f"2024-04-{n % 28 + 1:02d}T{b:02d}:00:00Z")
            written.append(write_oci(layout, spec, tag=f"app{b}-{n}"))
            push(f"oci:{layout}:app{b}-{n}", registry, f"bench/app{b}", f"v{n}")
        print(f"  base {b}: pushed with {PER_BASE} images built on it", flush=True)
    return written


def unique_layers(images: list[WrittenImage], registry: RegistryServer) -> list[LayerRef]:
    seen: dict[str, LayerRef] = {}
    for index, image in enumerate(images):
        base, per = divmod(index, PER_BASE + 1)
        repository = f"bench/base{base}" if per == 0 else f"bench/app{base}"
        for layer in image.layers:
            source = BlobSource("registry", registry.host, repository=repository)
            seen.setdefault(layer.digest, LayerRef(source, layer.digest, layer.diff_id, layer.size, layer.media_type))
    return list(seen.values())


def judge_layers(refs: list[LayerRef], settings: RegistrySettings, jobs: int) -> float:
    names = tuple(d.name for d in ALL_DETECTORS)
    start = time.perf_counter()
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        outcomes = list(pool.map(judge_layer_task, refs, [settings] * len(refs), [names] * len(refs)))
    elapsed = time.perf_counter() - start
    failed = [o for o in outcomes if o.failure is not None]
    assert not failed, failed[:3]
    return elapsed


def crawl(registry: RegistryServer, db: Path, jobs: int) -> float:
    repositories = [f"docker://{registry.host}/bench/{name}{b}" for name in ("base", "app") for b in range(BASES)]
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    status = layerhound(["crawl", "--insecure-registry", registry.host, "--db", f"sqlite:///{db}", "--jobs", str(jobs),
                         "--no-progress", "--format", "json", "-o", str(db.with_suffix(".json")), *repositories])
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    print(f"  the crawl's coordinator used {after.ru_utime - cpu.ru_utime + after.ru_stime - cpu.ru_stime:.2f} s "
          "of CPU (listing, manifests, store, assessments, lineage)", flush=True)
    assert status == 0, status
    with ResultStore.open(f"sqlite:///{db}") as store:
        runs = store.runs()
        assert runs[-1][6]["images"] == BASES * (PER_BASE + 1), runs[-1]
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="layerhound-bench-crawl-") as tmp:
        work = Path(tmp)
        registry = RegistryServer(work / "registry", "anonymous").start()
        try:
            print(f"building and pushing {BASES} bases and {BASES * PER_BASE} derived images…", flush=True)
            began = time.perf_counter()
            images = build(work / "layout", registry)
            print(f"  done in {time.perf_counter() - began:.0f} s", flush=True)
            refs = unique_layers(images, registry)
            settings = RegistrySettings(insecure_registries=frozenset({registry.host}))
            layer_times, crawl_times = [], []
            for round_ in range(args.rounds):  # interleaved: both see the same machine state
                layer_times.append(judge_layers(refs, settings, args.jobs))
                crawl_times.append(crawl(registry, work / f"results-{round_}.sqlite3", args.jobs))
                print(f"  round {round_ + 1}: layers {layer_times[-1]:.2f} s, crawl {crawl_times[-1]:.2f} s",
                      flush=True)
        finally:
            registry.stop()
    t_layers, t_crawl = min(layer_times), min(crawl_times)
    print(f"images: {len(images)} ({BASES} bases + {BASES * PER_BASE} derived), unique layers: {len(refs)}, "
          f"jobs: {args.jobs}")
    print(f"unique layers judged once (pool of {args.jobs}): {t_layers:.2f} s")
    print(f"layerhound crawl of the same images:          {t_crawl:.2f} s")
    print(f"ratio crawl/layers: {t_crawl / t_layers:.2f} (bound: 1.3)")


if __name__ == "__main__":
    main()
