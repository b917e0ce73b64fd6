"""``dir:PATH``, skopeo's directory transport, written by the real ``skopeo copy``."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from layerhound.cli import main
from tests.support.imagewriter import ImageSpec, Layer, file, symlink, tamper, write_oci, write_oci_index
from tests.support.registry import require_tool

LIB = "/usr/lib/x86_64-linux-gnu"


def skopeo_dir(source: str, target: Path, *flags: str) -> Path:
    subprocess.run([require_tool("skopeo"), "--insecure-policy", "copy", "--quiet", *flags, source, f"dir:{target}"],
                   check=True, capture_output=True, timeout=120)
    return target


def scan(capsys: pytest.CaptureFixture[str], *refs: str) -> tuple[int, dict[str, Any]]:
    status = main(["scan", "--no-progress", "--no-cache", "--format", "json", *refs])
    return status, json.loads(capsys.readouterr().out)


@pytest.fixture()
def layout(tmp_path: Path, implant_so: bytes) -> Path:
    path = tmp_path / "layout"
    implant = Layer.files(
        {f"{LIB}/liblzma.so.5.6.1": file(implant_so), f"{LIB}/liblzma.so.5": symlink("liblzma.so.5.6.1")}
    )
    write_oci(path, ImageSpec([Layer.files({"/etc/os-release": "ID=t\n"}), implant], cmd=["/bin/sh"]), tag="bad")
    write_oci_index(path, [ImageSpec([implant]), ImageSpec([Layer.files({"/etc/x": "x\n"})], architecture="arm64",
                                                           variant="v8")], tag="multi")
    return path


def test_a_skopeo_directory_scans_like_its_layout(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                  layout: Path) -> None:
    directory = skopeo_dir(f"oci:{layout}:bad", tmp_path / "bad")
    assert (directory / "version").read_text().startswith("Directory Transport Version: 1.")
    _, from_dir = scan(capsys, f"dir:{directory}")
    _, from_layout = scan(capsys, f"oci:{layout}:bad")
    [a], [b] = from_dir["images"], from_layout["images"]
    assert a["verdict"] == b["verdict"] == "backdoored-dormant"
    assert a["digest"] == b["digest"] and a["findings"] == b["findings"] and a["source"] == "dir"


def test_every_platform_of_a_copy_with_all(capsys: pytest.CaptureFixture[str], tmp_path: Path, layout: Path) -> None:
    directory = skopeo_dir(f"oci:{layout}:multi", tmp_path / "multi", "--all")
    assert list(directory.glob("*.manifest.json"))  # the index's own manifests
    status, report = scan(capsys, f"dir:{directory}")
    assert status == 1
    assert [(i["platform"], i["verdict"]) for i in report["images"]] == [
        ("linux/amd64", "backdoored-dormant"), ("linux/arm64/v8", "clean"),
    ]


def test_a_blob_that_is_not_what_its_name_says_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                          layout: Path) -> None:
    directory = skopeo_dir(f"oci:{layout}:bad", tmp_path / "bad")
    manifest = json.loads((directory / "manifest.json").read_text())
    tamper(directory / manifest["layers"][1]["digest"].split(":", 1)[1])
    status, report = scan(capsys, f"dir:{directory}")
    assert status == 2 and report["images"][0]["failure"]["kind"] in ("digest-mismatch", "corrupt-layer")


def test_what_is_not_a_skopeo_directory(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    status, report = scan(capsys, f"dir:{tmp_path / 'empty'}")
    assert status == 2 and "no version file: not a skopeo directory" in report["images"][0]["error"]
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "version").write_text("Directory Transport Version: 9.0\n")
    status, report = scan(capsys, f"dir:{tmp_path / 'odd'}")
    assert status == 2 and "unsupported directory transport version" in report["images"][0]["error"]
