"""The layer cache on its own: exact round trip, keys, staleness, corruption, kills, concurrency."""

from __future__ import annotations

import dataclasses
import signal
import sqlite3
import subprocess
import sys
import textwrap
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import pytest

from layerhound.detectors.base import Detector
from layerhound.detectors.dpkg import DpkgDetector
from layerhound.detectors.registry import ALL_DETECTORS
from layerhound.layers.layer import DirectoryLayer, TarBlobLayer
from layerhound.model import Entry, EntryType, Fact, Finding, Indicates, Kind, LayerResult, LayerStats
from layerhound.store import serialize
from layerhound.store.cache import CACHE_FILE, LayerCache, open_cache
from layerhound.store.parts import DetectorPart, detector_key, part_version
from layerhound.store.serialize import UndecodableResult, dump_layer, load_layer

ROOT = Path(__file__).resolve().parents[2]
V1: tuple[Detector, ...] = ALL_DETECTORS
"""The detectors every result here is stored and fetched for."""


class BumpedDpkg(DpkgDetector):
    """dpkg at the next version: its stored part is stale, every other detector's is not."""

    version = DpkgDetector.version + 1


V2: tuple[Detector, ...] = tuple(BumpedDpkg() if isinstance(d, DpkgDetector) else d for d in ALL_DETECTORS)
NAMES = [d.name for d in V1]


def digest(n: int) -> str:
    return f"sha256:{n:064x}"


def blobless(n: int, size: int = 1234, diff_id: str | None = None, media_type: str = "m") -> TarBlobLayer:
    """A layer whose blob cannot be opened: a cache hit must never need it."""

    @contextmanager
    def opener() -> Iterator[BinaryIO]:
        raise AssertionError("the blob was opened")
        yield  # pragma: no cover

    return TarBlobLayer(digest(n), size, media_type, opener, diff_id=diff_id)


def full_stats() -> LayerStats:
    """Every field of LayerStats away from its default, whatever fields it has,
    except ``detector_errors`` (a result with those is never cached)."""
    stats = LayerStats()
    for index, (name, hint) in enumerate(typing.get_type_hints(LayerStats).items(), start=1):
        if hint is int:
            setattr(stats, name, 1000 + index)
        elif hint is str:
            setattr(stats, name, f"value-{index}")
        elif typing.get_origin(hint) is list:
            if name != "detector_errors":
                setattr(stats, name, [f"/usr/lib/{name}-{index}", "/opt/x.deb!/usr/lib/y.so"])
        else:  # a new kind of field: extend this helper (and the codec, if needed)
            raise AssertionError(f"LayerStats.{name}: {hint!r}")
    return stats


def sample(n: int = 1) -> LayerResult:
    """A result with entries of every type, whiteouts, and findings/facts of every kind."""
    layer = digest(n)
    entries = [
        Entry("/usr/lib/x86_64-linux-gnu/liblzma.so.5.6.1", EntryType.FILE, 214_256, 0o644),
        Entry("/usr/lib", EntryType.DIR, 0, 0o755),
        Entry("/usr/lib/x86_64-linux-gnu/liblzma.so.5", EntryType.SYMLINK, 0, 0o777, "liblzma.so.5.6.1"),
        Entry("/usr/bin/unxz", EntryType.HARDLINK, 0, 0o755, "/usr/bin/xz"),
        Entry("/dev/null", EntryType.OTHER, 0, 0o666),
        Entry("/etc/caf\u00e9-\udcff-\u2603", EntryType.FILE, 3, 0o4755),  # undecodable tar name bytes survive
    ]
    findings = [
        Finding(
            rule=f"rule-{kind.value}-{indicates.value}",
            kind=kind,
            indicates=indicates,
            path=entries[0].path,
            layer=layer if index % 2 else None,
            sha256=None if index % 3 else "ab" * 32,
            evidence={"offsets": [1, 2], "nested": {"a": [None, True, 1.5]}, "text": "\u00e9"},
            in_final_fs=bool(index % 2),
            detector=NAMES[index],
        )
        for index, (kind, indicates) in enumerate(zip(list(Kind), list(Indicates) * 2, strict=False))
    ]
    facts = [
        Fact("elf-dynamic", "/usr/sbin/sshd", {"needed": ["libsystemd.so.0"], "soname": None, "pie": True}, layer,
             detector="elf-dynamic"),
        Fact("loader-config", "/etc/ld.so.cache", {"cache": [["liblzma.so.5", "/usr/lib/x"]]},
             detector="loader-config"),
    ]
    return LayerResult(
        digest=layer,
        size=1234,
        media_type="m",
        entries=entries,
        whiteouts=["/usr/lib/old"],
        opaque_dirs=["/opt"],
        findings=findings,
        facts=facts,
        stats=full_stats(),
    )


@pytest.fixture()
def cache(tmp_path: Path) -> Iterator[LayerCache]:
    with LayerCache(tmp_path / CACHE_FILE) as opened:
        yield opened


def rows(path: Path) -> list[tuple[str, str]]:
    """(walk version, digest) of every stored walk part."""
    with sqlite3.connect(path) as conn:
        return sorted(conn.execute("SELECT walk, digest FROM layer_walks"))


def part_keys(path: Path, n: int) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {k for (k,) in conn.execute("SELECT detector FROM layer_parts WHERE digest = ?", (digest(n),))}


# ---------------------------------------------------------------- the codec


def test_every_kind_of_entry_finding_and_fact_is_in_the_sample() -> None:
    result = sample()
    assert {e.type for e in result.entries} == set(EntryType)
    assert {f.kind for f in result.findings} == set(Kind)
    assert {f.indicates for f in result.findings} == set(Indicates)


def test_json_round_trip_is_exact() -> None:
    original = sample()
    assert load_layer(dump_layer(original)) == original
    failed = dataclasses.replace(original, stats=dataclasses.replace(original.stats, detector_errors=["d: /x: e"]))
    assert load_layer(dump_layer(failed)) == failed
    # Entries are compact arrays in field order.
    assert serialize.layer_to_json(original)["entries"][2] == [
        "/usr/lib/x86_64-linux-gnu/liblzma.so.5", "symlink", 0, 0o777, "liblzma.so.5.6.1",
    ]


def test_round_trip_through_the_cache(cache: LayerCache) -> None:
    original = sample()
    assert cache.store(blobless(1), original, V1)
    [hit] = cache.fetch([blobless(1)], V1)
    assert hit is not None and hit.cached is True
    assert dataclasses.replace(hit, cached=False) == original


def test_the_codec_covers_every_model_field() -> None:
    """A field of a type the codec does not know would make every row a miss: fail here instead."""
    serialize._decoder(LayerResult)  # raises TypeError for an unsupported field type
    assert serialize.schema_version().startswith(f"s{serialize.FORMAT}-")


def test_a_result_json_would_change_is_not_stored(cache: LayerCache) -> None:
    changed = dataclasses.replace(
        sample(), findings=[dataclasses.replace(sample().findings[0], evidence={"pair": (1, 2)})]
    )
    assert not cache.store(blobless(1), changed, V1)  # the tuple would come back a list
    unjsonable = dataclasses.replace(sample(), facts=[Fact("x", "/x", {"raw": b"\x00"}, detector="elf-dynamic")])
    assert not cache.store(blobless(1), unjsonable, V1)
    assert cache.fetch([blobless(1)], V1) == [None]
    assert len(cache.problems) == 2 and all("not caching" in p for p in cache.problems)


@pytest.mark.parametrize(
    "text",
    [
        "",
        '{"digest": "sha256:',
        "[]",
        "null",
        '{"digest": null}',
    ],
)
def test_undecodable_text_raises(text: str) -> None:
    with pytest.raises(UndecodableResult):
        load_layer(text)


def test_wrong_types_deep_inside_are_undecodable() -> None:
    good = serialize.layer_to_json(sample())
    for mutate in (
        lambda d: d["entries"][0].__setitem__(1, "socket"),  # unknown enum value
        lambda d: d["entries"][0].__setitem__(2, "12"),  # size as a string
        lambda d: d["entries"][0].pop(),  # an entry missing a field
        lambda d: d["findings"][0].__setitem__("in_final_fs", 1),  # int for bool
        lambda d: d["stats"].__setitem__("entries", True),  # bool for int
        lambda d: d["stats"].pop("compression"),
        lambda d: d.__setitem__("extra", 1),
        lambda d: d["facts"][0].__setitem__("data", []),
    ):
        value = serialize.layer_to_json(sample())
        mutate(value)
        with pytest.raises(UndecodableResult):
            serialize.layer_from_json(value)
    assert serialize.layer_from_json(good) == sample()


# ---------------------------------------------------------------- keys and staleness


def test_what_is_never_stored(cache: LayerCache, tmp_path: Path) -> None:
    host = DirectoryLayer(tmp_path)
    assert not cache.store(host, dataclasses.replace(sample(), digest=None), V1)
    assert not cache.store(blobless(2), sample(1), V1)  # result of another layer
    assert cache.fetch([host, blobless(1), blobless(2)], V1) == [None, None, None]
    assert rows(cache.path) == []
    # A detector that failed on a file keeps no part: it runs again next time, the others do not.
    failing = dataclasses.replace(sample(), stats=dataclasses.replace(full_stats(), detector_errors=["dpkg: /x: boom"]))
    assert cache.store(blobless(1), failing, V1)
    [stored] = cache.lookup([blobless(1)], V1)
    assert stored is not None and [d.name for d in stored.missing(V1)] == ["dpkg"]
    assert cache.fetch([blobless(1)], V1) == [None]


def test_a_bumped_detector_is_the_only_stale_part(cache: LayerCache) -> None:
    cache.store(blobless(1), sample(1), V1)
    assert cache.fetch([blobless(1)], V2) == [None]
    [stored] = cache.lookup([blobless(1)], V2)
    assert stored is not None and [type(d) for d in stored.missing(V2)] == [BumpedDpkg]
    assert cache.fetch([blobless(1)], V1)[0] is not None


def test_detector_keys_follow_versions_and_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    before = detector_key(DpkgDetector())
    assert before.startswith(f"dpkg@{DpkgDetector.version}:")
    assert detector_key(BumpedDpkg()) != before
    monkeypatch.setattr(DpkgDetector, "rule_tables", lambda self: {"affected": ["9.9.9"]})
    assert detector_key(DpkgDetector()) not in (before, detector_key(BumpedDpkg()))


def test_two_versions_keep_their_rows_side_by_side(cache: LayerCache, tmp_path: Path) -> None:
    """Nothing is pruned: a host with another dpkg version adds its part and deletes none."""
    cache.store(blobless(1), sample(1), V1)
    old = part_keys(cache.path, 1)
    fresh = dataclasses.replace(sample(1), findings=[f for f in sample(1).findings if f.detector == "dpkg"], facts=[])
    assert cache.store(blobless(1), fresh, [V2[0]], with_walk=False)
    assert part_keys(cache.path, 1) == old | {detector_key(BumpedDpkg())}
    assert cache.fetch([blobless(1)], V1)[0] is not None and cache.fetch([blobless(1)], V2)[0] is not None
    assert len(rows(cache.path)) == 1
    reopened = open_cache(cache.path.parent)
    assert reopened is not None
    reopened.close()
    assert part_keys(cache.path, 1) == old | {detector_key(BumpedDpkg())}
    assert open_cache(tmp_path, enabled=False) is None


def test_parts_join_back_to_the_result() -> None:
    """The parts of a result, stored per detector, join back to it exactly."""
    from layerhound.store.parts import join, split

    walk, parts = split(sample(), V1)
    assert set(parts) == {detector_key(d) for d in V1}
    assert isinstance(parts[detector_key(V1[0])], DetectorPart)
    assert join(walk, [parts[detector_key(d)] for d in V1], V1) == sample()
    assert part_version().count("+") == 2


def test_a_hit_takes_size_and_media_type_of_the_image_at_hand(cache: LayerCache) -> None:
    """Same blob, another manifest (skopeo turns an OCI media type into Docker's)."""
    cache.store(blobless(1, media_type="application/vnd.oci.image.layer.v1.tar+gzip"), sample(1), V1)
    docker = "application/vnd.docker.image.rootfs.diff.tar.gzip"
    [hit] = cache.fetch([blobless(1, media_type=docker)], V1)
    assert hit is not None and hit.media_type == docker


def test_a_hit_contradicted_by_the_image_is_a_miss(cache: LayerCache) -> None:
    """Another diff_id or size for a verified blob: a fresh walk would fail, so must this scan."""
    cache.store(blobless(1, diff_id=digest(100)), sample(1), V1)
    assert cache.fetch([blobless(1, diff_id=digest(101))], V1) == [None]
    assert cache.fetch([blobless(1, size=99)], V1) == [None]
    assert cache.fetch([blobless(1, diff_id=digest(100))], V1)[0] is not None
    assert cache.fetch([blobless(1, size=0)], V1)[0] is not None  # size not given by the descriptor


def test_a_repeated_layer_is_served_at_each_position(cache: LayerCache) -> None:
    cache.store(blobless(1), sample(1), V1)
    hits = cache.fetch([blobless(1), blobless(3), blobless(1)], V1)
    assert hits[1] is None and hits[0] == hits[2] and hits[0] is not None


def test_many_layers_in_one_lookup(cache: LayerCache) -> None:
    small = LayerResult(digest=None, size=1)
    for n in range(1200):
        cache.store(blobless(n, size=1), dataclasses.replace(small, digest=digest(n)), V1)
    hits = cache.fetch([blobless(n, size=1) for n in range(1300)], V1)
    assert sum(hit is not None for hit in hits) == 1200


# ---------------------------------------------------------------- damage


def test_corrupt_row_is_a_miss_and_is_replaced(cache: LayerCache) -> None:
    cache.store(blobless(1), sample(1), V1)
    cache.store(blobless(2), sample(2), V1)
    with sqlite3.connect(cache.path) as conn:
        conn.execute("UPDATE layer_walks SET value = ? WHERE digest = ?", ('{"digest": "sha', digest(1)))
        wrong = conn.execute("SELECT value FROM layer_walks WHERE digest = ?", (digest(2),)).fetchone()[0]
        wrong = wrong.replace(digest(2), digest(3))  # decodes, but is another layer's result
        conn.execute("UPDATE layer_walks SET value = ? WHERE digest = ?", (wrong, digest(2)))
    assert cache.fetch([blobless(1), blobless(2)], V1) == [None, None]
    assert cache.store(blobless(1), sample(1), V1)
    assert cache.fetch([blobless(1)], V1)[0] is not None


def test_a_file_that_is_not_a_database_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / CACHE_FILE
    path.write_bytes(b"this is not SQLite" * 100)
    warnings: list[str] = []
    with LayerCache(path, warnings.append) as cache:
        assert cache.store(blobless(1), sample(1), V1)
    [aside] = [p for p in tmp_path.iterdir() if ".broken-" in p.name]
    assert aside.read_bytes().startswith(b"this is not SQLite")
    assert len(warnings) == 1 and "moved" in warnings[0]


def test_sqlite_failure_mid_run_disables_the_cache_with_one_warning(cache: LayerCache) -> None:
    warnings: list[str] = []
    cache._warn = warnings.append
    with sqlite3.connect(cache.path) as conn:
        conn.execute("DROP TABLE layer_walks")
    assert cache.fetch([blobless(1)], V1) == [None]
    assert not cache.enabled
    assert not cache.store(blobless(1), sample(1), V1)
    assert len(warnings) == 1 and "disabled" in warnings[0]


def test_unusable_cache_directory_means_no_cache_and_a_warning(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    warnings: list[str] = []
    assert open_cache(blocker / "sub", warn=warnings.append) is None
    assert len(warnings) == 1 and "without the layer cache" in warnings[0]


def test_journal_is_wal_and_directory_private(tmp_path: Path) -> None:
    with LayerCache(tmp_path / "new" / CACHE_FILE):
        pass
    assert (tmp_path / "new").stat().st_mode & 0o077 == 0
    with sqlite3.connect(tmp_path / "new" / CACHE_FILE) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# ---------------------------------------------------------------- processes

WRITER = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, {root!r})
    from layerhound.store.cache import LayerCache
    from tests.store.test_cache import V1, blobless, sample
    cache = LayerCache(sys.argv[1])
    cache.store(blobless(1), sample(1), V1)
    os.kill(os.getpid(), signal.SIGKILL)
    cache.store(blobless(2), sample(2), V1)
    """
)


def test_stored_results_survive_a_killed_writer(tmp_path: Path) -> None:
    path = tmp_path / CACHE_FILE
    script = WRITER.format(root=str(ROOT))
    done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL, done.stderr
    with LayerCache(path) as cache:
        first, second = cache.fetch([blobless(1), blobless(2)], V1)
    assert first is not None and dataclasses.replace(first, cached=False) == sample(1)
    assert second is None


CONCURRENT = textwrap.dedent(
    """
    import dataclasses, sys
    sys.path.insert(0, {root!r})
    from layerhound.store.cache import LayerCache
    from tests.store.test_cache import V1, blobless, sample
    worker = int(sys.argv[2])
    with LayerCache(sys.argv[1]) as cache:
        for n in range(40):
            number = n if n % 2 else 1000 * worker + n  # odd layers shared by every worker
            result = dataclasses.replace(sample(number), size=1234)
            assert cache.store(blobless(number), result, V1), cache.problems
            cache.fetch([blobless(m) for m in range(n)], V1)
        assert not cache.problems, cache.problems
    """
)


def test_concurrent_processes_share_one_file(tmp_path: Path) -> None:
    path = tmp_path / CACHE_FILE
    script = CONCURRENT.format(root=str(ROOT))
    workers = [
        subprocess.Popen([sys.executable, "-c", script, str(path), str(w)], stderr=subprocess.PIPE, text=True)
        for w in range(1, 5)
    ]
    for worker in workers:
        _, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    shared = {digest(n) for n in range(1, 40, 2)}
    expected = shared | {digest(1000 * w + n) for w in range(1, 5) for n in range(0, 40, 2)}
    assert {d for _, d in rows(path)} == expected
    with LayerCache(path) as cache:
        assert all(hit is not None for hit in cache.fetch([blobless(int(d[7:], 16)) for d in expected], V1))


def test_no_blob_is_opened_for_a_hit(cache: LayerCache) -> None:
    """``blobless`` raises when opened; fetching through it proves the point for every test above."""
    cache.store(blobless(1), sample(1), V1)
    layer = blobless(1)
    with pytest.raises(AssertionError, match="blob was opened"):
        list(layer.members())
    assert cache.fetch([layer], V1)[0] is not None
