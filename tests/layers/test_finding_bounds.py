"""A crafted layer cannot make the report (or memory) grow without bound through findings or notes.

Cheap ways to make many: hard links to one implant (512 bytes of tar each), tiny files that
each match a rule, tiny files that each break a detector. Past the bounds the findings and
notes are counted, not listed, and the verdict says so.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

from layerhound.assess.attribution import MAX_ALIASES
from layerhound.layers.walk import walk_layer
from layerhound.model import MAX_FINDINGS, MAX_LISTED
from tests.layers.test_walk import ELF, ExplodingDetector, RecordingDetector, blob_layer
from tests.support.cli import measured_scan
from tests.support.imagewriter import ImageSpec, Layer, write_oci

LIB = "usr/lib/x86_64-linux-gnu/liblzma.so.5.6.1"


def _tiny_elf_files(count: int) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        for index in range(count):
            info = tarfile.TarInfo(f"lib/f{index}.so")
            info.size = len(ELF) + 8
            archive.addfile(info, io.BytesIO(ELF + b"%08d" % index))
    return out.getvalue()


def test_findings_past_the_bound_are_counted_not_listed() -> None:
    layer = walk_layer(blob_layer(_tiny_elf_files(MAX_FINDINGS + 500)), [RecordingDetector()])
    assert len(layer.findings) == MAX_FINDINGS
    assert layer.stats.findings_over_bound == 500


def test_detector_errors_past_the_bound_are_counted_in_one_line() -> None:
    layer = walk_layer(blob_layer(_tiny_elf_files(MAX_LISTED + 250)), [ExplodingDetector()])
    assert len(layer.stats.detector_errors) == MAX_LISTED + 1
    assert layer.stats.detector_errors[-1] == "... and 250 more"


def test_two_hundred_thousand_hard_links_to_an_implant(tmp_path: Path, implant_so: bytes) -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        info = tarfile.TarInfo(LIB)
        info.size, info.mode = len(implant_so), 0o755
        archive.addfile(info, io.BytesIO(implant_so))
        for index in range(200_000):
            link = tarfile.TarInfo(f"opt/l/{index}")
            link.type, link.linkname = tarfile.LNKTYPE, LIB
            archive.addfile(link)
    tar = out.getvalue()
    layer = Layer.raw_blob(gzip.compress(tar, 1), "sha256:" + hashlib.sha256(tar).hexdigest())
    write_oci(tmp_path / "layout", ImageSpec([layer]))
    report = tmp_path / "report.json"
    run = measured_scan(f"oci:{tmp_path / 'layout'}", report)
    assert run.status == 1, run.stderr
    [image] = json.loads(report.read_text())["images"]
    assert image["verdict"] in ("backdoored-reachable", "backdoored-dormant")
    per_rule: dict[str, int] = {}
    for finding in image["findings"]:
        per_rule[finding["rule"]] = per_rule.get(finding["rule"], 0) + 1
    per_rule.pop("no-package-record", None)  # the assessment's own, about the image
    assert per_rule and all(count == 1 + MAX_ALIASES for count in per_rule.values()), per_rule
    counted = [f["evidence"]["more_hard_links"] for f in image["findings"] if "more_hard_links" in f["evidence"]]
    assert counted and set(counted) == {200_000 - MAX_ALIASES}
    assert report.stat().st_size < 8 << 20 and run.peak_mib < 300, (report.stat().st_size, run.peak_mib)
