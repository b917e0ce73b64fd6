"""The final filesystem layerhound judges equals the one umoci unpacks, on crafted layers.

Each case is a stack of layers written here with the cases runtimes disagree on least and
attackers like most: a path twice in one layer, a file replaced by a directory and back,
whiteouts of files and of whole trees, opaque directories, hard links within a layer and
to a lower one, symlinks replaced, parents only implied, a GNU sparse file. umoci (Debian's,
the OCI reference unpacker) unpacks each image into a temp dir; layerhound's merged view of
the same layers is compared path by path: type, symlink target, and a file's bytes (found
from the member its origin names).
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from collections.abc import Iterable
from pathlib import Path

import pytest

from layerhound.detectors.base import Detector
from layerhound.detectors.registry import ALL_DETECTORS
from layerhound.fs.merged import MergedView
from layerhound.layers.walk import walk_layer
from layerhound.model import Entry, EntryType, Finding
from layerhound.sources import open_images
from tests.support.imagewriter import (
    ImageSpec,
    Layer,
    Spec,
    directory,
    file,
    hardlink,
    opaque,
    symlink,
    whiteout,
    write_oci,
)

Stack = list[list[tuple[str, Spec]]]

CASES: dict[str, Stack] = {
    "same path twice in a layer": [[("a", file("first")), ("a", file("second, longer"))]],
    "file replaced by a directory in one layer": [[("a", file("x")), ("a", directory()), ("a/b", file("in"))]],
    "directory replaced by a file in the next layer": [[("d", directory()), ("d/x", file("x"))], [("d", file("f"))]],
    "whiteout of a file": [[("etc/a", file("a")), ("etc/b", file("b"))], [("etc/a", whiteout())]],
    "whiteout of a tree": [[("opt/t", directory()), ("opt/t/x", file("x")), ("opt/t/y/z", file("z"))],
                           [("opt/t", whiteout())]],
    "opaque directory": [[("srv", directory()), ("srv/old", file("old"))],
                         [("srv", directory()), ("srv", opaque()), ("srv/new", file("new"))]],
    "hard link in the layer": [[("lib/so.1", file("shared object")), ("lib/so", hardlink("lib/so.1"))]],
    "hard link to a lower layer": [[("lib/so.1", file("lower bytes"))], [("bin/so", hardlink("lib/so.1"))]],
    "symlink replaced by a file": [[("lib", symlink("usr/lib")), ("usr/lib", directory())],
                                   [("lib", file("now a file"))]],
    "implied parents": [[("deep/er/still/f", file("f"))]],
    "file replaced in a later layer": [[("x", file("one"))], [("x", file("two"))], [("x", file("three"))]],
    "hard link kept when its target is replaced in the layer": [
        [("a", file("old bytes")), ("l", hardlink("a")), ("a", file("new, other bytes"))]],
    "hard link kept when its target is replaced in a later layer": [
        [("a", file("old bytes")), ("l", hardlink("a"))], [("a", file("new, other bytes"))]],
}


def _expected_bytes(stack: Stack) -> dict[tuple[int, str, bool], bytes]:
    """Origin -> bytes: the last regular-file member at a path of a layer, and (``True``) the
    copy before it, which a hard link made in between keeps."""
    found: dict[tuple[int, str, bool], bytes] = {}
    for index, layer in enumerate(stack):
        for path, spec in layer:
            if spec.kind == "file":
                final = (index, "/" + path, False)
                if final in found:
                    found[(index, "/" + path, True)] = found[final]
                found[final] = spec.data
    return found


def _ours(layout: Path, stack: Stack) -> dict[str, tuple[str, str]]:
    [image] = open_images(f"oci:{layout}:latest")
    view = MergedView.build([walk_layer(layer, ALL_DETECTORS) for layer in image.layers])
    data = _expected_bytes(stack)
    out: dict[str, tuple[str, str]] = {}
    for path, node in view.walk():
        if path == "/":
            continue
        kind = node.entry.type
        if kind is EntryType.DIR:
            out[path] = ("dir", "")
        elif kind is EntryType.SYMLINK:
            out[path] = ("symlink", node.entry.linkname)
        else:
            origin = node.origin
            assert origin is not None, path
            out[path] = ("file", hashlib.sha256(data[origin]).hexdigest())
    return out


def _umoci(layout: Path, bundle: Path) -> dict[str, tuple[str, str]]:
    subprocess.run(["umoci", "unpack", "--rootless", "--image", f"{layout}:latest", str(bundle)],
                   check=True, capture_output=True)
    root = bundle / "rootfs"
    out: dict[str, tuple[str, str]] = {}
    for directory_path, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            host = Path(directory_path) / name
            path = "/" + str(host.relative_to(root))
            mode = host.lstat().st_mode
            if stat.S_ISLNK(mode):
                out[path] = ("symlink", os.readlink(host))
            elif stat.S_ISDIR(mode):
                out[path] = ("dir", "")
            else:
                out[path] = ("file", hashlib.sha256(host.read_bytes()).hexdigest())
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_merged_view_is_what_umoci_unpacks(case: str, tmp_path: Path) -> None:
    stack = CASES[case]
    write_oci(tmp_path / "layout", ImageSpec([Layer(layer) for layer in stack]))
    assert _ours(tmp_path / "layout", stack) == _umoci(tmp_path / "layout", tmp_path / "bundle")


class _Hashes(Detector):
    """Records the sha256 the walk computed of every file it was given whole."""

    name = "hashes-seen"
    version = 1

    def __init__(self) -> None:
        self.seen: dict[str, str] = {}

    def wants(self, entry: Entry, head: bytes) -> bool:
        return True

    def rule_tables(self) -> dict[str, object]:
        return {}

    def inspect(self, entry: Entry, data: bytes) -> Iterable[Finding]:
        return []

    def inspect_hashed(self, entry: Entry, data: bytes, sha256: str) -> Iterable[Finding]:
        self.seen[entry.path] = hashlib.sha256(data).hexdigest()
        return []


@pytest.mark.parametrize("tar_format", ["gnu", "posix"])
def test_a_sparse_file_is_the_bytes_tar_and_umoci_write(tar_format: str, tmp_path: Path) -> None:
    """GNU tar's sparse members, old GNU headers and PAX 1.0 maps: the bytes GNU tar extracts.

    umoci unpacks the PAX form to the same bytes; the old GNU form (typeflag 'S') it refuses as
    an unknown type. layerhound judges the file's bytes in both: refusing would let an implant
    hide in a member a tool of the user's may well extract.
    """
    import gzip

    source = tmp_path / "src"
    source.mkdir()
    sparse = source / "sparse.img"
    with sparse.open("wb") as handle:
        for offset, data in ((0, b"head"), (3 << 20, b"middle" * 100), ((8 << 20) - 3, b"end")):
            handle.seek(offset)
            handle.write(data)
    expected = hashlib.sha256(sparse.read_bytes()).hexdigest()
    tar = subprocess.run(["tar", "--sparse", f"--format={tar_format}", "-C", str(source), "-cf", "-", "sparse.img"],
                         check=True, capture_output=True).stdout
    assert len(tar) < 1 << 20  # the holes are not in the archive
    layer = Layer.raw_blob(gzip.compress(tar), "sha256:" + hashlib.sha256(tar).hexdigest())
    write_oci(tmp_path / "layout", ImageSpec([layer]))
    [image] = open_images(f"oci:{tmp_path / 'layout'}:latest")
    seen = _Hashes()
    walked = walk_layer(image.layers[0], [seen])
    assert [(e.path, e.size) for e in walked.entries] == [("/sparse.img", 8 << 20)]
    assert seen.seen == {"/sparse.img": expected}
    if tar_format == "posix":
        assert _umoci(tmp_path / "layout", tmp_path / "bundle") == {"/sparse.img": ("file", expected)}
    else:
        with pytest.raises(subprocess.CalledProcessError) as refused:
            _umoci(tmp_path / "layout", tmp_path / "bundle")
        assert b"unknown typeflag" in refused.value.stderr
