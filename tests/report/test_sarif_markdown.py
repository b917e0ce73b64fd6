"""SARIF 2.1.0 and Markdown reports of real scans: valid against the shipped schema, usable by code scanning."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from layerhound.cli import main
from layerhound.report.sarif import load_sarif_schema
from tests.support.imagewriter import ImageSpec, Layer, file, symlink, write_oci

LIB = "/usr/lib/x86_64-linux-gnu"
HOSTILE = "x<script>alert(1)</script>|y"


@pytest.fixture()
def layout(tmp_path: Path, implant_so: bytes) -> Path:
    path = tmp_path / "layout"
    implant = Layer.files(
        {f"{LIB}/liblzma.so.5.6.1": file(implant_so), f"{LIB}/liblzma.so.5": symlink("liblzma.so.5.6.1")}
    )
    write_oci(path, ImageSpec([Layer.files({"/etc/os-release": "ID=test\n"}), implant], cmd=["/bin/sh"]), tag="bad")
    write_oci(path, ImageSpec([Layer.files({"/etc/os-release": "ID=test\n"})]), tag="clean")
    write_oci(path, ImageSpec([implant]), tag=HOSTILE)
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    status = main(["scan", "--no-progress", "--no-cache", *args])
    return status, capsys.readouterr().out


def test_sarif_is_valid_and_has_what_code_scanning_needs(capsys: pytest.CaptureFixture[str], layout: Path) -> None:
    status, out = run(capsys, "--format", "sarif", f"oci:{layout}:bad", f"oci:{layout}:clean",
                      f"oci:{layout}-missing")
    document: dict[str, Any] = json.loads(out)
    jsonschema.Draft4Validator(load_sarif_schema()).validate(document)
    assert status == 2  # the missing reference is an error (and a notification, not a result)
    [run_] = document["runs"]
    driver = run_["tool"]["driver"]
    assert driver["name"] == "layerhound" and driver["rules"]
    rules = {rule["id"]: rule for rule in driver["rules"]}
    assert {"xz-get-cpuid-prologue", "ifunc-resolver-hook"} <= set(rules)
    assert all(float(rule["properties"]["security-severity"]) >= 8 for rule in rules.values()
               if rule["defaultConfiguration"]["level"] == "error")
    results = run_["results"]
    assert results and {r["properties"]["image"] for r in results} == {f"oci:{layout}:bad"}
    for result in results:  # GitHub's required fields
        assert result["ruleId"] in rules and driver["rules"][result["ruleIndex"]]["id"] == result["ruleId"]
        assert result["message"]["text"]
        [location] = result["locations"]
        assert location["physicalLocation"]["artifactLocation"]["uri"] == f"{LIB}/liblzma.so.5.6.1".lstrip("/")
        assert location["physicalLocation"]["region"]["startLine"] == 1
        assert [loc["kind"] for loc in location["logicalLocations"]] == ["image", "layer"]
        assert location["logicalLocations"][1]["properties"]["position"] == 1
        assert result["properties"]["verdict"] == "backdoored-dormant"
    [notification] = run_["invocations"][0]["toolExecutionNotifications"]
    assert "missing" in notification["message"]["text"] and run_["invocations"][0]["executionSuccessful"] is False

    # Fingerprints are stable across runs: uploads of the same image de-duplicate.
    _, again = run(capsys, "--format", "sarif", f"oci:{layout}:bad")
    first = [r["partialFingerprints"] for r in results]
    assert [r["partialFingerprints"] for r in json.loads(again)["runs"][0]["results"]] == first
    assert len({f["layerhound/v1"] for f in first}) == len({(r["ruleId"], r["locations"][0]["physicalLocation"]
                                                              ["artifactLocation"]["uri"]) for r in results})


def test_markdown_counts_lines_and_escapes_what_images_name(capsys: pytest.CaptureFixture[str], layout: Path) -> None:
    status, out = run(capsys, "--format", "markdown", f"oci:{layout}:bad", f"oci:{layout}:clean",
                      f"oci:{layout}:{HOSTILE}")
    assert status == 1
    assert "| 🔴 backdoored-dormant | 2 |" in out and "| 🟢 clean | 1 |" in out
    assert "<script>" not in out and "&lt;script&gt;" in out
    table_rows = [line for line in out.splitlines() if "clean" in line and line.startswith("| oci")]
    assert len(table_rows) == 1 and table_rows[0].count(" | ") == 3  # the hostile | did not add a column
    assert out.count("<details><summary>") == 2  # evidence of the two that are not clean


def test_review_cases_in_sarif_and_markdown() -> None:
    """A rule's severity is its worst finding's; fingerprints tell layers apart; paths are URIs; no injection."""
    from layerhound.model import Finding, ImageResult, Indicates, Kind, Verdict
    from layerhound.report.markdown import render_markdown
    from layerhound.report.sarif import sarif_document

    def hit(indicates: Indicates, path: str, layer: str) -> Finding:
        return Finding("known-bad-hash", Kind.HASH, indicates, path, layer, "ab" * 32, detector="known-hashes")

    source = ImageResult("r/a:1", "sha256:" + "1" * 64, None, Verdict.SOURCE_ARTIFACTS, ["tarball"],
                         [hit(Indicates.SOURCE, "/src/xz-5.6.1.tar.gz", "sha256:" + "a" * 64)])
    implant = ImageResult("r/b:1", "sha256:" + "2" * 64, None, Verdict.BACKDOORED_REACHABLE, ["implant"],
                          [hit(Indicates.IMPLANT, "/c:/lib a#b%zz.so", "sha256:" + "b" * 64),
                           hit(Indicates.IMPLANT, "/c:/lib a#b%zz.so", "sha256:" + "c" * 64)])
    document = sarif_document([source, implant], "r-test")
    jsonschema.Draft4Validator(load_sarif_schema(), format_checker=jsonschema.FormatChecker()).validate(document)
    [rule] = document["runs"][0]["tool"]["driver"]["rules"]
    assert rule["properties"]["security-severity"] == "10.0" and rule["defaultConfiguration"]["level"] == "error"
    results = document["runs"][0]["results"]
    assert [r["level"] for r in results] == ["warning", "error", "error"]
    assert len({r["partialFingerprints"]["layerhound/v1"] for r in results}) == 3
    uri = results[1]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert uri == "c%3A/lib%20a%23b%25zz.so"

    hostile = ImageResult("r/c:1\n\n# Pwned\n\n![t](https://evil/t.png) @team", None, None, Verdict.ERROR,
                          ["x"], error="x")
    markdown = render_markdown([hostile], "r-test")
    assert "\n# Pwned" not in markdown and "@team" not in markdown  # no heading, no mention
    [row] = [line for line in markdown.splitlines() if line.startswith("| r/c:1")]
    assert "![t](" not in row  # in a cell the image syntax is escaped
    [summary] = [line for line in markdown.splitlines() if line.startswith("<details>")]
    assert summary.endswith("</summary>")  # one raw-HTML line: its text is never Markdown
