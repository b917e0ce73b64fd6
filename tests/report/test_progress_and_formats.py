"""The progress display and the two output formats, on a small real image."""

from __future__ import annotations

import io
import json
from pathlib import Path

import jsonschema
import pytest
from rich.console import Console

from layerhound.cli import main
from layerhound.detectors.registry import ALL_DETECTORS
from layerhound.report.json_report import load_schema
from layerhound.report.progress import ProgressObserver
from layerhound.scan import scan_references
from tests.support.imagewriter import ImageSpec, Layer, write_oci


@pytest.fixture()
def layout(tmp_path: Path) -> Path:
    path = tmp_path / "layout"
    write_oci(path, ImageSpec([Layer.files({"/etc/a": "a\n"}), Layer.files({"/etc/b": "b\n"})]), tag="two")
    return path


def test_progress_observer_reports_each_image(layout: Path) -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, color_system=None, width=100)
    with ProgressObserver(console) as observer:
        results = list(scan_references([f"oci:{layout}:two"], ALL_DETECTORS, "all", observer))
    assert [r.verdict.value for r in results] == ["clean"]
    shown = buffer.getvalue()
    assert f"oci:{layout}:two [linux/amd64]: clean" in shown
    assert "2/2" in shown  # both layers were counted


def test_json_report_written_to_file_is_valid_and_readable(layout: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    assert main(["scan", "--no-progress", "--format", "json", "-o", str(out), f"oci:{layout}:two"]) == 0
    report = json.loads(out.read_text())
    jsonschema.validate(report, load_schema())
    assert out.stat().st_mode & 0o044 == 0o044  # group/other readable, like any report
    assert [len(i["layers"]) for i in report["images"]] == [2]


def test_output_into_missing_directory_is_a_usage_error(
    layout: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["scan", "--no-progress", "-o", str(tmp_path / "no" / "such.json"), f"oci:{layout}:two"])
    assert status == 2
    assert "does not exist" in capsys.readouterr().err


def test_schema_rejects_a_document_that_breaks_the_contract(layout: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["scan", "--no-progress", "--format", "json", f"oci:{layout}:two"])
    report = json.loads(capsys.readouterr().out)
    report["images"][0]["verdict"] = "probably-fine"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(report, load_schema())
    del report["images"][0]["verdict"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(report, load_schema())


def test_an_unexpected_failure_fails_only_its_image(
    layout: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bug met on one image becomes that image's error verdict; the next image is still scanned."""
    import layerhound.scan as scan_module

    real = scan_module.assess_image
    calls = []

    def flaky(*args: object, **kwargs: object) -> object:
        calls.append(args[0])
        if len(calls) == 1:
            raise KeyError("boom")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(scan_module, "assess_image", flaky)
    status = main(["scan", "--no-progress", "--format", "json", f"oci:{layout}:two", f"oci:{layout}:two"])
    report = json.loads(capsys.readouterr().out)
    assert status == 2
    assert [i["verdict"] for i in report["images"]] == ["error", "clean"]
    assert "internal error" in report["images"][0]["error"] and "KeyError" in report["images"][0]["error"]


def test_the_schema_names_every_field_the_model_encodes(layout: Path, tmp_path: Path) -> None:
    """The JSON is derived from the model; the shipped schema must keep up with every field."""
    import dataclasses

    from layerhound.model import Failure, Finding, ImageResult
    from layerhound.report.json_report import LAYER_SUMMARY

    defs = load_schema()["$defs"]
    assert {f.name for f in dataclasses.fields(ImageResult)} <= set(defs["image"]["properties"])
    assert {f.name for f in dataclasses.fields(Finding)} <= set(defs["finding"]["properties"])
    assert {f.name for f in dataclasses.fields(Failure)} == set(defs["failure"]["properties"])
    assert set(LAYER_SUMMARY) <= set(defs["layer"]["properties"])


def test_an_error_keeps_its_kind_status_and_retryability(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nothing-here"
    status = main(["scan", "--format", "json", "--no-progress", f"oci:{missing}"])
    report = json.loads(capsys.readouterr().out)
    jsonschema.validate(report, load_schema())
    [image] = report["images"]
    assert status == 2
    assert image["failure"] == {"kind": "source", "message": image["error"], "status": None, "retryable": False}
    assert image["source"] == "oci"


def test_a_bug_inside_a_source_is_that_references_error(
    layout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import layerhound.scan

    def broken(reference: str, platform: str, session: object, options: object) -> list[object]:
        if "two" in reference:
            raise KeyError("a bug of ours")
        return real(reference, platform, session, options)  # type: ignore[arg-type]

    real = layerhound.scan.open_images
    monkeypatch.setattr(layerhound.scan, "open_images", broken)
    results = list(scan_references([f"oci:{layout}:two", f"oci:{layout}"], ALL_DETECTORS))
    assert [r.verdict.value for r in results] == ["error", "clean"]
    assert results[0].failure is not None and results[0].failure.kind == "internal"
    assert "KeyError" in (results[0].error or "")


def test_an_output_that_is_a_device_or_fifo_is_written_into_not_replaced(tmp_path: Path) -> None:
    """``-o /dev/null`` as root once put a regular file where the device was (the report is renamed
    into place). A FIFO stands in for the device here: it must still be a FIFO, and hold the text."""
    import os
    import stat
    import threading

    from layerhound.cli.common import write_output

    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    write_output("the report\n", fifo)
    reader.join(timeout=10)
    assert received == [b"the report\n"]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["report.fifo"]  # no temporary file left beside it
