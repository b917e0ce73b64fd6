"""``layerhound rejudge``: a rules update re-judges what a crawl stored, with no registry request.

A small repository (``rejudge/app``) is pushed into the crawl world's real registry; the
crawl keeps its layers' candidate files; then a detector update (the start-up collector
no longer knowing ``gosu``, as a stand-in for a new detector release: its version and rule
tables change exactly as a release's would) and the user's YARA rules re-judge the stored
images. The counting proxy in front of the registry sees every request: none may come.
"""

from __future__ import annotations

import hashlib
import json
import re
import stat
from pathlib import Path
from typing import Any

import pytest
import zstandard

from layerhound.cli import main
from layerhound.detectors import shell_starts
from layerhound.detectors.startup import StartupFacts
from tests.crawl.conftest import sqlite_url
from tests.support.imagewriter import ImageSpec, Layer, file, symlink, write_oci
from tests.support.registry import FaultProxy, RegistryServer, push
from tests.support.world import CLEAN, DORMANT, LIB, REACHABLE, SSHD

GOSU_SCRIPT = "#!/bin/sh\nset -e\nmkdir -p /run/sshd\nexec gosu root /usr/sbin/sshd -D\n"
MARKER_SCRIPT = "#!/usr/bin/python3\nprint('lh_rejudge_marker')\n"
"""A script no built-in detector reads: kept all the same, for the rules a later rejudge brings."""
MARKER_RULE = ('rule rejudge_marker {\n  meta:\n    layerhound_indicates = "implant"\n'
               '  strings:\n    $a = "lh_rejudge_marker"\n  condition:\n    $a\n}\n')
EXPECTED = {"gosu": REACHABLE, "plain": REACHABLE, "marked": CLEAN, "clean": CLEAN}


@pytest.fixture(scope="module")
def rejudge_repo(tmp_path_factory: pytest.TempPathFactory, world_registry: RegistryServer,
                 bookworm_layer: Layer, implant_so: bytes) -> str:
    layout = tmp_path_factory.mktemp("rejudge") / "layout"
    implant = Layer.files({f"{LIB}/liblzma.so.5.6.1": file(implant_so, 0o755),
                           f"{LIB}/liblzma.so.5": symlink("liblzma.so.5.6.1")})
    specs = {
        "gosu": ImageSpec([bookworm_layer, implant, Layer.files({"/entrypoint.sh": file(GOSU_SCRIPT, 0o755)})],
                          entrypoint=["/entrypoint.sh"]),
        "plain": ImageSpec([bookworm_layer, implant,
                            Layer.files({"/entrypoint.sh": file("#!/bin/sh\nexec /usr/sbin/sshd -D\n", 0o755)})],
                           entrypoint=["/entrypoint.sh"]),
        "marked": ImageSpec([bookworm_layer, Layer.files({"/usr/local/bin/report.py": file(MARKER_SCRIPT, 0o755)})],
                            cmd=["/bin/sh"]),
        "clean": ImageSpec([bookworm_layer], cmd=SSHD),
    }
    for tag, spec in specs.items():
        write_oci(layout, spec, tag=tag)
        push(f"oci:{layout}:{tag}", world_registry, "rejudge/app", tag)
    return "rejudge/app"


def crawl(capsys: pytest.CaptureFixture[str], proxy: FaultProxy, db: str,
          *args: str) -> tuple[int, dict[str, str], str]:
    status = main(["crawl", "--insecure-registry", proxy.host, "--db", db, "--jobs", "2", "--format", "json",
                   "--no-progress", *args])
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    verdicts = {image["ref"].rsplit(":", 1)[-1]: image["verdict"] for image in report["images"]}
    return status, verdicts, captured.err


def rejudge(capsys: pytest.CaptureFixture[str], db: str, *args: str) -> tuple[int, dict[str, Any], str]:
    status = main(["rejudge", "--db", db, "--format", "json", *args])
    captured = capsys.readouterr()
    return status, json.loads(captured.out), captured.err


def changes(document: dict[str, Any]) -> dict[str, tuple[str | None, str]]:
    return {c["ref"].rsplit(":", 1)[-1]: (c["old"], c["new"]) for c in document["changed"]}


def test_the_users_rules_rejudge_exactly_the_affected_image_without_the_registry(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, rejudge_repo: str, counting: FaultProxy
) -> None:
    db = sqlite_url(tmp_path / "store" / "results.sqlite3")
    status, verdicts, err = crawl(capsys, counting, db, f"docker://{counting.host}/{rejudge_repo}")
    assert verdicts == EXPECTED, err

    # The candidate files are kept beside the store: by sha256, compressed, never executable.
    files = tmp_path / "store" / "files"
    kept = [p for p in files.rglob("*") if p.is_file() and p.parent.name != "tmp"]
    assert len(kept) > 100  # the Debian root's ELF files, package database, scripts, the implant
    assert all(re.fullmatch(r"[0-9a-f]{64}\.zst", p.name) and p.parent.name == p.name[:2] for p in kept)
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in kept)
    digest = hashlib.sha256(GOSU_SCRIPT.encode()).hexdigest()
    script = files / digest[:2] / f"{digest}.zst"
    assert zstandard.ZstdDecompressor().stream_reader(script.open("rb")).read() == GOSU_SCRIPT.encode()
    assert not list((files / "tmp").iterdir())  # nothing half-written is left

    counting.reset()
    status, document, err = rejudge(capsys, db)
    assert status == 0, err
    assert document["changed"] == [] and document["counts"]["current"] == 4 and document["counts"]["rejudged"] == 0

    # The user's rules: the one image whose kept script carries the marker changes, nothing else.
    rules = tmp_path / "team.yar"
    rules.write_text(MARKER_RULE)
    status, document, err = rejudge(capsys, db, "--rules", str(rules))
    assert status == 1, err  # an image changed to backdoored (the default --fail-on)
    assert changes(document) == {"marked": (CLEAN, DORMANT)}, document
    assert document["counts"]["rejudged"] == 4 and document["not_rejudged"] == []
    assert document["counts"]["layers_rejudged"] == 5  # the root, the implant, three small layers: each once
    [why] = [c["why"] for c in document["changed"]]
    assert "/usr/local/bin/report.py" in why, why

    assert counting.seen == [], [(s.method, s.path) for s in counting.seen]


def test_a_detector_update_changes_only_the_verdict_it_affects(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, rejudge_repo: str, counting: FaultProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db = sqlite_url(tmp_path / "results.sqlite3")
    status, verdicts, err = crawl(capsys, counting, db, f"docker://{counting.host}/{rejudge_repo}")
    assert verdicts == EXPECTED, err
    counting.reset()
    monkeypatch.delitem(shell_starts.WRAPPERS, "gosu")
    monkeypatch.setattr(StartupFacts, "version", StartupFacts.version + 1)
    status, document, err = rejudge(capsys, db)
    assert status == 1, err
    assert changes(document) == {"gosu": (REACHABLE, DORMANT)}, document
    [change] = document["changed"]
    assert "mentions sshd (line 3: mkdir -p /run/sshd)" in change["why"] or "does not start sshd" in change["why"]
    assert document["counts"]["layers_rejudged"] == 5
    assert counting.seen == []


def test_without_kept_files_rejudge_says_what_it_cannot_do(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, rejudge_repo: str, counting: FaultProxy
) -> None:
    rules = tmp_path / "team.yar"
    rules.write_text(MARKER_RULE)
    db = sqlite_url(tmp_path / "none" / "results.sqlite3")
    status, verdicts, err = crawl(capsys, counting, db, "--no-keep-files", f"docker://{counting.host}/{rejudge_repo}")
    assert verdicts == EXPECTED and not (tmp_path / "none" / "files").exists()
    status, document, err = rejudge(capsys, db, "--rules", str(rules))
    assert status == 2
    assert {entry["ref"].rsplit(":", 1)[-1] for entry in document["not_rejudged"]} == set(EXPECTED)
    assert all("were not kept" in entry["why"] for entry in document["not_rejudged"])

    # A bound of one byte: the crawl says so once, clearly; rejudge names the layers it lacks.
    db = sqlite_url(tmp_path / "tiny" / "results.sqlite3")
    status, verdicts, err = crawl(capsys, counting, db, "--keep-max", "1", f"docker://{counting.host}/{rejudge_repo}")
    assert verdicts == EXPECTED
    assert err.count("reached their bound of 1 bytes (--keep-max)") == 1, err
    status, document, err = rejudge(capsys, db, "--rules", str(rules))
    assert status == 2 and len(document["not_rejudged"]) == 4


def test_a_kept_file_changed_on_disk_fails_its_images_only(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, rejudge_repo: str, counting: FaultProxy
) -> None:
    db = sqlite_url(tmp_path / "results.sqlite3")
    crawl(capsys, counting, db, f"docker://{counting.host}/{rejudge_repo}")
    digest = hashlib.sha256(MARKER_SCRIPT.encode()).hexdigest()
    tampered = tmp_path / "files" / digest[:2] / f"{digest}.zst"
    tampered.write_bytes(zstandard.ZstdCompressor().compress(b"#!/bin/sh\necho something else\n"))
    rules = tmp_path / "team.yar"
    rules.write_text(MARKER_RULE)
    status, document, _ = rejudge(capsys, db, "--rules", str(rules))
    assert status == 2
    [left] = document["not_rejudged"]
    assert left["ref"].endswith(":marked") and "does not match sha256" in left["why"]
    assert document["counts"]["rejudged"] == 3
