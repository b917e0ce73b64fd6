"""``rootfs:DIR`` and ``file:PATH``: host files as one-layer images."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from layerhound.errors import SourceError
from layerhound.sources import open_images
from tests.support.cli import scan_json
from tests.support.imagewriter import read_layer


def test_rootfs(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "usr/lib").mkdir(parents=True)
    (root / "usr/lib/liblzma.so.5.6.0").write_bytes(b"\x7fELF")
    os.symlink("liblzma.so.5.6.0", root / "usr/lib/liblzma.so.5")
    os.symlink("/etc/shadow", root / "usr/lib/escape")
    [img] = open_images(f"rootfs:{root}")
    assert (img.ref, img.digest, img.platform, img.config) == (f"rootfs:{root}", None, None, {})
    [layer] = img.layers
    assert layer.digest is None
    assert read_layer(layer) == [
        ("/usr", "dir", b""),
        ("/usr/lib", "dir", b""),
        ("/usr/lib/escape", "symlink", b""),
        ("/usr/lib/liblzma.so.5", "symlink", b""),
        ("/usr/lib/liblzma.so.5.6.0", "file", b"\x7fELF"),
    ]


def test_rootfs_is_kept_under_a_platform_filter(tmp_path: Path) -> None:
    assert len(open_images(f"rootfs:{tmp_path}", "linux/arm64")) == 1


def test_file(tmp_path: Path) -> None:
    target = tmp_path / "liblzma.so.5"
    target.write_bytes(b"\x7fELF lzma")
    [img] = open_images(f"file:{target}")
    assert (img.digest, img.platform, img.config) == (None, None, {})
    assert read_layer(img.layers[0]) == [(str(target.resolve()), "file", b"\x7fELF lzma")]


def test_missing_host_paths(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="is not a directory"):
        open_images(f"rootfs:{tmp_path / 'nope'}")
    with pytest.raises(SourceError, match="is not a regular file"):
        open_images(f"file:{tmp_path / 'nope'}")
    with pytest.raises(SourceError, match="is not a regular file"):
        open_images(f"file:{tmp_path}")


def test_file_gone_before_reading_is_a_source_error(tmp_path: Path) -> None:
    target = tmp_path / "liblzma.so.5"
    target.write_bytes(b"\x7fELF")
    [image] = open_images(f"file:{target}")
    target.unlink()  # removed between opening the source and reading it
    target.symlink_to(tmp_path / "gone")
    with pytest.raises(SourceError, match="cannot read"):
        list(image.layers[0].members())


def test_a_root_walk_never_enters_pseudo_filesystems_or_blocks(tmp_path: Path) -> None:
    """/dev of this machine: device files are recorded, never opened; /dev/pts and /dev/shm are not entered."""
    from layerhound.detectors.registry import ALL_DETECTORS
    from layerhound.layers.layer import pseudo_mounts
    from layerhound.scan import scan_references

    mounts = pseudo_mounts()
    assert mounts.get("/proc") == "proc"
    [result] = scan_references(["rootfs:/dev"], ALL_DETECTORS)
    assert result.verdict.value == "clean", result.reasons
    skipped = [r for r in result.reasons if r.startswith("not walked: ")]
    inside = [point for point in mounts if point.startswith("/dev/")]
    assert inside and all(any(f"not walked: /{point[5:]}:" in r for r in skipped) for point in inside)


def test_a_fifo_and_an_unreadable_file_are_notes_not_a_hang(tmp_path: Path) -> None:
    """Run as nobody (root reads everything): the 000 file cannot be opened, the FIFO is never opened."""
    import json
    import os
    import subprocess
    import sys
    import tempfile

    tree = Path(tempfile.mkdtemp(prefix="layerhound-host-"))
    try:
        os.chmod(tree, 0o755)
        (tree / "etc").mkdir()
        (tree / "etc" / "os-release").write_text("ID=test\n")
        secret = tree / "etc" / "shadow"
        secret.write_text("root:x:0\n")
        secret.chmod(0)
        os.mkfifo(tree / "etc" / "pipe")
        (tree / "private").mkdir(mode=0o700)
        (tree / "private" / "x").write_text("x\n")
        for path in [tree / "etc", tree / "etc" / "os-release", tree / "etc" / "pipe"]:
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        command = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--",
                   sys.executable, "-m", "layerhound", "scan", "--no-cache", "--no-progress", "--format", "json",
                   f"rootfs:{tree}"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60,
                              cwd=Path(__file__).resolve().parents[2], env={**os.environ, "HOME": str(tree)})
        assert done.returncode == 0, done.stderr
        [image] = json.loads(done.stdout)["images"]
        assert image["verdict"] == "clean"
        notes = [r for r in image["reasons"] if r.startswith("not walked: ")]
        assert any("/etc/shadow: not read: Permission denied" in n for n in notes), notes
        assert any("private" in n and "Permission denied" in n for n in notes), notes
        assert not any("pipe" in n for n in notes)  # a FIFO is recorded, not read, and not worth a note
    finally:
        subprocess.run(["rm", "-rf", str(tree)], check=False)


def test_mountinfo_is_read_with_its_escapes(tmp_path: Path) -> None:
    from layerhound.layers.layer import pseudo_mounts

    info = tmp_path / "mountinfo"
    info.write_text(
        "22 1 0:21 / /proc rw,nosuid - proc proc rw\n"
        "30 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n"
        "41 30 0:40 / /mnt/with\\040space rw - tmpfs tmpfs rw\n"
        "garbage line\n"
    )
    assert pseudo_mounts(str(info)) == {"/proc": "proc", "/mnt/with space": "tmpfs"}


REPO = Path(__file__).resolve().parents[2]


def _scan_json(*args: str, timeout: float = 120) -> tuple[int, dict[str, object], str]:
    done = scan_json("--no-cache", *args, timeout=timeout)
    return done.status, (done.images or [{}])[0], done.stderr


def test_host_records_the_machine_it_walks(tmp_path: Path) -> None:
    """``host:DIR`` names the kernel and the OS of the root; os-release is followed inside the root only."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "usr/lib").mkdir(parents=True)
    (tmp_path / "usr/lib/os-release").write_text('PRETTY_NAME="Test Linux 7"\nID=testlinux\nVERSION_ID="7"\n')
    os.symlink("../usr/lib/os-release", tmp_path / "etc/os-release")
    [image] = open_images(f"host:{tmp_path}")
    kernel = os.uname()
    assert image.notes == [
        f"host {kernel.nodename}: kernel {kernel.sysname} {kernel.release} ({kernel.version}), {kernel.machine}",
        "host operating system: Test Linux 7 (ID=testlinux, VERSION_ID=7)",
    ]
    [machine] = open_images("host:")
    assert machine.layers[0].root == Path("/")  # type: ignore[attr-defined]
    pretty = next(line for line in Path("/etc/os-release").read_text().splitlines() if line.startswith("PRETTY_NAME="))
    assert machine.notes[1].startswith(f"host operating system: {pretty.split('=', 1)[1].strip(chr(34))}")


def test_host_with_a_port_is_a_registry_name() -> None:
    from layerhound.sources.refs import DOCKER, HOST, parse_reference

    assert parse_reference("host:5000/team/app:1").transport == DOCKER
    assert parse_reference("host:5000/team/app:1").registry == "host:5000"
    assert (parse_reference("host:").transport, parse_reference("host:").path) == (HOST, "/")
    assert parse_reference("host:/srv/root").path == "/srv/root"


def test_excluded_directories_are_listed_as_skipped(tmp_path: Path, implant_so: bytes) -> None:
    (tmp_path / "scratch/lib").mkdir(parents=True)
    (tmp_path / "scratch/lib/liblzma.so.5.6.1").write_bytes(implant_so)
    status, image, _ = _scan_json(f"rootfs:{tmp_path}")
    assert (status, image["verdict"]) == (1, "backdoored-dormant")
    status, image, _ = _scan_json(f"rootfs:{tmp_path}", "--exclude", str(tmp_path / "scratch"))
    assert (status, image["verdict"]) == (0, "clean")
    assert "not walked: /scratch: excluded (--exclude)" in image["reasons"]  # type: ignore[operator]


def test_a_walk_stays_on_its_filesystem_unless_told(tmp_path: Path, implant_so: bytes) -> None:
    """A real ext2 filesystem, loop-mounted in a private mount namespace (``unshare -m``), inside the root."""
    import shlex
    import subprocess
    import sys

    root = tmp_path / "root"
    (root / "data").mkdir(parents=True)
    image = tmp_path / "data.ext2"
    content = tmp_path / "content"
    (content / "lib").mkdir(parents=True)
    (content / "lib/liblzma.so.5.6.1").write_bytes(implant_so)
    subprocess.run(["truncate", "-s", "8M", str(image)], check=True)
    subprocess.run(["mkfs.ext2", "-q", "-F", "-d", str(content), str(image)], check=True)
    scan = [sys.executable, "-m", "layerhound", "scan", "--no-cache", "--no-progress", "--format", "json"]
    script = (
        f"mount -o loop,ro {shlex.quote(str(image))} {shlex.quote(str(root / 'data'))} && "
        f"{shlex.join([*scan, f'rootfs:{root}'])} > {shlex.quote(str(tmp_path / 'one.json'))}; "
        f"{shlex.join([*scan, '--cross-mounts', f'rootfs:{root}'])} > {shlex.quote(str(tmp_path / 'cross.json'))}; "
        "true"
    )
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, cwd=REPO,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    import json

    [one] = json.loads((tmp_path / "one.json").read_text())["images"]
    [cross] = json.loads((tmp_path / "cross.json").read_text())["images"]
    assert one["verdict"] == "clean"
    assert "not walked: /data: another filesystem is mounted here (not crossed)" in one["reasons"]
    assert cross["verdict"] == "backdoored-dormant"
    assert [f["path"] for f in cross["findings"]][:1] == ["/data/lib/liblzma.so.5.6.1"]


OUTPUT_MARKERS = (".layerhound-demo", ".layerhound-bench")
"""Files the demo and the benchmark leave in their output directories (images with the test implant)."""


@pytest.mark.long
def test_the_running_host_is_clean_and_its_pseudo_filesystems_are_skipped(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """``rootfs:/`` of this very machine, whole. The only directories left out are the ones this
    project writes its own implant builds into: the temporary directory (pytest's, the image
    writer's, the compiler's) and the output directories of the demo and the benchmark, of this
    checkout or any other on the machine (found by the marker files they write)."""
    import subprocess
    import tempfile

    found = subprocess.run(
        ["find", "/", "-xdev", "(", "-path", "/proc", "-o", "-path", "/sys", "-o", "-path", "/dev", "-o",
         "-path", "/run", "-o", "-path", tempfile.gettempdir(), ")", "-prune", "-o", "(",
         *" -o ".join(f"-name {marker}" for marker in OUTPUT_MARKERS).split(), ")", "-print"],
        capture_output=True, text=True, timeout=600, check=False,
    ).stdout.split()
    own = [Path(tempfile.gettempdir()), tmp_path_factory.getbasetemp(), *(Path(path).parent for path in found)]
    excludes = [arg for path in dict.fromkeys(own) if path.exists() for arg in ("--exclude", str(path))]
    status, image, stderr = _scan_json("rootfs:/", *excludes, timeout=1800)
    assert status == 0, stderr
    assert (image["verdict"], image["findings"]) == ("clean", []), image["reasons"]
    reasons = image["reasons"]
    assert isinstance(reasons, list)
    for pseudo in ("/proc", "/sys", "/dev", "/run"):
        assert f"not walked: {pseudo}: the host's pseudo filesystems are not part of any image" in reasons
    assert not any("Traceback" in line for line in stderr.splitlines())
