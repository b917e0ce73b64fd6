"""Walk one layer once and run the detectors on its candidate files.

This is where the "read each layer once" rule lives: every member passes by
exactly one time; a regular file is peeked at (``PEEK_SIZE`` bytes, of which
detectors see ``HEAD_SIZE``) and read whole only when a detector wants it and
it fits that detector's size bound, or when it is an archive to open. The
result keeps the layer's own entries, whiteouts and findings, so the merged
view and the verdict can be built without the blob.

Archives in the layer (``layers.archives``: deb, rpm, tar, zip) are opened in
memory and their members are judged by the same ``_LayerWalk.judge`` as the
layer's own files: one way to judge a file, wherever it sits. What a member's
result means differs, and is decided here:

* a finding becomes a finding about the archive file of the layer (its path and
  sha256), of kind ``archive``, with the member and the archive chain in its
  evidence; a packaged implant indicates PAYLOAD (nothing can load it as is),
  and what is neither implant, payload nor source is dropped
  (``archives.INSIDE_ARCHIVE``);
* facts are dropped: they describe files that are not installed;
* stats count members separately (``archive_*``), and everything not looked
  at (bounds, corruption, encrypted members) is an ``archive_notes`` entry.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import posixpath
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import closing
from functools import partial
from typing import Any, Protocol

from layerhound.detectors.base import HEAD_SIZE, Detector, Interest, Scanner, is_elf
from layerhound.layers import archives
from layerhound.layers.archives import ARCHIVE_ERRORS, PEEK_SIZE, ArchiveLimit, Candidate, Members, Scope
from layerhound.layers.fileview import FileView
from layerhound.layers.heap import bound_heap
from layerhound.layers.layer import Layer, describe, image_path
from layerhound.layers.stream import CHUNK
from layerhound.model import (
    MAX_FINDINGS,
    REPLACED_IN_LAYER,
    Entry,
    EntryType,
    Fact,
    Finding,
    LayerResult,
    add_note,
)

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"

WALK_VERSION = 4
"""Bump whenever the walk itself could yield different results for the same
blob (whiteout handling, what is read, how findings are attributed)."""


def walk_version() -> str:
    """Everything besides the detectors that a layer's results depend on.

    Part of the layer cache's key, next to the detectors' rules version.
    """
    tables = json.dumps(archives.rule_tables(), sort_keys=True, separators=(",", ":"))
    return f"w{WALK_VERSION}-{hashlib.sha256(tables.encode()).hexdigest()[:8]}"


class Judged(Protocol):
    """A regular file with lazy access to its bytes: a layer's ``Member`` or an ``ArchiveMember``."""

    entry: Entry

    def head(self, n: int) -> bytes: ...

    def read(self) -> bytes: ...

    def chunks(self) -> Iterator[bytes]: ...

    def random_access(self) -> FileView | None: ...


class Keeper(Protocol):
    """Where the layer's candidate files are copied as they pass (``store.kept_files``): a crawl
    keeps them so ``rejudge`` can judge them again without the blob."""

    also: Interest
    """Files to keep though no detector of this walk reads them (what rules may want later)."""

    def writer(self, entry: Entry, index: int) -> KeptFileWriter | None: ...


class KeptFileWriter(Protocol):
    def feed(self, piece: bytes | memoryview) -> None: ...

    def finish(self, sha256: str) -> None: ...


KEEP_FOR_RULES_ONLY = "user-rules"
"""A file only the user's rules want (``--rules-all-files``: every file) is not a candidate to keep."""


def walk_layer(layer: Layer, detectors: Sequence[Detector], keeper: Keeper | None = None) -> LayerResult:
    """Stream ``layer`` once; return its entries, whiteouts, findings and stats.

    Raises ``ScanError`` subclasses for unreadable, corrupt or mismatched blobs.
    A detector that fails on one file is recorded in the stats, not raised: one
    malformed ELF must not hide the rest of the layer. Likewise a corrupt or
    oversized archive in the layer is a note in the stats, never an error.
    With a ``keeper``, every file of the layer a detector reads, and every archive,
    is handed to it too (archive members are not: the archive is).
    """
    bound_heap()
    walk = _LayerWalk(layer, detectors, keeper)
    result = walk.result
    stats = result.stats
    # Paths whose copy so far left findings or facts: a later copy replaces those (``_replaced``).
    # Only these, not every path seen: a layer may have a million members.
    with_results: set[str] = set()
    for member in layer.members():
        entry = member.entry
        stats.entries += 1
        name = posixpath.basename(entry.path)
        if name.startswith(WHITEOUT_PREFIX):
            parent = posixpath.dirname(entry.path)
            if name == OPAQUE_MARKER:
                result.opaque_dirs.append(parent)
            else:
                result.whiteouts.append(posixpath.join(parent, name[len(WHITEOUT_PREFIX):]))
            continue
        if entry.path in with_results:
            _replaced(result, entry.path)
            with_results.discard(entry.path)
        result.entries.append(entry)
        if entry.type is not EntryType.FILE or entry.size == 0:
            continue
        before = len(result.findings) + len(result.facts)
        walk.index = len(result.entries) - 1
        walk.judge(member, None, entry.path)
        if len(result.findings) + len(result.facts) > before:
            with_results.add(entry.path)
    stats.compression = layer.compression
    stats.not_walked.extend(layer.notes)
    result.diff_id = layer.walked_diff_id
    put_in_order(result, detectors)
    return result


def _replaced(result: LayerResult, path: str) -> None:
    """A path appears again in the layer: unpacking keeps the last entry (Go's archive/tar, containerd).

    The findings and facts about the earlier copy are marked ``REPLACED_IN_LAYER``: history at
    that path, yet still the bytes of any hard link made to it before (the merged view knows).
    """
    result.findings[:] = [
        dataclasses.replace(f, evidence={**f.evidence, REPLACED_IN_LAYER: True}) if f.path == path else f
        for f in result.findings
    ]
    result.facts[:] = [
        dataclasses.replace(f, data={**f.data, REPLACED_IN_LAYER: True}) if f.path == path else f
        for f in result.facts
    ]


def put_in_order(result: LayerResult, detectors: Sequence[Detector]) -> None:
    """Sort findings and facts by file (layer order), then by detector.

    That is the order a walk produces them in (an archive's findings aside),
    made exact, so a result kept as per-detector parts (``store.parts``) and
    merged back equals a fresh walk of the same blob.
    """
    named = {item.path for item in result.findings} | {item.path for item in result.facts}
    position: dict[str, int] = {}
    for index, entry in enumerate(result.entries):
        if entry.path in named:
            position.setdefault(entry.path, index)
    rank = {d.name: i for i, d in enumerate(detectors)}
    last = len(result.entries)

    def key(item: Finding | Fact) -> tuple[int, int]:
        return position.get(item.path, last), rank.get(item.detector, len(rank))

    result.findings.sort(key=key)
    result.facts.sort(key=key)


class Prefilter:
    """The detectors' ``Interest``s joined: can any detector want this file? One test per file."""

    def __init__(self, detectors: Sequence[Detector]) -> None:
        interests = [detector.interest() for detector in detectors]
        known = [interest for interest in interests if interest is not None]
        self.everything = len(known) < len(interests)
        """Some detector declared no interest: every file goes to ``wants``."""
        joined = Interest.join(known)
        self._heads, self._paths, self._prefixes = joined.heads, joined.paths, joined.prefixes
        self._names, self._suffixes = joined.names, joined.suffixes

    def may_want(self, path: str, head: bytes) -> bool:
        if self.everything or head.startswith(self._heads) or path in self._paths:
            return True
        if path.startswith(self._prefixes) or path.endswith(self._suffixes):
            return True
        return path[path.rfind("/") + 1 :] in self._names


class _LayerWalk:
    """The detectors and the result of one layer, and how a file is judged."""

    def __init__(self, layer: Layer, detectors: Sequence[Detector], keeper: Keeper | None = None) -> None:
        self.digest = layer.digest
        self.detectors = detectors
        self.keeper = keeper
        self.index = 0
        """Where the file being judged sits in the layer's entries (what a kept copy is filed under)."""
        self.prefilter = Prefilter(detectors)
        self.result = LayerResult(digest=layer.digest, size=layer.size, media_type=layer.media_type)

    def judge(self, member: Judged, scope: Scope | None, name: str) -> None:
        """Judge one non-empty regular file: of the layer (``scope`` None, ``name``
        its path) or of an archive in it (``name`` the member's name there)."""
        entry = member.entry
        stats = self.result.stats
        where = entry.path if scope is None else scope.where(name)
        head = member.head(PEEK_SIZE)
        detector_head = head[:HEAD_SIZE]
        elf = is_elf(detector_head)
        if scope is None:
            stats.bytes_uncompressed += entry.size
            stats.elf_files += elf
        else:
            stats.archive_members += 1
            stats.archive_bytes += entry.size
            stats.archive_elf_files += elf
        wanted = (
            [d for d in self.detectors if d.wants(entry, detector_head)]
            if self.prefilter.may_want(entry.path, detector_head)
            else []
        )
        fitting = [d for d in wanted if entry.size <= d.max_size]
        if len(fitting) < len(wanted):
            add_note(stats.skipped_oversize, where)
        candidate = self._archive_to_open(member, head, scope, where)
        kept = self._kept_writer(entry, detector_head, fitting, candidate) if scope is None else None
        if not fitting and candidate is None:
            if kept is not None:  # only kept, for rules a later rejudge may bring
                only_kept = _FileScan(self, where, {}, kept)
                for piece in member.chunks():
                    only_kept.feed(piece)
                only_kept.finish()
            return
        if scope is None:
            stats.files_read += 1
        else:
            stats.archive_members_read += 1
        scanners = {detector.name: detector.scanner(entry, detector_head) for detector in fitting}
        parsed = None in scanners.values()  # some detector parses it: every detector gets it whole
        fmt = candidate.format if candidate is not None else None
        streamed = fmt is not None and fmt.value in archives.STREAMED and not parsed
        in_place = member.random_access() if fmt is archives.Format.ZIP and not parsed else None
        if parsed or (candidate is not None and not streamed and in_place is None):
            data = member.read()
            sha256 = hashlib.sha256(data).hexdigest()
            if kept is not None:
                view = memoryview(data)
                for start in range(0, len(data), CHUNK):
                    kept.feed(view[start : start + CHUNK])
                kept.finish(sha256)
            results = {d.name: self._attempt(d.name, where, partial(d.inspect_hashed, entry, data, sha256))
                       for d in fitting}
            self._keep_all(fitting, results, sha256, scope, name)
            if candidate is not None:
                child = self._child(scope, name, entry, sha256, candidate)
                self._open(candidate, partial(archives.members, candidate, data), child, where)
            return
        pieces = _FileScan(self, where, scanners, kept)
        if candidate is None or in_place is not None:  # hashed and scanned as it passes
            for piece in member.chunks():
                pieces.feed(piece)
            sha256, results = pieces.finish()
            self._keep_all(fitting, results, sha256, scope, name)
            if candidate is not None and in_place is not None:  # a zip on the host, opened where it lies
                self._open(candidate, partial(archives.zip_members_at, in_place),
                           self._child(scope, name, entry, sha256, candidate), where)
            return
        # A tar, deb or rpm: opened as it passes, while it is hashed and scanned. Its sha256 (which
        # the findings of its members name) is known at its end; the file's own results go first.
        tee = _Tee(member.chunks(), pieces.feed)
        mark = len(self.result.findings)
        self._open(candidate, partial(archives.stream_members, candidate, io.BufferedReader(tee, CHUNK)),
                   self._child(scope, name, entry, _PENDING, candidate), where)
        tee.drain()
        sha256, results = pieces.finish()
        inside = self.result.findings[mark:]
        if scope is None:  # the file of the layer: its members' findings name it (nested ones too)
            inside = [dataclasses.replace(f, sha256=sha256) if f.sha256 == _PENDING else f for f in inside]
        del self.result.findings[mark:]
        self._keep_all(fitting, results, sha256, scope, name)
        self.result.findings.extend(inside)

    def _kept_writer(self, entry: Entry, head: bytes, fitting: Sequence[Detector], candidate: Candidate | None
                     ) -> KeptFileWriter | None:
        keeper = self.keeper
        if keeper is None:
            return None
        only_rules = candidate is None and all(d.name == KEEP_FOR_RULES_ONLY for d in fitting)
        if only_rules and not keeper.also.passes(entry.path, head):
            return None
        return keeper.writer(entry, self.index)

    def _child(self, scope: Scope | None, name: str, entry: Entry, sha256: str, candidate: Candidate) -> Scope:
        if scope is None:
            return archives.outer_scope(entry.path, sha256, candidate.format)
        return scope.nested(name, candidate.format)

    def _keep_all(self, fitting: Sequence[Detector], results: dict[str, list[Finding | Fact] | None], sha256: str,
                  scope: Scope | None, name: str) -> None:
        for detector in fitting:
            for item in results.get(detector.name) or ():
                self._keep(dataclasses.replace(item, detector=detector.name), sha256, scope, name)

    def _attempt(
        self, detector: str, where: str, call: Callable[[], Iterable[Finding | Fact]]
    ) -> list[Finding | Fact] | None:
        """``call()``'s results; None if it failed, which is recorded against the file (see walk_layer)."""
        try:
            return list(call())
        except Exception as exc:  # any detector failure is reported, never raised
            self._failed(detector, where, exc)
            return None

    def _failed(self, detector: str, where: str, exc: Exception) -> None:
        add_note(self.result.stats.detector_errors, f"{detector}: {where}: {describe(exc)}")

    def _keep(self, item: Finding | Fact, sha256: str, scope: Scope | None, name: str) -> None:
        if isinstance(item, Fact):
            if scope is None:  # a fact about a member describes a file nobody installed
                self.result.facts.append(dataclasses.replace(item, layer=item.layer or self.digest))
            return
        finding: Finding | None = dataclasses.replace(
            item, layer=item.layer or self.digest, sha256=item.sha256 or sha256
        )
        if scope is not None and finding is not None:
            finding = archives.finding_inside(finding, scope, name, sha256)
        if finding is None:
            return
        if len(self.result.findings) >= MAX_FINDINGS:
            self.result.stats.findings_over_bound += 1
        else:
            self.result.findings.append(finding)

    def _archive_to_open(self, member: Judged, head: bytes, scope: Scope | None, where: str) -> Candidate | None:
        """The archive ``member`` is, if it is one and may be opened; notes a bound it exceeds."""
        entry = member.entry
        candidate = archives.sniff(entry.path, head, entry.size)
        if candidate is None:
            return None
        # A compressed stream whose start could not be decompressed from the
        # peek may be no archive at all: only bounds on likely ones are noted.
        noteworthy = candidate.certain or candidate.named
        depth = scope.depth if scope is not None else 0
        if depth >= archives.MAX_DEPTH:
            if noteworthy:
                self._note(
                    f"{where}: {candidate.format.value} archive nested deeper than "
                    f"{archives.MAX_DEPTH} levels, not opened"
                )
            return None
        if candidate.certain and candidate.format.value in archives.SINGLE_FILE and not self._inner_wanted(candidate):
            return None  # a compressed man page or changelog: nothing would read what it holds
        held = candidate.format.value not in archives.STREAMED and member.random_access() is None
        if held and entry.size > archives.ARCHIVE_MAX_SIZE:
            if noteworthy:
                self._note(
                    f"{where}: {candidate.format.value} archive of {entry.size} bytes is over the "
                    f"{archives.ARCHIVE_MAX_SIZE}-byte bound, not opened"
                )
            return None
        return candidate

    def _inner_wanted(self, candidate: Candidate) -> bool:
        """Whether any detector may want the one file a compressed file holds, judged from its
        decompressed start (the peek), or that file is an archive itself: else it is not opened."""
        path = image_path(candidate.inner_name)
        if self.prefilter.may_want(path, candidate.inner_head[:HEAD_SIZE]):
            return True
        return archives.sniff(path, candidate.inner_head, archives.COMPRESSED_FILE_MAX) is not None

    def _open(self, candidate: Candidate, members: Callable[[], Members | None], scope: Scope, where: str) -> None:
        """Judge every member of the archive ``members()`` reads; report what stops it."""
        stats = self.result.stats
        # Undecided between a tarball and one compressed file: the compression is what is known.
        kind = candidate.compression if not candidate.certain and candidate.compression else candidate.format.value
        try:
            found = members()
            if found is None:
                return  # a compressed file that is not a tarball
            stats.archives += 1
            with closing(found):
                for member in found:
                    try:
                        scope.budget.charge(member.entry)
                    except ArchiveLimit as exc:
                        raise ArchiveLimit(f"{exc} at {scope.where(member.name)}") from None
                    if member.note is not None:
                        self._note(f"{scope.where(member.name)}: not inspected: {member.note}")
                    elif member.entry.type is EntryType.FILE and member.entry.size > 0:
                        self.judge(member, scope if member.container is None else scope.settled(member.container),
                                   member.name)
        except ArchiveLimit as exc:
            if scope.depth > 1:
                raise  # the bound is the outermost archive's: it stops as a whole
            self._note(f"{where}: over the archive bound ({exc}); the rest of this {kind} archive is not inspected")
        except ARCHIVE_ERRORS as exc:
            self._note(
                f"{where}: corrupt or unreadable {kind} archive ({describe(exc)}); "
                "members after that point are not inspected"
            )

    def _note(self, note: str) -> None:
        add_note(self.result.stats.archive_notes, note)


_PENDING = "(sha256 pending)"
"""The sha256 a streamed archive's member findings carry until the archive's end is read."""


class _FileScan:
    """One file read in pieces: its sha256 and the detectors' scanners, fed as the pieces pass."""

    def __init__(self, walk: _LayerWalk, where: str, scanners: dict[str, Scanner | None],
                 kept: KeptFileWriter | None = None) -> None:
        self._walk = walk
        self._where = where
        self._hasher = hashlib.sha256()
        self._live = {name: scanner for name, scanner in scanners.items() if scanner is not None}
        self._kept = kept

    def feed(self, piece: bytes) -> None:
        self._hasher.update(piece)
        if self._kept is not None:
            self._kept.feed(piece)
        for name, scanner in list(self._live.items()):
            try:
                scanner.feed(piece)
            except Exception as exc:  # any detector failure is reported, never raised
                self._walk._failed(name, self._where, exc)
                del self._live[name]  # not asked again for this file

    def finish(self) -> tuple[str, dict[str, list[Finding | Fact] | None]]:
        sha256 = self._hasher.hexdigest()
        if self._kept is not None:
            self._kept.finish(sha256)
        return sha256, {name: self._walk._attempt(name, self._where, partial(scanner.finish, sha256))
                        for name, scanner in self._live.items()}


class _Tee(io.RawIOBase):
    """A file's pieces as a stream for an archive reader, each piece also handed to ``feed`` once."""

    def __init__(self, pieces: Iterator[bytes], feed: Callable[[bytes], None]) -> None:
        self._pieces = pieces
        self._feed = feed
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            piece = next(self._pieces, b"")
            if not piece:
                return 0
            self._feed(piece)
            self._pending = memoryview(piece)
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def drain(self) -> None:
        """The rest of the file, after whatever the archive reader stopped at, still hashed and scanned."""
        self._pending = memoryview(b"")
        for piece in self._pieces:
            self._feed(piece)
