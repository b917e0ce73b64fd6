"""``rootfs:DIR`` and ``file:PATH``: host files as one-layer images."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from layerhound.errors import SourceError
from layerhound.sources import open_images
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
