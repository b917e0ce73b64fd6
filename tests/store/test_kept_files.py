"""The kept candidate files: content-addressed, bounded, never executable, verified when replayed."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from layerhound.cli.common import byte_size
from layerhound.errors import CorruptLayer
from layerhound.model import Entry, EntryType
from layerhound.store.kept_files import FileKeeper, KeepSettings, KeptLayer, KeptManifest, kept_path


def keep(keeper: FileKeeper, path: str, data: bytes, pieces: int = 1, index: int = 0) -> None:
    writer = keeper.writer(Entry(path, EntryType.FILE, len(data)), index)
    assert writer is not None
    step = max(1, len(data) // pieces)
    for start in range(0, len(data), step):
        writer.feed(data[start : start + step])
    writer.finish(hashlib.sha256(data).hexdigest())


def test_files_are_named_by_sha256_private_and_stored_once(tmp_path: Path) -> None:
    keeper = FileKeeper(KeepSettings(str(tmp_path), 1 << 30))
    data = os.urandom(300_000)
    keep(keeper, "/usr/lib/a.so", data, pieces=7)
    used = keeper.manifest.used
    keep(keeper, "/usr/lib/b.so", data, index=1)  # the same bytes under another name: one copy
    assert keeper.manifest.used == used > 0
    target = kept_path(tmp_path, hashlib.sha256(data).hexdigest())
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [f.path for f in keeper.manifest.files] == ["/usr/lib/a.so", "/usr/lib/b.so"]
    assert keeper.manifest.complete and not list((tmp_path / "tmp").iterdir())


def test_the_budget_stops_keeping_and_leaves_nothing_half_written(tmp_path: Path) -> None:
    keeper = FileKeeper(KeepSettings(str(tmp_path), 50_000))
    keep(keeper, "/small", b"x" * 1000)
    keep(keeper, "/big", os.urandom(200_000), pieces=20, index=1)  # incompressible: over the budget half-way
    assert not keeper.manifest.complete and "bound" in (keeper.manifest.problem or "")
    assert keeper.manifest.over_bound
    assert [f.path for f in keeper.manifest.files] == ["/small"]
    assert keeper.writer(Entry("/later", EntryType.FILE, 1), 2) is None
    assert sorted(p.name for p in tmp_path.rglob("*.zst")) == [f"{hashlib.sha256(b'x' * 1000).hexdigest()}.zst"]
    assert not list((tmp_path / "tmp").iterdir())


def test_a_walk_that_stops_half_way_leaves_no_temporary_file(tmp_path: Path) -> None:
    keeper = FileKeeper(KeepSettings(str(tmp_path), 1 << 30))
    writer = keeper.writer(Entry("/f", EntryType.FILE, 10), 0)
    assert writer is not None
    writer.feed(b"12345")
    keeper.close()
    assert not list((tmp_path / "tmp").iterdir())


def test_a_kept_name_is_a_sha256_and_nothing_else(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a sha256"):
        kept_path(tmp_path, "../../etc/passwd")


def test_replayed_files_are_verified_against_their_sha256(tmp_path: Path) -> None:
    keeper = FileKeeper(KeepSettings(str(tmp_path), 1 << 30))
    keep(keeper, "/etc/x.sh", b"#!/bin/sh\necho one\n")
    entries = [Entry("/etc/x.sh", EntryType.FILE, 19, 0o755)]
    layer = KeptLayer("sha256:" + "0" * 64, None, 1, "tar", entries, keeper.manifest, tmp_path)
    [member] = list(layer.members())
    assert member.entry.path == "/etc/x.sh"
    [kept] = keeper.manifest.files
    import zstandard

    kept_path(tmp_path, kept.sha256).write_bytes(zstandard.ZstdCompressor().compress(b"#!/bin/sh\necho two\n"))
    with pytest.raises(CorruptLayer, match="does not match sha256"):
        list(KeptLayer("sha256:" + "0" * 64, None, 1, "tar", entries, keeper.manifest, tmp_path).members())
    stranger = KeptManifest([type(kept)(0, "/not/in/the/layer", kept.sha256)])
    with pytest.raises(CorruptLayer, match="is not a file of layer"):
        list(KeptLayer("sha256:" + "0" * 64, None, 1, "tar", entries, stranger, tmp_path).members())


def test_a_path_met_twice_is_replayed_in_place_so_the_first_copy_is_replaced(tmp_path: Path) -> None:
    """A layer holding /entrypoint.sh twice, only the first copy kept: the replay still shows the
    later copy, so the first copy's facts are marked replaced, exactly as in the blob's walk."""
    from layerhound.detectors.startup import StartupFacts
    from layerhound.layers.walk import walk_layer
    from layerhound.model import REPLACED_IN_LAYER

    script = b"#!/bin/sh\nexec /usr/sbin/sshd -D\n"
    keeper = FileKeeper(KeepSettings(str(tmp_path), 1 << 30))
    keep(keeper, "/entrypoint.sh", script, index=1)
    entries = [Entry("/etc", EntryType.DIR), Entry("/entrypoint.sh", EntryType.FILE, len(script), 0o755),
               Entry("/entrypoint.sh", EntryType.FILE, 7, 0o644)]
    layer = KeptLayer("sha256:" + "1" * 64, None, 1, "tar", entries, keeper.manifest, tmp_path)
    result = walk_layer(layer, [StartupFacts()])
    [fact] = result.facts
    assert fact.data.get(REPLACED_IN_LAYER) is True


def test_rejudge_refuses_a_detector_that_would_read_files_not_kept() -> None:
    from layerhound.detectors.base import Interest
    from layerhound.detectors.registry import ALL_DETECTORS
    from layerhound.store.kept_files import KEEP_ALSO, covered_by

    covered = covered_by(ALL_DETECTORS)
    assert all(covered.covers(d.interest()) for d in ALL_DETECTORS)
    assert covered.covers(KEEP_ALSO)  # the user's rules read ELF files and scripts: kept
    assert not covered.covers(None)  # --rules-all-files reads every file: never kept whole
    assert not covered.covers(Interest(prefixes=("/opt/new-place/",)))
    assert covered.covers(Interest(prefixes=("/etc/systemd/system/multi-user.target.wants/",)))


@pytest.mark.parametrize(("text", "size"), [("10G", 10 * 1024**3), ("500M", 500 * 1024**2), ("64k", 65536),
                                             ("1048576", 1048576), ("1.5GiB", int(1.5 * 1024**3)), ("1", 1)])
def test_sizes(text: str, size: int) -> None:
    assert byte_size(text) == size


def test_a_size_that_is_not_one_is_refused() -> None:
    import argparse

    for text in ("lots", "inf", "1e400G"):
        with pytest.raises(argparse.ArgumentTypeError, match="not a size"):
            byte_size(text)
