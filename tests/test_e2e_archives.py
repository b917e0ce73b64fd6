"""End to end: archives inside image layers, through the CLI, on a real Debian bookworm.

A package left in ``/var/cache/apt/archives`` is a finding: the project's inert
implant look-alike packaged by ``dpkg-deb`` into a liblzma5 5.6.1-1 .deb makes
the image backdoored (dormant: nothing loads a packaged library), and only
history once an upper layer deletes the package. A source tarball whose
``build-to-host.m4`` carries the published trigger lines (synthetic marker
lines, not the real macro) is source material. Debian's own liblzma5 .deb in
the same place is clean.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from layerhound.cli import main
from layerhound.report.json_report import load_schema
from tests.support.debian import apt_download
from tests.support.imagewriter import ImageSpec, Layer, file, whiteout, write_oci

LIB = "usr/lib/x86_64-linux-gnu"
SSHD = ["/usr/sbin/sshd", "-D"]
DEB_PATH = "/var/cache/apt/archives/liblzma5_5.6.1-1_amd64.deb"
TARBALL_PATH = "/usr/src/xz-5.6.1.tar.gz"

M4 = (
    "# build-to-host.m4 serial 30\n"
    '  gl_am_configmake=`grep -aErls "#{4}[[:alnum:]]{5}#{4}$" $srcdir/ 2>/dev/null`\n'
    "  gl_path_map='tr \"\\t \\-_\" \" \\t_\\-\"'\n"
    "  AC_CONFIG_COMMANDS([build-to-host], [eval $gl_config_gt | $SHELL 2>/dev/null], [])\n"
)
"""Synthetic lines carrying the published trigger markers; not the real macro."""


def scan(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    """Run the CLI with JSON output; return (exit status, validated report)."""
    status = main(["scan", "--format", "json", "--no-progress", *args])
    report = json.loads(capsys.readouterr().out)
    jsonschema.validate(report, load_schema())
    return status, report


def implant_deb(tmp: Path, implant: bytes) -> bytes:
    """liblzma5 5.6.1-1 as dpkg-deb builds it, with the implant as its library."""
    dpkg_deb = shutil.which("dpkg-deb")
    if dpkg_deb is None:
        raise RuntimeError("dpkg-deb is not installed: run `make setup` first")
    stage = tmp / "liblzma5"
    (stage / "DEBIAN").mkdir(parents=True)
    (stage / "DEBIAN/control").write_text(
        "Package: liblzma5\nSource: xz-utils\nVersion: 5.6.1-1\nArchitecture: amd64\n"
        "Maintainer: layerhound tests <tests@example.invalid>\nDescription: XZ-format compression library\n"
    )
    lib = stage / LIB
    lib.mkdir(parents=True)
    (lib / "liblzma.so.5.6.1").write_bytes(implant)
    os.symlink("liblzma.so.5.6.1", lib / "liblzma.so.5")
    out = tmp / "liblzma5_5.6.1-1_amd64.deb"
    subprocess.run([dpkg_deb, "--root-owner-group", "-Zxz", "--build", str(stage), str(out)], check=True,
                   capture_output=True)
    return out.read_bytes()


def source_tarball() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, text in (
            ("xz-5.6.1/m4/build-to-host.m4", M4),
            ("xz-5.6.1/README", "XZ Utils\n"),
            ("xz-5.6.1/configure", "#!/bin/sh\necho configure\n"),
        ):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1711670400
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory, implant_so: bytes) -> bytes:
    return implant_deb(tmp_path_factory.mktemp("deb"), implant_so)


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory, bookworm_layer: Layer, deb: bytes) -> Path:
    path = tmp_path_factory.mktemp("e2e-archives") / "layout"
    cached = Layer.files({DEB_PATH: file(deb)})
    write_oci(path, ImageSpec([bookworm_layer, cached], cmd=SSHD, exposed_ports=("22/tcp",)), tag="apt-cache")
    deleted = Layer.files({DEB_PATH: whiteout()})
    write_oci(path, ImageSpec([bookworm_layer, cached, deleted], cmd=SSHD), tag="apt-cache-cleaned")
    debian = apt_download("liblzma5")
    clean = Layer.files({f"/var/cache/apt/archives/{debian.name}": file(debian.read_bytes())})
    write_oci(path, ImageSpec([bookworm_layer, clean], cmd=SSHD), tag="apt-cache-debian")
    source = Layer.files({TARBALL_PATH: file(source_tarball())})
    write_oci(path, ImageSpec([bookworm_layer, source], cmd=["/bin/bash"]), tag="source", compression="zstd")
    return path


def test_packaged_implant_in_the_apt_cache_is_dormant(
    capsys: pytest.CaptureFixture[str], layout: Path, deb: bytes, implant_so: bytes
) -> None:
    status, report = scan(capsys, f"oci:{layout}:apt-cache")
    [image] = report["images"]
    assert status == 1 and image["verdict"] == "backdoored-dormant"
    findings = [f for f in image["findings"] if f["kind"] == "archive"]
    assert {f["rule"] for f in findings} >= {"xz-get-cpuid-prologue", "xz-yara-opcodes"}
    for finding in findings:
        assert finding["path"] == DEB_PATH and finding["in_final_fs"] is True
        assert finding["indicates"] == "payload"
        assert finding["layer"] == image["layers"][1]["digest"]
        assert finding["sha256"] == hashlib.sha256(deb).hexdigest()
        ev = finding["evidence"]
        assert ev["member"] == f"{LIB}/liblzma.so.5.6.1"
        assert ev["member_sha256"] == hashlib.sha256(implant_so).hexdigest()
        assert ev["archive_chain"] == [DEB_PATH] and ev["archive_formats"] == ["deb"]
        assert ev["inner_indicates"] == "implant"  # a loadable library, once installed
        if finding["rule"] in ("xz-get-cpuid-prologue", "xz-yara-opcodes"):
            assert ev["inner_kind"] == "signature"
    # Only the archive's findings: the installed liblzma is Debian's clean one.
    assert all(f["path"] == DEB_PATH for f in image["findings"] if f["indicates"] in ("implant", "payload"))
    assert any(
        r.startswith("implant material that nothing loads as is:") and f"{DEB_PATH}!/{LIB}/liblzma.so.5.6.1" in r
        for r in image["reasons"]
    )
    stats = image["layers"][1]["stats"]
    assert stats["archives"] == 1 and stats["archive_elf_files"] == 1 and stats["archive_notes"] == []


def test_packaged_implant_deleted_in_an_upper_layer_is_history(
    capsys: pytest.CaptureFixture[str], layout: Path
) -> None:
    status, report = scan(capsys, f"oci:{layout}:apt-cache-cleaned")
    [image] = report["images"]
    assert status == 0 and image["verdict"] == "backdoor-in-history"
    archive_findings = [f for f in image["findings"] if f["kind"] == "archive"]
    assert archive_findings and all(not f["in_final_fs"] and f["path"] == DEB_PATH for f in archive_findings)
    assert {f["layer"] for f in archive_findings} == {image["layers"][1]["digest"]}
    assert any(DEB_PATH in r for r in image["reasons"])


def test_debians_own_package_in_the_apt_cache_is_clean(capsys: pytest.CaptureFixture[str], layout: Path) -> None:
    status, report = scan(capsys, f"oci:{layout}:apt-cache-debian")
    [image] = report["images"]
    assert status == 0 and image["verdict"] == "clean" and image["findings"] == []
    stats = image["layers"][1]["stats"]
    # The .deb is opened; its compressed changelogs hold text no detector reads and are not.
    assert stats["archives"] == 1 and stats["archive_elf_files"] >= 1 and stats["archive_notes"] == []
    assert image["reasons"] == ["no evidence of CVE-2024-3094"]


def test_source_tarball_with_trigger_markers(capsys: pytest.CaptureFixture[str], layout: Path) -> None:
    status, report = scan(capsys, f"oci:{layout}:source")
    [image] = report["images"]
    assert status == 0 and image["verdict"] == "source-artifacts"
    [finding] = image["findings"]
    assert finding["rule"] == "xz-trigger-m4" and finding["kind"] == "archive"
    assert finding["indicates"] == "source" and finding["path"] == TARBALL_PATH
    assert finding["evidence"]["member"] == "xz-5.6.1/m4/build-to-host.m4"
    assert finding["evidence"]["inner_kind"] == "source"
    assert finding["evidence"]["markers"] == ["gl_am_configmake", "gl_path_map", "gl_config_gt_eval"]
    assert any(f"{TARBALL_PATH}!/xz-5.6.1/m4/build-to-host.m4" in r for r in image["reasons"])
