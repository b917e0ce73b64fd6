"""CycloneDX 1.6 (VEX) and OpenVEX 0.2.0 of real scans: valid, and each verdict mapped as documented."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from layerhound.cli import main
from layerhound.report.vex import load_openvex_schema
from tests.support.imagewriter import ImageSpec, Layer, file, symlink, write_oci

LIB = "/usr/lib/x86_64-linux-gnu"
AFFECTED = "Package: liblzma5\nStatus: install ok installed\nVersion: 5.6.1-1\nArchitecture: amd64\n"


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory, bookworm_layer: Layer, implant_so: bytes) -> Path:
    path = tmp_path_factory.mktemp("vex") / "layout"
    implant = Layer.files(
        {f"{LIB}/liblzma.so.5.6.1": file(implant_so), f"{LIB}/liblzma.so.5": symlink("liblzma.so.5.6.1")}
    )
    write_oci(path, ImageSpec([bookworm_layer, implant], cmd=["/usr/sbin/sshd", "-D"]), tag="reachable")
    write_oci(path, ImageSpec([implant], cmd=["/bin/sh"]), tag="dormant")
    write_oci(path, ImageSpec([Layer.files({"/etc/hostname": "clean\n"})]), tag="clean")
    write_oci(path, ImageSpec([Layer.files({"/var/lib/dpkg/status": AFFECTED})]), tag="version-only")
    return path


TAGS = ("reachable", "dormant", "clean", "version-only")


def scan(capsys: pytest.CaptureFixture[str], layout: Path, fmt: str) -> tuple[int, dict[str, Any]]:
    status = main(["scan", "--no-progress", "--no-cache", "--format", fmt, *(f"oci:{layout}:{t}" for t in TAGS)])
    return status, json.loads(capsys.readouterr().out)


def test_cyclonedx_vex_states(capsys: pytest.CaptureFixture[str], layout: Path) -> None:
    status, bom = scan(capsys, layout, "cyclonedx")
    assert status == 1
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(bom)) is None
    assert bom["specVersion"] == "1.6"
    components = {c["bom-ref"]: c for c in bom["components"]}
    assert all(c["type"] == "container" and c["purl"].startswith("pkg:oci/") for c in components.values())
    states = {}
    for vulnerability in bom["vulnerabilities"]:
        assert vulnerability["id"] == "CVE-2024-3094"
        [target] = vulnerability["affects"]
        states[components[target["ref"]]["name"].rsplit(":", 1)[-1]] = vulnerability["analysis"]
    assert states["reachable"]["state"] == "exploitable"
    assert states["dormant"]["state"] == "in_triage"
    assert states["clean"] == {**states["clean"], "state": "not_affected", "justification": "code_not_present"}
    assert states["version-only"]["state"] == "not_affected"
    assert "affected-version-not-injected" in states["version-only"]["detail"]


def test_openvex_statements(capsys: pytest.CaptureFixture[str], layout: Path) -> None:
    status, document = scan(capsys, layout, "openvex")
    assert status == 1
    jsonschema.Draft202012Validator(load_openvex_schema()).validate(document)
    statements = {s["products"][0]["identifiers"]["purl"].rsplit("tag=", 1)[-1] if "tag=" in
                  s["products"][0]["identifiers"]["purl"] else s["products"][0]["@id"]: s
                  for s in document["statements"]}
    by_status = {s["status"] for s in document["statements"]}
    assert by_status == {"affected", "not_affected"}
    affected = [s for s in document["statements"] if s["status"] == "affected"]
    assert len(affected) == 2 and all("layerhound advise" in s["action_statement"] for s in affected)
    clean = [s for s in document["statements"] if s["status"] == "not_affected"]
    assert len(clean) == 2 and all(s["justification"] == "vulnerable_code_not_present" for s in clean)
    assert all(s["vulnerability"]["name"] == "CVE-2024-3094" for s in statements.values())
    # The same scan gives the same document id (the statements' hash), whenever it runs.
    _, again = scan(capsys, layout, "openvex")
    assert again["@id"] == document["@id"]
