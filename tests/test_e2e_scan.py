"""End to end: real Debian images and the project's own implant, through the CLI.

The negative is a real debootstrapped Debian bookworm with openssh-server. The
positives put the project's inert implant look-alike (tests/samples, compiled
here) where Debian's liblzma would be, or lie in the dpkg database, or delete
the implant again in an upper layer. Every scan goes through ``layerhound scan``
(in process) and its JSON is validated against the shipped schema.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from layerhound.cli import main
from layerhound.report.json_report import load_schema
from tests.support.imagewriter import (
    ImageSpec,
    Layer,
    Spec,
    blob_file,
    file,
    symlink,
    whiteout,
    write_docker_archive,
    write_oci,
    write_oci_index,
)

LIB = "/usr/lib/x86_64-linux-gnu"
SSHD = ["/usr/sbin/sshd", "-D"]


def scan(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    """Run the CLI with JSON output; return (exit status, validated report)."""
    status = main(["scan", "--format", "json", "--no-progress", *args])
    report = json.loads(capsys.readouterr().out)
    jsonschema.validate(report, load_schema())
    return status, report


def by_ref(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {image["ref"]: image for image in report["images"]}


def implant_files(implant: bytes) -> dict[str, Spec]:
    """The implant dropped in as liblzma.so.5.6.1 with the SONAME link moved to it."""
    return {
        f"{LIB}/liblzma.so.5.6.1": file(implant, 0o644),
        f"{LIB}/liblzma.so.5": symlink("liblzma.so.5.6.1"),
    }


def implant_layer(implant: bytes) -> Layer:
    return Layer.files(implant_files(implant))


def status_claiming(root: Path, version: str) -> bytes:
    """Debian's real status file with liblzma5's version rewritten."""
    stanzas = (root / "var/lib/dpkg/status").read_text().split("\n\n")
    out = []
    for stanza in stanzas:
        if stanza.startswith("Package: liblzma5\n"):
            lines = [f"Version: {version}" if line.startswith("Version: ") else line for line in stanza.splitlines()]
            stanza = "\n".join(lines)
        out.append(stanza)
    return "\n\n".join(out).encode()


@pytest.fixture(scope="module")
def layout(
    tmp_path_factory: pytest.TempPathFactory, bookworm_layer: Layer, bookworm_root: Path, implant_so: bytes
) -> Path:
    """One OCI layout holding every bookworm-based image of this module, by tag."""
    path = tmp_path_factory.mktemp("e2e") / "layout"
    base = bookworm_layer
    write_oci(path, ImageSpec([base], cmd=SSHD, exposed_ports=("22/tcp",)), tag="clean")
    for compression in ("gzip", "zstd", "none"):
        write_oci(
            path,
            ImageSpec([base, implant_layer(implant_so)], cmd=SSHD, exposed_ports=("22/tcp",)),
            tag=f"implant-{compression}",
            compression=compression,
        )
    write_oci(path, ImageSpec([base, implant_layer(implant_so)], cmd=["/bin/bash"]), tag="implant-no-sshd-cmd")
    lie = Layer.files({"/var/lib/dpkg/status": file(status_claiming(bookworm_root, "5.6.1-1"))})
    write_oci(path, ImageSpec([base, lie], cmd=SSHD), tag="affected-version")
    deleted = Layer.files(
        {f"{LIB}/liblzma.so.5.6.1": whiteout(), f"{LIB}/liblzma.so.5": symlink("liblzma.so.5.4.1")}
    )
    write_oci(path, ImageSpec([base, implant_layer(implant_so), deleted], cmd=SSHD), tag="deleted")
    return path


def test_real_bookworm_with_openssh_is_clean(capsys: pytest.CaptureFixture[str], layout: Path) -> None:
    status, report = scan(capsys, f"oci:{layout}:clean")
    [image] = report["images"]
    assert status == 0
    assert image["verdict"] == "clean" and image["findings"] == []
    assert image["platform"] == "linux/amd64"
    stats = image["layers"][0]["stats"]
    # Every ELF file of the root was looked at, and none raised a finding.
    assert stats["elf_files"] > 300
    assert stats["files_read"] >= stats["elf_files"]
    assert stats["entries"] > 5000
    assert report["tool"]["rules"].startswith("r1-")


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_implant_loaded_by_sshd_is_reachable(
    capsys: pytest.CaptureFixture[str], layout: Path, compression: str
) -> None:
    status, report = scan(capsys, f"oci:{layout}:implant-{compression}")
    [image] = report["images"]
    assert status == 1
    assert image["verdict"] == "backdoored-reachable"
    assert image["layers"][1]["stats"]["compression"] == compression
    rules = {(f["rule"], f["path"], f["in_final_fs"]) for f in image["findings"]}
    assert ("xz-get-cpuid-prologue", f"{LIB}/liblzma.so.5.6.1", True) in rules
    assert ("xz-yara-opcodes", f"{LIB}/liblzma.so.5.6.1", True) in rules
    # The real dpkg database says 5.4.1: the bytes win, and the report says so.
    assert ("package-claims-clean", "/var/lib/dpkg/status", True) in rules
    assert any("version-matching scanner would miss" in r for r in image["reasons"])
    assert any("runs sshd directly: /usr/sbin/sshd -D" in r for r in image["reasons"])
    assert any("sshd would load the implant at start-up" in r for r in image["reasons"])


def test_implant_without_sshd_started_is_dormant(capsys: pytest.CaptureFixture[str], layout: Path) -> None:
    status, report = scan(capsys, f"oci:{layout}:implant-no-sshd-cmd")
    [image] = report["images"]
    assert status == 1 and image["verdict"] == "backdoored-dormant"
    assert any("does not start sshd: /bin/bash" in r for r in image["reasons"])
    assert main(["scan", "--no-progress", "--fail-on", "reachable", f"oci:{layout}:implant-no-sshd-cmd"]) == 0
    capsys.readouterr()


def test_affected_version_with_clean_bytes(capsys: pytest.CaptureFixture[str], layout: Path) -> None:
    status, report = scan(capsys, f"oci:{layout}:affected-version")
    [image] = report["images"]
    assert status == 0  # below the default --fail-on
    assert image["verdict"] == "affected-version-not-injected"
    finding, disagreement = image["findings"]
    assert finding["kind"] == "package" and finding["evidence"]["version"] == "5.6.1-1"
    assert disagreement["rule"] == "package-claims-affected" and disagreement["indicates"] == "inconsistency"
    assert main(["scan", "--no-progress", "--fail-on", "affected", f"oci:{layout}:affected-version"]) == 1
    capsys.readouterr()


def test_implant_deleted_by_whiteout_is_history(capsys: pytest.CaptureFixture[str], layout: Path) -> None:
    status, report = scan(capsys, f"oci:{layout}:deleted")
    [image] = report["images"]
    assert status == 0 and image["verdict"] == "backdoor-in-history"
    assert image["findings"] and all(not f["in_final_fs"] for f in image["findings"])
    assert {f["layer"] for f in image["findings"]} == {image["layers"][1]["digest"]}


def test_whole_layout_scans_every_tag(capsys: pytest.CaptureFixture[str], layout: Path) -> None:
    status, report = scan(capsys, f"oci:{layout}")
    verdicts = {ref.rsplit(":", 1)[1]: image["verdict"] for ref, image in by_ref(report).items()}
    assert verdicts == {
        "clean": "clean",
        "implant-gzip": "backdoored-reachable",
        "implant-zstd": "backdoored-reachable",
        "implant-none": "backdoored-reachable",
        "implant-no-sshd-cmd": "backdoored-dormant",
        "affected-version": "affected-version-not-injected",
        "deleted": "backdoor-in-history",
    }
    assert status == 1


def test_skopeo_docker_archive_of_bookworm_is_clean(
    capsys: pytest.CaptureFixture[str], layout: Path, tmp_path: Path
) -> None:
    archive = tmp_path / "bookworm.tar"
    subprocess.run(
        [
            "skopeo", "--insecure-policy", "copy", "-q",
            f"oci:{layout}:clean", f"docker-archive:{archive}:test/bookworm:ssh",
        ],
        check=True,
        capture_output=True,
    )
    status, report = scan(capsys, f"docker-archive:{archive}")
    [image] = report["images"]
    assert status == 0 and image["verdict"] == "clean" and image["findings"] == []
    assert image["layers"][0]["stats"]["elf_files"] > 300


def test_rootfs_source_of_bookworm_is_clean(capsys: pytest.CaptureFixture[str], bookworm_root: Path) -> None:
    status, report = scan(capsys, f"rootfs:{bookworm_root}")
    [image] = report["images"]
    assert status == 0 and image["verdict"] == "clean"
    assert image["digest"] is None and image["layers"][0]["stats"]["elf_files"] > 300


def test_clean_version_with_implant_bytes_in_docker_archive(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, implant_so: bytes
) -> None:
    """A small image whose dpkg database says the fixed version; the bytes say otherwise."""
    status_text = (
        "Package: liblzma5\nStatus: install ok installed\nArchitecture: amd64\n"
        "Source: xz-utils\nVersion: 5.6.1+really5.4.5-1\n"
    )
    image = ImageSpec(
        [Layer.files({"/var/lib/dpkg/status": status_text, **implant_files(implant_so)})],
        cmd=["/bin/sh"],
    )
    archive = tmp_path / "saved.tar"
    write_docker_archive(archive, [(image, ["relabelled/liblzma:1"])])
    status, report = scan(capsys, f"docker-archive:{archive}:relabelled/liblzma:1")
    [result] = report["images"]
    assert status == 1 and result["verdict"] == "backdoored-dormant"
    rules = [f["rule"] for f in result["findings"]]
    assert "dpkg-affected-version" not in rules and "package-claims-clean" in rules


def test_source_tree_with_trigger_markers(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """An unpacked xz source tree (synthetic marker lines only) is source material."""
    m4 = (
        "# build-to-host.m4 serial 30\n"
        "  gl_am_configmake=`grep -aErls \"#{4}[[:alnum:]]{5}#{4}$\" $srcdir/ 2>/dev/null`\n"
        "  gl_path_map='tr \"\\t \\-_\" \" \\t_\\-\"'\n"
        "  AC_CONFIG_COMMANDS([build-to-host], [eval $gl_config_gt | $SHELL 2>/dev/null], [])\n"
    )
    tree = Layer.files(
        {
            "/usr/src/xz-5.6.1/m4/build-to-host.m4": m4,
            "/usr/src/xz-5.6.1/README": "XZ Utils\n",
        }
    )
    layout = tmp_path / "layout"
    write_oci(layout, ImageSpec([tree]), tag="src", compression="zstd")
    status, report = scan(capsys, f"oci:{layout}:src")
    [image] = report["images"]
    assert status == 0 and image["verdict"] == "source-artifacts"
    assert [f["rule"] for f in image["findings"]] == ["xz-trigger-m4"]


def test_two_platform_index_fans_out(capsys: pytest.CaptureFixture[str], tmp_path: Path, implant_so: bytes) -> None:
    amd64 = ImageSpec([implant_layer(implant_so)], cmd=SSHD)
    arm64 = ImageSpec([Layer.files({"/etc/os-release": "ID=debian\n"})], architecture="arm64")
    layout = tmp_path / "multi"
    write_oci_index(layout, [amd64, arm64], tag="multi")
    status, report = scan(capsys, f"oci:{layout}:multi")
    platforms = {image["platform"]: image["verdict"] for image in report["images"]}
    assert platforms == {"linux/amd64": "backdoored-dormant", "linux/arm64": "clean"}
    assert status == 1
    status, report = scan(capsys, "--platform", "linux/arm64", f"oci:{layout}:multi")
    assert [i["platform"] for i in report["images"]] == ["linux/arm64"] and status == 0


def test_corrupt_layer_fails_only_its_image(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    write_oci(layout, ImageSpec([Layer.files({"/etc/a": "good\n"})]), tag="good")
    bad = write_oci(layout, ImageSpec([Layer.files({"/etc/b": "to be truncated\n" * 500})]), tag="bad")
    blob = blob_file(layout, bad.layers[0].digest)
    blob.write_bytes(blob.read_bytes()[: blob.stat().st_size // 2])
    archive = tmp_path / "other.tar"
    write_docker_archive(archive, [(ImageSpec([Layer.files({"/etc/c": "fine\n"})]), ["other:1"])])

    status, report = scan(
        capsys, f"oci:{layout}:bad", f"oci:{layout}:good", f"docker-archive:{archive}", f"oci:{tmp_path}/missing"
    )
    images = report["images"]
    assert status == 2
    assert [i["verdict"] for i in images] == ["error", "clean", "clean", "error"]
    assert "truncated" in images[0]["error"] or "corrupt" in images[0]["error"]
    assert images[3]["error"]


def test_table_output_lists_verdicts_and_reasons(capsys: pytest.CaptureFixture[str], layout: Path) -> None:
    status = main(["scan", "--no-progress", f"oci:{layout}:implant-gzip", f"oci:{layout}:clean"])
    out = capsys.readouterr().out
    assert status == 1
    assert "backdoored-reachable" in out and "clean" in out
    assert f"{LIB}/liblzma.so.5.6.1" in out


def test_usage_errors_exit_2_without_traceback(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["scan", "--no-progress", "nosuchtransport-://x"]) == 2
    err = capsys.readouterr().err
    assert "layerhound: error:" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as exited:
        main(["scan", "--fail-on", "sometimes", f"oci:{tmp_path}"])
    assert exited.value.code == 2


def test_console_script_runs(tmp_path: Path) -> None:
    exe = shutil.which("layerhound") or str(Path(__file__).resolve().parents[1] / ".venv/bin/layerhound")
    done = subprocess.run([exe, "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("layerhound ")
