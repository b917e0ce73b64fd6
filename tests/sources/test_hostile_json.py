"""JSON built to break parsers fails that image with a reason; the other images go on.

Nesting deeper than the interpreter's stack and integers of thousands of digits made
json.loads raise RecursionError and ValueError, which were not caught: a traceback,
exit 1 ("found"), and the images after it never reported.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from layerhound.cli import main
from tests.support.cli import scan_json
from tests.support.imagewriter import ImageSpec, Layer, write_docker_archive, write_oci

DEEP = b"[" * 100_000 + b"]" * 100_000
HUGE_INT = b'{"schemaVersion": ' + b"9" * 20_000 + b"}"


def good_image() -> ImageSpec:
    return ImageSpec([Layer.files({"etc/hostname": b"fine\n"})])


@pytest.mark.parametrize("bomb", [DEEP, HUGE_INT], ids=["deep", "huge-int"])
def test_a_hostile_index_fails_its_image_and_the_next_is_judged(tmp_path: Path, bomb: bytes) -> None:
    write_oci(tmp_path / "bad", good_image())
    (tmp_path / "bad" / "index.json").write_bytes(bomb)
    write_oci(tmp_path / "good", good_image())
    run = scan_json("--no-cache", f"oci:{tmp_path / 'bad'}:latest", f"oci:{tmp_path / 'good'}:latest")
    assert run.status == 2, run.stderr
    assert "Traceback" not in run.stderr
    bad, good = run.images
    assert bad["verdict"] == "error" and "index.json" in bad["error"] and "not valid JSON" in bad["error"]
    assert good["verdict"] == "clean"


@pytest.mark.parametrize("bomb", [DEEP, HUGE_INT], ids=["deep", "huge-int"])
def test_a_hostile_docker_manifest_is_that_archives_error(tmp_path: Path, bomb: bytes) -> None:
    written = tmp_path / "written.tar"
    write_docker_archive(written, [(good_image(), ["x:1"])])
    archive = tmp_path / "image.tar"
    with tarfile.open(written) as source, tarfile.open(archive, "w") as target:
        for info in source:
            data = source.extractfile(info).read() if info.isreg() else None  # type: ignore[union-attr]
            if info.name == "manifest.json":
                data, info.size = bomb, len(bomb)
            target.addfile(info, io.BytesIO(data) if data is not None else None)
    write_oci(tmp_path / "good", good_image())
    run = scan_json("--no-cache", f"docker-archive:{archive}", f"oci:{tmp_path / 'good'}:latest")
    assert run.status == 2 and "Traceback" not in run.stderr, run.stderr
    bad, good = run.images
    assert bad["verdict"] == "error" and "manifest.json is not valid JSON" in bad["error"]
    assert good["verdict"] == "clean"


def test_a_bug_of_ours_exits_2_with_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path) -> None:
    """Python's default for an uncaught exception is exit 1, which layerhound uses for "found"."""
    import layerhound.scan

    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(layerhound.scan, "scan_references", broken)
    write_oci(tmp_path / "layout", good_image())
    status = main(["scan", "--no-cache", "--no-progress", f"oci:{tmp_path / 'layout'}:latest"])
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("layerhound: internal error: KeyError: 'a bug' at ") and err.count("\n") == 1
    assert json.dumps(err)  # one printable line, no traceback
