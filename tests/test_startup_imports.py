"""A command loads what it needs and nothing else (issue 10: start-up).

``layerhound --help`` is answered from argparse alone; ``--version`` adds the
detectors (their rule tables make the rules version) and nothing of a scan; a
scan of an OCI layout with ``--no-cache`` never loads the registry client, the
local-engine client, the other sources, the store, the crawl or the report
formats it does not print. Behaviour, not timing: each command runs in a fresh
interpreter and reports ``sys.modules`` as it exits.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.imagewriter import ImageSpec, Layer, file, write_oci

REPO = Path(__file__).resolve().parents[1]

REPORTER = """
import atexit, json, sys
out, args = sys.argv[1], sys.argv[2:]
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
from layerhound.cli import main
sys.argv[0] = "layerhound"
sys.exit(main(args))
"""

THIRD_PARTY_FOR_SCANS = ("httpx", "rich", "capstone", "elftools", "debian", "zstandard", "isal", "cyclonedx",
                         "psycopg", "distributed", "dask", "platformdirs")


def modules_of(tmp_path: Path, *args: str) -> set[str]:
    out = tmp_path / "modules.json"
    done = subprocess.run([sys.executable, "-c", REPORTER, str(out), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return set(json.loads(out.read_text()))


def loaded(modules: set[str], *names: str) -> list[str]:
    """Which of ``names`` (a package stands for its submodules too) are in ``modules``."""
    return sorted(m for m in modules for n in names if m == n or m.startswith(f"{n}."))


def test_help_is_argparse_alone(tmp_path: Path) -> None:
    modules = modules_of(tmp_path, "--help")
    assert "layerhound.cli.scan" in modules  # the parser of every command was built
    assert not loaded(modules, *THIRD_PARTY_FOR_SCANS, "layerhound.model", "layerhound.detectors",
                      "layerhound.sources.refs", "layerhound.registry.settings", "layerhound.store",
                      "dataclasses", "sqlite3", "ssl", "tempfile", "difflib")


@pytest.mark.parametrize("command", ["scan", "crawl", "tags", "advise", "lineage", "report"])
def test_each_command_help_loads_no_scan_machinery(tmp_path: Path, command: str) -> None:
    modules = modules_of(tmp_path, command, "--help")
    assert not loaded(modules, *THIRD_PARTY_FOR_SCANS, "layerhound.detectors", "layerhound.store", "sqlite3", "ssl")


def test_version_loads_the_detectors_and_nothing_of_a_scan(tmp_path: Path) -> None:
    modules = modules_of(tmp_path, "--version")
    assert "layerhound.detectors.registry" in modules
    assert not loaded(modules, *THIRD_PARTY_FOR_SCANS, "layerhound.sources", "layerhound.layers",
                      "layerhound.assess", "layerhound.store", "layerhound.registry.session", "sqlite3", "ssl")


def test_an_oci_scan_loads_only_its_source_and_its_format(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    write_oci(layout, ImageSpec(layers=[Layer([("etc/os-release", file('ID=debian\nVERSION_ID="12"\n'))])]),
              tag="t", compression="gzip")
    modules = modules_of(tmp_path, "scan", "--no-cache", "--no-progress", "--format", "json",
                         "-o", str(tmp_path / "report.json"), f"oci:{layout}:t")
    assert json.loads((tmp_path / "report.json").read_text())["images"][0]["verdict"] == "clean"
    assert {"layerhound.sources.oci_layout", "layerhound.report.json_report", "isal"} <= modules
    assert not loaded(modules, "httpx", "rich", "capstone", "elftools", "cyclonedx", "psycopg", "distributed",
                      "platformdirs", "ssl", "http.client", "sqlite3", "difflib",
                      "layerhound.registry.client", "layerhound.registry.credentials", "layerhound.sources.registry",
                      "layerhound.sources.engine", "layerhound.sources.engine_image",
                      "layerhound.sources.docker_archive", "layerhound.sources.skopeo_dir", "layerhound.sources.host",
                      "layerhound.store.cache", "layerhound.store.db", "layerhound.store.results",
                      "layerhound.crawl.run", "layerhound.crawl.worker", "layerhound.crawl.targets",
                      "multiprocessing", "concurrent.futures", "layerhound.lineage", "layerhound.report.table",
                      "layerhound.report.sarif",
                      "layerhound.report.html", "layerhound.report.cyclonedx", "layerhound.report.vex")
