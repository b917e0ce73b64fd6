"""The user's YARA rules (``--rules``): compiled once by YARA-X, run over the files of every layer.

The positive is the project's own sample (tests/samples/implant_sim.c): the rules match the
name of its harmless ``lh_sim_probe`` function, a string no real file carries.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import pytest

from layerhound.detectors.registry import ALL_DETECTORS
from layerhound.detectors.user_rules import UserRulesDetector, load_rules
from layerhound.errors import UsageError
from layerhound.layers.walk import walk_layer
from layerhound.model import Indicates, Kind
from layerhound.store.parts import detector_key
from tests.layers.test_walk import blob_layer, tar_bytes
from tests.support.cli import scan_json
from tests.support.compile import IMPLANT_SIM, compile_shared
from tests.support.imagewriter import ImageSpec, Layer, write_oci

RULE = """
rule sim_probe : sample {
  meta:
    author = "layerhound tests"
    layerhound_indicates = "implant"
  strings:
    $name = "lh_sim_probe"
  condition:
    $name
}
"""
PLAIN_RULE = 'rule any_probe { strings: $a = "lh_sim_probe" condition: $a }'


@pytest.fixture(scope="module")
def implant(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return compile_shared(IMPLANT_SIM, tmp_path_factory.mktemp("rules")).read_bytes()


def rules_dir(tmp_path: Path, **files: str) -> Path:
    directory = tmp_path / "rules"
    directory.mkdir(exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def walk(files: dict[str, bytes], detector: UserRulesDetector) -> list:  # type: ignore[type-arg]
    layer = blob_layer(tar_bytes([(f".{path}", "file", data) for path, data in files.items()]))
    return [f for f in walk_layer(layer, [*ALL_DETECTORS, detector]).findings if f.detector == detector.name]


def test_a_rule_over_a_layer_gives_a_finding_with_its_name_namespace_and_meta(tmp_path: Path, implant: bytes) -> None:
    detector = UserRulesDetector(load_rules(rules_dir(tmp_path, **{"team-rules.yar": RULE})))
    [finding] = walk({"/usr/lib/liblzma.so.5": implant, "/etc/motd": b"lh_sim_probe in a text file"}, detector)
    assert finding.rule == "yara:team_rules.sim_probe" and finding.kind is Kind.SIGNATURE
    assert finding.path == "/usr/lib/liblzma.so.5" and finding.indicates is Indicates.IMPLANT
    evidence = finding.evidence
    assert evidence["namespace"] == "team_rules" and evidence["yara_rule"] == "sim_probe"
    assert evidence["tags"] == ["sample"]
    assert evidence["meta"] == {"author": "layerhound tests", "layerhound_indicates": "implant"}
    assert evidence["patterns"]["$name"] and evidence["rules_sha256"] == detector.sources.sha256
    assert implant[evidence["patterns"]["$name"][0]:].startswith(b"lh_sim_probe")


def test_all_files_reaches_what_no_built_in_detector_reads(tmp_path: Path, implant: bytes) -> None:
    directory = rules_dir(tmp_path, **{"plain.yar": PLAIN_RULE})
    text = {"/etc/motd": b"lh_sim_probe in a text file"}
    assert walk(text, UserRulesDetector(load_rules(directory))) == []  # not a candidate file
    [finding] = walk(text, UserRulesDetector(load_rules(directory, all_files=True)))
    assert finding.path == "/etc/motd" and finding.indicates is Indicates.PAYLOAD  # no meta: not loadable


def test_a_match_inside_a_compressed_archive_is_payload(tmp_path: Path, implant: bytes) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo("lib/liblzma.so.5.6.1")
        info.size = len(implant)
        archive.addfile(info, io.BytesIO(implant))
    detector = UserRulesDetector(load_rules(rules_dir(tmp_path, **{"r.yar": RULE})))
    [finding] = walk({"/srv/build.tar.gz": gzip.compress(buffer.getvalue())}, detector)
    assert finding.indicates is Indicates.PAYLOAD and finding.evidence["member"] == "lib/liblzma.so.5.6.1"
    assert finding.rule == "yara:r.sim_probe"


def test_a_rule_that_does_not_compile_is_a_usage_error_naming_file_and_line(tmp_path: Path) -> None:
    directory = rules_dir(tmp_path, **{"good.yar": PLAIN_RULE, "broken.yara": "rule x {\n  condition: $nope\n}\n"})
    with pytest.raises(UsageError, match=r"broken\.yara:2:"):
        load_rules(directory)
    with pytest.raises(UsageError, match="no such file"):
        load_rules(tmp_path / "missing.yar")
    with pytest.raises(UsageError, match=r"no \*\.yar"):
        (tmp_path / "empty").mkdir()
        load_rules(tmp_path / "empty")


def test_the_rules_hash_is_part_of_the_cache_key(tmp_path: Path) -> None:
    first = UserRulesDetector(load_rules(rules_dir(tmp_path, **{"r.yar": PLAIN_RULE})))
    (tmp_path / "rules" / "r.yar").write_text(PLAIN_RULE.replace("any_probe", "any_probe2"))
    second = UserRulesDetector(load_rules(tmp_path / "rules"))
    assert detector_key(first) != detector_key(second)
    assert detector_key(first) != detector_key(UserRulesDetector(load_rules(tmp_path / "rules", all_files=True)))


def test_the_command_line_runs_the_rules_and_a_changed_rule_is_never_served_from_the_cache(
    tmp_path: Path, implant: bytes
) -> None:
    root = tmp_path / "root"
    (root / "usr" / "lib").mkdir(parents=True)
    (root / "usr" / "lib" / "libprobe.so.1").write_bytes(implant)
    write_oci(tmp_path / "layout", ImageSpec([Layer.from_dir(root)]))
    reference = f"oci:{tmp_path / 'layout'}:latest"
    cache = ["--cache-dir", str(tmp_path / "cache")]
    directory = rules_dir(tmp_path, **{"mine.yar": RULE})
    first = scan_json(*cache, "--rules", str(directory), reference)
    assert first.status == 1, first.stderr
    assert "yara:mine.sim_probe" in {f["rule"] for f in first.images[0]["findings"]}
    (directory / "mine.yar").write_text(RULE.replace("rule sim_probe", "rule renamed_probe"))
    second = scan_json(*cache, "--rules", str(directory), reference)
    rules = {f["rule"] for f in second.images[0]["findings"]}
    assert "yara:mine.renamed_probe" in rules and "yara:mine.sim_probe" not in rules
    without = scan_json(*cache, reference)
    assert not any(f["rule"].startswith("yara:") for f in without.images[0]["findings"])
    broken = scan_json("--rules-all-files", reference)
    assert broken.status == 2 and "--rules-all-files needs --rules" in broken.stderr
